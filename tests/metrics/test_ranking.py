"""Ranking metrics: hand-checked values, sklearn agreement, and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, log_loss, ndcg_score, roc_auc_score

from ecrec.metrics import (
    average_precision,
    dcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_group_metric,
    per_query_metrics,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

LOG2_3 = math.log2(3)

# --------------------------------------------------------------------------- #
# Strategies
# --------------------------------------------------------------------------- #

finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)


@st.composite
def query(draw, *, min_size=2, max_size=25, untied=True, need_relevant=True):
    """(relevance, scores, k) for one query; scores untied unless asked otherwise."""
    n = draw(st.integers(min_size, max_size))
    rel = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    if need_relevant:
        assume(any(r >= 1 for r in rel))
    scores = draw(st.lists(finite, min_size=n, max_size=n, unique=untied))
    k = draw(st.integers(1, n + 3))
    return np.array(rel, dtype=float), np.array(scores), k


def model_order(rel: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Reference ranking for untied scores: plain descending sort."""
    assert len(set(scores.tolist())) == len(scores)
    return np.argsort(-scores, kind="stable")


# --------------------------------------------------------------------------- #
# Hand-computed values
# --------------------------------------------------------------------------- #


def test_hand_computed_single_query():
    rel = [1, 0, 0, 1, 0]
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]  # ranking: items 4, 3, 2, 1, 0 -> rels 0,1,0,0,1
    assert dcg_at_k(rel, scores, 2) == pytest.approx(1 / LOG2_3)
    assert ndcg_at_k(rel, scores, 2) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert mrr_at_k(rel, scores, 2) == pytest.approx(0.5)
    assert mrr_at_k(rel, scores, 1) == 0.0  # first relevant is outside the top 1
    assert average_precision(rel, scores) == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert recall_at_k(rel, scores, 2) == pytest.approx(0.5)
    assert precision_at_k(rel, scores, 2) == pytest.approx(0.5)
    assert precision_at_k(rel, scores, 10) == pytest.approx(0.2)  # short list: misses count


def test_exponential_gain_differs_from_linear():
    rel = [3, 1]
    scores = [0.0, 1.0]  # the rel-1 item is ranked first
    lin = (1 + 3 / LOG2_3) / (3 + 1 / LOG2_3)
    exp = (1 + 7 / LOG2_3) / (7 + 1 / LOG2_3)
    assert ndcg_at_k(rel, scores, 2, gain="linear") == pytest.approx(lin)
    assert ndcg_at_k(rel, scores, 2) == pytest.approx(exp)
    assert lin != pytest.approx(exp)
    with pytest.raises(ValueError, match="gain"):
        ndcg_at_k(rel, scores, 2, gain="quadratic")  # type: ignore[arg-type]


def test_ties_are_broken_against_the_model():
    # Rows stored most-relevant first: a constant scorer must not get credit for it.
    rel = [3, 2, 1, 0]
    constant = [0.5] * 4
    assert ndcg_at_k(rel, constant, 4) == pytest.approx(ndcg_at_k(rel, [0, 1, 2, 3], 4))
    assert ndcg_at_k(rel, constant, 4) < 1
    assert mrr_at_k([1, 0, 0], [0.0, 0.0, 0.0], 3) == pytest.approx(1 / 3)
    # ...and the result does not depend on the order rows are stored in.
    assert ndcg_at_k(rel[::-1], constant, 4) == ndcg_at_k(rel, constant, 4)


def test_query_without_relevant_items_is_nan():
    assert math.isnan(ndcg_at_k([0, 0], [1.0, 2.0], 2))
    assert math.isnan(mrr_at_k([0, 0], [1.0, 2.0], 2))
    assert math.isnan(average_precision([0, 0], [1.0, 2.0]))
    assert math.isnan(recall_at_k([0, 0], [1.0, 2.0], 2))
    assert precision_at_k([0, 0], [1.0, 2.0], 2) == 0.0


@pytest.mark.parametrize(
    ("rel", "scores", "k", "match"),
    [
        ([1, 0], [1.0], 2, "expected 2"),
        ([1, 0], [1.0, float("nan")], 2, "NaN"),
        ([1, -1], [1.0, 2.0], 2, "non-negative"),
        ([1, 0], [1.0, 2.0], 0, "positive integer"),
        ([], [], 1, "at least one"),
    ],
)
def test_bad_inputs_are_rejected(rel, scores, k, match):
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(rel, scores, k)


