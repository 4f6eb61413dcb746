"""Reverse-mode autograd: Tensor, Variable, no_grad and the differentiable ops."""
from . import ops  # noqa: F401
from .tensor import Tensor, Variable, is_grad_enabled, no_grad, on_leaf_grad  # noqa: F401
