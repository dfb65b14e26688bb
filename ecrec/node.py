"""What one merchant's node does in a federated round, without Flower.

Order of a round (DESIGN.md invariants): plan the exact DP steps -> ask the
ledger whether they fit the merchant's own budget (decline if not) -> train
under DP-SGD -> record the spend durably -> check the update -> release it.
The ledger is written *before* the update leaves the node, so a crash can
over-count privacy spend but never under-count it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.config import RunConfig
from ecrec.errors import EcrecError
from ecrec.model.ranker import Ranker, build_ranker
from ecrec.privacy.accounting import noise_multiplier_for_target
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.train.local import plan_round, train_local


class UpdateRejectedError(EcrecError):
    """The local update cannot be sent safely (non-finite, or SecAgg+ would clip it)."""


@dataclass
class RoundOutcome:
    """A node's answer to one round: an update, or a recorded decline."""

    state: dict[str, np.ndarray] | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def declined(self) -> bool:
        return self.state is None


def check_weight(*, examples: int, secagg: bool, max_weight: float) -> None:
    """Refuse before training (and before spending ε) if SecAgg+ would overflow."""
    if secagg and examples > max_weight:
        raise UpdateRejectedError(
            f"{examples} examples exceed federation.max-weight={max_weight:g}; SecAgg+ "
            "would overflow: raise max-weight on the server"
        )


def check_update(
    state: Mapping[str, np.ndarray],
    *,
    examples: int,
    secagg: bool,
    max_weight: float,
    clipping_range: float,
) -> None:
    """Refuse an update that is non-finite or that SecAgg+ would silently clip.

    SecAgg+ multiplies each value by ``examples / max_weight`` and clips to
    ``±clipping_range`` without telling anyone (ENVIRONMENT.md); we check first
    so a round fails loudly instead of aggregating a distorted model.
    """
    for name, array in state.items():
        if not np.all(np.isfinite(array)):
            raise UpdateRejectedError(f"update has non-finite values in {name}")
    if not secagg:
        return
    check_weight(examples=examples, secagg=secagg, max_weight=max_weight)
    ratio = examples / max_weight
    peak_name, peak = max(
        ((name, float(np.max(np.abs(a)))) for name, a in state.items() if a.size),
        key=lambda item: item[1],
    )
    if peak * ratio > clipping_range:
        raise UpdateRejectedError(
            f"update value {peak:.4g} in {peak_name} times weight {ratio:.4g} exceeds the "
            f"SecAgg+ clipping range {clipping_range:g}; SecAgg+ would clip it silently"
        )


class MerchantNode:
    """A merchant's data, ranker and privacy ledger, held on the merchant's node."""

    def __init__(
        self,
        *,
        merchant_id: str,
        frame: pd.DataFrame,
        config: RunConfig,
        ledger_path: str | Path,
        budget_epsilon: float | None = None,
        ledger_key: bytes | None = None,
        ranker: Ranker | None = None,
    ) -> None:
        self.merchant_id = merchant_id
        self.frame = frame
        self.config = config
        self.budget_epsilon = float(budget_epsilon or config.privacy.budget_epsilon)
        self.ledger = PrivacyLedger.open(
            ledger_path,
            budget_epsilon=self.budget_epsilon,
            delta=config.privacy.delta,
            accountant=config.privacy.accountant,
            key=ledger_key,
            merchant_id=merchant_id,
        )
        self._ranker = ranker

    @property
    def ranker(self) -> Ranker:
        if self._ranker is None:
            self._ranker = build_ranker(self.config.model, device=self.config.train.device)
        return self._ranker

    def noise_multiplier(self) -> float:
        """σ for this node: explicit, or calibrated so that all planned rounds
        together spend exactly the federation's planned ε (the node's own budget
        then only caps, and may make it decline later rounds)."""
        if self.config.privacy.noise_multiplier is not None:
            return float(self.config.privacy.noise_multiplier)
        sample_rate, steps = plan_round(len(self.frame), self.config.train)
        return noise_multiplier_for_target(
            target_epsilon=self.config.privacy.budget_epsilon,
            delta=self.config.privacy.delta,
            sample_rate=sample_rate,
            steps=steps * self.config.federation.rounds,
            accountant=self.config.privacy.accountant,
        )

    def run_round(
        self,
        *,
        server_round: int,
        global_state: Mapping[str, np.ndarray],
        proximal_mu: float = 0.0,
    ) -> RoundOutcome:
        cfg = self.config
        sample_rate, steps = plan_round(len(self.frame), cfg.train)
        base = {
            "merchant_id": self.merchant_id,
            "examples": len(self.frame),
            "budget_epsilon": self.budget_epsilon,
        }
        sigma = self.noise_multiplier() if cfg.train.dp else 0.0
        if cfg.train.dp:
            recorded = {entry["round"] for entry in self.ledger.entries}
            if server_round in recorded:
                reason = f"round {server_round} already spent in the ledger (resumed run)"
                return self._decline(server_round, reason, base)
            check = self.ledger.check_round(
                noise_multiplier=sigma, sample_rate=sample_rate, steps=steps
            )
            if not check.affordable:
                return self._decline(server_round, check.reason, base)

        fed = cfg.federation
        check_weight(examples=len(self.frame), secagg=fed.secagg, max_weight=fed.max_weight)
        ranker = self.ranker
        ranker.load_adapter_state(global_state)
        result = train_local(
            ranker,
            self.frame,
            config=cfg.train,
            noise_multiplier=sigma or None,
            proximal_mu=proximal_mu,
        )
        if cfg.train.dp:
            self.ledger.record_round(
                round=server_round, noise_multiplier=sigma, sample_rate=sample_rate, steps=steps
            )
        state = ranker.adapter_state()
        check_update(
            state,
            examples=len(self.frame),
            secagg=fed.secagg,
            max_weight=fed.max_weight,
            clipping_range=fed.clipping_range,
        )
        spent = self.ledger.spent_epsilon()
        nbytes = int(sum(a.nbytes for a in state.values()))
        return RoundOutcome(
            state=state,
            metrics={
                **base,
                "declined": 0,
                "steps": result.steps,
                "sample_rate": sample_rate,
                "noise_multiplier": sigma,
                "epsilon_spent": spent,
                "epsilon_remaining": max(0.0, self.budget_epsilon - spent),
                "train_loss": result.mean_loss,
                "train_seconds": result.seconds,
                # SecAgg+ sends int64 masked values (twice float32) plus one weight factor.
                "bytes_up": nbytes * 2 + 8 if fed.secagg else nbytes,
            },
        )

    def _decline(self, server_round: int, reason: str, base: dict[str, Any]) -> RoundOutcome:
        self.ledger.record_decline(round=server_round, reason=reason)
        spent = self.ledger.spent_epsilon()
        return RoundOutcome(
            state=None,
            metrics={
                **base,
                "declined": 1,
                "decline_reason": reason,
                "epsilon_spent": spent,
                "epsilon_remaining": max(0.0, self.budget_epsilon - spent),
                "steps": 0,
                "bytes_up": 0,
            },
        )
