"""The ``fastconv`` command line (also ``python -m fastconv``).

    fastconv train lenet5                       # Fashion-MNIST if found, else the embedded digits
    fastconv train lenet5 --dataset digits --epochs 3 --out runs/digits
    fastconv evaluate runs/digits/best.weights.npz
    fastconv summary lenet5 --input-shape 28 28 1
    fastconv info

``train`` scales images to float32 in [0, 1], adds a channel axis, holds out ``--val-split`` of
the training images for validation, fits with a progress bar (validation accuracy each epoch),
keeps the best weights by validation accuracy (``best.weights.npz``), writes the history
(``history.json``, ``history.csv``), the curves (``curves.png``, when matplotlib is installed)
and ``run.json``, then reports test accuracy with the best weights. Ctrl-C stops after saving
``interrupted.weights.npz`` and the history so far.
"""
import argparse
import json
import os
import sys
import time

DATASETS = ("fashion-mnist", "mnist", "digits")


def _build_parser():
    p = argparse.ArgumentParser(prog="fastconv", description="fastconv: train and inspect CNNs")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from the zoo on a data set")
    t.add_argument("model", help="zoo model name, e.g. lenet5, resnet20")
    t.add_argument("--dataset", default=None,
                   help="fashion-mnist | mnist | digits | a directory of class sub-folders "
                        "(default: fashion-mnist when its files are found, else digits)")
    t.add_argument("--epochs", type=int, default=15)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", default="adam", help="adam | sgd | rmsprop | adagrad | adamw")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    t.add_argument("--backend", default="cpu", choices=("cpu", "numpy", "cuda"))
    t.add_argument("--out", default=None, help="output directory (default: runs/<model>-<dataset>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, default=None,
                   help="use at most N training and N test images (quick runs)")
    t.add_argument("--val-split", type=float, default=0.1,
                   help="fraction of the training images held out for validation")
    t.add_argument("--image-size", type=int, nargs=2, default=(28, 28), metavar=("H", "W"),
                   help="image size for a directory data set")
    t.add_argument("--color-mode", default="grayscale", choices=("grayscale", "rgb"),
                   help="colour mode for a directory data set")
    t.add_argument("--augment", action="store_true",
                   help="random shifts (2 px), rotations (10 deg) and zooms (10%%) each epoch")
    t.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint written by 'train'")
    e.add_argument("checkpoint", help="a .weights.npz from a train --out directory (its run.json "
                                      "names the model and data set)")
    e.add_argument("--dataset", default=None, help="override the data set recorded in run.json")
    e.add_argument("--batch-size", type=int, default=256)

    s = sub.add_parser("summary", help="print a zoo model's layers, output shapes and parameters")
    s.add_argument("model")
    s.add_argument("--input-shape", type=int, nargs="+", default=(28, 28, 1))
    s.add_argument("--classes", type=int, default=10)

    sub.add_parser("info", help="version, backends, BLAS, threads, CPU features, GPU")
    return p


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
    """A zoo model; LeNet-5 (modern) is built from layers when the zoo is not available."""
    import inspect
    try:
        from .models import zoo
        fn = getattr(zoo, name, None)
    except ImportError:
        zoo = fn = None
    if fn is None:
        if name == "lenet5":
            return _lenet5_fallback(input_shape, classes)
        raise ValueError(f"unknown model {name!r}" + ("" if zoo else " (the model zoo is not installed)"))
    params = inspect.signature(fn).parameters
    kwargs = {"input_shape": tuple(input_shape), "classes": classes}
    if name == "lenet5" and "variant" in params:
        kwargs["variant"] = "modern"
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def _lenet5_fallback(input_shape, classes):
    from . import layers
    from .models import Sequential
    return Sequential([
        layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=tuple(input_shape)),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ], name="lenet5")


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


