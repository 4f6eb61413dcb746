"""The model engine: Model (subclassing, compile, steps), Functional graphs, Sequential,
summary. Weight files live in `fastconv.saving`. Public names are re-exported by `fastconv.models`."""
from .functional import Functional  # noqa: F401
from .model import Model  # noqa: F401
from .sequential import Sequential  # noqa: F401
