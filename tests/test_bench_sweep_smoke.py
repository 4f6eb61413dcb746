"""benchmarks/bench_sweep.py --quick with a tiny budget, so the sweep does not rot. Asserts the
report's structure and that every efficiency is a finite positive number, never a speed."""
import math
import os
import re
import sys

import pytest

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

from benchmarks import bench_sweep  # noqa: E402


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.md"
    results, families, text = bench_sweep.main(["--quick", "--budget", "0.05", "--out", str(out)])
    return results, families, text, out


def test_every_family_is_measured_with_finite_positive_efficiency(quick_sweep):
    results, families, _, _ = quick_sweep
    expected = [name for name, _ in bench_sweep.all_families()]
    assert list(families) == expected
    assert {"conv 3x3 s1 fwd", "conv 1x1 s2 bwd-filter", "depthwise 3x3 bwd", "max_pool 2x2 bwd",
            "avg_pool 2x2 fwd", "batch_norm bwd", "bias+relu fwd", "softmax bwd", "dense fwd"} <= set(expected)
    for name, fam in families.items():
        assert 1 <= fam["measured"] <= fam["grid"] - fam["pruned"] - fam["tiny"], name
        assert math.isfinite(fam["median"]) and fam["median"] > 0, name
    assert results
    for case in results:
        assert math.isfinite(case.efficiency) and case.efficiency > 0, (case.family, case.shape)
        assert case.seconds > 0


def test_below_half_lists_exactly_the_cases_under_half_the_median(quick_sweep):
    results, families, _, _ = quick_sweep
    for name, fam in families.items():
        mine = [c for c in results if c.family == name]
        # the rule uses the roofline efficiency (bench_sweep's docstring), never below the plain one
        assert all(c.roofline >= c.efficiency * (1 - 1e-12) for c in mine), name
        expected = {id(c) for c in mine if c.roofline < fam["median"] / 2}
        assert {id(c) for c in fam["below_half"]} == expected, name


def test_cases_below_half_are_retimed_and_the_first_pass_count_is_kept(quick_sweep):
    results, families, text, _ = quick_sweep
    for name, fam in families.items():
        mine = [c for c in results if c.family == name]
        first = [c for c in mine if c.attempts > 1]
        # every case of the first pass's below-half list (and only those) was timed 1 + --retime times
        assert len(first) == fam["first_below"] and all(c.attempts == 3 for c in first), name
        assert all(c.attempts == 1 for c in mine if c not in first), name
        assert set(map(id, fam["below_half"])) <= set(map(id, first)), name
        row = re.search(rf"^\| {re.escape(name)} \|.*\| {fam['first_below']} \| {len(fam['below_half'])} \|$", text, re.M)
        assert row, name


def test_markdown_report_has_family_table_and_worst_ten(quick_sweep):
    results, families, text, out = quick_sweep
    assert out.read_text() == text
    assert "sgemm ceiling" in text
    family_rows = re.findall(r"^\| (.+?) \| (FLOP/s vs sgemm|bytes/s vs copy) \|", text, re.M)
    assert [r[0] for r in family_rows] == list(families)
    worst = text.split("## Worst ten overall")[1].split("##")[0]
    rows = [line for line in worst.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert len(rows) == min(10, len(results))
    ratios = [float(r.rstrip(" |").rsplit("|", 1)[1]) for r in rows]
    assert ratios == sorted(ratios) and all(r >= 0 for r in ratios)


@pytest.mark.parametrize("argv, message", [(["--repeats", "2"], "--repeats"), (["--budget", "0"], "--budget"),
                                           (["--retime", "-1"], "--retime"),
                                           (["--threads", "0"], "--threads")])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_sweep.parse_args(argv)
    assert message in capsys.readouterr().err


def test_families_filter_and_unknown_family_refused(capsys):
    args = bench_sweep.parse_args(["--families", "softmax,max_pool"])
    assert args.families == ["softmax", "max_pool"]
    with pytest.raises(SystemExit):
        bench_sweep.parse_args(["--families", "no_such_kernel"])
    assert "no_such_kernel" in capsys.readouterr().err


@pytest.mark.parametrize("family, n, hw, c, expected", [
    ("conv 3x3 s1 fwd", 32, 28, 6, "few-channel conv"),
    ("conv 3x3 s1 fwd", 1, 14, 64, "small-M GEMM (M = 196)"),
    ("conv 1x1 s2 bwd-filter", 32, 56, 256, "1x1 / stride-2 conv"),
    ("conv 3x3 s1 fwd", 32, 56, 64, "-"),
    ("dense fwd", 1, 56, 256, "small-M GEMM (M = 56)"),
    ("dense bwd", 32, 56, 3, "narrow GEMM"),
    ("softmax fwd", 32, 56, 3, "few channels"),
    ("batch_norm fwd", 32, 56, 64, "-"),
])
def test_classify_names_the_kernel_path(family, n, hw, c, expected):
    case = bench_sweep.Case(family, "", None, flops=1e9 if family.startswith(("conv", "dense")) else 0.0,
                            traffic=1 << 26, n=n, hw=hw, c=c)
    case.seconds, case.efficiency, case.roofline = 0.1, 0.5, 0.5
    assert bench_sweep.classify(case).startswith(expected)
