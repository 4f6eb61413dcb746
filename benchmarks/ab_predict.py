"""Paired timing of two builds of fastconv._C on a whole predict_on_batch, in ONE process.

benchmarks/ab_two_builds.py's idea for whole models: each build's .so is loaded under its own
module name, each gets its own model (same seed, same weights) whose inference plan is built on
that build's kernels (engine/inference.kernels_for is pointed at it while the plan is made), and
so its own output pool. Predicts then alternate A B B A / B A A B on one thread, thread CPU time:
both builds see the same load (process-by-process pairs moved unchanged code by up to 25% on the
shared 2-vCPU machine). Copy each build's fastconv/_C*.so somewhere first (the build overwrites
it), and swap the two arguments in a second run (the module loaded second may read a few %
slower).

  PYTHONPATH=. python benchmarks/ab_predict.py A.so B.so MODEL BATCH REPS
  MODEL: a label prefix of benchmarks/bench_onnx.py's cases (LeNet, ResNet-18, ResNet-50, MobileNet)

Prints each build's median and minimum (ms) and B / A; stops if the two outputs differ.
"""
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
from benchmarks.ab_two_builds import load  # noqa: E402


def main(argv):
    a_path, b_path, label, batch, reps = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    builds = {"A": load(a_path, "a"), "B": load(b_path, "b")}
    import fastconv
    from benchmarks.bench_onnx import cases
    from fastconv.bench.harness import set_threads
    from fastconv.engine import inference
    set_threads(1, {})
    for mod in builds.values():
        mod.set_num_threads(1)
    name, make, shape, _, _ = next(c for c in cases(False) if c[0].lower().startswith(label.lower()))
    x = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    models, outs = {}, {}
    original = inference.kernels_for
    try:
        for tag, mod in builds.items():
            fastconv.set_seed(0)
            models[tag] = make()
            inference.kernels_for = lambda backend, mod=mod: mod  # the plan's steps bind this build
            for _ in range(3):
                outs[tag] = models[tag].predict_on_batch(x)
    finally:
        inference.kernels_for = original
    if not np.allclose(outs["A"], outs["B"], rtol=1e-3, atol=1e-4):
        raise SystemExit("the two builds' outputs differ")
    times = {"A": [], "B": []}
    for r in range(reps):
        for tag in ("A", "B", "B", "A") if r % 2 == 0 else ("B", "A", "A", "B"):
            start = time.thread_time()
            models[tag].predict_on_batch(x)
            times[tag].append(time.thread_time() - start)
    ma, mb = statistics.median(times["A"]), statistics.median(times["B"])
    print(f"{name} b{batch}: A {1e3 * ma:.3f} B {1e3 * mb:.3f} ms, B/A {mb / ma:.3f} "
          f"(minima {1e3 * min(times['A']):.3f} {1e3 * min(times['B']):.3f})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
