# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Batch image kernels of the input pipeline, compiled (Cython, C++ mode, OpenMP).

Every function works on C-contiguous NHWC batches, checks nothing (fastconv.data.kernels
validates and calls these), releases the GIL and splits the batch over `num_threads` OpenMP
threads (one image per iteration, so each image's arithmetic is the same whatever the thread
count). The formulas are those of fastconv.data.kernels_numpy, operation for operation: that
module is the oracle the tests hold these to.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport floor, round
from libc.string cimport memcpy

ctypedef fused pixel_t:
    unsigned char
    float

# fill modes of warp_affine (same numbering as kernels_numpy.FILL_MODES)
cdef enum:
    CONSTANT = 0
    NEAREST = 1
    REFLECT = 2
    WRAP = 3
    GRID_CONSTANT = 4
    GRID_WRAP = 5

# what fastconv.data.kernels checks before handing this module a fill mode or interpolation that
# an older build lacks (2: the grid- modes and nearest-neighbour warps)
WARP_API = 2


cdef inline long long _clampi(long long i, long long n) noexcept nogil:
    return 0 if i < 0 else (n - 1 if i > n - 1 else i)


cdef inline void _hlerp_row(const pixel_t* r, float* dst, const long long* x0, const long long* x1,
                            const float* fx, Py_ssize_t ow, Py_ssize_t ch) noexcept nogil:
    # one source row interpolated along x: TF's "top" (or "bottom") values for every output column
    cdef Py_ssize_t j, c, a0, a1
    cdef float left, right, wx
    for j in range(ow):
        a0 = x0[j] * ch
        a1 = x1[j] * ch
        wx = fx[j]
        for c in range(ch):
            left = <float>r[a0 + c]
            right = <float>r[a1 + c]
            dst[j * ch + c] = left + (right - left) * wx


def resize_bilinear(const pixel_t[:, :, :, ::1] x, float[:, :, :, ::1] out,
                    const long long[::1] y0, const long long[::1] y1, const float[::1] fy,
                    const long long[::1] x0, const long long[::1] x1, const float[::1] fx,
                    float[:, :, ::1] work, int num_threads):
    """TensorFlow's half-pixel bilinear, separably: each needed source row is interpolated along
    x once into a per-thread buffer (`work`: (num_threads, 2, out_w * C)), and output rows blend
    two such rows along y - the same operations, in the same order, as TF's per-pixel formula.
    Taps and weights per row/column are precomputed by the caller."""
    cdef Py_ssize_t n = x.shape[0], oh = out.shape[1], ow = out.shape[2], ch = x.shape[3]
    cdef Py_ssize_t b, i, k, m = ow * ch
    cdef long long row_a, row_b, t
    cdef float* buf_a
    cdef float* buf_b
    cdef float* tmp
    cdef float* o
    cdef float wy
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        buf_a = &work[threadid(), 0, 0]
        buf_b = &work[threadid(), 1, 0]
        row_a = -1
        row_b = -1
        for i in range(oh):
            if y0[i] != row_a:
                if y0[i] == row_b:  # moving down: the old lower row is the new upper row
                    tmp = buf_a
                    buf_a = buf_b
                    buf_b = tmp
                    t = row_a
                    row_a = row_b
                    row_b = t
                else:
                    _hlerp_row(&x[b, y0[i], 0, 0], buf_a, &x0[0], &x1[0], &fx[0], ow, ch)
                    row_a = y0[i]
            if y1[i] != row_b:
                _hlerp_row(&x[b, y1[i], 0, 0], buf_b, &x0[0], &x1[0], &fx[0], ow, ch)
                row_b = y1[i]
            o = &out[b, i, 0, 0]
            wy = fy[i]
            for k in range(m):
                o[k] = buf_a[k] + (buf_b[k] - buf_a[k]) * wy


def gather_rows_cols(const pixel_t[:, :, :, ::1] x, pixel_t[:, :, :, ::1] out,
                     const long long[::1] rows, const long long[::1] cols, int num_threads):
    """out[b, i, j] = x[b, rows[i], cols[j]]: nearest-neighbour resize."""
    cdef Py_ssize_t n = x.shape[0], oh = out.shape[1], ow = out.shape[2], ch = x.shape[3]
    cdef Py_ssize_t b, i, j, c, a
    cdef const pixel_t* r
    cdef pixel_t* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(oh):
            r = &x[b, rows[i], 0, 0]
            o = &out[b, i, 0, 0]
            for j in range(ow):
                a = cols[j] * ch
                for c in range(ch):
                    o[j * ch + c] = r[a + c]


