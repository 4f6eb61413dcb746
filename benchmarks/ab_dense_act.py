"""Paired timing of two builds of fastconv._C (one process, calls alternating, 1 thread, thread
CPU time; benchmarks/ab_two_builds.py) on one-row dense_forward (the batch-1 classifier's
gemv_rows) and on bias + sigmoid / tanh, alone and fused into LeNet-5's convs. Prints per
case the two medians (us), B / A and whether the outputs are bit for bit equal.

    PYTHONPATH=. python benchmarks/ab_dense_act.py A.so B.so [dense|act|all] [REPS] [KxM,KxM...]
"""
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_two_builds import alternate, load  # noqa: E402

DENSE = "400x120,120x84,84x10,576x10,256x256,400x160,64x33,100x7,7x100,300x57,500x128,1500x160,1000x160,1200x200,2048x128"


def cases(what, shapes, rng):
    out = []
    if what in ("dense", "all"):
        for kk, m in (tuple(int(v) for v in s.split("x")) for s in shapes.split(",")):
            x = rng.standard_normal((1, kk), dtype=np.float32)
            w = rng.standard_normal((kk, m), dtype=np.float32)
            b = rng.standard_normal(m, dtype=np.float32)
            out.append((f"dense b1 {kk}x{m}", lambda k, x=x, w=w, b=b: k.dense_forward(x, w, b), 1))
    if what in ("act", "all"):
        for shape, act in [((784, 6), "sigmoid"), ((256, 120), "sigmoid"), ((200704, 6), "sigmoid"),
                           ((256, 120), "tanh"), ((200704, 6), "tanh"), ((256, 120), "relu")]:
            x = rng.standard_normal(shape, dtype=np.float32) * 4
            b = rng.standard_normal(shape[1], dtype=np.float32)
            out.append((f"bias_act {shape} {act}", lambda k, x=x, b=b, act=act: k.bias_act_forward(x, b, act),
                        20 if shape[0] > 10000 else 1))
        for n, hw, ci, co, pad in [(1, 28, 1, 6, 2), (1, 14, 6, 16, 0), (256, 28, 1, 6, 2), (256, 14, 6, 16, 0)]:
            x = rng.standard_normal((n, hw, hw, ci), dtype=np.float32)
            w = rng.standard_normal((5, 5, ci, co), dtype=np.float32) * 0.2
            b = rng.standard_normal(co, dtype=np.float32)
            out.append((f"conv N={n} {hw}x{hw} {ci}->{co} 5x5 + sigmoid",
                        lambda k, x=x, w=w, b=b, pad=pad: k.conv2d_forward(x, w, b, (1, 1), (pad,) * 4, (1, 1), 1,
                                                                           "sigmoid"), 20 if n > 1 else 1))
    return out


def main(argv):
    a, b = load(argv[0], "a"), load(argv[1], "b")
    what = argv[2] if len(argv) > 2 else "all"
    reps = int(argv[3]) if len(argv) > 3 else 301
    shapes = argv[4] if len(argv) > 4 else DENSE
    for k in (a, b):
        k.set_num_threads(1)
    for name, f, slow in cases(what, shapes, np.random.default_rng(0)):
        same = np.array_equal(f(a), f(b), equal_nan=True)
        ta, tb = alternate(f, a, b, max(15, reps // slow))
        ma, mb = statistics.median(ta) * 1e6, statistics.median(tb) * 1e6
        print(f"{name:42s} A {ma:9.2f} B {mb:9.2f} us  B/A {mb / ma:.3f}  bitwise-equal {same}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
