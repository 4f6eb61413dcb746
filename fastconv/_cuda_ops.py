"""Pooling, normalisation, activation, softmax and fused-optimizer wrappers of the cuda
backend, split from fastconv/cuda.py for size and re-exported there (use fastconv.cuda)."""
from .cuda import _act, _channels, _f32, _labels, _rank, _ready, _shape, _vec
from . import cuda as _c

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward", "global_avg_pool2d_forward", "global_avg_pool2d_backward", "batch_norm_forward_train", "batch_norm_forward_inference", "batch_norm_backward", "bias_act_forward", "bias_act_backward", "softmax_forward", "softmax_backward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "sgd_update", "adam_update", "concat_last", "add_act_forward"]


def _p(a):
    return _c._p(a)


def _s():
    return _c._s()


# ---- pooling ----

def _pool_out(K, x_shape, pool, strides, pads, what):
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (N, H, W, C), got shape {tuple(x_shape)}")
    return tuple(K.pool_output_shape(tuple(int(v) for v in x_shape), tuple(pool), tuple(strides),
                                      tuple(pads), what))


def max_pool2d_forward(x, pool, strides, pads):
    cp, K = _ready()
    x = _f32(x, "x")
    y = _c._empty(_pool_out(K, x.shape, pool, strides, pads, "max_pool2d"), cp.float32)
    K.max_pool2d_forward(_p(x), _p(y), tuple(x.shape), tuple(pool), tuple(strides), tuple(pads), _s())
    return y


def max_pool2d_backward(dy, x, pool, strides, pads):
    cp, K = _ready()
    dy, x = _f32(dy, "dy"), _f32(x, "x")
    _shape(dy, "dy", _pool_out(K, x.shape, pool, strides, pads, "max_pool2d"))
    dx = _c._empty(x.shape, cp.float32)
    K.max_pool2d_backward(_p(dy), _p(x), _p(dx), tuple(x.shape), tuple(pool), tuple(strides), tuple(pads), _s())
    return dx


def avg_pool2d_forward(x, pool, strides, pads):
    cp, K = _ready()
    x = _f32(x, "x")
    y = _c._empty(_pool_out(K, x.shape, pool, strides, pads, "avg_pool2d"), cp.float32)
    K.avg_pool2d_forward(_p(x), _p(y), tuple(x.shape), tuple(pool), tuple(strides), tuple(pads), _s())
    return y


def avg_pool2d_backward(dy, x_shape, pool, strides, pads):
    cp, K = _ready()
    dy = _f32(dy, "dy")
    x_shape = tuple(int(v) for v in x_shape)
    _shape(dy, "dy", _pool_out(K, x_shape, pool, strides, pads, "avg_pool2d"))
    dx = _c._empty(x_shape, cp.float32)
    K.avg_pool2d_backward(_p(dy), _p(dx), x_shape, tuple(pool), tuple(strides), tuple(pads), _s())
    return dx


def global_avg_pool2d_forward(x):
    cp, K = _ready()
    x = _f32(x, "x")
    _rank(x, "x", 4, "(N, H, W, C)")
    n, h, w, c = x.shape
    y = _c._empty((n, c), cp.float32)
    K.global_avg_pool2d_forward(_p(x), _p(y), n, h * w, c, _s())
    return y


def global_avg_pool2d_backward(dy, x_shape):
    cp, K = _ready()
    dy = _f32(dy, "dy")
    n, h, w, c = (int(v) for v in x_shape)
    _shape(dy, "dy", (n, c))
    dx = _c._empty((n, h, w, c), cp.float32)
    K.global_avg_pool2d_backward(_p(dy), _p(dx), n, h * w, c, _s())
    return dx


# ---- batch normalisation, bias + activation, softmax ----

def batch_norm_forward_train(x, gamma, beta, eps, relu=False):
    cp, K = _ready()
    x = _f32(x, "x")
    m, c = _channels(x, "x")
    gamma, beta = _vec(gamma, "gamma", c), _vec(beta, "beta", c)
    y = _c._empty(x.shape, cp.float32)
    mean, var, inv_std = (_c._empty((c,), cp.float32) for _ in range(3))
    K.batch_norm_forward_train(_p(x), _p(gamma), _p(beta), float(eps), _p(y), _p(mean), _p(var),
                                _p(inv_std), m, c, _s())
    if relu:
        K.bias_act_forward(_p(y), 0, _act("relu"), _p(y), m, c, _s())
    return y, mean, var, inv_std


def batch_norm_forward_inference(x, gamma, beta, mean, var, eps, relu=False):
    cp, K = _ready()
    x = _f32(x, "x")
    m, c = _channels(x, "x")
    vs = [_vec(a, nm, c) for a, nm in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))]
    y = _c._empty(x.shape, cp.float32)
    K.batch_norm_forward_inference(_p(x), *(_p(v) for v in vs), float(eps), _p(y), m, c, _s())
    if relu:
        K.bias_act_forward(_p(y), 0, _act("relu"), _p(y), m, c, _s())
    return y


def batch_norm_backward(dy, x, gamma, mean, inv_std, relu_beta=None):
    cp, K = _ready()
    dy, x = _f32(dy, "dy"), _f32(x, "x")
    _shape(x, "x", dy.shape)
    m, c = _channels(dy, "dy")
    gamma, mean, inv_std = _vec(gamma, "gamma", c), _vec(mean, "mean", c), _vec(inv_std, "inv_std", c)
    if relu_beta is not None:  # through a fused relu: mask dy by the recomputed output's sign
        y = (x - mean) * (gamma * inv_std) + _vec(relu_beta, "relu_beta", c)
        dy = cp.ascontiguousarray(dy * (y > 0))
    dx = _c._empty(dy.shape, cp.float32)
    dgamma, dbeta = _c._empty((c,), cp.float32), _c._empty((c,), cp.float32)
    K.batch_norm_backward(_p(dy), _p(x), _p(gamma), _p(mean), _p(inv_std), _p(dx), _p(dgamma),
                           _p(dbeta), m, c, _s())
    return dx, dgamma, dbeta


