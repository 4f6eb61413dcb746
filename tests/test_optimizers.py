"""Optimizers against hand-written Keras 3 formulas (float64, 3 steps), literal values,
clipping, schedules and the Optimizer contract (in-place updates, lazy state, iterations)."""
import math

import numpy as np
import pytest

from fastconv import optimizers
from fastconv.optimizers import schedules


class Var:
    def __init__(self, value, name="w"):
        self.data = np.array(value, np.float32)
        self.name = name


W0 = np.array([0.5, -1.0, 2.0])
GRADS = [np.array([1.0, -2.0, 0.5]), np.array([-0.1, 0.05, 0.02]), np.array([0.3, 0.3, -0.4])]


def run(opt, grads=GRADS, w0=W0):
    v = Var(w0)
    buf = v.data
    out = []
    for g in grads:
        opt.apply_gradients([(g.astype(np.float32), v)])
        out.append(v.data.astype(np.float64).copy())
    assert v.data is buf  # updated in place
    return out


def ref_sgd(lr, m=0.0, nesterov=False):
    w, vel, out = W0.copy(), np.zeros(3), []
    for g in GRADS:
        vel = m * vel - lr * g
        w = w + (m * vel - lr * g if nesterov else vel)
        out.append(w.copy())
    return out


def ref_adagrad(lr, init, eps):
    w, acc, out = W0.copy(), np.full(3, init), []
    for g in GRADS:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
        out.append(w.copy())
    return out


def ref_rmsprop(lr, rho, mom, eps, centered):
    w, ms, mg, mv, out = W0.copy(), np.zeros(3), np.zeros(3), np.zeros(3), []
    for g in GRADS:
        ms = rho * ms + (1 - rho) * g * g
        mg = rho * mg + (1 - rho) * g
        denom = ms - mg * mg + eps if centered else ms + eps
        inc = lr * g / np.sqrt(denom)
        mv = mom * mv + inc
        w = w - (mv if mom else inc)
        out.append(w.copy())
    return out


def ref_adam(lr, b1, b2, eps, amsgrad=False, wd=0.0):
    w, m, v, vmax, out = W0.copy(), np.zeros(3), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(GRADS, 1):
        w = w - lr * wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - alpha * m / (np.sqrt(vmax if amsgrad else v) + eps)
        out.append(w.copy())
    return out


CASES = [
    (lambda: optimizers.SGD(0.1), ref_sgd(0.1)),
    (lambda: optimizers.SGD(0.1, momentum=0.9), ref_sgd(0.1, 0.9)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), ref_sgd(0.1, 0.9, True)),
    # epsilon large enough that putting it outside the square root would fail the test
    (lambda: optimizers.Adagrad(0.1, initial_accumulator_value=0.1, epsilon=0.5), ref_adagrad(0.1, 0.1, 0.5)),
    (lambda: optimizers.RMSprop(0.01, epsilon=0.05), ref_rmsprop(0.01, 0.9, 0.0, 0.05, False)),
    (lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, epsilon=0.05), ref_rmsprop(0.01, 0.8, 0.5, 0.05, False)),
    (lambda: optimizers.RMSprop(0.01, centered=True, epsilon=0.05), ref_rmsprop(0.01, 0.9, 0.0, 0.05, True)),
    (lambda: optimizers.Adam(0.1, epsilon=0.1), ref_adam(0.1, 0.9, 0.999, 0.1)),
    (lambda: optimizers.Adam(0.1, beta_1=0.5, beta_2=0.6, epsilon=1e-3, amsgrad=True),
     ref_adam(0.1, 0.5, 0.6, 1e-3, amsgrad=True)),
    (lambda: optimizers.AdamW(0.1, weight_decay=0.05, epsilon=0.1), ref_adam(0.1, 0.9, 0.999, 0.1, wd=0.05)),
]


@pytest.mark.parametrize("make,expected", CASES, ids=[
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_momentum", "rmsprop_centered",
    "adam", "amsgrad", "adamw"])
def test_three_steps_match_keras_formulas(make, expected):
    got = run(make())
    for step, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-7, err_msg=f"step {step + 1}")


