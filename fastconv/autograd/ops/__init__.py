"""Differentiable operations on Tensors (see DESIGN.md, "Autograd")."""
from .array import concatenate, dropout, pad, split  # noqa: F401
from .math import (  # noqa: F401
    abs, add, clip, div, erf, exp, log, matmul, max, maximum, mean, minimum, mul, neg, power, reshape, sqrt,
    square, sub, sum, transpose, where)
from .conv_act_avg_pool import conv2d_activation_avg_pool  # noqa: F401
from .conv_relu_max_pool import conv2d_relu_max_pool  # noqa: F401
from .nn import (  # noqa: F401
    add_activation, avg_pool2d, batch_norm, bias_activation, capped_relu, conv2d, dense, depthwise_conv2d,
    global_avg_pool2d, global_max_pool2d, log_softmax, max_pool2d, relu, sigmoid, softmax, softmax_cross_entropy, tanh)
