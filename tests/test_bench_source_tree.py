"""`python -m benchmarks` from a source checkout whose fastconv/ was never built (no _C), as
after README's `pip install .`: the harness must import the installed fastconv, not the
shadowing source folder, and say what to do when there is none. Simulated in a temporary
tree: a copy of benchmarks/ beside a fastconv/ that fails to import like an unbuilt one; the
"installed" package is the fastconv this test imports (built), reached through PYTHONPATH."""
import os
import shutil
import subprocess
import sys

import fastconv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# where the fastconv these tests run against lives: this checkout when built in place, the
# site-packages of `pip install ".[test]"` otherwise; it stands for the installed package
INSTALLED = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def _unbuilt_tree(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "benchmarks"), root / "benchmarks",
                    ignore=shutil.ignore_patterns("results", "__pycache__"))
    (root / "fastconv").mkdir()
    (root / "fastconv" / "__init__.py").write_text(
        "raise ImportError(\"cannot import name '_C' from partially initialized module 'fastconv'\")\n")
    return root


def _run(root, pythonpath):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # without a path: -S leaves site-packages out too, where CI's install of fastconv lives
    flags = [] if pythonpath else ["-S"]
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, *flags, "-m", "benchmarks", "--help"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_benchmarks_use_installed_fastconv_from_unbuilt_checkout(tmp_path):
    root = _unbuilt_tree(tmp_path)
    done = _run(root, INSTALLED)
    assert done.returncode == 0, done.stderr
    assert "usage: fastconv bench" in done.stdout


def test_benchmarks_without_any_built_fastconv_give_one_instruction(tmp_path):
    root = _unbuilt_tree(tmp_path)
    done = _run(root, "")
    assert done.returncode != 0
    assert "pip install" in done.stderr and "Traceback" not in done.stderr
