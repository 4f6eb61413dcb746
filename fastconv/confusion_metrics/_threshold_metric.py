"""The shared base of Precision and Recall: confusion counts at one or several thresholds."""
import numpy as np

from ..metrics import Metric, MetricResult
from . import counts


class ThresholdMetric(Metric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"{type(self).__name__}: top_k must be an int >= 1, got {top_k!r}")
        self.thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        # Keras's default: 0.5, or "any prediction kept by top_k" (-inf) when top_k is set.
        if thresholds is None:
            self._thresholds = np.array([0.5 if top_k is None else -np.inf])
        else:
            self._thresholds = counts.check_thresholds(type(self).__name__, thresholds)
        self._one = thresholds is None or np.ndim(thresholds) == 0
        super().__init__(name, dtype)

    def reset_state(self):
        zeros = np.zeros(len(self._thresholds))
        self.true_positives, self.false_positives = zeros.copy(), zeros.copy()
        self.true_negatives, self.false_negatives = zeros.copy(), zeros.copy()

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp, w = counts.prepare(self.name, y_true, y_pred, sample_weight, self.top_k, self.class_id)
        tp, fp, tn, fn = counts.confusion(yt, yp, w, self._thresholds)
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _ratio(self):
        raise NotImplementedError

    def result(self):
        value = self._ratio()
        return MetricResult(value[0]) if self._one else value.astype(np.float32)
