"""The "cuda" backend: the kernel interface of DESIGN.md on CuPy arrays.

``fastconv.set_backend("cuda")`` selects it. Arrays live on the GPU as ``cupy.ndarray``
(move data once with :func:`to_device`; NumPy inputs are copied to the device on each call,
which is correct but slow). Elementwise, pooling, normalisation and softmax kernels come
from ``fastconv._cuda`` (csrc/cuda/); GEMMs run through cuBLAS via ``cupy.matmul`` on
im2col / col2im operands, in full float32 unless :func:`allow_tf32` is switched on.
Every kernel launches on CuPy's current stream and never synchronises with the host.

Usage (weights are created as NumPy arrays; move a built model once)::

    import fastconv, fastconv.cuda
    fastconv.set_backend("cuda")              # RuntimeError if CuPy, _cuda or a GPU is missing
    model = fastconv.models.resnet18((32, 32, 3), 10)
    fastconv.cuda.model_to_device(model)
    x, y = fastconv.cuda.to_device(x_np), fastconv.cuda.to_device(y_np)

This module imports without CuPy, without ``fastconv._cuda`` and without a GPU; the backend
then reports which of the three is missing (:func:`require`).
"""
import importlib
import os

import numpy as np

cp = None      # cupy, once require() has succeeded
_K = None      # fastconv._cuda
_tf32 = False
_workspace_limit = 1 << 30  # bytes of im2col buffer per convolution call

_ACT = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}

# Debug switch, the twin of fastconv._C._set_poison_outputs: every output buffer this backend
# allocates for a kernel starts as NaN instead of cp.empty's leftovers, so a kernel that
# leaves part of it unwritten fails the tests. FASTCONV_POISON_OUTPUTS=1 (read at import) or
# _set_poison_outputs(True); tests/conftest.py turns it on for the test session.
_poison = os.environ.get("FASTCONV_POISON_OUTPUTS") == "1"


def _set_poison_outputs(on):
    global _poison
    _poison = bool(on)


def _get_poison_outputs():
    return _poison


def _empty(shape, dtype=np.float32):
    """cp.empty(shape, dtype) for a kernel's output, NaN-filled under the poison switch."""
    if _poison:
        return cp.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype)
    return cp.empty(shape, dtype)


def require():
    """Load CuPy, ``fastconv._cuda`` and check for a device; RuntimeError says what is missing."""
    global cp, _K
    if _K is not None:
        return
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            "the cuda backend needs CuPy, which is not installed: pip install 'fastconv[cuda]' "
            "(cupy-cuda13x; use cupy-cuda12x with CUDA 12 drivers)" f" [{e}]") from None
    try:
        kmod = importlib.import_module("fastconv._cuda")
    except ImportError as e:
        raise RuntimeError(
            "the cuda backend needs fastconv._cuda, which was not built: nvcc was not found when "
            "fastconv was installed, or FASTCONV_ENABLE_CUDA was OFF; reinstall with the CUDA "
            f"toolkit on PATH [{e}]") from None
    try:
        kmod.device_count()
        ndev = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError / RuntimeError: no driver, no device
        raise RuntimeError(f"the cuda backend needs a CUDA GPU, and none is usable: {e}") from None
    if ndev < 1:
        raise RuntimeError("the cuda backend needs a CUDA GPU, and none is visible")
    kmod.set_device(cupy.cuda.runtime.getDevice())
    cp, _K = cupy, kmod
    _apply_tf32()


def is_available():
    """True when the cuda backend can be used (CuPy, fastconv._cuda and a GPU present)."""
    try:
        require()
        return True
    except RuntimeError:
        return False


def _apply_tf32():
    # CuPy caches its float32 GEMM compute type on first use (from CUPY_TF32); set it
    # explicitly so only allow_tf32() turns TF32 on.
    try:
        from cupy._core import _routines_linalg as rl
        rl.set_compute_type(cp.float32, rl.COMPUTE_TYPE_TF32 if _tf32 else rl.COMPUTE_TYPE_DEFAULT)
    except (ImportError, AttributeError):  # private CuPy API moved: fall back to its env switch
        import os
        os.environ["CUPY_TF32"] = "1" if _tf32 else "0"


