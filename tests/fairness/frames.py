"""Synthetic frames and hand-built scores for the fairness tests.

No model here: every expected flag follows from how the scores were made.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def unbiased_scores(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """True relevance, centred so relevant (>= 2) items sit above logit 0, plus small noise."""
    rng = np.random.default_rng(seed)
    rel = frame["relevance"].to_numpy(dtype=float)
    return (rel - 1.5) * 2 + rng.normal(0, 0.1, len(frame))


def grouped_queries(queries: dict[str, int], *, seed: int, items: int = 10) -> pd.DataFrame:
    """``queries[group]`` queries per shopper group, ``items`` candidates with relevance 0..3.

    Every query has at least one highly relevant item, so NDCG is defined everywhere.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for group, n in queries.items():
        relevance = rng.choice(4, size=(n, items), p=[0.45, 0.25, 0.2, 0.1])
        relevance[np.arange(n), rng.integers(items, size=n)] = 3
        parts.append(
            pd.DataFrame(
                {
                    "query_id": np.repeat([f"{group}-{q:04d}" for q in range(n)], items),
                    "relevance": relevance.reshape(-1),
                    "label": (relevance.reshape(-1) >= 2).astype(int),
                    "user_segment": group,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def noisy_scores(frame: pd.DataFrame, *, seed: int, noise: float = 1.5) -> np.ndarray:
    """Scores that follow relevance with the same noise in every group (no real gap)."""
    rng = np.random.default_rng(seed)
    return frame["relevance"].to_numpy(dtype=float) + rng.normal(0, noise, len(frame))
