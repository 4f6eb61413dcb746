"""The functional layer's fast paths (plain-argument checks, the bounded caches of resolved conv
and pool geometry, floats() handing back a C-contiguous float32 ndarray as it is): results
match the NumPy reference backend on cached and uncached calls, and every bad argument still
raises its error after an equal-comparing good one was cached (True == 1.0 == 1)."""
import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv.autograd import Tensor
from fastconv.functional import _args, conv, pool

RTOL, ATOL = 1e-4, 1e-4  # float32 kernels against the float64 reference, sums of <= 27*8 terms


def _r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ref(fn, *args, **kw):
    with fastconv.backend("numpy"):
        return fn(*[a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a
                    for a in args], **kw)


def _close(a, b):
    if isinstance(a, tuple):
        for u, v in zip(a, b):
            _close(u, v)
        return
    if a is None or b is None:
        assert a is None and b is None
        return
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n,hw,strides,padding", [(1, 7, 1, "same"), (3, 8, 2, "same"), (2, 9, 2, "valid"),
                                                  (1, 6, (1, 2), "same"), (2, 7, 1, (1, 2)), (1, 5, 1, "SAME")])
def test_conv2d_cached_geometry_matches_reference(n, hw, strides, padding):
    x, w, b, = _r(n, hw, hw, 3), _r(3, 3, 3, 4, seed=1), _r(4, seed=2)
    ref = _ref(F.conv2d, x, w, b, strides=strides, padding=padding)
    for _ in range(3):  # first call fills the cache, the next ones hit it
        _close(F.conv2d(x, w, b, strides=strides, padding=padding), ref)
    dy = _r(*ref.shape, seed=3)
    ref_g = _ref(F.conv2d_backward, dy, x, w, strides=strides, padding=padding)
    for _ in range(2):
        _close(F.conv2d_backward(dy, x, w, strides=strides, padding=padding), ref_g)


def test_cache_keyed_on_shape_same_arguments_other_sizes():
    # one (strides, padding) for an odd and an even input: each its own 'same' split
    w = _r(3, 3, 2, 2)
    for hw in (7, 8, 7, 8):
        x = _r(2, hw, hw, 2, seed=hw)
        y = F.conv2d(x, w, strides=2, padding="same")
        assert y.shape == (2, -(-hw // 2), -(-hw // 2), 2)
        _close(y, _ref(F.conv2d, x, w, strides=2, padding="same"))


@pytest.mark.parametrize("kw,exc,msg", [
    ({"strides": True}, TypeError, "strides must be an int or a pair of ints"),
    ({"strides": 1.0}, TypeError, "strides must be an int or a pair of ints"),
    ({"strides": (True, 1)}, TypeError, "strides must be an int or a pair of ints"),
    ({"strides": (1.0, 1)}, TypeError, "strides must be an int or a pair of ints"),
    ({"dilation_rate": True}, TypeError, "dilation_rate must be an int or a pair of ints"),
    ({"groups": True}, ValueError, "groups must be an int >= 1"),
    ({"groups": np.int64(1)}, ValueError, "groups must be an int >= 1"),
    ({"padding": True}, TypeError, "padding must be 'valid', 'same'"),
    ({"padding": "full"}, ValueError, "padding must be 'valid' or 'same'"),
    ({"strides": 0}, ValueError, "strides must be >= 1"),
    ({"strides": (1, 0)}, ValueError, "strides must be >= 1"),
])
def test_conv_bad_arguments_raise_after_a_cached_good_call(kw, exc, msg):
    x, w = _r(1, 6, 6, 2), _r(3, 3, 2, 2)
    good = dict(strides=1, padding=0, dilation_rate=1, groups=1)
    F.conv2d(x, w, **good)
    F.conv2d(x, w, strides=(1, 1), padding="valid", dilation_rate=(1, 1))
    F.conv2d(x, w, strides=1, padding="same")
    with pytest.raises(exc, match=msg):
        F.conv2d(x, w, **{**good, **kw})
    with pytest.raises(exc, match=msg):
        F.conv2d_backward(_r(1, 4, 4, 2), x, w, **{**good, **kw})


def test_numpy_integers_still_accepted_and_equal():
    x, w = _r(2, 7, 7, 2), _r(3, 3, 2, 2)
    a = F.conv2d(x, w, strides=2, padding="same")
    b = F.conv2d(x, w, strides=(np.int64(2), np.int32(2)), padding="same", dilation_rate=np.int64(1))
    np.testing.assert_array_equal(a, b)
    assert _args.pair([2, 3], "s") == (2, 3) and _args.pair((2, 3), "s") == (2, 3) and _args.pair(4, "s") == (4, 4)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"pool_size": True}, TypeError, "pool_size must be an int or a pair of ints"),
    ({"pool_size": 2.0}, TypeError, "pool_size must be an int or a pair of ints"),
    ({"strides": (2, True)}, TypeError, "strides must be an int or a pair of ints"),
    ({"padding": "full"}, ValueError, "padding must be 'valid' or 'same'"),
    ({"pool_size": 0}, ValueError, "pool_size must be >= 1"),
])
def test_pool_bad_arguments_raise_after_a_cached_good_call(kw, exc, msg):
    x = _r(1, 6, 6, 3)
    F.max_pool2d(x, 2)
    F.avg_pool2d(x, 2, 2, "valid")
    F.avg_pool2d(x, (2, 2), (2, 2), "valid")
    args = {"pool_size": 2, "strides": None, "padding": "valid", **kw}
    for fn in (F.max_pool2d, F.avg_pool2d, F.max_pool2d_with_argmax):
        with pytest.raises(exc, match=msg):
            fn(x, **args)
    with pytest.raises(exc, match=msg):
        F.avg_pool2d_backward(_r(1, 3, 3, 3), x.shape, **args)


