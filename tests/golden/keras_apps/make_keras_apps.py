"""Keras 3 applications InceptionV3, Xception, EfficientNetB0 as golden data for fastconv's zoo.

Run by hand with the peers' Python (numpy, tensorflow-cpu, keras 3), never fastconv's:

    python tests/golden/keras_apps/make_keras_apps.py            # rewrite the committed goldens
    python tests/golden/keras_apps/make_keras_apps.py peer DIR   # Keras-initialised weights, for the peer test

golden: keras_apps.json beside this file holds, per model at its smallest input size, every layer
in Keras's order (name, class, weights as [name, shape], the layers feeding it), the parameter
counts (also at the default 299/224 size, and EfficientNetB1-B7's), and the output shapes without
the top (each pooling, two input sizes); keras_apps.npz holds 2 images per model and Keras's
logits for them (classifier_activation=None, computed in float64) with the weights of
seeded_weights.py (which the fastconv test rebuilds without TensorFlow) and BatchNormalization
moving statistics calibrated on other images, then perturbed (`calibrate`; stored under "<model>/stats/<layer>/<weight>").

peer: DIR/<model>.npz with Keras's own random initialisation (gamma, beta, biases and the
Normalization statistics randomised, BatchNormalization's calibrated as above), keyed
"layer/weight", plus "__images__" and "__logits__" (Keras's predictions). Used by
tests/test_zoo_keras_apps.py where the peers' Python is known (FASTCONV_PEERS_PYTHON).
"""
import json
import os
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from seeded_weights import seeded_weight  # noqa: E402

# fastconv name -> (Keras constructor, smallest input side Keras accepts, default side, image range)
MODELS = {
    "inception_v3": ("InceptionV3", 75, 299, (-1.0, 1.0)),
    "xception": ("Xception", 71, 299, (-1.0, 1.0)),
    "efficientnet_b0": ("EfficientNetB0", 32, 224, (0.0, 255.0)),
}


def _images(name, side):
    lo, hi = MODELS[name][3]
    rng = np.random.default_rng(zlib.crc32(f"images/{name}".encode()))
    return rng.uniform(lo, hi, (2, side, side, 3)).astype(np.float32)


def _build(name, side, **kwargs):
    import keras
    keras.backend.clear_session()  # fresh auto-names (conv2d, conv2d_1, ...), as a new process has
    return getattr(keras.applications, MODELS[name][0])(weights=None, input_shape=(side, side, 3), **kwargs)


def _inbound(layer):
    names = []
    for node in layer._inbound_nodes:
        for t in node.input_tensors:
            names.append(t._keras_history.operation.name)
    return names


def _refresh(layer):
    # Keras's Normalization caches its mean and variance when built; set_weights alone leaves the
    # cache at 0 and 1 (Keras 3.15), so the layer would ignore the statistics we just set.
    if hasattr(layer, "finalize_state"):
        layer.finalize_state()


def calibrate(model, name, side):
    """Moving statistics near the data's own: with random kernels and BatchNormalization's
    statistics left at random values the signal dies out within the 16 blocks of EfficientNet
    (its outputs no longer depend on the image, so no comparison could fail). Momentum 0 and
    one training-mode call (dropout off) set every moving statistic to its batch statistic on 64
    calibration images (variances floored at a tenth of the layer's mean, so that a channel
    nearly constant on them cannot blow up new images); then each is perturbed (mean by up to 0.2
    standard deviations, variance by a factor in [0.7, 1.4]): not exactly batch statistics."""
    import keras
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    drops = [(l, l.rate) for l in model.layers if isinstance(l, keras.layers.Dropout)]
    for layer, _ in drops:  # the statistics of inference, not of dropped residual branches
        layer.rate = 0.0
    lo, hi = MODELS[name][3]
    rng = np.random.default_rng(zlib.crc32(f"calibration/{name}".encode()))
    model(rng.uniform(lo, hi, (64, side, side, 3)).astype(np.float32), training=True)
    for layer, rate in drops:
        layer.rate = rate
    for layer in bns:
        weights = layer.get_weights()
        mean, var = weights[-2], weights[-1]
        mean = mean + rng.uniform(-0.2, 0.2, mean.shape) * np.sqrt(var)
        var = np.maximum(var, 0.1 * var.mean()) * rng.uniform(0.7, 1.4, var.shape)
        layer.set_weights(weights[:-2] + [mean.astype(np.float32), var.astype(np.float32)])
        layer.momentum = 0.99
    return {f"{l.name}/{w.name}": np.asarray(w.numpy()) for l in bns for w in l.weights
            if w.name in ("moving_mean", "moving_variance")}


