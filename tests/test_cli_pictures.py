"""Pictures by default: README's main command installs the viz extra and `fastconv train`
draws the curves, filters, feature maps and confusion matrix; without matplotlib it says so in
one line, with the command that enables them."""
import os
import re

import pytest

from fastconv.__main__ import main
from fastconv._cli_train import PICTURES_SKIPPED
from fastconv_subprocess import ROOT, run_python

PICTURES = ("curves.png", "filters.png", "feature_maps.png", "confusion.png")
QUICK = ["train", "lenet5", "--dataset", "digits", "--limit", "100", "--batch-size", "32",
         "--verbose", "0", "--seed", "1", "--epochs", "1"]


def test_train_draws_every_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    out = tmp_path / "run"
    assert main(QUICK + ["--out", str(out)]) == 0
    assert "pictures skipped" not in capsys.readouterr().err
    for name in PICTURES:
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 100, (name, picture.size)


def test_train_without_matplotlib_says_so_in_one_line(tmp_path):
    # The subprocess makes `import matplotlib` fail (a None entry in sys.modules), as on a
    # machine where the viz extra is not installed.
    out = tmp_path / "run"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from fastconv.__main__ import main\n"
            f"sys.exit(main({QUICK + ['--out', str(out)]!r}))")
    r = run_python(["-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "pictures skipped" in line]
    assert said == [PICTURES_SKIPPED]
    assert "matplotlib is not installed" in said[0] and "pip install matplotlib Pillow" in said[0]
    assert not any((out / name).exists() for name in PICTURES)
    assert (out / "history.csv").exists() and (out / "run.json").exists()  # the rest is written


def test_readme_main_command_installs_the_viz_extra():
    readme = os.path.join(ROOT, "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md is not next to the imported fastconv (an installed copy)")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    main_command = re.search(r"```bash\n(.*fastconv train lenet5.*)\n```", text).group(1)
    assert 'pip install ".[viz]"' in main_command
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        extras = re.search(r"^viz = \[(.*)\]$", f.read(), re.M).group(1)
    assert '"matplotlib"' in extras
