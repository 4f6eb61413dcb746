"""Synchronised batch normalisation as one differentiable op (used by
layers.SyncBatchNormalization).

Forward: the per-channel sum and then the sum of squared deviations over every rank's batch
(two allreduces, accumulated in float64 as the batch-norm kernels do: a float32 sum loses the
variance when the mean is large against the spread), y = (x - mean) / sqrt(var + eps) * gamma
+ beta. Backward: each rank's loss is already weighted by its share of the global batch, so
the total loss is the sum of the ranks' losses and

    dx = gamma/sqrt(var + eps) * (g - S(g)/n - xhat * S(g * xhat)/n)

with S the sum over every rank's batch (two more allreduces, one message); dgamma and dbeta are
this rank's sums, added over the ranks by the gradient buckets.
"""

from ..autograd.function import Function
from ..functional import array_module


class SyncBatchNorm(Function):
    def forward(self, x, gamma, beta, strategy=None, count=None, epsilon=1e-3, name="batch norm",
                on_statistics=None):
        xp = array_module(x)
        axes = tuple(range(x.ndim - 1))  # features on the last axis
        self.strategy, self.count, self.name = strategy, float(count), name
        total = strategy.allreduce_sum(x.sum(axis=axes, dtype=xp.float64), f"{name} mean")
        mean = total / self.count
        centred = x.astype(xp.float64) - mean
        var = strategy.allreduce_sum((centred * centred).sum(axis=axes), f"{name} variance") / self.count
        inv_std = 1.0 / xp.sqrt(var + epsilon)
        self.xhat = (centred * inv_std).astype(x.dtype)
        self.inv_std, self.gamma = inv_std.astype(x.dtype), gamma
        on_statistics(mean.astype(x.dtype), var.astype(x.dtype))  # the moving statistics' update
        return self.xhat * gamma + beta

    def backward(self, g):
        xp = array_module(g)
        axes = tuple(range(g.ndim - 1))
        dgamma = (g * self.xhat).sum(axis=axes, dtype=xp.float64)
        dbeta = g.sum(axis=axes, dtype=xp.float64)
        sums = self.strategy.allreduce_sum(xp.stack([dbeta, dgamma]), f"{self.name} backward")
        mean_g, mean_gx = (sums / self.count).astype(g.dtype)
        dx = (self.inv_std * self.gamma) * (g - mean_g - self.xhat * mean_gx)
        return dx, dgamma.astype(g.dtype), dbeta.astype(g.dtype)


def sync_batch_norm(x, gamma, beta, strategy, count, epsilon, name, on_statistics):
    """y for x of features on the last axis; gamma/beta Tensors or constant arrays;
    on_statistics(batch_mean, batch_variance) is called once with the global statistics."""
    return SyncBatchNorm.apply(x, gamma, beta, strategy=strategy, count=count, epsilon=epsilon,
                               name=name, on_statistics=on_statistics)
