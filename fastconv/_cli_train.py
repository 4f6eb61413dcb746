"""The ``fastconv train`` and ``fastconv evaluate`` commands (see :mod:`fastconv.__main__`).

Training runs one ``fit`` call per epoch, so that after every epoch the whole run state -- the
model's weights, the optimizer's slots and step counter, the random streams, the best validation
accuracy and the history -- can be written to ``resume.npz`` (data only: see
:mod:`fastconv._cli_resume`). ``--resume`` rebuilds the model from the same arguments, loads that
state and continues with the next epoch, giving the same weights as an uninterrupted run (on the
same backend and thread count). Ctrl-C during an epoch stops cleanly; the state of the last
finished epoch is already on disk.

Started by an MPI launcher with several processes (``mpiexec -n 4 fastconv train ...``,
``srun``), it trains data-parallel with fastconv.distribute.MultiWorkerMirroredStrategy
(``--batch-size`` is the global batch); only rank 0 prints and writes files, and ``--resume``
needs the same number of ranks as the run it continues.

Arguments are checked before anything is read or written: a bad one is a ValueError (one line
from the command, exit 2) and leaves no output folder behind.
"""
import contextlib
import io
import json
import math
import os
import sys
import time

from . import _cli_resume as resume
from .saving import atomic_write

DATASETS = ("fashion-mnist", "mnist", "digits")


# ----------------------------------------------------------------------------- data
def resolve_dataset(name):
    """The data set a --dataset value means (None: fashion-mnist when its files are found)."""
    from .datasets import fashion_mnist
    if name is not None:
        if name not in DATASETS and not os.path.isdir(name):
            raise ValueError(f"--dataset must be one of {', '.join(DATASETS)} or a directory, got {name!r}")
        return name
    if fashion_mnist.available():
        return "fashion-mnist"
    print("note: Fashion-MNIST files not found (apt-get install dataset-fashion-mnist, or "
          "set FASTCONV_DATA); using the embedded UCI digits set, upscaled to 28x28", file=sys.stderr)
    return "digits"


def load_dataset(name, seed=0, limit=None, image_size=(28, 28), color_mode="grayscale"):
    """((x, y), (x_test, y_test), description) with x float32 NHWC in [0, 1], y int64."""
    import numpy as np
    from .datasets import digits, fashion_mnist, mnist

    name = resolve_dataset(name)
    if name == "fashion-mnist":
        (x, y), (xt, yt) = fashion_mnist.load_data()
    elif name == "mnist":
        (x, y), (xt, yt) = mnist.load_data()
    elif name == "digits":
        (x, y), (xt, yt) = digits.load_data(upscale_to=28, seed=seed)
    elif os.path.isdir(name):
        from .data import image_dataset_from_directory
        tr, te = image_dataset_from_directory(name, image_size=tuple(image_size), color_mode=color_mode,
                                              validation_split=0.2, subset="both", seed=seed,
                                              batch_size=None)
        (x, y), (xt, yt) = tr.as_arrays(), te.as_arrays()
        print(f"directory {name}: classes {tr.class_names}", file=sys.stderr)
    if limit is not None:
        x, y, xt, yt = x[:limit], y[:limit], xt[:limit], yt[:limit]

    def prep(a):
        a = np.asarray(a, np.float32) / 255.0
        return np.ascontiguousarray(a[..., None] if a.ndim == 3 else a)
    return (prep(x), np.asarray(y, np.int64)), (prep(xt), np.asarray(yt, np.int64)), name


