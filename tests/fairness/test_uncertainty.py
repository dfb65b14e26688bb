"""Bootstrap intervals and verdicts; the resampled statistics agree with fairlearn's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.fairness import AuditConfig
from ecrec.fairness.group_metrics import mean_gap, odds_gap, ratio_gap
from ecrec.fairness.uncertainty import bootstrap_interval, enough_queries, judge

CONFIG = AuditConfig()


@pytest.mark.parametrize(
    ("interval", "flag_when", "status"),
    [
        ((0.12, 0.2), "above", "flag"),
        ((0.02, 0.1), "above", "ok"),
        ((0.05, 0.15), "above", "inconclusive"),
        ((0.5, 0.7), "below", "flag"),
        ((0.8, 1.1), "below", "ok"),
        ((0.7, 0.9), "below", "inconclusive"),
        (None, "above", "inconclusive"),
    ],
)
def test_only_a_whole_interval_beyond_the_threshold_flags(interval, flag_when, status) -> None:
    threshold = 0.1 if flag_when == "above" else 0.8
    assert judge(0.11, interval, threshold=threshold, flag_when=flag_when) == status
    assert judge(None, interval, threshold=threshold, flag_when=flag_when) == "undefined"


def test_enough_queries_splits_groups_by_the_minimum() -> None:
    assert enough_queries({"b": 30, "a": 31, "c": 29}, 30) == (["a", "b"], {"c": 29})


def test_intervals_narrow_with_more_queries_and_cover_the_gap() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400):
        a, b = rng.normal(0.8, 0.2, n), rng.normal(0.5, 0.2, n)
        low, high = bootstrap_interval(mean_gap, [a, b], paired=False, config=CONFIG)
        assert low <= mean_gap(a, b) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_a_constant_statistic_gets_a_point_interval_and_tiny_samples_none() -> None:
    ones = np.ones(50)
    assert bootstrap_interval(mean_gap, [ones, ones], paired=False, config=CONFIG) == (0.0, 0.0)
    assert bootstrap_interval(mean_gap, [ones, ones[:1]], paired=False, config=CONFIG) is None


@st.composite
def decisions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows in queries with a group each, a relevant label and a selected decision."""
    n = draw(st.integers(8, 60))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, 6, n)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    relevant = rng.random(n) < 0.4
    selected = rng.random(n) < 0.5
    return queries, groups, relevant, selected


def _per_query(queries, groups, names, weights):
    return [
        np.bincount(queries[groups == g], weights=w[groups == g].astype(float), minlength=6)
        for g in names
        for w in weights
    ]


@settings(max_examples=40, deadline=None)
@given(data=decisions())
def test_resampled_statistics_match_fairlearn_on_the_sample(data) -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    queries, groups, relevant, selected = data
    names = sorted(set(groups))
    if len(names) < 2:
        return
    dp = demographic_parity_difference(relevant, selected, sensitive_features=groups)
    columns = _per_query(queries, groups, names, [selected, np.ones(len(groups))])
    assert float(ratio_gap(*columns)) == pytest.approx(dp)
    both = [g for g in names if relevant[groups == g].any() and (~relevant[groups == g]).any()]
    if len(both) < 2:
        return
    keep = np.isin(groups, both)
    eo = equalized_odds_difference(relevant[keep], selected[keep], sensitive_features=groups[keep])
    weights = [selected & relevant, relevant, selected & ~relevant, ~relevant]
    assert float(odds_gap(*_per_query(queries, groups, both, weights))) == pytest.approx(eo)
