"""Precision: tp / (tp + fp) at `thresholds` (default 0.5; 0 when nothing was predicted
positive), with Keras's top_k and class_id.

>>> p = Precision(); p.update_state([0, 1, 1, 1], [1, 0, 1, 1]); round(p.result(), 4)
0.6667
"""
from . import counts
from ._threshold_metric import ThresholdMetric


class Precision(ThresholdMetric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name="precision", dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def _ratio(self):
        return counts.divide_no_nan(self.true_positives, self.true_positives + self.false_positives)
