"""The golden cases recomputed live by the peers on fresh inputs, where they are installed
(skipped otherwise, as in CI): a check that the stored goldens are not the only inputs fastconv
agrees with the peers on. Same functions and tolerances as test_golden.py, on the oracle and
the cpu backend. TensorFlow/Keras: `pip install tensorflow-cpu`; PyTorch: `pip install torch`."""
import importlib.util
import os

import pytest

import fastconv

import goldens
from test_golden import verify_batch_norm, verify_conv, verify_depthwise, verify_optimizer, verify_pool, verify_xent


def _make_golden():
    path = os.path.join(goldens.DIR, "make_golden.py")
    spec = importlib.util.spec_from_file_location("make_golden", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mg = _make_golden()
SALT = "live"  # other inputs than the stored ones


def _inputs(make, c):
    return make(c, mg.rng_for(c["name"], SALT))


@pytest.fixture(params=["numpy", "cpu"])
def backend(request):
    with fastconv.backend(request.param):
        yield request.param


@pytest.fixture(scope="module")
def tf():
    tf = pytest.importorskip("tensorflow")
    return tf


def test_conv_against_torch(backend):
    torch = pytest.importorskip("torch")
    for c in mg.CONV + mg.DEPTHWISE:
        inp = _inputs(mg.conv_inputs, c)
        inp["dy"] = mg.cotangent(mg.torch_conv(torch, c, inp, None)["y"].shape,
                                 mg.rng_for(c["name"], SALT + "dy"))
        want = mg.torch_conv(torch, c, inp, inp["dy"])
        (verify_depthwise if "m" in c else verify_conv)(c, inp, want, backend)


def test_pool_bn_xent_against_torch(backend):
    torch = pytest.importorskip("torch")
    for c in mg.POOL:
        inp = _inputs(mg.pool_inputs, c)
        inp["dy"] = mg.cotangent(mg.torch_pool(torch, c, inp, None)["y"].shape,
                                 mg.rng_for(c["name"], SALT + "dy"))
        verify_pool(c, inp, mg.torch_pool(torch, c, inp, inp["dy"]), backend)
    for c in mg.BATCHNORM:
        for training in (True, False):
            inp = _inputs(mg.bn_inputs, c)
            inp["dy"] = mg.cotangent(c["x"], mg.rng_for(c["name"], SALT + "dy"))
            verify_batch_norm(dict(c, training=training), inp, mg.torch_bn(torch, inp, inp["dy"], training), backend)
    for c in mg.XENT:
        inp = _inputs(mg.xent_inputs, c)
        inp["dloss"] = mg.cotangent(c["n"], mg.rng_for(c["name"], SALT + "dy"))
        verify_xent(c, inp, mg.torch_xent(torch, inp, inp["dloss"]), backend)


def test_everything_against_tensorflow(tf, backend):
    import keras
    for c in mg.CONV + mg.DEPTHWISE:
        inp = _inputs(mg.conv_inputs, c)
        inp["dy"] = mg.cotangent(mg.tf_conv(tf, c, inp)["y"].shape, mg.rng_for(c["name"], SALT + "dy"))
        (verify_depthwise if "m" in c else verify_conv)(c, inp, mg.tf_conv(tf, c, inp, inp["dy"]), backend)
    for c in mg.POOL:
        inp = _inputs(mg.pool_inputs, c)
        inp["dy"] = mg.cotangent(mg.tf_pool(tf, c, inp)["y"].shape, mg.rng_for(c["name"], SALT + "dy"))
        verify_pool(c, inp, mg.tf_pool(tf, c, inp, inp["dy"]), backend)
    for c in mg.BATCHNORM:
        for training in (True, False):
            inp = _inputs(mg.bn_inputs, c)
            inp["dy"] = mg.cotangent(c["x"], mg.rng_for(c["name"], SALT + "dy"))
            verify_batch_norm(dict(c, training=training), inp, mg.keras_bn(tf, keras, inp, inp["dy"], training),
                              backend)
    for c in mg.XENT:
        inp = _inputs(mg.xent_inputs, c)
        inp["dloss"] = mg.cotangent(c["n"], mg.rng_for(c["name"], SALT + "dy"))
        verify_xent(c, inp, mg.tf_xent(tf, keras, inp, inp["dloss"]), backend)
    for c in mg.OPTIMIZERS:
        inp = _inputs(mg.opt_inputs, c)
        verify_optimizer(c, inp, mg.keras_opt(keras, c, inp), backend)
