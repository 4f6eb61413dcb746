"""fastconv.distribute in one process: the bucket plan and the reducer, the autograd hook that
starts reductions during backward, sharding, log reduction, chief-only callbacks,
SyncBatchNormalization against BatchNormalization, and the CLI's rank-count check.

A FakeCommunicator stands in for MPI: `ranks` identical replicas, so a sum over ranks is
`ranks` times the local value. The real collectives run in test_distribute_mpi.py."""
import sys

import numpy as np
import pytest

import fastconv
from fastconv import layers
from fastconv.autograd import Tensor, Variable, on_leaf_grad
from fastconv.distribute.buckets import GradientReducer, plan_buckets
from fastconv.distribute.sharding import ShardedIterator
from fastconv.distribute.strategy import MultiWorkerMirroredStrategy
from fastconv.training.data import make_iterator
from fastconv_subprocess import run_python


class FakeCommunicator:
    def __init__(self, ranks=2, rank=0):
        self.size, self.rank, self.timeout = ranks, rank, 1.0
        self.events = []  # ("start", bucket size) / ("wait", n) in call order

    def iallreduce_sum(self, buf):
        self.events.append(("start", int(buf.size)))
        buf *= self.size
        return object()

    def wait(self, requests, what):
        self.events.append(("wait", len(list(requests))))

    def progress(self, requests):
        pass

    def allreduce_sum(self, array, what=""):
        return np.array(array, copy=True) * self.size

    def broadcast(self, buf, root=0, what=""):
        return buf  # every rank already holds the same

    def broadcast_bytes(self, data, root=0, what=""):
        return data


def fake_strategy(ranks=2, rank=0, bucket_bytes=2 ** 20):
    s = object.__new__(MultiWorkerMirroredStrategy)  # no MPI: the machinery over a fake
    s.communicator, s.device_communicator = FakeCommunicator(ranks, rank), None
    s.bucket_bytes, s._plans, s._step_counts = bucket_bytes, {}, None
    return s


