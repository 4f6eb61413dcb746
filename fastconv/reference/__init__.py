"""The NumPy oracle: the kernel interface of DESIGN.md ("Kernel interface") in plain NumPy.

Same names and signatures as `fastconv._C`, but float32 or float64 (every float output has the
dtype of the function's first array argument), written for clarity rather than speed. It is the
"numpy" backend and the reference every native kernel is tested against; `conv2d_forward_naive`
(explicit loops) is the reference the im2col convolution here is tested against.
"""
from .activation import add_act_forward, bias_act_backward, bias_act_forward
from .array import concat_last
from .conv import (conv2d_backward_data, conv2d_backward_weights, conv2d_forward,
                   conv2d_forward_naive)
from .dense import dense_backward, dense_forward
from .norm import batch_norm_backward, batch_norm_forward_inference, batch_norm_forward_train
from .pool import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d_backward,
                   global_avg_pool2d_forward, max_pool2d_backward, max_pool2d_backward_argmax,
                   max_pool2d_forward, max_pool2d_forward_with_argmax)
from .softmax import (softmax_backward, softmax_cross_entropy_backward,
                      softmax_cross_entropy_forward, softmax_forward)

__all__ = [
    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weights", "conv2d_forward_naive",
    "dense_forward", "dense_backward",
    "max_pool2d_forward", "max_pool2d_backward", "max_pool2d_forward_with_argmax",
    "max_pool2d_backward_argmax", "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "batch_norm_forward_train", "batch_norm_forward_inference", "batch_norm_backward",
    "bias_act_forward", "bias_act_backward",
    "softmax_forward", "softmax_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "concat_last", "add_act_forward",
]
