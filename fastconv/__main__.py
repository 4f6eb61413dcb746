"""The ``fastconv`` command line (also ``python -m fastconv``).

    fastconv train lenet5                       # Fashion-MNIST if found, else the embedded digits
    fastconv train lenet5 --dataset digits --epochs 3 --out runs/digits
    fastconv evaluate runs/digits/best.weights.npz
    fastconv summary lenet5 --input-shape 28 28 1
    fastconv info
    fastconv bench --quick                      # the side-by-side benchmarks (fastconv.bench)

``train`` scales images to float32 in [0, 1], adds a channel axis, holds out ``--val-split`` of
the training images for validation, fits with a progress bar (validation accuracy each epoch),
keeps the best weights by validation accuracy (``best.weights.npz``), writes the history
(``history.json``, ``history.csv``), the curves (``curves.png``, when matplotlib is installed)
and ``run.json``, then reports test accuracy with the best weights. The state after each epoch
goes to ``resume.npz`` (data only, never pickle): Ctrl-C stops cleanly, and ``--resume``
continues from there. Every file is written atomically (an interrupted write keeps the old one).

A bad argument, a missing or corrupt file, or too little memory ends the command with one line,
``fastconv <command>: error: ...``, and exit status 2, before any output is written
(``FASTCONV_DEBUG=1`` shows the traceback instead).
"""
import argparse
import os
import sys

from ._cli_train import DATASETS, cmd_evaluate, cmd_train, load_dataset, split_validation  # noqa: F401


def _build_parser():
    p = argparse.ArgumentParser(prog="fastconv", description="fastconv: train and inspect CNNs")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from the zoo on a data set")
    t.add_argument("model", help="zoo model name, e.g. lenet5, resnet20")
    t.add_argument("--dataset", default=None,
                   help="fashion-mnist | mnist | digits | a directory of class sub-folders "
                        "(default: fashion-mnist when its files are found, else digits)")
    t.add_argument("--epochs", type=int, default=15,
                   help="number of epochs (with --resume: the new total, to extend a run)")
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
    t.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from --out/resume.npz, with the same final "
                        "weights on the same backend and thread count; every other argument must "
                        "match the run's, except --epochs (to extend it) and --verbose")
    t.add_argument("--weights", default=None,
                   help="fine-tune a pretrained fastconv.applications model (resnet50, vgg16, mobilenet_v2, "
                        "...): 'imagenet' (Keras's file in ~/.keras/models) or a Keras .h5/.weights.h5 file; "
                        "the model gets a new head for the data set's classes (needs --color-mode rgb)")
    t.add_argument("--freeze-base", action="store_true", help="with --weights: train only the new head")
    t.add_argument("--unfreeze-after", type=int, default=None, metavar="N",
                   help="with --freeze-base: after N epochs unfreeze the base (BatchNormalization stays "
                        "frozen) and continue at a 10x lower learning rate")
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
    sub.add_parser("bench", add_help=False, help="side-by-side benchmarks against the NumPy oracle, PyTorch and "
                   "TensorFlow (fastconv bench --help)")
    return p


def cmd_summary(args):
    from ._cli_train import build_model, check_model_name
    check_model_name(args.model)
    if any(d < 1 for d in args.input_shape) or args.classes < 1:
        raise ValueError(f"--input-shape and --classes must be positive, got "
                         f"{' '.join(map(str, args.input_shape))} and {args.classes}")
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


def _C_corename():
    from . import _C
    return _C.blas_corename()


def _isa():
    """The kernels' instruction-set level in use, and the levels this CPU could run."""
    from . import _C
    forced = os.environ.get("FASTCONV_ISA")
    chosen = _C.isa_level() + (" (forced by FASTCONV_ISA)" if forced else "")
    return chosen, _C.isa_levels()


def _fma_peaks():
    """One core's multiply-add peak at each vector width the chosen level runs (a ~10 ms probe
    per width: the ceiling the kernels' GFLOP/s are measured against)."""
    from . import _C
    if not hasattr(_C, "_fma_peak_widths"):
        return "unknown"
    peaks = [f"{bits}-bit {_C._fma_peak_gflops(0.01, 3, bits):.0f}" for bits in _C._fma_peak_widths()]
    return ", ".join(peaks) + " GFLOP/s (1 thread)"


def _gemm_kernels():
    """Which sgemm the convolutions' products run: fastconv's own (with its micro-kernels'
    vector width, chosen by CPU model, FASTCONV_GEMM_WIDTH overriding) or OpenBLAS."""
    from . import _C
    if _C.active_gemm_backend() == "openblas":
        return "openblas"
    forced = " (forced by FASTCONV_GEMM_WIDTH)" if os.environ.get("FASTCONV_GEMM_WIDTH") else ""
    return f"{_C.gemm_width()}-bit native{forced}"


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
    isa_level, isa_levels = _isa()
    return {"fastconv": fastconv.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "default_backend": fastconv.get_backend(),
            "backends": backends, "threads": fastconv.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "blas": _blas_path(), "blas_kernels": _C_corename(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cpu_features": _cpu_features(), "isa_level": isa_level, "isa_levels": isa_levels,
            "fma_peak": _fma_peaks(), "gemm_kernels": _gemm_kernels(),
            "cuda_available": backends["cuda"] == "available",
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
    if argv[:1] == ["bench"]:  # its own parser (fastconv/bench/run.py) takes the rest
        from .bench.run import main as bench_main
        return bench_main(argv[1:])
    args = _build_parser().parse_args(argv)
    args.argv = argv
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "summary": cmd_summary, "info": cmd_info}[args.command](args)
    except (OSError, ValueError, ImportError, MemoryError) as e:
        if os.environ.get("FASTCONV_DEBUG"):
            raise
        # One line: multi-line messages (e.g. a strict load's key lists) are joined.
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, MemoryError):
            message = f"not enough memory ({message})"
        print(f"fastconv {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
