"""What one merchant's node does in a federated round, without Flower.

Order of a round (DESIGN.md invariants): check the server's request against the
merchant's own policy -> plan the exact DP steps -> ask the ledger whether they fit
the merchant's budget -> train under DP-SGD -> record the spend durably -> check the
update -> release it. Any "no" is a decline with a reason that names the setting;
nothing is trained and nothing leaves the node. The ledger is written *before* the
update leaves the node, so a crash can over-count privacy spend but never
under-count it. What leaves is only the update, its weight and "trained"; loss,
timings and row counts go to the node's own journal.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ecrec.atomic import atomic_write_bytes
from ecrec.data.schema import USER_ID
from ecrec.errors import DataError
from ecrec.node.checks import check_noise, check_request
from ecrec.node.exchange import (
    RoundOutcome,
    RoundRequest,
    UpdateRejectedError,
    _named,
    check_update,
    check_weight,
)
from ecrec.node.journal import NodeJournal
from ecrec.node.policy import Violation
from ecrec.node.settings import NodeSettings

if TYPE_CHECKING:
    from ecrec.config import RunConfig
    from ecrec.model.ranker import Ranker, RankerConfig
    from ecrec.privacy.ledger import PrivacyLedger

#: What a decline tells the server when the merchant's policy hides its ε.
BUDGET_DECLINE = "privacy budget: this round would take the merchant past its ε budget"


class MerchantNode:
    """A merchant's data, ranker, policy and privacy ledger, held on the merchant's node."""

    def __init__(
        self,
        *,
        settings: NodeSettings,
        frame: pd.DataFrame | None = None,
        ranker: Ranker | None = None,
    ) -> None:
        self.settings = settings
        self.policy = settings.policy
        self.journal = NodeJournal(settings.journal_path)
        self._frame = frame
        self._ranker = ranker
        self._ledger: PrivacyLedger | None = None

    # ----------------------------------------------------------------- state

    @property
    def frame(self) -> pd.DataFrame:
        """The merchant's impressions, checked: one merchant, desensitised text."""
        if self._frame is None:
            from ecrec.data.io import read_impressions

            frame = read_impressions(self.settings.data_path)
            check_plain_text(frame, source=str(self.settings.data_path))
            self._frame = frame
        merchants = self._frame["merchant_id"].astype(str).unique()
        if len(merchants) != 1:
            raise DataError(
                f"{self.settings.data_path}: a node serves one merchant, found {len(merchants)}"
            )
        return self._frame

    @property
    def merchant_id(self) -> str:
        return str(self.frame["merchant_id"].iloc[0])

    @property
    def has_user_ids(self) -> bool:
        return USER_ID in self.frame.columns

    @property
    def ledger(self) -> PrivacyLedger:
        """The node's ledger: opened (never created) and verified; fails closed."""
        if self._ledger is None:
            from ecrec.privacy.ledger import PrivacyLedger

            self._ledger = PrivacyLedger.open(
                self.settings.ledger_path,
                key_file=self.settings.key_file,
                anchor_path=self.settings.anchor_path,
                merchant_id=self.merchant_id,
                budget_epsilon=self.policy.budget_epsilon,
            )
        return self._ledger

    def ranker_for(self, config: RankerConfig, *, device: str = "auto") -> Ranker:
        if self._ranker is None or self._ranker.config != config:
            from ecrec.model.ranker import build_ranker

            self._ranker = build_ranker(config, device=device)
        return self._ranker

    # ----------------------------------------------------------------- a round

    def run_round(
        self,
        request: RoundRequest,
        *,
        federated: bool = True,
        on_step: Callable[[int, int, float], None] | None = None,
    ) -> RoundOutcome:
        """One round: a released update, or a journaled decline (nothing trained or sent).

        ``federated=False`` is ``ecrec train``: the same privacy checks and ledger, for an
        update that stays on the node (no SecAgg+ or aggregation checks).
        """
        from ecrec.train.local import dp_units, plan_round

        cfg = request.config
        frame = self.frame
        ledger = self.ledger
        unit = self.policy.unit_for(has_user_ids=self.has_user_ids)
        groups = dp_units(frame, unit=unit, max_rows_per_user=cfg.privacy.max_rows_per_user)
        violations = check_request(
            self.policy,
            cfg,
            units=groups.n_units,
            has_user_ids=self.has_user_ids,
            ledger_delta=ledger.delta,
            ledger_accountant=ledger.accountant,
            federated=federated,
        )
        violations += self._model_violations(cfg)
        if violations:
            return self._decline(request, violations, disclosed_reason=None)
        if unit != ledger.unit:
            return self._decline(
                request,
                [
                    Violation(
                        "privacy unit",
                        f"this node trains per {unit} but its ledger "
                        f"accounts per {ledger.unit}; initialise a ledger for that unit",
                    )
                ],
                disclosed_reason=None,
            )
        if request.server_round in ledger.rounds:
            return self._decline(
                request,
                [
                    Violation(
                        "round",
                        f"round {request.server_round} is already spent in the "
                        "ledger (a resumed run asks for it again)",
                    )
                ],
                disclosed_reason=None,
            )
        sample_rate, steps = plan_round(groups.n_units, cfg.train)
        sigma = 0.0
        if cfg.train.dp:
            sigma = self._noise_multiplier(cfg, sample_rate=sample_rate, steps=steps)
            check = ledger.check_round(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps)
            noise = check_noise(
                self.policy,
                sigma=sigma,
                round_epsilon=check.epsilon_after - check.epsilon_before,
                accountant=ledger.accountant,
            )
            if noise:
                return self._decline(request, noise, disclosed_reason=None)
            if not check.affordable:
                shown = check.reason if self.policy.disclose_epsilon else BUDGET_DECLINE
                return self._decline(
                    request, [Violation("privacy budget", check.reason)], disclosed_reason=shown
                )
        return self._train(
            request,
            groups=groups,
            sample_rate=sample_rate,
            steps=steps,
            sigma=sigma,
            secagg=federated and cfg.federation.secagg,
            on_step=on_step,
        )

    def _model_violations(self, cfg: RunConfig) -> list[Violation]:
        allowed = self.policy.allowed_base_models
        if cfg.model.base_model not in allowed:
            return [
                Violation(
                    "model.base-model",
                    f"{cfg.model.base_model!r} is not one of the "
                    f"models this node loads ({', '.join(allowed)})",
                )
            ]
        return []

    def _noise_multiplier(self, cfg: RunConfig, *, sample_rate: float, steps: int) -> float:
        """σ: the server's explicit value (never below the floor: checked), or calibrated so
        the planned rounds spend at most the smaller of the run's plan and the merchant's
        own budget -- and never less noise than the policy's floor."""
        from ecrec.privacy.accounting import noise_multiplier_for_target

        if cfg.privacy.noise_multiplier is not None:
            return float(cfg.privacy.noise_multiplier)
        target = min(cfg.privacy.budget_epsilon, self.policy.budget_epsilon)
        sigma = noise_multiplier_for_target(
            target_epsilon=target,
            delta=self.ledger.delta,
            sample_rate=sample_rate,
            steps=steps * cfg.federation.rounds,
            accountant=self.ledger.accountant,
        )
        return max(sigma, self.policy.min_noise_multiplier)

    def _train(
        self,
        request: RoundRequest,
        *,
        groups: Any,
        sample_rate: float,
        steps: int,
        sigma: float,
        secagg: bool,
        on_step: Callable[[int, int, float], None] | None,
    ) -> RoundOutcome:
        from ecrec.train.local import train_local

        cfg = request.config
        fed = cfg.federation
        weight = float(len(self.frame)) if fed.weighting == "examples" else 1.0
        check_weight(weight=weight, secagg=secagg, max_weight=fed.secagg_max_weight)
        ranker = self.ranker_for(cfg.model, device=cfg.train.device)
        ranker.load_adapter_state(_named(ranker, request.global_state))
        result = train_local(
            ranker,
            self.frame,
            config=cfg.train,
            noise_multiplier=sigma or None,
            unit=groups.unit,
            max_rows_per_user=cfg.privacy.max_rows_per_user,
            proximal_mu=request.proximal_mu,
            on_step=on_step,
            encode=self._cached_encoder(ranker),
        )
        spent = None
        if cfg.train.dp:
            spent = self.ledger.record_round(
                round=request.server_round,
                noise_multiplier=sigma,
                sample_rate=sample_rate,
                steps=steps,
            )
        state = ranker.adapter_state()
        check_update(
            state,
            weight=weight,
            secagg=secagg,
            max_weight=fed.secagg_max_weight,
            clipping_range=fed.clipping_range,
        )
        # Who answered (the platform knows its merchants) and that it trained: all that
        # aggregation needs besides the masked update and its weight.
        disclosed: dict[str, bool | int | float | str] = {
            "merchant": self.merchant_id,
            "trained": True,
        }
        if self.policy.disclose_epsilon and spent is not None:
            disclosed.update(
                {
                    "epsilon-spent": spent,
                    "epsilon-remaining": self.ledger.remaining_epsilon(),
                    "accountant": self.ledger.accountant,
                    "unit": self.ledger.unit,
                }
            )
        self.journal.append(
            "trained",
            round=request.server_round,
            private=cfg.train.dp,
            unit=groups.unit,
            units=groups.n_units,
            rows=len(self.frame),
            steps=result.steps,
            sample_rate=sample_rate,
            noise_multiplier=sigma,
            epsilon_spent=spent,
            accountant=self.ledger.accountant,
            budget_epsilon=self.policy.budget_epsilon,
            train_loss=result.mean_loss,
            train_seconds=round(result.seconds, 3),
            weight=weight,
            disclosed=disclosed,
        )
        if self.policy.keep_sent_updates:
            self._keep(request.server_round, state, weight)
        return RoundOutcome(state=state, weight=weight, disclosed=disclosed)

    def _cached_encoder(self, ranker: Ranker) -> Callable[[pd.DataFrame], dict[str, Any]]:
        """Tokenise the merchant's rows once, not every round: the tensors are kept beside
        the journal, keyed by the data file, the rows and how the ranker reads text."""
        import hashlib

        import torch

        def encode(rows: pd.DataFrame) -> dict[str, Any]:
            data = self.settings.data_path
            stat = data.stat() if data.exists() else None
            identity = (
                f"{data.resolve()}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"
                f"|{ranker.config!r}|{len(rows)}|"
            )
            digest = hashlib.sha256(identity.encode())
            digest.update(np.asarray(rows.index, dtype=np.int64).tobytes())
            path = (
                self.settings.journal_path.with_suffix(".cache") / f"{digest.hexdigest()[:32]}.pt"
            )
            if path.exists():
                try:
                    return dict(torch.load(path, weights_only=True))
                except (OSError, RuntimeError, EOFError):
                    path.unlink(missing_ok=True)  # a torn cache file is just recomputed
            inputs = ranker.training_inputs(rows)
            buffer = io.BytesIO()
            torch.save(dict(inputs), buffer)
            atomic_write_bytes(path, buffer.getvalue(), mode=0o600)
            return inputs

        return encode

    def _keep(self, server_round: int, state: Mapping[str, np.ndarray], weight: float) -> None:
        """The merchant's own copy of exactly what this node released."""
        buffer = io.BytesIO()
        np.savez(
            buffer, __weight__=np.asarray(weight), **{k: np.asarray(v) for k, v in state.items()}
        )
        folder = self.settings.journal_path.with_suffix(".sent")
        atomic_write_bytes(folder / f"round_{server_round:04d}.npz", buffer.getvalue())

    def _decline(
        self,
        request: RoundRequest,
        violations: list[Violation],
        *,
        disclosed_reason: str | None,
    ) -> RoundOutcome:
        reason = "; ".join(str(v) for v in violations)
        if self.policy.disclose_epsilon:
            shown = disclosed_reason or reason
        else:
            shown = disclosed_reason or "; ".join(v.told_server() for v in violations)
        self.journal.append(
            "declined",
            round=request.server_round,
            settings=[v.setting for v in violations],
            reason=reason,
            told_server=shown,
        )
        return RoundOutcome(state=None, decline_reason=shown)


def check_plain_text(frame: pd.DataFrame, *, source: str) -> None:
    """Refuse data that still holds plain PII (the node re-checks what import did)."""
    try:
        from ecrec.data.desensitize import check_desensitised
    except ImportError:  # pragma: no cover - the check ships with the data layer
        return
    check_desensitised(frame, source=source)


__all__ = [
    "BUDGET_DECLINE",
    "MerchantNode",
    "RoundOutcome",
    "RoundRequest",
    "UpdateRejectedError",
    "check_update",
    "check_weight",
]
