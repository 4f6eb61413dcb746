"""1x1 convs with the weights packed once (conv2d_prepare) against the unprepared pass.

MobileNet's pointwise layers at 224 (batch 1 by default): M = H*W rows, K = Cin, N = Cout,
bias + relu6 fused as the inference plan runs them. Each repeat times the two passes
back to back (interleaved, so a shared machine's drift hits both); medians of --repeats,
thread CPU time at 1 thread (wall time otherwise).

    PYTHONPATH=. python benchmarks/bench_pointwise_prepared.py [--threads 1] [--batch 1] [--repeats 31] [--cold]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

# (H = W, Cin, Cout) of MobileNet v1 (alpha 1) at 224, and its 1x1 classifier conv
SHAPES = [(112, 32, 64), (56, 64, 128), (56, 128, 128), (28, 128, 256), (28, 256, 256), (14, 256, 512),
          (14, 512, 512), (7, 512, 1024), (7, 1024, 1024), (1, 1024, 1000)]
ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--cold", action="store_true",
                        help="read 64 MiB of other data before each timed call (as in a whole network, where "
                             "the other layers evict a layer's weights)")
    args = parser.parse_args(argv)
    import fastconv
    from fastconv import _C
    fastconv.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    evict = np.ones(16 << 20, np.float32) if args.cold else None
    print(f"threads {args.threads}, batch {args.batch}, medians of {args.repeats}, "
          f"{'thread CPU' if args.threads == 1 else 'wall'} ms, {'cold' if args.cold else 'warm'} caches; "
          f"load {os.getloadavg()[0]:.1f}")
    print("| H=W | Cin -> Cout | unprepared ms | prepared ms | prepared / unprepared | unprepared again / "
          "unprepared (noise) | GFLOP/s prepared |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for hw, cin, cout in SHAPES:
        x = rng.standard_normal((args.batch, hw, hw, cin)).astype(np.float32)
        w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32) * 0.1
        b = rng.standard_normal(cout).astype(np.float32)
        p = _C.conv2d_prepare(w, x.shape, *ARGS)
        if p is None:
            print(f"| {hw} | {cin} -> {cout} | no prepared form here | | | | |")
            continue
        runs = {"plain": lambda: _C.conv2d_forward(x, w, b, *ARGS, "relu6"),
                "prepared": lambda: _C.conv2d_forward(x, w, b, *ARGS, "relu6", None, p),
                "again": lambda: _C.conv2d_forward(x, w, b, *ARGS, "relu6")}  # the noise: plain twice
        times = {k: [] for k in runs}
        for f in runs.values():
            f()
        for _ in range(args.repeats):
            for k, f in runs.items():
                if evict is not None:
                    evict.sum()
                t = clock()
                f()
                times[k].append(clock() - t)
        plain, prep, again = (1e3 * float(np.median(times[k])) for k in ("plain", "prepared", "again"))
        flops = 2.0 * args.batch * hw * hw * cin * cout
        print(f"| {hw} | {cin} -> {cout} | {plain:.3f} | {prep:.3f} | {prep / plain:.2f} | {again / plain:.2f} | "
              f"{flops / prep / 1e6:.0f} |")


if __name__ == "__main__":
    main()