def test_import_fastconv_needs_no_mpi():
    code = ("import sys, fastconv; fastconv.distribute; from fastconv import layers; "
            "layers.SyncBatchNormalization(); print('mpi4py' in sys.modules)")
    out = run_python(["-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"fastconv\[mpi\]"):
        MultiWorkerMirroredStrategy()


@pytest.mark.parametrize("bad", [dict(bucket_mb=0), dict(bucket_mb=True), dict(communication="gloo")])
def test_bad_arguments_name_themselves(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MultiWorkerMirroredStrategy(**bad)


def test_bucket_plan_reverse_order_capped_and_complete():
    variables = [Variable(np.zeros(n, np.float32)) for n in (10, 300, 20, 30, 5)]
    buckets = plan_buckets(variables, bucket_bytes=200)  # 50 floats
    assert buckets == [[4, 3], [2], [1], [0]]  # 300 floats alone: larger than the cap
    assert sorted(i for b in buckets for i in b) == list(range(5))
    assert plan_buckets(variables, 2 ** 20) == [[4, 3, 2, 1, 0]]


def test_leaf_hook_sees_each_final_gradient_once():
    a, b = Variable(np.array([1.0, 2.0], np.float32)), Variable(np.array([3.0], np.float32))
    seen = []
    with on_leaf_grad(lambda t: seen.append((t, t.grad.copy()))):
        ((a * a).sum() + (a * b).sum() * 2.0).backward()  # a is used twice
    assert [t for t, _ in seen].count(a) == 1 and [t for t, _ in seen].count(b) == 1
    final = {id(t): g for t, g in seen}
    np.testing.assert_allclose(final[id(a)], 2 * a.numpy() + 2 * b.numpy(), rtol=1e-6)
    np.testing.assert_allclose(final[id(b)], [2 * 3.0], rtol=1e-6)


def _small_model():
    fastconv.set_seed(5)
    model = fastconv.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
    model.compile(optimizer=fastconv.optimizers.SGD(0.1), loss="mse")
    return model


def test_buckets_start_during_backward_in_order_and_give_the_global_gradient():
    model = _small_model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    variables = model.trainable_weights
    loss = model.compute_loss(x, y, model(x, training=True))
    loss.backward()
    expected = [v.grad.copy() for v in variables]
    strategy = fake_strategy(ranks=2, bucket_bytes=64)  # 16 floats: several buckets
    strategy._step_counts = (4, 8)  # this rank holds half of the global batch
    for v in variables:
        v.zero_grad()
    comm = strategy.communicator
    ready_at_start = []  # how many gradients were final when each bucket started
    start = comm.iallreduce_sum
    comm.iallreduce_sum = lambda buf: (ready_at_start.append(sum(v.grad is not None for v in variables)),
                                       start(buf))[1]
    strategy.backward(model.compute_loss(x, y, model(x, training=True)), variables)
    buckets = plan_buckets(variables, 64)
    assert [e for e in comm.events if e[0] == "start"] == [
        ("start", sum(int(np.prod(variables[i].shape)) for i in b)) for b in buckets]
    assert comm.events[-1] == ("wait", len(buckets))
    assert len(buckets) > 1 and ready_at_start[0] < len(variables), "no bucket started during backward"
    # Two identical ranks, each weighting its loss by 4/8: the sum is the local gradient.
    for v, g in zip(variables, expected):
        np.testing.assert_allclose(v.grad, g, rtol=1e-5, atol=1e-7)


def test_reducer_keeps_none_for_a_variable_without_gradient():
    used, unused = Variable(np.ones(3, np.float32)), Variable(np.ones(2, np.float32))
    reducer = GradientReducer(FakeCommunicator(2), [used, unused], plan_buckets([used, unused], 1 << 20))
    with on_leaf_grad(reducer.on_leaf):
        (used * 2.0).sum().backward()
    reducer.finish()
    np.testing.assert_allclose(used.grad, [4.0, 4.0, 4.0])
    assert unused.grad is None


@pytest.mark.parametrize("ranks", [2, 3])
def test_shards_are_disjoint_near_equal_and_cover_each_global_batch(ranks):
    x = np.arange(23, dtype=np.float32)[:, None]  # global batches 8, 8, 7
    parts, steps = [], []
    for rank in range(ranks):
        strategy = fake_strategy(ranks, rank)
        fastconv.set_seed(3)  # the same "shuffle" stream on every rank, as fit arranges
        it = ShardedIterator(make_iterator(x, x, batch_size=8, shuffle=True), strategy, arrays=True)
        batches = [xb[:, 0].astype(int) for xb, _, _ in it]
        parts.append(batches)
        steps.append(len(batches))
        assert it.samples == sum(len(b) for b in batches)
    fastconv.set_seed(3)
    global_batches = [xb[:, 0].astype(int) for xb, _, _ in make_iterator(x, x, batch_size=8, shuffle=True)]
    assert steps == [3] * ranks
    for step, want in enumerate(global_batches):
        got = [parts[r][step] for r in range(ranks)]
        assert np.array_equal(np.concatenate(got), want)  # disjoint, in order, complete
        assert max(map(len, got)) - min(map(len, got)) <= 1


def test_a_last_batch_smaller_than_the_rank_count_is_dropped_everywhere():
    x = np.arange(9, dtype=np.float32)[:, None]  # global batches 8 and 1
    for rank in range(2):
        it = ShardedIterator(make_iterator(x, x, batch_size=8), fake_strategy(2, rank), arrays=True)
        assert [len(xb) for xb, _, _ in it] == [4]


@pytest.mark.parametrize("ranks", [2, 3])
def test_evaluation_shards_are_contiguous_near_equal_and_in_order(ranks):
    from fastconv.distribute.evaluation import shard_arrays
    x = np.arange(23, dtype=np.float32)[:, None]
    w = np.arange(23, dtype=np.float32) * 10
    parts = [shard_arrays(fake_strategy(ranks, r), (x, x, w), 8, None) for r in range(ranks)]
    assert [p[1] for p in parts] == [-(-8 // ranks)] * ranks  # the global batch split
    xs = [p[0][0][:, 0] for p in parts]
    assert np.array_equal(np.concatenate(xs), x[:, 0])  # contiguous, in rank order, complete
    assert max(map(len, xs)) - min(map(len, xs)) <= 1
    assert all(np.array_equal(p[0][2], p[0][0][:, 0] * 10) and p[0][1] is not None for p in parts)


def test_evaluation_is_not_sharded_below_one_sample_a_rank_or_with_steps():
    from fastconv.distribute.evaluation import shard_arrays
    x = np.zeros((3, 2), np.float32)
    assert shard_arrays(fake_strategy(4, 1), (x, None, None), 8, None) is None
    assert shard_arrays(fake_strategy(2, 1), (x, None, None), 8, 1) is None
    assert shard_arrays(fake_strategy(2, 1), (x, None, None), None, None)[1] == 16  # Keras's 32, split


def test_evaluation_metric_states_are_summed_then_read():
    from fastconv.distribute.evaluation import reduce_metrics
    strategy = fake_strategy(ranks=2)  # both ranks identical: sums double, means unchanged
    acc = fastconv.metrics.BinaryAccuracy()
    acc.update_state(np.array([1, 0, 1, 1.0]), np.array([0.9, 0.2, 0.3, 0.8]))
    precision = fastconv.metrics.Precision()
    precision.update_state(np.array([1, 0, 1, 0.0]), np.array([0.9, 0.7, 0.3, 0.8]))
    logs = reduce_metrics(strategy, [acc, precision], {"binary_accuracy": 0.75, "precision": 1 / 3,
                                                       "custom": 2.0}, samples=4)
    assert acc.total == 6.0 and acc.count == 8.0
    assert np.array_equal(precision.true_positives, [2.0]) and np.array_equal(precision.false_positives, [4.0])
    assert logs == pytest.approx({"binary_accuracy": 0.75, "precision": 1 / 3, "custom": 2.0})


def test_logs_are_averaged_weighted_by_samples():
    strategy = fake_strategy(ranks=2)
    # Fake: both ranks report the same, so the weighted mean is the value itself.
    logs = strategy.reduce_logs({"loss": 0.5, "accuracy": 0.25, "note": "text"}, samples=10)
    assert logs == {"loss": 0.5, "accuracy": 0.25, "note": "text"}


def test_only_the_chief_keeps_the_callbacks_that_write(tmp_path):
    cbs = fastconv.callbacks
    given = [cbs.ModelCheckpoint(str(tmp_path / "w.npz")), cbs.CSVLogger(str(tmp_path / "l.csv")),
             cbs.EarlyStopping(), cbs.BackupAndRestore(str(tmp_path / "b"))]
    assert fake_strategy(2, 0).chief_callbacks(given) is given
    other = fake_strategy(2, 1).chief_callbacks(given)
    assert [type(c).__name__ for c in other] == ["EarlyStopping", "BackupAndRestore"]
    backup = other[1]
    assert backup is not given[3] and backup.on_epoch_end(0, {}) is None
    assert "on_epoch_end" in vars(backup) and "on_epoch_end" not in vars(given[3])


def _bn_pair(x, g, strategy=None):
    out = []
    for cls in (layers.BatchNormalization, layers.SyncBatchNormalization):
        bn = cls(epsilon=1e-3, momentum=0.9)
        bn.build((None,) + x.shape[1:])
        bn.gamma.assign(np.linspace(0.5, 2.0, x.shape[-1]).astype(np.float32))
        if strategy is not None and cls is layers.SyncBatchNormalization:
            bn._strategy = strategy
        t = Tensor(x, requires_grad=True)
        y = bn(t, training=True)
        (y * Tensor(g)).sum().backward()
        out.append([y.numpy(), t.grad, bn.gamma.grad, bn.beta.grad, bn.moving_mean.numpy(),
                    bn.moving_variance.numpy()])
    return out


def test_sync_batch_norm_alone_equals_batch_norm():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(6, 3, 3, 4)) * 2 + 1).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    plain, sync = _bn_pair(x, g)
    for a, b in zip(plain, sync):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_sync_batch_norm_uses_the_global_statistics_and_gradient():
    # Two ranks holding the same 6 samples: global statistics are those of the 12 samples,
    # which equal the local ones, and each rank's gradient is half the 12-sample gradient.
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(6, 2, 2, 3)) + 3).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    strategy = fake_strategy(ranks=2)
    strategy._step_counts = (6, 12)
    plain, sync = _bn_pair(x, g, strategy)
    for i, (a, b) in enumerate(zip(plain, sync)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"output {i}")
    # Distinct data on the ranks: compare with BatchNormalization on both halves at once.
    x2 = (rng.normal(size=(12, 2, 2, 3)) * 0.5 - 1).astype(np.float32)
    g2 = rng.normal(size=x2.shape).astype(np.float32)
    whole = _bn_pair(x2, g2)[0]

    class TwoHalves(FakeCommunicator):  # rank 0 holds x2[:6]; the sum adds rank 1's part
        def allreduce_sum(self, array, what=""):
            return other[what] + array
    comm = TwoHalves(2)
    strategy.communicator = comm
    other = {}
    # rank 1's contributions, computed from the whole-batch statistics
    x64 = x2.astype(np.float64)
    mean = x64.mean((0, 1, 2))
    other[f"{'sync_batch_normalization'}"] = None
    del other["sync_batch_normalization"]
    bn = layers.SyncBatchNormalization(epsilon=1e-3, momentum=0.9)
    bn.build((None, 2, 2, 3))
    bn.gamma.assign(np.linspace(0.5, 2.0, 3).astype(np.float32))
    bn._strategy = strategy
    inv = 1 / np.sqrt(x64.var((0, 1, 2)) + 1e-3)
    xhat = (x64 - mean) * inv
    other[f"{bn.name} mean"] = x64[6:].sum((0, 1, 2))
    other[f"{bn.name} variance"] = ((x64[6:] - mean) ** 2).sum((0, 1, 2))
    other[f"{bn.name} backward"] = np.stack([g2[6:].sum((0, 1, 2)), (g2[6:] * xhat[6:]).sum((0, 1, 2))])
    t = Tensor(x2[:6], requires_grad=True)
    y = bn(t, training=True)
    (y * Tensor(g2[:6])).sum().backward()
    np.testing.assert_allclose(y.numpy(), whole[0][:6], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t.grad, whole[1][:6], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), whole[4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), whole[5], rtol=1e-5, atol=1e-6)


