"""AUC: area under the ROC or precision-recall curve, from confusion counts at `num_thresholds`
evenly spaced thresholds (Keras's approximation, not the exact rank statistic).

Thresholds are Keras's: i / (num_thresholds - 1) for i = 1 .. num_thresholds - 2, plus -1e-7
and 1 + 1e-7 at the ends so that predictions of exactly 0 and 1 fall inside. The curve is
summed Riemann-style over the thresholds; 'interpolation' takes the trapezoid for ROC and, for
PR, Davis & Goadrich's interpolation (precision varies along the line between two points of
the curve in the space of counts), as Keras does. 'minoring'/'majoring' take the lower/upper
of the two heights. With multi_label=True, y_pred is (samples, labels): one curve per label,
their areas averaged (weighted by label_weights when given); otherwise every value counts as
one prediction, label_weights weighting the values of each label.

>>> m = AUC(); m.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]); round(m.result(), 4)
0.75
"""
import numpy as np

from ..metrics import Metric, MetricResult
from . import counts

EPSILON = 1e-7


class AUC(Metric):
    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name="auc",
                 dtype=None, thresholds=None, multi_label=False, num_labels=None, label_weights=None,
                 from_logits=False):
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR', got {curve!r}")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: summation_method must be 'interpolation', 'minoring' or 'majoring', "
                             f"got {summation_method!r}")
        if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 1):
            raise ValueError(f"AUC: num_labels must be an int >= 1, got {num_labels!r}")
        self._labels = num_labels  # multi_label without num_labels: taken from the first batch
        self._label_weights = None if label_weights is None else np.asarray(label_weights, np.float64).reshape(-1)
        if self._label_weights is not None and np.any(self._label_weights < 0):
            raise ValueError(f"AUC: label_weights must be >= 0, got {label_weights!r}")
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self.multi_label, self.num_labels, self.label_weights = multi_label, num_labels, label_weights
        self.from_logits = bool(from_logits)
        if thresholds is not None:
            inner = np.sort(counts.check_thresholds("AUC", thresholds))
            self.num_thresholds = len(inner) + 2
        else:
            if not isinstance(num_thresholds, int) or num_thresholds < 2:
                raise ValueError(f"AUC: num_thresholds must be an int > 1, got {num_thresholds!r}")
            self.num_thresholds = num_thresholds
            inner = np.arange(1, num_thresholds - 1) / (num_thresholds - 1.0)
        self.thresholds = None if thresholds is None else [float(t) for t in inner]
        self._thresholds = np.concatenate([[0.0 - EPSILON], inner, [1.0 + EPSILON]])
        super().__init__(name, dtype)

    def reset_state(self):
        if self.multi_label and self._labels is None:
            self.true_positives = self.false_positives = self.true_negatives = self.false_negatives = None
            return
        zeros = np.zeros((len(self._thresholds),) + ((self._labels,) if self.multi_label else ()))
        self.true_positives, self.false_positives = zeros.copy(), zeros.copy()
        self.true_negatives, self.false_negatives = zeros.copy(), zeros.copy()

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = None
        if self.multi_label:
            if self._labels is None:
                self._labels = int(np.shape(counts.host(y_pred))[-1])
                self.reset_state()
            labels = self._labels
        if self._label_weights is not None and not self.multi_label:
            y_pred_shape = np.shape(counts.host(y_pred))
            if y_pred_shape[-1:] != self._label_weights.shape:
                raise ValueError(f"{self.name}: label_weights has {self._label_weights.size} entries but y_pred "
                                 f"has shape {y_pred_shape}")
            base = np.ones(y_pred_shape) if sample_weight is None else counts.host(sample_weight)
            base = np.asarray(base, np.float64)
            sample_weight = base.reshape(base.shape + (1,) * (len(y_pred_shape) - base.ndim)) * self._label_weights
        yt, yp, w = counts.prepare(self.name, y_true, y_pred, sample_weight, labels=labels)
        if self.from_logits:
            yp = 1.0 / (1.0 + np.exp(-yp))
        tp, fp, tn, fn = counts.confusion(yt, yp, w, self._thresholds)
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _interpolated_pr(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = counts.divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, counts.divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return np.sum(counts.divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                                           np.maximum(tp[1:] + fn[1:], 0)), axis=0)

    def _average(self, by_label):
        """One area, or the labels' areas averaged as Keras does."""
        if not self.multi_label:
            return MetricResult(float(by_label))
        if self._label_weights is None:
            return MetricResult(float(np.mean(by_label)))
        return MetricResult(float(counts.divide_no_nan(np.sum(by_label * self._label_weights),
                                                       np.sum(self._label_weights))))

    def result(self):
        if self.true_positives is None:
            return MetricResult(0.0)  # multi_label, nothing seen yet
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._average(self._interpolated_pr())
        recall = counts.divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = counts.divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, counts.divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._average(np.sum((x[:-1] - x[1:]) * heights, axis=0))
