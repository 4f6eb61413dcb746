"""The side-by-side benchmark suite, shipped with the package so it runs wherever fastconv is
installed: ``fastconv bench [--quick]`` (or ``python -m fastconv.bench``) times fastconv, the
NumPy oracle, PyTorch and TensorFlow (``pip install "fastconv[bench]"`` for the peers) on the
same conv layers, ops and models (run.py). The kernel-level scripts stay in the repository's
benchmarks/ folder and import their shared parts from here.
"""
