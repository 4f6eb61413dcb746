"""The depthwise 3x3 stride-1 weight pass with rows in pairs (csrc/cpu/depthwise_weights.cpp):
rows in pairs (weights_pair) with the next pair's new input and dy rows requested into L2 a line
per row and pixel of each channel block, instead of the next line's rows in one burst. The requests change no result:
dW and db against the float64 oracle on inputs of 24 KB to 6 MB, odd sizes ('same' and
'valid', an odd number of output rows per image so that pairs break at image ends), C a multiple
of 16 at and over 256 (the 64-byte head block) and not; NaN / inf propagation; two threads.
Tolerances as in test_depthwise.py."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

FOUR_MIB = 4 << 20  # large inputs: the rows from L3 or memory, where the requests count


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _grads(x, dy, pads, bias):
    c = x.shape[3]
    args = ((1, 1), pads, (1, 1), c)
    got = _C.conv2d_backward_weights(dy, x, (3, 3, 1, c), *args, bias)
    ref = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), (3, 3, 1, c), *args, bias)
    return got, ref


def _data(rng, n, h, w, c, pads):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    oh, ow = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    return x, dy


# (n, h, w, c, pads): over 4 MiB unless marked; 29 and 31 rows: odd output rows per image
# ('same'), 33 rows 'valid': 31 output rows.
CASES = [
    (3, 29, 31, 400, (1, 1, 1, 1)),
    (1, 58, 60, 304, (1, 1, 1, 1)),   # C % 16 == 0, >= 256: the head block when x, dy share an offset
    (2, 33, 35, 512, (0, 0, 0, 0)),
    (9, 31, 29, 136, (1, 1, 1, 1)),
    (1, 29, 31, 400, (1, 1, 1, 1)),   # 1.4 MB
    (2, 9, 7, 48, (1, 1, 1, 1)),      # 24 KB; C = 48: three blocks a pair
    (3, 8, 11, 37, (0, 0, 0, 0)),     # a masked block, 'valid': dy rows shorter than x rows
]


@pytest.mark.parametrize("n,h,w,c,pads", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_far_weight_pass_matches_oracle(n, h, w, c, pads, bias):
    rng = np.random.default_rng(n * 1000 + c)
    x, dy = _data(rng, n, h, w, c, pads)
    (dw, db), (rdw, rdb) = _grads(x, dy, pads, bias)
    _close(dw, rdw)
    if bias:
        _close(db, rdb)
    else:
        assert db is None


def test_far_weight_pass_nan_and_inf_propagate():
    """NaN in x at an interior pixel reaches exactly its channel's 9 taps of dW (nothing else);
    inf in dy at an interior pixel reaches its channel's db and 9 taps (inf times the nonzero
    finite x of its window)."""
    rng = np.random.default_rng(7)
    n, h, w, c = 2, 33, 31, 544
    x, dy = _data(rng, n, h, w, c, (1, 1, 1, 1))
    assert x.nbytes >= FOUR_MIB
    x[1, 17, 12, 300] = np.nan
    dy[0, 5, 12, 7] = np.inf
    (dw, db), _ = _grads(x, dy, (1, 1, 1, 1), True)
    bad = ~np.isfinite(dw)
    assert np.isnan(dw[:, :, 0, 300]).all()
    assert not np.isfinite(dw[:, :, 0, 7]).any()
    bad[:, :, 0, 300] = False
    bad[:, :, 0, 7] = False
    assert not bad.any()
    assert np.isinf(db[7]) and np.isfinite(np.delete(db, 7)).all()


def test_far_weight_pass_two_threads(two_threads):
    """Lines split over two threads (the pairs and the requests per thread range): the oracle,
    and the same bits on every run with two threads."""
    rng = np.random.default_rng(11)
    x, dy = _data(rng, 5, 27, 29, 272, (1, 1, 1, 1))
    assert x.nbytes >= FOUR_MIB
    (dw, db), (rdw, rdb) = _grads(x, dy, (1, 1, 1, 1), True)
    _close(dw, rdw)
    _close(db, rdb)
    dw2, db2 = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 272), (1, 1), (1, 1, 1, 1), (1, 1), 272, True)
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)
