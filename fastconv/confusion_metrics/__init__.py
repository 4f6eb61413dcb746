"""Metrics from confusion counts at thresholds (Keras's Precision, Recall, AUC), one per file;
they are reached as fastconv.metrics.Precision etc."""
from .auc import AUC  # noqa: F401
from .precision import Precision  # noqa: F401
from .recall import Recall  # noqa: F401
