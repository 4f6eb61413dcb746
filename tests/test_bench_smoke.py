"""The benchmark runner's --quick path on fastconv's own backends (no peers, tiny sizes), so it
does not rot. Asserts the report files and their keys, never speed."""
import json
import os
import sys

import pytest

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

from fastconv.bench.run import main  # noqa: E402


def test_quick_run_writes_report(tmp_path, capsys):
    main(["--quick", "--no-peers", "--threads", "1", "--repeats", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    cases = {r["case"]: r for r in data["results"]}
    assert "56x56 64->64 k3" in cases and "max pool 3x3 s2 same" in cases and "lenet5 b4" in cases
    assert "lenet5_maxpool b4" in cases and "resnet18_cifar b4" in cases
    for row in data["results"]:
        assert set(row["frameworks"]) >= {"fastconv"}
        assert row["frameworks"]["fastconv"]["median_ms"] > 0
    assert data["machine"]["threads"] == 1 and "blas" in data["machine"]
    assert data["memory_mib"]["fastconv"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "| op: lenet conv1 |" in md and "fastconv/numpy" in md


def test_bench_command_in_the_package(capsys):
    # `fastconv bench` hands its arguments to the suite's own parser (the suite ships inside the
    # package, so it runs wherever fastconv is installed, not only from a checkout)
    from fastconv.__main__ import main as cli_main
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--help"])
    assert e.value.code == 0 and "usage: fastconv bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--no-such-option"])
    assert e.value.code == 2 and "--no-such-option" in capsys.readouterr().err


def test_maxpool_lenet_twins_match_the_zoo_model():
    from fastconv.bench import models
    model = models.fastconv_model("lenet5_maxpool", (28, 28, 1), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MaxPooling2D") == 2 and "AveragePooling2D" not in kinds
    assert model.count_params() == 61706  # the PyTorch/TF twins' count (same layers as the classic)


def test_overhead_bench_runs(capsys):
    from benchmarks import bench_overhead
    rows = bench_overhead.main(["--repeats", "1", "--calls", "2", "--no-torch"])
    assert rows["LeNet-5 train step b1"]["fastconv"] > 0
    assert "| Conv2D layer call |" in capsys.readouterr().out


def test_bandwidth_bench_quick(capsys):
    from benchmarks.bench_bandwidth import main as bandwidth_main
    out = bandwidth_main(["--quick", "--threads", "1", "--repeats", "1"])
    names = [r["op"] for r in out["rows"]]
    for want in ("max pool 3x3 s2 same fwd", "max pool 3x3 s2 same bwd", "avg pool 2x2 bwd", "global avg pool fwd",
                 "batch norm train fwd", "batch norm bwd", "batch norm inference", "bias+tanh bwd",
                 "softmax xent 8x10 fwd", "SGD momentum update", "Adam update",
                 "depthwise 3x3/1 + relu6 fwd 1x9x9x20", "depthwise 3x3/2 + relu6 fwd 1x9x9x20"):
        assert want in names
    assert all(r["ms"] > 0 and r["mb"] > 0 and r["gbs"] > 0 for r in out["rows"])
    assert all({"np.copyto", "native copy"} <= set(bw) for bw in out["copies"].values())
    table = capsys.readouterr().out
    assert "| op | MB moved | ms | GB/s | % copy | copy GB/s | page faults/call |" in table and "| copy np.copyto" in table


def test_depthwise_ab_bench(capsys):
    """The A/B bench with this build on both sides: every layer's row, and the two agree."""
    from benchmarks.bench_depthwise_ab import main as ab_main
    from fastconv import _C
    ab_main(["--old-so", _C.__file__, "--repeats", "1", "--evict-mb", "1"])
    table = capsys.readouterr().out
    assert "| 1x112x112x32 /1 |" in table and "| 1x7x7x1024 /1 |" in table and "| total |" in table


def test_folder_training_bench_tiny(capsys):
    # runs the script end to end (folder, three inputs, table); speed is not asserted
    pytest.importorskip("PIL")
    from benchmarks.bench_folder_training import main as folder_main
    rows = folder_main(["--images", "32", "--size", "32", "--epochs", "1"])
    assert set(rows) == {"arrays", "folder, cached", "folder, decoded each epoch"}
    assert all(first > 0 and later > 0 for first, later in rows.values())
    assert "folder, decoded each epoch" in capsys.readouterr().out
