"""RandomCrop(height, width, seed=None): during training a height x width window at a random
offset (one offset per batch, drawn uniformly from every position that fits, as Keras 3). At
inference, and in training for an image smaller than the target, the largest centred window
of the target aspect ratio is resized to height x width (bilinear; Keras's smart_resize, what
Keras 3 documents and tf.keras did). Offsets come from `fastconv.random.generator("augment")`,
or a private Generator when `seed` is given.

>>> from fastconv import layers
>>> layers.RandomCrop(3, 3).compute_output_shape((None, 8, 8, 3))
(None, 3, 3, 3)
"""

from ._preprocessing import aspect_crop, check_size, crop, generator, resize
from .conv2d import check_nhwc
from .layer import Layer


def smart_resize(x, height, width):
    return resize(crop(x, *aspect_crop(x.shape[1], x.shape[2], height, width)), height, width, "bilinear")


class RandomCrop(Layer):
    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        self.height, self.width = check_size(self, "height", height), check_size(self, "width", width)
        self.seed, self._rng = seed, None

    def call(self, inputs, training=True):  # Keras 3: augments unless told otherwise
        check_nhwc(self, inputs.shape)
        h, w = inputs.shape[1], inputs.shape[2]
        if not training or h < self.height or w < self.width:
            return smart_resize(inputs, self.height, self.width)
        g = generator(self)
        top = int(g.integers(0, h - self.height + 1))
        left = int(g.integers(0, w - self.width + 1))
        return crop(inputs, top, left, self.height, self.width)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "seed": self.seed}


