"""Per-pass conv timings, im2col+sgemm vs the direct small-channel path, side by side in one
process (switched with set_conv_algorithm('im2col') and 'auto', runs interleaved so both see
the same machine noise; median of 3 medians).

  PYTHONPATH=. python benchmarks/bench_direct.py [only=conv1,conv2] [name=n,h,w,c,kh,kw,co,s,p ...]
  env: MODE=2 forces the direct path (set_conv_algorithm('direct')) for shapes the rule leaves to the GEMM; THREADS=1,2.
"""
import os
import statistics as st
import sys
import time

import numpy as np

from fastconv import _C


def _uses_direct(*conv):
    """True when every pass of this conv (x_shape, w_shape, strides, pads, dilation, groups)
    runs on the direct kernel."""
    return set(_C.conv_algorithm(*conv).values()) == {"direct"}

SHAPES = {
    "conv1": ((256, 28, 28, 1), (5, 5, 1, 6), (1, 1), (2, 2, 2, 2)),
    "conv2": ((256, 14, 14, 6), (5, 5, 6, 16), (1, 1), (0, 0, 0, 0)),
    "stem": ((8, 224, 224, 3), (7, 7, 3, 64), (2, 2), (2, 3, 2, 3)),
}
only = None
MODE = int(os.environ.get("MODE", "1"))
DIRECT = "direct" if MODE == 2 else "auto"
THREADS = [int(t) for t in os.environ.get("THREADS", "1,2").split(",")]
for e in sys.argv[1:]:  # name=n,h,w,c,kh,kw,co,s,p   or  only=name,name
    name, v = e.split("=")
    if name == "only": only = v.split(","); continue
    n, h, w, c, kh, kw, co, s, p = map(int, v.split(","))
    SHAPES[name] = ((n, h, w, c), (kh, kw, c, co), (s, s), (p, p, p, p))
if only: SHAPES = {k: SHAPES[k] for k in only}

def tm(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return st.median(ts) * 1e3

rng = np.random.default_rng(0)
print(f"{'shape':8s} thr  pass   gemm_ms direct_ms speedup  eligible")
for name, (xs, ws, s, p) in SHAPES.items():
    x = rng.standard_normal(xs).astype(np.float32); w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32)
    args = (s, p, (1, 1), 1)
    y = _C.conv2d_forward(x, w, b, *args); dy = rng.standard_normal(y.shape).astype(np.float32)
    _C.set_conv_algorithm("auto")
    uses = _uses_direct(xs, ws, s, p, (1, 1), 1)  # by the rule
    flop = 2 * y.size * ws[0] * ws[1] * ws[2]
    reps = 15 if flop < 1e9 else 5
    for thr in THREADS:
        _C.set_num_threads(thr)
        for pname, fn in (("fwd", lambda: _C.conv2d_forward(x, w, b, *args)),
                          ("bwd_d", lambda: _C.conv2d_backward_data(dy, w, xs, *args)),
                          ("bwd_w", lambda: _C.conv2d_backward_weights(dy, x, ws, *args, True))):
            tb, tn = [], []
            for _ in range(3):  # interleave so both see the same machine noise
                _C.set_conv_algorithm("im2col"); tb.append(tm(fn, reps))
                _C.set_conv_algorithm(DIRECT); tn.append(tm(fn, reps))
            tb, tn = st.median(tb), st.median(tn)  # medians of 3 interleaved medians
            print(f"{name:8s} {thr}   {pname:6s} {tb:8.2f} {tn:8.2f}  {tb/tn:6.2f}x  {uses}  ({flop/tn/1e6:.0f} GFLOP/s direct)", flush=True)
_C.set_conv_algorithm("auto")