def cmd_train(args):
    import numpy as np
    import fastconv

    fastconv.set_backend(args.backend)
    fastconv.set_seed(args.seed)
    (x, y), (xt, yt), dname = load_dataset(args.dataset, args.seed, args.limit,
                                           args.image_size, args.color_mode)
    (x, y), (xv, yv) = split_validation(x, y, args.val_split, args.seed)
    classes = int(max(y.max(), yt.max() if len(yt) else 0)) + 1
    out = args.out or os.path.join("runs", f"{args.model}-{os.path.basename(dname.rstrip('/'))}")
    os.makedirs(out, exist_ok=True)
    print(f"dataset {dname}: {len(x)} train, {len(xv)} validation, {len(xt)} test, "
          f"images {x.shape[1:]}, {classes} classes; backend {args.backend}; output {out}")

    from . import callbacks  # after the data, so a missing data set is reported first
    model = build_model(args.model, x.shape[1:], classes)
    model.compile(optimizer=make_optimizer(args.optimizer, args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    best = os.path.join(out, "best.weights.npz")
    have_val = len(xv) > 0
    timer = _EpochTimer(callbacks.Callback)
    cbs = [callbacks.ModelCheckpoint(best, monitor="val_accuracy" if have_val else "accuracy",
                                     mode="max", save_best_only=True, save_weights_only=True), timer]
    try:
        fit_kw = dict(batch_size=args.batch_size, verbose=args.verbose, callbacks=cbs, shuffle=True,
                      validation_data=(xv, yv) if have_val else None)
        if not args.augment:
            hist = model.fit(x, y, epochs=args.epochs, **fit_kw)
            history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        else:
            history = _fit_augmented(model, x, y, args, fit_kw, dname)
    except KeyboardInterrupt:
        model.save_weights(os.path.join(out, "interrupted.weights.npz"))
        partial = getattr(getattr(model, "history", None), "history", None) or {}
        _history_files(out, {k: [float(v) for v in vals] for k, vals in partial.items()}, timer.seconds)
        print(f"\ninterrupted: weights saved to {os.path.join(out, 'interrupted.weights.npz')}",
              file=sys.stderr)
        return 130
    model.save_weights(os.path.join(out, "last.weights.npz"))
    _history_files(out, history, timer.seconds)
    if os.path.exists(best):
        model.load_weights(best)
    test_acc = float("nan")
    if len(xt):
        pred = _predict_classes(model, xt, max(args.batch_size, 256))
        test_acc = float(np.mean(pred == yt))
        _pictures(model, xt, yt, pred, out)
    run = {"model": args.model, "dataset": dname, "backend": args.backend, "epochs": args.epochs,
           "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr, "seed": args.seed,
           "limit": args.limit, "augment": args.augment, "classes": classes, "test_accuracy": test_acc, "epoch_seconds": timer.seconds,
           "command": "fastconv " + " ".join(args.argv)}
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    mean_s = float(np.mean(timer.seconds)) if timer.seconds else float("nan")
    print(f"test accuracy {test_acc:.4f} ({len(xt)} images, best weights by validation accuracy); "
          f"{mean_s:.2f} s/epoch; files in {out}")
    return 0


def _fit_augmented(model, x, y, args, fit_kw, dataset):
    """One fit call per epoch on a freshly augmented copy of the training set (`initial_epoch`
    keeps the epoch numbering, and the same callback objects keep their best-so-far state)."""
    import numpy as np
    from .augment import Augment
    aug = Augment(shift=2, rotation=10.0, zoom=0.1, horizontal_flip=dataset == "fashion-mnist")
    history = {}
    for epoch in range(args.epochs):
        # in chunks, so the bilinear resampling's temporaries stay small
        xa = np.concatenate([aug(x[i:i + 4096])[0] for i in range(0, len(x), 4096)])
        hist = model.fit(xa, y, epochs=epoch + 1, initial_epoch=epoch, **fit_kw)
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    return history


def _EpochTimer(base):
    """A callback recording wall seconds per epoch (built on the training branch's Callback)."""
    class EpochTimer(base):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(round(time.perf_counter() - self._t, 3))
    return EpochTimer()


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


# ----------------------------------------------------------------------------- summary / info
def cmd_summary(args):
    model = build_model(args.model, tuple(args.input_shape), args.classes)
    if not getattr(model, "built", True) and hasattr(model, "build"):
        model.build((None,) + tuple(args.input_shape))
    model.summary()
    return 0


def _blas_path():
    """Path of the OpenBLAS the native kernels use (scipy-openblas32), as mapped in this process."""
    libs = []
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        pass
    ours = [p for p in libs if "scipy_openblas32" in p]  # numpy bundles its own 64-bit OpenBLAS too
    return (ours or libs or [None])[0]


def _cpu_features():
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def info():
    """A dict describing this installation (also printed by ``fastconv info``)."""
    import platform
    import numpy as np
    import fastconv
    from .backend import kernels_for
    backends = {}
    for b in ("cpu", "numpy", "cuda"):
        try:
            kernels_for(b)
            backends[b] = "available"
        except Exception as e:  # noqa: BLE001 - report why a backend cannot load
            backends[b] = f"unavailable ({e})"
    gpu = None
    try:
        import cupy
        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001 - no cupy or no device
        pass
    return {"fastconv": fastconv.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "default_backend": fastconv.get_backend(),
            "backends": backends, "threads": fastconv.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "blas": _blas_path(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cpu_features": _cpu_features(), "cuda_available": backends["cuda"] == "available",
            "gpu": gpu}


def cmd_info(args):
    for k, v in info().items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"  {kk}: {vv}")
        else:
            print(f"{k}: {', '.join(v) if isinstance(v, list) else v}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser().parse_args(argv)
    args.argv = argv
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "summary": cmd_summary, "info": cmd_info}[args.command](args)
    except (FileNotFoundError, ValueError, ImportError) as e:
        if os.environ.get("FASTCONV_DEBUG"):
            raise
        print(f"fastconv {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
