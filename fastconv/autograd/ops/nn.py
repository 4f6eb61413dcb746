"""Differentiable kernel ops. Each forward/backward pair calls fastconv.functional, so the
same graph runs on the numpy, cpu and cuda backends."""
from ... import functional as F
from ...functional import array_module
from ..function import Function
from ..tensor import Tensor, as_array, no_grad


class Conv2D(Function):
    # activation(conv(x, w) + b) in one kernel; backward first turns g into the gradient of
    # the pre-activation from the saved output (as BiasActivation does), then runs the conv's.
    def forward(self, x, w, b=None, activation="linear", **conv):
        self.x, self.w, self.conv, self.activation = x, w, conv, activation
        y = F.conv2d(x, w, b, activation=activation, **conv)
        self.y = None if activation == "linear" else y
        return y

    def backward(self, g):
        if self.y is not None:
            g, _ = F.bias_activation_backward(g, self.y, self.activation, need_db=False)
        dx, dw, db = F.conv2d_backward(g, self.x, self.w, need_dx=self.needs[0],
                                       need_db=len(self.needs) > 2, **self.conv)
        return dx, dw, db


class DepthwiseConv2D(Function):
    def forward(self, x, w, b=None, **conv):
        self.x, self.w, self.conv = x, w, conv
        return F.depthwise_conv2d(x, w, b, **conv)

    def backward(self, g):
        return F.depthwise_conv2d_backward(g, self.x, self.w, need_dx=self.needs[0],
                                           need_db=len(self.needs) > 2, **self.conv)


class Dense(Function):
    # Keras's Dense acts on the last axis: fold leading axes into the batch.
    def forward(self, x, w, b=None):
        self.shape = x.shape
        self.x2 = x.reshape(-1, x.shape[-1])
        self.w = w
        y = F.dense(self.x2, w, b)
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, g):
        dx, dw, db = F.dense_backward(g.reshape(-1, g.shape[-1]), self.x2, self.w)
        return dx.reshape(self.shape), dw, db


class BiasActivation(Function):
    def forward(self, x, b=None, activation="linear"):
        self.activation = activation
        self.y = F.bias_activation(x, b, activation)
        return self.y

    def backward(self, g):
        dz, db = F.bias_activation_backward(g, self.y, self.activation, need_db=len(self.needs) > 1)
        return dz, db


class CappedRelu(Function):
    # min(max(x, 0), cap) (Keras ReLU(max_value), e.g. ReLU6) in one pass over x, where relu
    # then minimum took five (and two masks) even at inference. The gradient mask is that
    # composition's, 0 < x <= cap, built from the kept input only when backward runs.
    def forward(self, x, cap=6.0):
        self.x, self.cap = x, cap
        return array_module(x).clip(x, 0, cap)

    def backward(self, g):
        return (g * ((self.x > 0) & (self.x <= self.cap)),)


class AddActivation(Function):
    # activation(a + b) for a and b of one shape; both get the same gradient dz.
    def forward(self, a, b, activation="relu"):
        self.activation = activation
        self.y = F.add_activation(a, b, activation)
        return self.y

    def backward(self, g):
        dz, _ = F.bias_activation_backward(g, self.y, self.activation, need_db=False)
        return dz, dz


class MaxPool2D(Function):
    # Keeps the uint8 argmax (a quarter of y's bytes) rather than x where the backend can;
    # the backward then never reads x.
    def forward(self, x, **pool):
        self.pool, self.shape = pool, x.shape
        y, self.argmax = F.max_pool2d_with_argmax(x, **pool)
        self.x = x if self.argmax is None else None
        return y

    def backward(self, g):
        if self.argmax is None:
            return (F.max_pool2d_backward(g, self.x, **self.pool),)
        return (F.max_pool2d_backward_argmax(g, self.argmax, self.shape, **self.pool),)


class AvgPool2D(Function):
    def forward(self, x, **pool):
        self.shape, self.pool = x.shape, pool
        return F.avg_pool2d(x, **pool)

    def backward(self, g):
        return (F.avg_pool2d_backward(g, self.shape, **self.pool),)


class GlobalAvgPool2D(Function):
    def forward(self, x):
        self.shape = x.shape
        return F.global_avg_pool2d(x)

    def backward(self, g):
        return (F.global_avg_pool2d_backward(g, self.shape),)


class GlobalMaxPool2D(Function):
    def forward(self, x):
        self.x = x
        return F.global_max_pool2d(x)

    def backward(self, g):
        return (F.global_max_pool2d_backward(g, self.x),)


class BatchNormTrain(Function):
    # relu=True: a fused BatchNormalization -> ReLU; backward masks g by the output's sign,
    # recomputed from x and beta, so no output is kept.
    def forward(self, x, gamma, beta, epsilon=1e-3, relu=False):
        y, mean, var, inv_std = F.batch_norm_train(x, gamma, beta, epsilon, relu=relu)
        self.x, self.gamma, self.mean, self.inv_std = x, gamma, mean, inv_std
        self.relu_beta = beta if relu else None
        self.batch_stats = mean, var
        return y

    def backward(self, g):
        return F.batch_norm_backward(g, self.x, self.gamma, self.mean, self.inv_std, relu_beta=self.relu_beta)


