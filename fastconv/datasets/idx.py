"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the row-major data. The reader checks every one of those fields and that
the payload length is exactly the product of the dimensions, so a truncated download or a wrong
file is a ``ValueError`` naming the file, never a silently garbled array.

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "a-idx2-ubyte.gz")
>>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
>>> read_idx(p)
array([[0, 1, 2],
       [3, 4, 5]], dtype=uint8)
"""
import gzip
import os
import struct
import zlib

import numpy as np

from ..saving.atomic import atomic_write

# dtype code -> big-endian numpy dtype (the IDX spec stores multi-byte values big-endian)
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises EOFError for a cut-off stream and BadGzipFile/zlib.error for bad bytes
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e}); delete the file and "
                         "download it again") from None


def parse_idx(data, name="<bytes>"):
    """Decode IDX bytes into a native-endian numpy array, validating the header and length."""
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(f"{name}: not an IDX file: magic number {data[:4].hex()} must start with 0000")
    if code not in _DTYPES:
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02x}; expected one of "
                         f"{', '.join(f'0x{c:02x}' for c in _DTYPES)}")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                         f"file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise ValueError(f"{name}: IDX payload {what}: shape {dims} of {dtype.name} needs "
                         f"{expected} bytes after the header, found {got}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def read_idx(path):
    """Read a raw or gzip-compressed IDX file (detected from its content, not its name)."""
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), name=path)


def write_idx(path, array):
    """Write `array` as IDX; gzip-compressed when `path` ends in '.gz'. Used by tests and tools."""
    path = os.fspath(path)
    array = np.asarray(array)
    if array.dtype not in _CODES:
        raise TypeError(f"array dtype {array.dtype} has no IDX code; use one of "
                        f"{sorted(str(d) for d in _CODES)}")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"array must have 1..255 dimensions, got {array.ndim}")
    code = _CODES[array.dtype]
    payload = (struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
               + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes())
    if path.endswith(".gz"):
        payload = gzip.compress(payload)
    with atomic_write(path) as f:
        f.write(payload)
