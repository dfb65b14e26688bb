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

A single run compares different rows on the two sides, and with a few dozen shoppers per
side the luck of the split moves the AUC by about ±0.1. Given the mirror run (the same
federation on data made with ``--audit-mirror``: the held-out shoppers trained, the
trained ones held out), every row is scored by the run that trained on it and by the one
that did not, and the attacks compare those two signals (``ecrec privacy audit RUN
--mirror RUN2``).

Canaries planted in that merchant's data are ranked among their never-inserted
reference codes (exposure), under the final ranker and, as the no-memory baseline,
under the round-0 one. Everything returned is JSON-ready; nothing is written here
(:meth:`ecrec.runfolder.RunFolder.write_privacy_audit` does that).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.schema import MERCHANT_FILE_PATTERN, USER_ID
from ecrec.errors import EcrecError
from ecrec.privacy.audit import (
    DEFAULT_FPR,
    attack_summary,
    bce_per_example,
    exposure_summary,
    paired_attack_summary,
)
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


@dataclass
class _Scored:
    """One run's side of the audit: who is a member, and every row's losses."""

    run_dir: Path
    config: Any
    round: int
    reference_round: int
    membership: MembershipData
    privacy: dict[str, Any]
    unit: str
    members: pd.DataFrame
    others: pd.DataFrame
    targets: str
    loss_final: np.ndarray  # members' rows first, then the non-members'
    loss_reference: np.ndarray
    canary_final: tuple[np.ndarray, list[np.ndarray]] | None
    canary_reference: tuple[np.ndarray, list[np.ndarray]] | None

    @property
    def merchant(self) -> str:
        return self.membership.merchant

    @property
    def is_member(self) -> np.ndarray:
        return np.r_[np.ones(len(self.members), bool), np.zeros(len(self.others), bool)]

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat([self.members, self.others], ignore_index=True)


