"""Server-side evaluation of the global ranker on the pooled validation shard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ecrec.config import EvaluationConfig
from ecrec.metrics.ranking import per_group_metric, ranking_metrics
from ecrec.model.ranker import Ranker


def limit_queries(frame: pd.DataFrame, max_queries: int) -> pd.DataFrame:
    """The first ``max_queries`` queries (all when 0), whole queries only."""
    if max_queries <= 0:
        return frame
    keep = pd.unique(frame["query_id"])[:max_queries]
    return frame[frame["query_id"].isin(keep)]


class PooledEvaluator:
    """Scores the validation shard and summarises it as ``metrics.jsonl`` wants."""

    def __init__(
        self, *, ranker: Ranker, validation: pd.DataFrame, config: EvaluationConfig
    ) -> None:
        self.ranker = ranker
        self.validation = limit_queries(validation, config.max_queries).reset_index(drop=True)
        self.config = config

    def scores(self, state: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        if state is not None:
            self.ranker.load_adapter_state(state)
        return self.ranker.score_frame(self.validation, batch_size=self.config.batch_size)

    def evaluate(self, state: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Global metrics plus NDCG@k per merchant (the merchant that listed the item)."""
        return self.measure(state)[0]

    def measure(
        self, state: Mapping[str, np.ndarray] | None = None
    ) -> tuple[dict[str, Any], np.ndarray]:
        """The metrics and the scores they were computed from (audits reuse the scores)."""
        scores = self.scores(state)
        return self.metrics(scores), scores

    def metrics(self, scores: np.ndarray) -> dict[str, Any]:
        """Global metrics plus NDCG@k per merchant (the merchant that listed the item)."""
        frame = self.validation
        relevance = frame["relevance"].to_numpy() if "relevance" in frame else None
        k = self.config.k
        metrics: dict[str, Any] = ranking_metrics(
            query_ids=frame["query_id"].to_numpy(),
            labels=frame["label"].to_numpy(),
            scores=scores,
            relevance=relevance,
            k=k,
        )
        per_query = per_group_metric(
            query_ids=frame["query_id"].to_numpy(),
            labels=frame["label"].to_numpy(),
            scores=scores,
            relevance=relevance,
            k=k,
        )
        query_merchant = frame.groupby("query_id", sort=False)["merchant_id"].first()
        by_merchant = per_query.groupby(query_merchant.reindex(per_query.index)).mean()
        metrics[f"per_merchant_ndcg@{k}"] = {
            str(m): float(v) for m, v in by_merchant.items() if np.isfinite(v)
        }
        return metrics