def allow_tf32(flag=True):
    """Let cuBLAS run float32 GEMMs in TF32 (faster on Ampere+, ~1e-3 relative error). Off by default."""
    global _tf32
    _tf32 = bool(flag)
    if cp is not None:
        _apply_tf32()


def set_workspace_limit(nbytes):
    """Cap, in bytes, on the im2col buffer of one convolution on the GPU (default 1 GiB)."""
    global _workspace_limit
    _workspace_limit = max(int(nbytes), 1)


def to_device(x, dtype=None):
    """A NumPy array (or anything array-like) -> C-contiguous cupy.ndarray on the current GPU."""
    require()
    return cp.ascontiguousarray(cp.asarray(x, dtype=dtype))


def to_host(x):
    """A cupy.ndarray -> numpy.ndarray (synchronises); NumPy input is returned as is."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def zeros(shape, dtype=np.float32):
    """A cupy.ndarray of zeros on the current GPU."""
    require()
    return cp.zeros(shape, dtype)


def free_memory():
    """Free memory of the current GPU, in bytes."""
    require()
    return int(cp.cuda.Device().mem_info[0])


def model_to_device(model):
    """Move every weight of a model (trainable or not, e.g. BN moving statistics) and its
    optimizer's slots to the GPU, in place. Layers built on the cuda backend already create
    their weights there, and fit/evaluate/predict on the cuda backend call this themselves;
    weights already on the GPU are not copied."""
    require()
    _move(model, lambda a: a if isinstance(a, cp.ndarray) else cp.ascontiguousarray(cp.asarray(a)))
    return model


def model_to_host(model):
    """Move every weight of a model and its optimizer's slots back to NumPy arrays, in place."""
    _move(model, to_host)
    return model


def _move(model, put):
    for v in model.weights:
        v.data = put(v.data)
    for _, slots in getattr(getattr(model, "optimizer", None), "_state", {}).values():
        for k, a in slots.items():
            slots[k] = put(a)


# ---- argument handling ----

def _f32(a, name):
    if a is None:
        return None
    if hasattr(a, "requires_grad"):
        raise TypeError(f"{name} must be an array, got a Tensor")
    a = cp.asarray(a)
    if a.dtype != cp.float32:
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a float32 array, got dtype {a.dtype}")
        a = a.astype(cp.float32)
    return cp.ascontiguousarray(a)


def _labels(a, n):
    a = cp.ascontiguousarray(cp.asarray(a), dtype=cp.int64)
    if a.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(a.shape)}")
    return a


def _rank(a, name, ndim, layout):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(a.shape)}")


