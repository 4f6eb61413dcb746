"""Training scenarios run under `mpiexec -n 2` by tests/test_distribute_mpi.py, and in one
process by the same tests for the reference: `python tests/distribute_worker.py SCENARIO OUT`.

Each scenario trains a small model from fixed seeds; rank 0 (or the single process) writes
its weights to OUT/weights.npz. With a strategy, batch_size is the global batch.
"""
import os
import sys
import time

import numpy as np

import fastconv
from fastconv import layers
from fastconv.models import zoo

GLOBAL_BATCH = 16


def data(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + shape).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, y


def build(name):
    if name == "lenet5":
        return zoo.lenet5(), (28, 28, 1)
    # ResNet-20 at 8x8 (a few steps on 2 cores); "resnet20_sync" with SyncBatchNormalization.
    if name == "resnet20_sync":
        original = layers.BatchNormalization
        layers.BatchNormalization = layers.SyncBatchNormalization
        try:
            return zoo.resnet20(input_shape=(8, 8, 3)), (8, 8, 3)
        finally:
            layers.BatchNormalization = original
    return zoo.resnet20(input_shape=(8, 8, 3)), (8, 8, 3)


def train(name, out, strategy=None, n=48, epochs=1, callbacks=None):
    """Train `name` on n samples (3 global steps of 16 per epoch); returns the History."""
    fastconv.set_seed(7)
    x, y = data(n, build_shape(name), 10, seed=3)
    with strategy.scope() if strategy is not None else _nothing():
        model, _ = build(name)
        model.compile(optimizer=fastconv.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if strategy is not None and strategy.rank != 0:
        _perturb(model)  # the broadcast of rank 0's weights must undo this
    hist = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
    if strategy is None or strategy.is_chief:
        np.savez(os.path.join(out, "weights.npz"), *[np.asarray(w) for w in model.get_weights()])
        np.savez(os.path.join(out, "history.npz"), **{k: np.asarray(v) for k, v in hist.history.items()})
    return hist


def build_shape(name):
    return (28, 28, 1) if name == "lenet5" else (8, 8, 3)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _perturb(model):
    for v in model.trainable_weights:
        v.assign(v.numpy() + 1.0)


def evaluation(out, strategy=None):
    """fit with validation data, then evaluate (with sample weights) and predict, on 37 samples
    (a partial last batch); writes OUT/evaluation.npz from rank 0 (or the single process)."""
    fastconv.set_seed(7)
    x, y = data(48, (28, 28, 1), 10, seed=3)
    xv, yv = data(37, (28, 28, 1), 10, seed=5)
    weights = np.random.default_rng(6).uniform(0.0, 2.0, 37).astype(np.float32)
    with strategy.scope() if strategy is not None else _nothing():
        model = zoo.lenet5()
        model.compile(optimizer=fastconv.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy", fastconv.metrics.SparseTopKCategoricalAccuracy(k=3)])
    hist = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0, validation_data=(xv, yv),
                     validation_batch_size=8)
    logs = model.evaluate(xv, yv, sample_weight=weights, batch_size=8, verbose=0, return_dict=True)
    predicted = model.predict(xv, batch_size=8, verbose=0)
    few = model.predict(xv[:1], verbose=0)  # fewer samples than ranks: whole on every rank
    if strategy is None or strategy.is_chief:
        np.savez(os.path.join(out, "evaluation.npz"), predicted=predicted, few=few,
                 **{"eval_" + k: v for k, v in logs.items()},
                 **{k: np.asarray(v) for k, v in hist.history.items()})
    if strategy is not None:  # every rank holds the whole prediction
        np.save(os.path.join(out, f"predicted{strategy.rank}.npy"), predicted)


class StopOnOneRank(fastconv.callbacks.Callback):
    """Stops training on rank 1 only, from rank-local state (as EarlyStopping on local logs)."""

    def __init__(self, rank, at_batch=None, at_epoch=None):
        super().__init__()
        self.rank, self.at_batch, self.at_epoch, self.batches = rank, at_batch, at_epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.rank == 1 and batch == self.at_batch:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.rank == 1 and epoch == self.at_epoch:
            self.model.stop_training = True


def stop(out):
    from fastconv.distribute import MultiWorkerMirroredStrategy
    strategy = MultiWorkerMirroredStrategy(timeout=20.0)
    counts = []
    for kw in ({"at_batch": 1}, {"at_epoch": 0}):
        cb = StopOnOneRank(strategy.rank, **kw)
        hist = train("lenet5", out, strategy, epochs=3, callbacks=[cb])
        counts += [cb.batches, len(hist.history["loss"])]
    np.save(os.path.join(out, f"stop{strategy.rank}.npy"), np.array(counts))


def main(scenario, out):
    from fastconv.distribute import MultiWorkerMirroredStrategy
    if scenario in ("lenet5", "resnet20_sync", "resnet20_local"):
        train(scenario.replace("_local", ""), out, MultiWorkerMirroredStrategy(bucket_mb=0.05))  # several buckets
    elif scenario == "shards":
        strategy = MultiWorkerMirroredStrategy()
        from fastconv.training.data import make_iterator
        fastconv.set_seed(11)
        x = np.arange(37, dtype=np.float32)[:, None]
        it = strategy.shard(make_iterator(x, x, batch_size=8, shuffle=True), x)
        from fastconv import random as fr
        fr.generator("shuffle")  # made equal on all ranks as fit does
        seen = [np.asarray(xb[:, 0]) for xb, _, _ in it]
        counts = strategy.communicator.allreduce_sum(np.array([it.samples], np.int64))
        np.save(os.path.join(out, f"shard{strategy.rank}.npy"), np.concatenate(seen))
        if strategy.is_chief:
            np.save(os.path.join(out, "count.npy"), counts)
    elif scenario == "callbacks":
        strategy = MultiWorkerMirroredStrategy()
        folder = os.path.join(out, f"rank{strategy.rank}")
        os.makedirs(folder)
        cbs = [fastconv.callbacks.CSVLogger(os.path.join(folder, "log.csv")),
               fastconv.callbacks.ModelCheckpoint(os.path.join(folder, "w.weights.npz"), monitor="loss"),
               fastconv.callbacks.EarlyStopping(monitor="loss", patience=5)]
        train("lenet5", out, strategy, callbacks=cbs, epochs=2)
    elif scenario == "evaluation":
        evaluation(out, MultiWorkerMirroredStrategy())
    elif scenario == "stop":
        stop(out)
    elif scenario in ("raise", "hang", "die"):
        strategy = MultiWorkerMirroredStrategy(timeout=5.0)
        if strategy.rank == 1:
            if scenario == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            if scenario == "die":
                os._exit(3)  # no exception, no MPI_Finalize: as a killed process
            time.sleep(120)  # never joins the weight broadcast: rank 0 must time out
        train("lenet5", out, strategy)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
