"""Sigmoid and tanh in _C's bias + activation pass (csrc/cpu/activation.cpp act_run, fast_exp.h
exp_lanes / tanh_lanes with kMinMax256: the exp's clamps as vmaxps / vminps at the avx2 level)
and fused into a conv's output pass. Against the NumPy oracle in float64 (rtol 1e-5 and atol
1e-6: results in [-1, 1], the exp a few ulp), across the clamp edges (exp's argument below
-87.5 or above 89, +-inf: saturated results, no NaN), NaN kept in its own element; odd sizes
(the vector loop plus a scalar tail) and batch 1."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

ACTS = ["sigmoid", "tanh"]
EDGES = np.array([-np.inf, -1e30, -200.0, -104.5, -89.5, -89.0, -88.7, -87.6, -87.5, -87.4, -44.6, -44.0,
                  -20.0, -0.56, -0.55, -1e-30, -0.0, 0.0, 1e-30, 0.54, 0.55, 20.0, 43.9, 44.6, 87.4, 87.5,
                  87.6, 88.7, 89.0, 89.5, 104.5, 200.0, 1e30, np.inf], dtype=np.float32)


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("m,c", [(1, 1), (1, 7), (3, 5), (1, 120), (17, 6), (61, 16), (256, 84), (5, 33)])
def test_bias_act_matches_the_oracle(act, m, c):
    rng = np.random.default_rng(m * 100 + c)
    x = (rng.standard_normal((m, c)) * 30).astype(np.float32)
    b = (rng.standard_normal(c) * 5).astype(np.float32)
    got = _C.bias_act_forward(x, b, act)
    _close(got, R.bias_act_forward(x.astype(np.float64), b.astype(np.float64), act))
    got = _C.bias_act_forward(x, None, act)
    _close(got, R.bias_act_forward(x.astype(np.float64), None, act))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("offset", [0, 3])
def test_clamp_edges_and_infinities(act, offset):
    """Every edge in every lane position of a register (offset: the edges start mid-register)."""
    x = np.concatenate([np.zeros(offset, np.float32)] + [np.roll(EDGES, s) for s in range(8)])[None, :]
    got = _C.bias_act_forward(x, None, act)
    want = R.bias_act_forward(x.astype(np.float64), None, act)
    assert np.isfinite(got).all()
    _close(got, want)
    if act == "sigmoid":
        assert (got[np.isneginf(x)] == 0).all() and (got[np.isposinf(x)] == 1).all()
    else:
        assert (got[np.isneginf(x)] == -1).all() and (got[np.isposinf(x)] == 1).all()


@pytest.mark.parametrize("act", ACTS)
def test_nan_stays_in_its_element(act):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((9, 13)) * 50).astype(np.float32)
    x[0, 0] = x[4, 7] = x[8, 12] = np.nan
    x[2, 3], x[2, 4] = np.inf, -np.inf
    got = _C.bias_act_forward(x, np.zeros(13, np.float32), act)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    ok = ~np.isnan(x)
    _close(got[ok], R.bias_act_forward(x.astype(np.float64), None, act)[ok])


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n,hw,ci,co,pad", [(1, 28, 1, 6, 2), (1, 14, 6, 16, 0), (3, 11, 2, 5, 1), (2, 9, 6, 16, 0)])
def test_conv_with_fused_activation(act, n, hw, ci, co, pad):
    rng = np.random.default_rng(n + hw + ci + co)
    x = (rng.standard_normal((n, hw, hw, ci)) * 3).astype(np.float32)
    w = (rng.standard_normal((5, 5, ci, co)) * 2).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    x.flat[7] = np.nan  # one input pixel: NaN in the outputs whose window holds it, no others
    got = _C.conv2d_forward(x, w, b, (1, 1), (pad,) * 4, (1, 1), 1, act)
    f64 = lambda v: v.astype(np.float64)  # noqa: E731
    want = R.conv2d_forward(f64(x), f64(w), f64(b), (1, 1), (pad,) * 4, (1, 1), 1, act)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    # the activation of the kernel's own float32 sums (their rounding, ~1e-6 of sums up to ~100,
    # is the conv's, tested elsewhere): the fused pass against the oracle's formula
    z = _C.conv2d_forward(x, w, b, (1, 1), (pad,) * 4, (1, 1), 1, "linear")
    ok = ~np.isnan(want)
    _close(got[ok], R.bias_act_forward(f64(z), None, act)[ok])
    # and against the float64 conv within the sums' rounding (sigmoid' <= 1/4, tanh' <= 1)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-4)