def split_validation(x, y, fraction, seed):
    """Seeded hold-out of `fraction` of (x, y): ((x_train, y_train), (x_val, y_val))."""
    import numpy as np
    if not 0 <= fraction < 1:
        raise ValueError(f"--val-split must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    val, tr = order[:n_val], order[n_val:]
    return (x[tr], y[tr]), (x[val], y[val])


# ----------------------------------------------------------------------------- model
def model_names():
    from .models import zoo
    return [n for n in zoo.__all__ if n[0].islower()]


def check_model_name(name):
    if name not in model_names():
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")


def build_model(name, input_shape, classes):
    """A zoo model (LeNet-5 in its modern variant), returning logits where the constructor allows."""
    import inspect
    from .models import zoo
    check_model_name(name)
    fn = getattr(zoo, name)
    params = inspect.signature(fn).parameters
    kwargs = {"input_shape": tuple(input_shape), "classes": classes, "variant": "modern",
              "classifier_activation": None}
    return fn(**{k: v for k, v in kwargs.items() if k in params})


# ----------------------------------------------------------------------------- pretrained
def application_for(name):
    """The fastconv.applications constructor a model name means (zoo or Keras spelling:
    resnet50, ResNet50, mobilenet_v2, MobileNetV2, ...); ValueError listing them otherwise."""
    from . import applications
    names = sorted(n for n in vars(applications) if n[:1].isupper() and callable(getattr(applications, n)))
    for n in names:
        if n.lower() == name.replace("_", "").lower():
            return getattr(applications, n)
    raise ValueError(f"--weights needs a model from fastconv.applications; {name!r} is not one of "
                     f"{', '.join(names)}")


def pretrained_preprocess(name):
    """The family's preprocess_input for images in [0, 1] (the CLI's scale)."""
    import importlib
    module = importlib.import_module(application_for(name).__module__)
    return lambda x: module.preprocess_input(x * 255.0)


def build_pretrained(name, input_shape, classes, weights):
    """(model, base layers): the application without its top (global average pooling), with
    `weights` (a file, "imagenet" or None), and a new Dense head giving logits."""
    from .engine import Model
    from .layers import Dense
    if input_shape[-1] != 3:
        raise ValueError(f"pretrained {name} needs RGB images (3 channels), got images of shape "
                         f"{tuple(input_shape)}: add --color-mode rgb")
    base = application_for(name)(include_top=False, weights=weights, input_shape=tuple(input_shape), pooling="avg")
    head = Dense(classes, name="predictions")
    model = Model(base.inputs, head(base.outputs[0]), name=f"{base.name}_finetuned")
    return model, [layer for layer in model.layers if layer is not head]


def set_base_trainable(base_layers, trainable):
    """Freeze or unfreeze the base. Unfreezing leaves BatchNormalization frozen (inference
    mode), as Keras's fine-tuning guide advises: batch statistics of a small data set would
    overwrite ImageNet's."""
    from .layers import BatchNormalization

    def leaves(layer):
        children = layer._sublayers()
        return [layer] if not children else [x for c in children for x in leaves(c)]

    for layer in base_layers:
        layer.trainable = trainable
        if trainable:
            for leaf in leaves(layer):
                if isinstance(leaf, BatchNormalization):
                    leaf.trainable = False


def make_loss(model):
    """Fused softmax cross-entropy on logits when the model ends without a softmax."""
    from .losses import SparseCategoricalCrossentropy
    last = (getattr(model, "layers", None) or [None])[-1]
    logits = getattr(last, "activation", None) in (None, "linear")
    return SparseCategoricalCrossentropy(from_logits=logits)


OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def make_optimizer(name, lr):
    from . import optimizers
    cls = getattr(optimizers, OPTIMIZERS.get(name.lower(), name), None)
    if cls is None:
        raise ValueError(f"unknown --optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return cls() if lr is None else cls(learning_rate=lr)


def check_train_args(args):
    """ValueError for any argument that cannot make a run; called before anything is written."""
    def positive(flag, value):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    positive("--epochs", args.epochs)
    positive("--batch-size", args.batch_size)
    positive("--limit", args.limit)
    for v in args.image_size:
        positive("--image-size", v)
    if not 0 <= args.val_split < 1:
        raise ValueError(f"--val-split must be in [0, 1), got {args.val_split}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr >= 0):
        raise ValueError(f"--lr must be a finite number >= 0, got {args.lr}")
    if getattr(args, "weights", None) is not None:
        application_for(args.model)
        if args.weights != "imagenet" and not os.path.isfile(args.weights):
            raise ValueError(f"--weights must be 'imagenet' or a weights file; {args.weights!r} is not a file")
    else:
        check_model_name(args.model)
        if getattr(args, "freeze_base", False) or getattr(args, "unfreeze_after", None) is not None:
            raise ValueError("--freeze-base and --unfreeze-after fine-tune a pretrained base: add --weights "
                             "<file or imagenet>")
    if getattr(args, "unfreeze_after", None) is not None:
        positive("--unfreeze-after", args.unfreeze_after)
        if not args.freeze_base:
            raise ValueError("--unfreeze-after N unfreezes a frozen base: add --freeze-base")
    if args.optimizer.lower() not in OPTIMIZERS and args.optimizer not in OPTIMIZERS.values():
        raise ValueError(f"unknown --optimizer {args.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")


# ----------------------------------------------------------------------------- train
def _history_files(out, history, epoch_seconds):
    with atomic_write(os.path.join(out, "history.json"), "w") as f:
        json.dump({"history": history, "epoch_seconds": epoch_seconds}, f, indent=1)
    keys = list(history)
    with atomic_write(os.path.join(out, "history.csv"), "w") as f:
        f.write(",".join(["epoch"] + keys) + "\n")
        for i in range(len(history[keys[0]]) if keys else 0):
            f.write(",".join([str(i + 1)] + [repr(float(history[k][i])) for k in keys]) + "\n")
    try:
        from . import viz
        viz.plot_history(history, os.path.join(out, "curves.png"))
    except ImportError:
        return False  # matplotlib is optional: cmd_train says so once
    return True


def _predict_classes(model, x, batch_size):
    import numpy as np
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    probs = probs.numpy() if hasattr(probs, "numpy") else np.asarray(probs)
    return np.argmax(probs, axis=-1)


def _pictures(model, x, y, pred, out):
    """Confusion matrix, first-layer filters and its feature maps, when matplotlib is installed
    (False when it is not)."""
    try:
        from . import viz
        viz.plot_confusion_matrix(y, pred, os.path.join(out, "confusion.png"))
        convs = [lay for lay in getattr(model, "layers", []) if getattr(lay, "kernel", None) is not None
                 and getattr(lay.kernel, "ndim", 0) == 4]
        if convs:
            viz.plot_filters(convs[0].kernel.numpy(), os.path.join(out, "filters.png"))
            viz.plot_feature_maps(viz.layer_output(model, convs[0], x[:6]), os.path.join(out, "feature_maps.png"))
    except ImportError:
        return False
    return True


PICTURES_SKIPPED = ("pictures skipped (curves, feature maps, filters, confusion matrix): matplotlib is "
                    "not installed; enable them with: pip install matplotlib Pillow "
                    "(fastconv's viz extra, pip install \".[viz]\" in its source tree)")


def _fit_one_epoch(model, x, y, epoch, epochs, fit_kw):
    # One fit() call per epoch (state is saved between them for --resume), so the epoch
    # header is printed here: fit() itself only knows about this one epoch.
    if fit_kw.get("verbose"):
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
    hist = model.fit(x, y, epochs=1, **fit_kw)
    return {k: float(v[-1]) for k, v in hist.history.items()}


def _augmenter(args, dataset):
    if not args.augment:
        return None
    from .data.augment import Augment
    return Augment(shift=2, rotation=10.0, zoom=0.1, horizontal_flip=dataset == "fashion-mnist")


def _check_out_folder(out):
    """ValueError unless `out` is a folder or can be made one (no file in the way)."""
    path = os.path.abspath(out)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ValueError(f"cannot use {out} as the output folder: {path} is a file")


class _Discard(io.TextIOBase):
    """Where the other ranks' prints go."""

    def write(self, text):
        return len(text)


def _launched_ranks():
    """How many processes the MPI launcher started (1 when not launched by one): MPICH/Hydra
    and Slurm's PMI set PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def _check_same_ranks(state, ranks):
    saved = state.get("ranks", 1)
    if saved != ranks:
        raise ValueError(f"--resume: this run was trained on {saved} process(es) and is continued on "
                         f"{ranks}; start it with the same count (mpiexec -n {saved}), or start a new run "
                         "in a new --out (the data shards and the batch split depend on the count)")


def _resume_state(args, out, dname):
    """The saved state to continue from (None for a new run), after checking that this command
    continues the same run."""
    import fastconv
    found = resume.read_state(out) if args.resume else None
    if found is None:
        if args.resume:
            print(f"note: no {os.path.join(out, resume.STATE_FILE)} to resume from; starting a new run",
                  file=sys.stderr)
        return None
    state, arrays = found
    resume.check_same_run(state["arguments"], resume.run_arguments(args, dname), state["epoch"])
    threads = fastconv.get_num_threads()
    if state.get("threads") not in (None, threads):
        print(f"warning: this run was trained with {state['threads']} threads and continues with "
              f"{threads}, so its results will not repeat bit for bit (set OMP_NUM_THREADS="
              f"{state['threads']} to match)", file=sys.stderr)
    return state, arrays


def cmd_train(args):
    import numpy as np
    import fastconv
    from . import random as fr

    check_train_args(args)
    dname = resolve_dataset(args.dataset)
    out = args.out or os.path.join("runs", f"{args.model}-{os.path.basename(dname.rstrip('/'))}")
    _check_out_folder(out)
    found = _resume_state(args, out, dname)
    ranks = _launched_ranks()
    if found is not None:
        _check_same_ranks(found[0], ranks)
    fastconv.set_backend(args.backend)
    strategy = None
    if ranks > 1:
        from .distribute import MultiWorkerMirroredStrategy
        strategy = MultiWorkerMirroredStrategy()
        if not strategy.is_chief:
            sys.stdout = _Discard()  # one log: rank 0's (errors still reach stderr)
    fastconv.set_seed(args.seed)
    (x, y), (xt, yt), dname = load_dataset(dname, args.seed, args.limit, args.image_size, args.color_mode)
    (x, y), (xv, yv) = split_validation(x, y, args.val_split, args.seed)
    if not len(x):
        raise ValueError(f"no training images left: {len(xv)} of {len(xv)} are held out for validation "
                         "(lower --val-split or raise --limit)")
    classes = int(max(y.max(), yt.max() if len(yt) else 0)) + 1
    base_layers, unfreeze_at = None, getattr(args, "unfreeze_after", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if getattr(args, "weights", None) is not None:  # fine-tuning: the family's input scaling, a new head
            prep = pretrained_preprocess(args.model)
            x, xv, xt = prep(x), prep(xv), prep(xt)
            model, base_layers = build_pretrained(args.model, x.shape[1:], classes, args.weights)
            if args.freeze_base:
                set_base_trainable(base_layers, False)
        else:
            model = build_model(args.model, x.shape[1:], classes)
        model.compile(optimizer=make_optimizer(args.optimizer, args.lr), loss=make_loss(model), metrics=["accuracy"])
    chief = strategy is None or strategy.is_chief

    def unfreeze():
        # Keras's recipe: unfreeze, recompile with a 10x lower learning rate.
        set_base_trainable(base_layers, True)
        lr = (args.lr if args.lr is not None else float(make_optimizer(args.optimizer, None).learning_rate)) / 10
        model.compile(optimizer=make_optimizer(args.optimizer, lr), loss=make_loss(model), metrics=["accuracy"])
        print(f"unfroze the base (BatchNormalization stays frozen) after epoch {unfreeze_at}; learning rate {lr:g}")
    if found is not None and unfreeze_at is not None and found[0]["epoch"] >= unfreeze_at:
        unfreeze()  # before the saved optimizer state is loaded into the recompiled model
    state_file, best_file = os.path.join(out, resume.STATE_FILE), os.path.join(out, "best.weights.npz")
    if found is None:
        state = {"epoch": 0, "history": {}, "best": -np.inf, "epoch_seconds": []}
    else:
        state, arrays = found
        resume.load_into(model, arrays, state_file)
        fr.set_state(state["random"])  # continue every random stream where it stopped
    if chief:
        os.makedirs(out, exist_ok=True)
    print(f"dataset {dname}: {len(x)} train, {len(xv)} validation, {len(xt)} test, "
          f"images {x.shape[1:]}, {classes} classes; backend {args.backend}; output {out}")
    if found is not None:
        print(f"resuming from {state_file} after epoch {state['epoch']}")
    monitor = "val_accuracy" if len(xv) else "accuracy"
    fit_kw = dict(batch_size=args.batch_size, verbose=args.verbose, shuffle=True,
                  validation_data=(xv, yv) if len(xv) else None)
    aug = _augmenter(args, dname)
    if args.backend == "cuda" and aug is None:  # onto the GPU once, not once per epoch's fit()
        from .data.adapters import stage_on_device
        x, y, fit_kw["validation_data"] = stage_on_device((x, y, fit_kw["validation_data"]))
    state["arguments"] = resume.run_arguments(args, dname)
    state["ranks"] = ranks
    try:
        for epoch in range(state["epoch"], args.epochs):
            if unfreeze_at is not None and epoch == unfreeze_at:
                unfreeze()
            t0 = time.perf_counter()
            # augmentation makes a fresh copy per epoch, in chunks to keep temporaries small
            xe = x if aug is None else np.concatenate([aug(x[i:i + 4096])[0] for i in range(0, len(x), 4096)])
            logs = _fit_one_epoch(model, xe, y, epoch, args.epochs, fit_kw)
            state["epoch_seconds"].append(round(time.perf_counter() - t0, 3))
            for k, v in logs.items():
                state["history"].setdefault(k, []).append(v)
            if logs.get(monitor, -np.inf) > state["best"]:  # keep the best weights by validation accuracy
                state["best"] = logs[monitor]
                if chief:
                    model.save_weights(best_file)
            state.update(epoch=epoch + 1, random=fr.get_state(), threads=fastconv.get_num_threads())
            if chief:
                resume.save_state(state_file, model, state)
    except KeyboardInterrupt:
        if not chief:
            return 130
        _history_files(out, state["history"], state["epoch_seconds"])
        print(f"\ninterrupted during epoch {state['epoch'] + 1}: {state['epoch']} finished epochs are "
              f"saved; continue with the same command plus --resume", file=sys.stderr)
        return 130
    if not chief:
        return 0  # the other ranks trained; rank 0 writes and tests
    model._distribute_strategy = None  # rank 0 tests alone: predict must not wait for the others
    history, seconds = state["history"], state["epoch_seconds"]
    model.save_weights(os.path.join(out, "last.weights.npz"))
    drawn = _history_files(out, history, seconds)
    if os.path.exists(best_file):
        model.load_weights(best_file)
    test_acc = float("nan")
    if len(xt):
        pred = _predict_classes(model, xt, max(args.batch_size, 256))
        test_acc = float(np.mean(pred == yt))
        drawn = _pictures(model, xt, yt, pred, out) and drawn
    run = {"model": args.model, "dataset": dname, "backend": args.backend, "epochs": args.epochs,
           "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
           "seed": args.seed, "limit": args.limit, "augment": args.augment, "classes": classes,
           "weights": getattr(args, "weights", None), "image_size": list(x.shape[1:3]),
           "color_mode": "rgb" if x.shape[-1] == 3 else "grayscale",
           "test_accuracy": test_acc, "best_" + monitor: float(state["best"]),
           "epoch_seconds": seconds, "command": "fastconv " + " ".join(args.argv)}
    with atomic_write(os.path.join(out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    mean_s = float(np.mean(seconds)) if seconds else float("nan")
    print(f"test accuracy {test_acc:.4f} ({len(xt)} images, best weights by {monitor}); "
          f"{mean_s:.2f} s/epoch; files in {out}")
    if not drawn:  # matplotlib is an optional extra: one line on what was not drawn, and the fix
        print(PICTURES_SKIPPED, file=sys.stderr)
    return 0


def cmd_evaluate(args):
    import numpy as np
    run_file = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "run.json")
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} not found")
    if not os.path.isfile(run_file):
        raise FileNotFoundError(f"{run_file} not found: evaluate needs the run.json that "
                                "'fastconv train' writes beside its checkpoints")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        with open(run_file) as f:
            run = json.load(f)
        if not isinstance(run, dict) or not isinstance(run.get("model"), str) or not isinstance(run.get("dataset"), str):
            raise ValueError("it does not name the model and data set")
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {run_file}: {e}") from None
    import fastconv
    fastconv.set_backend(run.get("backend", "cpu"))
    _, (xt, yt), dname = load_dataset(args.dataset or run["dataset"], run.get("seed", 0), run.get("limit"),
                                      tuple(run.get("image_size", (28, 28))), run.get("color_mode", "grayscale"))
    classes = int(run.get("classes", int(yt.max()) + 1))
    if run.get("weights"):  # a fine-tuned application: same architecture, inputs scaled as in training
        xt = pretrained_preprocess(run["model"])(xt)
        model, _ = build_pretrained(run["model"], xt.shape[1:], classes, None)
    else:
        model = build_model(run["model"], xt.shape[1:], classes)
    model.load_weights(args.checkpoint)
    acc = float(np.mean(_predict_classes(model, xt, args.batch_size) == yt))
    print(f"{run['model']} on {dname}: test accuracy {acc:.4f} ({len(xt)} images)")
    return 0


