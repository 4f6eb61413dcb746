"""Adam, Keras formulas (epsilon outside the square root, bias correction folded into the
step size):
  alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
  amsgrad: v_hat = max(v_hat, v), used instead of v
  w -= alpha * m / (sqrt(v) + epsilon)"""
import math

import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        for arg, val in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= val < 1.0:
                raise ValueError(f"{arg} must be in [0, 1), got {val!r}")
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), bool(amsgrad)

    def _build_state(self, var):
        state = {"m": np.zeros_like(var.data), "v": np.zeros_like(var.data)}
        if self.amsgrad:
            state["v_hat"] = np.zeros_like(var.data)
        return state

    def _alpha(self, lr, step):
        return lr * math.sqrt(1.0 - self.beta_2 ** step) / (1.0 - self.beta_1 ** step)

    _fused_backends = ("cpu", "cuda")

    def _fused_update(self, kernels, w, grad, state, lr, step, decay):
        kernels.adam_update(w, grad, state["m"], state["v"], self._alpha(lr, step), self.beta_1, self.beta_2,
                       self.epsilon, state.get("v_hat"), decay)

    def _update(self, var, grad, state, lr, step):
        alpha = self._alpha(lr, step)
        m, v = state["m"], state["v"]
        m += (grad - m) * (1.0 - self.beta_1)
        v += (grad * grad - v) * (1.0 - self.beta_2)
        if self.amsgrad:
            np.maximum(state["v_hat"], v, out=state["v_hat"])
            v = state["v_hat"]
        var.data -= alpha * m / (np.sqrt(v) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}
