"""The im2col weight pass on few GEMM rows (batch 1 at small spatial sizes): below 256 output
positions it runs dW = col^T @ dy directly instead of the transposed product and its per-thread
transpose (conv2d.cpp, kTransposedMinRows). Both sides of the bound, K a multiple of 32 (where
the transposed form is otherwise taken), 1 and 2 threads, all three passes against the float64
reference. The 3x3 stride-1 cases would go to Winograd under 'auto': the algorithm is forced."""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import functional as F
from conv_oracle import check_conv_passes

# (n, h, w, cin, cout, k, stride): output positions 16, 49, 225 (< 256) and 256, 289 (>= 256)
CASES = [
    (1, 7, 7, 32, 48, 3, 2),     # M = 16, K = 288
    (1, 7, 7, 64, 32, 1, 1),     # M = 49, 1x1: x is the col matrix
    (1, 13, 14, 32, 40, 1, 2),   # M = 49, 1x1 stride 2
    (1, 15, 15, 32, 64, 3, 1),   # M = 225
    (1, 16, 16, 32, 64, 3, 1),   # M = 256: the transposed form
    (2, 17, 9, 64, 96, 3, 2),    # M = 90 over two images
    (1, 17, 17, 32, 16, 3, 1),   # M = 289
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_weight_pass_few_rows(case, threads):
    n, h, w, cin, cout, k, s = case
    old, old_algo = _C.get_num_threads(), fastconv.get_conv_algorithm()
    try:
        _C.set_num_threads(threads)
        fastconv.set_conv_algorithm("im2col")
        rng = np.random.default_rng(h * 100 + cin + threads)
        x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
        wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        for padding in ("same", "valid"):
            pads = tuple(F.resolve_padding(padding, (h, w), (k, k), (s, s)))
            args = ((s, s), pads, (1, 1), 1)
            algos = _C.conv_algorithm(x.shape, wt.shape, *args)
            assert algos["backward_weights"] == "im2col", algos
            check_conv_passes(rng, x, wt, b, args)
    finally:
        _C.set_num_threads(old)
        fastconv.set_conv_algorithm(old_algo)
