"""``ecrec privacy audit RUN``: a membership-inference attack on a run's global ranker.

The attacker holds the final global ranker (what the platform and, once deployed,
anyone querying it has) and a row; it guesses whether the row was in the audited
merchant's training data. Members are the rows that merchant's node really trained on
(its data file as read by the node, the canaries left out, the per-shopper row cap
applied as :func:`ecrec.train.local.dp_units` applies it); non-members are the rows of
the shoppers held out of the same merchant's data (``<data>/membership/``, written by
``ecrec data synth --audit-holdout``), capped the same way. Both are scored with:

* ``loss``: the per-example loss of the global ranker (BCE against the target the
  node trained on: graded relevance / 3 where the ranker trains on it, else the label);
* ``calibrated``: the reference-model attack -- the loss under the round-0 global
  ranker (the shared starting point, trained on nothing) minus the loss under the
  final one, i.e. how much training lowered this row's loss. It needs one more scoring
  pass, no shadow training, so it fits a CPU.

Canaries planted in that merchant's data are ranked among their never-inserted
reference codes (exposure), under the final ranker and, as the no-memory baseline,
under the round-0 one. Everything returned is JSON-ready; nothing is written here
(:meth:`ecrec.runfolder.RunFolder.write_privacy_audit` does that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.schema import MERCHANT_FILE_PATTERN, USER_ID
from ecrec.errors import EcrecError
from ecrec.privacy.audit import DEFAULT_FPR, attack_summary, bce_per_example, exposure_summary
from ecrec.privacy.audit_data import CANARY_ID, MembershipData, read_membership


def _targets(ranker: Any, frame: pd.DataFrame) -> np.ndarray:
    """What the node trained this ranker towards, row by row."""
    if hasattr(ranker, "training_targets"):
        return np.asarray(ranker.training_targets(frame), dtype=np.float64)
    return frame["label"].to_numpy(dtype=np.float64)


def _trained_unit(config: Any, has_user_ids: bool) -> str:
    """The DP unit a node trains with when its ledger is not at hand: the run's request,
    else the default policy's choice (user wherever shopper ids exist)."""
    if config.privacy.unit in ("user", "row"):
        return str(config.privacy.unit)
    return "user" if has_user_ids else "row"


def _kept(frame: pd.DataFrame, *, unit: str, max_rows_per_user: int) -> pd.DataFrame:
    from ecrec.train.local import dp_units

    if unit == "user" and USER_ID not in frame.columns:
        unit = "row"
    rows = dp_units(frame, unit=unit, max_rows_per_user=max_rows_per_user).rows  # type: ignore[arg-type]
    return frame.iloc[np.sort(rows)].reset_index(drop=True)


def _privacy_of(run_dir: Path, merchant: str) -> dict[str, Any]:
    """The audited merchant's spend from its own ledger, where the run folder holds it (a
    simulation); empty for a deployment, whose ledgers stay on the merchants' nodes."""
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.simulation import NODES_FILE, simulated_nodes

    nodes_file = run_dir / NODES_FILE
    if not nodes_file.is_file():
        return {}
    for node in simulated_nodes(nodes_file):
        if node.ledger_path.stem != merchant or not node.ledger_path.is_file():
            continue
        ledger = PrivacyLedger.load(
            node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
        )
        summary = ledger.summary()
        return {
            "epsilon": summary["spent"],
            "accountant": summary["accountant"],
            "delta": summary["delta"],
            "unit": summary["unit"],
            "budget": summary["budget"],
            "noise_multipliers": [float(s.noise_multiplier) for s in ledger.history],
            "sample_rates": [float(s.sample_rate) for s in ledger.history],
            "steps": [int(s.steps) for s in ledger.history],
        }
    return {}


def _trained_rounds(run_dir: Path, merchant: str, up_to: int) -> list[int]:
    from ecrec.runfolder import RunFolder

    return [
        int(r["round"])
        for r in RunFolder(run_dir).read_metrics()
        if 0 < int(r.get("round", 0)) <= up_to and merchant in (r.get("trained") or [])
    ]


