"""Shared check for the fused-layer tests: a model's training forward and gradients with layer
fusion on and off must agree."""
import numpy as np

import fastconv as fc


def assert_fusion_keeps_gradients(model, x, rtol=1e-5, atol=1e-6):
    """Run model(x, training=True) and backward of sum(y**2) with fusion on, then off; the
    outputs and every trainable weight's gradient must match within rtol/atol."""
    results = []
    try:
        for enabled in (True, False):
            fc.set_fusion(enabled)
            for v in model.trainable_weights:
                v.grad = None
            y = model(x, training=True)
            (y ** 2).sum().backward()
            results.append([np.array(y.data)] + [np.array(v.grad) for v in model.trainable_weights])
    finally:
        fc.set_fusion(True)
    for got, ref in zip(*results):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