# --------------------------------------------------------------------------- #
# Agreement with sklearn
# --------------------------------------------------------------------------- #


@settings(max_examples=200, deadline=None)
@given(query())
def test_linear_ndcg_matches_sklearn_on_untied_scores(case):
    rel, scores, k = case
    expected = ndcg_score(rel[None, :], scores[None, :], k=k)
    assert ndcg_at_k(rel, scores, k, gain="linear") == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(query())
def test_average_precision_matches_sklearn_on_untied_scores(case):
    rel, scores, _ = case
    expected = average_precision_score(rel >= 1, scores)
    assert average_precision(rel, scores) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), finite, st.integers(0, 4)), min_size=2, max_size=60))
def test_auc_and_logloss_match_sklearn(rows):
    labels = np.array([r[0] for r in rows], dtype=float)
    scores = np.array([r[1] for r in rows])
    qids = np.array([r[2] for r in rows])
    out = ranking_metrics(query_ids=qids, labels=labels, scores=scores)
    if len(set(labels.tolist())) == 2:
        assert out["auc"] == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)
    else:
        assert math.isnan(out["auc"])
    probs = 1 / (1 + np.exp(-scores))
    assert out["logloss"] == pytest.approx(log_loss(labels, probs, labels=[0, 1]), rel=1e-9)


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #


@settings(max_examples=150, deadline=None)
@given(query(untied=False), st.sampled_from(["exponential", "linear"]))
def test_ndcg_bounds_perfect_and_worst(case, gain):
    rel, scores, k = case
    value = ndcg_at_k(rel, scores, k, gain=gain)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert ndcg_at_k(rel, rel, k, gain=gain) == pytest.approx(1.0, abs=1e-12)
    worst = ndcg_at_k(rel, -rel, k, gain=gain)
    assert worst <= value + 1e-12


@settings(max_examples=150, deadline=None)
@given(query(untied=False))
def test_ndcg_invariant_to_monotone_transforms(case):
    rel, scores, k = case
    base = ndcg_at_k(rel, scores, k)
    # Dense ranks (non-linear) keep exactly the same ties; scaling by a power of
    # two is exact in floating point, so it can neither create nor break ties
    # (cubing did: subnormal scores underflowed into ties).
    ranks = pd.Series(scores).rank(method="dense").to_numpy()
    assert ndcg_at_k(rel, ranks, k) == base
    assert ndcg_at_k(rel, np.ldexp(scores, 5), k) == base


@settings(max_examples=150, deadline=None)
@given(query(need_relevant=False))
def test_precision_recall_mrr_against_brute_force(case):
    rel, scores, k = case
    order = model_order(rel, scores)
    top = (rel[order] >= 1)[:k]
    hits = int(top.sum())
    assert precision_at_k(rel, scores, k) * k == pytest.approx(hits)
    n_rel = int((rel >= 1).sum())
    mrr = mrr_at_k(rel, scores, k)
    recall = recall_at_k(rel, scores, k)
    if n_rel == 0:
        assert math.isnan(mrr) and math.isnan(recall)
        return
    assert 0.0 <= mrr <= 1.0
    first = np.flatnonzero(top)
    assert mrr == pytest.approx(1 / (first[0] + 1) if first.size else 0.0)
    assert recall == pytest.approx(hits / n_rel)


# --------------------------------------------------------------------------- #
# Grouped metrics
# --------------------------------------------------------------------------- #


@st.composite
def dataset(draw):
    n_queries = draw(st.integers(1, 6))
    rows = []
    for q in range(n_queries):
        n = draw(st.integers(1, 12))
        for _ in range(n):
            rows.append((f"q{q}", draw(st.integers(0, 1)), draw(finite), draw(st.integers(0, 3))))
    perm = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in perm]
    frame = pd.DataFrame(rows, columns=["query_id", "label", "score", "relevance"])
    return frame, draw(st.integers(1, 6))


