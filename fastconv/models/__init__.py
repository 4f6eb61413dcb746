"""Models: `Model` (functional or subclassed), `Sequential`, the zoo, and Keras's `load_model` path."""
from .._missing import module_getattr
from ..engine import Functional, Model, Sequential  # noqa: F401
from ..engine.clone import clone_model  # noqa: F401
from ..layers import Input  # noqa: F401
from .zoo import *  # noqa: F401,F403,E402


from ..saving.model_file import load_model, model_from_json, save_model  # noqa: F401,E402


__getattr__ = module_getattr(__name__)
