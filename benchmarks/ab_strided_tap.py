"""Paired timing of strided convs (stride 2, 'same', KxK, default 3x3: issue 18 item 2's 56x56
64->128 layer and its neighbours) for two builds of fastconv._C in ONE process, 1 thread, calls
alternating (ab_two_builds.alternate), thread CPU time; also one build against itself under two
settings (A.so:auto B.so:im2col: the tap products against the col path).

  python benchmarks/ab_strided_tap.py A.so[:algo[:workspace_bytes]] B.so[:algo[:ws]] PASSES REPS [shapes]
  PASSES: comma list of fwd, bwdd, bwdw.  shapes: "N,H,Cin,Cout[,K];..." (default 32,56,64,128)
Prints per case the medians of REPS calls of each side, B / A, the minima, and the largest
difference of the two results relative to their magnitude (0: the same code ran). The same .so
named twice is one library (its settings shared): the algorithm is set before every call, but a
workspace limit only sticks per side with two different files."""
import sys, statistics, time
import numpy as np
sys.path.insert(0, __import__("os").path.dirname(__file__))
from ab_two_builds import load, alternate
def spec(s, tag):
    path, _, rest = s.partition(":")
    algo, _, ws = rest.partition(":")
    m = load(path, tag); m.set_num_threads(1)
    if ws: m.set_workspace_limit(int(ws))
    return m, algo or "auto"
a, aalgo = spec(sys.argv[1], "a"); b, balgo = spec(sys.argv[2], "b")
passes = sys.argv[3].split(","); reps = int(sys.argv[4])
shapes = sys.argv[5] if len(sys.argv) > 5 else "32,56,64,128"
print(f"A={sys.argv[1]} B={sys.argv[2]} isa={a.isa_level()}/{b.isa_level()}")
for case in shapes.split(";"):
    vals = [int(v) for v in case.split(",")]
    n, h, cin, cout = vals[:4]; kk = vals[4] if len(vals) > 4 else 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, h, cin), dtype=np.float32)
    w = rng.standard_normal((kk, kk, cin, cout), dtype=np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    oh = (h + 1) // 2
    tot = max(0, oh * 2 - 2 + kk - h)
    pads = (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2)
    st, dil = (2, 2), (1, 1)
    dy = rng.standard_normal((n, oh, oh, cout), dtype=np.float32)
    calls = {
        "fwd": lambda k: k.conv2d_forward(x, w, bias, st, pads, dil, 1),
        "bwdd": lambda k: k.conv2d_backward_data(dy, w, x.shape, st, pads, dil, 1),
        "bwdw": lambda k: k.conv2d_backward_weights(dy, x, w.shape, st, pads, dil, 1, True),
    }
    algo = {id(a): aalgo, id(b): balgo}
    for p in passes:
        def call(k, f=calls[p]):
            k.set_conv_algorithm(algo[id(k)])
            return f(k)
        ra, rb = call(a), call(b)
        ra = ra[0] if isinstance(ra, tuple) else ra; rb = rb[0] if isinstance(rb, tuple) else rb
        err = float(np.max(np.abs(np.asarray(ra) - np.asarray(rb))) / (np.max(np.abs(ra)) + 1e-30))
        ta, tb = alternate(call, a, b, reps)
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"  N={n} {h}x{h} {cin}->{cout} k{kk} {p:<5} A {ma*1e3:8.3f} ms  B {mb*1e3:8.3f} ms  B/A {mb/ma:.3f}"
              f"  (min {min(ta)*1e3:.3f} / {min(tb)*1e3:.3f})  maxrel {err:.1e}", flush=True)
