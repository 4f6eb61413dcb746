"""The training loop: `fit`, `evaluate`, `predict` (Keras semantics) and the progress bar."""
from .loop import evaluate, fit, predict
from .progbar import Progbar

__all__ = ["fit", "evaluate", "predict", "Progbar"]
