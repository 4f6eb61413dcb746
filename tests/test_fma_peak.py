"""The per-level multiply-add peak probe (csrc/cpu/fma_peak.cpp, `_C._fma_peak_gflops`): the
hardware ceiling benchmarks/bench_isa_levels.py and bench_gemm.py measure the kernels against.
Its speed is a benchmark figure (not asserted here); what is tested is which widths each level
offers, that every offered width (and the default, 0: the widest) runs and returns a finite positive
rate, and that a width the level lacks is refused with a message naming it."""
import math

import pytest

from fastconv import _C

# x86-64 levels: SSE2 (128) everywhere, AVX2+FMA (256) from x86-64-v3, AVX-512 (512) at v4
WIDTHS = {"baseline": [128], "avx2": [128, 256], "avx512": [128, 256, 512]}


def test_widths_follow_the_level():
    level = _C.isa_level()
    if level not in WIDTHS:
        pytest.skip(f"level {level} (a native or non-x86 build) has no fixed width list")
    assert _C._fma_peak_widths() == WIDTHS[level]


@pytest.mark.parametrize("bits", [0, 128, 256, 512])
def test_each_width_runs(bits):
    if bits and bits not in _C._fma_peak_widths():
        with pytest.raises(ValueError, match=rf"bits must be 0 or a vector width .*got {bits}"):
            _C._fma_peak_gflops(0.0, 1, bits)
        return
    gflops = _C._fma_peak_gflops(0.0, 2, bits)
    # one core: more than a scalar adder at 100 MHz, less than a 512-bit core at 50 GHz
    assert math.isfinite(gflops) and 0.2 < gflops < 3200


def test_bad_width_names_the_argument():
    with pytest.raises(ValueError, match="bits"):
        _C._fma_peak_gflops(0.0, 1, 384)
