"""Models: `Model` (functional or subclassed) and `Sequential` (the model zoo joins later)."""
from ..engine import Functional, Model, Sequential  # noqa: F401
from ..layers import Input  # noqa: F401
from .zoo import *  # noqa: F401,F403,E402
