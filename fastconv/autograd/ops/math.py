"""Elementwise arithmetic (with broadcasting), reductions and shape ops on Tensors."""
from ...functional import array_module
from ..function import Function, unbroadcast
from ..tensor import as_array


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(g * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        ga = unbroadcast(g / self.b, self.a.shape)
        gb = unbroadcast(-g * self.a / (self.b * self.b), self.b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Power(Function):
    def forward(self, a, p):
        self.a, self.p = a, p
        return a ** p

    def backward(self, g):
        return (g * self.p * self.a ** (self.p - 1),)


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"matmul needs 2-D operands, got shapes {a.shape} and {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        return g @ self.b.T, self.a.T @ g


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, g):
        xp = array_module(g)
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            g = xp.expand_dims(g, tuple(a % len(self.shape) for a in axes))
        return (xp.broadcast_to(g, self.shape).copy(),)


class Max(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        self.out = a.max(axis=axis, keepdims=True)
        return self.out if keepdims else self.out.reshape(a.max(axis=axis).shape)

    def backward(self, g):
        # Ties share the gradient equally (the max is not differentiable there).
        mask = self.a == self.out
        count = mask.sum(axis=self.axis, keepdims=True)
        return (mask * (g.reshape(self.out.shape) / count),)


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return (g.reshape(self.shape),)


class Transpose(Function):
    def forward(self, a, axes=None):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, g):
        xp = array_module(g)
        inverse = None if self.axes is None else tuple(xp.argsort(xp.asarray(self.axes)).tolist())
        return (g.transpose(inverse),)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        xp = array_module(g)
        out = xp.zeros(self.shape, self.dtype)
        if _is_basic(self.index):
            out[self.index] = g  # slices never repeat an element: a plain store suffices
        else:
            xp.add.at(out, self.index, g)  # integer arrays may repeat indices: accumulate
        return (out,)


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class Exp(Function):
    def forward(self, a):
        self.out = array_module(a).exp(a)
        return self.out

    def backward(self, g):
        return (g * self.out,)


class Log(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, g):
        return (g / self.a,)


class Erf(Function):
    """erf, for GELU. NumPy has none, so the forward pass is Numerical Recipes' erfc(|x|)
    Chebyshev fit (relative error < 1.2e-7, below float32's resolution of 1 - erf) written
    with array operations only, so it runs unchanged on NumPy and CuPy arrays; the backward
    pass is erf's exact derivative 2/sqrt(pi) * exp(-x^2)."""
    _C = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
          1.48851587, -0.82215223, 0.17087277)

    def forward(self, a):
        xp = array_module(a)
        self.a = a
        t = 1.0 / (1.0 + 0.5 * xp.abs(a))
        poly = self._C[-1]
        for c in self._C[-2::-1]:  # Horner, highest coefficient first
            poly = c + t * poly
        erfc = t * xp.exp(-a * a + poly)
        return (xp.sign(a) * (1.0 - erfc)).astype(a.dtype, copy=False)

    def backward(self, g):
        xp = array_module(g)
        return (g * (1.1283791670955126 * xp.exp(-self.a * self.a)).astype(g.dtype, copy=False),)


class Sqrt(Function):
    def forward(self, a):
        self.out = array_module(a).sqrt(a)
        return self.out

    def backward(self, g):
        return (g / (2 * self.out),)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).abs(a)

    def backward(self, g):
        return (g * array_module(g).sign(self.a),)


class Clip(Function):
    def forward(self, a, lo=None, hi=None):
        xp = array_module(a)
        self.mask = xp.ones(a.shape, bool)
        if lo is not None:
            self.mask &= a >= lo
        if hi is not None:
            self.mask &= a <= hi
        return xp.clip(a, lo, hi)

    def backward(self, g):
        return (g * self.mask,)


class Maximum(Function):
    def forward(self, a, b):
        self.shapes, self.a_wins = (a.shape, b.shape), a >= b
        return array_module(a).maximum(a, b)

    def backward(self, g):
        return unbroadcast(g * self.a_wins, self.shapes[0]), unbroadcast(g * ~self.a_wins, self.shapes[1])


class Where(Function):
    def forward(self, a, b, cond=None):
        self.shapes, self.cond = (a.shape, b.shape), cond
        return array_module(a).where(cond, a, b)

    def backward(self, g):
        return unbroadcast(g * self.cond, self.shapes[0]), unbroadcast(g * ~self.cond, self.shapes[1])


def add(a, b): return Add.apply(a, b)
def sub(a, b): return Sub.apply(a, b)
def mul(a, b): return Mul.apply(a, b)
def div(a, b): return Div.apply(a, b)
def neg(a): return Neg.apply(a)
def matmul(a, b): return MatMul.apply(a, b)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def erf(a): return Erf.apply(a)
def sqrt(a): return Sqrt.apply(a)
def abs(a): return Abs.apply(a)  # noqa: A001 - mirrors numpy's name
def clip(a, lo=None, hi=None): return Clip.apply(a, lo=lo, hi=hi)
def reshape(a, shape): return Reshape.apply(a, shape=shape)
def transpose(a, axes=None): return Transpose.apply(a, axes=axes)
def getitem(a, index): return GetItem.apply(a, index=_plain_index(index))
def sum(a, axis=None, keepdims=False): return Sum.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def max(a, axis=None, keepdims=False): return Max.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def maximum(a, b): return Maximum.apply(a, b)
def minimum(a, b): return neg(maximum(_neg(a), _neg(b)))


def _neg(v):
    # A Python number stays a number (a weak constant that takes the tensor's dtype and device):
    # neg(0.0) would make it a host array, which CuPy refuses to mix with device arrays.
    return -v if isinstance(v, (int, float)) else neg(v)
def square(a): return mul(a, a)


def power(a, p):
    if not isinstance(p, (int, float)):
        raise TypeError(f"Tensor ** p supports a scalar exponent, got {type(p).__name__}")
    return Power.apply(a, p=p)


def mean(a, axis=None, keepdims=False):
    shape = a.shape
    axes = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    count = 1
    for ax in axes:
        count *= shape[ax]
    return div(sum(a, axis, keepdims), float(count))


def where(cond, a, b):
    return Where.apply(a, b, cond=as_array(cond).astype(bool))


def _plain_index(index):
    # Tensors used as indices become arrays; everything else passes to numpy as is.
    if isinstance(index, tuple):
        return tuple(as_array(i) if hasattr(i, "requires_grad") else i for i in index)
    return as_array(index) if hasattr(index, "requires_grad") else index
