"""Server-side evaluation on the pooled validation shard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecrec.config import EvaluationConfig
from ecrec.data.schema import ranker_documents
from ecrec.evaluation import PooledEvaluator, limit_queries
from ecrec.metrics.ranking import ranking_metrics

KEYS = {
    "ndcg@10",
    "mrr@10",
    "map",
    "recall@10",
    "precision@10",
    "auc",
    "logloss",
    "ctr@10",
    "per_merchant_ndcg@10",
}


def test_pooled_evaluator_reports_every_metric(ranker, market) -> None:
    validation = market.validation
    evaluator = PooledEvaluator(
        ranker=ranker, validation=validation, config=EvaluationConfig(batch_size=16)
    )
    metrics = evaluator.evaluate()
    assert set(metrics) >= KEYS
    assert metrics["queries"] == validation["query_id"].nunique() == 10
    for key in KEYS - {"per_merchant_ndcg@10", "logloss"}:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["logloss"] > 0 and math.isfinite(metrics["logloss"])

    per_merchant = metrics["per_merchant_ndcg@10"]
    assert set(per_merchant) == set(validation["merchant_id"].unique())
    assert all(0.0 <= v <= 1.0 for v in per_merchant.values())

    # The summary is the ranking metrics of the ranker's own scores.
    # (products are read as "<title> | <product_text>", as in training).
    scores = ranker.score(validation["query"].tolist(), ranker_documents(validation))
    np.testing.assert_allclose(evaluator.scores(), scores, atol=1e-6)
    direct = ranking_metrics(
        query_ids=validation["query_id"].to_numpy(),
        labels=validation["label"].to_numpy(),
        scores=scores,
        relevance=validation["relevance"].to_numpy(),
        k=10,
    )
    for key, value in direct.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    # Per-merchant NDCG averages to the global one when weighted by query counts.
    queries_per_merchant = validation.groupby("query_id")["merchant_id"].first().value_counts()
    weighted = sum(per_merchant[m] * n for m, n in queries_per_merchant.items())
    assert weighted / queries_per_merchant.sum() == pytest.approx(metrics["ndcg@10"], abs=1e-9)


def test_evaluate_with_state_loads_it_first(ranker, market, tiny_initial_state) -> None:
    evaluator = PooledEvaluator(
        ranker=ranker, validation=market.validation, config=EvaluationConfig()
    )
    baseline = evaluator.evaluate()
    rng = np.random.default_rng(3)
    other = {
        n: (a + rng.normal(0, 0.5, a.shape)).astype(np.float32)
        for n, a in tiny_initial_state.items()
    }
    changed = evaluator.evaluate(other)
    assert changed["logloss"] != baseline["logloss"]
    assert evaluator.evaluate(tiny_initial_state)["logloss"] == pytest.approx(baseline["logloss"])


def test_oracle_scores_beat_the_untrained_ranker(ranker, market) -> None:
    validation = market.validation
    evaluator = PooledEvaluator(ranker=ranker, validation=validation, config=EvaluationConfig())
    untrained = evaluator.evaluate()["ndcg@10"]

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(
            query_ids=validation["query_id"].to_numpy(),
            labels=validation["label"].to_numpy(),
            scores=scores,
            relevance=validation["relevance"].to_numpy(),
            k=10,
        )["ndcg@10"]

    relevance = validation["relevance"].to_numpy(dtype=float)
    oracle = ndcg(relevance)
    assert oracle == pytest.approx(1.0)  # ranking by true relevance is ideal
    assert oracle > untrained
    # ... and the reversed oracle is the worst case, below the untrained ranker.
    assert ndcg(-relevance) < untrained


def test_max_queries_limits_to_whole_queries(ranker, market) -> None:
    validation = market.validation
    limited = limit_queries(validation, 3)
    assert limited["query_id"].nunique() == 3
    first_three = list(dict.fromkeys(validation["query_id"]))[:3]
    assert list(dict.fromkeys(limited["query_id"])) == first_three
    assert len(limited) == validation["query_id"].isin(first_three).sum()
    assert limit_queries(validation, 0) is validation
    evaluator = PooledEvaluator(
        ranker=ranker, validation=validation, config=EvaluationConfig(max_queries=3)
    )
    assert evaluator.evaluate()["queries"] == 3
