"""Learning-rate warm-up and decay within a round's local steps (train.lr-schedule,
train.warmup-steps): the factor's shape, and that every way of training really steps
at those rates."""

from __future__ import annotations

import itertools
from typing import ClassVar

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ecrec.errors import ConfigError
from ecrec.model.ranker import Ranker
from ecrec.train.local import TrainConfig, learning_rate_factor, train_local

SCHEDULES = ("constant", "linear", "cosine")


@given(
    steps=st.integers(1, 300),
    warmup=st.integers(0, 50),
    schedule=st.sampled_from(SCHEDULES),
)
def test_the_factor_warms_up_then_decays_and_never_reaches_zero(
    steps: int, warmup: int, schedule: str
) -> None:
    factors = [
        learning_rate_factor(k, steps=steps, warmup=warmup, schedule=schedule)  # type: ignore[arg-type]
        for k in range(steps)
    ]
    assert all(0 < f <= 1 for f in factors)
    ramp, rest = factors[: min(warmup, steps)], factors[min(warmup, steps) :]
    assert all(a < b for a, b in itertools.pairwise(ramp))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(rest))
    if rest:
        assert rest[0] == 1.0  # the full rate right after the warm-up
    if schedule == "constant":
        assert all(f == 1.0 for f in rest)


def test_warmup_and_linear_decay_values() -> None:
    got = [learning_rate_factor(k, steps=6, warmup=2, schedule="linear") for k in range(6)]
    assert got == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25])


class _Recording(torch.optim.AdamW):
    """AdamW that records the learning rate of every step it takes."""

    rates: ClassVar[list[float]] = []

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        _Recording.rates.append(self.param_groups[0]["lr"])
        return super().step(closure)


@pytest.mark.parametrize("dp", [False, True], ids=["plain", "dp"])
def test_training_steps_at_the_scheduled_rates(
    dp: bool, ranker: Ranker, merchant_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.optim, "AdamW", _Recording)
    _Recording.rates.clear()
    config = TrainConfig(
        local_steps=6, batch_size=16, learning_rate=0.01, device="cpu", seed=0, dp=dp,
        lr_schedule="linear", warmup_steps=2,
    )  # fmt: skip
    train_local(ranker, merchant_frame, config=config, noise_multiplier=1.0 if dp else None)
    expected = [0.01 * f for f in (1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25)]
    assert _Recording.rates == pytest.approx(expected)


@pytest.mark.parametrize(
    "changes",
    [{"lr_schedule": "exponential"}, {"warmup_steps": -1}],
    ids=["unknown-schedule", "negative-warmup"],
)
def test_bad_schedule_settings_are_refused(changes: dict) -> None:
    with pytest.raises(ConfigError, match=r"train\.(lr-schedule|warmup-steps)"):
        TrainConfig(**changes)
