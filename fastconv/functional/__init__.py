"""fastconv.functional: the array-level API over the kernels of the active backend.

Every function takes and returns arrays (numpy; CuPy on the cuda backend), accepts Keras-style
arguments ('same'/'valid' padding, int-or-pair strides) and dispatches to the backend chosen
with `fastconv.set_backend` / `fastconv.backend(...)`. On the cpu backend inputs are converted
to C-contiguous float32; on the numpy backend float64 is kept (for gradient checks).
"""
from ._args import array_module, array_of, conv_output_size, is_device_array, scalar, resolve_padding, same_padding  # noqa: F401
from .activation import (  # noqa: F401
    add_activation, bias_activation, bias_activation_backward, softmax, softmax_backward, softmax_cross_entropy,
    softmax_cross_entropy_backward)
from .array import concatenate, pad  # noqa: F401
from .conv import (  # noqa: F401
    conv2d, conv2d_algorithm, conv2d_backward, dense, dense_backward, depthwise_conv2d, depthwise_conv2d_backward)
from .norm import batch_norm_backward, batch_norm_inference, batch_norm_train  # noqa: F401
from .pool import (  # noqa: F401
    avg_pool2d, avg_pool2d_backward, avg_pool2d_backward_activation, global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d,
    global_max_pool2d_backward, max_pool2d, max_pool2d_backward, max_pool2d_backward_argmax,
    max_pool2d_with_argmax)
