"""The ``fastconv train`` and ``fastconv evaluate`` commands (see :mod:`fastconv.__main__`).

Training runs one ``fit`` call per epoch (``initial_epoch`` keeps Keras's numbering), so that
after every epoch the whole run state -- model and optimizer (pickled together, which keeps the
optimizer's per-variable slots attached to the right variables), the random streams, the best
validation accuracy and the history -- can be written to ``resume.pkl``. ``--resume`` reloads it
and continues with the next epoch, giving the same weights as an uninterrupted run. Ctrl-C
during an epoch stops cleanly; the state of the last finished epoch is already on disk.
"""
import json
import os
import pickle
import sys
import time

DATASETS = ("fashion-mnist", "mnist", "digits")


# ----------------------------------------------------------------------------- data
def load_dataset(name, seed=0, limit=None, image_size=(28, 28), color_mode="grayscale"):
    """((x, y), (x_test, y_test), description) with x float32 NHWC in [0, 1], y int64."""
    import numpy as np
    from .datasets import digits, fashion_mnist, mnist

    if name is None:
        if fashion_mnist.available():
            name = "fashion-mnist"
        else:
            print("note: Fashion-MNIST files not found (apt-get install dataset-fashion-mnist, or "
                  "set FASTCONV_DATA); using the embedded UCI digits set, upscaled to 28x28",
                  file=sys.stderr)
            name = "digits"
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
    else:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)} or a directory, got {name!r}")
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
def build_model(name, input_shape, classes):
    """A zoo model (LeNet-5 in its modern variant), returning logits where the constructor allows."""
    import inspect
    from .models import zoo
    fn = getattr(zoo, name, None) if name in zoo.__all__ and name[0].islower() else None
    if fn is None:
        raise ValueError(f"unknown model {name!r}; choose one of "
                         f"{', '.join(n for n in zoo.__all__ if n[0].islower())}")
    params = inspect.signature(fn).parameters
    kwargs = {"input_shape": tuple(input_shape), "classes": classes, "variant": "modern",
              "classifier_activation": None}
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def make_loss(model):
    """Fused softmax cross-entropy on logits when the model ends without a softmax."""
    from .losses import SparseCategoricalCrossentropy
    last = (getattr(model, "layers", None) or [None])[-1]
    logits = getattr(last, "activation", None) in (None, "linear")
    return SparseCategoricalCrossentropy(from_logits=logits)


def make_optimizer(name, lr):
    from . import optimizers
    classes = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
    cls = getattr(optimizers, classes.get(name.lower(), name), None)
    if cls is None:
        raise ValueError(f"unknown --optimizer {name!r}; expected one of {', '.join(classes)}")
    return cls() if lr is None else cls(learning_rate=lr)


# ----------------------------------------------------------------------------- train
def _history_files(out, history, epoch_seconds):
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({"history": history, "epoch_seconds": epoch_seconds}, f, indent=1)
    keys = list(history)
    with open(os.path.join(out, "history.csv"), "w") as f:
        f.write(",".join(["epoch"] + keys) + "\n")
        for i in range(len(history[keys[0]]) if keys else 0):
            f.write(",".join([str(i + 1)] + [repr(float(history[k][i])) for k in keys]) + "\n")
    try:
        from . import viz
        viz.plot_history(history, os.path.join(out, "curves.png"))
    except ImportError:
        pass  # matplotlib is optional


def _predict_classes(model, x, batch_size):
    import numpy as np
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    probs = probs.numpy() if hasattr(probs, "numpy") else np.asarray(probs)
    return np.argmax(probs, axis=-1)


def _pictures(model, x, y, pred, out):
    """Confusion matrix, first-layer filters and its feature maps, when matplotlib is installed."""
    try:
        from . import viz
        viz.plot_confusion_matrix(y, pred, os.path.join(out, "confusion.png"))
        convs = [lay for lay in getattr(model, "layers", []) if getattr(lay, "kernel", None) is not None
                 and getattr(lay.kernel, "ndim", 0) == 4]
        if convs:
            viz.plot_filters(convs[0].kernel.numpy(), os.path.join(out, "filters.png"))
            viz.plot_feature_maps(viz.layer_output(model, convs[0], x[:6]), os.path.join(out, "feature_maps.png"))
    except ImportError:
        pass


def _fit_one_epoch(model, x, y, epoch, epochs, fit_kw):
    # One fit() call per epoch (state is saved between them for --resume), so the epoch
    # header is printed here: fit() itself only knows about this one epoch.
    if fit_kw.get("verbose"):
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
    hist = model.fit(x, y, epochs=1, **fit_kw)
    return {k: float(v[-1]) for k, v in hist.history.items()}


def _rekey_optimizer(opt):
    """The optimizer keys its slots by id(variable); unpickled variables have new ids, so rebuild
    the keys from the (variable, slots) pairs it stores (otherwise the slots would restart at 0).
    Belongs in Optimizer.__setstate__; kept here until the optimizer does it itself."""
    st = getattr(opt, "_state", None)
    if isinstance(st, dict) and all(isinstance(e, tuple) and len(e) == 2 for e in st.values()):
        opt._state = {id(var): (var, slots) for var, slots in st.values()}


def _save_state(path, state):
    # write-then-rename: a Ctrl-C while saving never leaves a half-written resume file
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _augmenter(args, dataset):
    if not args.augment:
        return None
    from .augment import Augment
    return Augment(shift=2, rotation=10.0, zoom=0.1, horizontal_flip=dataset == "fashion-mnist")


