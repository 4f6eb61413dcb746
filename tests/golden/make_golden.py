"""Regenerate golden.npz and manifest.json beside this file from TensorFlow/Keras and PyTorch.

Run by hand in an environment holding the peers (numpy, tensorflow-cpu, torch), not fastconv's:

    python tests/golden/make_golden.py

fastconv is never imported here: every expected value comes from a peer. TensorFlow/Keras is the
reference (fastconv follows its semantics: 'same' padding, BatchNormalization, optimizers);
where PyTorch can compute the same thing it is run too and must agree (the max difference is
recorded in the manifest), so a TensorFlow quirk cannot slip into the goldens unnoticed.

Inputs are float32 (exact in every backend); peers compute in float64 where the op allows
(convolution, pooling, batch norm, cross-entropy), so the stored results carry no float32
rounding of their own. Optimizers run in float32, as Keras variables are.
Each case draws its inputs from a generator seeded by crc32 of its name: cases stand alone.
"""
import json
import os
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CROSS_TOL = 1e-9  # float64 peers must agree to this (relative to the output's scale)

# ------------------------------------------------------------------------------ the cases
# conv: x (N, H, W, Cin), kernel (KH, KW), Cout, strides, padding, dilation, groups.
# depthwise: Keras layout kernel (KH, KW, C, M).
CONV = [
    dict(name="conv_k3_s1_same", x=(2, 6, 5, 3), k=(3, 3), cout=4, s=1, pad="same", d=1, g=1),
    dict(name="conv_k3_s2_same_odd_in", x=(2, 7, 6, 3), k=(3, 3), cout=4, s=2, pad="same", d=1, g=1),
    dict(name="conv_k4_s1_same_even", x=(1, 6, 7, 2), k=(4, 4), cout=3, s=1, pad="same", d=1, g=1),
    dict(name="conv_k2_s2_same_even", x=(2, 7, 5, 3), k=(2, 2), cout=4, s=2, pad="same", d=1, g=1),
    dict(name="conv_k4x3_s2_valid", x=(2, 9, 7, 2), k=(4, 3), cout=3, s=2, pad="valid", d=1, g=1),
    dict(name="conv_k3_s1_valid", x=(2, 6, 6, 3), k=(3, 3), cout=5, s=1, pad="valid", d=1, g=1),
    dict(name="conv_k5_s3_same", x=(1, 8, 10, 2), k=(5, 5), cout=3, s=3, pad="same", d=1, g=1),
    dict(name="conv_k3_d2_same", x=(2, 8, 7, 2), k=(3, 3), cout=3, s=1, pad="same", d=2, g=1),
    dict(name="conv_k2_d3_valid", x=(1, 8, 9, 3), k=(2, 2), cout=2, s=1, pad="valid", d=3, g=1),
    dict(name="conv_k3_s2_d2_same", x=(1, 9, 8, 2), k=(3, 3), cout=2, s=2, pad="same", d=2, g=1),
    dict(name="conv_groups2_k3_same", x=(2, 6, 5, 4), k=(3, 3), cout=6, s=1, pad="same", d=1, g=2),
    dict(name="conv_groups3_k2_s2_same", x=(1, 7, 6, 6), k=(2, 2), cout=3, s=2, pad="same", d=1, g=3),
    dict(name="conv_k1_s2_valid", x=(2, 5, 5, 3), k=(1, 1), cout=4, s=2, pad="valid", d=1, g=1),
]
DEPTHWISE = [
    dict(name="depthwise_k3_m2_same", x=(2, 6, 5, 3), k=(3, 3), m=2, s=1, pad="same", d=1),
    dict(name="depthwise_k4_m1_s2_same_even", x=(1, 7, 8, 4), k=(4, 4), m=1, s=2, pad="same", d=1),
    dict(name="depthwise_k3_m1_d2_valid", x=(2, 8, 8, 2), k=(3, 3), m=1, s=1, pad="valid", d=2),
]
# pool: x (N, H, W, C), window, strides, padding
POOL = [
    dict(name="max_p2_s2_valid", op="max", x=(2, 6, 5, 3), p=2, s=2, pad="valid"),
    dict(name="max_p3_s2_same", op="max", x=(2, 7, 6, 2), p=3, s=2, pad="same"),
    dict(name="max_p2_s1_same_even", op="max", x=(1, 5, 4, 3), p=2, s=1, pad="same"),
    dict(name="max_p3_s3_same", op="max", x=(1, 8, 7, 2), p=3, s=3, pad="same"),
    dict(name="avg_p3_s2_same", op="avg", x=(2, 7, 6, 2), p=3, s=2, pad="same"),
    dict(name="avg_p2_s2_same_odd_in", op="avg", x=(1, 5, 7, 3), p=2, s=2, pad="same"),
    dict(name="avg_p2_s1_same_even", op="avg", x=(1, 4, 5, 2), p=2, s=1, pad="same"),
    dict(name="avg_p3_s1_valid", op="avg", x=(2, 5, 6, 2), p=3, s=1, pad="valid"),
]
# batch norm: x shape (channels last), Keras defaults momentum 0.99, epsilon 1e-3
BATCHNORM = [
    dict(name="bn_nhwc", x=(3, 4, 5, 3)),
    dict(name="bn_dense", x=(6, 4)),
]
XENT = [dict(name="xent_sparse_logits", n=6, c=5)]
# optimizers: keyword arguments shared by Keras and fastconv; three steps on a (3, 4) weight
OPTIMIZERS = [
    dict(name="sgd_momentum", cls="SGD", kw=dict(learning_rate=0.1, momentum=0.9)),
    dict(name="sgd_nesterov_wd", cls="SGD", kw=dict(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    dict(name="sgd_plain_wd", cls="SGD", kw=dict(learning_rate=0.05, weight_decay=0.1)),
    dict(name="adam", cls="Adam", kw=dict(learning_rate=0.01)),
    dict(name="adam_amsgrad_wd", cls="Adam", kw=dict(learning_rate=0.01, beta_1=0.8, beta_2=0.9, amsgrad=True,
                                                    weight_decay=0.02)),
    dict(name="adamw", cls="AdamW", kw=dict(learning_rate=0.01, weight_decay=0.05)),
    dict(name="rmsprop", cls="RMSprop", kw=dict(learning_rate=0.01)),
    dict(name="rmsprop_centered_momentum_wd", cls="RMSprop",
         kw=dict(learning_rate=0.01, rho=0.8, momentum=0.5, centered=True, weight_decay=0.01)),
    dict(name="adagrad_wd", cls="Adagrad", kw=dict(learning_rate=0.1, weight_decay=0.1)),
]
OPT_STEPS = 3
# 'same'/'valid' geometry on one axis: every (n, k, s, d) of this grid
PAD_GRID = dict(n=range(1, 10), k=range(1, 5), s=range(1, 4), d=range(1, 3))


def rng_for(name, salt=""):
    return np.random.default_rng(zlib.crc32((name + salt).encode()))


def f32(a):
    return np.asarray(a, np.float32)


# ------------------------------------------------------------------------------ inputs
def conv_inputs(c, rng):
    n, h, w, cin = c["x"]
    kh, kw = c["k"]
    x = f32(rng.standard_normal(c["x"]))
    if "m" in c:  # depthwise, Keras layout
        wt = f32(rng.standard_normal((kh, kw, cin, c["m"])))
        cout = cin * c["m"]
    else:
        wt = f32(rng.standard_normal((kh, kw, cin // c["g"], c["cout"])))
        cout = c["cout"]
    b = f32(rng.standard_normal(cout))
    return dict(x=x, w=wt, b=b)


def pool_inputs(c, rng):
    # distinct values 1/8 apart in random order: no max-pool ties, and exact in float32
    size = int(np.prod(c["x"]))
    return dict(x=f32((rng.permutation(size) - size / 2) / 8).reshape(c["x"]))


def bn_inputs(c, rng):
    ch = c["x"][-1]
    return dict(x=f32(rng.standard_normal(c["x"]) * 2 + 0.5), gamma=f32(rng.uniform(0.5, 1.5, ch)),
                beta=f32(rng.standard_normal(ch)), moving_mean=f32(rng.standard_normal(ch) * 0.1),
                moving_var=f32(rng.uniform(0.5, 2.0, ch)))


def xent_inputs(c, rng):
    logits = f32(rng.standard_normal((c["n"], c["c"])) * 3)
    logits[0, 1] = 60.0   # a saturated row: a naive exp overflows in float32
    logits[1] = -40.0     # a flat very negative row
    return dict(logits=logits, labels=rng.integers(0, c["c"], c["n"]).astype(np.int64))


def opt_inputs(c, rng):
    return dict(w0=f32(rng.standard_normal((3, 4))),
                grads=f32(rng.standard_normal((OPT_STEPS, 3, 4)) * np.array([1.0, 0.1, 3.0])[:, None, None]))


def cotangent(shape, rng):
    return f32(rng.standard_normal(shape))


# ------------------------------------------------------------------------------ TensorFlow
def tf_conv(tf, c, inp, dy=None):
    """y = conv(x, w) + b and, given the cotangent dy, the gradients of sum(y * dy).

    TensorFlow's CPU backward kernels refuse dilation > 1 and groups > 1, so the gradients run
    on the equivalent undilated kernel (zeros between the taps; dw is read back at the taps)
    and on one convolution per group, concatenated; the forward is also run with TensorFlow's
    own dilated, grouped kernel and must agree."""
    s, d = c["s"], c["d"]
    wn = inp["w"].astype(np.float64)
    kh, kw = wn.shape[:2]
    wz = np.zeros(((kh - 1) * d + 1, (kw - 1) * d + 1) + wn.shape[2:])
    wz[::d, ::d] = wn
    x, w, b = tf.constant(inp["x"], tf.float64), tf.constant(wz), tf.constant(inp["b"], tf.float64)

    def conv(w_, dil, split=False):
        if "m" in c:
            return tf.nn.depthwise_conv2d(x, w_, [1, s, s, 1], c["pad"].upper(), dilations=[dil, dil]) + b
        if split and c["g"] > 1:
            parts = zip(tf.split(x, c["g"], axis=3), tf.split(w_, c["g"], axis=3))
            return tf.concat([tf.nn.conv2d(xg, wg, s, c["pad"].upper()) for xg, wg in parts], 3) + b
        return tf.nn.conv2d(x, w_, s, c["pad"].upper(), dilations=dil) + b

    with tf.GradientTape() as tape:
        tape.watch([x, w, b])
        y = conv(w, 1, split=True)
        loss = None if dy is None else tf.reduce_sum(y * tf.constant(dy, tf.float64))
    native = conv(tf.constant(wn), d).numpy()
    assert np.allclose(native, y.numpy(), rtol=1e-12, atol=1e-12), c["name"]
    if dy is None:
        return dict(y=native)
    dx, dw, db = tape.gradient(loss, [x, w, b])
    return dict(y=native, dx=dx.numpy(), dw=dw.numpy()[::d, ::d], db=db.numpy())


def tf_pool(tf, c, inp, dy=None):
    x = tf.constant(inp["x"], tf.float64)
    fn = tf.nn.max_pool2d if c["op"] == "max" else tf.nn.avg_pool2d
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x, c["p"], c["s"], c["pad"].upper())
        if dy is None:
            return dict(y=y.numpy())
        dx = tape.gradient(tf.reduce_sum(y * tf.constant(dy, tf.float64)), x)
    return dict(y=y.numpy(), dx=dx.numpy())


def keras_bn(tf, keras, inp, dy, training):
    """Keras BatchNormalization (defaults momentum 0.99, epsilon 1e-3) in float64: output,
    gradients of sum(y * dy) and the moving statistics after the call."""
    layer = keras.layers.BatchNormalization(dtype="float64")
    layer.build(inp["x"].shape)
    layer.set_weights([inp["gamma"].astype(np.float64), inp["beta"].astype(np.float64),
                       inp["moving_mean"].astype(np.float64), inp["moving_var"].astype(np.float64)])
    assert (layer.momentum, layer.epsilon) == (0.99, 1e-3)
    x = tf.constant(inp["x"], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.constant(dy, tf.float64))
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return dict(y=y.numpy(), dx=dx.numpy(), dgamma=dgamma.numpy(), dbeta=dbeta.numpy(),
                moving_mean=layer.moving_mean.numpy(), moving_var=layer.moving_variance.numpy())


def tf_xent(tf, keras, inp, dloss):
    logits = tf.constant(inp["logits"], tf.float64)
    labels = tf.constant(inp["labels"])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        weighted = tf.reduce_sum(loss * tf.constant(dloss, tf.float64))
        mean = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    return dict(loss=loss.numpy(), dlogits=tape.gradient(weighted, logits).numpy(),
                mean_loss=np.float64(mean.numpy()), dlogits_mean=tape.gradient(mean, logits).numpy())


def keras_opt(keras, c, inp):
    """The weight after each of OPT_STEPS Keras steps (float32 variables)."""
    opt = getattr(keras.optimizers, c["cls"])(**c["kw"])
    v = keras.Variable(inp["w0"], dtype="float32")
    out = []
    for g in inp["grads"]:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), v)])
        out.append(np.array(v.numpy(), np.float32))
    return dict(w=np.stack(out))


