"""RMSprop, Keras 3 formulas:
  ms = rho * ms + (1 - rho) * g^2
  centered: mg = rho * mg + (1 - rho) * g; denom = ms - mg^2 + eps, else denom = ms + eps
  inc = lr * g / sqrt(denom)          (epsilon inside the square root, as Keras)
  momentum > 0: mom = momentum * mom + inc; w -= mom, else w -= inc."""
import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), bool(centered)

    def _build_state(self, var):
        state = {"velocity": np.zeros_like(var.data)}
        if self.momentum:
            state["momentum"] = np.zeros_like(var.data)
        if self.centered:
            state["average_gradient"] = np.zeros_like(var.data)
        return state

    def _update(self, var, grad, state, lr, step):
        ms = state["velocity"]
        ms *= self.rho
        ms += (1.0 - self.rho) * grad * grad
        if self.centered:
            mg = state["average_gradient"]
            mg *= self.rho
            mg += (1.0 - self.rho) * grad
            denom = ms - mg * mg + self.epsilon
        else:
            denom = ms + self.epsilon
        inc = lr * grad / np.sqrt(denom)
        if self.momentum:
            mom = state["momentum"]
            mom *= self.momentum
            mom += inc
            var.data -= mom
        else:
            var.data -= inc

    _fused_backends = ("cpu",)

    def _fused_update(self, kernels, w, grad, state, lr, step, decay):
        kernels.rmsprop_update(w, grad, state["velocity"], lr, self.rho, self.momentum, self.epsilon,
                          state.get("average_gradient"), state.get("momentum"), decay)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}
