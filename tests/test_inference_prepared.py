"""Prepared conv weights in the inference plans (engine/inference.py): one prepared array per
conv and size for all of a model's plans, rebuilt when the weights change.

Reference: the same model on the NumPy oracle backend, tolerances as in test_inference_plan.py
(rtol 1e-4, atol 1e-4 times the output's magnitude: the plan folds batch norm in float32).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C, layers
from fastconv.engine import inference

from test_inference_plan import _close, _oracle, _randomise_bn, _x


class _Spy:
    """The cpu kernels, recording the `prepared` argument of every conv2d_forward call."""

    def __init__(self, kernels):
        self.kernels, self.prepared = kernels, []

    def __getattr__(self, name):
        return getattr(self.kernels, name)

    def conv2d_forward(self, *args):
        self.prepared.append(args[9] if len(args) > 9 else None)
        return self.kernels.conv2d_forward(*args)


def _winograd_model(seed, hw=(12, 12)):
    fastconv.set_seed(seed)
    inp = layers.Input(hw + (16,))
    h = layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(name="r1")(h)
    h = layers.Conv2D(24, 3, padding="same", use_bias=False, name="c2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = fastconv.Model(inp, h)
    _randomise_bn(model, seed)
    return model


@pytest.fixture
def spy(monkeypatch):
    real = inference.kernels_for
    holder = {}

    def kernels_for(name):
        holder.setdefault("spy", _Spy(real(name)))
        return holder["spy"]
    monkeypatch.setattr(inference, "kernels_for", kernels_for)
    return holder


def test_two_batch_sizes_share_one_transform_and_a_weight_change_reaches_both(spy):
    model = _winograd_model(3)
    x1, x3 = _x((12, 12, 16), 1, 1), _x((12, 12, 16), 3, 2)
    assert _C.conv2d_prepare(np.zeros((3, 3, 16, 16), np.float32), x1.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1) is not None
    y1 = model.predict_on_batch(x1)
    y3 = model.predict_on_batch(x3)
    _close(y1, _oracle(model, x1))
    _close(y3, _oracle(model, x3))
    assert len(model._inference_plans) == 2
    spy["spy"].prepared.clear()
    model.predict_on_batch(x1)
    model.predict_on_batch(x3)
    seen = spy["spy"].prepared
    assert len(seen) == 4 and all(p is not None for p in seen)
    assert seen[0] is seen[2] and seen[1] is seen[3]  # c1's and c2's transform, both shapes
    assert seen[0] is not seen[1]
    # one prepared array per conv in the model's store, whatever the number of shapes
    store = model._inference_shared
    assert len(store) == 2 and all(len(e["prepared"]) == 1 for e in store.values())

    # a weight change, seen first by the shape that did not run since
    model.get_layer("c2").kernel.assign(model.get_layer("c2").kernel.numpy() * -0.7)
    z3 = model.predict_on_batch(x3)
    _close(z3, _oracle(model, x3))
    assert np.abs(z3 - y3).max() > 1e-3
    z1 = model.predict_on_batch(x1)
    _close(z1, _oracle(model, x1))
    assert np.abs(z1 - y1).max() > 1e-3
    bn = model.get_layer("bn1")
    bn.set_weights([w * 1.2 + 0.1 for w in bn.get_weights()])  # c1's fold and transform
    w1 = model.predict_on_batch(x1)
    _close(w1, _oracle(model, x1))
    _close(model.predict_on_batch(x3), _oracle(model, x3))
    assert np.abs(w1 - z1).max() > 1e-3


def test_shared_transform_gives_the_same_output_as_a_fresh_plan():
    model = _winograd_model(4)
    x1, x2 = _x((12, 12, 16), 1, 5), _x((12, 12, 16), 2, 6)
    model.predict_on_batch(x1)
    shared = model.predict_on_batch(x2)  # its plan found c1's and c2's transforms made by x1's
    model._inference_plans.clear()
    model._inference_shared.clear()
    model.__dict__.pop("_inference_last", None)
    fresh = model.predict_on_batch(x2)
    np.testing.assert_array_equal(shared, fresh)
    with _plan_off():
        plain = np.asarray(model.predict_on_batch(x2))
    _close(shared, plain)


class _plan_off:
    def __enter__(self):
        inference.set_inference_plan(False)

    def __exit__(self, *exc):
        inference.set_inference_plan(True)


def test_evicted_plans_release_their_shared_records():
    fastconv.set_seed(7)
    model = fastconv.Sequential([layers.Input((10, 10, 8)), layers.Conv2D(8, 3, padding="same", name="a")])
    for batch in range(1, inference._MAX_PLANS + 3):
        model.predict_on_batch(_x((10, 10, 8), batch, batch))
    assert len(model._inference_plans) == inference._MAX_PLANS
    assert len(model._inference_shared) == 1
    model.pop()
    model.add(layers.Conv2D(8, 3, padding="same", name="b"))
    x = _x((10, 10, 8), 1, 0)
    _close(model.predict_on_batch(x), _oracle(model, x))
    live = set().union(*(p.used for p in model._inference_plans.values()))
    assert set(model._inference_shared) == live


def test_two_forms_of_one_size_are_kept_apart():
    """One conv at two input sizes whose prepared forms differ but are equally large (16 -> 17
    channels: the F(2x2) transform at 6x6 and the packed 3x3 weights at 2x2 are both 4608
    floats): each plan reads its own form."""
    fastconv.set_seed(8)
    inp = layers.Input((None, None, 16))
    h = layers.Conv2D(17, 3, padding="same", name="c")(inp)
    model = fastconv.Model(inp, layers.GlobalAveragePooling2D()(h))
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    w = model.get_layer("c").kernel.numpy()
    forms = {hw: _C.conv2d_prepared_form(w.shape, (1, hw, hw, 16), *args) for hw in (6, 2)}
    sizes = {hw: _C.conv2d_prepare(w, (1, hw, hw, 16), *args) for hw in (6, 2)}
    if any(p is None for p in sizes.values()):
        pytest.skip("no prepared form for one of the sizes here (another GEMM backend or ISA level)")
    assert forms == {6: "winograd", 2: "packed"} and sizes[6].size == sizes[2].size
    for hw, seed in ((6, 1), (2, 2), (6, 3), (2, 4)):
        x = _x((hw, hw, 16), 1, seed)
        _close(model.predict_on_batch(x), _oracle(model, x))
    (entry,) = model._inference_shared.values()
    n = sizes[6].size
    assert set(entry["prepared"]) == {("winograd", n), ("packed", n)}
    for (form, _), slot in entry["prepared"].items():  # each slot holds what its form's prepare gives
        hw = 6 if form == "winograd" else 2
        np.testing.assert_array_equal(slot["prepared"], _C.conv2d_prepare(w, (1, hw, hw, 16), *args))
