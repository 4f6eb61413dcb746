"""The weight pass of stride-1 1x1 convs (groups 1) on avx2 register tiles where the GEMM is OpenBLAS
(csrc/cpu/pointwise_weights_avx2.cpp, stop 39): Cin and Cout multiples of 8 up to 256;
pixels in blocks of 128, the operand with more channels (x at a tie) packed in panels of 16 channels,
the other in slivers of 6, 6 x 16 register tiles; up to 1024 pixels dy in panels (dW itself);
db summed from each block of dy. At AVX-512, the baseline level, and for the
other shapes here (Cin or Cout not a multiple of 8, past the limits) the GEMM path runs the same
calls, and these tests check that one.

Against the float64 oracle: each element of dw within 1e-5 of its magnitude (the sum of |x| |dy|
over the pixels: the largest its float32 rounding can reach), db within 1e-5 of sum |dy|. Shapes:
item 2's layer scaled down (28x28 256->64 at N=2: 1568 pixels, 12 whole blocks and 32 pixels), the
sweep's square shapes (C 16..512) at batch 1 and 2, odd H and W, one pixel, pixel counts of 127,
128, 129 and 256 (a block's edges), 1221..1568 (past 1024: either operand in panels), Cout 8..72 (slivers of 2 and 4 rows at the end), Cin 8, 24,
40, 136 (a last panel of 8 channels), the limits (256) and past them. With and without
db; one and two threads (each against the oracle, two threads the same in repeated runs); every
element written (the tests' outputs start as NaN, conftest.py); NaN and inf in x reach exactly
that input channel's row of dw, in dy that output channel's column and db.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

ONE, NO_PAD = (1, 1), (0, 0, 0, 0)
ARGS = (ONE, NO_PAD, ONE, 1)


def _operands(seed, n, h, w, cin, cout):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    return x, dy


def _with_threads(threads, f):
    saved = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        return f()
    finally:
        _C.set_num_threads(saved)


def _run(x, dy, with_db=True):
    return _C.conv2d_backward_weights(dy, x, (1, 1, x.shape[3], dy.shape[3]), *ARGS, with_db)


def _check(x, dy, dw, db, with_db=True):
    cin, cout = x.shape[3], dy.shape[3]
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    ref_dw, ref_db = R.conv2d_backward_weights(dy64, x64, (1, 1, cin, cout), *ARGS, with_db)
    mag = np.abs(x64.reshape(-1, cin)).T @ np.abs(dy64.reshape(-1, cout))
    assert dw.dtype == np.float32 and dw.shape == (1, 1, cin, cout)
    assert np.isfinite(dw).all()
    assert (np.abs(dw[0, 0] - ref_dw[0, 0]) <= 1e-5 * mag + 1e-30).all()
    if not with_db:
        assert db is None
        return
    assert db.dtype == np.float32 and db.shape == (cout,)
    assert np.isfinite(db).all()
    assert (np.abs(db - ref_db) <= 1e-5 * np.abs(dy64).reshape(-1, cout).sum(axis=0) + 1e-30).all()


# (n, h, w, cin, cout)
SHAPES = {
    "item2_scaled": (2, 28, 28, 256, 64),       # 1568 pixels: 12 whole blocks + 32
    "batch1_odd": (1, 13, 11, 256, 64),         # 143 pixels: a block and 15
    "odd_hw": (3, 7, 9, 128, 64),               # 189 pixels
    "one_pixel": (1, 1, 1, 256, 64),
    "two_pixels": (2, 1, 1, 128, 32),
    "px127": (1, 127, 1, 64, 64),
    "px128": (2, 8, 8, 64, 64),
    "px129": (1, 3, 43, 64, 64),
    "px256": (1, 16, 16, 96, 48),
    "c64_256": (2, 14, 14, 64, 256),            # Cout > Cin (43 slivers)
    "c512_128": (1, 14, 14, 512, 128),
    "cout8": (1, 9, 9, 64, 8),                  # one sliver of 6 and one of 2
    "cout24": (2, 5, 7, 32, 24),                # 4 slivers
    "cout40": (1, 11, 11, 48, 40),              # a last sliver of 4
    "cout72": (1, 10, 10, 64, 72),
    "cin8": (2, 9, 9, 8, 64),                   # a panel of 8 only
    "cin24": (1, 12, 13, 24, 48),               # a panel of 16 and one of 8
    "cin40": (1, 9, 11, 40, 16),
    "cin136": (1, 7, 7, 136, 64),
    "cin256": (1, 7, 7, 256, 32),               # the limits
    "cout256": (1, 5, 5, 64, 256),
    "cin264": (1, 4, 4, 264, 16),               # past them: the GEMM
    "cout264": (1, 4, 4, 16, 264),
    "c512": (1, 5, 5, 512, 512),
    # past 1024 pixels: x in panels (dW^T, transposed at the end) unless Cout > Cin
    "many_tails": (1, 33, 37, 136, 40),         # 1221 pixels: a panel of 8, a sliver of 4
    "many_square": (2, 23, 29, 24, 24),         # 1334 pixels
    "many_cout72": (1, 35, 35, 40, 72),         # dy in panels: a panel of 8, slivers of 5 (40)
    "cin100": (1, 6, 6, 100, 64),               # not multiples of 8: the GEMM
    "cout60": (1, 6, 6, 64, 60),
}
# The sweep's square 1x1 shapes (family "conv 1x1 s1 bwd-filter") scaled down.
SWEEP = [(n, hw, c) for n in (1, 2) for hw in (7, 14) for c in (16, 24, 32, 48, 64, 96, 128, 256, 512)]


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("with_db", [True, False])
def test_matches_oracle(name, with_db):
    x, dy = _operands(1, *SHAPES[name])
    dw, db = _run(x, dy, with_db)
    _check(x, dy, dw, db, with_db)


@pytest.mark.parametrize("n,hw,c", SWEEP)
def test_sweep_shapes_match_oracle(n, hw, c):
    x, dy = _operands(2, n, hw, hw, c, c)
    dw, db = _run(x, dy)
    _check(x, dy, dw, db)


@pytest.mark.parametrize("name", ["item2_scaled", "batch1_odd", "px129", "c64_256", "cin24", "many_tails",
                                  "many_cout72"])
def test_two_threads(name):
    x, dy = _operands(3, *SHAPES[name])
    dw, db = _with_threads(2, lambda: _run(x, dy))
    _check(x, dy, dw, db)
    dw2, db2 = _with_threads(2, lambda: _run(x, dy))
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)


def test_empty_batch():
    x, dy = _operands(4, 0, 5, 5, 64, 32)
    dw, db = _run(x, dy)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_x_reaches_its_channel_only(threads, bad):
    x, dy = _operands(5, 2, 9, 15, 64, 48)  # 270 pixels: three blocks
    x[1, 4, 7, 37] = bad
    dw, db = _with_threads(threads, lambda: _run(x, dy))
    bad_rows = ~np.isfinite(dw[0, 0]).all(axis=1)
    assert np.flatnonzero(bad_rows).tolist() == [37]
    assert (~np.isfinite(dw[0, 0, 37])).all()
    if np.isnan(bad):
        assert np.isnan(dw[0, 0, 37]).all()
    assert np.isfinite(db).all()
    x[1, 4, 7, 37] = 0
    dw_ok, _ = _run(x, dy)
    _check(x, dy, dw_ok, db)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_dy_reaches_its_channel_only(threads, bad):
    x, dy = _operands(6, 2, 9, 15, 64, 48)
    dy[0, 8, 14, 29] = bad
    dw, db = _with_threads(threads, lambda: _run(x, dy))
    bad_cols = ~np.isfinite(dw[0, 0]).all(axis=0)
    assert np.flatnonzero(bad_cols).tolist() == [29]
    assert (~np.isfinite(dw[0, 0, :, 29])).all()
    assert np.flatnonzero(~np.isfinite(db)).tolist() == [29]
    if np.isnan(bad):
        assert np.isnan(dw[0, 0, :, 29]).all() and np.isnan(db[29])


def test_functional_conv2d_backward():
    # Through the public API as the layers call it.
    from fastconv import functional as F
    x, dy = _operands(7, 2, 12, 12, 128, 32)
    w = np.random.default_rng(7).standard_normal((1, 1, 128, 32)).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, need_dx=False)
    assert dx is None
    _check(x, dy, dw, db)