def _shape(a, name, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")


def _vec(a, name, c):
    a = _f32(a, name)
    _shape(a, name, (c,))
    return a


def _p(a):
    return 0 if a is None else a.data.ptr


def _s():
    return cp.cuda.get_current_stream().ptr


def _channels(x, name):
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must be (..., C) with C >= 1, got shape {tuple(x.shape)}")
    return x.size // x.shape[-1], x.shape[-1]


def _act(activation):
    try:
        return _ACT[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(_ACT)}, got {activation!r}") from None


def _ready():
    """(cupy, fastconv._cuda), loading them on first use."""
    if _K is None:
        require()
    return cp, _K


# ---- convolution and dense: im2col/col2im kernels + cuBLAS GEMMs ----

def _conv_shapes(x, w, strides, pads, dilation, groups):
    _rank(x, "x", 4, "(N, H, W, C)")
    _rank(w, "w", 4, "(KH, KW, Cin/groups, Cout)")
    return tuple(_K.conv_output_shape(tuple(x.shape), tuple(w.shape), tuple(strides), tuple(pads),
                                      tuple(dilation), int(groups)))


def _is_depthwise(x_shape, w_shape, groups):
    return groups > 1 and groups == x_shape[3] and w_shape[2] == 1


def _is_pointwise(w_shape, strides, pads):
    return w_shape[0] == w_shape[1] == 1 and tuple(strides) == (1, 1) and not any(pads)


def _chunks(n, rows_per_image, ldcol):
    """Image ranges whose im2col buffer stays under the workspace limit (>= 1 image each)."""
    per = max(1, _workspace_limit // max(rows_per_image * ldcol * 4, 1))
    return [(i, min(n, i + per)) for i in range(0, n, per)]


def _grouped(a, rows, groups, width):
    """(rows, groups*width) -> (groups, rows, width) view."""
    return a.reshape(rows, groups, width).transpose(1, 0, 2)


def conv2d_forward(x, w, b, strides, pads, dilation, groups, activation="linear"):
    _ready()
    act = _act(activation)
    x, w = _f32(x, "x"), _f32(w, "w")
    n, oh, ow, oc = _conv_shapes(x, w, strides, pads, dilation, groups)
    if b is not None:
        b = _vec(b, "b", oc)
    y = _empty((n, oh, ow, oc), cp.float32)
    args = (tuple(strides), tuple(pads), tuple(dilation))
    if _is_depthwise(x.shape, w.shape, groups):
        _K.depthwise_forward(_p(x), _p(w), _p(b), _p(y), tuple(x.shape), tuple(w.shape), *args, _s())
        if act:
            _K.bias_act_forward(_p(y), 0, act, _p(y), n * oh * ow, oc, _s())
        return y
    kh, kw, cin_g, _ = w.shape
    k = kh * kw * cin_g
    if groups == 1 and _is_pointwise(w.shape, strides, pads):
        cp.matmul(x.reshape(-1, x.shape[3]), w.reshape(k, oc), out=y.reshape(-1, oc))
    else:
        rows = oh * ow
        for i0, i1 in _chunks(n, rows, groups * k):
            xs = x[i0:i1]
            col = _empty(((i1 - i0) * rows, groups * k), cp.float32)
            _K.im2col(_p(xs), _p(col), tuple(xs.shape), tuple(w.shape), *args, groups, _s())
            yc = y[i0:i1].reshape(-1, oc)
            if groups == 1:
                cp.matmul(col, w.reshape(k, oc), out=yc)
            else:
                cg = oc // groups
                yg = cp.matmul(_grouped(col, col.shape[0], groups, k), _grouped(w.reshape(k, oc), k, groups, cg))
                yc[...] = yg.transpose(1, 0, 2).reshape(-1, oc)
    if b is not None or act:
        _K.bias_act_forward(_p(y), _p(b), act, _p(y), n * oh * ow, oc, _s())
    return y


def conv2d_backward_data(dy, w, x_shape, strides, pads, dilation, groups):
    _ready()
    dy, w = _f32(dy, "dy"), _f32(w, "w")
    x_shape = tuple(int(v) for v in x_shape)
    _rank(w, "w", 4, "(KH, KW, Cin/groups, Cout)")
    out = tuple(_K.conv_output_shape(x_shape, tuple(w.shape), tuple(strides), tuple(pads),
                                     tuple(dilation), int(groups)))
    _shape(dy, "dy", out)
    n, oh, ow, oc = out
    dx = _empty(x_shape, cp.float32)
    args = (tuple(strides), tuple(pads), tuple(dilation))
    if _is_depthwise(x_shape, w.shape, groups):
        _K.depthwise_backward_data(_p(dy), _p(w), _p(dx), x_shape, tuple(w.shape), *args, _s())
        return dx
    kh, kw, cin_g, _ = w.shape
    k = kh * kw * cin_g
    w2 = w.reshape(k, oc)
    if groups == 1 and _is_pointwise(w.shape, strides, pads):
        cp.matmul(dy.reshape(-1, oc), w2.T, out=dx.reshape(-1, x_shape[3]))
        return dx
    rows, cg = oh * ow, oc // groups
    for i0, i1 in _chunks(n, rows, groups * k):
        dyc = dy[i0:i1].reshape(-1, oc)
        if groups == 1:
            dcol = cp.matmul(dyc, w2.T)
        else:
            dcol_g = cp.matmul(_grouped(dyc, dyc.shape[0], groups, cg),
                               _grouped(w2, k, groups, cg).transpose(0, 2, 1))
            dcol = cp.ascontiguousarray(dcol_g.transpose(1, 0, 2)).reshape(dyc.shape[0], groups * k)
        dxs = dx[i0:i1]
        _K.col2im(_p(dcol), _p(dxs), tuple(dxs.shape), tuple(w.shape), *args, groups, _s())
    return dx


def conv2d_backward_weights(dy, x, w_shape, strides, pads, dilation, groups, with_bias):
    _ready()
    dy, x = _f32(dy, "dy"), _f32(x, "x")
    w_shape = tuple(int(v) for v in w_shape)
    _rank(x, "x", 4, "(N, H, W, C)")
    out = tuple(_K.conv_output_shape(tuple(x.shape), w_shape, tuple(strides), tuple(pads),
                                     tuple(dilation), int(groups)))
    _shape(dy, "dy", out)
    n, oh, ow, oc = out
    db = _empty((oc,), cp.float32) if with_bias else None
    args = (tuple(strides), tuple(pads), tuple(dilation))
    if _is_depthwise(x.shape, w_shape, groups):
        dw = _empty(w_shape, cp.float32)
        _K.depthwise_backward_weights(_p(dy), _p(x), _p(dw), _p(db), tuple(x.shape), w_shape, *args, _s())
        return dw, db
    kh, kw, cin_g, _ = w_shape
    k, rows, cg = kh * kw * cin_g, oh * ow, oc // groups
    dy2 = dy.reshape(-1, oc)
    if groups == 1 and _is_pointwise(w_shape, strides, pads):
        dw = cp.matmul(x.reshape(-1, x.shape[3]).T, dy2)
    else:
        dw = None
        for i0, i1 in _chunks(n, rows, groups * k):
            xs = x[i0:i1]
            col = _empty(((i1 - i0) * rows, groups * k), cp.float32)
            _K.im2col(_p(xs), _p(col), tuple(xs.shape), w_shape, *args, groups, _s())
            dyc = dy2[i0 * rows:i1 * rows]
            if groups == 1:  # a plain 2-D GEMM: cuBLAS reads col transposed in place
                part = cp.matmul(col.T, dyc)
            else:
                part = cp.matmul(_grouped(col, col.shape[0], groups, k).transpose(0, 2, 1),
                                 _grouped(dyc, dyc.shape[0], groups, cg)).transpose(1, 0, 2)
            dw = part if dw is None else dw + part
    dw = cp.ascontiguousarray(dw).reshape(w_shape)
    if with_bias:
        _K.column_sums(_p(dy2), _p(db), 1, n * rows, oc, 1.0, _s())
    return dw, db


def dense_forward(x, w, b, activation="linear"):
    _ready()
    act = _act(activation)
    x, w = _f32(x, "x"), _f32(w, "w")
    _rank(x, "x", 2, "(N, K)")
    _rank(w, "w", 2, "(K, M)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"dense: x {tuple(x.shape)} and w {tuple(w.shape)} disagree on K")
    y = cp.matmul(x, w)
    if b is not None or act != 0:  # bias and activation in one pass
        b = None if b is None else _vec(b, "b", w.shape[1])
        _K.bias_act_forward(_p(y), 0 if b is None else _p(b), act, _p(y), y.shape[0], y.shape[1], _s())
    return y


def dense_backward(dy, x, w):
    _ready()
    dy, x, w = _f32(dy, "dy"), _f32(x, "x"), _f32(w, "w")
    _rank(x, "x", 2, "(N, K)")
    _rank(w, "w", 2, "(K, M)")
    _shape(dy, "dy", (x.shape[0], w.shape[1]))
    db = _empty((w.shape[1],), cp.float32)
    _K.column_sums(_p(dy), _p(db), 1, dy.shape[0], dy.shape[1], 1.0, _s())
    return cp.matmul(dy, w.T), cp.matmul(x.T, dy), db


from ._cuda_ops import *  # noqa: E402,F401,F403  (pooling, norm, activation, softmax, optimizers)