def test_amsgrad_differs_from_adam_when_v_shrinks():
    a = run(optimizers.Adam(0.1, beta_1=0.5, beta_2=0.6, epsilon=1e-3))
    b = run(optimizers.Adam(0.1, beta_1=0.5, beta_2=0.6, epsilon=1e-3, amsgrad=True))
    assert np.abs(a[2] - b[2]).max() > 1e-3


def test_momentum_literal_values():
    ones = [np.ones(1)] * 3
    got = run(optimizers.SGD(0.1, momentum=0.9), ones, np.zeros(1))
    np.testing.assert_allclose([g[0] for g in got], [-0.1, -0.29, -0.561], rtol=1e-6)
    got = run(optimizers.SGD(0.1, momentum=0.9, nesterov=True), ones, np.zeros(1))
    np.testing.assert_allclose([g[0] for g in got], [-0.19, -0.461, -0.8049], rtol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    got = run(optimizers.Adam(0.01), [np.array([3.0, -0.2, 0.05])], np.zeros(3))
    np.testing.assert_allclose(got[0], [-0.01, 0.01, -0.01], rtol=1e-3)


def test_clipnorm_is_per_variable_and_global_clipnorm_is_joint():
    a, b = Var([0.0, 0.0]), Var([0.0])
    ga, gb = np.array([3.0, 4.0], np.float32), np.array([12.0], np.float32)
    optimizers.SGD(1.0, clipnorm=1.0).apply_gradients([(ga, a), (gb, b)])
    np.testing.assert_allclose(a.data, [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(b.data, [-1.0], rtol=1e-6)
    a, b = Var([0.0, 0.0]), Var([0.0])
    optimizers.SGD(1.0, global_clipnorm=6.5).apply_gradients([(ga, a), (gb, b)])  # global norm 13
    np.testing.assert_allclose(np.r_[a.data, b.data], [-1.5, -2.0, -6.0], rtol=1e-6)
    a = Var([0.0, 0.0])
    optimizers.SGD(1.0, clipvalue=3.5).apply_gradients([(ga, a)])
    np.testing.assert_allclose(a.data, [-3.0, -3.5])
    a = Var([0.0, 0.0])  # below the threshold nothing changes
    optimizers.SGD(1.0, clipnorm=10.0).apply_gradients([(ga, a)])
    np.testing.assert_allclose(a.data, [-3.0, -4.0])
    with pytest.raises(ValueError, match="only one of"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_schedule_values_at_steps():
    e = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    np.testing.assert_allclose([e(0), e(5), e(10), e(25)], [0.1, 0.1 * 0.5 ** 0.5, 0.05, 0.1 * 0.5 ** 2.5])
    s = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    np.testing.assert_allclose([s(9), s(10), s(25)], [0.1, 0.05, 0.025])
    p = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [p(0), p(10), p(11), p(20), p(21), p(1000)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0, 2.0])
    c = schedules.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    np.testing.assert_allclose([c(0), c(50), c(100), c(500)], [1.0, 0.55, 0.1, 0.1], atol=1e-12)
    w = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)
    np.testing.assert_allclose([w(0), w(2), w(4), w(9), w(14), w(99)], [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-12)


def test_optimizer_uses_schedule_at_iterations_before_increment():
    sched = schedules.PiecewiseConstantDecay([0, 1], [1.0, 0.5, 0.25])
    opt = optimizers.SGD(sched)
    got = run(opt, [np.ones(1)] * 3, np.zeros(1))
    np.testing.assert_allclose([g[0] for g in got], [-1.0, -1.5, -1.75])
    assert opt.iterations == 3 and opt.learning_rate == 0.25
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.1
    opt.learning_rate = schedules.ExponentialDecay(1.0, 1, 0.5)
    assert opt.learning_rate == 0.125


def test_learning_rate_is_settable_and_state_is_lazy():
    opt = optimizers.Adam()
    assert opt.learning_rate == 0.001
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    v = Var([1.0])
    assert opt.get_state(v) == {} and opt.iterations == 0
    opt.apply_gradients([(np.ones(1, np.float32), v)])
    assert set(opt.get_state(v)) == {"m", "v"} and opt.variables == [v]
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(-1.0)


def test_bad_gradients():
    opt, v = optimizers.SGD(), Var([1.0, 2.0], name="kernel")
    with pytest.raises(ValueError, match=r"kernel.*\(3,\).*\(2,\)"):
        opt.apply_gradients([(np.ones(3), v)])
    with pytest.warns(UserWarning, match="kernel"):
        opt.apply_gradients([(None, v)])
    np.testing.assert_array_equal(v.data, [1.0, 2.0])
    assert opt.iterations == 1


def test_get():
    assert isinstance(optimizers.get("Adam"), optimizers.Adam)
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get("rmsprop").learning_rate == 0.001
    assert optimizers.get("adamw").weight_decay == 0.004
    opt = optimizers.SGD(0.3)
    assert optimizers.get(opt) is opt
    cfg = optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.2, "momentum": 0.5}})
    assert (cfg.learning_rate, cfg.momentum) == (0.2, 0.5)
    with pytest.raises(ValueError, match="nadamx"):
        optimizers.get("nadamx")


