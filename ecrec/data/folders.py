"""User paths and data folders: paths refused with one line, output folders checked before
any work, and a data folder built beside its destination and renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ecrec.atomic import fsync_dir
from ecrec.data.schema import MANIFEST_FILE, MERCHANT_FILE_PATTERN, VALIDATION_FILE, short_repr
from ecrec.errors import ConfigError, DataError

#: Longest path the CLI accepts (Linux PATH_MAX).
MAX_PATH_CHARS = 4096


def check_user_path(text: str | os.PathLike[str], *, option: str) -> Path:
    """A path typed by the user, refused with a one-line error if no file system could hold it.

    NUL bytes and control characters would otherwise surface as tracebacks
    (``ValueError: embedded null byte``) or as confusing file names.
    """
    value = os.fspath(text)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not value.strip():
        raise ConfigError(f"{option}: empty path")
    if len(value) > MAX_PATH_CHARS:
        raise ConfigError(f"{option}: path longer than {MAX_PATH_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ConfigError(f"{option}: {short_repr(value)}: control character in path")
    return Path(value)


def _is_data_dir_entry(path: Path) -> bool:
    """What a data folder may hold; anything else means the folder is not ours to replace."""
    prefix, suffix = MERCHANT_FILE_PATTERN.split("{merchant_id}")
    name = path.name
    return path.is_file() and (
        name in (VALIDATION_FILE, MANIFEST_FILE)
        or (name.startswith(prefix) and name.endswith(suffix))
    )


def check_output_dir(out: Path, *, replace: bool) -> None:
    """Refuse an output folder that cannot take a new marketplace, before any work is done."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"{out}: exists and is not a folder")
    if not out.exists():
        return
    entries = sorted(out.iterdir())
    if not entries:
        return
    foreign = [e for e in entries if not _is_data_dir_entry(e)]
    if foreign:
        raise DataError(
            f"{out}: holds files that are not part of a marketplace "
            f"(e.g. {foreign[0].name!r}); choose an empty or new folder"
        )
    if not replace:
        raise DataError(
            f"{out}: already holds a marketplace; "
            "choose another folder or pass --force to replace it"
        )


def publish_data_dir(
    write: Callable[[Path], object], out: str | os.PathLike[str], *, replace: bool = False
) -> Path:
    """Build a data folder with ``write(tmp_folder)`` and rename it into place as ``out``.

    The folder is written beside ``out`` (same file system), fsync'd, and only
    then renamed, so readers and a later crash see either the old folder or
    the complete new one, never a mix; on any failure the temp folder is
    removed and ``out`` is left as it was. With ``replace`` an existing
    marketplace in ``out`` is swapped out (renamed aside, then deleted).
    Hand-written because no standard library call swaps folders atomically.
    """
    out = Path(out).absolute()
    check_output_dir(out, replace=replace)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        for entry in tmp.iterdir():
            if entry.is_file() and not entry.is_symlink():
                with entry.open("rb") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(tmp)
        check_output_dir(out, replace=replace)  # nobody filled it meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "data")
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old / "data", out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    fsync_dir(out.parent)
    return out
