"""The node's local journal: what happened on this node, kept on this node.

Training loss, timings, exact row counts, ε after every round and every decline
(with its reason) stay here, in one JSON object per line; only the masked update,
its weight and "trained or declined" go to the server (issue: minimal disclosure).
Appends are flushed and fsync'd, so the journal survives a crash as well as the
ledger does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ecrec.errors import EcrecError


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


class NodeJournal:
    """Append-only JSONL log of one merchant node's rounds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, event: str, **fields: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        record.update(_plain(fields))
        line = json.dumps(record, allow_nan=False, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line  # a crash tore the last record: start a fresh line
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:  # a full or read-only disk: say which file, in one line
            raise EcrecError(
                f"cannot append to node journal {self.path}: {err.strerror or err}"
            ) from err

    def records(self) -> list[dict[str, Any]]:
        """Every record; a torn last line (crash mid-append) is skipped."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text("utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


__all__ = ["NodeJournal"]