def test_resume_refuses_another_rank_count():
    from fastconv._cli_train import _check_same_ranks
    _check_same_ranks({"ranks": 2}, 2)
    _check_same_ranks({}, 1)  # a state from before distributed runs: one process
    with pytest.raises(ValueError, match=r"trained on 2 process\(es\) and is continued on 4.*mpiexec -n 2"):
        _check_same_ranks({"ranks": 2}, 4)


def test_scaling_model_is_the_ring_allreduce_formula():
    from benchmarks.distribute_scale import BUCKET_BYTES, fit_local_link, ring_seconds
    # 100 MB over 4 ranks at 1 GB/s: 2*3/4 * 0.1 s = 0.15 s, plus 2*3 messages x 4 buckets x 20 us.
    assert ring_seconds(100_000_000, 4, 1e9) == pytest.approx(0.15 + 6 * 4 * 20e-6)
    assert -(-100_000_000 // BUCKET_BYTES) == 4
    rows = [{"bytes": b, "fastconv_s": b / 2e9 + 2 * 50e-6} for b in (1e3, 1e5, 1e7)]  # N=2: 2(N-1)/N = 1
    bw, lat = fit_local_link(rows)
    assert bw == pytest.approx(2e9, rel=1e-6) and lat == pytest.approx(50e-6, rel=1e-6)


def test_a_non_finite_loss_stops_every_rank_at_the_same_epoch_end():
    # A rank stopping mid-epoch on its own local loss would leave the others waiting in the
    # next step's allreduce; under a strategy fit checks the reduced epoch loss instead.
    strategy = fake_strategy(ranks=2)
    fastconv.set_seed(5)
    with strategy.scope():
        model = fastconv.Sequential([layers.Input((6,)), layers.Dense(3)])
        model.compile(optimizer=fastconv.optimizers.SGD(0.1), loss="mse")
    x = np.ones((48, 6), np.float32)
    x[20] = np.nan  # in rank 0's part of the second global batch of 16
    steps = []
    cb = fastconv.callbacks.LambdaCallback(on_batch_end=lambda batch, logs: steps.append(batch))
    with pytest.warns(RuntimeWarning, match="epoch 1, batch|epoch 1, its end"):
        history = model.fit(x, np.zeros((48, 3), np.float32), batch_size=16, epochs=3, verbose=0,
                            shuffle=False, callbacks=[cb])
    assert steps == [0, 1, 2] and len(history.history["loss"]) == 1
    assert np.isnan(history.history["loss"][0])


def test_iterable_batches_are_per_rank_and_their_global_count_is_summed():
    strategy = fake_strategy(ranks=2)  # the fake's ranks hold equal batches: the sum is 2x
    batches = [(np.zeros((5, 2), np.float32), np.zeros(5)), (np.zeros((3, 2), np.float32), np.zeros(3))]
    it = ShardedIterator(make_iterator(batches), strategy, arrays=False)
    counts = []
    for xb, _, _ in it:
        counts.append(strategy._step_counts)
        assert len(xb) == counts[-1][0]
    assert counts == [(5, 10), (3, 6)] and it.samples == 8
