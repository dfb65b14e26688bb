"""Empirical privacy audit: the statistics of a membership-inference attack and of canaries.

Pure functions on arrays; :mod:`ecrec.privacy.audit_run` scores a run's global ranker
and calls them, :mod:`ecrec.report.privacy_audit` renders the result.

Hand-written, not a library: the maintained option, Privacy Meter, is on PyPI only as
``privacy-meter`` 1.0.1 (2023), whose ``privacy_meter.model`` imports TensorFlow at module
level (``audit`` and ``information_source`` import it), so using it would pull a
TensorFlow install of several hundred MB into every ecrec install for what is, for our
signals, a threshold over per-example losses; it also has no clustered bootstrap and no
canary exposure. The attacks here are the standard ones it implements (population /
loss threshold, reference-model calibration), in a few lines of numpy.

* **Membership signal.** Higher = "more likely a member". The loss attack uses
  ``-loss`` (Yeom et al. 2018); for a 0/1 target, BCE is monotone in the target-signed
  logit, so this is also score thresholding. The calibrated attack uses
  ``loss_reference - loss`` (Watson et al. 2022, "difficulty calibration"; Carlini et al.
  2022 use the same idea with shadow models): how much *this* model lowered a row's loss.
* **AUC** is the Mann-Whitney statistic (ties count one half), **TPR at FPR <= α** the
  fraction of members whose signal is strictly above the threshold that at most
  ``floor(α · non-members)`` non-members exceed -- so the FPR is at most α by
  construction, never estimated.
* **Mirrored pairs** (:func:`paired_attack_summary`): two runs on mirrored splits of the
  same shoppers, each row attacked with the run that trained on it against the run that
  held it out, which removes the luck of which shoppers landed on which side.
* **Intervals** are percentile bootstraps that resample whole *clusters* (a shopper's
  rows, or a query's) within members and within non-members: rows of one shopper are not
  independent, and the DP unit is the shopper.
* **Canary exposure** (Carlini et al. 2019, "The Secret Sharer"): a canary is ranked
  among ``N`` reference candidates drawn from the same random space but never inserted;
  with ``rank`` in 1..N+1 (mid-rank on ties), ``exposure = log2(N + 1) - log2(rank)``.
  Without memorisation the rank is uniform and the mean exposure is
  :func:`expected_exposure` (about log2(e) = 1.44 bits); the most it can be is log2(N + 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: The false-positive rate the headline TPR is reported at.
DEFAULT_FPR = 0.01


def bce_per_example(logits: ArrayLike, targets: ArrayLike) -> NDArray[np.float64]:
    """Binary cross-entropy of each logit against its target in [0, 1] (stable form)."""
    s = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"{s.shape} logits but {t.shape} targets")
    return np.logaddexp(0.0, s) - t * s


def _split(signal: ArrayLike, is_member: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(signal, dtype=np.float64)
    member = np.asarray(is_member, dtype=bool)
    if values.shape != member.shape or values.ndim != 1:
        raise ValueError("signal and membership must be 1-d arrays of the same length")
    if not np.all(np.isfinite(values)):
        raise ValueError("membership signal has non-finite values")
    return values[member], values[~member]


def auc(signal: ArrayLike, is_member: ArrayLike) -> float:
    """Attack AUC: P(member's signal > non-member's), ties counted one half."""
    members, others = _split(signal, is_member)
    return _auc(members, others)


def _auc(members: np.ndarray, others: np.ndarray) -> float:
    if not len(members) or not len(others):
        return math.nan
    ranks = _midranks(np.concatenate([members, others]))
    n1, n0 = len(members), len(others)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def tpr_at_fpr(signal: ArrayLike, is_member: ArrayLike, *, fpr: float = DEFAULT_FPR) -> float:
    """The fraction of members flagged when at most ``floor(fpr · non-members)`` are."""
    members, others = _split(signal, is_member)
    return _tpr_at_fpr(members, others, fpr)


def _tpr_at_fpr(members: np.ndarray, others: np.ndarray, fpr: float) -> float:
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    if not len(members) or not len(others):
        return math.nan
    allowed = math.floor(fpr * len(others) + 1e-9)
    threshold = np.sort(others)[::-1][allowed]  # at most `allowed` non-members are above it
    return float(np.mean(members > threshold))


def _cluster_index(clusters: ArrayLike | None, n: int) -> list[np.ndarray]:
    """Row indices of each cluster (each row its own cluster when none are given)."""
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray(clusters)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} rows")
    if not n:
        return []
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    count = int(codes.max()) + 1
    bounds = np.searchsorted(codes[order], np.arange(count + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(count)]


def attack_summary(
    signal: ArrayLike,
    is_member: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    fpr: float = DEFAULT_FPR,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC and TPR at ``fpr`` with percentile bootstrap intervals over clusters.

    Members and non-members are resampled separately (their counts stay fixed), by
    whole cluster when ``clusters`` (one label per row, e.g. the shopper) is given.
    """
    values = np.asarray(signal, dtype=np.float64)
    member = np.asarray(is_member, dtype=bool)
    members, others = _split(values, member)
    label_array = None if clusters is None else np.asarray(clusters)
    groups = {
        side: _cluster_index(None if label_array is None else label_array[mask], int(mask.sum()))
        for side, mask in (("in", member), ("out", ~member))
    }
    rng = np.random.default_rng(seed)
    samples = (
        (_resample(members, groups["in"], rng), _resample(others, groups["out"], rng))
        for _ in range(n_bootstrap if len(members) and len(others) else 0)
    )
    return _summary(
        members, others, samples, fpr=fpr, confidence=confidence, n_bootstrap=n_bootstrap,
        clusters=(len(groups["in"]), len(groups["out"])),
    )  # fmt: skip


