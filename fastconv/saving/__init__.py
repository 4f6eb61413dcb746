"""Files: weights (.npz keyed by hierarchical path) and the one atomic file-writing helper
that everything fastconv writes goes through."""
from .atomic import atomic_write  # noqa: F401
from .weights import LoadStatus, load_weights, save_weights, weight_arrays, weight_paths  # noqa: F401