@pytest.mark.parametrize("n,hw,pool_size,strides,padding", [(1, 7, 2, None, "valid"), (3, 7, 2, None, "same"),
                                                            (2, 8, 3, 2, "same"), (1, 9, (2, 3), (1, 2), "valid")])
def test_pool_cached_geometry_matches_reference(n, hw, pool_size, strides, padding):
    x = _r(n, hw, hw, 3)
    for _ in range(2):
        y = F.max_pool2d(x, pool_size, strides, padding)
        _close(y, _ref(F.max_pool2d, x, pool_size, strides, padding))
        _close(F.avg_pool2d(x, pool_size, strides, padding), _ref(F.avg_pool2d, x, pool_size, strides, padding))
        dy = _r(*y.shape, seed=5)
        _close(F.max_pool2d_backward(dy, x, pool_size, strides, padding),
               _ref(F.max_pool2d_backward, dy, x, pool_size, strides, padding))
        _close(F.avg_pool2d_backward(dy, x.shape, pool_size, strides, padding),
               _ref(F.avg_pool2d_backward, dy, x.shape, pool_size, strides, padding))
        _, am = F.max_pool2d_with_argmax(x, pool_size, strides, padding)
        shape = tuple(np.int64(s) for s in x.shape)  # numpy ints as a shape: converted, same result
        _close(F.max_pool2d_backward_argmax(dy, am, shape, pool_size, strides, padding),
               _ref(F.max_pool2d_backward, dy, x, pool_size, strides, padding))


def test_caches_stay_bounded_and_correct():
    w = _r(1, 1, 1, 1)
    for hw in range(1, 300):
        x = np.full((1, 1, hw, 1), 2.0, np.float32)
        y = F.conv2d(x, w, padding="same")
        np.testing.assert_allclose(y, 2.0 * w[0, 0, 0, 0])
        assert F.avg_pool2d(x, 1).shape == x.shape
    assert 0 < len(conv._conv_cache) <= 256 and 0 < len(pool._pool_cache) <= 256


def test_floats_fast_path_and_coercions():
    x = _r(2, 3)
    assert _args.floats(x, "x") is x  # C-contiguous float32: handed back as it is
    for v in (x.astype(np.float64), np.asfortranarray(_r(4, 5)), _r(4, 6)[:, ::2], x.astype(">f4"),
              np.arange(6).reshape(2, 3), [[1.0, 2.0]]):
        y = _args.floats(v, "x")
        assert y.dtype == np.float32 and y.flags.c_contiguous
        np.testing.assert_array_equal(y, np.asarray(v, np.float32))
    zero_d = np.array(1.5, np.float32)  # np.ascontiguousarray makes it 1-d: unchanged behaviour
    assert _args.floats(zero_d, "x").shape == np.ascontiguousarray(zero_d).shape
    assert _args.floats(None, "b") is None
    with fastconv.backend("numpy"):
        x64 = x.astype(np.float64)
        assert _args.floats(x64, "x").dtype == np.float64 and _args.floats(x, "x") is x
    with pytest.raises(TypeError, match="x must be an array, got a Tensor"):
        F.conv2d(Tensor(_r(1, 4, 4, 1)), _r(1, 1, 1, 1))


def test_non_contiguous_and_float64_inputs_through_the_wrappers():
    x = _r(2, 6, 12, 3)[:, :, ::2, :]  # not contiguous
    w = _r(3, 3, 3, 2, seed=1).astype(np.float64)
    _close(F.conv2d(x, w, padding="same"), _ref(F.conv2d, np.ascontiguousarray(x), w, padding="same"))
    wd = _r(3, 3, 3, 1, seed=2)
    ref = _ref(F.depthwise_conv2d, np.ascontiguousarray(x), wd, padding="same")
    _close(F.depthwise_conv2d(x.astype(np.float64), wd, padding="same"), ref)
    dy = _r(*ref.shape, seed=3)
    _close(F.depthwise_conv2d_backward(dy.astype(np.float64), x, wd, padding="same"),
           _ref(F.depthwise_conv2d_backward, dy, np.ascontiguousarray(x), wd, padding="same"))


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (1, 1)])
def test_softmax_rows_and_higher_rank_match_reference(shape):
    x, dy = _r(*shape), _r(*shape, seed=1)
    y = F.softmax(x)
    assert y.shape == x.shape
    _close(y, _ref(F.softmax, x))
    _close(F.softmax_backward(dy, y), _ref(F.softmax_backward, dy, y.astype(np.float64)))
    with pytest.raises(ValueError, match="dy must have the shape of y"):
        F.softmax_backward(dy[..., :-1] if shape[-1] > 1 else _r(*shape[:-1], 2), y)


