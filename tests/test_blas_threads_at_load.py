"""fastconv's OpenBLAS loads with one thread (fastconv/_loader.py _blas_threads_while_loading):
its worker threads, started at load and never given a job (threads.cpp pins it to one thread),
would spin on a core for a while. A user's OPENBLAS_NUM_THREADS is kept, and the variable is
not left behind. Each case runs in a fresh interpreter (the library loads once per process);
NumPy is imported first so that its own OpenBLAS threads are counted before fastconv's."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import os, numpy
before = len(os.listdir('/proc/self/task'))
import fastconv
print(len(os.listdir('/proc/self/task')) - before, os.environ.get('OPENBLAS_NUM_THREADS'))
"""


def _new_threads(env_value):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS")}
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    import fastconv
    # the package folder's parent first, so the subprocess imports this fastconv
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastconv.__file__)), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    started, left = out.stdout.split()
    return int(started), left


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_no_openblas_workers_start_with_fastconv():
    started, left = _new_threads(None)
    assert started == 0, f"importing fastconv started {started} threads"
    assert left == "None"  # the variable was set only for the load


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
                    reason="counts threads in /proc; OpenBLAS starts workers only with 2+ CPUs")
def test_a_users_openblas_thread_count_is_kept():
    started, left = _new_threads("2")
    assert started == 1 and left == "2"
