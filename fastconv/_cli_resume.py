"""The state ``fastconv train`` saves after every epoch so that ``--resume`` can continue a run.

It is data only, so resuming never runs code found in the run folder: one file, ``resume.npz``,
a zip archive that ``np.load`` reads with ``allow_pickle=False``, holding

- ``weights/<path>``: every weight of the model (non-trainable ones included), keyed by the
  same paths as weight files;
- ``optimizer/<path>/<slot>`` and ``optimizer/iterations``: the optimizer's slot arrays and its
  step counter (``Optimizer.state_arrays``);
- ``state.json``: the epoch, history, best monitored value, epoch times, the arguments of the
  run, the random streams' bit-generator states and the thread count.

The archive is written and read by fastconv/saving/training_state.py (shared with the
BackupAndRestore callback). ``--resume`` rebuilds the model from the
arguments and loads this state into it; every array is checked before anything is assigned.
"""
import json
import os
import zipfile

import numpy as np

from .saving.training_state import load_training_state, read_training_state, save_training_state

FORMAT = "fastconv-resume/1"
STATE_FILE = "resume.npz"
OLD_STATE_FILE = "resume.pkl"  # pickled by fastconv <= 0.1; never read (unpickling runs code)

# Arguments that may change when resuming: more epochs extend the run; verbosity only prints.
# Every other argument must match, or the resumed run would silently differ from its start.
MAY_CHANGE_ON_RESUME = ("epochs", "verbose")
RUN_ARGUMENTS = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "backend", "seed",
                 "limit", "val_split", "image_size", "color_mode", "augment", "verbose",
                 "weights", "freeze_base", "unfreeze_after")


def run_arguments(args, dataset):
    """The arguments that define a run, as JSON data (`dataset`: the resolved data set name)."""
    values = {k: getattr(args, k, None) for k in RUN_ARGUMENTS}  # None: an argument this command lacks
    values["dataset"] = dataset
    return json.loads(json.dumps(values))  # tuples become lists, as they come back from the file


def check_same_run(saved, current, epochs_done):
    """ValueError naming every argument that differs from the interrupted run's."""
    differ = [f"--{k.replace('_', '-')} {_show(saved.get(k))} (now {_show(current[k])})"
              for k in current if k not in MAY_CHANGE_ON_RESUME and saved.get(k) != current[k]]
    if differ:
        raise ValueError("--resume continues a run with its own arguments, and this one was started "
                         "with " + ", ".join(differ) + "; use the same arguments (only --epochs and "
                         "--verbose may change), or a new --out")
    if current["epochs"] < epochs_done:
        raise ValueError(f"--epochs {current['epochs']} is fewer than the {epochs_done} "
                         "epochs this run has already finished")


def _show(v):
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def save_state(path, model, state):
    """Write `state` (epoch, history, best, epoch_seconds, arguments, random, threads) and the
    model's and its optimizer's arrays to `path`, atomically."""
    doc = dict(state, format=FORMAT, best=None if state["best"] == -np.inf else state["best"])
    save_training_state(path, model, doc)


def read_state(folder):
    """(state dict, {key: array}) from `folder`'s resume file, or None when there is none.
    A file that is corrupt, incomplete or of another format is a one-line ValueError."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        if os.path.exists(os.path.join(folder, OLD_STATE_FILE)):
            raise ValueError(f"{os.path.join(folder, OLD_STATE_FILE)} is an old-format (pickled) resume "
                             "state, which fastconv no longer reads because loading it could run code; "
                             "start the run again without --resume, or in a new --out")
        return None
    try:
        state, arrays = read_training_state(path)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} state")
        for key, kind in (("epoch", int), ("history", dict), ("epoch_seconds", list),
                          ("arguments", dict), ("random", dict)):
            if not isinstance(state.get(key), kind):
                raise ValueError(f"{key!r} missing or not a {kind.__name__}")
        epoch = state["epoch"]
        if epoch < 0 or len(state["epoch_seconds"]) != epoch or any(
                not isinstance(v, list) or len(v) != epoch or not all(isinstance(x, (int, float)) for x in v)
                for v in state["history"].values()):
            raise ValueError(f"history does not hold {epoch} epochs of numbers")
        state["best"] = -np.inf if state.get("best") is None else float(state["best"])
    except (OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot resume from {path}: corrupt or incomplete state ({e}); start "
                         "the run again without --resume, or in a new --out") from None
    return state, arrays


# Put the saved weights and optimizer state into a freshly built model, checking every array first.
load_into = load_training_state
