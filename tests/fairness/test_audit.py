"""Fairness audit: planted unfairness is flagged, unbiased rankings are not.

No model here: synthetic validation frames and hand-built scores, so every
expected flag follows from how the scores were made.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.data.synth import USER_SEGMENTS, SynthConfig, synthesize
from ecrec.errors import ConfigError, EcrecError
from ecrec.fairness.audit import (
    FAIRNESS_FILE,
    AuditConfig,
    append_fairness,
    audit_rankings,
    provider_exposure,
    query_groups,
    read_fairness,
)


@pytest.fixture(scope="module")
def validation() -> pd.DataFrame:
    """400 synthetic validation queries (10 candidates each), treat as read-only."""
    return synthesize(
        SynthConfig(merchants=4, queries_per_merchant=5, validation_queries=400, seed=3)
    ).validation


@pytest.fixture(scope="module")
def balanced(validation: pd.DataFrame) -> pd.DataFrame:
    """The shard with shoppers' segments drawn uniformly per query and merchant tiers
    drawn per row: every segment has ~100 queries (so sampling noise stays well
    under the 0.1 thresholds) and every query shows both tiers (so the ranking,
    not the query mix, decides provider exposure)."""
    rng = np.random.default_rng(7)
    frame = validation.copy()
    qids = pd.unique(frame["query_id"])
    segment = dict(zip(qids, rng.choice(USER_SEGMENTS, size=len(qids)), strict=True))
    frame["user_segment"] = frame["query_id"].map(segment)
    frame["merchant_tier"] = np.where(rng.random(len(frame)) < 0.5, "small", "large")
    return frame


def unbiased_scores(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """True relevance, centred so relevant (>= 2) items sit above logit 0, plus small noise."""
    rng = np.random.default_rng(seed)
    rel = frame["relevance"].to_numpy(dtype=float)
    return (rel - 1.5) * 2 + rng.normal(0, 0.1, len(frame))


def metrics_of(audit: dict) -> set[tuple[str, str | None]]:
    return {(f["metric"], f["group_column"]) for f in audit["flags"]}


# -- planted unfairness ---------------------------------------------------------


def test_unbiased_ranking_raises_no_flag(balanced: pd.DataFrame) -> None:
    audit = audit_rankings(balanced, unbiased_scores(balanced))
    assert audit["flags"] == []
    seg = audit["groups"]["user_segment"]
    assert seg["ndcg@10_gap"] == pytest.approx(0.0, abs=1e-9)  # perfect ranking everywhere
    assert seg["equalized_odds_difference"] == pytest.approx(0.0)  # TPR 1, FPR 0 everywhere
    assert 0.9 < audit["provider"]["exposure_ratio"] < 1.1
    assert audit["provider"]["queries_considered"] > 0.95 * audit["queries"]


def test_demoting_small_merchants_is_flagged(balanced: pd.DataFrame) -> None:
    scores = unbiased_scores(balanced)
    small = (balanced["merchant_tier"] == "small").to_numpy()
    audit = audit_rankings(balanced, scores - 10.0 * small)
    flags = {f["metric"]: f for f in audit["flags"] if f["group_column"] == "merchant_tier"}
    assert "exposure_ratio" in flags
    ratio = flags["exposure_ratio"]["value"]
    assert ratio < 0.8 and ratio == audit["provider"]["exposure_ratio"]
    assert "small merchants get" in flags["exposure_ratio"]["message"]
    # The same scores also never "select" a small merchant's product.
    assert {"demographic_parity_difference", "equalized_odds_difference"} <= set(flags)
    # Shoppers' segments are not what was planted.
    assert ("ndcg@10_gap", "user_segment") not in metrics_of(audit)


def test_random_ranking_for_one_segment_flags_the_ndcg_gap(balanced: pd.DataFrame) -> None:
    scores = unbiased_scores(balanced)
    older = (balanced["user_segment"] == "55+").to_numpy()
    scores[older] = np.random.default_rng(1).normal(0, 1, older.sum())
    audit = audit_rankings(balanced, scores)
    seg = audit["groups"]["user_segment"]
    flag = next(f for f in audit["flags"] if f["metric"] == "ndcg@10_gap")
    assert flag["group_column"] == "user_segment"
    assert flag["value"] == seg["ndcg@10_gap"] > 0.1
    assert "'55+'" in flag["message"]
    by_group = {g: row["ndcg@10"] for g, row in seg["by_group"].items()}
    assert by_group["55+"] == min(by_group.values())
    assert all(v == pytest.approx(1.0) for g, v in by_group.items() if g != "55+")


def test_favouring_one_segment_flags_demographic_parity(balanced: pd.DataFrame) -> None:
    scores = unbiased_scores(balanced)
    young = (balanced["user_segment"] == "18-24").to_numpy()
    audit = audit_rankings(balanced, scores + 5.0 * young)  # everything selected for 18-24
    flagged = metrics_of(audit)
    assert ("demographic_parity_difference", "user_segment") in flagged
    assert ("equalized_odds_difference", "user_segment") in flagged  # FPR 1 vs 0
    # Within each query the order is unchanged, so ranking quality is not flagged.
    assert ("ndcg@10_gap", "user_segment") not in flagged


def test_single_tier_queries_leave_exposure_ratio_undefined(validation: pd.DataFrame) -> None:
    """In the synthetic shard each query shows one merchant's products, so the ranking
    cannot move exposure between tiers: the ratio is undefined, never flagged."""
    small = (validation["merchant_tier"] == "small").to_numpy()
    audit = audit_rankings(validation, unbiased_scores(validation) - 10.0 * small)
    provider = audit["provider"]
    assert provider["queries_considered"] == 0
    assert provider["exposure_ratio"] is None
    assert provider["note"]
    assert provider["exposure_ratio_all_queries"] is not None
    assert ("exposure_ratio", "merchant_tier") not in metrics_of(audit)


# -- grouping rules --------------------------------------------------------------


def test_query_group_is_the_mode_of_its_rows() -> None:
    frame = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q1", "q2", "q2"],
            "user_segment": ["a", "b", "b", "a", "a"],
        }
    )
    groups, mixed = query_groups(frame, "user_segment")
    assert groups.tolist() == ["b", "b", "b", "a", "a"]
    assert mixed == 1


def test_groups_with_few_queries_are_reported_but_not_compared(balanced: pd.DataFrame) -> None:
    scores = unbiased_scores(balanced)
    older = (balanced["user_segment"] == "55+").to_numpy()
    scores[older] = np.random.default_rng(1).normal(0, 1, older.sum())
    n_older = balanced.loc[older, "query_id"].nunique()
    config = AuditConfig(min_group_queries=n_older + 1)
    audit = audit_rankings(balanced, scores, config=config)
    rows = audit["groups"]["user_segment"]["by_group"]
    assert rows["55+"]["compared"] is False and rows["55+"]["ndcg@10"] is not None
    assert ("ndcg@10_gap", "user_segment") not in metrics_of(audit)


def test_click_labels_are_used_without_graded_relevance(balanced: pd.DataFrame) -> None:
    frame = balanced.drop(columns=["relevance"])
    scores = frame["label"].to_numpy(dtype=float) * 4 - 2
    audit = audit_rankings(frame, scores, config=AuditConfig(by=("user_segment", "brand_tier")))
    assert audit["relevant_label"].startswith("label")
    assert audit["missing_columns"] == ["brand_tier"]
    assert audit["groups"]["user_segment"]["equalized_odds_difference"] == pytest.approx(0)


def test_audit_is_strict_json_even_with_undefined_numbers() -> None:
    frame = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q2"],
            "label": [0, 0, 0, 0],  # nothing relevant: ndcg, TPR, ratios undefined
            "user_segment": ["a", "a", "b", "b"],
            "merchant_tier": ["small", "large", "small", "large"],
        }
    )
    audit = audit_rankings(frame, [1.0, 0.0, 0.5, 0.2], config=AuditConfig(min_group_queries=1))
    text = json.dumps(audit, allow_nan=False)
    assert "NaN" not in text
    assert audit["groups"]["user_segment"]["by_group"]["a"]["ndcg@10"] is None
    assert audit["provider"]["exposure_ratio"] is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k": 0}, "k must be >= 1"),
        ({"by": ()}, "at least one column"),
        ({"max_ndcg_gap": -0.1}, "max-ndcg-gap"),
        ({"threshold": math.inf}, "threshold must be finite"),
        ({"min_group_queries": 0}, "min-group-queries"),
    ],
)
def test_bad_config_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**changes)


def test_bad_scores_are_refused(balanced: pd.DataFrame) -> None:
    with pytest.raises(EcrecError, match="scores for"):
        audit_rankings(balanced, np.zeros(3))
    with pytest.raises(EcrecError, match="NaN"):
        audit_rankings(balanced, np.full(len(balanced), np.nan))


# -- fairness.json ----------------------------------------------------------------


def test_append_fairness_keeps_the_trend_and_replaces_a_round(tmp_path, balanced) -> None:
    fair = audit_rankings(balanced, unbiased_scores(balanced))
    small = (balanced["merchant_tier"] == "small").to_numpy()
    unfair = audit_rankings(balanced, unbiased_scores(balanced) - 10.0 * small)
    append_fairness(tmp_path, 2, unfair)
    append_fairness(tmp_path, 1, fair)
    data = read_fairness(tmp_path)
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["latest"]["round"] == 2 and data["latest"]["flags"]
    assert data["config"] == AuditConfig().to_dict()
    append_fairness(tmp_path, 2, fair)  # re-recording a round replaces it
    data = json.loads((tmp_path / FAIRNESS_FILE).read_text())
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["latest"]["flags"] == []
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file


def test_corrupt_fairness_file_is_an_error_not_overwritten(tmp_path) -> None:
    (tmp_path / FAIRNESS_FILE).write_text("{not json")
    with pytest.raises(EcrecError, match="corrupt fairness record"):
        append_fairness(tmp_path, 1, {"flags": []})
    assert (tmp_path / FAIRNESS_FILE).read_text() == "{not json"


# -- properties -------------------------------------------------------------------


@st.composite
def ranked_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    """A few queries with graded relevance, mixed tiers and integer scores (ties allowed)."""
    rows = []
    scores = []
    for q in range(draw(st.integers(1, 6))):
        segment = draw(st.sampled_from(["a", "b", "c"]))
        for _ in range(draw(st.integers(1, 7))):
            rel = draw(st.integers(0, 3))
            rows.append(
                {
                    "query_id": f"q{q}",
                    "label": int(rel >= 2),
                    "relevance": rel,
                    "user_segment": segment,
                    "merchant_tier": draw(st.sampled_from(["small", "large"])),
                }
            )
            scores.append(draw(st.integers(-6, 6)))
    return pd.DataFrame(rows), np.asarray(scores, dtype=float)


@settings(max_examples=60, deadline=None)
@given(data=ranked_frames(), k=st.integers(1, 10), mixed_only=st.booleans())
def test_exposure_shares_sum_to_one(data, k, mixed_only) -> None:
    frame, scores = data
    result = provider_exposure(frame, scores, k=k, mixed_only=mixed_only)
    shares = [v for v in result["exposure_share"].values() if v is not None]
    if result["queries_considered"]:
        assert sum(shares) == pytest.approx(1.0)
        assert all(0.0 <= v <= 1.0 for v in shares)
    relevant = [v for v in result["relevant_share"].values() if v is not None]
    if relevant:
        assert sum(relevant) == pytest.approx(1.0)


def _flatten(obj: object, path: str = "") -> dict[str, object]:
    """Nested dicts/lists -> {"a.b.0": leaf}, for tolerant comparisons of audits."""
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{path}.{key}"))
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, value in enumerate(obj):
            out.update(_flatten(value, f"{path}.{i}"))
        return out
    return {path: obj}


def assert_same(a: object, b: object) -> None:
    """Equal structure and leaves; floats within 1e-9 (summation order may differ)."""
    fa, fb = _flatten(a), _flatten(b)
    assert fa.keys() == fb.keys()
    for key, va in fa.items():
        vb = fb[key]
        if isinstance(va, float) and isinstance(vb, float):
            assert va == pytest.approx(vb, rel=1e-9, abs=1e-12), key
        else:
            assert va == vb, key


def _rank_based(audit: dict) -> dict:
    """The parts of an audit that depend only on each query's order, not on the threshold."""
    out: dict = {
        "provider": {k: audit["provider"][k] for k in ("exposure_share", "exposure_ratio")}
    }
    for column, result in audit["groups"].items():
        out[column] = {
            "groups": [(g, r["ndcg@5"], r["precision@5"]) for g, r in result["by_group"].items()],
            "gap": result["ndcg@5_gap"],
            "precision_gap": result["precision@5_gap"],
        }
    return out


# fairlearn's MetricFrame costs ~0.1 s per audit, so the audit-level properties
# run few examples; the cheap exposure property above runs many.
@settings(max_examples=8, deadline=None)
@given(data=ranked_frames(), scale=st.floats(0.1, 10), shift=st.floats(-5, 5))
def test_rank_based_results_are_invariant_to_monotone_transforms(data, scale, shift) -> None:
    frame, scores = data
    config = AuditConfig(k=5, by=("user_segment",), min_group_queries=1)
    before = audit_rankings(frame, scores, config=config)
    after = audit_rankings(frame, np.exp(scores / 3.0) * scale + shift, config=config)
    assert_same(_rank_based(after), _rank_based(before))


@settings(max_examples=8, deadline=None)
@given(data=ranked_frames(), seed=st.integers(0, 2**16))
def test_audit_does_not_depend_on_row_order(data, seed) -> None:
    frame, scores = data
    order = np.random.default_rng(seed).permutation(len(frame))
    config = AuditConfig(k=5, min_group_queries=1)
    before = audit_rankings(frame, scores, config=config)
    after = audit_rankings(frame.iloc[order], scores[order], config=config)
    assert_same(after, before)
