"""relu(conv2d(x, w) + b) followed by max pooling, as one differentiable op.

Why: max pooling commutes with ReLU's mask. The pooled gradient reaches only each window's
winning cell, and that cell's ReLU derivative is (y > 0) = (pooled value > 0). So the ReLU's
backward runs on the pooled gradient (a quarter of the conv output for 2x2 pooling) instead
of on the conv output, and the conv output itself is never kept (only the pool's uint8
argmax is). In LeNet-5 (ReLU + max pool) that drops a pass over the 256x28x28x6 activations
from every training step.

Where the backend has no argmax kernel (cuda) the op saves the conv output and runs the
plain sequence: the max-pool backward from it, then the ReLU backward.
"""
from ... import functional as F
from ..function import Function


class Conv2DReluMaxPool(Function):
    def forward(self, x, w, b=None, pool_size=2, pool_strides=None, pool_padding="valid", **conv):
        self.x, self.w, self.conv = x, w, conv
        self.pool = {"pool_size": pool_size, "strides": pool_strides, "padding": pool_padding}
        y = F.conv2d(x, w, b, activation="relu", **conv)
        self.y_shape = y.shape
        p, self.argmax = F.max_pool2d_with_argmax(y, **self.pool)
        # With the argmax, the ReLU mask comes from p itself; without it the pool needs y.
        self.p, self.y = (p, None) if self.argmax is not None else (None, y)
        return p

    def backward(self, g):
        if self.argmax is not None:
            g, _ = F.bias_activation_backward(g, self.p, "relu", need_db=False)
            g = F.max_pool2d_backward_argmax(g, self.argmax, self.y_shape, **self.pool)
        else:
            g = F.max_pool2d_backward(g, self.y, **self.pool)
            g, _ = F.bias_activation_backward(g, self.y, "relu", need_db=False)
        return F.conv2d_backward(g, self.x, self.w, need_dx=self.needs[0], need_db=len(self.needs) > 2,
                                 **self.conv)


def conv2d_relu_max_pool(x, w, b=None, strides=1, padding="valid", dilation_rate=1, groups=1,
                         pool_size=2, pool_strides=None, pool_padding="valid"):
    """max_pool2d(relu(conv2d(x, w) + b), pool_size, pool_strides, pool_padding), with the
    gradients of the unfused sequence."""
    args = (x, w) if b is None else (x, w, b)
    return Conv2DReluMaxPool.apply(*args, strides=strides, padding=padding, dilation_rate=dilation_rate,
                                   groups=groups, pool_size=pool_size, pool_strides=pool_strides,
                                   pool_padding=pool_padding)