def resize_area(const pixel_t[:, :, :, ::1] x, float[:, :, :, ::1] out,
                const long long[:, ::1] yi, const float[:, ::1] yw, const long long[::1] yn,
                const long long[:, ::1] xi, const float[:, ::1] xw, const long long[::1] xn,
                float norm, float[:, ::1] work, int num_threads):
    """TensorFlow's area resize: each output pixel averages the input area it covers, border
    cells weighted by the fraction covered. Taps per output row/column (indices, weights,
    counts) are precomputed by the caller; sums go row by row, then weighted by row, as TF adds
    them. `work`: (num_threads, 2 * C) scratch."""
    cdef Py_ssize_t n = x.shape[0], ch = x.shape[3], oh = out.shape[1], ow = out.shape[2]
    cdef Py_ssize_t b, i, j, c, ky, kx, a
    cdef float wy, wx
    cdef const pixel_t* r
    cdef float* acc
    cdef float* racc
    cdef float* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        acc = &work[threadid(), 0]
        racc = acc + ch
        for i in range(oh):
            o = &out[b, i, 0, 0]
            for j in range(ow):
                for c in range(ch):
                    acc[c] = 0
                for ky in range(yn[i]):
                    r = &x[b, yi[i, ky], 0, 0]
                    wy = yw[i, ky]
                    for c in range(ch):
                        racc[c] = 0
                    for kx in range(xn[j]):
                        a = xi[j, kx] * ch
                        wx = xw[j, kx]
                        for c in range(ch):
                            racc[c] = racc[c] + wx * <float>r[a + c]
                    for c in range(ch):
                        acc[c] = acc[c] + wy * racc[c]
                for c in range(ch):
                    o[j * ch + c] = acc[c] * norm


def crop_flip(const pixel_t[:, :, :, ::1] x, pixel_t[:, :, :, ::1] out, const long long[::1] top,
              const long long[::1] left, const unsigned char[::1] hflip, const unsigned char[::1] vflip,
              int num_threads):
    """out[b] = the (oh, ow) window of x[b] at (top[b], left[b]), mirrored left-right where
    hflip[b] and up-down where vflip[b] (one pass: cropping and flipping are both copies)."""
    cdef Py_ssize_t n = x.shape[0], oh = out.shape[1], ow = out.shape[2], ch = x.shape[3]
    cdef Py_ssize_t b, i, j, c, si
    cdef const pixel_t* r
    cdef pixel_t* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(oh):
            si = top[b] + (oh - 1 - i if vflip[b] else i)
            r = &x[b, si, left[b], 0]
            o = &out[b, i, 0, 0]
            if hflip[b]:
                for j in range(ow):
                    for c in range(ch):
                        o[j * ch + c] = r[(ow - 1 - j) * ch + c]
            else:
                memcpy(o, r, ow * ch * sizeof(pixel_t))


cdef inline double _wrap_coord(double v, Py_ssize_t n) noexcept nogil:
    # scipy.ndimage's 'wrap' (what Keras's ImageDataGenerator uses): period n - 1
    cdef long long sz = n - 1
    if n <= 1:
        return 0
    if v < 0:
        v = v + sz * (<long long>(-v / sz) + 1)
    elif v > n - 1:
        v = v - sz * <long long>(v / sz)
    return v


cdef inline long long _reflect_index(long long i, Py_ssize_t n) noexcept nogil:
    # half-sample symmetric: ... c b a | a b c | c b a ...
    cdef long long p = 2 * n
    if 0 <= i < n:  # the common case: no division
        return i
    if n <= 1:
        return 0
    i = i % p
    if i < 0:
        i = i + p
    return i if i < n else p - 1 - i


cdef inline long long _fix_index(long long i, Py_ssize_t n, int mode) noexcept nogil:
    # an integer tap -> an index inside [0, n), or -1 for a tap that reads cval (grid-constant)
    if mode == REFLECT:
        return _reflect_index(i, n)
    if mode == GRID_WRAP:
        i = i % n
        return i + n if i < 0 else i
    if mode == GRID_CONSTANT and (i < 0 or i > n - 1):
        return -1
    return _clampi(i, n)


cdef inline double _tap(const pixel_t* img, long long r, long long c, Py_ssize_t w, Py_ssize_t ch,
                        Py_ssize_t k, double cval) noexcept nogil:
    if r < 0 or c < 0:
        return cval
    return <double>img[(r * w + c) * ch + k]


