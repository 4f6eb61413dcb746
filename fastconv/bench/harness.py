"""Timing and machine facts shared by the benchmark runner.

Frameworks are interleaved: each repeat runs every framework's case once, in turn, so slow
drift on a shared machine hits all of them alike. Reported: median and spread (min, max).
Latency at small work (batch-1 inference) is timed in blocks instead (time_blocks): there the
call before decides whose threads are awake, so interleaving would measure each framework
right after another's.
"""
import os
import platform
import statistics
import time


def time_interleaved(cases, repeats, warmup=1, clock=time.perf_counter):
    """cases: {framework: callable}. Returns {framework: [seconds per repeat]}. clock:
    time.perf_counter (wall) or time.process_time (CPU time of the process: on a machine
    shared with other jobs it leaves out the time spent waiting for a core; a latency only
    when every framework runs on one thread)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


def time_blocks(cases, repeats, rounds=3, pause=0.2, clock=time.perf_counter):
    """cases: {framework: callable}. Returns {framework: [seconds per call]}: each round runs
    every framework in turn as a block of one warm-up call and `repeats` timed calls back to
    back, the order rotating between rounds. Each block follows a `pause` second sleep, long
    enough that the previous block's thread pool has stopped spinning (onnxruntime's spins
    ~50 ms after a run, taking a core from whoever runs next).

    This is the latency a loop of calls sees, each framework in its own steady state (warm
    threads included). Interleaving call by call measured instead how fast each framework
    recovers from the other's turn: on a 2-vCPU VM, fastconv's ResNet-18 b1 predict took
    14.4 ms interleaved against 7.7 ms on its own."""
    names = list(cases)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = cases[name]
            time.sleep(pause)
            fn()
            for _ in range(repeats):
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
    return times


def summarize(seconds):
    return {"median_ms": 1e3 * statistics.median(seconds), "min_ms": 1e3 * min(seconds),
            "max_ms": 1e3 * max(seconds), "repeats": len(seconds)}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads, peers):
    import numpy as np

    import fastconv
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "numpy": np.__version__, "fastconv": fastconv.__version__}
    try:
        from importlib.metadata import version
        info["blas"] = f"scipy-openblas32 {version('scipy-openblas32')}"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        info["blas"] = "scipy-openblas32"
    info["blas"] += f" ({fastconv._C.blas_corename()} kernels)"
    # The kernels' instruction-set level (baseline, avx2, avx512; FASTCONV_ISA forces one).
    info["isa"] = fastconv._C.isa_level() if hasattr(fastconv._C, "isa_level") else "unknown (older build)"
    for name, mod in peers.items():
        info[name] = getattr(mod, "__version__", "?")
    return info


def set_threads(threads, peers):
    import fastconv
    fastconv.set_num_threads(threads)
    if "torch" in peers:
        torch = peers["torch"]
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set once in this process
    if "tensorflow" in peers:
        tf = peers["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # must be set before TF initialises; then it stays


def load_peers(wanted):
    """Import the optional peers that are installed; print a line for each one skipped."""
    peers = {}
    if "torch" in wanted:
        try:
            import torch
            peers["torch"] = torch
        except ImportError:
            print("torch not installed: skipped (pip install .[bench])")
    if "tensorflow" in wanted:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow as tf
            peers["tensorflow"] = tf
        except ImportError:
            print("tensorflow not installed: skipped (pip install .[bench])")
    return peers
