"""The NumPy twins of the compiled batch image kernels (fastconv/data/_kernels.pyx).

They are the fallback when the extension is not built and the oracle the tests hold the
compiled kernels to, so they follow the same formulas in the same precision (float32 for
resizing and colour, float64 for the affine warp, as scipy.ndimage does). Arguments are
already validated by :mod:`fastconv.data.kernels`; every function takes an NHWC batch.

Resizing follows ``tf.image.resize`` with ``antialias=False`` (half-pixel centres):

- bilinear: source position ``(o + 0.5) * in/out - 0.5``, taps ``floor`` (clamped at 0) and
  ``ceil`` (clamped at in - 1), weight ``pos - floor(pos)``;
- nearest: source index ``min(floor((o + 0.5) * in/out), in - 1)``;
- area: the mean of the input area ``[o * in/out, (o + 1) * in/out)``, border pixels weighted by
  the fraction they cover.
"""
import numpy as np

# scipy.ndimage's names. The first four are scipy's modes for order=1 (ImageDataGenerator's);
# the "grid-" two extend the image without scipy's quirks, as Keras 3's layers (and
# tf.raw_ops.ImageProjectiveTransformV3) do: "grid-constant" blends border pixels with cval
# (a tap outside the image reads cval), "grid-wrap" repeats the image with period n.
FILL_MODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3, "grid-constant": 4, "grid-wrap": 5}
INTERPOLATIONS = {"bilinear": 1, "nearest": 0}


def bilinear_taps(n_in, n_out):
    """(lower index, upper index, weight of the upper) per output position, TF's rule."""
    scale = np.float32(n_in) / np.float32(n_out)
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    lower = np.floor(pos)
    lo = np.maximum(lower, 0).astype(np.int64)
    hi = np.minimum(np.ceil(pos), n_in - 1).astype(np.int64)
    return lo, hi, (pos - lower).astype(np.float32)


def nearest_taps(n_in, n_out):
    scale = np.float32(n_in) / np.float32(n_out)
    pos = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale)
    return np.minimum(pos, n_in - 1).astype(np.int64)


def resize_bilinear(x, size):
    y0, y1, fy = bilinear_taps(x.shape[1], size[0])
    x0, x1, fx = bilinear_taps(x.shape[2], size[1])
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    rows0, rows1 = x[:, y0].astype(np.float32), x[:, y1].astype(np.float32)
    top = rows0[:, :, x0] + (rows0[:, :, x1] - rows0[:, :, x0]) * fx
    bot = rows1[:, :, x0] + (rows1[:, :, x1] - rows1[:, :, x0]) * fx
    return top + (bot - top) * fy


def resize_nearest(x, size):
    return x[:, nearest_taps(x.shape[1], size[0])][:, :, nearest_taps(x.shape[2], size[1])]


def _area_weights(n_in, n_out):
    """(n_out, n_in) float32 matrix: the share of each input cell in each output cell."""
    scale = np.float32(n_in) / np.float32(n_out)
    wts = np.zeros((n_out, n_in), np.float32)
    for o in range(n_out):
        a, b = np.float32(o) * scale, np.float32(o + 1) * scale
        for i in range(int(np.floor(a)), int(np.ceil(b))):
            wts[o, min(max(i, 0), n_in - 1)] += np.float32(min(i + 1, b) - max(i, a))
    return wts, scale


def area_taps(n_in, n_out):
    """(indices (n_out, K), weights (n_out, K) float32, counts (n_out,)) of each output cell's
    input cells in order, TF's weights: the covered fraction, float32, indices clamped."""
    scale = np.float32(n_in) / np.float32(n_out)
    rows = []
    for o in range(n_out):
        a, b = np.float32(o) * scale, np.float32(o + 1) * scale
        rows.append([(min(max(i, 0), n_in - 1), np.float32(min(np.float32(i + 1), b) - max(np.float32(i), a)))
                     for i in range(int(np.floor(a)), int(np.ceil(b)))])
    k = max(len(r) for r in rows)
    idx = np.zeros((n_out, k), np.int64)
    wts = np.zeros((n_out, k), np.float32)
    for o, r in enumerate(rows):
        idx[o, :len(r)] = [t[0] for t in r]
        wts[o, :len(r)] = [t[1] for t in r]
    return idx, wts, np.array([len(r) for r in rows], np.int64), scale


def resize_area(x, size):
    wy, sy = _area_weights(x.shape[1], size[0])
    wx, sx = _area_weights(x.shape[2], size[1])
    out = np.einsum("oh,nhwc->nowc", wy, x.astype(np.float32))
    out = np.einsum("pw,nowc->nopc", wx, out)
    return (out * (np.float32(1) / (sy * sx))).astype(np.float32)