class BatchNormInference(Function):
    # y = (x - mean) * inv_std * gamma + beta with fixed statistics: an affine map per channel
    # (then max(y, 0) when relu, whose gradient mask is kept from the output).
    def forward(self, x, gamma, beta, mean=None, var=None, epsilon=1e-3, relu=False):
        # Only per-channel vectors and references are kept: the normalised input and the
        # relu mask (full-size arrays) are made in backward, so predict() never builds them.
        xp = array_module(x)
        self.inv_std = 1 / xp.sqrt(var + epsilon)
        self.scale = gamma * self.inv_std
        self.x, self.mean = x, mean
        y = F.batch_norm_inference(x, gamma, beta, mean, var, epsilon, relu=relu)
        self.y = y if relu else None
        return y

    def backward(self, g):
        if self.y is not None:
            g = g * (self.y > 0)
        axes = tuple(range(g.ndim - 1))
        xhat = (self.x - self.mean) * self.inv_std
        return g * self.scale, (g * xhat).sum(axis=axes), g.sum(axis=axes)


class Softmax(Function):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = _move_last(F.softmax(_move_last(x, axis)), axis)
        return self.y

    def backward(self, g):
        y, axis = self.y, self.axis
        return (_move_last(F.softmax_backward(_move_last(g, axis), _move_last(y, axis)), axis),)


class LogSoftmax(Function):
    def forward(self, x, axis=-1):
        xp = array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.out

    def backward(self, g):
        xp = array_module(g)
        return (g - xp.exp(self.out) * g.sum(axis=self.axis, keepdims=True),)


class SoftmaxCrossEntropy(Function):
    def forward(self, logits, labels=None):
        self.labels = labels
        loss, self.probs = F.softmax_cross_entropy(logits, labels)
        return loss

    def backward(self, g):
        return (F.softmax_cross_entropy_backward(self.probs, self.labels, g),)


def _move_last(a, axis):
    return a if axis in (-1, a.ndim - 1) else array_module(a).swapaxes(a, axis, -1)


def conv2d(x, w, b=None, strides=1, padding="valid", dilation_rate=1, groups=1, activation="linear"):
    args = (x, w) if b is None else (x, w, b)
    return Conv2D.apply(*args, strides=strides, padding=padding, dilation_rate=dilation_rate, groups=groups,
                        activation=activation)


def depthwise_conv2d(x, w, b=None, strides=1, padding="valid", dilation_rate=1):
    args = (x, w) if b is None else (x, w, b)
    return DepthwiseConv2D.apply(*args, strides=strides, padding=padding, dilation_rate=dilation_rate)


def dense(x, w, b=None):
    return Dense.apply(*((x, w) if b is None else (x, w, b)))


def bias_activation(x, b=None, activation="linear"):
    args = (x,) if b is None else (x, b)
    return BiasActivation.apply(*args, activation="linear" if activation is None else activation)


def relu(x): return bias_activation(x, None, "relu")
def capped_relu(x, cap): return CappedRelu.apply(x, cap=float(cap))


def add_activation(a, b, activation="relu"):
    """activation(a + b) in one kernel (a and b of one shape); a plain add otherwise."""
    if tuple(a.shape) != tuple(b.shape):
        return bias_activation(a + b, None, activation)
    return AddActivation.apply(a, b, activation=activation)
def sigmoid(x): return bias_activation(x, None, "sigmoid")
def tanh(x): return bias_activation(x, None, "tanh")


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return MaxPool2D.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    return AvgPool2D.apply(x, pool_size=pool_size, strides=strides, padding=padding)


def global_avg_pool2d(x): return GlobalAvgPool2D.apply(x)
def global_max_pool2d(x): return GlobalMaxPool2D.apply(x)


def batch_norm(x, gamma, beta, moving_mean, moving_var, training, momentum=0.99, epsilon=1e-3, relu=False):
    """Batch normalisation over all axes but the last (Keras semantics).

    training=True normalises with the batch statistics (biased variance) and updates the
    moving Variables in place: moving = moving * momentum + batch * (1 - momentum).
    gamma/beta may be None (scale/center off). relu=True: max(y, 0) fused into the same op.
    """
    xd = as_array(x)
    xp = array_module(xd)
    c = xd.shape[-1]
    gamma = Tensor(xp.ones(c, xd.dtype)) if gamma is None else gamma
    beta = Tensor(xp.zeros(c, xd.dtype)) if beta is None else beta
    if not training:
        return BatchNormInference.apply(x, gamma, beta, mean=as_array(moving_mean),
                                        var=as_array(moving_var), epsilon=epsilon, relu=relu)
    y = BatchNormTrain.apply(x, gamma, beta, epsilon=epsilon, relu=relu)
    mean, var = _last_batch_stats(x, gamma, beta, epsilon, y)
    with no_grad():
        for moving, batch in ((moving_mean, mean), (moving_var, var)):
            m = moving.data
            m *= momentum
            m += (1.0 - momentum) * batch.astype(m.dtype, copy=False)
    return y


def _last_batch_stats(x, gamma, beta, epsilon, y):
    node = y._node
    if node is not None:
        return node.batch_stats
    # No graph was recorded (no_grad): recompute the statistics directly.
    xd = as_array(x)
    axes = tuple(range(xd.ndim - 1))
    return xd.mean(axis=axes), xd.var(axis=axes)


def softmax(x, axis=-1): return Softmax.apply(x, axis=axis)
def log_softmax(x, axis=-1): return LogSoftmax.apply(x, axis=axis)


def softmax_cross_entropy(logits, labels):
    """Per-sample cross-entropy of integer labels against logits, (N,)."""
    return SoftmaxCrossEntropy.apply(logits, labels=as_array(labels))
