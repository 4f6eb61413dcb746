"""The weight pass's chunks of output lines on the GEMM path (conv2d.cpp im2col_backward_weights)
against the float64 NumPy oracle: rtol 1e-4, atol 1e-5 x the magnitude (conv_oracle.close).
Pointwise (1x1, stride 1): one chunk per thread (x is read in place, no col buffer bounds a
chunk); channel counts above narrow_pointwise's 32 keep it on the GEMM path; both forms of the
product run (dW^T when Cin is a multiple of 32 and Cout <= Cin, else dW), at 1 and 2 threads,
with line counts that do not split evenly between the threads. Weights larger than the 1 MiB col
budget: chunks of col up to the size of dW (kWeightColMaxBytes)."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close
from threads_used import conv_pass_threads

ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)  # strides, pads, dilation, groups

# (n, h, w, cin, cout): transposed form (cin % 32 == 0, cout <= cin), untransposed, odd sizes.
SHAPES = [
    (3, 61, 31, 64, 48),   # 183 lines (two col-budget chunks): 92 + 91 on two threads; dW^T
    (1, 41, 23, 40, 36),   # batch 1; dW (cin not a multiple of 32)
    (2, 19, 21, 96, 64),   # 38 lines; dW^T
    (5, 13, 11, 33, 70),   # cout > cin: dW
]


def _case(seed, n, h, w, cin, cout):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    return x, dy, (1, 1, cin, cout)


@pytest.fixture
def threads():
    old = _C.get_num_threads()
    yield _C.set_num_threads
    _C.set_num_threads(old)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_weights_match_oracle(threads, shape, nthreads, bias):
    threads(nthreads)
    x, dy, wshape = _case(11, *shape)
    assert _C.conv_algorithm(x.shape, wshape, *ARGS)["backward_weights"] == "im2col"
    dw, db = _C.conv2d_backward_weights(dy, x, wshape, *ARGS, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wshape, *ARGS, bias)
    close(dw, rdw)
    if bias:
        close(db, rdb)
    else:
        assert db is None


def test_two_threads_split_the_lines(threads):
    # The shape above with 183 lines runs its weight pass on both threads (two chunks), the same
    # to rounding as on one thread, and bit-identical from call to call.
    x, dy, wshape = _case(3, *SHAPES[0])
    threads(2)
    used = conv_pass_threads(x, np.ones(wshape, np.float32), *ARGS)
    assert used["backward_weights"] == 2, used
    dw2, _ = _C.conv2d_backward_weights(dy, x, wshape, *ARGS, False)
    again, _ = _C.conv2d_backward_weights(dy, x, wshape, *ARGS, False)
    np.testing.assert_array_equal(dw2, again)
    threads(1)
    dw1, _ = _C.conv2d_backward_weights(dy, x, wshape, *ARGS, False)
    np.testing.assert_allclose(dw1, dw2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1]])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_nonfinite_propagates(threads, shape, nthreads):
    # NaN in one pixel of x reaches every dw[ci] of that channel; inf in dy (late in the last
    # thread's chunk) every dw[:, co] of its channel: the same entries as the oracle's.
    threads(nthreads)
    x, dy, wshape = _case(5, *shape)
    n, h, w = x.shape[:3]
    x[0, 1, 2, 3] = np.nan
    dy[n - 1, h - 1, w - 2, 5] = np.inf
    dw, _ = _C.conv2d_backward_weights(dy, x, wshape, *ARGS, False)
    rdw, _ = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wshape, *ARGS, False)
    assert np.isnan(dw[0, 0, 3]).all() and not np.isfinite(dw[0, 0, :, 5]).any()
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(rdw))
    np.testing.assert_array_equal(np.isinf(dw), np.isinf(rdw))
    finite = np.isfinite(rdw)
    close(np.where(finite, dw, 0).astype(np.float32), np.where(finite, rdw, 0))


# (n, h, w, c, cout, k, stride, pads): dW of 1.3 MB > the 1 MiB col budget, so the col chunk
# grows (11 -> 14 lines of a 28-line pass: two chunks), 'same' padding on odd sizes; and a
# 'valid' one of 2.4 MB of weights at batch 1 (23 lines: 5 a chunk -> 11).
BIG_WEIGHTS = [
    (2, 27, 25, 192, 192, 3, 2, (1, 1, 1, 1)),
    (1, 47, 45, 256, 256, 3, 2, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("case", BIG_WEIGHTS)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_big_weights_match_oracle(threads, case, nthreads):
    threads(nthreads)
    n, h, w, c, cout, k, s, pads = case
    args = ((s, s), pads, (1, 1), 1)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    oh, ow = (h + pads[0] + pads[1] - k) // s + 1, (w + pads[2] + pads[3] - k) // s + 1
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    wshape = (k, k, c, cout)
    assert _C.conv_algorithm(x.shape, wshape, *args)["backward_weights"] == "im2col"
    x[0, 2, 3, 7] = np.nan  # reaches the dw taps that read it, as in the oracle
    dw, db = _C.conv2d_backward_weights(dy, x, wshape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wshape, *args, True)
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(rdw))
    assert np.isnan(dw).any()
    finite = np.isfinite(rdw)
    close(np.where(finite, dw, 0).astype(np.float32), np.where(finite, rdw, 0))
    close(db, rdb)
