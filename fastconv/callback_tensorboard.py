"""TensorBoard: loss and metrics as scalar summaries that TensorBoard reads.

As Keras does, training values go to `log_dir/train`, validation values (the `val_` keys,
without the prefix) to `log_dir/validation`, tagged "epoch_<name>" at step = epoch; with
update_freq="batch" or an int N, every N-th batch's running values are also logged as
"batch_<name>" at the global batch count.

The event-file format (TFRecord framing of Event protocol buffers) comes from tensorboardX,
an optional extra: ``pip install "fastconv[tensorboard]"``. Each file is kept in memory and
rewritten whole through atomic_write at every epoch end (scalars are a few bytes per epoch),
so an interrupted run never leaves a truncated record behind.
"""
import os
import socket
import struct
import time
import warnings

from .callbacks import Callback
from .saving.atomic import atomic_write


def _tensorboardx():
    try:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import masked_crc32c
        from tensorboardX.summary import scalar
    except ImportError:
        raise ImportError('the TensorBoard callback needs tensorboardX: pip install "fastconv[tensorboard]"') from None
    return Event, masked_crc32c, scalar


class _EventFile:
    """One events file: records accumulate in memory; `flush` rewrites the file atomically."""

    def __init__(self, folder, Event, masked_crc32c, scalar):
        self._Event, self._crc, self._scalar = Event, masked_crc32c, scalar
        # TensorBoard finds files by the "tfevents" in their name.
        self.path = os.path.join(folder, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
                                         f".{os.getpid()}.fastconv")
        self._records = []
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _add(self, event):
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._records.append(header + struct.pack("<I", self._crc(header)) + data
                             + struct.pack("<I", self._crc(data)))

    def scalar(self, tag, value, step):
        self._add(self._Event(wall_time=time.time(), step=int(step), summary=self._scalar(tag, float(value))))

    def flush(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with atomic_write(self.path) as f:
            f.write(b"".join(self._records))


class TensorBoard(Callback):
    chief_only = True
    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0,
                 embeddings_freq=0, embeddings_metadata=None):
        super().__init__()
        self._tb = _tensorboardx()  # fail at construction, where the script names the callback
        if update_freq not in ("epoch", "batch") and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"update_freq must be 'epoch', 'batch' or a positive int, got {update_freq!r}")
        if histogram_freq or write_images or embeddings_freq or profile_batch:
            # Only scalars are written; asking explicitly for more deserves a word.
            warnings.warn("TensorBoard: only scalar summaries (loss and metrics) are written; "
                          "histograms, images, embeddings and profiling are not", stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers, self._batches = {}, 0

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = _EventFile(os.path.join(self.log_dir, name), *self._tb)
        return self._writers[name]

    def on_train_begin(self, logs=None):
        self._writers, self._batches = {}, 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            for k, v in (logs or {}).items():
                self._writer("train").scalar("batch_" + k, v, self._batches)

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            if k.startswith("val_"):
                self._writer("validation").scalar("epoch_" + k[4:], v, epoch)
            else:
                self._writer("train").scalar("epoch_" + k, v, epoch)
        for w in self._writers.values():
            w.flush()
