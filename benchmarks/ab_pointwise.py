"""Paired A/B of two fastconv._C builds on the 1x1 stride-2 sweep families, one process.
usage: python benchmarks/ab_pointwise.py A.so B.so REPS "fwd 256 112 1" "bwdd 256 56 3" "bwdw 256 112 1" ...
(PASS N HW C; 1x1 Cin = Cout = C, stride 2, or stride 1 where PASS ends in 1: "fwd1 ...")
Calls as the sweep makes them (F.conv2d -> conv2d_forward; kernels().conv2d_backward_data;
conv2d_backward(need_dx=False) -> conv2d_backward_weights with need_db=True), 1 thread,
thread CPU time, A B B A ...; also times np.copyto of the sweep's traffic alternately (roofline).
"""
import math, statistics, sys, time
import numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from ab_two_builds import load

a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
for m in (a, b):
    m.set_num_threads(1)
reps = int(sys.argv[3])
for spec in sys.argv[4:]:
    p, n, hw, c = spec.split()
    n, hw, c = int(n), int(hw), int(c)
    s = 1 if p.endswith("1") else 2
    p = p.rstrip("1")
    oh = -(-hw // s)
    xs, ws, ys = (n, hw, hw, c), (1, 1, c, c), (n, oh, oh, c)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    bias = rng.standard_normal((c,), dtype=np.float32)
    dy = rng.standard_normal(ys, dtype=np.float32)
    st, pads, dil = (s, s), (0, 0, 0, 0), (1, 1)
    if p == "fwd":
        f = lambda k: k.conv2d_forward(x, w, bias, st, pads, dil, 1)
    elif p == "bwdd":
        f = lambda k: k.conv2d_backward_data(dy, w, xs, st, pads, dil, 1)
    else:
        f = lambda k: k.conv2d_backward_weights(dy, x, ws, st, pads, dil, 1, True)
    traffic = 4 * (math.prod(xs) + math.prod(ws) + math.prod(ys))
    ne = max(int(traffic // 8), 256)
    key = round(8 * math.log2(ne)); ne = int(2 ** (key / 8))
    src = np.ones(ne, np.float32); dst = np.empty_like(src)
    ra, rb = f(a), f(b)
    if p == "bwdw":
        ok = np.allclose(ra[0], rb[0], rtol=1e-4, atol=1e-3 * np.abs(ra[0]).max())
    else:
        ok = np.allclose(ra, rb, rtol=1e-4, atol=1e-5 * np.abs(ra).max())
    ta, tb, tc = [], [], []
    for i in range(reps):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for k, ts in order:
            t = time.thread_time(); f(k); ts.append(time.thread_time() - t)
        t = time.thread_time(); np.copyto(dst, src); tc.append(time.thread_time() - t)
    ma, mb, mc = (statistics.median(v) * 1e3 for v in (ta, tb, tc))
    mc = max(mc, 2.0 * n * oh * oh * c * c / 105e9 * 1e3)  # the sweep's ideal: copy or sgemm
    print(f"{p:5s} s{s} N={n} {hw}x{hw} C={c}: A {ma:.4f} B {mb:.4f} B/A {mb/ma:.3f} | copy {mc:.4f} "
          f"roof A {mc/ma:.2f} B {mc/mb:.2f} | min A {min(ta)*1e3:.4f} B {min(tb)*1e3:.4f}{'' if ok else ' MISMATCH'}",
          flush=True)
