"""Max and average pooling at few channels (C < 16, the packed-pixel vector paths of
csrc/cpu/pool_max.cpp, pool_max_backward.cpp and pool_avg.cpp, plus 16 and 17 on either side
of it) against the NumPy oracle.

Forward values and argmax must match exactly (they are selections, no arithmetic); dx sums
at most ceil(kh/sh) * ceil(kw/sw) float32 terms, compared at rtol 1e-6 against the float64
oracle; average pooling at rtol 1e-5 (float32 sums of up to 9 cells). Shapes mix windows that fit the packed groups, clipped edge windows ('same' padding),
strides above and below the pool, and widths that leave a partial group at the row's end.
Inputs with small integers give many tied maxima (the first one wins); NaN inputs pool to NaN
and route the gradient to the window's last NaN cell, as the oracle defines.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

import seeds

CHANNELS = [1, 2, 3, 5, 6, 7, 8, 9, 15, 16, 17]

# (H, W, pool, strides, pads as (top, bottom, left, right))
GEOMETRIES = [
    (28, 28, (2, 2), (2, 2), (0, 0, 0, 0)),   # LeNet-5's pools
    (10, 10, (2, 2), (2, 2), (0, 0, 0, 0)),
    (9, 13, (3, 3), (2, 2), (1, 1, 1, 1)),    # 'same', overlapping windows, clipped edges
    (7, 11, (3, 3), (1, 1), (1, 1, 1, 1)),    # stride 1: three windows cover each cell
    (8, 17, (2, 3), (1, 2), (0, 1, 1, 1)),    # asymmetric pads, partial last group
    (6, 9, (2, 2), (3, 3), (0, 0, 0, 0)),     # stride above the pool: uncovered cells
    (5, 1, (2, 1), (1, 1), (0, 0, 0, 0)),     # one column
    # windows that tile without overlap (pool == strides, no pads: the avx2 level's row path
    # for C < 8): odd sizes leave a last row / column in no window; 3x3 tiles, 1x2 tiles
    (9, 11, (2, 2), (2, 2), (0, 0, 0, 0)),
    (10, 23, (3, 3), (3, 3), (0, 0, 0, 0)),
    (3, 37, (1, 2), (1, 2), (0, 0, 0, 0)),
    (7, 9, (2, 2), (2, 2), (0, 1, 0, 1)),     # 'same': a clipped last window (not the row path)
]


def _input(rng, shape, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "nan":
        x[rng.random(shape) < 0.05] = np.nan
        x[rng.random(shape) < 0.02] = np.inf
    return x


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[:2])) + f"_p{g[2]}s{g[3]}")
def test_max_pool_small_channels_match_oracle(geometry, c, kind):
    h, w, pool, strides, pads = geometry
    rng = np.random.default_rng(seeds.seed_of("small-c", geometry, c, kind))
    x = _input(rng, (3, h, w, c), kind)

    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, strides, pads)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, pool, strides, pads)
    np.testing.assert_array_equal(y, ref_y)  # NaN positions included
    np.testing.assert_array_equal(arg, ref_arg)
    np.testing.assert_array_equal(_C.max_pool2d_forward(x, pool, strides, pads), ref_y)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, pool, strides, pads)
    ref_dx = R.max_pool2d_backward_argmax(dy.astype(np.float64), ref_arg, x.shape, pool, strides, pads)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[:2])) + f"_p{g[2]}s{g[3]}")
def test_avg_pool_small_channels_match_oracle(geometry, c):
    h, w, pool, strides, pads = geometry
    rng = np.random.default_rng(seeds.seed_of("small-c-avg", geometry, c))
    x = rng.standard_normal((3, h, w, c)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # propagates to the windows holding it, forward and backward
    y = _C.avg_pool2d_forward(x, pool, strides, pads)
    np.testing.assert_allclose(y, R.avg_pool2d_forward(x.astype(np.float64), pool, strides, pads),
                               rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[1, -1, -1, -1] = np.nan
    dx = _C.avg_pool2d_backward(dy, x.shape, pool, strides, pads)
    np.testing.assert_allclose(dx, R.avg_pool2d_backward(dy.astype(np.float64), x.shape, pool, strides, pads),
                               rtol=1e-5, atol=1e-6)


def test_small_channels_batch_splits_across_threads_agree():
    """A large batch runs images on several threads; each image's result must equal the same
    image pooled alone (no lane or scratch buffer leaks between images or threads)."""
    rng = np.random.default_rng(seeds.seed_of("small-c-threads"))
    x = rng.standard_normal((64, 28, 28, 6)).astype(np.float32)
    y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), (0, 0, 0, 0))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, (2, 2), (2, 2), (0, 0, 0, 0))
    for i in (0, 31, 63):
        yi, ai = _C.max_pool2d_forward_with_argmax(x[i:i + 1], (2, 2), (2, 2), (0, 0, 0, 0))
        np.testing.assert_array_equal(y[i:i + 1], yi)
        np.testing.assert_array_equal(arg[i:i + 1], ai)
        dxi = _C.max_pool2d_backward_argmax(dy[i:i + 1], ai, x[i:i + 1].shape, (2, 2), (2, 2), (0, 0, 0, 0))
        np.testing.assert_array_equal(dx[i:i + 1], dxi)
    # every dy lands on exactly one cell of its non-overlapping window
    np.testing.assert_allclose(dx.sum(axis=(1, 2)), dy.sum(axis=(1, 2)), rtol=1e-5, atol=1e-4)


_SAME_FLOATS = """
import json, sys
import numpy as np
from fastconv import _C
rng = np.random.default_rng(int(sys.argv[1]))
out = {}
for c in (1, 2, 3, 4, 5, 6, 7):
    for h, w, pool, strides, pads in [(28, 28, (2, 2), (2, 2), (0, 0, 0, 0)),
                                      (9, 13, (3, 3), (2, 2), (1, 1, 1, 1)),
                                      (8, 17, (2, 3), (1, 2), (0, 1, 1, 1))]:
        x = rng.standard_normal((5, h, w, c)).astype(np.float32)
        x[1, 2, 3, 0] = np.nan
        y = _C.avg_pool2d_forward(x, pool, strides, pads)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = _C.avg_pool2d_backward(dy, x.shape, pool, strides, pads)
        out[f"c{c}_{h}x{w}"] = [y.tobytes().hex(), dx.tobytes().hex()]
print(json.dumps({"level": _C.isa_level(), "out": out}))
"""


def test_avg_pool_few_channels_same_floats_at_every_level():
    """C < 8: the avx512 level's 16-lane packed path, the avx2 level's 8-lane one (masked loads
    at P = 1, gathers below) and the baseline's scalar windows add the same terms in the same
    order (the backward multiplies each dy by 1/count, then adds, with no FMA contraction), so
    every level this CPU runs must give the same bytes, NaN included. The baseline's scalar path
    is checked against the oracle above; a lane or offset slip in a packed path shows here."""
    from fastconv_subprocess import run_python
    import json
    levels = _C.isa_levels()
    if len(levels) < 2:
        pytest.skip(f"this CPU or build runs one level only ({levels})")
    results = {}
    for level in levels:
        proc = run_python(["-c", _SAME_FLOATS, str(seeds.seed_of("avg-levels"))],
                          env={"FASTCONV_ISA": level}, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["level"] == level
        results[level] = result["out"]
    first = levels[0]
    for level in levels[1:]:
        differ = [k for k in results[first] if results[first][k] != results[level][k]]
        assert not differ, f"{level} differs from {first} on {differ}"
