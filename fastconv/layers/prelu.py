"""PReLU(alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
shared_axes=None): x for x >= 0, alpha * x below, with a trainable alpha of the input's
shape without the batch axis; `shared_axes` (1-based, e.g. [1, 2] for one alpha per channel
of NHWC images) share one alpha along those axes. Parameters: the product of alpha's shape.

>>> from fastconv import layers
>>> p = layers.PReLU(shared_axes=[1, 2]); _ = p.build((None, 8, 8, 3)); p.count_params()
3
"""
from ..autograd import ops
from .layer import Layer


class PReLU(Layer):
    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise NotImplementedError("PReLU(alpha_constraint=...) is not supported")
        self.alpha_initializer, self.alpha_regularizer = alpha_initializer, alpha_regularizer
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            if not 1 <= a < len(input_shape):
                raise ValueError(f"{self.name}: shared_axes {self.shared_axes} out of range for input "
                                 f"shape {tuple(input_shape)}")
            shape[a - 1] = 1
        if None in shape:
            raise ValueError(f"{self.name}: PReLU needs known sizes on unshared axes, got input shape "
                             f"{tuple(input_shape)}")
        self.alpha = self.add_weight("alpha", shape, self.alpha_initializer, regularizer=self.alpha_regularizer)

    def call(self, inputs):
        return ops.where(inputs.data >= 0, inputs, inputs * self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # The recorded arguments (Layer.get_config) serialize initializer and regularizer objects.
        return {**super().get_config(), "shared_axes": self.shared_axes}
