"""activation(conv2d(x, w) + b) followed by average pooling, as one differentiable op.

Why: the pool's backward spreads each pooled gradient over its window, then the activation's
backward multiplies by act'(z) from the conv output y: two passes over the input-sized arrays
(the first writes the spread gradient, the second reads it back with y). One kernel does both,
each row of the spread gradient multiplied while it is still in cache: in LeNet-5's classic
(sigmoid + average pool) training step that drops a write and a read of 256x28x28x6 and
256x10x10x16 floats. Same floats as the two passes (the same product, the same order).

Where the backend has no such kernel (numpy, cuda) functional.avg_pool2d_backward_activation
runs the two passes.
"""
from ... import functional as F
from ..function import Function


class Conv2DActAvgPool(Function):
    def forward(self, x, w, b=None, activation="linear", pool_size=2, pool_strides=None, pool_padding="valid",
                **conv):
        self.x, self.w, self.conv, self.activation = x, w, conv, activation
        self.pool = {"pool_size": pool_size, "strides": pool_strides, "padding": pool_padding}
        self.y = F.conv2d(x, w, b, activation=activation, **conv)
        return F.avg_pool2d(self.y, **self.pool)

    def backward(self, g):
        g = F.avg_pool2d_backward_activation(g, self.y, self.activation, **self.pool)
        return F.conv2d_backward(g, self.x, self.w, need_dx=self.needs[0], need_db=len(self.needs) > 2,
                                 **self.conv)


def conv2d_activation_avg_pool(x, w, b=None, strides=1, padding="valid", dilation_rate=1, groups=1,
                               activation="linear", pool_size=2, pool_strides=None, pool_padding="valid"):
    """avg_pool2d(activation(conv2d(x, w) + b), pool_size, pool_strides, pool_padding), with
    the gradients of the unfused sequence."""
    args = (x, w) if b is None else (x, w, b)
    return Conv2DActAvgPool.apply(*args, strides=strides, padding=padding, dilation_rate=dilation_rate,
                                  groups=groups, activation=activation, pool_size=pool_size,
                                  pool_strides=pool_strides, pool_padding=pool_padding)