@settings(max_examples=100, deadline=None)
@given(dataset())
def test_grouped_metrics_are_means_of_per_query_values(case):
    frame, k = case
    out = ranking_metrics(
        query_ids=frame["query_id"],
        labels=frame["label"],
        scores=frame["score"],
        relevance=frame["relevance"],
        k=k,
    )
    assert list(out) == [
        f"ndcg@{k}",
        f"mrr@{k}",
        "map",
        f"recall@{k}",
        f"precision@{k}",
        "auc",
        "logloss",
        f"ctr@{k}",
        "queries",
    ]
    per = {"ndcg": [], "mrr": [], "ap": [], "recall": [], "precision": []}
    for _, g in frame.groupby("query_id", sort=False):
        rel, sc = g["relevance"].to_numpy(), g["score"].to_numpy()
        per["ndcg"].append(ndcg_at_k(rel, sc, k))
        per["mrr"].append(mrr_at_k(rel, sc, k))
        per["ap"].append(average_precision(rel, sc))
        per["recall"].append(recall_at_k(rel, sc, k))
        per["precision"].append(precision_at_k(rel, sc, k))

    def mean(values):
        defined = [v for v in values if not math.isnan(v)]
        return sum(defined) / len(defined) if defined else math.nan

    for key, name in [
        ("ndcg", f"ndcg@{k}"),
        ("mrr", f"mrr@{k}"),
        ("ap", "map"),
        ("recall", f"recall@{k}"),
        ("precision", f"precision@{k}"),
    ]:
        expected = mean(per[key])
        if math.isnan(expected):
            assert math.isnan(out[name])
        else:
            assert out[name] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert out["queries"] == frame["query_id"].nunique()


def test_ranking_metrics_hand_computed_and_skips_queries_without_relevance():
    out = ranking_metrics(
        query_ids=["a"] * 5 + ["b"] * 3,
        labels=[1, 0, 0, 1, 0, 0, 0, 0],
        scores=[1, 2, 3, 4, 5, 1, 1, 1],
        k=2,
    )
    # Query b has no click: skipped for ndcg/mrr/map/recall, counted for precision/ctr.
    assert out["ndcg@2"] == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert out["mrr@2"] == pytest.approx(0.5)
    assert out["map"] == pytest.approx(0.45)
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["precision@2"] == pytest.approx(0.25)
    assert out["ctr@2"] == pytest.approx(0.25)
    assert out["queries"] == 2


def test_ctr_uses_clicks_while_ranking_metrics_use_graded_relevance():
    # The model ranks item 1 first: highly relevant but not clicked.
    out = ranking_metrics(
        query_ids=["q", "q", "q"],
        labels=[1, 0, 0],
        scores=[0.0, 2.0, 1.0],
        relevance=[1, 3, 0],
        k=1,
    )
    assert out["ctr@1"] == 0.0
    assert out["ndcg@1"] == 1.0
    # Ties in ctr are broken against the model too (unclicked first).
    tied = ranking_metrics(query_ids=["q", "q"], labels=[1, 0], scores=[0.0, 0.0], k=1)
    assert tied["ctr@1"] == 0.0


def test_single_class_auc_is_nan_and_labels_must_be_binary():
    out = ranking_metrics(query_ids=[1, 1], labels=[0, 0], scores=[0.3, -2.0])
    assert math.isnan(out["auc"])
    assert out["logloss"] > 0
    with pytest.raises(ValueError, match="0/1"):
        ranking_metrics(query_ids=[1, 1], labels=[0, 2], scores=[0.3, -2.0])
    with pytest.raises(ValueError, match="no rows"):
        ranking_metrics(query_ids=[], labels=[], scores=[])


def test_per_group_metric_is_indexed_by_query_id():
    series = per_group_metric(
        query_ids=["b", "b", "a", "a", "c"],
        labels=[1, 0, 0, 1, 0],
        scores=[2.0, 1.0, 2.0, 1.0, 0.0],
        k=2,
    )
    assert series.name == "ndcg@2"
    assert list(series.index) == ["b", "a", "c"]
    assert series["b"] == 1.0
    assert series["a"] == pytest.approx(ndcg_at_k([0, 1], [2.0, 1.0], 2))
    assert math.isnan(series["c"])
    mrr = per_group_metric(
        query_ids=["b", "b"], labels=[0, 1], scores=[2.0, 1.0], k=2, metric="mrr"
    )
    assert mrr["b"] == 0.5
    frame = per_query_metrics(query_ids=["b", "b"], labels=[0, 1], scores=[2.0, 1.0], k=2)
    assert frame.loc["b", "items"] == 2
