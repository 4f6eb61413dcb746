"""Paired timing of two builds of fastconv._C in ONE process, calls alternating A, B, B, A...

On the shared 2-vCPU machine, one process per build (alternating) moved unchanged code by up
to +-25% between processes (load, the SMT sibling's cache use); calls of the two builds
interleaved in one process see the same load. Each build's .so is loaded under its own
module name (a._C, b._C: loaded twice under one name, Python hands back the first module).

  python benchmarks/ab_two_builds.py A.so B.so PASS "N,HW,C;N,HW,C" REPS
  PASS: dwf / dwd / dww (depthwise 3x3 'same' forward, backward data, backward weights + db),
        dwb (dwd then dww: the depthwise backward as the sweep's family runs it),
        cf (3x3 'same' conv forward, C in and out)
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


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    assert a is not b
    what, reps = sys.argv[3], int(sys.argv[5])
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
            "dwb": lambda k: (k.conv2d_backward_data(dy, wd, x.shape, one, pads, one, c),
                              k.conv2d_backward_weights(dy, x, wd.shape, one, pads, one, c, True)),
        }
        if what == "cf":
            w = rng.standard_normal((3, 3, c, c), dtype=np.float32)
            calls["cf"] = lambda k: k.conv2d_forward(x, w, bias, one, pads, one, 1)
        f = calls[what]
        ta, tb = [], []
        f(a), f(b)
        for i in range(reps):
            for k, ts in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
                t = time.thread_time()
                f(k)
                ts.append(time.thread_time() - t)
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        print(f"N={n} {hw}x{hw} C={c} {what}: A {ma:.3f} B {mb:.3f} ratio {mb / ma:.3f}"
              f"  (min A {min(ta) * 1e3:.3f} B {min(tb) * 1e3:.3f}) ms", flush=True)


if __name__ == "__main__":
    main()
