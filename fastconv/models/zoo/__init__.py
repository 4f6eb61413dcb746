"""The classic CNN family, like keras.applications: constructors returning ordinary models."""
from .alexnet import alexnet, nin  # noqa: F401
from .densenet import DenseBlock, TransitionBlock, densenet121, densenet169, densenet201, small_densenet  # noqa: F401
from .googlenet import InceptionBlock, googlenet  # noqa: F401
from .lenet import lenet5  # noqa: F401
from .mobilenet import DepthwiseSeparableBlock, mobilenet  # noqa: F401
from .mobilenet_v2 import InvertedResidualBlock, mobilenet_v2  # noqa: F401
from .resnet import (  # noqa: F401
    BottleneckBlock, ResidualBlock, resnet18, resnet20, resnet32, resnet34, resnet50, resnet56, resnet101, resnet152)
from .resnet_v2 import PreactBottleneckBlock, resnet50_v2, resnet101_v2, resnet152_v2  # noqa: F401
from .vgg import vgg11, vgg13, vgg16, vgg19  # noqa: F401
# Keras applications rebuilt layer for layer (Keras's names and signatures), beside the zoo.
from ..efficientnet import efficientnet_b0  # noqa: F401,E402
from ..inception_v3 import inception_v3  # noqa: F401,E402
from ..xception import xception  # noqa: F401,E402

__all__ = [
    "alexnet", "nin", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet", "lenet5", "mobilenet", "mobilenet_v2",
    "resnet50_v2", "resnet101_v2", "resnet152_v2",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20", "resnet32", "resnet56",
    "densenet121", "densenet169", "densenet201", "small_densenet", "inception_v3", "xception", "efficientnet_b0",
    "ResidualBlock", "BottleneckBlock", "InceptionBlock", "DenseBlock", "TransitionBlock", "DepthwiseSeparableBlock",
    "InvertedResidualBlock", "PreactBottleneckBlock",
]
