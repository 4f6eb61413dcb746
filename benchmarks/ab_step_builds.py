"""A training step timed with two builds' _C in ONE process, steps alternating (A, B, B, A...),
1 thread, thread CPU time: e.g. the portable build's avx2 level against a -march=native build.

bench_isa_levels.py runs each build in its own process; on a shared 2-core host the same step
moves up to 1.7x between processes, which is larger than any codegen difference between two
builds of one commit (stop 38: its card's "LeNet-5 classic step b256, avx2 / native 1.32" came out
at 0.99-1.02 paired). Here fastconv.backend's kernel module is swapped between the two _C before
each step (the functional layer asks backend.kernels() on every call), so both builds run the
same model, weights and batch under the same load.

    PYTHONPATH=. python benchmarks/ab_step_builds.py A.so B.so [--model lenet5] [--batch 256]
        [--reps 31] [--kernels]

--kernels: also every _C call of one step recorded (arguments copied) and replayed alone,
A and B alternating: which kernel holds a difference. Copy each build's fastconv/_C*.so
somewhere first (a build overwrites it; -march=native builds: FASTCONV_NATIVE_ARCH=ON).
"""
import argparse
import copy
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_two_builds import alternate, load  # noqa: E402


def _desc(args):
    out = []
    for v in args:
        if isinstance(v, np.ndarray):
            out.append("x".join(map(str, v.shape)))
        elif isinstance(v, (tuple, list)) and len(v) < 6:
            out.append(str(tuple(v)))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out.append(repr(v))
        else:
            out.append(type(v).__name__)
    return ",".join(out)


def record(step):
    """[(name, args, kwargs)] of every public _C call of one step, arguments deep-copied."""
    from fastconv import _C
    calls, saved = [], {}
    for name in dir(_C):
        f = getattr(_C, name)
        if name.startswith("_") or not callable(f) or isinstance(f, type):
            continue
        saved[name] = f

        def wrap(*args, _n=name, _f=f, **kw):
            calls.append((_n, copy.deepcopy(args), copy.deepcopy(kw)))
            return _f(*args, **kw)
        setattr(_C, name, wrap)
    try:
        step()
    finally:
        for name, f in saved.items():
            setattr(_C, name, f)
    return [c for c in calls if not c[0].endswith("num_threads")]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("a"), ap.add_argument("b")
    ap.add_argument("--model", default="lenet5", help="a fastconv.bench.models name (lenet5, lenet5_maxpool, ...)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--shape", default="28,28,1")
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--kernels", action="store_true")
    args = ap.parse_args(argv)
    import fastconv as fc
    import fastconv.backend  # noqa: F401
    backend = sys.modules["fastconv.backend"]  # fastconv.backend is also a function's name
    from fastconv.bench.models import fastconv_step
    a, b = load(args.a, "a"), load(args.b, "b")
    fc.set_num_threads(1)
    for k in (a, b):
        k.set_num_threads(1)
    shape = tuple(int(v) for v in args.shape.split(","))
    step = fastconv_step(args.model, args.batch, shape, 10)
    step()
    own = backend.kernels()
    assert own is not a and own is not b

    def run(k):
        backend._cpu_module = k
        try:
            assert backend.kernels() is k
            return step()
        finally:
            backend._cpu_module = own
    for k in (a, b, a, b):
        run(k)
    ta, tb = alternate(run, a, b, args.reps)
    ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
    print(f"{args.model} b{args.batch} step, {args.reps} each: A {ma:.3f} B {mb:.3f} ms, B/A {mb / ma:.3f}"
          f"  (min A {min(ta) * 1e3:.3f} B {min(tb) * 1e3:.3f})", flush=True)
    if not args.kernels:
        return
    total_a = total_b = 0.0
    for i, (name, cargs, kw) in enumerate(record(step)):
        in_place = "update" in name  # the optimizer writes its arguments: a fresh copy per call

        def call(k, name=name, cargs=cargs, kw=kw, in_place=in_place):
            return getattr(k, name)(*(copy.deepcopy(cargs) if in_place else cargs), **kw)
        call(a), call(b)
        ta, tb = alternate(call, a, b, args.reps)
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        total_a, total_b = total_a + ma, total_b + mb
        print(f"{i:2d} {(name + '(' + _desc(cargs) + ')')[:100]:100s} A {ma:7.3f} B {mb:7.3f} B/A {mb / ma:.3f}",
              flush=True)
    print(f"sum of kernels: A {total_a:.3f} B {total_b:.3f} ms, B/A {total_b / total_a:.3f}")


if __name__ == "__main__":
    main()
