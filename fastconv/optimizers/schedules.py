"""Learning-rate schedules (Keras 3 formulas): callables mapping the optimizer step (its
`iterations` before the update, so the first update sees step 0) to a learning rate.

>>> ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)
0.025
>>> PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])(10), PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])(11)
(1.0, 0.5)
"""
import math

from ..saving import serialization as _serialization


class LearningRateSchedule(_serialization.RecordsArguments):
    """Base class: subclasses implement `__call__(step) -> float` and `get_config()`."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return _serialization.arguments_config(self)

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)


def _positive(name, value):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments and the decay
    progress step / decay_steps (floored with `staircase`)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase, name):
        _positive("decay_steps", decay_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def _progress(self, step):
        p = float(step) / self.decay_steps
        return math.floor(p) if self.staircase else p

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    decay_rate=self.decay_rate, staircase=self.staircase, name=self.name)


class ExponentialDecay(_StepDecay):
    """lr = initial_learning_rate * decay_rate ** (step / decay_steps); with `staircase` the
    exponent is floored, so the rate drops in steps every `decay_steps`."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        p = self._progress(step)
        return self.initial_learning_rate * self.decay_rate ** p


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
    boundaries[i], values[-1] after the last boundary (Keras: boundaries are inclusive upper
    ends)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values must have one more element than boundaries, got "
                             f"{len(values)} values and {len(boundaries)} boundaries")
        if any(lo >= hi for lo, hi in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be increasing, got {boundaries}")
        self.boundaries, self.values, self.name = boundaries, values, name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self):
        return dict(boundaries=self.boundaries, values=self.values, name=self.name)


class CosineDecay(LearningRateSchedule):
    """Optional linear warm-up from `initial_learning_rate` to `warmup_target` over
    `warmup_steps`, then cosine decay over `decay_steps` from the peak (warmup_target, or
    initial_learning_rate without warm-up) down to alpha * peak, held there afterwards:
    decayed = (1 - alpha) * 0.5 * (1 + cos(pi * min(t, decay_steps) / decay_steps)) + alpha."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _positive("decay_steps", decay_steps)
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.alpha = float(alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = warmup_steps

    def _decay(self, step, peak):
        frac = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * frac))
        return peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = float(step)
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * frac
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    alpha=self.alpha, name=self.name, warmup_target=self.warmup_target,
                    warmup_steps=self.warmup_steps)


class InverseTimeDecay(_StepDecay):
    """lr = initial_learning_rate / (1 + decay_rate * step / decay_steps); with `staircase`
    step / decay_steps is floored. (decay_steps=1 gives Keras 2's optimizer `decay=`.)"""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        p = self._progress(step)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class PolynomialDecay(LearningRateSchedule):
    """lr = (initial_learning_rate - end_learning_rate) * (1 - t / T) ** power + end_learning_rate
    with T = decay_steps. Without `cycle`, t = min(step, T): the rate stays at
    end_learning_rate after T steps. With `cycle`, t = step and T grows to the first multiple
    of decay_steps >= step (decay_steps itself at step 0), so the rate jumps back up and
    decays again, more slowly, each cycle."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        _positive("decay_steps", decay_steps)
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        step, total = float(step), float(self.decay_steps)
        if self.cycle:
            total *= max(math.ceil(step / total), 1)
        else:
            step = min(step, total)
        frac = 1.0 - step / total
        return (self.initial_learning_rate - self.end_learning_rate) * frac ** self.power + self.end_learning_rate

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    end_learning_rate=self.end_learning_rate, power=self.power, cycle=self.cycle,
                    name=self.name)