def _score(
    run_dir: Path,
    *,
    server_round: int | None,
    reference_round: int,
    device: str,
    status: Callable[[str], None],
) -> _Scored:
    """Load one run, pick its members and non-members, and score them under the audited
    and the reference global ranker."""
    from ecrec.data.io import read_impressions
    from ecrec.run_context import checkpoint_round, load_run, validation_path
    from ecrec.runfolder import RunFolder

    chosen = checkpoint_round(run_dir, server_round)
    config, ranker, _ = load_run(run_dir, server_round=chosen, device=device)
    reference_round = checkpoint_round(run_dir, reference_round)
    if reference_round >= chosen:
        raise EcrecError(
            f"{run_dir}: reference round {reference_round} is not before audited round "
            f"{chosen}: nothing to compare"
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
    batch = config.evaluation.batch_size
    targets = _targets(ranker, rows)
    graded = not np.array_equal(targets, rows["label"].to_numpy(dtype=np.float64))

    status(f"{run_dir}: scoring {len(rows)} rows with the round {chosen} global ranker...")
    loss_final = bce_per_example(ranker.score_frame(rows, batch_size=batch), targets)
    canary_final = _canary_scores(ranker, membership, batch) if planted else None
    status(f"{run_dir}: scoring them with the round {reference_round} ranker (reference)...")
    ranker.load_adapter_state(RunFolder(run_dir).load_checkpoint(reference_round))
    loss_reference = bce_per_example(ranker.score_frame(rows, batch_size=batch), targets)
    canary_reference = _canary_scores(ranker, membership, batch) if planted else None
    return _Scored(
        run_dir=run_dir, config=config, round=chosen, reference_round=reference_round,
        membership=membership, privacy=privacy, unit=unit, members=members, others=others,
        targets="graded" if graded else "label", loss_final=loss_final,
        loss_reference=loss_reference, canary_final=canary_final,
        canary_reference=canary_reference,
    )  # fmt: skip


def _clusters(rows: pd.DataFrame) -> np.ndarray:
    """The bootstrap's unit: the shopper where ids exist, else the query."""
    return (rows[USER_ID] if USER_ID in rows else rows["query_id"]).astype(str).to_numpy()


def _signals(scored: _Scored) -> dict[str, tuple[np.ndarray, str]]:
    """Each attack's membership signal over the run's rows (higher = member), and its name."""
    return {
        "loss": (-scored.loss_final, "-loss(final)"),
        "calibrated": (
            scored.loss_reference - scored.loss_final,
            f"loss(round {scored.reference_round}) - loss(final)",
        ),
    }


def _single_attacks(
    scored: _Scored, *, fpr: float, n_bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    is_member = scored.is_member
    common = {"clusters": _clusters(scored.rows), "fpr": fpr, "n_bootstrap": n_bootstrap}
    attacks = {}
    for name, (signal, label) in _signals(scored).items():
        attack = attack_summary(signal, is_member, seed=seed, **common)
        attack["signal"] = label
        attack["mean_signal"] = {
            "members": float(np.mean(signal[is_member])),
            "non_members": float(np.mean(signal[~is_member])),
        }
        attacks[name] = attack
    return attacks


#: What makes a row the same row in both runs of a mirrored pair.
_ROW_KEY = ("query_id", "product_id")


def _keys(frame: pd.DataFrame) -> pd.Index:
    return pd.MultiIndex.from_frame(frame[list(_ROW_KEY)].astype(str))


def _check_mirror(run: _Scored, mirror: _Scored) -> None:
    """Refuse a pair that is not the same federation on mirrored splits of one merchant."""
    a, b = run.membership.setup, mirror.membership.setup
    same = ("merchant", "holdout", "seed", "canaries", "repeats", "references")
    differing = [name for name in same if getattr(a, name) != getattr(b, name)]
    if differing or a.mirror == b.mirror:
        what = ", ".join(differing) if differing else "both have mirror=" + str(a.mirror)
        raise EcrecError(
            f"{mirror.run_dir} is not the mirror of {run.run_dir}: their membership setups "
            f"differ ({what}); make the pair with the same `ecrec data synth` options, the "
            "second with --audit-mirror"
        )
    for section in ("model", "train", "privacy", "federation"):
        if dataclasses.asdict(getattr(run.config, section)) != dataclasses.asdict(
            getattr(mirror.config, section)
        ):
            raise EcrecError(
                f"{mirror.run_dir} is not the mirror of {run.run_dir}: their [{section}] "
                "configs differ (a paired audit compares the same training on both halves)"
            )
    if run.round != mirror.round or run.unit != mirror.unit:
        raise EcrecError(
            f"{mirror.run_dir} is not the mirror of {run.run_dir}: audited round "
            f"{run.round} vs {mirror.round}, privacy unit {run.unit} vs {mirror.unit}"
        )
    for inside, outside, name in ((run, mirror, "training"), (mirror, run, "held-out")):
        trained, held = _keys(inside.members), _keys(outside.others)
        if len(trained) != len(held) or not trained.sort_values().equals(held.sort_values()):
            raise EcrecError(
                f"{mirror.run_dir} is not the mirror of {run.run_dir}: {len(trained)} rows "
                f"trained in {inside.run_dir}, {len(held)} held out in {outside.run_dir}, "
                f"{len(trained.intersection(held))} in both ({name} sides must match)"
            )


def _paired_attacks(
    run: _Scored, mirror: _Scored, *, fpr: float, n_bootstrap: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Every row's signal under the run that trained on it against the run that did not."""
    n_a, n_b = len(run.members), len(mirror.members)
    # Row order: run's members (= mirror's non-members), then mirror's members.
    order_a = _keys(mirror.others).get_indexer(_keys(run.members))
    order_b = _keys(run.others).get_indexer(_keys(mirror.members))
    rows = pd.concat([run.members, mirror.members], ignore_index=True)
    signals_run, signals_mirror = _signals(run), _signals(mirror)
    attacks = {}
    for name in signals_run:
        in_run, label = signals_run[name]
        in_mirror, _ = signals_mirror[name]
        inside = np.r_[in_run[:n_a], in_mirror[:n_b]]
        outside = np.r_[in_mirror[n_b:][order_a], in_run[n_a:][order_b]]
        attack = paired_attack_summary(
            inside, outside, clusters=_clusters(rows), fpr=fpr, n_bootstrap=n_bootstrap,
            seed=seed,
        )  # fmt: skip
        attack["signal"] = label + ", each row under the run that trained on it vs the other"
        attack["mean_signal"] = {
            "members": float(np.mean(inside)),
            "non_members": float(np.mean(outside)),
        }
        attacks[name] = attack
    return attacks


def _result(scored: _Scored, attacks: dict[str, Any]) -> dict[str, Any]:
    is_member = scored.is_member
    setup = scored.membership.setup
    result: dict[str, Any] = {
        "run": str(scored.run_dir),
        "round": scored.round,
        "reference_round": scored.reference_round,
        "merchant": scored.merchant,
        "merchant_trained_rounds": _trained_rounds(scored.run_dir, scored.merchant, scored.round),
        "dp": bool(scored.config.train.dp),
        "unit": scored.unit,
        "privacy": scored.privacy,
        "model": {
            "architecture": getattr(scored.config.model, "architecture", "cross-encoder"),
            "base_model": scored.config.model.base_model,
        },
        "targets": scored.targets,
        "members": int(is_member.sum()),
        "non_members": int((~is_member).sum()),
        "mean_loss": {
            "members": float(np.mean(scored.loss_final[is_member])),
            "non_members": float(np.mean(scored.loss_final[~is_member])),
        },
        "attacks": attacks,
        "canaries": None,
        "setup": {
            "holdout": setup.holdout,
            "canaries": setup.canaries,
            "repeats": setup.repeats,
            "references": setup.references,
            "seed": setup.seed,
            "mirror": setup.mirror,
        },
    }
    if scored.canary_final is not None and scored.canary_reference is not None:
        result["canaries"] = {
            "final": exposure_summary(*scored.canary_final),
            "reference": exposure_summary(*scored.canary_reference),
        }
    return result


def audit_run(
    run_dir: str | Path,
    *,
    mirror: str | Path | None = None,
    server_round: int | None = None,
    reference_round: int = 0,
    device: str = "cpu",
    fpr: float = DEFAULT_FPR,
    n_bootstrap: int = 1000,
    seed: int = 0,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The membership-inference audit of round ``server_round`` (default: the last).

    With ``mirror`` (a run of the same federation on the mirrored split, ``ecrec data
    synth --audit-mirror``) the headline attacks are paired: each row of the audited
    merchant is scored by the run that trained on it and by the one that held it out.
    The single-run attacks of both are kept under ``"pairing"``.
    """
    status = on_status or (lambda _message: None)
    started = time.perf_counter()
    common = {"server_round": server_round, "reference_round": reference_round}
    scored = _score(Path(run_dir), device=device, status=status, **common)
    mirrored = None
    if mirror is not None:
        mirrored = _score(Path(mirror), device=device, status=status, **common)
        _check_mirror(scored, mirrored)
    status("bootstrapping the attacks...")
    stats = {"fpr": fpr, "n_bootstrap": n_bootstrap, "seed": seed}
    single = _single_attacks(scored, **stats)
    if mirrored is None:
        result = _result(scored, single)
    else:
        result = _result(scored, _paired_attacks(scored, mirrored, **stats))
        mirror_result = _result(mirrored, _single_attacks(mirrored, **stats))
        result["members"] = result["non_members"] = len(scored.members) + len(mirrored.members)
        result["pairing"] = {
            "mirror_run": str(mirrored.run_dir),
            "mirror_privacy": mirrored.privacy,
            "rows": {"run": len(scored.members), "mirror": len(mirrored.members)},
            "single": {"run": single, "mirror": mirror_result["attacks"]},
            "mirror_canaries": mirror_result["canaries"],
        }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


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
