"""``fairness.json`` in a run folder: the audit of every round (the trend).

File I/O kept apart from the audit, which only computes; this module is due to
move into the run-folder module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError
from ecrec.runfolder import atomic_write_json

FAIRNESS_FILE = "fairness.json"


def read_fairness(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``fairness.json``, or None when there is none yet."""
    path = Path(run_dir) / FAIRNESS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EcrecError(f"{path}: corrupt fairness record: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), list):
        raise EcrecError(f"{path}: corrupt fairness record: no 'rounds' list")
    return data


def append_fairness(run_dir: str | Path, server_round: int, audit: Mapping[str, Any]) -> Path:
    """Record one round's audit in ``<run>/fairness.json`` (atomically).

    The file is ``{"config": ..., "rounds": [{"round": r, ...audit}, ...],
    "latest": {...}}``: rounds sorted, a re-recorded round replaced, ``latest``
    the highest round and ``config`` its audit config, so the file holds the
    trend over training. A corrupt existing file is an error, not overwritten.
    """
    if isinstance(server_round, bool) or int(server_round) < 0:
        raise EcrecError(f"round must be a non-negative integer, got {server_round!r}")
    path = Path(run_dir) / FAIRNESS_FILE
    existing = read_fairness(run_dir) or {"rounds": []}
    entry = {"round": int(server_round), **{k: v for k, v in audit.items() if k != "round"}}
    rounds = [r for r in existing["rounds"] if r.get("round") != entry["round"]]
    rounds.append(entry)
    rounds.sort(key=lambda r: r.get("round", 0))
    latest = rounds[-1]
    atomic_write_json(path, {"config": latest.get("config"), "rounds": rounds, "latest": latest})
    return path
