"""SyncBatchNormalization: BatchNormalization whose training-time batch statistics are those of
the global batch, summed over every rank of the distribution strategy it was made under
(fastconv.distribute; Keras's layers.BatchNormalization(synchronized=True) /
tf.keras.layers.experimental.SyncBatchNormalization).

At inference it is exactly BatchNormalization. In training mode it computes mean = sum_r sum(x_r) / n and the biased variance
sum_r sum((x_r - mean)^2) / n (two allreduces, float64 sums; n the global count; with no strategy
or one replica the same op with nothing to sum, which agrees with BatchNormalization's kernel
to float32 rounding), normalises with them, and
updates the moving statistics with them (Keras's rule), so all replicas keep equal moving
statistics and the step equals one process on the global batch. The backward pass reduces
its two sums the same way (distribute/collective_ops.py). Plain BatchNormalization under a
strategy normalises with each rank's local batch only, as Keras does: the update then differs
from the single-process one (the replicas' moving statistics differ too; rank 0's are saved).
"""
import numpy as np

from ..autograd import ops
from ..functional import array_module
from .batch_normalization import BatchNormalization


class _OneReplica:
    num_replicas_in_sync = 1

    @staticmethod
    def allreduce_sum(array, what=None):
        return array


_ONE_REPLICA = _OneReplica()


class SyncBatchNormalization(BatchNormalization):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from ..distribute.context import current_strategy
        self._strategy = current_strategy()

    def _normalize(self, x, training, _activation):
        if not training:
            return super()._normalize(x, training, _activation)
        # One replica runs the same op with nothing to sum over, so that a single process and N
        # ranks differ only in the order of their float sums.
        strategy = self._strategy if self._strategy is not None else _ONE_REPLICA
        from ..distribute.collective_ops import sync_batch_norm
        # The global count: this step's global batch times the positions per sample.
        counts = getattr(strategy, "_step_counts", None)
        global_batch = counts[1] if counts else x.shape[0] * strategy.num_replicas_in_sync
        count = global_batch * int(np.prod(x.shape[1:-1]))
        xp = array_module(x.data)
        c = self.moving_mean.shape[0]
        gamma = self.gamma if self.gamma is not None else xp.ones(c, x.dtype)
        beta = self.beta if self.beta is not None else xp.zeros(c, x.dtype)
        y = sync_batch_norm(x, gamma, beta, strategy, count, self.epsilon, self.name, self._update_moving)
        return ops.relu(y) if _activation == "relu" else y

    def _update_moving(self, batch_mean, batch_variance):
        m = self.momentum  # Keras: moving = moving * momentum + batch * (1 - momentum)
        self.moving_mean.assign(self.moving_mean.data * m + batch_mean * (1 - m))
        self.moving_variance.assign(self.moving_variance.data * m + batch_variance * (1 - m))