def audit_run(
    run_dir: str | Path,
    *,
    server_round: int | None = None,
    reference_round: int = 0,
    device: str = "cpu",
    fpr: float = DEFAULT_FPR,
    n_bootstrap: int = 1000,
    seed: int = 0,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The membership-inference audit of round ``server_round`` (default: the last)."""
    from ecrec.data.io import read_impressions
    from ecrec.run_context import checkpoint_round, load_run, validation_path
    from ecrec.runfolder import RunFolder

    status = on_status or (lambda _message: None)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    chosen = checkpoint_round(run_dir, server_round)
    config, ranker, _ = load_run(run_dir, server_round=chosen, device=device)
    reference_round = checkpoint_round(run_dir, reference_round)
    if reference_round >= chosen:
        raise EcrecError(
            f"reference round {reference_round} is not before audited round {chosen}: "
            "nothing to compare"
        )
    data_dir = validation_path(run_dir, config).parent
    membership = read_membership(data_dir)
    merchant = membership.merchant
    merchant_file = data_dir / MERCHANT_FILE_PATTERN.format(merchant_id=merchant)
    if not merchant_file.is_file():
        raise EcrecError(f"{merchant_file}: the audited merchant's data file is missing")
    frame = read_impressions(merchant_file)
    planted = set(membership.canaries["query_id"].astype(str))
    plain = frame[~frame["query_id"].astype(str).isin(planted)].reset_index(drop=True)
    privacy = _privacy_of(run_dir, merchant) if config.train.dp else {}
    unit = (
        "row"
        if not config.train.dp
        else privacy.get("unit") or _trained_unit(config, USER_ID in frame.columns)
    )
    cap = config.privacy.max_rows_per_user
    members = _kept(plain, unit=unit, max_rows_per_user=cap)
    others = _kept(membership.holdout.reset_index(drop=True), unit=unit, max_rows_per_user=cap)
    rows = pd.concat([members, others], ignore_index=True)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    clusters = (rows[USER_ID] if USER_ID in rows else rows["query_id"]).astype(str).to_numpy()
    batch = config.evaluation.batch_size
    targets = _targets(ranker, rows)

    status(f"scoring {len(rows)} rows with the round {chosen} global ranker...")
    loss_final = bce_per_example(ranker.score_frame(rows, batch_size=batch), targets)
    canary_final = _canary_scores(ranker, membership, batch) if planted else None
    status(f"scoring them with the round {reference_round} ranker (reference)...")
    run = RunFolder(run_dir)
    ranker.load_adapter_state(run.load_checkpoint(reference_round))
    loss_reference = bce_per_example(ranker.score_frame(rows, batch_size=batch), targets)
    canary_reference = _canary_scores(ranker, membership, batch) if planted else None

    status("bootstrapping the attacks...")
    common = {"clusters": clusters, "fpr": fpr, "n_bootstrap": n_bootstrap, "seed": seed}
    attacks = {
        "loss": attack_summary(-loss_final, is_member, **common),
        "calibrated": attack_summary(loss_reference - loss_final, is_member, **common),
    }
    for name, signal in (("loss", -loss_final), ("calibrated", loss_reference - loss_final)):
        attacks[name]["signal"] = (
            "-loss(final)" if name == "loss" else f"loss(round {reference_round}) - loss(final)"
        )
        attacks[name]["mean_signal"] = {
            "members": float(np.mean(signal[is_member])),
            "non_members": float(np.mean(signal[~is_member])),
        }
    result: dict[str, Any] = {
        "run": str(run_dir),
        "round": chosen,
        "reference_round": reference_round,
        "merchant": merchant,
        "merchant_trained_rounds": _trained_rounds(run_dir, merchant, chosen),
        "dp": bool(config.train.dp),
        "unit": unit,
        "privacy": privacy,
        "model": {
            "architecture": getattr(config.model, "architecture", "cross-encoder"),
            "base_model": config.model.base_model,
        },
        "targets": "graded" if _graded(ranker, rows) else "label",
        "members": len(members),
        "non_members": len(others),
        "mean_loss": {
            "members": float(np.mean(loss_final[is_member])),
            "non_members": float(np.mean(loss_final[~is_member])),
        },
        "attacks": attacks,
        "canaries": None,
        "setup": {
            "holdout": membership.setup.holdout,
            "canaries": membership.setup.canaries,
            "repeats": membership.setup.repeats,
            "references": membership.setup.references,
            "seed": membership.setup.seed,
        },
    }
    if canary_final is not None and canary_reference is not None:
        result["canaries"] = {
            "final": exposure_summary(*canary_final),
            "reference": exposure_summary(*canary_reference),
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _graded(ranker: Any, frame: pd.DataFrame) -> bool:
    targets = _targets(ranker, frame)
    return not np.array_equal(targets, frame["label"].to_numpy(dtype=np.float64))


def _canary_scores(
    ranker: Any, membership: MembershipData, batch: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each canary's score and its references' scores (canaries in canary-id order)."""
    canaries = membership.canaries.drop_duplicates(CANARY_ID).sort_values(CANARY_ID)
    refs = membership.references
    if not len(refs):
        raise EcrecError("the membership folder has canaries but no reference candidates")
    pairs = pd.concat([canaries, refs], ignore_index=True)
    scores = np.asarray(ranker.score_frame(pairs, batch_size=batch), dtype=np.float64)
    own = scores[: len(canaries)]
    ref_scores = scores[len(canaries) :]
    ref_ids = refs[CANARY_ID].astype(str).to_numpy()
    by_canary = [ref_scores[ref_ids == cid] for cid in canaries[CANARY_ID].astype(str)]
    return own, by_canary


__all__ = ["audit_run"]
