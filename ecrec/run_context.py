"""Reopen a finished (or running) run folder: its config, ranker and validation shard.

``ecrec explain`` and ``ecrec audit`` both need "the global ranker of round R
of this run, and the data it was evaluated on". This module rebuilds exactly
that from what the run folder records, and turns every way a folder can be
missing or incomplete into a one-line :class:`~ecrec.errors.EcrecError`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pandas as pd

from ecrec.config import RunConfig, load_config
from ecrec.data.schema import VALIDATION_FILE
from ecrec.errors import EcrecError
from ecrec.model.ranker import Ranker, build_ranker
from ecrec.runfolder import RunFolder

_CHECKPOINT = re.compile(r"^round_(\d{4,})\.npz$")

__all__ = ["available_rounds", "checkpoint_round", "load_run", "validation_path"]


def _run_folder(run_dir: str | Path) -> RunFolder:
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise EcrecError(f"{run.path}: no such run folder")
    if not run.config_path.is_file():
        raise EcrecError(f"{run.config_path}: missing (not a run folder, or the run never started)")
    return run


def available_rounds(run_dir: str | Path) -> list[int]:
    """Rounds with a saved global adapter (``checkpoints/round_XXXX.npz``), ascending."""
    folder = RunFolder(run_dir).checkpoints
    if not folder.is_dir():
        return []
    rounds = []
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match:
            rounds.append(int(match.group(1)))
    return sorted(rounds)


def checkpoint_round(run_dir: str | Path, server_round: int | None = None) -> int:
    """The round to load: ``server_round`` if given, else the last completed one.

    "Last completed" is the round in ``checkpoints/server_state.json`` (written
    after a round's checkpoint), falling back to the highest checkpoint file.
    """
    run = _run_folder(run_dir)
    rounds = available_rounds(run.path)
    if not rounds:
        raise EcrecError(f"{run.checkpoints}: no checkpoints (the run has not completed a round)")
    if server_round is not None:
        if server_round not in rounds:
            raise EcrecError(
                f"{run.checkpoint_path(server_round)}: no checkpoint for round {server_round} "
                f"(available: {_ranges(rounds)})"
            )
        return server_round
    state = run.read_server_state()
    if state is not None and isinstance(state.get("round"), int) and state["round"] in rounds:
        return int(state["round"])
    return rounds[-1]


def _ranges(rounds: list[int]) -> str:
    if rounds == list(range(rounds[0], rounds[-1] + 1)) and len(rounds) > 2:
        return f"{rounds[0]}-{rounds[-1]}"
    return ", ".join(str(r) for r in rounds)


def validation_path(run_dir: str | Path, config: RunConfig) -> Path:
    """Where the run's validation shard is.

    ``<run>/data/validation.parquet`` when the run synthesized its own data
    (``data.dir`` empty); otherwise ``data.dir/validation.parquet``, trying a
    relative ``data.dir`` first as given and then relative to the run folder.
    """
    run_dir = Path(run_dir)
    if not config.data.dir:
        return run_dir / "data" / VALIDATION_FILE
    data_dir = Path(config.data.dir)
    candidates = [data_dir / VALIDATION_FILE]
    if not data_dir.is_absolute():
        candidates.append(run_dir / data_dir / VALIDATION_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def load_run(
    run_dir: str | Path,
    *,
    server_round: int | None = None,
    device: str = "auto",
) -> tuple[RunConfig, Ranker, pd.DataFrame]:
    """``(config, ranker, validation)`` for round ``server_round`` (default: the last).

    The ranker is rebuilt from the run's own ``config.toml`` (same base model,
    LoRA shape and seed) and the round's global adapter is loaded into it; the
    validation frame is the whole shard (callers apply
    ``evaluation.max-queries`` if they want the server's view).
    """
    from ecrec.data.io import read_impressions

    run = _run_folder(run_dir)
    config = load_config(run.config_path)
    chosen = checkpoint_round(run.path, server_round)
    path = validation_path(run.path, config)
    if not path.is_file():
        raise EcrecError(
            f"{path}: validation shard not found (data.dir = {config.data.dir!r} in "
            f"{run.config_path})"
        )
    validation = read_impressions(path)
    try:
        state = run.load_checkpoint(chosen)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise EcrecError(f"{run.checkpoint_path(chosen)}: unreadable checkpoint: {err}") from None
    ranker = build_ranker(config.model, device=device)
    ranker.load_adapter_state(state)
    ranker.model.eval()
    return config, ranker, validation
