"""The native sgemm's micro-kernel width (csrc/cpu/gemm.cpp gemm_width_for): 512-bit on every
CPU, Zen 4 included (its 256-bit kernels measured slower there, benchmarks/RESULTS.md
2026-12-06), FASTCONV_GEMM_WIDTH overriding; and both kernels' results, by running the sgemm
and fused-conv tests in subprocesses with each width forced (read once per process)."""
import os

import pytest

from fastconv import _C

from fastconv_subprocess import run_python

TESTS = os.path.dirname(os.path.abspath(__file__))

native = pytest.mark.skipif(not _C.has_native_gemm, reason="native sgemm not compiled in at this level")


@pytest.mark.parametrize("vendor, family, width", [
    ("AuthenticAMD", 0x19, 512),   # Zen 4: 256-bit measured slower (see the module doc)
    ("AuthenticAMD", 0x1A, 512),   # Zen 5: full-width units
    ("AuthenticAMD", 0x17, 512),
    ("GenuineIntel", 6, 512),      # every Intel AVX-512 part: unchanged
    ("GenuineIntel", 0x19, 512),   # the family alone does not decide
    ("", 0, 512),                  # no CPUID
])
def test_width_by_vendor_and_family(vendor, family, width):
    assert _C._gemm_width_for(vendor, family) == width
    assert _C._gemm_width_for(vendor, family, "") == width


@pytest.mark.parametrize("env", ["256", "512"])
@pytest.mark.parametrize("vendor, family", [("AuthenticAMD", 0x19), ("GenuineIntel", 6)])
def test_environment_overrides(env, vendor, family):
    assert _C._gemm_width_for(vendor, family, env) == int(env)


@pytest.mark.parametrize("env", ["128", "avx2", " 256", "1024"])
def test_bad_environment_value_is_a_clear_error(env):
    with pytest.raises(ValueError, match="FASTCONV_GEMM_WIDTH must be '256' or '512'"):
        _C._gemm_width_for("GenuineIntel", 6, env)


def test_process_width_is_reported():
    # 512 on every CPU unless the environment says otherwise; 0 without the native sgemm.
    expected = int(os.environ.get("FASTCONV_GEMM_WIDTH") or 512) if _C.has_native_gemm else 0
    assert _C.gemm_width() == expected
    from fastconv.__main__ import info
    assert info()["gemm_kernels"].startswith(f"{_C.gemm_width()}-bit" if _C.has_native_gemm else "openblas")


@native
@pytest.mark.parametrize("width", ["256", "512"])
def test_forced_width_is_used_and_results_match(width):
    # The sgemm tests (every transpose, edge, short strip, blocking boundary) and the conv
    # tests whose GEMMs carry the fused bias / residual / relu epilogue, at this width.
    r = run_python(["-c", "from fastconv import _C; assert _C.gemm_width() == %s" % width],
                   env={"FASTCONV_GEMM_WIDTH": width}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # absolute paths: run_python's working directory is the imported package's folder
    # (site-packages in CI), not the repository root
    files = [os.path.join(TESTS, name) for name in
             ("test_gemm.py", "test_conv_residual.py", "test_conv_prepared_pointwise.py")]
    r = run_python(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                   env={"FASTCONV_GEMM_WIDTH": width}, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


@native
def test_bad_environment_value_fails_the_gemm():
    code = ("import numpy as np; from fastconv import _C\n"
            "a = np.ones(4, np.float32); c = np.zeros(4, np.float32)\n"
            "try:\n    _C._sgemm(False, False, 2, 2, 2, 1.0, a, 2, a, 2, 0.0, c, 2, 'native')\n"
            "except ValueError as e:\n    print('ERR', e)\n")
    r = run_python(["-c", code], env={"FASTCONV_GEMM_WIDTH": "wide"}, capture_output=True, text=True)
    assert "ERR FASTCONV_GEMM_WIDTH must be '256' or '512', got 'wide'" in r.stdout, r.stdout + r.stderr
