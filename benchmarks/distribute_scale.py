"""Data-parallel scaling of fastconv.distribute: measured here, predicted for clusters.

    PYTHONPATH=. python benchmarks/distribute_scale.py [--quick] [--steps S] [--mpiexec PATH]

It launches itself under `mpiexec -n 2` for the parts that need two ranks, and measures
1. allreduce time per message size (1 KiB .. 64 MiB), two ranks on this machine: a bare
   mpi4py `Allreduce` against fastconv's path (non-blocking Iallreduce + timed polling wait);
   "% bare" is bare time / fastconv time;
2. ResNet-18 (CIFAR stem, 32x32x3, 10 classes), global batch 64, per training step:
   1 process x 2 threads against 2 ranks x 1 thread (batch 32 each, gradients summed in 25 MiB
   buckets during backward); the compute alone (1 thread, batch 32, no strategy) once in one
   process and once on both ranks at the same time (they share the cores and the memory
   bandwidth, as in the data-parallel step); and each gradient bucket's allreduce alone;
3. the 2-rank step predicted from independent parts, concurrent compute + the buckets'
   allreduce (no overlap), checked against the measured step (the error is printed); the
   exposed communication, measured step - concurrent compute, and the share of the allreduce
   the implementation hid behind backward;
4. a prediction for N = 2..64 ranks with 32 samples per rank (weak scaling), on 10/25/100
   Gbit/s networks: step(N) = concurrent compute + other strategy cost + (1 - overlap) *
   ring allreduce of the gradient bytes in 25 MiB buckets, 2(N-1)/N * bytes / bandwidth +
   2(N-1) * buckets * latency (latency 20 us). The overlap and the other cost (the exposed
   time beyond the allreduce alone: packing, loss scaling, the ranks waiting for each other)
   are the ones measured here, the other cost taken as constant in N; throughput =
   32 N / step(N), efficiency = compute / step(N).

Every step figure is the median of --steps steps of one fit, after a warm-up step. On a shared or
loaded machine they are indicative only.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # after site-packages: an installed fastconv comes first
from benchmarks._source_tree import prefer_installed_fastconv  # noqa: E402

prefer_installed_fastconv()  # a checkout not built in place: the installed fastconv (also in the workers)

BUCKET_BYTES = 25 * 2 ** 20
LATENCY_S = 20e-6
NETWORKS_GBIT = (10, 25, 100)
RANKS = (2, 4, 8, 16, 32, 64)
PER_RANK_BATCH = 32


def _model(quick):
    import fastconv
    from fastconv.models import zoo
    fastconv.set_seed(0)
    if quick:
        return zoo.lenet5(), (28, 28, 1)
    return zoo.resnet18((32, 32, 3), 10, stem="cifar"), (32, 32, 3)


def _data(n, shape):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n,) + shape).astype(np.float32), rng.integers(0, 10, n)


def _compile(model):
    import fastconv
    model.compile(optimizer=fastconv.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")


def time_steps(model, x, y, batch, steps):
    """Median seconds per training step of one fit over steps + 1 batches (the first, a
    warm-up, is left out); the callback times each step from its begin to its end hook."""
    import fastconv
    times = []

    class StepTimer(fastconv.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, step, logs=None):
            times.append(time.perf_counter() - self.t0)
    n = batch * (steps + 1)
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[StepTimer()])
    return statistics.median(times[1:])


# -- parts run under mpiexec -n 2 ---------------------------------------------------------------
def worker_allreduce(args):
    from mpi4py import MPI
    from fastconv.distribute.communicator import MpiCommunicator
    comm = MpiCommunicator()
    rows = []
    sizes = [2 ** k for k in range(10, 21 if args.quick else 27, 2)]
    for nbytes in sizes:
        buf = np.ones(nbytes // 4, np.float32)
        bare, ours = [], []
        for _ in range(args.steps + 1):  # interleaved, so both see the same machine
            comm.barrier()
            t0 = time.perf_counter()
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            bare.append(time.perf_counter() - t0)
            comm.barrier()
            t0 = time.perf_counter()
            comm.wait([comm.iallreduce_sum(buf)], "benchmark")
            ours.append(time.perf_counter() - t0)
        rows.append({"bytes": nbytes, "bare_s": statistics.median(bare[1:]), "fastconv_s": statistics.median(ours[1:])})
    if comm.rank == 0:
        print(json.dumps(rows))


def worker_train(args):
    """Under mpiexec -n 2, three phases on the same two ranks:
    1. compute alone, both ranks at once: a model without a strategy (no allreduce) trained on
       32 samples per rank, started after a barrier, so both share the cores and the memory
       bandwidth as in the data-parallel step;
    2. the data-parallel step (strategy, global batch 64, 25 MiB buckets during backward);
    3. each gradient bucket's allreduce alone (fastconv's path), the communication a step pays
       without overlap."""
    import fastconv
    from fastconv.distribute import MultiWorkerMirroredStrategy
    from fastconv.distribute.buckets import plan_buckets
    strategy = MultiWorkerMirroredStrategy()
    comm = strategy.communicator
    model, shape = _model(args.quick)
    _compile(model)
    x, y = _data(2 * PER_RANK_BATCH * (args.steps + 1), shape)
    comm.barrier()
    concurrent = time_steps(model, x, y, PER_RANK_BATCH, args.steps)
    concurrent = float(comm.allreduce_sum(np.array([concurrent]))[0]) / comm.size  # the ranks' mean
    with strategy.scope():
        model, shape = _model(args.quick)
        _compile(model)
    comm.barrier()
    seconds = time_steps(model, x, y, 2 * PER_RANK_BATCH, args.steps)
    variables = model.trainable_weights
    bucket_bytes = [sum(int(np.prod(variables[i].shape)) * 4 for i in b) for b in plan_buckets(variables, BUCKET_BYTES)]
    bucket_s = []
    for nbytes in bucket_bytes:
        buf, times = np.ones(nbytes // 4, np.float32), []
        for _ in range(args.steps + 1):
            comm.barrier()
            t0 = time.perf_counter()
            comm.wait([comm.iallreduce_sum(buf)], "benchmark")
            times.append(time.perf_counter() - t0)
        bucket_s.append(statistics.median(times[1:]))
    if strategy.is_chief:
        print(json.dumps({"step_s": seconds, "concurrent_s": concurrent, "grad_bytes": sum(bucket_bytes),
                          "bucket_bytes": bucket_bytes, "bucket_s": bucket_s,
                          "threads": fastconv.get_num_threads()}))


# -- the driver ---------------------------------------------------------------------------------
def _launch(args, part, ranks=2, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    cmd = [args.mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker", part,
           "--steps", str(args.steps)] + (["--quick"] if args.quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _single(args, threads, batch):
    import fastconv
    fastconv.set_num_threads(threads)
    model, shape = _model(args.quick)
    _compile(model)
    x, y = _data(batch * (args.steps + 1), shape)
    return time_steps(model, x, y, batch, args.steps)


def ring_seconds(nbytes, ranks, bandwidth_bytes_s, latency_s=LATENCY_S):
    buckets = max(1, math.ceil(nbytes / BUCKET_BYTES))
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth_bytes_s + 2 * (ranks - 1) * buckets * latency_s


def fit_local_link(rows):
    """Bandwidth and latency of this machine's 2-rank allreduce (least squares on
    t = 2(N-1)/N * bytes / bw + 2(N-1) * latency, N = 2)."""
    b = np.array([r["fastconv_s"] for r in rows])
    a = np.stack([np.array([r["bytes"] for r in rows], np.float64), np.full(len(rows), 2.0)], 1)
    (inv_bw, lat), *_ = np.linalg.lstsq(a, b, rcond=None)
    return 1.0 / max(inv_bw, 1e-15), max(lat, 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="LeNet-5 and small messages (a smoke run)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--mpiexec", default=shutil.which("mpiexec", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")])))
    p.add_argument("--worker", choices=["allreduce", "train"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return (worker_allreduce if args.worker == "allreduce" else worker_train)(args)
    if args.mpiexec is None:
        raise SystemExit("needs mpiexec (pip install 'fastconv[mpi]')")
    model_name = "LeNet-5" if args.quick else "ResNet-18 CIFAR"
    print(f"# fastconv.distribute scaling ({model_name}); {os.cpu_count()} CPUs here; medians of {args.steps} steps")
    rows = _launch(args, "allreduce")
    print("\n## allreduce, 2 ranks on this machine\n\n| bytes | bare mpi4py ms | fastconv ms | % bare | GB/s (algbw) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bytes']} | {r['bare_s'] * 1e3:.3f} | {r['fastconv_s'] * 1e3:.3f} | "
              f"{100 * r['bare_s'] / r['fastconv_s']:.0f} | {r['bytes'] / r['fastconv_s'] / 1e9:.2f} |")
    bw, lat = fit_local_link(rows)
    print(f"\nthis machine's 2-rank link, fitted: {bw / 1e9:.2f} GB/s, {lat * 1e6:.0f} us latency")
    train = _launch(args, "train")
    one_x2 = _single(args, threads=2, batch=2 * PER_RANK_BATCH)
    alone = _single(args, threads=1, batch=PER_RANK_BATCH)
    two_x1, compute = train["step_s"], train["concurrent_s"]
    gb, allreduce = train["grad_bytes"], sum(train["bucket_s"])
    print(f"\n## one step, global batch {2 * PER_RANK_BATCH}, gradients {gb / 2 ** 20:.1f} MiB "
          f"in {len(train['bucket_bytes'])} bucket(s)\n")
    print(f"- 1 process x 2 threads: {one_x2 * 1e3:.0f} ms/step ({2 * PER_RANK_BATCH / one_x2:.1f} samples/s)")
    print(f"- 2 ranks x 1 thread: {two_x1 * 1e3:.0f} ms/step ({2 * PER_RANK_BATCH / two_x1:.1f} samples/s); "
          f"ratio {one_x2 / two_x1:.2f}x of 1x2")
    print(f"- compute, batch {PER_RANK_BATCH}, 1 thread: {alone * 1e3:.0f} ms/step alone, "
          f"{compute * 1e3:.0f} ms/step with both ranks computing at once (no allreduce)")
    print("- allreduce of the buckets alone: " +
          ", ".join(f"{b / 2 ** 20:.1f} MiB {t * 1e3:.1f} ms" for b, t in zip(train["bucket_bytes"], train["bucket_s"])))
    predicted = compute + allreduce
    exposed = two_x1 - compute
    hidden = min(max(1.0 - exposed / allreduce, 0.0), 1.0) if allreduce > 0 else 0.0
    overhead = max(exposed - allreduce, 0.0)  # beyond the allreduce: packing, scaling, waiting
    print(f"- predicted 2-rank step (concurrent compute + the buckets' allreduce, no overlap): "
          f"{predicted * 1e3:.0f} ms against {two_x1 * 1e3:.0f} ms measured ({100 * (predicted / two_x1 - 1):+.0f}%)")
    print(f"- exposed communication (step - concurrent compute): {exposed * 1e3:.0f} ms, "
          f"{100 * exposed / allreduce:.0f}% of the buckets' allreduce; overlap achieved {100 * hidden:.0f}%; "
          f"other per-step cost of the strategy {overhead * 1e3:.0f} ms")
    print(f"\n## predicted, {PER_RANK_BATCH} samples per rank (weak scaling): step = {compute * 1e3:.0f} ms "
          f"(concurrent compute) + {overhead * 1e3:.0f} ms (other strategy cost) + {100 * (1 - hidden):.0f}% "
          "of the ring allreduce (overlap and cost as measured here)\n")
    print("| ranks | " + " | ".join(f"{g} Gbit/s samples/s (eff.)" for g in NETWORKS_GBIT) + " |")
    print("|---:|" + "---:|" * len(NETWORKS_GBIT))
    for n in RANKS:
        cells = []
        for g in NETWORKS_GBIT:
            step = compute + overhead + (1 - hidden) * ring_seconds(gb, n, g * 1e9 / 8)
            cells.append(f"{PER_RANK_BATCH * n / step:.0f} ({100 * compute / step:.0f}%)")
        print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
