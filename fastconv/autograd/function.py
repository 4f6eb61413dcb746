"""Function: the base of every differentiable op.

A subclass implements `forward(*arrays, **options) -> array` and `backward(grad) -> tuple`
(one gradient, or None, per Tensor input, in order). Whatever backward needs is stored on
`self` during forward; `release()` drops it after backward has run.
"""
from ..functional import array_module
from .tensor import Tensor, as_array, is_grad_enabled


class Function:
    parents = ()

    @classmethod
    def apply(cls, *inputs, **options):
        like = next((x.data for x in inputs if isinstance(x, Tensor)), None)
        tensors = [x if isinstance(x, Tensor) else Tensor(_constant(x, like)) for x in inputs]
        fn = cls()
        fn.needs = tuple(t.requires_grad for t in tensors)
        out = fn.forward(*[t.data for t in tensors], **options)
        track = is_grad_enabled() and any(fn.needs)
        result = Tensor(out, requires_grad=track)
        if track:
            fn.parents = tensors
            result._node = fn
            result._is_leaf = False
        return result

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def release(self):
        # Keep only what identifies the node; the saved activations go.
        needs = self.needs
        self.__dict__.clear()
        self.needs = needs
        self.parents = ()


def _constant(value, like):
    # Python numbers are "weak" (as in numpy and torch): they take the tensor operand's float
    # dtype and device, so `float64_tensor * 1.0001` keeps float64 precision.
    # xp.full, not xp.asarray: on the GPU a fill kernel, not a host->device copy.
    if like is not None and isinstance(value, (int, float)) and like.dtype.kind == "f":
        return array_module(like).full((), value, dtype=like.dtype)
    return value


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing numpy broadcasting."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


__all__ = ["Function", "unbroadcast", "as_array"]
