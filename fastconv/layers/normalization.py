"""Normalization(axis=-1, mean=None, variance=None, invert=False): feature-wise
(x - mean) / max(sqrt(variance), 1e-7), Keras's guard against a zero variance.

Statistics are kept per index of `axis` (an int, a tuple of ints, or None for one scalar
statistic). Either pass `mean` and `variance` (constants: no weights, as Keras 3), or call
`adapt(data)`, which computes them over every other axis of `data` and stores them in the
non-trainable weights `mean`, `variance` and `count` (Keras 3 keeps the scalar `count` for
old files too), so weight files carry them: 2 * C + 1 parameters.

>>> import numpy as np
>>> from fastconv import layers
>>> n = layers.Normalization(); n.adapt(np.array([[0.0], [2.0]], np.float32))
>>> n(np.array([[3.0]], np.float32)).numpy()
array([[2.]], dtype=float32)
"""
import numpy as np

from ..autograd import Tensor
from ..functional import array_module
from .layer import Layer

EPSILON = 1e-7  # keras.config.epsilon()


class Normalization(Layer):
    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization: pass both mean and variance or neither, got mean={mean!r}, "
                             f"variance={variance!r}")
        self.axis = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        self.input_mean, self.input_variance, self.invert = mean, variance, bool(invert)
        self._stats = None  # (mean, variance) from adapt() before the layer was built

    def _keep(self, ndim):
        keep = tuple(sorted(a % ndim for a in self.axis))
        if 0 in keep:
            raise ValueError(f"{self.name}: axis {self.axis} includes the batch axis")
        return keep

    def build(self, input_shape):
        keep = self._keep(len(input_shape))
        shape = tuple(input_shape[a] for a in keep)
        if None in shape:
            raise ValueError(f"{self.name}: Normalization needs known sizes on axis {self.axis}, "
                             f"got input shape {tuple(input_shape)}")
        self._bshape = tuple(input_shape[a] if a in keep else 1 for a in range(len(input_shape)))
        self._bshape = (1,) + self._bshape[1:]
        if self.input_mean is None:
            self.mean = self.add_weight("mean", shape, "zeros", trainable=False)
            self.variance = self.add_weight("variance", shape, "ones", trainable=False)
            self.count = self.add_weight("count", (), "zeros", trainable=False, dtype="int64")
            if self._stats is not None:
                self._assign(*self._stats)
        else:
            def const(v):
                return np.broadcast_to(np.asarray(v, self.dtype), shape).copy()
            self.mean = Tensor(const(self.input_mean))
            self.variance = Tensor(const(self.input_variance))

    def adapt(self, data):
        """Set mean and variance (biased, as Keras) from `data`, an array of whole samples."""
        data = np.asarray(data.numpy() if hasattr(data, "numpy") else data, dtype=np.float64)
        if data.ndim < 1 or data.shape[0] == 0:
            raise ValueError(f"{self.name}: adapt needs a non-empty batch of samples, got shape {data.shape}")
        keep = self._keep(data.ndim)
        reduce = tuple(a for a in range(data.ndim) if a not in keep)
        mean = data.mean(axis=reduce)
        var = data.var(axis=reduce)
        count = data.size // max(mean.size, 1)
        if self.input_mean is not None:
            raise ValueError(f"{self.name}: adapt() on a Normalization given mean and variance")
        if not self.built:
            self._stats = (mean, var, count)
            self._maybe_build((None,) + data.shape[1:])
        else:
            self._assign(mean, var, count)

    def _assign(self, mean, var, count):
        if tuple(mean.shape) != tuple(self.mean.shape):
            raise ValueError(f"{self.name}: adapt data gives statistics of shape {mean.shape}, the layer "
                             f"was built for {tuple(self.mean.shape)}")
        self.mean.assign(mean.astype(self.dtype))
        self.variance.assign(var.astype(self.dtype))
        self.count.assign(np.asarray(count, np.int64))

    def call(self, inputs):
        xp = array_module(inputs.data)
        mean = xp.asarray(self.mean.data, dtype=inputs.dtype).reshape(self._bshape)
        var = xp.asarray(self.variance.data, dtype=inputs.dtype).reshape(self._bshape)
        std = xp.maximum(xp.sqrt(var), inputs.dtype.type(EPSILON))  # maximum keeps NaN
        if self.invert:
            return inputs * Tensor(std) + Tensor(mean)
        return (inputs - Tensor(mean)) / Tensor(std)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        def ser(v):
            return None if v is None else np.asarray(v).tolist()
        axis = None if self.axis == () else (self.axis[0] if len(self.axis) == 1 else self.axis)
        return {**super().get_config(), "axis": axis, "mean": ser(self.input_mean),
                "variance": ser(self.input_variance), "invert": self.invert}
