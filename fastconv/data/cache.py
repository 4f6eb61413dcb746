"""``Dataset.cache()``: keep the elements of the first complete pass and replay them.

In memory: the elements are kept in a list and later passes yield read-only views of them
(replaying costs no copy, and a consumer cannot change the cache by writing into a batch).
On disk (``cache(filename)``): the first pass streams the elements into shards
``<filename>.shard-NNNNN.npz`` (data only: ``np.load(allow_pickle=False)`` reads them back,
object arrays are refused) of at most ~64 MiB each, so resident memory stays bounded by one
shard; ``<filename>.index.json`` is written last. Every file is written atomically; a pass
that stops early writes no index, and the next pass starts the cache over (tf.data discards a
partial cache too). An existing complete cache is used as it is, even by a new program run,
as in tf.data: delete the files when the data changes.
"""
import json
import os

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
        shards, pending, size = [], [], 0
        for element in source:
            pending.append(element)
            size += sum(np.asarray(a).nbytes for a in leaves(element))
            if size >= _SHARD_BYTES or len(pending) >= _SHARD_ELEMENTS:
                shards.append(self._write_shard(len(shards), pending))
                pending, size = [], 0
            yield element
        if pending or not shards:
            shards.append(self._write_shard(len(shards), pending))
        with atomic_write(self.index_path, "w") as f:
            json.dump({"format": _FORMAT, "version": 1, "shards": shards}, f)

    def _write_shard(self, k, elements):
        arrays, descs = {}, []
        for i, element in enumerate(elements):
            values = leaves(element)
            for j, v in enumerate(values):
                a = np.asarray(v)
                if a.dtype == object:
                    raise TypeError(f"cache(filename=...) stores data only; element {i} holds an object "
                                    "array (strings, numbers and arrays of them are fine)")
                arrays[f"e{i}_{j}"] = a
            descs.append({"structure": describe(element), "leaves": len(values)})
        path = self._shard_path(k)
        with atomic_write(path, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        if descs and all(d == descs[0] for d in descs):  # the usual case: one description per shard
            return {"file": os.path.basename(path), "count": len(descs), "element": descs[0]}
        return {"file": os.path.basename(path), "elements": descs}
