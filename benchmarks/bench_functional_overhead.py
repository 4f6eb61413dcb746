"""Per-call cost of the fastconv.functional wrappers: each entry point the sweep uses against
its bare fastconv._C call, on a tiny input, so that the difference is the wrapper.

  python benchmarks/bench_functional_overhead.py [OLD_FUNCTIONAL_DIR] [--samples S] [--batch B]
  python benchmarks/bench_functional_overhead.py OLD_FUNCTIONAL_DIR --sweep "FAMILY:N,HW,C;..." [--samples S]

Every sample times B calls in thread CPU time (1 thread); the bare call, the wrapper under
test and (given OLD_FUNCTIONAL_DIR, a copy of another version's fastconv/functional, e.g.
`git archive main fastconv/functional | tar -x -C /tmp/old --strip-components=1` then
/tmp/old/functional) the old wrapper alternate sample by sample in ONE process (rotating order),
so all three see the same load. It is loaded as the package fastconv._functional_old (its
`..backend` is this tree's, one _C for both). Prints per entry point the medians in us per
call: bare, old - bare, new - bare, then the same of the minima (the least disturbed samples).

--sweep: bench_sweep.py's own cases (its make(), its arrays, its call), one call per sample,
bench_sweep's module-level F set to the old or the new functional before each call, the two
alternating (A, B, B, A...): per case the medians in us and new / old.
"""
import argparse
import importlib.util
import statistics
import sys
import time

import numpy as np

import fastconv
from fastconv import _C
from fastconv import functional as F