def crop_flip(x, top, left, size, hflip, vflip):
    oh, ow = size
    out = np.empty((len(x), oh, ow, x.shape[3]), x.dtype)
    for b in range(len(x)):
        win = x[b, top[b]:top[b] + oh, left[b]:left[b] + ow]
        if hflip[b]:
            win = win[:, ::-1]
        if vflip[b]:
            win = win[::-1]
        out[b] = win
    return out


def _wrap_coord(v, n):
    # scipy.ndimage's 'wrap' (Keras's fill_mode="wrap" goes through it): period n - 1
    if n <= 1:
        return np.zeros_like(v)
    sz = n - 1
    v = np.where(v < 0, v + sz * (np.trunc(-v / sz) + 1), v)
    return np.where(v > n - 1, v - sz * np.trunc(v / sz), v)


def _reflect_index(i, n):
    if n <= 1:
        return np.zeros_like(i)
    i = np.mod(i, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def round_half_away(v):
    """C's round(): halves go away from zero (TensorFlow's nearest-neighbour warp rounds so)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _fix_index(i, n, fill_mode):
    """Integer taps -> indices inside [0, n); also the mask of taps that read cval."""
    if fill_mode == "reflect":
        return _reflect_index(i, n), None
    if fill_mode == "grid-wrap":
        return np.mod(i, n), None
    if fill_mode == "grid-constant":
        return np.clip(i, 0, n - 1), (i < 0) | (i > n - 1)
    return np.clip(i, 0, n - 1), None


def warp_affine(x, matrices, size, fill_mode, cval, interpolation="bilinear"):
    """Affine warp: output (r, c) samples input position matrices[b] @ (r, c, 1), bilinear or
    nearest (the position rounded half away from zero)."""
    n, h, w, ch = x.shape
    oh, ow = size
    r, c = np.meshgrid(np.arange(oh, dtype=np.float64), np.arange(ow, dtype=np.float64), indexing="ij")
    m = np.asarray(matrices, np.float64)
    sr = m[:, 0, 0, None, None] * r + m[:, 0, 1, None, None] * c + m[:, 0, 2, None, None]
    sc = m[:, 1, 0, None, None] * r + m[:, 1, 1, None, None] * c + m[:, 1, 2, None, None]
    outside = (sr < 0) | (sr > h - 1) | (sc < 0) | (sc > w - 1)
    if fill_mode == "nearest":
        sr, sc = np.clip(sr, 0, h - 1), np.clip(sc, 0, w - 1)
    elif fill_mode == "wrap":
        sr, sc = _wrap_coord(sr, h), _wrap_coord(sc, w)
    bi = np.arange(n)[:, None, None]
    xd = x.astype(np.float64)
    if interpolation == "nearest":
        (ri, rbad), (ci, cbad) = (_fix_index(round_half_away(sr).astype(np.int64), h, fill_mode),
                                  _fix_index(round_half_away(sc).astype(np.int64), w, fill_mode))
        out = xd[bi, ri, ci]
        if fill_mode == "grid-constant":
            out[rbad | cbad] = cval
    else:
        r0, c0 = np.floor(sr), np.floor(sc)
        fr, fc = (sr - r0)[..., None], (sc - c0)[..., None]
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        (r0, r0bad), (r1, r1bad) = _fix_index(r0, h, fill_mode), _fix_index(r0 + 1, h, fill_mode)
        (c0, c0bad), (c1, c1bad) = _fix_index(c0, w, fill_mode), _fix_index(c0 + 1, w, fill_mode)

        def tap(ri, rbad, ci, cbad):
            v = xd[bi, ri, ci]
            if rbad is not None:
                v[rbad | cbad] = cval
            return v
        out = ((1 - fr) * ((1 - fc) * tap(r0, r0bad, c0, c0bad) + fc * tap(r0, r0bad, c1, c1bad))
               + fr * ((1 - fc) * tap(r1, r1bad, c0, c0bad) + fc * tap(r1, r1bad, c1, c1bad)))
    if fill_mode == "constant":
        out[outside] = cval
    return out.astype(np.float32)


def color_jitter(x, brightness, contrast, value_range):
    xf = x.astype(np.float32)
    mean = x.astype(np.float64).mean(axis=(1, 2), keepdims=True).astype(np.float32)
    out = (xf - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return np.clip(out, value_range[0], value_range[1]).astype(np.float32)


def to_float(x, rescale, mean, inv_std):
    return ((x.astype(np.float32) * np.float32(rescale) - mean) * inv_std).astype(np.float32)
