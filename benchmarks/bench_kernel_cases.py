"""Single-kernel timings behind the 2026-12-07 lead section of benchmarks/RESULTS.md.

    PYTHONPATH=<tree> python benchmarks/bench_kernel_cases.py CASE [--threads N] [--repeats R]

CASE:
  faults     MobileNet b64 predict: ms and minor page faults per call (set
             FASTCONV_OUTPUT_POOL_LIMIT=0 to see the heap without the output pool)
  pools      LeNet-5's pools at batch 256 (forward, backward from argmax, average backward with
             sigmoid); FASTCONV_ISA=avx2 for the avx2 level
  dense      Dense forward of one row against large weights
  pointwise  1x1 convs with prepared weights, bias + relu, at batch 1 and 8
  cout       batch-1 convs that split Cout on several threads (1x1 and 3x3)

One thread: thread CPU time; more: wall time. Medians of --repeats calls after warm-up. Run
the trees to compare in alternation (one process each), several rounds: this host drifts
20-40% between runs.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

import fastconv  # noqa: E402
from fastconv import _C  # noqa: E402


def _median_ms(fn, repeats, clock):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return 1e3 * float(np.median(times))


def faults(args, clock):
    from fastconv.models import zoo
    model = zoo.mobilenet()
    x = np.random.default_rng(0).standard_normal((64, 224, 224, 3)).astype(np.float32)
    model.predict_on_batch(x)
    model.predict_on_batch(x)
    for _ in range(args.repeats):
        r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        model.predict_on_batch(x)
        t, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
        print(f"predict b64: {1e3 * t:.1f} ms, minor faults {r1.ru_minflt - r0.ru_minflt}, "
              f"system {r1.ru_stime - r0.ru_stime:.3f} s")


def pools(args, clock):
    rng = np.random.default_rng(0)
    win = ((2, 2), (2, 2), (0, 0, 0, 0))
    for shape in [(256, 28, 28, 6), (256, 10, 10, 16)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y, arg = _C.max_pool2d_forward_with_argmax(x, *win)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        z = rng.random(shape).astype(np.float32)
        cases = {"max forward + argmax": lambda: _C.max_pool2d_forward_with_argmax(x, *win),
                 "max backward from argmax": lambda: _C.max_pool2d_backward_argmax(dy, arg, x.shape, *win),
                 "avg forward": lambda: _C.avg_pool2d_forward(x, *win),
                 "avg backward + sigmoid": lambda: _C.avg_pool2d_backward_activation(dy, z, *win, "sigmoid")}
        for name, fn in cases.items():
            print(f"{shape} {name}: {_median_ms(fn, args.repeats, clock):.3f} ms")


def dense(args, clock):
    rng = np.random.default_rng(0)
    for k, m in [(2048, 1000), (1024, 1000), (4096, 4096), (400, 120)]:
        x = rng.standard_normal((1, k)).astype(np.float32)
        w = rng.standard_normal((k, m)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        print(f"dense b1 {k}x{m}: {_median_ms(lambda: _C.dense_forward(x, w, b), args.repeats, clock):.3f} ms")


def _conv_cases(cases, args, clock):
    rng = np.random.default_rng(0)
    for n, h, cin, cout, k in cases:
        x = rng.standard_normal((n, h, h, cin)).astype(np.float32)
        w = (rng.standard_normal((k, k, cin, cout)) * 0.05).astype(np.float32)
        b = np.zeros(cout, np.float32)
        p = k // 2
        conv = ((1, 1), (p, p, p, p), (1, 1), 1)
        prepared = _C.conv2d_prepare(w, x.shape, *conv)
        ms = _median_ms(lambda: _C.conv2d_forward(x, w, b, *conv, "relu", None, prepared), args.repeats, clock)
        print(f"b{n} {h}x{h} {cin}->{cout} {k}x{k}: {ms:.3f} ms")


def pointwise(args, clock):
    _conv_cases([(1, 14, 1024, 256, 1), (1, 7, 1024, 1024, 1), (1, 7, 2048, 512, 1), (1, 28, 512, 128, 1),
                 (1, 14, 512, 512, 1), (8, 14, 1024, 256, 1), (1, 7, 1024, 256, 1)], args, clock)


def cout(args, clock):
    _conv_cases([(1, 14, 512, 512, 1), (1, 7, 1024, 1024, 1), (1, 14, 1024, 256, 1), (1, 7, 2048, 512, 1),
                 (1, 4, 512, 512, 3), (1, 8, 256, 256, 3), (1, 7, 512, 2048, 1)], args, clock)


def main():
    cases = {"faults": faults, "pools": pools, "dense": dense, "pointwise": pointwise, "cout": cout}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=list(cases))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    fastconv.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"{args.case}: {args.threads} thread(s), {_C.isa_level()} level")
    cases[args.case](args, clock)


if __name__ == "__main__":
    main()