def load_old(path):
    name = "fastconv._functional_old"
    spec = importlib.util.spec_from_file_location(name, path + "/__init__.py", submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def cases(n=1, hw=8, c=3):
    """(name, f(FunctionalModule) -> call, bare call) on N=n hw x hw C=c (dense: (n*hw, c*hw))."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, w, b, dy = r(n, hw, hw, c), r(3, 3, c, c), r(c), r(n, hw, hw, c)
    wd = r(3, 3, c, 1)
    same3 = F.resolve_padding("same", (hw, hw), (3, 3), (1, 1))
    one, nopad = (1, 1), (0, 0, 0, 0)
    xs, ph = x.shape, (n, hw // 2, hw // 2, c)
    dyp = r(*ph)
    _, am = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), nopad)
    gamma, beta = r(c) ** 2 + 0.5, r(c)
    _, mean, _, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3)
    y_relu = _C.bias_act_forward(x, b, "relu")
    x2, dy2 = r(n * hw, c * hw), r(n * hw, c * hw)
    y_sm = _C.softmax_forward(x2)
    wf, bf, dyf = r(c * hw, 16), r(16), r(n * hw, 16)
    wg = wd.reshape(3, 3, 1, c)

    def dw_bwd():
        _C.conv2d_backward_data(dy, wg, xs, one, same3, one, c)
        return _C.conv2d_backward_weights(dy, x, wg.shape, one, same3, one, c, True)
    return [
        ("conv2d", lambda M: lambda: M.conv2d(x, w, b, strides=1, padding="same"),
         lambda: _C.conv2d_forward(x, w, b, one, same3, one, 1)),
        ("conv2d tuples (layer)", lambda M: lambda: M.conv2d(x, w, b, activation="relu", strides=(1, 1),
                                                             padding="same", dilation_rate=(1, 1)),
         lambda: _C.conv2d_forward(x, w, b, one, same3, one, 1, "relu")),
        ("conv2d_backward (dw)", lambda M: lambda: M.conv2d_backward(dy, x, w, strides=1, padding="same", need_dx=False),
         lambda: _C.conv2d_backward_weights(dy, x, w.shape, one, same3, one, 1, True)),
        ("depthwise_conv2d", lambda M: lambda: M.depthwise_conv2d(x, wd, b, padding="same"),
         lambda: _C.conv2d_forward(x, wg, b, one, same3, one, c)),
        ("depthwise_conv2d_backward", lambda M: lambda: M.depthwise_conv2d_backward(dy, x, wd, padding="same"),
         dw_bwd),
        ("max_pool2d_with_argmax", lambda M: lambda: M.max_pool2d_with_argmax(x, 2),
         lambda: _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), nopad)),
        ("max_pool2d_backward_argmax", lambda M: lambda: M.max_pool2d_backward_argmax(dyp, am, xs, 2),
         lambda: _C.max_pool2d_backward_argmax(dyp, am, xs, (2, 2), (2, 2), nopad)),
        ("max_pool2d_backward", lambda M: lambda: M.max_pool2d_backward(dyp, x, 2),
         lambda: _C.max_pool2d_backward(dyp, x, (2, 2), (2, 2), nopad)),
        ("avg_pool2d", lambda M: lambda: M.avg_pool2d(x, 2),
         lambda: _C.avg_pool2d_forward(x, (2, 2), (2, 2), nopad)),
        ("avg_pool2d_backward", lambda M: lambda: M.avg_pool2d_backward(dyp, xs, 2),
         lambda: _C.avg_pool2d_backward(dyp, xs, (2, 2), (2, 2), nopad)),
        ("batch_norm_train", lambda M: lambda: M.batch_norm_train(x, gamma, beta),
         lambda: _C.batch_norm_forward_train(x, gamma, beta, 1e-3)),
        ("batch_norm_backward", lambda M: lambda: M.batch_norm_backward(dy, x, gamma, mean, inv_std),
         lambda: _C.batch_norm_backward(dy, x, gamma, mean, inv_std)),
        ("bias_activation relu", lambda M: lambda: M.bias_activation(x, b, "relu"),
         lambda: _C.bias_act_forward(x, b, "relu")),
        ("bias_activation_backward", lambda M: lambda: M.bias_activation_backward(dy, y_relu, "relu", True),
         lambda: _C.bias_act_backward(dy, y_relu, "relu", True)),
        ("softmax", lambda M: lambda: M.softmax(x2), lambda: _C.softmax_forward(x2)),
        ("softmax_backward", lambda M: lambda: M.softmax_backward(dy2, y_sm), lambda: _C.softmax_backward(dy2, y_sm)),
        ("dense", lambda M: lambda: M.dense(x2, wf, bf), lambda: _C.dense_forward(x2, wf, bf)),
        ("dense_backward", lambda M: lambda: M.dense_backward(dyf, x2, wf), lambda: _C.dense_backward(dyf, x2, wf)),
    ]


def per_call(f, batch):
    t = time.thread_time()
    for _ in range(batch):
        f()
    return (time.thread_time() - t) / batch


def sweep_cases(old, spec, samples):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import bench_sweep
    fams = dict(bench_sweep.all_families())
    for item in spec.split(";"):
        fam, dims = item.rsplit(":", 1)
        n, hw, c = (int(v) for v in dims.split(","))
        call = fams[fam](n, hw, c)[3]()
        for M in (F, old, F, old):
            bench_sweep.F = M
            call()
        ts = {"old": [], "new": []}
        for i in range(samples):
            for tag in (("old", "new") if i % 2 == 0 else ("new", "old")):
                bench_sweep.F = old if tag == "old" else F
                t = time.thread_time()
                call()
                ts[tag].append(time.thread_time() - t)
        bench_sweep.F = F
        mo, mn = (statistics.median(ts[k]) * 1e6 for k in ("old", "new"))
        print(f"{fam:24s} N={n} {hw}x{hw} C={c}: old {mo:8.1f} us  new {mn:8.1f} us  new/old {mn / mo:.3f}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old", nargs="?")
    p.add_argument("--samples", type=int, default=61)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--sweep")
    a = p.parse_args()
    fastconv.set_num_threads(1)
    if a.sweep:
        return sweep_cases(load_old(a.old), a.sweep, a.samples)
    mods = [F] + ([load_old(a.old)] if a.old else [])
    print(f"us per call, medians of {a.samples} samples of {a.batch} calls (thread CPU time, 1 thread)")
    head = f"{'bare':>7s} " + ("  old-bare" if a.old else "") + "  new-bare"
    print(f"{'entry point':28s} {head}   | minima: {head}")
    for name, make, bare in cases():
        calls = [bare] + [make(M) for M in reversed(mods)]  # bare, old, new
        ts = [[] for _ in calls]
        for f in calls:
            per_call(f, 20)
        for i in range(a.samples):
            k = i % len(calls)
            for j in list(range(k, len(calls))) + list(range(k)):
                ts[j].append(per_call(calls[j], a.batch))
        med = [statistics.median(t) * 1e6 for t in ts]
        low = [min(t) * 1e6 for t in ts]
        extra = "".join(f" {m - med[0]:9.2f}" for m in med[1:])
        extra_min = "".join(f" {m - low[0]:9.2f}" for m in low[1:])
        print(f"{name:28s} {med[0]:7.2f} {extra}   | {low[0]:7.2f} {extra_min}", flush=True)


if __name__ == "__main__":
    main()
