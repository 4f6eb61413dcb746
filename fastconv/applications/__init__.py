"""keras.applications: Keras's constructors (names, signatures, layer names, parameter counts)
over the zoo in fastconv.models, with weights= (None, "imagenet" from the Keras cache, or a
legacy .h5 / Keras 3 .weights.h5 file) and each family's preprocess_input/decode_predictions
(keras.applications.resnet50.preprocess_input, ...)."""
from .._missing import module_getattr
from . import (  # noqa: F401
    densenet, efficientnet, imagenet_utils, inception_v3, mobilenet, mobilenet_v2, resnet, resnet50, resnet_v2, vgg16,
    vgg19, xception)
from .densenet import DenseNet121, DenseNet169, DenseNet201  # noqa: F401
from .efficientnet import EfficientNetB0  # noqa: F401
from .inception_v3 import InceptionV3  # noqa: F401
from .mobilenet import MobileNet  # noqa: F401
from .mobilenet_v2 import MobileNetV2  # noqa: F401
from .resnet import ResNet50, ResNet101, ResNet152  # noqa: F401
from .resnet_v2 import ResNet50V2, ResNet101V2, ResNet152V2  # noqa: F401
from .vgg16 import VGG16  # noqa: F401
from .vgg19 import VGG19  # noqa: F401
from .xception import Xception  # noqa: F401

_HINT = ("fastconv.applications provides VGG16/19, ResNet50/101/152(V2), DenseNet121/169/201, MobileNet, "
         "MobileNetV2, InceptionV3, Xception and EfficientNetB0; other architectures can be built with fastconv.layers and fastconv.models.zoo")

__getattr__ = module_getattr(__name__, every_hint=_HINT)
