"""Run Python in a subprocess that imports the same fastconv as the tests.

`python -c` puts its working directory first on sys.path, so from the repository root a CI
run (fastconv installed in a venv) would import the source tree, which has no compiled
modules. The subprocess therefore runs in the folder holding the imported package, with that
folder also first on PYTHONPATH: a source tree in development, site-packages when installed.
"""
import os
import subprocess
import sys

import fastconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def run_python(args, env=None, **kwargs):
    """subprocess.run([python, *args]) importing this fastconv; `env` adds to os.environ."""
    full = dict(os.environ, **(env or {}))
    full["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run([sys.executable, *args], env=full, **kwargs)