def test_adam_amsgrad_match_torch():
    torch = pytest.importorskip("torch")
    for ams in (False, True):
        # torch puts epsilon after bias correction; with a tiny epsilon both forms agree.
        ours = run(optimizers.Adam(0.05, epsilon=1e-12, amsgrad=ams))
        p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64))
        topt = torch.optim.Adam([p], lr=0.05, eps=1e-12, amsgrad=ams)
        for g, o in zip(GRADS, ours):
            p.grad = torch.tensor(g)
            topt.step()
            np.testing.assert_allclose(o, p.detach().numpy(), rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: optimizers.Adam(0.1, amsgrad=True),
                                  lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: optimizers.RMSprop(0.1, momentum=0.5, centered=True),
                                  lambda: optimizers.Adagrad(0.1)], ids=["adam", "sgd", "rmsprop", "adagrad"])
def test_state_arrays_by_name_restore_exactly_into_new_variables(make):
    a, b = Var(W0, "a"), Var([[1.0, 2.0]], "b")
    opt = make()
    for g in GRADS[:2]:
        opt.apply_gradients([(g.astype(np.float32), a), (np.ones((1, 2), np.float32) * g[0], b)])
    saved = opt.state_arrays({"model/a": a, "model/b": b})
    assert int(saved["iterations"]) == 2 and all(isinstance(v, np.ndarray) for v in saved.values())
    # a new optimizer and new variables (other ids), as in a resumed process
    a2, b2 = Var(a.data, "a"), Var(b.data, "b")
    opt2 = make()
    opt2.load_state_arrays({"model/a": a2, "model/b": b2}, saved)
    for o, x, y in ((opt, a, b), (opt2, a2, b2)):
        o.apply_gradients([(GRADS[2].astype(np.float32), x), (np.full((1, 2), 0.3, np.float32), y)])
    np.testing.assert_array_equal(a.data, a2.data)
    np.testing.assert_array_equal(b.data, b2.data)
    assert opt2.iterations == opt.iterations == 3


def test_load_state_arrays_checks_everything_before_changing_anything():
    a = Var(W0, "a")
    opt = optimizers.Adam(0.1)
    opt.apply_gradients([(GRADS[0].astype(np.float32), a)])
    good = opt.state_arrays({"a": a})
    target = optimizers.Adam(0.1)
    target.apply_gradients([(GRADS[1].astype(np.float32), a)])
    kept = {k: v.copy() for k, v in target.state_arrays({"a": a}).items()}
    for bad, says in (({**good, "a/v": np.zeros(4)}, "a/v"), ({**good, "b/m": np.zeros(3)}, "'b'"),
                      ({k: v for k, v in good.items() if k != "a/m"}, "slots"),
                      ({**good, "a/m": np.full(3, "x")}, "a/m"), ({**good, "iterations": np.array(-1)}, "iterations")):
        with pytest.raises(ValueError, match=says):
            target.load_state_arrays({"a": a}, bad)
        after = target.state_arrays({"a": a})
        assert after.keys() == kept.keys() and all(np.array_equal(after[k], kept[k]) for k in kept)
