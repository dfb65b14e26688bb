"""Crash-safe file writes shared by the run folder and the privacy ledger.

Hand-written because the standard library has no atomic replace-with-fsync:
the data goes to a temp file in the same folder, is fsync'd, replaces the
target with ``os.replace``, and the folder is fsync'd so the rename survives a
power cut. Readers see the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``; ``mode`` defaults to 0666 minus the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # its error names the folder at fault
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _naming(err, path) from err
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise
    fsync_dir(path.parent)


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` as an ``OSError`` of the same kind that names ``path`` (the file the caller
    asked for, not the temp file): a full or read-only disk then reads "PATH: No space
    left on device". Errors without an errno are passed on unchanged."""
    if err.errno is None:
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))
