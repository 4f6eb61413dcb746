"""atomic_write: the one way fastconv writes a file.

The data goes to a temporary file in the target's folder (same file system, so the final
rename is atomic), is flushed and fsynced, and only then `os.replace`s the target. Any
failure before that -- a full disk, a file-size limit, Ctrl-C -- removes the temporary file
and leaves the previous file, if there was one, untouched: readers see the old file or the
new one, never half of one.

>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
>>> with atomic_write(p, "w") as f:
...     _ = f.write("hello")
>>> open(p).read()
'hello'
"""
import contextlib
import os
import secrets

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None, newline=None):
    """Context manager yielding a file object (mode "wb" or "w") whose contents replace `path`
    when the block ends without an exception."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 (not mkstemp's 0o600) so the new file gets the usual umask permissions;
    # O_EXCL never follows or reuses an existing name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        text = {"encoding": encoding or "utf-8", "newline": newline} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            fd = None  # the file object owns (and closes) it now
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary file behind
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    # Makes the rename itself durable across a power cut; not possible (nor needed) everywhere.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
