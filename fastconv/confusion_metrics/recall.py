"""Recall: tp / (tp + fn) at `thresholds` (default 0.5; 0 when there were no positives), with
Keras's top_k and class_id.

>>> r = Recall(); r.update_state([0, 1, 1, 1], [1, 0, 1, 1]); round(r.result(), 4)
0.6667
"""
from . import counts
from ._threshold_metric import ThresholdMetric


class Recall(ThresholdMetric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name="recall", dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def _ratio(self):
        return counts.divide_no_nan(self.true_positives, self.true_positives + self.false_negatives)
