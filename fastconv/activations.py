"""Keras's activation functions (Keras 3 definitions), usable as ``activation=activations.gelu``
or as the string ``activation="gelu"`` in Dense, Conv2D and Activation.

relu, sigmoid, tanh and linear run as the native fused kernels (the layers apply them inside
the conv/dense pass); the others are composed from differentiable elementwise ops, so they
work and have gradients on every backend. NaN propagates through all of them.

Keras 3 choices: ``leaky_relu`` negative_slope=0.2; ``gelu`` exact (erf) unless
approximate=True; ``hard_sigmoid`` = relu6(x + 3) / 6 (Keras 2's was clip(0.2x + 0.5, 0, 1));
``elu`` alpha=1; ``selu`` with the self-normalising constants of Klambauer et al. (2017).

>>> import numpy as np
>>> from fastconv import activations
>>> activations.hard_sigmoid(np.array([-4.0, 0.0, 1.5])).numpy()
array([0.  , 0.5 , 0.75])
>>> activations.get("swish") is activations.silu
True
"""
import math

import numpy as np

from ._missing import module_getattr
from .autograd import Tensor, ops

# Self-normalising constants (Klambauer et al. 2017), as Keras writes them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _tensor(x):
    # Keras activations take any array; ours return a Tensor either way.
    return x if isinstance(x, Tensor) else Tensor(x if hasattr(x, "dtype") else np.asarray(x, np.float32))


def _data(x):
    return x.data


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0); Keras's generalisation: negative_slope * (x - threshold) below threshold,
    capped at max_value."""
    x = _tensor(x)
    if negative_slope == 0.0 and threshold == 0.0:
        y = ops.relu(x)
    else:
        y = ops.where(_data(x) >= threshold, x, (x - threshold) * negative_slope)
    return y if max_value is None else ops.minimum(y, float(max_value))


def relu6(x):
    """min(max(x, 0), 6)."""
    return ops.clip(_tensor(x), 0.0, 6.0)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return ops.sigmoid(_tensor(x))


def tanh(x):
    return ops.tanh(_tensor(x))


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`."""
    return ops.softmax(_tensor(x), axis=axis)


def log_softmax(x, axis=-1):
    return ops.log_softmax(_tensor(x), axis=axis)


def linear(x):
    """The identity (what activation=None means)."""
    return x


def exponential(x):
    return ops.exp(_tensor(x))


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    x = _tensor(x)
    # exp of min(x, 0), not of x: exp of a large positive x overflows to inf, and the unused
    # branch's gradient 0 * inf would be NaN.
    negative = (ops.exp(ops.minimum(x, 0.0)) - 1.0) * alpha
    return ops.where(_data(x) > 0, x, negative)


def selu(x):
    """SELU_SCALE * elu(x, SELU_ALPHA)."""
    return elu(x, SELU_ALPHA) * SELU_SCALE


def leaky_relu(x, negative_slope=0.2):
    """x for x >= 0, negative_slope * x otherwise (Keras 3 default slope 0.2)."""
    x = _tensor(x)
    return ops.where(_data(x) >= 0, x, x * negative_slope)


def gelu(x, approximate=False):
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); approximate=True: Hendrycks & Gimpel's tanh form
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    x = _tensor(x)
    if approximate:
        inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
        return x * (ops.tanh(inner) + 1.0) * 0.5
    return x * (ops.erf(x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    x = _tensor(x)
    return x * ops.sigmoid(x)


swish = silu


def hard_sigmoid(x):
    """relu6(x + 3) / 6 (Keras 3)."""
    return ops.clip(_tensor(x) + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def hard_silu(x):
    """x * hard_sigmoid(x)."""
    x = _tensor(x)
    return x * hard_sigmoid(x)


hard_swish = hard_silu


def softplus(x):
    """log(1 + exp(x)), computed as max(x, 0) + log(1 + exp(-|x|)) so that it never overflows
    (its gradient at exactly x = 0 is 1, not 0.5: the two kinks are evaluated one-sidedly)."""
    x = _tensor(x)
    return ops.maximum(x, 0.0) + ops.log(ops.exp(-ops.abs(x)) + 1.0)


def softsign(x):
    """x / (1 + |x|)."""
    x = _tensor(x)
    return x / (ops.abs(x) + 1.0)


def mish(x):
    """x * tanh(softplus(x))."""
    x = _tensor(x)
    return x * ops.tanh(softplus(x))


# name -> function, every Keras spelling (aliases share a function).
_BY_NAME = {f.__name__: f for f in (
    relu, relu6, sigmoid, tanh, softmax, log_softmax, linear, exponential, elu, selu, leaky_relu, gelu,
    silu, hard_sigmoid, hard_silu, softplus, softsign, mish)}
_BY_NAME.update(swish=silu, hard_swish=hard_silu)


def get(identifier):
    """The activation function for a name ('relu', 'GELU', ...), a function (returned as is) or
    None (linear). Unknown names raise ValueError with the nearest known name."""
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, dict):  # Keras's {'class_name': ..., 'config': ...} form
        identifier = identifier.get("config", identifier.get("class_name"))
        if isinstance(identifier, dict):
            identifier = identifier.get("name")
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    import difflib
    close = difflib.get_close_matches(str(identifier).lower(), sorted(_BY_NAME), n=1)
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}"
                     + (f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(_BY_NAME)}"))


def name_of(fn):
    """The registered name of one of these functions, or None for any other callable."""
    name = getattr(fn, "__name__", None)
    return name if _BY_NAME.get(name) is fn else None


def serialize(activation):
    """A function's name (what get/deserialize take back)."""
    return name_of(activation) or getattr(activation, "__name__", repr(activation))


def deserialize(name, custom_objects=None):
    """The function for `name`, looked up in `custom_objects` first."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return get(name)


__getattr__ = module_getattr(__name__)
