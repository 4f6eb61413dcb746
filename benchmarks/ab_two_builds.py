"""Paired timing of two builds of fastconv._C in ONE process, calls alternating A, B, B, A...

On the shared 2-vCPU machine, one process per build (alternating) moved unchanged code by up
to +-25% between processes (load, the SMT sibling's cache use); calls of the two builds
interleaved in one process see the same load. Each build's .so is loaded under its own
module name (a._C, b._C: loaded twice under one name, Python hands back the first module).

  python benchmarks/ab_two_builds.py A.so B.so PASS "N,HW,C;N,HW,C" REPS [ring]
  PASS: dwf / dwd / dww (depthwise 3x3 'same' forward, backward data, backward weights + db),
        dwb (dwd then dww: the depthwise backward as the sweep's family runs it),
        dwf1 / dwf2 (depthwise 3x3 forward + bias + relu6 as MobileNet's inference plan calls
        it: stride 1 'same', stride 2 with the fused ZeroPadding2D's pads (0, 1, 0, 1)),
        cf (3x3 'same' conv forward, C in and out)
  ring: each call's output is a block of the output pool that is out of cache, as in a
        network's plan (the last 24 outputs are kept alive, so the pool hands back one
        written 24 calls ago), and x is rewritten before each call (a previous layer's
        output, in cache). Without it the pool hands back the block of two calls ago.
Copy each build's fastconv/_C*.so somewhere first (the build overwrites it). Prints per case
the medians of REPS thread-CPU-time calls of each build, B / A, and the minima.
"""
import importlib.machinery
import importlib.util
import statistics
import sys
import time

import numpy as np


def load(path, tag):
    name = tag + "._C"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def alternate(call, a, b, reps, prepare=None, keep=None):
    """Times call(a) and call(b) in thread CPU time, alternating A, B, B, A... so that both
    builds see the same load; returns the two lists of seconds. prepare() runs untimed before
    each call, keep(result) untimed after it."""
    ta, tb = [], []
    for i in range(reps):
        for k, ts in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            if prepare is not None:
                prepare()
            t = time.thread_time()
            y = call(k)
            ts.append(time.thread_time() - t)
            if keep is not None:
                keep(y)
    return ta, tb


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    assert a is not b
    what, reps = sys.argv[3], int(sys.argv[5])
    ring = len(sys.argv) > 6 and sys.argv[6] == "ring"
    kept = []
    for case in sys.argv[4].split(";"):
        n, hw, c = (int(v) for v in case.split(","))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        dy = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        one, pads = (1, 1), (1, 1, 1, 1)
        wd = rng.standard_normal((3, 3, 1, c), dtype=np.float32)
        bias = rng.standard_normal(c, dtype=np.float32)
        calls = {
            "dwf": lambda k: k.conv2d_forward(x, wd, bias, one, pads, one, c),
            "dwd": lambda k: k.conv2d_backward_data(dy, wd, x.shape, one, pads, one, c),
            "dww": lambda k: k.conv2d_backward_weights(dy, x, wd.shape, one, pads, one, c, True),
            "dwf1": lambda k: k.conv2d_forward(x, wd, bias, one, pads, one, c, "relu6"),
            "dwf2": lambda k: k.conv2d_forward(x, wd, bias, (2, 2), (0, 1, 0, 1), one, c, "relu6"),
            "dwb": lambda k: (k.conv2d_backward_data(dy, wd, x.shape, one, pads, one, c),
                              k.conv2d_backward_weights(dy, x, wd.shape, one, pads, one, c, True)),
        }
        if what == "cf":
            w = rng.standard_normal((3, 3, c, c), dtype=np.float32)
            calls["cf"] = lambda k: k.conv2d_forward(x, w, bias, one, pads, one, 1)
        f = calls[what]
        x0 = x.copy()

        def keep(y):
            kept.append(y)
            del kept[:-24]

        f(a), f(b)
        ta, tb = alternate(f, a, b, reps, (lambda: np.copyto(x, x0)) if ring else None,
                           keep if ring else None)
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        print(f"N={n} {hw}x{hw} C={c} {what}{' ring' if ring else ''}: A {ma:.3f} B {mb:.3f} ratio {mb / ma:.3f}"
              f"  (min A {min(ta) * 1e3:.3f} B {min(tb) * 1e3:.3f}) ms", flush=True)


if __name__ == "__main__":
    main()
