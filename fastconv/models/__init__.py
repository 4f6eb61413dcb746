"""Models: `Model` (functional or subclassed), `Sequential`, the zoo, and Keras's `load_model` path."""
from .._missing import module_getattr
from ..engine import Functional, Model, Sequential  # noqa: F401
from ..layers import Input  # noqa: F401
from .zoo import *  # noqa: F401,F403,E402


def load_model(filepath, *args, **kwargs):
    """Keras's whole-model loader. Not provided yet: whole-model files (.keras) are future work.

    Raises NotImplementedError naming today's alternative: rebuild the model in code, then
    `model.load_weights(path)` on a file written by `model.save_weights(path)`.
    """
    raise NotImplementedError(
        f"fastconv.models.load_model({filepath!r}): whole-model files are not provided yet. "
        "Rebuild the model in code and restore its weights instead: model.save_weights('w.npz') "
        "after training, model.load_weights('w.npz') on the rebuilt model.")


__getattr__ = module_getattr(__name__)
