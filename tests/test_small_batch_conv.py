"""Small-batch (batch 1) conv inference against the NumPy oracle (fastconv.reference).

At batch 1 the im2col GEMM has few rows (N*OH*OW = 1..64), so most of them fall in the GEMM's
short last row strip, which runs exact-rows kernels (csrc/cpu/gemm.cpp, short_strip_kernel).
The oracle runs in float64 on the same float32 inputs; tolerance rtol 1e-4, atol 1e-5 times
the output's magnitude (float32 sums of up to a few thousand products).
Also: a weight changed in place (optimizer step, set_weights, Variable.assign) is what the
very next predict uses -- no kernel may keep a stale copy of a weight.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5 * scale)


# (h, w, cin, cout, kernel, stride, pads): 3x3 and 1x1, stride 1 and 2, odd sizes, outputs of
# 1 to 49 positions (every short strip length 1..13 appears as some remainder mod 14).
SHAPES = [
    (4, 4, 40, 48, 3, 1, (1, 1, 1, 1)),
    (8, 8, 24, 40, 3, 2, (0, 1, 0, 1)),
    (7, 5, 19, 33, 3, 1, (1, 1, 1, 1)),
    (5, 7, 16, 17, 3, 2, (1, 1, 1, 1)),
    (3, 3, 64, 64, 3, 1, (0, 0, 0, 0)),
    (2, 2, 32, 80, 1, 1, (0, 0, 0, 0)),
    (9, 9, 20, 36, 1, 2, (0, 0, 0, 0)),
    (1, 1, 70, 10, 1, 1, (0, 0, 0, 0)),
    (6, 3, 11, 50, 3, 1, (1, 1, 1, 1)),
    (11, 13, 5, 45, 3, 2, (1, 1, 1, 1)),
]


@pytest.mark.parametrize("algorithm", ["auto", "im2col"])
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batch_forward_matches_oracle(algorithm, batch):
    rng = np.random.default_rng(18)
    before = fastconv.get_conv_algorithm()
    fastconv.set_conv_algorithm(algorithm)
    try:
        for h, w, cin, cout, k, s, pads in SHAPES:
            x = rng.standard_normal((batch, h, w, cin)).astype(np.float32)
            wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
            b = rng.standard_normal(cout).astype(np.float32)
            args = ((s, s), pads, (1, 1), 1)
            got = _C.conv2d_forward(x, wt, b, *args)
            _close(got, R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                                         b.astype(np.float64), *args))
    finally:
        fastconv.set_conv_algorithm(before)


def _small_net():
    inputs = fastconv.Input((6, 6, 8))
    h = fastconv.layers.Conv2D(24, 3, padding="same", name="c3")(inputs)
    h = fastconv.layers.Conv2D(20, 1, strides=2, name="c1")(h)
    return fastconv.Model(inputs, h)


def _oracle(model, x):
    c3, c1 = model.get_layer("c3"), model.get_layer("c1")
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    k3, b3 = (f64(v) for v in c3.get_weights())
    k1, b1 = (f64(v) for v in c1.get_weights())
    h = R.conv2d_forward(f64(x), k3, b3, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    return R.conv2d_forward(h, k1, b1, (2, 2), (0, 0, 0, 0), (1, 1), 1)


def test_weights_changed_in_place_reach_the_next_predict():
    fastconv.set_seed(3)
    model = _small_net()
    x = np.random.default_rng(4).standard_normal((1, 6, 6, 8)).astype(np.float32)
    first = np.asarray(model.predict_on_batch(x))
    _close(first, _oracle(model, x))
    # 1. in place through the variable's own storage (what optimizers do)
    c3 = model.get_layer("c3")
    c3.kernel.data[...] *= -0.5
    second = np.asarray(model.predict_on_batch(x))
    _close(second, _oracle(model, x))
    assert np.abs(second - first).max() > 1e-2  # the change is visible
    # 2. set_weights on the other layer
    c1 = model.get_layer("c1")
    k1, b1 = c1.get_weights()
    c1.set_weights([k1[..., ::-1].copy(), b1 + 1.0])
    third = np.asarray(model.predict_on_batch(x))
    _close(third, _oracle(model, x))
    assert np.abs(third - second).max() > 1e-2
    # 3. one optimizer step through fit
    model.compile(optimizer=fastconv.optimizers.SGD(0.1), loss="mse")
    model.fit(x, np.zeros_like(third), epochs=1, batch_size=1, verbose=0)
    fourth = np.asarray(model.predict_on_batch(x))
    _close(fourth, _oracle(model, x))
    assert np.abs(fourth - third).max() > 1e-3
