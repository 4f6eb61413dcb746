"""predict on one image (the quiet single-batch path of training.predict, which skips the
iterator and callbacks) gives the same rows as the batched path: LeNet-5 and ResNet-18
(CIFAR stem), batch 1 against the rows of batch 64, to 1e-6. Also that the short path keeps
predict's contract: the result is a fresh array, not the model's buffer, and inputs that need
the general path (progress bar, float64, a larger batch) still work and agree."""
import numpy as np
import pytest

from fastconv.models import zoo

import seeds


@pytest.mark.parametrize("name", ["lenet5", "resnet18_cifar"])
def test_predict_batch_one_equals_batch_rows(name):
    rng = np.random.default_rng(seeds.seed_of("predict-small", name))
    if name == "lenet5":
        model, shape = zoo.lenet5(variant="modern"), (28, 28, 1)
    else:
        model, shape = zoo.resnet18((32, 32, 3), classes=10, stem="cifar"), (32, 32, 3)
        # batch norms with real statistics, so folding them into the conv (large batches) and
        # normalising the conv's output (batch 1) give visibly different numbers if either is wrong
        for layer in model._walk():
            if type(layer).__name__ == "BatchNormalization":
                c = layer.gamma.shape[0]
                layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                                   rng.uniform(0.5, 2.0, c)])
    x = rng.random((64,) + shape, dtype=np.float32)
    full = model.predict(x, batch_size=64, verbose=0)
    assert full.shape == (64, 10) and np.isfinite(full).all()
    for i in (0, 17, 63):
        one = model.predict(x[i:i + 1], verbose=0)
        np.testing.assert_allclose(one, full[i:i + 1], rtol=1e-6, atol=1e-6)
    # the general path (float64 input is converted by the adapter, verbose prints a bar)
    np.testing.assert_allclose(model.predict(x[:1].astype(np.float64), verbose=1), full[:1], rtol=1e-6, atol=1e-6)


def test_predict_quiet_path_returns_fresh_arrays():
    model = zoo.lenet5()
    x = np.random.default_rng(seeds.seed_of("predict-fresh")).random((1, 28, 28, 1), dtype=np.float32)
    a = model.predict(x, verbose=0)
    b = model.predict(x, verbose=0)
    assert a is not b and not np.shares_memory(a, b) and not np.shares_memory(a, x)
    np.testing.assert_array_equal(a, b)
    a[:] = 0  # the caller owns it: the next prediction is unchanged
    np.testing.assert_array_equal(model.predict(x, verbose=0), b)


def test_predict_quiet_path_keeps_batch_size_checks():
    model = zoo.lenet5()
    x = np.zeros((2, 28, 28, 1), np.float32)
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        model.predict(x, batch_size=0, verbose=0)
    assert model.predict(x, batch_size=1, verbose=0).shape == (2, 10)