def test_nan_and_inf_propagate_through_the_fast_paths():
    x = _r(1, 5, 5, 2)
    x[0, 2, 2, 1] = np.nan
    x[0, 0, 0, 0] = np.inf
    y = F.conv2d(x, np.abs(_r(3, 3, 2, 2)) + 0.1, padding="same")
    assert np.isnan(y[0, 1:4, 1:4]).all() and np.isnan(y).sum() >= 9
    assert np.isnan(F.max_pool2d(x, 2)[0, 1, 1, 1]) and np.isinf(F.avg_pool2d(x, 2)[0, 0, 0, 0])
    s = _r(3, 4)
    s[1, 2] = np.nan
    p = F.softmax(s)
    assert np.isnan(p[1]).all() and np.isfinite(p[[0, 2]]).all()


def test_activation_names_and_backend_helpers():
    x, b = _r(2, 5), _r(5, seed=1)
    for act in (None, "linear", "relu", "RELU", "sigmoid", "tanh"):
        _close(F.bias_activation(x, b, act), _ref(F.bias_activation, x, b, act))
    with pytest.raises(ValueError, match="activation must be one of"):
        F.bias_activation(x, b, "gelu")
    with pytest.raises(ValueError, match="activation must be one of"):
        F.conv2d(_r(1, 3, 3, 1), _r(1, 1, 1, 1), activation=["relu"])
    assert F.is_device_array(x) is False and F.array_module(x) is np
    assert fastconv.get_backend() == "cpu" and type(fastconv.get_backend()) is str
    with fastconv.backend("numpy"):
        assert fastconv.get_backend() == "numpy"


def test_depthwise_shape_errors():
    x = _r(1, 5, 5, 3)
    with pytest.raises(ValueError, match=r"depthwise kernel w \(3, 3, 2, 1\) expects 2 input channels, x \(1, 5, 5, 3\) has 3"):
        F.depthwise_conv2d(x, _r(3, 3, 2, 1))
    with pytest.raises(ValueError, match=r"w must be 4-D \(KH, KW, C, depth_multiplier\)"):
        F.depthwise_conv2d(x, _r(3, 3, 3))
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, H, W, C\)"):
        F.depthwise_conv2d_backward(_r(5, 5, 3), x[0], _r(3, 3, 3, 1))
    y = F.depthwise_conv2d(x, _r(3, 3, 3, 2), padding="same")  # depth multiplier 2
    _close(y, _ref(F.depthwise_conv2d, x, _r(3, 3, 3, 2), padding="same"))


@pytest.mark.parametrize("n", [1, 5, 32, 33, 100])  # <= 32: the Python min/max, else numpy's
def test_labels_range_checked_both_ways(n):
    logits = _r(n, 4)
    labels = np.arange(n) % 4
    loss, probs = F.softmax_cross_entropy(logits, labels)
    ref_loss, ref_probs = _ref(F.softmax_cross_entropy, logits, labels)
    _close((loss, probs), (ref_loss, ref_probs))
    _close(F.softmax_cross_entropy_backward(probs, labels), _ref(F.softmax_cross_entropy_backward, ref_probs, labels))
    for bad in (4, -1):
        wrong = labels.copy()
        wrong[n // 2] = bad
        lo, hi = int(np.min(wrong)), int(np.max(wrong))
        with pytest.raises(ValueError, match=rf"labels must be in \[0, 4\), got values in \[{lo}, {hi}\]"):
            F.softmax_cross_entropy(logits, wrong)
        with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
            F.softmax_cross_entropy_backward(probs, wrong.astype(np.float64))


def test_scalar_first_element_in_c_order():
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3) + 1)[:, 1:]  # a non-contiguous view
    for v in (np.array([1.5], np.float32), np.array(3), np.array([[2, 5]]), np.float32(0.1), 7, [4.0], f,
              np.array([np.nan]), np.array([-np.inf], np.float32)):
        got, want = F.scalar(v), float(np.ravel(np.asarray(v))[0])
        assert type(got) is float and (got == want or (np.isnan(got) and np.isnan(want)))
    with pytest.raises(IndexError):
        F.scalar(np.zeros(0, np.float32))
