"""The Flower-free round pipeline: evaluate -> audit -> explain -> persist -> report.

After every round the federation layer hands over the global adapter and what it
learnt about the round (who trained, who declined, bytes, wall time); everything
else happens here, on the server's pooled validation shard, with no Flower import:
scoring and metrics (:mod:`ecrec.evaluation`), the fairness audit of the same
scores (:mod:`ecrec.fairness`), SHAP explanations when due (:mod:`ecrec.explain`),
and every artefact written through the run folder (:mod:`ecrec.runfolder`). At the
end of the run: final explanations, the privacy report and ``report.html``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ecrec.config import RunConfig
from ecrec.evaluation import PooledEvaluator
from ecrec.model.ranker import Ranker, build_ranker
from ecrec.runfolder import RunFolder


class RoundPipeline:
    """Everything the server does with a global adapter, for one run."""

    def __init__(
        self,
        *,
        config: RunConfig,
        validation: pd.DataFrame,
        run: RunFolder,
        ranker: Ranker | None = None,
        on_round: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.run = run
        self.ranker = ranker or build_ranker(config.model, device=config.train.device)
        self.evaluator = PooledEvaluator(
            ranker=self.ranker, validation=validation, config=config.evaluation
        )
        self.on_round = on_round

    @property
    def names(self) -> list[str]:
        return list(self.ranker.adapter_state())

    def initial_state(self) -> dict[str, np.ndarray]:
        """The round-0 global adapter (the freshly built ranker's)."""
        return self.ranker.adapter_state()

    def after_round(
        self,
        server_round: int,
        state: Mapping[str, np.ndarray],
        *,
        federation: Mapping[str, Any],
        privacy: Mapping[str, Any],
        server_state: Mapping[str, Any],
        strategy_arrays: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Evaluate, audit, explain (when due) and persist one round; returns its record."""
        metrics, scores = self.evaluator.measure(state)
        record: dict[str, Any] = {"round": server_round, **metrics, **federation}
        report = self.config.report
        if report.audit:
            audit = self.audit(scores)
            self.run.append_fairness(server_round, audit)
            record["fairness_flags"] = len(audit.get("flags", []))
        every = report.explain_every
        if report.explain and every and server_round and server_round % every == 0:
            self.explain(server_round)
        self.run.append_metrics(record)
        self.run.save_checkpoint(
            server_round, state, server_state, extra_arrays=strategy_arrays or {}
        )
        self.run.write_privacy(privacy)
        if self.on_round is not None:
            self.on_round(record)
        return record

    def audit(self, scores: np.ndarray) -> dict[str, Any]:
        from ecrec.fairness import audit_rankings

        return audit_rankings(self.evaluator.validation, scores, config=self.config.audit)

    def explain(self, server_round: int) -> None:
        """SHAP explanations of the global ranker as it is now (its adapter is loaded)."""
        from ecrec.explain import explain_run

        report = self.config.report
        result = explain_run(
            self.ranker,
            self.evaluator.validation,
            queries=report.explain_queries,
            top_k=report.explain_top_k,
            seed=self.config.data.seed,
        )
        result["round"] = server_round
        self.run.write_explanations(result)

    def finish(self, last_round: int, state: Mapping[str, np.ndarray] | None) -> None:
        """After the last round: explanations of the final ranker, privacy and HTML reports."""
        if self.config.report.explain and last_round and state is not None:
            self.ranker.load_adapter_state(state)
            self.explain(last_round)
        self.run.write_privacy_report()
        if self.config.report.html:
            self.run.write_html_report()


__all__ = ["RoundPipeline"]
