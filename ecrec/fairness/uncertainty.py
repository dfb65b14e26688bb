"""How sure an audit is: bootstrap intervals over queries, and the verdict they allow.

A gap between groups measured on a few dozen queries is mostly sampling noise,
so every comparison carries a bootstrap confidence interval, and a
comparison is flagged only when its *whole* interval lies beyond the threshold:

* ``flag``: the interval is entirely on the wrong side of the threshold;
* ``ok``: the interval is entirely on the right side;
* ``inconclusive``: the interval contains the threshold (more queries needed);
* ``too few queries``: fewer than two groups have ``min_queries_per_group``
  queries, so no number is presented as a finding;
* ``undefined``: nothing to compare (a single group, or no relevant items).

The resampling unit is the query, because a ranker is judged page by page and
the rows of one result page are not independent. Resampling and the
intervals are :func:`scipy.stats.bootstrap`'s (vectorised: every statistic
here is a mean or a ratio of sums over resampled queries), with a seeded
generator so an audit is reproducible.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecrec.fairness.config import AuditConfig

Status = Literal["flag", "ok", "inconclusive", "too few queries", "undefined"]
FlagWhen = Literal["above", "below"]
Interval = tuple[float, float]
#: A vectorised statistic: the samples (resampled along ``axis``) -> one value per resample.
Statistic = Callable[..., NDArray[np.float64]]
#: Resamples (and jackknife samples) evaluated at once: bounds memory on large shards.
_BATCH = 200


def bootstrap_interval(
    statistic: Statistic,
    samples: Sequence[ArrayLike],
    *,
    paired: bool,
    config: AuditConfig,
) -> Interval | None:
    """Bootstrap interval of ``statistic(*samples, axis=-1)`` (BCa, else percentile).

    BCa corrects the upward bias of a max-minus-min statistic, which a plain
    percentile interval would turn into false flags; when every resample gives
    the same value (e.g. a perfect ranking in every group) BCa is undefined and
    the percentile interval (a point) is used.

    ``paired=True`` resamples the same query indices in every sample (the
    samples are per-query columns of one table); ``paired=False`` resamples
    each sample on its own (one sample per group: a bootstrap stratified by
    group). None when the interval is undefined (a sample with fewer than two
    queries, or resamples where the statistic is undefined).
    """
    from scipy.stats import bootstrap

    arrays = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    if not arrays or any(a.shape[0] < 2 for a in arrays):
        return None
    for method in ("BCa", "percentile"):
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # Degenerate or undefined resamples give NaN, handled below.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = bootstrap(
                arrays,
                statistic,
                paired=paired,
                vectorized=True,
                axis=-1,
                n_resamples=config.bootstrap_resamples,
                confidence_level=config.confidence_level,
                method=method,
                batch=_BATCH,
                rng=np.random.default_rng(config.seed),
            )
        low, high = (float(v) for v in result.confidence_interval)
        if math.isfinite(low) and math.isfinite(high):
            return low, high
    return None


def judge(
    value: float | None, interval: Interval | None, *, threshold: float, flag_when: FlagWhen
) -> Status:
    """The verdict on one measured comparison (see the module docstring)."""
    if value is None:
        return "undefined"
    if interval is None:
        return "inconclusive"
    low, high = interval
    if flag_when == "above":
        return "flag" if low > threshold else "ok" if high <= threshold else "inconclusive"
    return "flag" if high < threshold else "ok" if low >= threshold else "inconclusive"


def enough_queries(
    queries_by_group: Mapping[str, int], minimum: int
) -> tuple[list[str], dict[str, int]]:
    """(groups with at least ``minimum`` queries, {group: queries} of the others)."""
    eligible = sorted(g for g, n in queries_by_group.items() if n >= minimum)
    too_few = {g: int(n) for g, n in sorted(queries_by_group.items()) if n < minimum}
    return eligible, too_few


def fmt_interval(interval: Interval | None, digits: int = 3) -> str:
    if interval is None:
        return "CI undefined"
    return f"CI {interval[0]:.{digits}f}..{interval[1]:.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """One audited comparison between groups and its verdict."""

    metric: str
    column: str
    value: float | None
    interval: Interval | None
    threshold: float
    flag_when: FlagWhen
    status: Status
    #: The groups compared (enough queries each).
    groups: list[str]
    #: Groups left out for having too few queries: {group: queries}.
    too_few: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def to_dict(self, confidence_level: float) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci": list(self.interval) if self.interval is not None else None,
            "confidence_level": confidence_level,
            "threshold": self.threshold,
            "flag_when": self.flag_when,
            "status": self.status,
            "groups": list(self.groups),
            "too_few_queries": dict(self.too_few),
            "message": self.message,
        }

    def to_flag(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "group_column": self.column,
            "value": self.value,
            "ci": list(self.interval) if self.interval is not None else None,
            "threshold": self.threshold,
            "message": self.message,
        }


def too_few_message(column: str, what: str, too_few: Mapping[str, int], minimum: int) -> str:
    """Why a comparison was not made."""
    listed = ", ".join(f"{g!r} {n}" for g, n in too_few.items()) or "none"
    return (
        f"{column}: too few queries to compare {what} (needs {minimum} per group in at least "
        f"two groups; below that: {listed})"
    )


def judged(
    *,
    metric: str,
    column: str,
    value: float | None,
    interval: Interval | None,
    threshold: float,
    flag_when: FlagWhen,
    groups: list[str],
    too_few: dict[str, int],
    describe: Callable[[Status], str],
) -> Comparison:
    """A measured comparison with its verdict; ``describe(status)`` writes the message."""
    status = judge(value, interval, threshold=threshold, flag_when=flag_when)
    return Comparison(
        metric=metric,
        column=column,
        value=value,
        interval=interval,
        threshold=threshold,
        flag_when=flag_when,
        status=status,
        groups=groups,
        too_few=too_few,
        message=describe(status),
    )


def not_measured(
    *,
    metric: str,
    column: str,
    threshold: float,
    flag_when: FlagWhen,
    status: Status,
    groups: list[str],
    too_few: dict[str, int],
    message: str,
) -> Comparison:
    """A comparison that could not be made ("too few queries" or "undefined")."""
    return Comparison(
        metric=metric,
        column=column,
        value=None,
        interval=None,
        threshold=threshold,
        flag_when=flag_when,
        status=status,
        groups=groups,
        too_few=too_few,
        message=message,
    )
