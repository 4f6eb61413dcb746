"""Paired A/B of depthwise 3x3 'same' passes (the idea and loader of ab_two_builds.py), 1
thread, thread CPU time, calls alternating A, B, B, A in one process, with x (and dy) cycled
through COPIES (default 8) copies at 16 + 512 * i bytes past a 4 KiB page: each rep's two calls
read the same copy, so both builds read x from L3 as often (a network's previous output), and
meet the same address relations of output and input modulo 4 KiB. COPIES=1: the same x every
call (in cache, as bench_sweep.py's calls).
  python benchmarks/ab_dw_copies.py A.so B.so REPS "pass:N,HW,C;..."
  pass: fwd (bias), dwd, dww (+ db), bwd (dwd then dww: the sweep's depthwise 3x3 bwd),
        dwf1 / dwf2 (+ bias + relu6, stride 1 'same' / stride 2 pads (0, 1, 0, 1), as
        ab_two_builds.py)"""
import os, statistics, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from ab_two_builds import load, alternate

a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
a.set_num_threads(1); b.set_num_threads(1)
reps = int(sys.argv[3])
for case in sys.argv[4].split(";"):
    what, dims = case.split(":")
    n, hw, c = (int(v) for v in dims.split(","))
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
    # COPIES copies of x, 16 + 512 * i bytes past a 4 KiB page (NumPy's large arrays start 16
    # bytes past a 64-byte line). With one x, reused every call, a first version of
    # depthwise_regtile.h measured 0.99-1.24x before's at N=1 112x112x64, with x cycled through
    # 8 copies 1.4-1.6x (consistently): each build must be judged with x out of L2 too.
    def copies(a):
        out = []
        for i in range(int(os.environ.get('COPIES', '8'))):
            raw = np.empty(a.size + 4096, np.float32)
            off = (-raw.ctypes.data % 4096 + 16 + 512 * i) // 4
            out.append(raw[off:off + a.size].reshape(a.shape)); out[-1][...] = a
        return out
    xs = copies(x0)
    cur, sel = [0], [0]
    def X():
        return xs[sel[0]]
    def D():
        return dys[sel[0]]
    wd = rng.standard_normal((3, 3, 1, c), dtype=np.float32)
    bias = rng.standard_normal(c, dtype=np.float32)
    one, pads = (1, 1), (1, 1, 1, 1)
    if what == "dwf2":
        oh = hw // 2
        dy = rng.standard_normal((n, oh, oh, c), dtype=np.float32)
    else:
        dy = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
    calls = {
        "fwd": lambda k: k.conv2d_forward(X(), wd, bias, one, pads, one, c),
        "dwd": lambda k: k.conv2d_backward_data(D(), wd, x0.shape, one, pads, one, c),
        "dww": lambda k: k.conv2d_backward_weights(D(), X(), wd.shape, one, pads, one, c, True),
        "bwd": lambda k: (k.conv2d_backward_data(D(), wd, x0.shape, one, pads, one, c),
                          k.conv2d_backward_weights(D(), X(), wd.shape, one, pads, one, c, True)),
        "dwf1": lambda k: k.conv2d_forward(X(), wd, bias, one, pads, one, c, "relu6"),
        "dwf2": lambda k: k.conv2d_forward(X(), wd, bias, (2, 2), (0, 1, 0, 1), one, c, "relu6"),
    }
    dys = copies(dy)
    g = calls[what]
    def f(k):  # the same copy for the two calls of a rep (A then B, or B then A)
        sel[0] = cur[0] // 2
        cur[0] = (cur[0] + 1) % (2 * len(xs))
        return g(k)
    f(a), f(b)
    ta, tb = alternate(f, a, b, reps)
    ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
    print(f"{what} N={n} {hw}x{hw} C={c}: A {ma:.3f} B {mb:.3f} ratio {mb / ma:.3f}"
          f"  (min A {min(ta) * 1e3:.3f} B {min(tb) * 1e3:.3f}) ms", flush=True)