def cmd_train(args):
    import numpy as np
    import fastconv
    from . import random as fr

    fastconv.set_backend(args.backend)
    fastconv.set_seed(args.seed)
    (x, y), (xt, yt), dname = load_dataset(args.dataset, args.seed, args.limit,
                                           args.image_size, args.color_mode)
    (x, y), (xv, yv) = split_validation(x, y, args.val_split, args.seed)
    classes = int(max(y.max(), yt.max() if len(yt) else 0)) + 1
    out = args.out or os.path.join("runs", f"{args.model}-{os.path.basename(dname.rstrip('/'))}")
    os.makedirs(out, exist_ok=True)
    state_file, best_file = os.path.join(out, "resume.pkl"), os.path.join(out, "best.weights.npz")
    print(f"dataset {dname}: {len(x)} train, {len(xv)} validation, {len(xt)} test, "
          f"images {x.shape[1:]}, {classes} classes; backend {args.backend}; output {out}")

    if args.resume and os.path.isfile(state_file):
        with open(state_file, "rb") as f:
            state = pickle.load(f)
        model = state["model"]
        _rekey_optimizer(getattr(model, "optimizer", None))
        fr._seed, fr._streams = state["random"]  # continue every random stream where it stopped
        print(f"resuming from {state_file} after epoch {state['epoch']}")
    else:
        if args.resume:
            print(f"note: no {state_file} to resume from; starting a new run", file=sys.stderr)
        model = build_model(args.model, x.shape[1:], classes)
        model.compile(optimizer=make_optimizer(args.optimizer, args.lr),
                      loss=make_loss(model), metrics=["accuracy"])
        state = {"epoch": 0, "history": {}, "best": -np.inf, "epoch_seconds": []}
    monitor = "val_accuracy" if len(xv) else "accuracy"
    fit_kw = dict(batch_size=args.batch_size, verbose=args.verbose, shuffle=True,
                  validation_data=(xv, yv) if len(xv) else None)
    aug = _augmenter(args, dname)
    if args.backend == "cuda" and aug is None:  # onto the GPU once, not once per epoch's fit()
        from .training.data import stage_on_device
        x, y, fit_kw["validation_data"] = stage_on_device((x, y, fit_kw["validation_data"]))
    try:
        for epoch in range(state["epoch"], args.epochs):
            t0 = time.perf_counter()
            # augmentation makes a fresh copy per epoch, in chunks to keep temporaries small
            xe = x if aug is None else np.concatenate([aug(x[i:i + 4096])[0] for i in range(0, len(x), 4096)])
            logs = _fit_one_epoch(model, xe, y, epoch, args.epochs, fit_kw)
            state["epoch_seconds"].append(round(time.perf_counter() - t0, 3))
            for k, v in logs.items():
                state["history"].setdefault(k, []).append(v)
            if logs.get(monitor, -np.inf) > state["best"]:  # keep the best weights by validation accuracy
                state["best"] = logs[monitor]
                model.save_weights(best_file)
            state.update(epoch=epoch + 1, model=model, random=(fr._seed, fr._streams))
            _save_state(state_file, state)
    except KeyboardInterrupt:
        _history_files(out, state["history"], state["epoch_seconds"])
        print(f"\ninterrupted during epoch {state['epoch'] + 1}: {state['epoch']} finished epochs are "
              f"saved; continue with the same command plus --resume", file=sys.stderr)
        return 130
    history, seconds = state["history"], state["epoch_seconds"]
    model.save_weights(os.path.join(out, "last.weights.npz"))
    _history_files(out, history, seconds)
    if os.path.exists(best_file):
        model.load_weights(best_file)
    test_acc = float("nan")
    if len(xt):
        pred = _predict_classes(model, xt, max(args.batch_size, 256))
        test_acc = float(np.mean(pred == yt))
        _pictures(model, xt, yt, pred, out)
    run = {"model": args.model, "dataset": dname, "backend": args.backend, "epochs": args.epochs,
           "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
           "seed": args.seed, "limit": args.limit, "augment": args.augment, "classes": classes,
           "test_accuracy": test_acc, "best_" + monitor: float(state["best"]),
           "epoch_seconds": seconds, "command": "fastconv " + " ".join(args.argv)}
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    mean_s = float(np.mean(seconds)) if seconds else float("nan")
    print(f"test accuracy {test_acc:.4f} ({len(xt)} images, best weights by {monitor}); "
          f"{mean_s:.2f} s/epoch; files in {out}")
    return 0


def cmd_evaluate(args):
    import numpy as np
    run_file = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "run.json")
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} not found")
    if not os.path.isfile(run_file):
        raise FileNotFoundError(f"{run_file} not found: evaluate needs the run.json that "
                                "'fastconv train' writes beside its checkpoints")
    with open(run_file) as f:
        run = json.load(f)
    import fastconv
    fastconv.set_backend(run.get("backend", "cpu"))
    _, (xt, yt), dname = load_dataset(args.dataset or run["dataset"], run.get("seed", 0), run.get("limit"))
    model = build_model(run["model"], xt.shape[1:], int(run.get("classes", int(yt.max()) + 1)))
    model.load_weights(args.checkpoint)
    acc = float(np.mean(_predict_classes(model, xt, args.batch_size) == yt))
    print(f"{run['model']} on {dname}: test accuracy {acc:.4f} ({len(xt)} images)")
    return 0


