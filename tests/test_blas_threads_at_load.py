"""fastconv's OpenBLAS loads with one thread (fastconv/_loader.py _blas_threads_while_loading):
its worker threads, started at load and never given a job (threads.cpp pins it to one thread),
would spin on a core for a while. A user's OPENBLAS_NUM_THREADS is kept, and the variable is
not left behind. Each case runs in a fresh interpreter (the library loads once per process);
NumPy is imported first so that its own OpenBLAS threads are counted before fastconv's."""
import os
import subprocess
import sys

import pytest

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
    # Run from the package folder's parent, first on the path too, so that the subprocess
    # imports this fastconv (in CI the tests run from the checkout, whose source folder
    # fastconv/ has no _C, and an installed package is meant).
    home = os.path.dirname(os.path.dirname(fastconv.__file__))
    env["PYTHONPATH"] = os.pathsep.join([home, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=home, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
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