def _summary(
    members: np.ndarray,
    others: np.ndarray,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    fpr: float,
    confidence: float,
    n_bootstrap: int,
    clusters: tuple[int, int],
) -> dict[str, Any]:
    """AUC and TPR at ``fpr`` of the full sample, with percentile intervals over the
    bootstrap ``samples`` (pairs of member and non-member signals)."""
    aucs, tprs = [], []
    for sample_in, sample_out in samples:
        aucs.append(_auc(sample_in, sample_out))
        tprs.append(_tpr_at_fpr(sample_in, sample_out, fpr))
    return {
        "auc": _auc(members, others),
        "auc_ci": _interval(aucs, confidence),
        "tpr_at_fpr": _tpr_at_fpr(members, others, fpr),
        "tpr_at_fpr_ci": _interval(tprs, confidence),
        "fpr": fpr,
        "members": len(members),
        "non_members": len(others),
        "member_clusters": clusters[0],
        "non_member_clusters": clusters[1],
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
    }


def paired_attack_summary(
    signal_in: ArrayLike,
    signal_out: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    fpr: float = DEFAULT_FPR,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The attack on mirrored runs: row ``i``'s signal under the run that trained on it
    (``signal_in[i]``) against its signal under the run that held it out (``signal_out[i]``).

    Every row is on both sides, so a difference in difficulty between the two halves of
    the split cancels (a single run compares different rows, and with a few dozen shoppers
    per side that difference moves the AUC by about ±0.1). The bootstrap resamples whole
    clusters once and takes both signals of each row drawn, keeping the pairing.
    """
    inside = np.asarray(signal_in, dtype=np.float64)
    outside = np.asarray(signal_out, dtype=np.float64)
    if inside.shape != outside.shape or inside.ndim != 1:
        raise ValueError("paired signals must be 1-d arrays of the same length")
    if not (np.all(np.isfinite(inside)) and np.all(np.isfinite(outside))):
        raise ValueError("membership signal has non-finite values")
    groups = _cluster_index(clusters, len(inside))
    rng = np.random.default_rng(seed)

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for _ in range(n_bootstrap if len(inside) else 0):
            picked = rng.integers(0, len(groups), size=len(groups))
            rows = np.concatenate([groups[i] for i in picked])
            yield inside[rows], outside[rows]

    summary = _summary(
        inside, outside, pairs(), fpr=fpr, confidence=confidence, n_bootstrap=n_bootstrap,
        clusters=(len(groups), len(groups)),
    )  # fmt: skip
    return {**summary, "paired": True}


def _resample(values: np.ndarray, groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    picked = rng.integers(0, len(groups), size=len(groups))
    return values[np.concatenate([groups[i] for i in picked])]


def _interval(samples: Sequence[float], confidence: float) -> list[float] | None:
    finite = np.asarray([s for s in samples if math.isfinite(s)], dtype=np.float64)
    if not len(finite):
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


# --------------------------------------------------------------------------- canaries


def canary_rank(canary_score: float, reference_scores: ArrayLike) -> float:
    """The canary's rank (1 = highest) among itself and the references; mid-rank on ties."""
    refs = np.asarray(reference_scores, dtype=np.float64)
    if not (math.isfinite(canary_score) and np.all(np.isfinite(refs))):
        raise ValueError("canary scores must be finite")
    return 1.0 + float(np.sum(refs > canary_score)) + 0.5 * float(np.sum(refs == canary_score))


def exposure(canary_score: float, reference_scores: ArrayLike) -> float:
    """``log2(N + 1) - log2(rank)`` for a canary ranked among ``N`` references."""
    refs = np.asarray(reference_scores, dtype=np.float64)
    return math.log2(len(refs) + 1) - math.log2(canary_rank(canary_score, refs))


def expected_exposure(n_references: int) -> float:
    """Mean exposure of a canary that was not memorised (its rank uniform on 1..N+1)."""
    n = n_references + 1
    return math.log2(n) - float(np.mean(np.log2(np.arange(1, n + 1))))


def exposure_summary(
    canary_scores: ArrayLike, reference_scores: Sequence[ArrayLike]
) -> dict[str, Any]:
    """Per-canary rank and exposure, and their mean / max against the no-memory baseline."""
    scores = np.asarray(canary_scores, dtype=np.float64)
    if len(scores) != len(reference_scores):
        raise ValueError(f"{len(scores)} canaries but {len(reference_scores)} reference sets")
    if not len(scores):
        raise ValueError("no canaries")
    sizes = {len(np.asarray(r)) for r in reference_scores}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError("every canary needs the same, non-zero number of references")
    n_refs = sizes.pop()
    ranks = [canary_rank(float(s), r) for s, r in zip(scores, reference_scores, strict=True)]
    exposures = [math.log2(n_refs + 1) - math.log2(r) for r in ranks]
    return {
        "canaries": len(scores),
        "references": n_refs,
        "ranks": ranks,
        "exposures": exposures,
        "mean_exposure": float(np.mean(exposures)),
        "max_exposure": float(np.max(exposures)),
        "max_possible": math.log2(n_refs + 1),
        "expected_without_memorisation": expected_exposure(n_refs),
        "top_ranked": int(sum(r == 1.0 for r in ranks)),
    }


__all__ = [
    "DEFAULT_FPR",
    "attack_summary",
    "auc",
    "bce_per_example",
    "canary_rank",
    "expected_exposure",
    "exposure",
    "exposure_summary",
    "paired_attack_summary",
    "tpr_at_fpr",
]
