"""Tensor: an array plus the record of the op that made it; reverse-mode autograd.

Each differentiable op is a `Function` (function.py). Calling one on Tensors runs the forward
on raw arrays and, when gradients are enabled and some input requires them, links the output
to a node that remembers its parents and what its backward needs. `Tensor.backward()` walks the
nodes in reverse topological order (iteratively: a ResNet-152 graph is thousands deep), sums
the gradients of a tensor used more than once, and frees each node's saved arrays once its
backward has run.

>>> t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> y = (t * t).sum(); y.backward(); t.grad
array([2., 4., 6.], dtype=float32)
"""
import contextlib
import contextvars

import numpy as np

from ..functional import array_module

_grad_enabled = contextvars.ContextVar("fastconv_grad_enabled", default=True)


def is_grad_enabled():
    return _grad_enabled.get()


# Called with each leaf tensor the moment backward() has summed its final gradient (all its
# uses lie earlier in the reverse order); data-parallel training starts reducing from here.
_leaf_grad_hook = contextvars.ContextVar("fastconv_leaf_grad_hook", default=None)


@contextlib.contextmanager
def on_leaf_grad(hook):
    """Inside this block, backward() calls `hook(leaf)` as soon as a leaf's .grad is final."""
    token = _leaf_grad_hook.set(hook)
    try:
        yield
    finally:
        _leaf_grad_hook.reset(token)


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record nothing (inference, optimizer updates)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def as_array(value, dtype=None):
    """Backend array for a Tensor, array, scalar or list (floats default to float32)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "__cuda_array_interface__"):
        return value
    arr = np.asarray(value)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if isinstance(value, (bool, int, float, list, tuple)) and not isinstance(value, np.generic):
        return arr.astype(np.float32)  # Python numbers: float32, like every framework
    if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
        return arr.astype(np.float32)
    return arr


class Tensor:
    # Make numpy defer to Tensor's reflected operators (ndarray + Tensor -> Tensor).
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, name=None):
        self.data = as_array(data)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.name = name
        self._node = None  # the Function that produced this tensor, while its graph is alive

    # ---- array-like properties ----
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))

    def __len__(self):
        return self.data.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def numpy(self):
        """The value as a numpy array (copied to the host for device arrays)."""
        return self.data.get() if hasattr(self.data, "get") else np.asarray(self.data)

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def item(self):
        return self.numpy().item()

    def __float__(self):
        return float(self.item())

    def detach(self):
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    # ---- autograd ----
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires it."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input required grad, or it was computed under no_grad)")
        xp = array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs a scalar, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = xp.asarray(as_array(grad), dtype=self.data.dtype).reshape(self.shape)
        if self._node is None and not self._is_leaf:
            raise RuntimeError("this graph was already backpropagated and its saved arrays freed; "
                               "run the forward pass again before calling backward()")
        grads = {id(self): grad}
        order, uses = self._topological_order()
        hook = _leaf_grad_hook.get()

        def finish_leaf(t, g):
            t.grad = g if t.grad is None else t.grad + g
            if hook is not None:
                hook(t)
        for t in order:
            g = grads.pop(id(t), None)
            if g is None:
                continue
            node = t._node
            if node is None:
                if not t._is_leaf:
                    # Reached from a second root through a graph whose arrays a previous
                    # backward() freed: its gradient can no longer be propagated.
                    raise RuntimeError("backward() reached a tensor whose graph was already "
                                       "backpropagated and freed; compute both outputs' loss "
                                       "first and call backward() once on their sum")
                finish_leaf(t, g)
                continue
            for parent, pg in zip(node.parents, node.backward(g)):
                if not parent.requires_grad:
                    continue
                if pg is not None:
                    prev = grads.get(id(parent))
                    grads[id(parent)] = pg if prev is None else prev + pg
                if id(parent) in uses:
                    # A leaf's gradient is final after its last use: finish it now, not at
                    # its place in the order (often the very end), so a hook (data-parallel
                    # reduction) can start while the rest of backward runs.
                    uses[id(parent)] -= 1
                    if uses[id(parent)] == 0:
                        del uses[id(parent)]
                        pg = grads.pop(id(parent), None)
                        if pg is not None:
                            finish_leaf(parent, pg)
            node.release()
            t._node = None
            t._is_leaf = False

    _is_leaf = True

    def _topological_order(self):
        """(tensors in reverse topological order, {id(leaf): number of uses in the graph})."""
        order, seen, stack, uses = [], set(), [(self, False)], {}
        while stack:
            t, expanded = stack.pop()
            if expanded:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            if t._node is not None:
                for p in t._node.parents:
                    if p.requires_grad and p._node is None and p._is_leaf:
                        uses[id(p)] = uses.get(id(p), 0) + 1
                stack.extend((p, False) for p in t._node.parents if id(p) not in seen and p.requires_grad)
        return reversed(order), uses

    # ---- operators (implemented in ops/math.py) ----
    def __add__(self, o): return _m().add(self, o)
    def __radd__(self, o): return _m().add(o, self)
    def __sub__(self, o): return _m().sub(self, o)
    def __rsub__(self, o): return _m().sub(o, self)
    def __mul__(self, o): return _m().mul(self, o)
    def __rmul__(self, o): return _m().mul(o, self)
    def __truediv__(self, o): return _m().div(self, o)
    def __rtruediv__(self, o): return _m().div(o, self)
    def __neg__(self): return _m().neg(self)
    def __pow__(self, p): return _m().power(self, p)
    def __matmul__(self, o): return _m().matmul(self, o)
    def __rmatmul__(self, o): return _m().matmul(o, self)
    def __getitem__(self, index): return _m().getitem(self, index)

    # comparisons give plain arrays: they have no gradient
    def __lt__(self, o): return self.data < as_array(o)
    def __le__(self, o): return self.data <= as_array(o)
    def __gt__(self, o): return self.data > as_array(o)
    def __ge__(self, o): return self.data >= as_array(o)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _m().reshape(self, tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _m().transpose(self, tuple(axes) if axes else None)

    T = property(lambda self: self.transpose())

    def sum(self, axis=None, keepdims=False): return _m().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _m().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _m().max(self, axis, keepdims)
    def exp(self): return _m().exp(self)
    def log(self): return _m().log(self)
    def sqrt(self): return _m().sqrt(self)
    def abs(self): return _m().abs(self)
    def square(self): return _m().mul(self, self)
    def clip(self, lo=None, hi=None): return _m().clip(self, lo, hi)


def _m():
    from .ops import math
    return math


class Variable(Tensor):
    """A trainable (or state) tensor owned by a layer: weights, biases, moving statistics.

    `requires_grad` follows `trainable`; `assign` writes in place so optimizers and
    references held elsewhere see the new value.
    """

    def __init__(self, initial_value, name=None, trainable=True, dtype=None):
        # A copy: the variable owns its storage (updated in place by optimizers).
        super().__init__(as_array(initial_value, dtype).copy(), requires_grad=trainable, name=name)

    # Every read of `data` from outside counts as a possible write (optimizers, assign,
    # set_weights and users all change the storage in place through it): `_version` goes up,
    # so caches derived from the value (the inference plan's folded conv + batch-norm
    # kernels, engine/inference.py) know when to rebuild. They read `_storage`, which does not.
    @property
    def data(self):
        self._version = self.__dict__.get("_version", 0) + 1
        return self._storage

    @data.setter
    def data(self, value):
        self._version = self.__dict__.get("_version", 0) + 1
        self._storage = value

    @property
    def trainable(self):
        return self.requires_grad

    @trainable.setter
    def trainable(self, value):
        self.requires_grad = bool(value)

    @property
    def value(self):
        return self.data

    def assign(self, value):
        value = as_array(value)
        if tuple(value.shape) != self.shape:
            raise ValueError(f"cannot assign a value of shape {tuple(value.shape)} to variable "
                             f"{self.name!r} of shape {self.shape}")
        # A host value goes to the variable's device explicitly (an upload on the GPU).
        self.data[...] = array_module(self.data).asarray(value)
        return self

    def __repr__(self):
        return f"Variable(name={self.name!r}, shape={self.shape}, trainable={self.trainable})"