def bias_act_forward(x, b, activation):
    cp, K = _ready()
    x = _f32(x, "x")
    m, c = _channels(x, "x")
    b = None if b is None else _vec(b, "b", c)
    y = _c._empty(x.shape, cp.float32)
    K.bias_act_forward(_p(x), _p(b), _act(activation), _p(y), m, c, _s())
    return y


def bias_act_backward(dy, y, activation, with_bias):
    cp, K = _ready()
    dy, y = _f32(dy, "dy"), _f32(y, "y")
    _shape(y, "y", dy.shape)
    m, c = _channels(dy, "dy")
    dz = _c._empty(dy.shape, cp.float32)
    db = _c._empty((c,), cp.float32) if with_bias else None
    K.bias_act_backward(_p(dy), _p(y), _act(activation), _p(dz), _p(db), m, c, _s())
    return dz, db


def _rows(x, name):
    x = _f32(x, name)
    _rank(x, name, 2, "(N, C)")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have C >= 1 columns, got shape {tuple(x.shape)}")
    return x


def softmax_forward(x):
    cp, K = _ready()
    x = _rows(x, "x")
    y = _c._empty(x.shape, cp.float32)
    K.softmax_forward(_p(x), _p(y), x.shape[0], x.shape[1], _s())
    return y


def softmax_backward(dy, y):
    cp, K = _ready()
    dy, y = _rows(dy, "dy"), _rows(y, "y")
    _shape(y, "y", dy.shape)
    dx = _c._empty(dy.shape, cp.float32)
    K.softmax_backward(_p(dy), _p(y), _p(dx), dy.shape[0], dy.shape[1], _s())
    return dx


def softmax_cross_entropy_forward(logits, labels):
    """Labels are trusted to lie in [0, C) (checking them would need a host round trip); an
    out-of-range label gives a NaN loss."""
    cp, K = _ready()
    logits = _rows(logits, "logits")
    n, c = logits.shape
    labels = _labels(labels, n)
    loss, probs = _c._empty((n,), cp.float32), _c._empty((n, c), cp.float32)
    K.softmax_cross_entropy_forward(_p(logits), _p(labels), _p(loss), _p(probs), n, c, _s())
    return loss, probs


def softmax_cross_entropy_backward(probs, labels, dloss):
    cp, K = _ready()
    probs = _rows(probs, "probs")
    n, c = probs.shape
    labels, dloss = _labels(labels, n), _vec(dloss, "dloss", n)
    dlogits = _c._empty((n, c), cp.float32)
    K.softmax_cross_entropy_backward(_p(probs), _p(labels), _p(dloss), _p(dlogits), n, c, _s())
    return dlogits


# ---- fused optimizer updates (in place; Keras formulas of fastconv.optimizers) ----

def _state(cp, a, name, like):
    if a is None:
        return None
    if not isinstance(a, cp.ndarray) or a.dtype != cp.float32 or not a.flags.c_contiguous or a.shape != like.shape:
        raise TypeError(f"{name} must be a C-contiguous float32 cupy array of shape {like.shape}")
    return a


def sgd_update(w, g, velocity, lr, momentum=0.0, nesterov=False, decay=0.0):
    """In place: w -= w*decay, then w -= lr*g, or with velocity: v = momentum*v - lr*g;
    w += v (Nesterov: momentum*v - lr*g). The signature of fastconv._C.sgd_update."""
    cp, K = _ready()
    w = _state(cp, w, "w", w)
    g = _state(cp, cp.ascontiguousarray(g, dtype=cp.float32), "g", w)
    velocity = _state(cp, velocity, "velocity", w)
    K.sgd_update(_p(w), _p(g), _p(velocity), w.size, float(lr), float(momentum), bool(nesterov),
                 float(decay), _s())


def adam_update(w, g, m, v, alpha, beta_1, beta_2, epsilon, v_hat=None, decay=0.0):
    """In place, one fused pass: w -= w*decay; m, v (and v_hat for amsgrad) then
    w -= alpha*m/(sqrt(v)+eps); alpha = lr*sqrt(1-beta_2^t)/(1-beta_1^t) is computed by the
    caller. The signature of fastconv._C.adam_update."""
    cp, K = _ready()
    w = _state(cp, w, "w", w)
    g = _state(cp, cp.ascontiguousarray(g, dtype=cp.float32), "g", w)
    m, v, v_hat = _state(cp, m, "m", w), _state(cp, v, "v", w), _state(cp, v_hat, "v_hat", w)
    K.adam_update(_p(w), _p(g), _p(m), _p(v), _p(v_hat), w.size, float(alpha), float(beta_1),
                  float(beta_2), float(epsilon), float(decay), _s())


def concat_last(arrays):
    cp, _ = _ready()
    from .reference.array import check_concat_shapes
    arrays = [_f32(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    check_concat_shapes(arrays)
    return cp.concatenate(arrays, axis=-1)


def add_act_forward(a, b, activation):
    cp, K = _ready()
    a, b = _f32(a, "a"), _f32(b, "b")
    _shape(b, "b", a.shape)
    y = cp.add(a, b)
    if a.size:
        K.bias_act_forward(_p(y), 0, _act(activation), _p(y), a.size // a.shape[-1] if a.ndim else 1,
                           a.shape[-1] if a.ndim else 1, _s())
    return y
