"""Stochastic gradient descent with optional (Nesterov) momentum, Keras formulas:
v = momentum * v - lr * g; plain momentum: w += v; Nesterov: w += momentum * v - lr * g
(with the already updated v). Without momentum: w -= lr * g, and no state is kept."""
import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _build_state(self, var):
        return {"momentum": np.zeros_like(var.data)} if self.momentum else {}

    def _update(self, var, grad, state, lr, step):
        if not self.momentum:
            var.data -= lr * grad
            return
        v = state["momentum"]
        v *= self.momentum
        v -= lr * grad
        if self.nesterov:
            var.data += self.momentum * v - lr * grad
        else:
            var.data += v

    _fused_backends = ("cpu", "cuda")

    def _fused_update(self, kernels, w, grad, state, lr, step, decay):
        kernels.sgd_update(w, grad, state.get("momentum"), lr, self.momentum, self.nesterov, decay)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
