"""DP noise and Poisson sampling must be fresh every round unless a seed is set on purpose.

Guards a real bug: re-seeding every round with the configured seed made each
round draw identical noise (which can cancel across rounds) from a seed written
in the run's config.toml.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecrec.model.ranker import RankerConfig, build_ranker
from ecrec.train.local import TrainConfig, train_local


def _frame(rows: int = 64) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "query": [f"red sneakers {i % 5}" for i in range(rows)],
            "product_title": [f"Acme item {i}" for i in range(rows)],
            "product_text": [f"colour: {'red' if i % 2 else 'blue'}" for i in range(rows)],
            "label": rng.integers(0, 2, rows),
        }
    )


def _train_from_same_start(config: TrainConfig) -> list[dict[str, np.ndarray]]:
    ranker = build_ranker(RankerConfig(base_model="tiny", max_length=16))
    start = ranker.adapter_state()
    out = []
    for _ in range(2):
        ranker.load_adapter_state(start)
        train_local(ranker, _frame(), config=config, noise_multiplier=1.0)
        out.append(ranker.adapter_state())
    return out


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def test_default_config_draws_fresh_noise_every_call() -> None:
    config = TrainConfig(local_steps=2, batch_size=16, device="cpu")
    assert config.seed is None
    first, second = _train_from_same_start(config)
    assert _max_diff(first, second) > 1e-4


def test_explicit_seed_is_repeatable() -> None:
    config = TrainConfig(local_steps=2, batch_size=16, device="cpu", seed=7)
    first, second = _train_from_same_start(config)
    assert _max_diff(first, second) == 0.0