def predict_float64(name, side, model, x):
    """`model`'s logits for x computed by a float64 twin (same weights), so the goldens carry no
    float32 rounding of Keras's own and the tests measure fastconv's alone."""
    import keras
    keras.config.set_floatx("float64")
    try:
        twin = _build(name, side, classifier_activation=None)
        for src, dst in zip(model.layers, twin.layers):
            dst.set_weights([w.astype(np.float64) if w.dtype == np.float32 else w for w in src.get_weights()])
            _refresh(dst)
        return np.asarray(twin.predict(x.astype(np.float64), verbose=0), np.float64)
    finally:
        keras.config.set_floatx("float32")


def describe(model):
    return [[l.name, type(l).__name__, [[w.name, list(w.shape)] for w in l.weights], _inbound(l)]
            for l in model.layers]


def _headless(name, side):
    """[[input (h, w), pooling, output shape without the batch axis, last layer's name]] without the top."""
    out = []
    for hw in ((side, side), (side + 29, side + 13)):
        for pooling in (None, "avg", "max"):
            keras_name = MODELS[name][0]
            import keras
            keras.backend.clear_session()
            m = getattr(keras.applications, keras_name)(weights=None, include_top=False, pooling=pooling,
                                                         input_shape=hw + (3,))
            out.append([list(hw), pooling, list(m.output.shape[1:]), m.layers[-1].name])
    return out


def golden():
    import keras
    spec, arrays = {"keras_version": keras.__version__, "models": {}}, {}
    spec["efficientnet_counts"] = {}
    for v in "1234567":
        keras.backend.clear_session()
        spec["efficientnet_counts"][f"b{v}"] = int(getattr(keras.applications, f"EfficientNetB{v}")(
            weights=None).count_params())
    for name, (_, side, default_side, _) in MODELS.items():
        full = _build(name, default_side)
        model = _build(name, side, classifier_activation=None)
        for layer in model.layers:
            layer.set_weights([seeded_weight(layer.name, w.name, w.shape) for w in layer.weights])
            _refresh(layer)
        arrays.update({f"{name}/stats/{k}": v for k, v in calibrate(model, name, side).items()})
        x = _images(name, side)
        arrays[f"{name}/images"] = x
        arrays[f"{name}/logits"] = predict_float64(name, side, model, x)
        float32_gap = np.abs(model.predict(x, verbose=0) - arrays[f"{name}/logits"]).max()
        spec["models"][name] = {
            "input_shape": [side, side, 3], "default_input_shape": [default_side, default_side, 3],
            "count_params": int(model.count_params()), "count_params_default": int(full.count_params()),
            "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "layers": describe(model), "headless": _headless(name, side)}
        logits = arrays[f"{name}/logits"]
        print(name, spec["models"][name]["count_params_default"], "logits scale", float(np.abs(logits).max()),
              "Keras float32 vs float64", float(float32_gap / np.abs(logits).max()),
              "image difference / scale", float(np.abs(logits[0] - logits[1]).max() / np.abs(logits).max()))
    with open(os.path.join(HERE, "keras_apps.json"), "w") as f:
        json.dump(spec, f, indent=None, separators=(",", ":"))
    np.savez_compressed(os.path.join(HERE, "keras_apps.npz"), **arrays)


def peer(out_dir, names):
    for name in names:
        side = MODELS[name][1]
        model = _build(name, side, classifier_activation=None)
        rng = np.random.default_rng(zlib.crc32(f"peer/{name}".encode()))
        for layer in model.layers:
            values = []
            for w in layer.weights:
                v = np.asarray(w.numpy())
                if w.name == "mean":        # Normalization: Keras leaves it at 0 and 1
                    v = rng.uniform(0.35, 0.65, v.shape).astype(v.dtype)
                elif w.name == "variance":
                    v = rng.uniform(0.04, 0.09, v.shape).astype(v.dtype)
                elif w.name in ("gamma", "beta", "bias"):   # Keras starts these at 1 / 0
                    v = (v + rng.uniform(-0.2, 0.2, v.shape)).astype(v.dtype)
                values.append(v)
            layer.set_weights(values)
            _refresh(layer)
        calibrate(model, name, side)  # BatchNormalization statistics: not Keras's defaults
        arrays = {f"{l.name}/{w.name}": np.asarray(w.numpy()) for l in model.layers for w in l.weights}
        x = _images(name, side)
        arrays["__images__"] = x
        arrays["__logits__"] = np.asarray(model.predict(x, verbose=0), np.float32)
        np.savez(os.path.join(out_dir, f"{name}.npz"), **arrays)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        peer(sys.argv[2], sys.argv[3:] or list(MODELS))
    else:
        golden()
