"""Loading the golden values of tests/golden/ (made by PyTorch and TensorFlow/Keras with
tests/golden/make_golden.py): a JSON manifest of the cases and one .npz of their arrays."""
import functools
import json
import os

import numpy as np

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


@functools.lru_cache(maxsize=None)
def manifest():
    with open(os.path.join(DIR, "manifest.json")) as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def _arrays():
    with np.load(os.path.join(DIR, "golden.npz"), allow_pickle=False) as f:  # data, never code
        return {k: f[k] for k in f.files}


def cases(kind):
    """The manifest entries of one kind ('conv', 'depthwise', 'pool', 'batchnorm', 'xent', 'optimizer')."""
    return [c for c in manifest()["cases"] if c["kind"] == kind]


def load(case):
    """(inputs, expected): dicts of fresh copies of the case's arrays."""
    a, name = _arrays(), case["name"]
    return ({k: a[f"{name}/{k}"].copy() for k in case["inputs"]},
            {k: a[f"{name}/expected/{k}"].copy() for k in case["expected"]})


def padding_tables():
    """[((n, k, s, d, padding), table)]: table[o, j] is the 1-based input cell that tap j of
    output o reads on one axis in TensorFlow's conv2d (0: a padding cell)."""
    a = _arrays()
    params, tables, offsets = a["padding/params"], a["padding/tables"], a["padding/offsets"]
    out = []
    for i, (n, k, s, d, same) in enumerate(params.tolist()):
        t = tables[offsets[i]:offsets[i + 1]].reshape(-1, k).astype(np.int64)
        out.append(((n, k, s, d, "same" if same else "valid"), t))
    return out
