"""Pictures: training curves, feature-map and filter grids, confusion matrices, saved as PNG.

matplotlib is optional (``pip install 'fastconv[viz]'``); every plotting function raises an
ImportError saying so when it is missing. Figures are drawn on a private Agg canvas, so no
window opens and pyplot's global state is never touched. The array helpers
(:func:`confusion_matrix`, :func:`tile`) need only numpy.
"""
import os

import numpy as np

from .saving import atomic_write


def _figure(figsize):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("fastconv.viz needs matplotlib: pip install matplotlib "
                          "(or pip install 'fastconv[viz]')") from None
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.tight_layout()
    # Into an atomic file object, so the format cannot come from the name: take it from the
    # extension (PNG when there is none), as savefig(path) would.
    fmt = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    with atomic_write(path) as f:
        fig.savefig(f, format=fmt, dpi=100)
    return path


def plot_history(history, path, title=None):
    """Loss and every metric, training and validation, per epoch, one panel each; saves `path`.

    history: a ``History`` (its ``.history`` dict) or a dict ``{"loss": [...], "val_loss": [...], ...}``.
    """
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or not h:
        raise ValueError("history must be a non-empty dict of per-epoch lists or a History")
    names = [k for k in h if not k.startswith("val_")]
    names += [k[4:] for k in h if k.startswith("val_") and k[4:] not in names]
    fig = _figure((4.5 * len(names), 3.5))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label, style in ((name, "train", "-o"), ("val_" + name, "validation", "-s")):
            if key in h and len(h[key]):
                ax.plot(np.arange(1, len(h[key]) + 1), h[key], style, label=label, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def tile(images, pad=1, normalize=True):
    """Arrange (rows, cols, H, W) arrays into one (rows*(H+pad)-pad, cols*(W+pad)-pad) picture,
    each tile rescaled to [0, 1] on its own when `normalize` (so weak channels stay visible)."""
    images = np.asarray(images, np.float64)
    if images.ndim != 4:
        raise ValueError(f"images must be (rows, cols, H, W), got shape {images.shape}")
    r, c, h, w = images.shape
    if normalize:
        lo = images.min(axis=(2, 3), keepdims=True)
        span = images.max(axis=(2, 3), keepdims=True) - lo
        images = (images - lo) / np.where(span > 0, span, 1)
    out = np.full((r * (h + pad) - pad, c * (w + pad) - pad), np.nan)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = images[i, j]
    return out


def plot_feature_maps(activations, path, max_channels=16, title=None):
    """A grid of one layer's output channels: one row per image, one column per channel.

    activations: (N, H, W, C) array, e.g. ``layer_output(model, layer, images)``.
    """
    a = np.asarray(activations)
    if a.ndim != 4:
        raise ValueError(f"activations must be NHWC (N, H, W, C), got shape {a.shape}")
    a = a[..., :max_channels]
    grid = tile(np.transpose(a, (0, 3, 1, 2)))
    fig = _figure((max(2.0, 0.6 * a.shape[3]), max(2.0, 0.6 * a.shape[0]) + 0.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", interpolation="nearest")
    ax.set_xlabel(f"channels 0..{a.shape[3] - 1}")
    ax.set_ylabel("images")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"feature maps {a.shape[1]}x{a.shape[2]}")
    return _save(fig, path)


def plot_filters(kernel, path, title=None):
    """A grid of first-layer filters: HWIO kernel (KH, KW, Cin, Cout), one column per output
    channel, one row per input channel."""
    k = np.asarray(kernel)
    if k.ndim != 4:
        raise ValueError(f"kernel must be HWIO (KH, KW, Cin, Cout), got shape {k.shape}")
    grid = tile(np.transpose(k, (2, 3, 0, 1)))
    fig = _figure((max(2.0, 0.5 * k.shape[3]), max(1.5, 0.5 * k.shape[2]) + 0.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.ma.masked_invalid(grid), cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{k.shape[3]} filters {k.shape[0]}x{k.shape[1]}")
    return _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes=None):
    """(classes, classes) int64 counts: row = true class, column = predicted class.
    `y_pred` may be class indices (N,) or scores (N, classes) (argmax taken)."""
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(axis=1)
    y_pred = y_pred.astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}")
    k = num_classes or int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def plot_confusion_matrix(y_true, y_pred, path, class_names=None, title=None):
    """Confusion matrix picture with counts written in the cells; returns the matrix."""
    cm = confusion_matrix(y_true, y_pred, len(class_names) if class_names else None)
    k = len(cm)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    fig = _figure((1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), names, rotation=60, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"accuracy {acc:.3f}")
    _save(fig, path)
    return cm


def layer_output(model, layer, x):
    """The output of `layer` (an object or a name) for inputs `x`, via a functional sub-model
    ``Model(model.inputs, layer.output)`` as in Keras; for a Sequential model without a graph,
    by running the layers in order up to `layer`."""
    if isinstance(layer, str):
        layer = model.get_layer(layer)
    try:
        from .models import Model
        sub = Model(inputs=model.inputs, outputs=layer.output)
        out = sub.predict(x, verbose=0)
    except Exception:  # noqa: BLE001 - no graph (subclassed/sequential without Input): run in order
        from .autograd import Tensor, no_grad
        out = Tensor(np.asarray(x, np.float32))
        with no_grad():
            for lay in model.layers:
                out = lay(out, training=False)
                if lay is layer:
                    break
            else:
                raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not in the model")
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)
