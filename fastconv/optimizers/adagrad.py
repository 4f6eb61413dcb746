"""Adagrad, Keras 3 formula: acc += g^2; w -= lr * g / sqrt(acc + epsilon) (epsilon inside
the square root), with the accumulator starting at `initial_accumulator_value`."""
import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if initial_accumulator_value < 0:
            raise ValueError(f"initial_accumulator_value must be >= 0, got {initial_accumulator_value!r}")
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def _build_state(self, var):
        acc = np.zeros_like(var.data)
        acc += self.initial_accumulator_value
        return {"accumulator": acc}

    def _update(self, var, grad, state, lr, step):
        acc = state["accumulator"]
        acc += grad * grad
        var.data -= lr * grad / np.sqrt(acc + self.epsilon)

    _fused_backends = ("cpu",)

    def _fused_update(self, kernels, w, grad, state, lr, step, decay):
        kernels.adagrad_update(w, grad, state["accumulator"], lr, self.epsilon, decay)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
