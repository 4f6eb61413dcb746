"""RandomFlip(mode="horizontal_and_vertical", seed=None): during training each image is flipped
left-right and/or up-down with probability 1/2 (Keras 3). Identity at inference."""

from ..data import augment
from ._preprocessing import HostAugmentLayer


class RandomFlip(HostAugmentLayer):
    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}")
        super().__init__(seed=seed, **kwargs)
        self.mode = mode

    def transform(self, x, rng):
        return augment.random_flip(x, rng, horizontal="horizontal" in self.mode,
                                   vertical="vertical" in self.mode)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
