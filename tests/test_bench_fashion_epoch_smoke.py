"""benchmarks/bench_fashion_epoch.py on a tiny slice, so it does not rot: the report's structure,
finite positive times and losses, and a PyTorch twin with exactly fastconv's parameter count
(skipped where no interpreter with torch is found). Asserts no speed."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

from benchmarks import bench_fashion_epoch as bench  # noqa: E402


def test_fastconv_side_reports_every_configuration(tmp_path):
    out = tmp_path / "epoch.md"
    rows, text = bench.main(["--samples", "256", "--repeats", "1", "--batches", "128", "--no-torch", "--threads", "1",
                             "--out", str(out)])
    assert [(r["variant"], r["optimizer"]) for r in rows] == [(v, o) for v in bench.VARIANTS for o in bench.OPTIMIZERS]
    for r in rows:
        assert r["batch"] == 128 and r["fastconv_s"] > 0 and math.isfinite(r["fastconv_s"])
        assert math.isfinite(r["fastconv_loss"]) and r["fastconv_loss"] > 0
        assert r["ratio"] is None
    assert out.read_text() == text
    assert "first 256 samples" in text and text.count("\n| classic |") == 2 and text.count("\n| modern |") == 2


def test_training_set_is_scaled_images_with_labels():
    x, y, source = bench.load_training_set(300)
    assert x.shape == (300, 28, 28, 1) and x.dtype == np.float32 and y.shape == (300,)
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y)) > 5
    assert "28x28" in source or "Fashion-MNIST" in source


def test_bad_arguments_are_refused_by_name(capsys):
    for argv, name in ((["--samples", "0"], "--samples"), (["--repeats", "0"], "--repeats"),
                       (["--batches", "0"], "--batches")):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert name in capsys.readouterr().err


def test_pytorch_twin_matches_and_reports(tmp_path):
    python = bench.find_torch_python(None)
    if python is None:
        pytest.skip("no interpreter with torch (peers venv not installed)")
    from fastconv import models
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    # one worker process (torch's import dominates): the modern variant, the case
    peer = bench.run_torch(python, str(tmp_path / "d.npz"), "modern", "adam", 128, 1, 128, 1)
    assert peer["params"] == models.lenet5(variant="modern").count_params() == 61706
    assert len(peer["times"]) == 1 and peer["times"][0] > 0
    # Glorot-initialised 10-class logits on random labels: cross-entropy near ln(10)
    assert abs(peer["losses"][0] - math.log(10)) < 0.5
