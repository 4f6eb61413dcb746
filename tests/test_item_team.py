"""Join-free work sharing for batch-1 layers (csrc/cpu/item_team.*) and the convs routed to it.

The item team runs every item exactly once, on the caller or on a helper that happens to be
awake; the caller never waits for a helper to wake. Checked through a C++ hook (sleeping
items, so a helper gets a CPU on a busy machine too), then through the one-image conv paths
that use it: Winograd forward, im2col row chunks, strided tap GEMMs, the Cout split and the
residual add after Winograd. Each is compared with the float64 NumPy oracle (rtol 1e-4, atol 1e-5 times the
output's magnitude: float32 sums of up to ~5000 products) and with the same call at one
thread, which takes the serial path of the same kernel (same products per output: equal
within rounding; Winograd's blocks hold different tiles, so only close).
"""
import os
import select
import signal

import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R


def _close(got, ref):
    scale = max(1.0, float(np.nanmax(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.fixture
def threads2():
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(before)


def test_every_item_runs_once_and_helpers_join(threads2):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable CPU: no helpers")
    helped = 0
    for _ in range(5):  # sleeping items leave the CPU to the helper; retry on a stalled machine
        slots = _C._item_team_selftest(100, 300)
        assert sorted(set(slots)) <= [0, 1], slots  # no error codes (< 0), at most 2 participants
        helped = sum(s == 1 for s in slots)
        if helped:
            break
    assert helped > 0


def test_one_thread_runs_everything_on_the_caller():
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    try:
        assert _C._item_team_selftest(37, 0) == [0] * 37
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_an_item_error_reaches_the_caller(threads):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        with pytest.raises(ValueError, match="item 5"):
            _C._item_team_selftest(20, 50, 5)
        assert _C._item_team_selftest(3, 0) != []  # the team still works afterwards
    finally:
        fastconv.set_num_threads(before)


# (h, w, cin, cout, kernel, pads, algorithm[, stride]): batch-1 convs that take the item team at 2 threads.
SHAPES = [
    (32, 32, 64, 64, 3, (1, 1, 1, 1), "auto"),       # Winograd F(4x4), 64 tiles
    (17, 13, 40, 32, 3, (1, 1, 1, 1), "auto"),       # Winograd, odd sizes, clipped tiles
    (15, 15, 128, 72, 3, (0, 0, 0, 0), "auto"),      # Winograd 'valid'
    (45, 37, 16, 40, 5, (2, 2, 2, 2), "auto"),       # 5x5: im2col row chunks
    (61, 29, 33, 50, 3, (1, 1, 1, 1), "im2col"),     # im2col row chunks, odd channels
    (6, 5, 300, 136, 3, (0, 0, 0, 0), "auto"),       # Cout split, odd sizes
    (57, 41, 48, 40, 3, (0, 1, 0, 1), "auto", 2),    # stride 2: tap GEMMs per output line
]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s[0]}x{s[1]}x{s[2]}-{s[3]}k{s[4]}{s[6]}" for s in SHAPES])
@pytest.mark.parametrize("residual", [False, True])
def test_batch1_convs_match_oracle_and_one_thread(threads2, shape, residual):
    h, w, cin, cout, k, pads, algo = shape[:7]
    s = shape[7] if len(shape) > 7 else 1
    rng = np.random.default_rng(h * 1000 + w)
    x = rng.standard_normal((1, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    oh, ow = (h + pads[0] + pads[1] - k) // s + 1, (w + pads[2] + pads[3] - k) // s + 1
    res = rng.standard_normal((1, oh, ow, cout)).astype(np.float32) if residual else None
    args = ((s, s), pads, (1, 1), 1, "relu", res)
    fastconv.set_conv_algorithm(algo)
    try:
        _C._threads_used()
        got = _C.conv2d_forward(x, wt, b, *args)
        assert _C._threads_used() == 2
        fastconv.set_num_threads(1)
        one = _C.conv2d_forward(x, wt, b, *args)
    finally:
        fastconv.set_conv_algorithm("auto")
        fastconv.set_num_threads(2)
    f64 = lambda v: v.astype(np.float64)  # noqa: E731
    ref = R.conv2d_forward(f64(x), f64(wt), f64(b), (s, s), pads, (1, 1), 1)
    if residual:
        ref = ref + f64(res)
    ref = np.maximum(ref, 0.0)
    _close(got, ref)
    _close(got, f64(one))


def test_batch1_winograd_nan_propagates(threads2):
    """A NaN in x makes the item-team Winograd decline; im2col redoes the pass."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 32, 32, 64)).astype(np.float32)
    x[0, 20, 9, 3] = np.nan
    wt = (rng.standard_normal((3, 3, 64, 64)) / 24).astype(np.float32)
    got = _C.conv2d_forward(x, wt, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[0, 19:22, 8:11]).all() and not np.isnan(got[0, 25]).any()
    finite = ~np.isnan(ref)
    _close(got[finite], ref[finite])


def test_batch1_predict_two_threads_matches_one(threads2):
    """ResNet-18 (CIFAR stem) b1 through the inference plan: 2 threads equal 1 thread."""
    from fastconv.models import zoo
    fastconv.set_seed(3)
    model = zoo.resnet18((32, 32, 3), classes=10, stem="cifar")
    x = np.random.default_rng(4).standard_normal((1, 32, 32, 3)).astype(np.float32)
    two = [model.predict_on_batch(x) for _ in range(3)]
    fastconv.set_num_threads(1)
    one = model.predict_on_batch(x)
    for y in two:
        np.testing.assert_allclose(y, one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_batch1_depthwise_matches_oracle_and_one_thread(threads2, stride):
    """Depthwise forward at batch 1 (line blocks through the item team), odd sizes, relu6."""
    rng = np.random.default_rng(11 + stride)
    c = 64  # stride 2: 29x22x64 outputs, above the single-thread grain
    x = rng.standard_normal((1, 57, 43, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    pads = (1, 1, 1, 1)
    args = ((stride, stride), pads, (1, 1), c, "relu6")
    _C._threads_used()
    got = _C.conv2d_forward(x, wt, b, *args)
    assert _C._threads_used() == 2
    fastconv.set_num_threads(1)
    one = _C.conv2d_forward(x, wt, b, *args)
    f64 = lambda v: v.astype(np.float64)  # noqa: E731
    ref = np.clip(R.conv2d_forward(f64(x), f64(wt), f64(b), (stride, stride), pads, (1, 1), c), 0.0, 6.0)
    _close(got, ref)
    np.testing.assert_array_equal(got, one)  # the same per-line arithmetic either way


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_items_alone(threads2):
    """A fork child has no helper threads (only the forking thread survives) but inherits the
    team's state: its items must all run on its caller, and a call must not wait for the
    parent's helpers (a hang, caught by the timeout below)."""
    assert min(_C._item_team_selftest(8, 0)) >= 0  # helpers exist in this process now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the slots, exit without running pytest's teardown
        try:
            os.write(write, bytes(s + 10 for s in _C._item_team_selftest(12, 100)))
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    try:
        while select.select([read], [], [], 20.0)[0] and (chunk := os.read(read, 64)):
            data += chunk
    finally:
        os.close(read)
        if len(data) < 12:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert [b - 10 for b in data] == [0] * 12


_SWITCH_CODE = """
import numpy as np, fastconv
from fastconv import functional as F
from fastconv import reference as R
fastconv.set_num_threads(2)
rng = np.random.default_rng(7)
for (hw, c, oc, k, s) in [(17, 64, 64, 3, 1), (15, 48, 96, 3, 2), (9, 128, 256, 1, 1)]:
    x = rng.standard_normal((1, hw, hw, c)).astype(np.float32)
    w = (rng.standard_normal((k, k, c, oc)) / np.sqrt(k * k * c)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    got = np.asarray(F.conv2d(x, w, b, strides=s, padding="same"))
    pads = F.resolve_padding("same", x.shape[1:3], (k, k), (s, s))
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (s, s), pads, (1, 1), 1)
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)
print("ok")
"""


@pytest.mark.parametrize("value", ["0", "1"])
def test_item_team_switch_gives_the_oracle_at_batch_1(value):
    # FASTCONV_ITEM_TEAM=0 sends batch-1 layers back to OpenMP regions: same results
    from fastconv_subprocess import run_python
    r = run_python(["-c", _SWITCH_CODE], env={"FASTCONV_ITEM_TEAM": value}, capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_item_team_switch_rejects_other_values():
    from fastconv_subprocess import run_python
    code = ("import numpy as np, fastconv; from fastconv import functional as F\n"
            "fastconv.set_num_threads(2)\n"
            "x = np.ones((1, 16, 16, 64), np.float32); w = np.ones((3, 3, 64, 64), np.float32)\n"
            "F.conv2d(x, w, np.zeros(64, np.float32), padding='same')\n")
    r = run_python(["-c", code], env={"FASTCONV_ITEM_TEAM": "yes"}, capture_output=True, text=True)
    assert r.returncode != 0 and "FASTCONV_ITEM_TEAM must be 0 or 1" in r.stderr, r.stderr[-2000:]
