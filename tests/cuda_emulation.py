"""Runs fastconv's cuda backend on the CPU: tests/fake_cupy.py stands in for CuPy and
`fake_kernels()` for fastconv._cuda, each kernel computed on the host with the same FC_HD
index functions the GPU runs (fastconv._C._index_check), the NumPy oracle for reductions and
fastconv._C for the fused optimizer updates. What runs for real is every line of Python
between the API and the kernels: argument order, buffer shapes, transposes, chunking, and
which values cross between host and device (counted in fake_cupy.traffic)."""
import functools
import sys
import types

import numpy as np

import fastconv
from fastconv import _C
from fastconv import cuda as fcuda
from fastconv import reference as R
from fastconv.reference._checks import conv_geometry, pool_geometry

import fake_cupy

IC = fastconv._C._index_check


def _host_args(fn):
    """The kernel sees host views of the fake device arrays it is given as "pointers"."""
    @functools.wraps(fn)
    def call(*args):
        return fn(*(a._a if isinstance(a, fake_cupy.ndarray) else a for a in args))
    return call


def fake_kernels():
    """fastconv._cuda's functions computed on the host: the FC_HD index functions the GPU runs
    (fastconv._C._index_check), the oracle for reductions, _C for the fused optimizers."""
    k = types.SimpleNamespace()
    k.conv_output_shape = lambda xs, ws, s, p, d, g: (lambda G: [G.n, G.oh, G.ow, G.oc])(conv_geometry(xs, ws, s, p, d, g))
    k.pool_output_shape = lambda xs, pool, s, p, what: (lambda G: [G.n, G.oh, G.ow, G.c])(pool_geometry(xs, pool, s, p, what))

    def put(out, val):
        out[...] = np.asarray(val).reshape(out.shape)
    k.im2col = lambda x, col, xs, ws, s, p, d, g, st: put(col, IC.im2col(x, ws, s, p, d, g))
    k.col2im = lambda dcol, dx, xs, ws, s, p, d, g, st: put(dx, IC.col2im(dcol, xs, ws, s, p, d, g))
    k.depthwise_forward = lambda x, w, b, y, xs, ws, s, p, d, st: put(y, IC.depthwise_forward(x, w, b, s, p, d))
    k.depthwise_backward_data = lambda dy, w, dx, xs, ws, s, p, d, st: put(dx, IC.depthwise_backward_data(dy, w, xs, s, p, d))

    def dw_bwd(dy, x, dw, db, xs, ws, s, p, d, st):
        put(dw, IC.depthwise_backward_weights(dy, x, ws, s, p, d))
        if db is not None:
            put(db, dy.reshape(-1, ws[3]).sum(0))
    k.depthwise_backward_weights = dw_bwd
    k.column_sums = lambda a, out, planes, rows, cols, scale, st: put(out, a.reshape(planes, rows, cols).sum(1) * scale)
    k.max_pool2d_forward = lambda x, y, xs, pool, s, p, st: put(y, IC.max_pool2d_forward(x, pool, s, p))
    k.max_pool2d_backward = lambda dy, x, dx, xs, pool, s, p, st: put(dx, IC.max_pool2d_backward(dy, x, pool, s, p))
    k.avg_pool2d_forward = lambda x, y, xs, pool, s, p, st: put(y, IC.avg_pool2d_forward(x, pool, s, p))
    k.avg_pool2d_backward = lambda dy, dx, xs, pool, s, p, st: put(dx, IC.avg_pool2d_backward(dy, xs, pool, s, p))
    k.global_avg_pool2d_forward = lambda x, y, n, hw, c, st: put(y, x.reshape(n, hw, c).mean(1))
    k.global_avg_pool2d_backward = lambda dy, dx, n, hw, c, st: put(dx, np.repeat(dy[:, None, :] / hw, hw, 1))

    def bias_act_fwd(x, b, act, y, m, c, st):
        put(y, IC.act_apply(x.reshape(m, c) + (0 if b is None else b), act))
    k.bias_act_forward = bias_act_fwd

    def bias_act_bwd(dy, y, act, dz, db, m, c, st):
        put(dz, dy.reshape(m, c) * IC.act_grad_from_output(y.reshape(m, c), act))
        if db is not None:
            put(db, dz.reshape(m, c).sum(0))
    k.bias_act_backward = bias_act_bwd

    def bn_train(x, g, b, eps, y, mean, var, inv, m, c, st):
        for out, val in zip((y, mean, var, inv), R.batch_norm_forward_train(x.reshape(m, c), g, b, eps)):
            put(out, val)
    k.batch_norm_forward_train = bn_train
    k.batch_norm_forward_inference = lambda x, g, b, mu, var, eps, y, m, c, st: put(
        y, R.batch_norm_forward_inference(x.reshape(m, c), g, b, mu, var, eps))

    def bn_bwd(dy, x, g, mu, inv, dx, dg, db, m, c, st):
        for out, val in zip((dx, dg, db), R.batch_norm_backward(dy.reshape(m, c), x.reshape(m, c), g, mu, inv)):
            put(out, val)
    k.batch_norm_backward = bn_bwd
    k.softmax_forward = lambda x, y, n, c, st: put(y, R.softmax_forward(x))
    k.softmax_backward = lambda dy, y, dx, n, c, st: put(dx, R.softmax_backward(dy, y))

    def sce_fwd(logits, labels, loss, probs, n, c, st):
        for out, val in zip((loss, probs), R.softmax_cross_entropy_forward(logits, labels)):
            put(out, val)
    k.softmax_cross_entropy_forward = sce_fwd
    k.softmax_cross_entropy_backward = lambda probs, labels, dloss, dl, n, c, st: put(
        dl, R.softmax_cross_entropy_backward(probs, labels, dloss))
    k.sgd_update = lambda w, g, vel, n, lr, mom, nesterov, decay, st: _C.sgd_update(
        w, g, vel, lr, mom, nesterov, decay)
    k.adam_update = lambda w, g, m, v, v_hat, n, alpha, b1, b2, eps, decay, st: _C.adam_update(
        w, g, m, v, alpha, b1, b2, eps, v_hat, decay)
    return k


def install(monkeypatch):
    """Make `fastconv.set_backend("cuda")` run on fake_cupy and fake_kernels() for this test."""
    kernels = fake_kernels()
    for name, fn in vars(kernels).items():
        setattr(kernels, name, _host_args(fn))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(fcuda, "cp", fake_cupy)
    monkeypatch.setattr(fcuda, "_K", kernels)
    monkeypatch.setattr(fcuda, "_p", lambda a: a)  # the "pointer" is the array itself
    monkeypatch.setattr(fcuda, "_s", lambda: 0)
    fake_cupy.reset_traffic()
    return fake_cupy


def host(a):
    """A fake device array (or a structure of them) as NumPy."""
    if isinstance(a, (list, tuple)):
        return type(a)(host(v) for v in a)
    return a.get() if isinstance(a, fake_cupy.ndarray) else a
