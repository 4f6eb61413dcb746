"""Decoding straight into batches: the image folder pipeline's map and batch as one stage
(tf.data fuses the same pair, "map_and_batch").

Why: as separate stages, every decoded image (a 600 KB float32 array at 224x224) was stacked
into its batch on the consumer's thread: a 19 MB copy per batch of 32, on the thread that
also feeds the model, while the decoding threads waited for room. Here each decoding thread
resizes its image straight into its row of the batch being filled (``out=``; paths that
cannot, such as Pillow's or padding, copy their result there, still on the decoding thread),
and a complete batch is handed over as it is. Measured in benchmarks/RESULTS.md.

Unreadable files (``bad_files="skip"``) leave their rows out: from the first skipped file on,
batches are cut again from the readable rows, so every batch but the last stays full, as
with a filter before the batch.
"""
import itertools

import numpy as np

from .parallel import ordered_map
from .stages import Batch


class DecodedBatches(Batch):
    """Batches of ``load_one(path)`` (float32 images of `image_shape`, or None for a file to
    skip) over the elements of `parent`: paths, or (path, label) pairs when `with_labels`."""

    def __init__(self, parent, load_one, batch_size, image_shape, workers, with_labels):
        super().__init__(parent, batch_size, drop_remainder=False)
        self.load_one, self.image_shape = load_one, tuple(image_shape)
        self.workers, self.with_labels = workers, with_labels

    def _iterate(self):
        return self._batches(self._parent._iterate())

    def _rows(self, source):
        """(batch buffer, row, element) for every element: a new buffer each batch_size elements."""
        while True:
            chunk = list(itertools.islice(source, self.batch_size))
            if not chunk:
                return
            buffer = np.empty((len(chunk),) + self.image_shape, np.float32)
            for row, element in enumerate(chunk):
                yield buffer, row, element

    def _decode_into(self, task):
        buffer, row, element = task
        target = buffer[row]
        image = self.load_one(str(element[0] if self.with_labels else element), out=target)
        if image is not None and not np.may_share_memory(image, target):
            target[...] = image  # not resized in place (Pillow, nearest, padding): copied, GIL released
        return buffer, row, element, image is not None

    def _batches(self, source):
        results = ordered_map(self._decode_into, self._rows(source), self.workers)
        kept, labels, carry = [], [], None  # carry: readable rows not yet batched, after a skip
        try:
            for buffer, row, element, ok in results:
                kept.append(ok)
                if self.with_labels:
                    labels.append(element[1])
                if row + 1 < len(buffer):
                    continue
                batch = (buffer, np.stack(labels)) if self.with_labels else (buffer,)
                if carry is None and all(kept):
                    yield batch if self.with_labels else buffer
                else:
                    rows = np.flatnonzero(kept)
                    part = tuple(a[rows] for a in batch)
                    carry = part if carry is None else tuple(map(np.concatenate, zip(carry, part)))
                    while len(carry[0]) >= self.batch_size:
                        out, carry = (tuple(a[:self.batch_size] for a in carry),
                                      tuple(a[self.batch_size:] for a in carry))
                        yield out if self.with_labels else out[0]
                    if not len(carry[0]):
                        carry = None  # back in step: whole buffers are handed over again
                kept, labels = [], []
            if carry is not None and len(carry[0]):
                yield carry if self.with_labels else carry[0]
        finally:
            results.close()  # stops the decoding threads when the consumer stops early
