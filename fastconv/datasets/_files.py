"""Finding, downloading and verifying the IDX files of MNIST-style data sets.

Search order (first directory holding all four files wins):

1. the ``path=`` argument of ``load_data``;
2. ``$FASTCONV_DATA`` and ``$FASTCONV_DATA/<name>``;
3. ``~/.fastconv/datasets/<name>``;
4. ``~/.keras/datasets/<name>`` (where Keras caches them);
5. system directories, e.g. ``/usr/share/datasets/fashion-mnist`` from Debian's
   ``dataset-fashion-mnist`` package.

Each file may be gzip-compressed (``.gz``) or raw. When nothing is found and downloading is
allowed, the files are fetched from the canonical URLs into ``~/.fastconv/datasets/<name>``;
each download is checked against a SHA-256 before it is kept.
"""
import dataclasses
import gzip
import hashlib
import os
import urllib.error
import urllib.request

import numpy as np

from ..saving.atomic import atomic_write
from .idx import parse_idx, _read_bytes

# The root under which ``Spec.system_dirs`` are looked up. A seam for tests: they point it at an
# empty folder so that data installed on the machine (Debian's package) cannot leak into a test
# that expects nothing to be found.
SYSTEM_ROOT = os.sep

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str                      # directory name, e.g. "fashion-mnist"
    mirrors: tuple                 # base URLs, tried in order
    # per file: (sha256 of the .gz bytes or None, sha256 of the decompressed bytes or None).
    # Repackagers (Debian) recompress, so the decompressed hash is the robust one when known.
    sha256: dict
    system_dirs: tuple = ()
    debian_package: str = None
    keras_npz: str = None          # Keras caches MNIST as one ~/.keras/datasets/mnist.npz
    shapes: tuple = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))


def search_dirs(spec, path=None):
    """Directories searched for `spec`'s files, in order."""
    dirs = []
    if path is not None:
        dirs.append(os.fspath(path))
    env = os.environ.get("FASTCONV_DATA")
    if env:
        dirs += [env, os.path.join(env, spec.name)]
    home = os.path.expanduser("~")
    dirs += [os.path.join(home, ".fastconv", "datasets", spec.name),
             os.path.join(home, ".keras", "datasets", spec.name)]
    dirs += system_dirs(spec)
    return dirs


def system_dirs(spec):
    """`spec.system_dirs` placed under `SYSTEM_ROOT` (unchanged when it is the real root)."""
    return [os.path.join(SYSTEM_ROOT, os.path.relpath(d, os.sep)) if os.path.isabs(d) else d
            for d in spec.system_dirs]


def _find_in(directory):
    found = []
    for base in FILES:
        for cand in (base + ".gz", base, base.replace("-idx", ".idx") + ".gz", base.replace("-idx", ".idx")):
            p = os.path.join(directory, cand)
            if os.path.isfile(p):
                found.append(p)
                break
        else:
            return None
    return found


def find_files(spec, path=None):
    """The four file paths from the first directory that has them all, or None."""
    if path is not None and not os.path.isdir(os.fspath(path)):
        raise FileNotFoundError(f"path={os.fspath(path)!r} is not a directory")
    for d in search_dirs(spec, path):
        files = _find_in(d)
        if files:
            return files
    return None


def _check_digest(spec, base, data_gz, data_raw, origin):
    want_gz, want_raw = spec.sha256[base]
    if want_gz and hashlib.sha256(data_gz).hexdigest() == want_gz:
        return
    if want_raw and hashlib.sha256(data_raw).hexdigest() == want_raw:
        return
    raise ValueError(f"{origin}: SHA-256 mismatch for {base} (got "
                     f"{hashlib.sha256(data_gz).hexdigest()}); the download is corrupt or not "
                     f"the {spec.name} file, so it was not kept")


def _urlopen(url, timeout):
    return urllib.request.urlopen(url, timeout=timeout)  # tests replace this to serve local bytes


def download(spec, dest=None, timeout=30):
    """Fetch the four files into `dest` (default ``~/.fastconv/datasets/<name>``), verified."""
    dest = dest or os.path.join(os.path.expanduser("~"), ".fastconv", "datasets", spec.name)
    os.makedirs(dest, exist_ok=True)
    paths = []
    for base in FILES:
        target = os.path.join(dest, base + ".gz")
        if not os.path.isfile(target):
            errors = []
            for mirror in spec.mirrors:
                url = mirror.rstrip("/") + "/" + base + ".gz"
                try:
                    with _urlopen(url, timeout) as r:
                        blob = r.read()
                except (urllib.error.URLError, OSError) as e:
                    errors.append(f"{url}: {e}")
                    continue
                try:
                    raw = gzip.decompress(blob)
                except Exception as e:  # noqa: BLE001 - any decode failure means a bad download
                    errors.append(f"{url}: not gzip data ({e})")
                    continue
                try:
                    _check_digest(spec, base, blob, raw, url)
                except ValueError as e:  # a bad mirror: try the next one
                    errors.append(str(e))
                    continue
                with atomic_write(target) as f:  # an interrupted download leaves no half file
                    f.write(blob)
                break
            else:
                raise OSError("; ".join(errors) or "no mirrors configured")
        paths.append(target)
    return paths


def not_found_message(spec, path=None, reason=None):
    names = ", ".join(f + ".gz" for f in FILES)
    where = "\n".join("  " + d for d in search_dirs(spec, path))
    msg = (f"{spec.name} files not found. Put {names} (gzip-compressed or not) in one of:\n"
           f"{where}\n(or set FASTCONV_DATA to their directory, or pass path=).")
    if spec.debian_package:
        msg += f"\nOn Debian/Ubuntu: sudo apt-get install {spec.debian_package}"
    msg += f"\nThey can be downloaded from {spec.mirrors[0]}"
    if reason:
        msg += f"\nDownload failed: {reason}"
    return msg


def load(spec, path=None, download_if_missing=True):
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays, found or downloaded."""
    files = find_files(spec, path)
    if files is None and spec.keras_npz:
        npz = os.path.join(os.path.expanduser("~"), ".keras", "datasets", spec.keras_npz)
        if os.path.isfile(npz):
            with np.load(npz) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    if files is None:
        if not download_if_missing:
            raise FileNotFoundError(not_found_message(spec, path))
        try:
            files = download(spec)
        except OSError as e:
            raise FileNotFoundError(not_found_message(spec, path, reason=e)) from None
    arrays = []
    for p, shape in zip(files, spec.shapes):
        a = parse_idx(_read_bytes(p), name=p)
        if a.dtype != np.uint8 or a.shape != shape:
            raise ValueError(f"{p}: expected uint8 array of shape {shape}, found {a.dtype} {a.shape}")
        arrays.append(a)
    for p, labels in ((files[1], arrays[1]), (files[3], arrays[3])):
        if labels.max() > 9:
            raise ValueError(f"{p}: labels must be 0..9, found {int(labels.max())}")
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])
