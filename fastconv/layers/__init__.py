"""Keras-compatible layers (one per file). See DESIGN.md, "Layers and engine"."""
from .activation import Activation, ReLU, Softmax  # noqa: F401
from .batch_normalization import BatchNormalization  # noqa: F401
from .center_crop import CenterCrop  # noqa: F401
from .conv2d import Conv2D  # noqa: F401
from .conv2d_transpose import Conv2DTranspose  # noqa: F401
from .cropping2d import Cropping2D  # noqa: F401
from .dense import Dense  # noqa: F401
from .depthwise_conv2d import DepthwiseConv2D  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .elu import ELU  # noqa: F401
from .flatten import Flatten  # noqa: F401
from .gaussian_noise import GaussianNoise  # noqa: F401
from .global_pooling import (  # noqa: F401
    GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D, GlobalMaxPooling2D)
from .identity import Identity  # noqa: F401
from .input_layer import Input, InputLayer, KerasTensor  # noqa: F401
from .lambda_layer import Lambda  # noqa: F401
from .layer import Layer, clear_session  # noqa: F401
from .layer_normalization import LayerNormalization  # noqa: F401
from .sync_batch_normalization import SyncBatchNormalization  # noqa: F401
from .leaky_relu import LeakyReLU  # noqa: F401
from .merge import (  # noqa: F401
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average, concatenate, maximum, minimum,
    multiply, subtract)
from .normalization import Normalization  # noqa: F401
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D  # noqa: F401
from .permute import Permute  # noqa: F401
from .prelu import PReLU  # noqa: F401
from .random_brightness import RandomBrightness  # noqa: F401
from .random_contrast import RandomContrast  # noqa: F401
from .random_crop import RandomCrop  # noqa: F401
from .random_flip import RandomFlip  # noqa: F401
from .random_rotation import RandomRotation  # noqa: F401
from .random_translation import RandomTranslation  # noqa: F401
from .random_zoom import RandomZoom  # noqa: F401
from .repeat_vector import RepeatVector  # noqa: F401
from .rescaling import Rescaling  # noqa: F401
from .reshape import Reshape  # noqa: F401
from .resizing import Resizing  # noqa: F401
from .separable_conv2d import SeparableConv2D  # noqa: F401
from .spatial_dropout2d import SpatialDropout2D  # noqa: F401
from .upsampling2d import UpSampling2D  # noqa: F401
from .zero_padding2d import ZeroPadding2D  # noqa: F401

Convolution2D = Conv2D
Convolution2DTranspose = Conv2DTranspose
