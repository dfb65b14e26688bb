"""The run folder: the stable on-disk record of one federated run.

Layout (DESIGN.md "Run folder")::

    config.toml          resolved configuration
    metrics.jsonl        one JSON object per evaluated round (0 = before training)
    privacy.json         per-merchant privacy spend, from what nodes reported
    fairness.json        the fairness audit after every round (trend) and its flags
    explanations.json    SHAP attributions (+ explanations/ with text plots and charts)
    privacy_report.*     the privacy budget report (json, md, png)
    privacy_audit.*      the membership-inference audit (json, md), from `ecrec privacy audit`
    report.html          everything above in one self-contained page
    failure.txt          why the last launch stopped (removed when a launch starts again)
    checkpoints/
      round_0003.npz     global adapter after round 3 (named float32 arrays), plus the
                         strategy's own state (e.g. FedAdam's moments) as __strategy__.* arrays
      server_state.json  last completed round + per-round node reports, for --resume

This module does all of a run's artefact I/O; the computation modules return values.
Every write is atomic (temp file + ``os.replace``) so a crash leaves the last
good version in place.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ecrec.atomic import atomic_write_bytes
from ecrec.errors import EcrecError

CHECKPOINTS = "checkpoints"
FAILURE = "failure.txt"
SERVER_STATE = "server_state.json"
PRIVACY_AUDIT = "privacy_audit.json"
STRATEGY_PREFIX = "__strategy__."


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN/inf become null: JSON has no NaN, and readers must not choke."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def atomic_write_json(path: Path, payload: Any) -> None:
    text = json.dumps(_clean(payload), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


class RunFolder:
    """Reads and writes one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def privacy_path(self) -> Path:
        return self.path / "privacy.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint_path(self, server_round: int) -> Path:
        return self.checkpoints / f"round_{server_round:04d}.npz"

    # -- writing -------------------------------------------------------------
    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, toml_text: str) -> None:
        atomic_write_bytes(self.config_path, toml_text.encode("utf-8"))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one round's record; an earlier record for the same round is replaced."""
        records = [r for r in self.read_metrics() if r.get("round") != record.get("round")]
        records.append(dict(record))
        records.sort(key=lambda r: r.get("round", 0))
        lines = [json.dumps(_clean(r), default=_json_default, allow_nan=False) for r in records]
        atomic_write_bytes(self.metrics_path, ("\n".join(lines) + "\n").encode("utf-8"))

    def write_failure(self, message: str) -> None:
        """Why the run stopped (read by ``ecrec-server``, which cannot see the ServerApp's
        exception); removed when a later launch completes a round."""
        atomic_write_bytes(self.path / FAILURE, (message + "\n").encode("utf-8"))

    def read_failure(self) -> str | None:
        path = self.path / FAILURE
        return path.read_text("utf-8").strip() if path.exists() else None

    def clear_failure(self) -> None:
        (self.path / FAILURE).unlink(missing_ok=True)

    def write_privacy(self, payload: Mapping[str, Any]) -> None:
        atomic_write_json(self.privacy_path, payload)

    def append_fairness(self, server_round: int, audit: Mapping[str, Any]) -> Path:
        """Record one round's audit in ``fairness.json`` (the trend over rounds)."""
        from ecrec.fairness.store import append_fairness

        return append_fairness(self.path, server_round, audit)

    def write_explanations(self, result: Mapping[str, Any]) -> None:
        """``explanations.json`` and ``explanations/`` (text plots, global charts)."""
        from ecrec.explain import write_explanations

        write_explanations(result, self.path)

    def write_privacy_report(self) -> list[Path]:
        """``privacy_report.{json,md,png}`` from ``privacy.json`` (and local ledgers)."""
        from ecrec.report.privacy_report import write_privacy_report

        return write_privacy_report(self.path)[1]

    def write_privacy_audit(self, result: Mapping[str, Any]) -> list[Path]:
        """``privacy_audit.{json,md}`` (:func:`ecrec.privacy.audit_run.audit_run`'s result)."""
        from ecrec.report.privacy_audit import to_markdown

        json_path, md_path = self.path / PRIVACY_AUDIT, self.path / "privacy_audit.md"
        atomic_write_json(json_path, result)
        atomic_write_bytes(md_path, to_markdown(dict(result)).encode("utf-8"))
        return [json_path, md_path]

    def read_privacy_audit(self) -> dict[str, Any] | None:
        """The last membership-inference audit, or None when the run has none."""
        path = self.path / PRIVACY_AUDIT
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as err:
            raise EcrecError(f"{path}: invalid JSON: {err.msg}") from None

    def write_html_report(self) -> Path:
        """``report.html``: the whole run in one self-contained page."""
        from ecrec.report.html import write_report

        return write_report(self.path)

    def save_checkpoint(
        self,
        server_round: int,
        state: Mapping[str, np.ndarray],
        server_state: Mapping[str, Any],
        *,
        extra_arrays: Mapping[str, np.ndarray] | None = None,
    ) -> Path:
        """Save the global adapter after ``server_round``, the strategy's arrays and the
        server state (written last: it is what says the round is complete)."""
        path = self.checkpoint_path(server_round)
        buffer = io.BytesIO()
        arrays = {name: np.asarray(a, dtype=np.float32) for name, a in state.items()}
        for name, value in (extra_arrays or {}).items():
            arrays[STRATEGY_PREFIX + name] = np.asarray(value)
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
        atomic_write_json(self.checkpoints / SERVER_STATE, {**server_state, "round": server_round})
        return path

    # -- reading -------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise EcrecError(f"{self.metrics_path}:{number}: invalid JSON: {err.msg}") from None
        return records

    def read_server_state(self) -> dict[str, Any] | None:
        path = self.checkpoints / SERVER_STATE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as err:
            raise EcrecError(f"{path}: corrupt server state: {err.msg}") from None

    def load_checkpoint(self, server_round: int) -> dict[str, np.ndarray]:
        """The global adapter saved after ``server_round``."""
        return self._load_arrays(server_round)[0]

    def load_strategy_arrays(self, server_round: int) -> dict[str, np.ndarray]:
        """The strategy state saved with round ``server_round`` (empty for FedAvg)."""
        return self._load_arrays(server_round)[1]

    def _load_arrays(
        self, server_round: int
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        path = self.checkpoint_path(server_round)
        if not path.exists():
            raise EcrecError(f"{path}: checkpoint missing")
        with np.load(path) as data:
            adapter = {
                name: data[name].astype(np.float32)
                for name in data.files
                if not name.startswith(STRATEGY_PREFIX)
            }
            strategy = {
                name[len(STRATEGY_PREFIX) :]: np.array(data[name])
                for name in data.files
                if name.startswith(STRATEGY_PREFIX)
            }
        return adapter, strategy

    def latest(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]] | None:
        """The last completed round, its global adapter and server state (for --resume)."""
        server_state = self.read_server_state()
        if server_state is None:
            return None
        server_round = int(server_state["round"])
        return server_round, self.load_checkpoint(server_round), server_state


def format_round_line(record: Mapping[str, Any], *, k: int) -> str:
    """One console line for a ``metrics.jsonl`` record (simulation and server alike)."""

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    line = (
        f"round {record['round']}: ndcg@{k}={fmt(record.get(f'ndcg@{k}'))} "
        f"mrr@{k}={fmt(record.get(f'mrr@{k}'))} auc={fmt(record.get('auc'))}"
    )
    if "trained" in record and record["round"]:
        line += f"  trained: {len(record['trained'])}"
    eps = ", ".join(f"{m}={v:.2f}" for m, v in sorted((record.get("epsilon") or {}).items()) if v)
    if eps:
        line += f"  ε ({record.get('epsilon_accountant', '?')}): {eps}"
    if record.get("declined"):
        line += f"  declined: {', '.join(record['declined'])}"
    if record.get("skipped"):
        line += f"  SKIPPED: {record['skipped']}"
    if record.get("fairness_flags"):
        line += f"  fairness flags: {record['fairness_flags']}"
    return line
