"""Pooling on arrays (NHWC), forward and backward, any backend.

Max pool: padded cells never win. Average pool: divides by the real (unpadded) cells only,
as TensorFlow does for 'same'.

>>> import numpy as np
>>> from fastconv import functional as F
>>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
>>> F.max_pool2d(x, 2)[0, :, :, 0]
array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""
from ._args import bounded_cache, floats, kernels, pair, plain, require_rank, resolve_padding
from .activation import _activation_name


_pool_cache, _pool_put = bounded_cache()


def _pool_args(x_shape, pool_size, strides, padding):
    # cached by shape and plain arguments, as conv's _conv_args (~1 us of checks a call)
    key = None
    if ((type(pool_size) is int or plain(pool_size)) and (strides is None or plain(strides))
            and (type(padding) is str or plain(padding))):
        key = (x_shape, pool_size, strides, padding)
        hit = _pool_cache.get(key)
        if hit is not None:
            return hit
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (N, H, W, C), got shape {tuple(x_shape)}")
    pool = pair(pool_size, "pool_size")
    strides = pool if strides is None else pair(strides, "strides")
    pads = resolve_padding(padding, x_shape[1:3], pool, strides)
    return (pool, strides, pads) if key is None else _pool_put(key, (pool, strides, pads))


def max_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Max pooling; strides default to pool_size (Keras)."""
    x = floats(x, "x")
    return kernels().max_pool2d_forward(x, *_pool_args(x.shape, pool_size, strides, padding))


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid"):
    """dx: each dy goes to the window's first maximal input cell."""
    dy, x = floats(dy, "dy"), floats(x, "x")
    return kernels().max_pool2d_backward(dy, x, *_pool_args(x.shape, pool_size, strides, padding))


def max_pool2d_with_argmax(x, pool_size=2, strides=None, padding="valid"):
    """(y, argmax): max_pool2d plus each output's winning cell as its position ky*kw + kx in
    the padded window (uint8, y's shape), for max_pool2d_backward_argmax, which then needs
    neither x nor a second pass over it. argmax is None where the backend has no such kernel
    (cuda) or the window has more than 256 cells: use max_pool2d_backward with x then."""
    x = floats(x, "x")
    args = _pool_args(x.shape, pool_size, strides, padding)
    k = kernels()
    pool = args[0]
    if pool[0] * pool[1] > 256 or not hasattr(k, "max_pool2d_forward_with_argmax"):
        return k.max_pool2d_forward(x, *args), None
    return k.max_pool2d_forward_with_argmax(x, *args)


def max_pool2d_backward_argmax(dy, argmax, x_shape, pool_size=2, strides=None, padding="valid"):
    """dx from the argmax saved by max_pool2d_with_argmax (same pooling arguments)."""
    dy = floats(dy, "dy")
    x_shape = tuple(map(int, x_shape))  # map: ~0.3 us less than a generator
    return kernels().max_pool2d_backward_argmax(dy, argmax, x_shape,
                                                *_pool_args(x_shape, pool_size, strides, padding))


def avg_pool2d(x, pool_size=2, strides=None, padding="valid"):
    """Average pooling over the real cells of each window."""
    x = floats(x, "x")
    return kernels().avg_pool2d_forward(x, *_pool_args(x.shape, pool_size, strides, padding))


def avg_pool2d_backward(dy, x_shape, pool_size=2, strides=None, padding="valid"):
    dy = floats(dy, "dy")
    x_shape = tuple(map(int, x_shape))
    return kernels().avg_pool2d_backward(dy, x_shape, *_pool_args(x_shape, pool_size, strides, padding))


def avg_pool2d_backward_activation(dy, y, activation, pool_size=2, strides=None, padding="valid"):
    """dz = avg_pool2d_backward(dy, y.shape, ...) * activation'(z) for the pool's input
    y = activation(z): one pass where the backend has the kernel (cpu), else the two."""
    dy, y = floats(dy, "dy"), floats(y, "y")
    args = _pool_args(y.shape, pool_size, strides, padding)
    k, name = kernels(), _activation_name(activation)
    if hasattr(k, "avg_pool2d_backward_activation"):
        return k.avg_pool2d_backward_activation(dy, y, *args, name)
    dx = k.avg_pool2d_backward(dy, tuple(map(int, y.shape)), *args)
    return dx if name == "linear" else k.bias_act_backward(dx, y, name, False)[0]


def global_avg_pool2d(x):
    """(N, H, W, C) -> (N, C) mean over H and W."""
    x = floats(x, "x")
    require_rank(x, "x", 4, "(N, H, W, C)")
    return kernels().global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(dy, x_shape):
    return kernels().global_avg_pool2d_backward(floats(dy, "dy"), tuple(map(int, x_shape)))


def global_max_pool2d(x):
    """(N, H, W, C) -> (N, C) max over H and W: one max-pool window covering the image."""
    x = floats(x, "x")
    require_rank(x, "x", 4, "(N, H, W, C)")
    n, h, w, c = x.shape
    return max_pool2d(x, (h, w)).reshape(n, c)


def global_max_pool2d_backward(dy, x):
    x = floats(x, "x")
    n, h, w, c = x.shape
    return max_pool2d_backward(floats(dy, "dy").reshape(n, 1, 1, c), x, (h, w))
