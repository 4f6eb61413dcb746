"""BackupAndRestore: continue an interrupted `fit` where it stopped.

After every epoch the callback writes `backup_dir/backup.npz` (atomically, data only, see
fastconv/saving/training_state.py): the model's weights, the optimizer's slots and step
counter, the finished epoch count and the random streams' states. When `fit` starts with a
backup in `backup_dir` (a previous run was interrupted), it loads all of it and fit carries on
from the first unfinished epoch, so the rest of the run draws the same batches and dropout
masks as an uninterrupted one: on one backend and thread count the final weights are the
same bit for bit. A run that ends normally deletes the backup (delete_checkpoint=True).

The model must be built (its weights must exist) when fit starts, e.g. with an Input.
"""
import os

from . import random as _random
from .callbacks import Callback
from .saving.training_state import load_training_state, read_training_state, save_training_state

FORMAT = "fastconv-backup/1"
BACKUP_FILE = "backup.npz"


class BackupAndRestore(Callback):
    chief_only = ("on_epoch_end", "on_train_end")  # every rank restores; the chief writes
    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True, save_before_preemption=False):
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore needs a backup_dir")
        if save_freq != "epoch":
            # A mid-epoch backup would also need the position inside the epoch's batch order.
            raise ValueError(f"BackupAndRestore supports save_freq='epoch' only, got {save_freq!r}")
        if save_before_preemption:
            raise ValueError("BackupAndRestore(save_before_preemption=True) is not supported")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint

    @property
    def _path(self):
        return os.path.join(self.backup_dir, BACKUP_FILE)

    def on_train_begin(self, logs=None):
        if not os.path.isfile(self._path):
            return
        try:
            doc, arrays = read_training_state(self._path)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            epoch = doc["epoch"]
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"epoch {epoch!r}")
        except Exception as e:  # any unreadable backup: say which file, and how to start afresh
            raise ValueError(f"BackupAndRestore: cannot restore from {self._path}: corrupt or "
                             f"incomplete backup ({e}); delete it to start training afresh") from None
        load_training_state(self.model, arrays, self._path)
        _random.set_state(doc["random"])
        self.model._resume_initial_epoch = epoch  # read by fit (fastconv/training/loop.py)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        save_training_state(self._path, self.model,
                            {"format": FORMAT, "epoch": epoch + 1, "random": _random.get_state()})

    def on_train_end(self, logs=None):
        # Only reached when fit returns normally: an exception (the interruption this callback
        # guards against) skips on_train_end and keeps the backup.
        if self.delete_checkpoint and os.path.isfile(self._path):
            os.remove(self._path)
