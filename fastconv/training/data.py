"""Old import path of :mod:`fastconv.data.adapters` (the loop's data adapters live there now)."""
from ..data.adapters import (ArrayAdapter, DatasetAdapter, EpochIterator,  # noqa: F401
                             IterableAdapter, is_array_data, leaves, make_iterator, map_structure,
                             num_samples, stage_on_device, train_validation_split, unpack)