def tf_padding_table(tf, n, k, s, d, padding):
    """Which input cell (1-based; 0 = padding) each tap of each output reads, on one axis,
    as TensorFlow's conv2d lays the windows out: x = 1..n, kernel tap j picks channel j."""
    x = tf.constant(np.arange(1, n + 1, dtype=np.float64).reshape(1, n, 1, 1))
    w = np.zeros((k, 1, 1, k))
    w[np.arange(k), 0, 0, np.arange(k)] = 1.0
    y = tf.nn.conv2d(x, tf.constant(w), [s, 1], padding.upper(), dilations=[d, 1])
    return np.rint(y.numpy()[0, :, 0, :]).astype(np.int8)  # (out, k)


# ------------------------------------------------------------------------------ PyTorch cross-checks
def _tf_same_pads(n, k, s, d):
    # only to lay out torch's input for the cross-check; the goldens come from TensorFlow
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def torch_conv(torch, c, inp, dy):
    F = torch.nn.functional
    n, h, wd, cin = c["x"]
    kh, kw = c["k"]
    s, d = c["s"], c["d"]
    x = torch.tensor(inp["x"], dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    w = torch.tensor(inp["w"], dtype=torch.float64)
    if "m" in c:  # Keras (KH, KW, C, M) -> torch (C*M, 1, KH, KW), output channel c*M + m
        groups = cin
        w = w.reshape(kh, kw, 1, cin * c["m"])
    else:
        groups = c["g"]
    w = w.permute(3, 2, 0, 1).contiguous().requires_grad_()
    b = torch.tensor(inp["b"], dtype=torch.float64).requires_grad_()
    xp = x
    if c["pad"] == "same":
        (t, bo), (le, r) = _tf_same_pads(h, kh, s, d), _tf_same_pads(wd, kw, s, d)
        xp = F.pad(x, (le, r, t, bo))
    y = F.conv2d(xp, w, b, stride=s, dilation=d, groups=groups)
    if dy is None:
        return dict(y=y.detach().permute(0, 2, 3, 1).numpy())
    (y * torch.tensor(dy, dtype=torch.float64).permute(0, 3, 1, 2)).sum().backward()
    dw = w.grad.permute(2, 3, 1, 0).numpy()
    if "m" in c:
        dw = dw.reshape(kh, kw, cin, c["m"])
    return dict(y=y.detach().permute(0, 2, 3, 1).numpy(), dx=x.grad.permute(0, 2, 3, 1).numpy(),
                dw=dw, db=b.grad.numpy())


def torch_pool(torch, c, inp, dy):
    F = torch.nn.functional
    x = torch.tensor(inp["x"], dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    p, s = c["p"], c["s"]
    if c["pad"] == "same":
        (t, bo), (le, r) = _tf_same_pads(x.shape[2], p, s, 1), _tf_same_pads(x.shape[3], p, s, 1)
    else:
        t = bo = le = r = 0
    if c["op"] == "max":
        y = F.max_pool2d(F.pad(x, (le, r, t, bo), value=-np.inf), p, s)
    else:  # TF divides by the real cells only: sum pool / count pool
        ones = torch.ones_like(x)
        y = (F.avg_pool2d(F.pad(x, (le, r, t, bo)), p, s) /
             F.avg_pool2d(F.pad(ones, (le, r, t, bo)), p, s))
    if dy is None:
        return dict(y=y.detach().permute(0, 2, 3, 1).numpy())
    (y * torch.tensor(dy, dtype=torch.float64).permute(0, 3, 1, 2)).sum().backward()
    return dict(y=y.detach().permute(0, 2, 3, 1).numpy(), dx=x.grad.permute(0, 2, 3, 1).numpy())


def torch_bn(torch, inp, dy, training):
    """torch's batch_norm in float64, its conventions converted to Keras's: momentum 1 - 0.99,
    and its running variance uses the unbiased batch variance, so that part is recomputed."""
    F = torch.nn.functional
    ch = inp["x"].shape[-1]
    x = torch.tensor(inp["x"], dtype=torch.float64).reshape(-1, ch).requires_grad_()
    gamma = torch.tensor(inp["gamma"], dtype=torch.float64).requires_grad_()
    beta = torch.tensor(inp["beta"], dtype=torch.float64).requires_grad_()
    rm = torch.tensor(inp["moving_mean"], dtype=torch.float64)
    rv = torch.tensor(inp["moving_var"], dtype=torch.float64)
    y = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=0.01, eps=1e-3)
    (y * torch.tensor(dy, dtype=torch.float64).reshape(-1, ch)).sum().backward()
    out = dict(y=y.detach().numpy().reshape(inp["x"].shape), dx=x.grad.numpy().reshape(inp["x"].shape),
               dgamma=gamma.grad.numpy(), dbeta=beta.grad.numpy(), moving_mean=rm.numpy())
    if training:
        xm = inp["x"].astype(np.float64).reshape(-1, ch)
        out["moving_var"] = 0.99 * inp["moving_var"].astype(np.float64) + 0.01 * xm.var(axis=0)
    else:
        out["moving_var"] = rv.numpy()
    return out


def torch_xent(torch, inp, dloss):
    F = torch.nn.functional
    logits = torch.tensor(inp["logits"], dtype=torch.float64).requires_grad_()
    loss = F.cross_entropy(logits, torch.tensor(inp["labels"]), reduction="none")
    (loss * torch.tensor(dloss, dtype=torch.float64)).sum().backward()
    return dict(loss=loss.detach().numpy(), dlogits=logits.grad.numpy())


def max_rel_diff(a, b):
    diffs = []
    for k in a.keys() & b.keys():
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        diffs.append(float(np.abs(x - y).max() / max(1.0, np.abs(x).max())))
    return max(diffs)


# ------------------------------------------------------------------------------ build
def build(tf, keras, torch):
    """(arrays, manifest) for every case."""
    arrays, cases = {}, []

    def add(case, kind, inputs, expected, cross=None):
        entry = dict(case, kind=kind, inputs=sorted(inputs), expected=sorted(expected))
        if cross is not None:
            entry["torch_max_rel_diff"] = cross
            if cross > CROSS_TOL:
                sys.exit(f"{case['name']}: TensorFlow and PyTorch disagree by {cross:g}")
        for k, v in inputs.items():
            arrays[f"{case['name']}/{k}"] = v
        for k, v in expected.items():
            arrays[f"{case['name']}/expected/{k}"] = np.asarray(v)
        cases.append(entry)

    for c in CONV + DEPTHWISE:
        rng = rng_for(c["name"])
        inp = conv_inputs(c, rng)
        inp["dy"] = cotangent(tf_conv(tf, c, inp)["y"].shape, rng)
        exp = tf_conv(tf, c, inp, inp["dy"])
        add(c, "depthwise" if "m" in c else "conv", inp, exp,
            max_rel_diff(exp, torch_conv(torch, c, inp, inp["dy"])) if torch else None)
    for c in POOL:
        rng = rng_for(c["name"])
        inp = pool_inputs(c, rng)
        inp["dy"] = cotangent(tf_pool(tf, c, inp)["y"].shape, rng)
        exp = tf_pool(tf, c, inp, inp["dy"])
        add(c, "pool", inp, exp, max_rel_diff(exp, torch_pool(torch, c, inp, inp["dy"])) if torch else None)
    for c in BATCHNORM:
        for training in (True, False):
            cc = dict(c, name=f"{c['name']}_{'train' if training else 'infer'}", training=training)
            rng = rng_for(c["name"])  # the same inputs for both modes
            inp = bn_inputs(c, rng)
            inp["dy"] = cotangent(c["x"], rng)
            exp = keras_bn(tf, keras, inp, inp["dy"], training)
            add(cc, "batchnorm", inp, exp,
                max_rel_diff(exp, torch_bn(torch, inp, inp["dy"], training)) if torch else None)
    for c in XENT:
        rng = rng_for(c["name"])
        inp = xent_inputs(c, rng)
        inp["dloss"] = cotangent(c["n"], rng)
        exp = tf_xent(tf, keras, inp, inp["dloss"])
        add(c, "xent", inp, exp, max_rel_diff(exp, torch_xent(torch, inp, inp["dloss"])) if torch else None)
    for c in OPTIMIZERS:
        inp = opt_inputs(c, rng_for(c["name"]))
        add(c, "optimizer", inp, keras_opt(keras, c, inp))

    # the padding geometry, all tables in one int8 array with offsets
    params, tables, offsets = [], [], [0]
    for padding in ("same", "valid"):
        for n in PAD_GRID["n"]:
            for k in PAD_GRID["k"]:
                for s in PAD_GRID["s"]:
                    for d in PAD_GRID["d"]:
                        if padding == "valid" and (k - 1) * d + 1 > n:
                            continue  # no output: TensorFlow refuses
                        t = tf_padding_table(tf, n, k, s, d, padding)
                        params.append((n, k, s, d, padding == "same"))
                        tables.append(t.ravel())
                        offsets.append(offsets[-1] + t.size)
    arrays["padding/params"] = np.array(params, np.int8)        # (n, k, s, d, is_same)
    arrays["padding/tables"] = np.concatenate(tables).astype(np.int8)
    arrays["padding/offsets"] = np.array(offsets, np.int32)
    cases.append(dict(name="padding", kind="padding", grid={k: [min(v), max(v)] for k, v in PAD_GRID.items()},
                      count=len(params)))
    return arrays, cases


def main():
    import keras
    import tensorflow as tf
    try:
        import torch
    except ImportError:
        torch = None
        print("torch not installed: no cross-checks")
    tf.config.experimental.enable_op_determinism()
    arrays, cases = build(tf, keras, torch)
    manifest = dict(
        about="Expected values computed by the peers below (see make_golden.py); inputs are "
              "float32, results float64 except optimizers (float32, as Keras variables).",
        peers=dict(tensorflow=tf.__version__, keras=keras.__version__,
                   torch=torch.__version__ if torch else None, numpy=np.__version__),
        cases=cases)
    np.savez_compressed(os.path.join(HERE, "golden.npz"), **arrays)
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    size = os.path.getsize(os.path.join(HERE, "golden.npz"))
    print(f"{len(cases)} cases, {len(arrays)} arrays, golden.npz {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
