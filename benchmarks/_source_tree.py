"""Run the benchmarks against an installed fastconv when started from a source checkout.

`python -m benchmarks` from the repository root puts the root first on sys.path, so the source
folder fastconv/ shadows the package `pip install .` put in site-packages; a checkout that was
never built in place has no compiled _C there and the import failed half-way ("cannot import
name '_C' ... circular import"). When the checkout's fastconv/ has no _C, the root is taken off
sys.path so `import fastconv` finds the installed package; when there is none, a one-line
instruction replaces the traceback.
"""
import glob
import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_native_module(package_dir):
    return bool(glob.glob(os.path.join(package_dir, "_C.*.so")) + glob.glob(os.path.join(package_dir, "_C.*.pyd")))


def _is_root(entry):
    return os.path.abspath(entry or os.curdir) == REPO_ROOT


def prefer_installed_fastconv():
    source = os.path.join(REPO_ROOT, "fastconv")
    if not os.path.isdir(source) or _has_native_module(source) or "fastconv" in sys.modules:
        return
    sys.path[:] = [entry for entry in sys.path if not _is_root(entry)]
    spec = importlib.util.find_spec("fastconv")
    if spec is None or not spec.origin or os.path.abspath(spec.origin).startswith(source + os.sep):
        raise SystemExit("benchmarks: this checkout's fastconv/ is not built (no _C) and no installed fastconv "
                         "was found; run `pip install \".[bench]\"` (or build in place, see README) first")
