"""LeNet-5 training step at batch 1 (train_on_batch, 1 thread): its thread CPU time, and how
much of it is spent inside fastconv.functional's wrappers rather than the kernels.

  python benchmarks/bench_lenet_step_overhead.py [OLD_FUNCTIONAL_DIR] [--steps S] [--variant classic|modern]

Times S steps in thread CPU time (median per step). With OLD_FUNCTIONAL_DIR (a copy of another
version's fastconv/functional, see bench_functional_overhead.py), the steps alternate between
the two versions in ONE process: fastconv.functional's entry points (as the autograd ops
reach them, `F.conv2d` etc.) are swapped for the old module's between steps. Then a cProfile of
the steps with the current functional: calls into fastconv.functional and their tottime (time
in the wrapper's own Python code, not in the _C kernels they call).
"""
import argparse
import cProfile
import pstats
import statistics
import sys
import time

import numpy as np

import fastconv as fc
from fastconv import functional as F
from fastconv import models

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_functional_overhead import load_old  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old", nargs="?")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--variant", default="classic")
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args()
    fc.set_num_threads(1)
    fc.set_seed(0)
    model = models.lenet5((28, 28, 1), 10, variant=a.variant, classifier_activation=None)
    model.compile(fc.optimizers.SGD(0.01, momentum=0.9), fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, a.batch)
    for _ in range(20):
        model.train_on_batch(x, y)
    names = [n for n in F.__all__] if hasattr(F, "__all__") else [n for n in dir(F) if not n.startswith("_")]
    new = {n: getattr(F, n) for n in names if callable(getattr(F, n))}
    old = None
    if a.old:
        om = load_old(a.old)
        old = {n: getattr(om, n) for n in new if hasattr(om, n)}
    ts = {"new": [], "old": []}
    for i in range(a.steps):
        for tag in (("new", "old") if i % 2 == 0 else ("old", "new")):
            if tag == "old" and old is None:
                continue
            for n, f in (old if tag == "old" else new).items():
                setattr(F, n, f)
            t = time.thread_time()
            model.train_on_batch(x, y)
            ts[tag].append(time.thread_time() - t)
    for n, f in new.items():
        setattr(F, n, f)
    print(f"LeNet-5 ({a.variant}) train_on_batch, batch {a.batch}, 1 thread: median us per step")
    for tag, t in ts.items():
        if t:
            print(f"  {tag}: {statistics.median(t) * 1e6:8.1f}  (min {min(t) * 1e6:8.1f})")
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    for _ in range(a.steps):
        model.train_on_batch(x, y)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt
    fn_tt, fn_calls = 0.0, 0
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        if "/fastconv/functional/" in file or file.endswith("fastconv/backend.py"):
            fn_tt += tt
            fn_calls += nc
            rows.append((tt, nc, f"{file.rsplit('/', 1)[-1]}:{func}"))
    print(f"cProfile (current functional): {total / a.steps * 1e6:.1f} us per step profiled; "
          f"{fn_tt / a.steps * 1e6:.1f} us per step in functional/backend Python code "
          f"({fn_calls / a.steps:.0f} calls per step; cProfile inflates per-call costs)")
    for tt, nc, name in sorted(rows, reverse=True)[:12]:
        print(f"  {tt / a.steps * 1e6:7.2f} us/step  {nc / a.steps:5.1f} calls/step  {name}")


if __name__ == "__main__":
    main()