def warp_affine(const pixel_t[:, :, :, ::1] x, float[:, :, :, ::1] out, const double[:, :, ::1] m,
                int mode, double cval, int bilinear, int num_threads):
    """Inverse-mapped affine warp: output pixel (r, c) samples input position
    (m[b,0,0]*r + m[b,0,1]*c + m[b,0,2], m[b,1,0]*r + m[b,1,1]*c + m[b,1,2]), bilinear or (bilinear
    = 0) nearest, the position rounded half away from zero; positions outside the image follow
    `mode` (kernels_numpy.FILL_MODES: scipy.ndimage's names and order=1 rules)."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], ch = x.shape[3]
    cdef Py_ssize_t oh = out.shape[1], ow = out.shape[2]
    cdef Py_ssize_t b, i, j, c
    cdef double sr, sc, fr, fc, v
    cdef long long r0, c0, r1, c1
    cdef const pixel_t* img
    cdef float* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        img = &x[b, 0, 0, 0]
        for i in range(oh):
            o = &out[b, i, 0, 0]
            for j in range(ow):
                sr = m[b, 0, 0] * i + m[b, 0, 1] * j + m[b, 0, 2]
                sc = m[b, 1, 0] * i + m[b, 1, 1] * j + m[b, 1, 2]
                if mode == CONSTANT:
                    if sr < 0 or sr > h - 1 or sc < 0 or sc > w - 1:
                        for c in range(ch):
                            o[j * ch + c] = <float>cval
                        continue
                elif mode == NEAREST:
                    sr = 0 if sr < 0 else (h - 1 if sr > h - 1 else sr)
                    sc = 0 if sc < 0 else (w - 1 if sc > w - 1 else sc)
                elif mode == WRAP:
                    sr = _wrap_coord(sr, h)
                    sc = _wrap_coord(sc, w)
                if not bilinear:
                    r0 = _fix_index(<long long>round(sr), h, mode)
                    c0 = _fix_index(<long long>round(sc), w, mode)
                    for c in range(ch):
                        o[j * ch + c] = <float>_tap(img, r0, c0, w, ch, c, cval)
                    continue
                r0 = <long long>floor(sr)
                c0 = <long long>floor(sc)
                fr = sr - r0
                fc = sc - c0
                # in range already for constant/nearest/wrap, except a weight-0 tap just past
                # the last pixel, which the clamp keeps inside
                r1 = _fix_index(r0 + 1, h, mode)
                c1 = _fix_index(c0 + 1, w, mode)
                r0 = _fix_index(r0, h, mode)
                c0 = _fix_index(c0, w, mode)
                if r0 < 0 or r1 < 0 or c0 < 0 or c1 < 0:  # grid-constant at the border: taps read cval
                    for c in range(ch):
                        v = ((1 - fr) * ((1 - fc) * _tap(img, r0, c0, w, ch, c, cval)
                                         + fc * _tap(img, r0, c1, w, ch, c, cval))
                             + fr * ((1 - fc) * _tap(img, r1, c0, w, ch, c, cval)
                                     + fc * _tap(img, r1, c1, w, ch, c, cval)))
                        o[j * ch + c] = <float>v
                    continue
                r0 = r0 * w
                r1 = r1 * w
                for c in range(ch):
                    v = ((1 - fr) * ((1 - fc) * <double>img[(r0 + c0) * ch + c] + fc * <double>img[(r0 + c1) * ch + c])
                         + fr * ((1 - fc) * <double>img[(r1 + c0) * ch + c] + fc * <double>img[(r1 + c1) * ch + c]))
                    o[j * ch + c] = <float>v


def color_jitter(const pixel_t[:, :, :, ::1] x, float[:, :, :, ::1] out, const float[::1] brightness,
                 const float[::1] contrast, float lo, float hi, double[:, ::1] work, int num_threads):
    """out = clip((x - mean) * contrast[b] + mean + brightness[b], lo, hi), mean taken per image
    and channel (tf.image.adjust_contrast's rule, then adjust_brightness). `work`:
    (num_threads, 2 * C) scratch for the channel sums and means."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], ch = x.shape[3]
    cdef Py_ssize_t b, p, c, npix = h * w
    cdef float v
    cdef double* acc
    cdef double* mean
    cdef const pixel_t* img
    cdef float* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        acc = &work[threadid(), 0]
        mean = acc + ch
        img = &x[b, 0, 0, 0]
        o = &out[b, 0, 0, 0]
        for c in range(ch):
            acc[c] = 0
        for p in range(npix):
            for c in range(ch):
                acc[c] = acc[c] + <double>img[p * ch + c]
        for c in range(ch):
            mean[c] = <float>(acc[c] / npix)
        for p in range(npix):
            for c in range(ch):
                v = (<float>img[p * ch + c] - <float>mean[c]) * contrast[b] + <float>mean[c] + brightness[b]
                o[p * ch + c] = lo if v < lo else (hi if v > hi else v)


def to_float(const unsigned char[:, :, :, ::1] x, float[:, :, :, ::1] out, float rescale,
             const float[::1] mean, const float[::1] inv_std, int num_threads):
    """out = (x * rescale - mean[c]) * inv_std[c]."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], ch = x.shape[3]
    cdef Py_ssize_t b, p, c, npix = h * w
    cdef const unsigned char* img
    cdef float* o
    for b in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        img = &x[b, 0, 0, 0]
        o = &out[b, 0, 0, 0]
        for p in range(npix):
            for c in range(ch):
                o[p * ch + c] = (<float>img[p * ch + c] * rescale - mean[c]) * inv_std[c]
