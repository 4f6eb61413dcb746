"""``Dataset.cache()``: keep the elements of the first complete pass and replay them.

In memory: the elements are kept in a list and later passes yield read-only views of them
(replaying costs no copy, and a consumer cannot change the cache by writing into a batch).
On disk (``cache(filename)``): the first pass streams the elements into shards
``<filename>.shard-NNNNN.npz`` (data only: ``np.load(allow_pickle=False)`` reads them back,
object arrays are refused) of at most ~64 MiB each, written one element at a time, so resident memory stays bounded
by about one element; ``<filename>.index.json`` is written last. Every file is written atomically; a pass
that stops early writes no index, and the next pass starts the cache over (tf.data discards a
partial cache too). An existing complete cache is used as it is, even by a new program run,
as in tf.data: delete the files when the data changes.
"""
import contextlib
import json
import os
import zipfile

import numpy as np

from ..saving.atomic import atomic_write
from .structure import describe, leaves, map_structure, rebuild

_FORMAT = "fastconv-dataset-cache"
_SHARD_BYTES = 64 << 20
_SHARD_ELEMENTS = 4096


def _readonly(a):
    if isinstance(a, np.ndarray):
        a = a.view()
        a.flags.writeable = False
    return a


class MemoryCache:
    def __init__(self):
        self.elements = None  # set once a pass completes

    def iterate(self, make_source):
        if self.elements is not None:
            return (map_structure(_readonly, e) for e in self.elements)
        return self._fill(make_source())

    def _fill(self, source):
        kept = []
        for element in source:
            element = map_structure(_readonly, element)
            kept.append(element)
            yield element
        self.elements = kept


class FileCache:
    def __init__(self, filename):
        self.filename = os.fspath(filename)
        self.index_path = self.filename + ".index.json"
        folder = os.path.dirname(os.path.abspath(self.filename))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cache(filename={self.filename!r}): the folder {folder!r} does not exist")

    def _shard_path(self, k):
        return f"{self.filename}.shard-{k:05d}.npz"

    def iterate(self, make_source):
        if os.path.exists(self.index_path):
            return self._read(self._load_index())
        return self._write(make_source())

    def _load_index(self):
        try:
            with open(self.index_path, encoding="utf-8") as f:
                index = json.load(f)
            if index.get("format") != _FORMAT or not isinstance(index.get("shards"), list):
                raise ValueError("not a fastconv dataset cache index")
        except (OSError, ValueError) as e:
            raise ValueError(f"cache file {self.index_path!r} is unreadable ({e}); delete it to rebuild "
                             "the cache") from None
        return index

    def _read(self, index):
        folder = os.path.dirname(os.path.abspath(self.filename))
        for shard in index["shards"]:
            path = os.path.join(folder, os.path.basename(shard["file"]))
            with np.load(path, allow_pickle=False) as z:
                descs = shard["elements"] if "elements" in shard else [shard["element"]] * shard["count"]
                for i, desc in enumerate(descs):
                    values = [z[f"e{i}_{j}"] for j in range(desc["leaves"])]
                    values = [v[()] if v.ndim == 0 else v for v in values]
                    yield rebuild(desc["structure"], values)

    def _write(self, source):
        shards, shard = [], None
        try:
            for element in source:
                if shard is None:
                    shard = _ShardWriter(self._shard_path(len(shards)))
                shard.add(element)
                if shard.nbytes >= _SHARD_BYTES or shard.count >= _SHARD_ELEMENTS:
                    shards.append(shard.close())
                    shard = None
                yield element
            if shard is not None or not shards:
                shards.append((shard or _ShardWriter(self._shard_path(0))).close())
                shard = None
        finally:
            if shard is not None:  # the pass stopped early: drop the unfinished shard
                shard.discard()
        with atomic_write(self.index_path, "w") as f:
            json.dump({"format": _FORMAT, "version": 1, "shards": shards}, f)


class _ShardWriter:
    """One ``.npz`` shard written element by element (no element is held after `add`), so a
    file cache's resident memory stays at one element however large the shard grows; the
    zip goes to a temporary file that `close` renames into place (an atomic write)."""

    def __init__(self, path):
        self.path, self.count, self.nbytes, self.descs = path, 0, 0, []
        self._file_cm = atomic_write(path, "wb")
        self._zip = zipfile.ZipFile(self._file_cm.__enter__(), "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(self, element):
        values = leaves(element)
        arrays = [np.asarray(v) for v in values]
        for j, a in enumerate(arrays):
            if a.dtype == object:
                raise TypeError(f"cache(filename=...) stores data only; element {self.count} holds an object "
                                "array (strings, numbers and arrays of them are fine)")
        zf = self._zip
        for j, a in enumerate(arrays):
            with zf.open(f"e{self.count}_{j}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)
            self.nbytes += a.nbytes
        self.descs.append({"structure": describe(element), "leaves": len(values)})
        self.count += 1

    def close(self):
        self._zip.close()
        self._file_cm.__exit__(None, None, None)
        name, descs = os.path.basename(self.path), self.descs
        if descs and all(d == descs[0] for d in descs):  # the usual case: one description per shard
            return {"file": name, "count": len(descs), "element": descs[0]}
        return {"file": name, "elements": descs}

    def discard(self):
        with contextlib.suppress(Exception):
            self._zip.close()
        err = RuntimeError("unfinished cache shard")
        with contextlib.suppress(RuntimeError):
            self._file_cm.__exit__(RuntimeError, err, None)  # removes the temporary file
