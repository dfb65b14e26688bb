"""DP noise from the OS CSPRNG: Gaussian, of the requested scale, and not seedable.

Without ``train.seed`` every DP step's noise must come from :func:`csprng_normal`
(Opacus' own noise comes from torch's seedable generator); with a seed, training is
repeatable bit for bit (tests and benchmarks only: nodes refuse a server's seed).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from ecrec.data.schema import USER_ID
from ecrec.model.ranker import Ranker
from ecrec.train import noise, steps
from ecrec.train.local import TrainConfig, csprng_normal, train_local

DRAWS = 100_000


def _draw(n: int = DRAWS, *, std: float = 1.0, dtype=torch.float64) -> np.ndarray:
    return csprng_normal((n,), std=std, device="cpu", dtype=dtype).numpy()


# -- csprng_normal --------------------------------------------------------------------


def test_shape_dtype_and_device() -> None:
    noise = csprng_normal((3, 4, 5), std=2.0, device="cpu", dtype=torch.float32)
    assert noise.shape == (3, 4, 5) and noise.dtype == torch.float32
    assert noise.device.type == "cpu"
    assert csprng_normal((), std=1.0, device="cpu", dtype=torch.float64).shape == ()
    assert csprng_normal((0,), std=1.0, device="cpu", dtype=torch.float32).shape == (0,)


@pytest.mark.parametrize("std", [1.0, 0.37, 25.0])
def test_mean_and_std_are_as_requested(std: float) -> None:
    x = _draw(std=std)
    # 6 standard errors: a false alarm about once in 10^9 runs.
    assert abs(x.mean()) < 6 * std / math.sqrt(DRAWS)
    assert abs(x.std() - std) < 6 * std / math.sqrt(2 * DRAWS)


def test_draws_are_normal_and_uncorrelated() -> None:
    x = _draw(std=3.0) / 3.0
    # K-S against N(0, 1) on 100k draws sees any real departure (a uniform, or a
    # missing sqrt(2) in Box-Muller, gives p ~ 0); p > 1e-4 is a 1-in-10^4 false alarm.
    assert stats.kstest(x, "norm").pvalue > 1e-4
    assert abs(stats.kurtosis(x)) < 6 * math.sqrt(24 / DRAWS)  # tails: excess kurtosis 0
    assert abs(stats.skew(x)) < 6 * math.sqrt(6 / DRAWS)
    lag1 = float(np.corrcoef(x[:-1], x[1:])[0, 1])
    assert abs(lag1) < 6 / math.sqrt(DRAWS)
    # Within one call the four summed halves must not repeat: no value twice.
    assert len(np.unique(x)) == DRAWS


def test_zero_std_gives_zeros() -> None:
    noise = csprng_normal((7, 3), std=0.0, device="cpu", dtype=torch.float32)
    assert torch.equal(noise, torch.zeros(7, 3))


def test_every_call_differs_and_torch_seeding_does_not_fix_it() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    first = _draw(1000)
    torch.manual_seed(0)
    np.random.seed(0)
    second = _draw(1000)
    assert not np.array_equal(first, second)
    assert np.intersect1d(first, second).size == 0


# -- train_local uses it unless a seed is set ------------------------------------------


def _shoppers_frame() -> pd.DataFrame:
    n = 12
    return pd.DataFrame(
        {
            "query": [f"red sneakers {i % 3}" for i in range(n)],
            "product_title": [f"Acme item {i}" for i in range(n)],
            "product_text": [f"colour: {'red' if i % 2 else 'blue'}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            USER_ID: [f"s{i % 4}" for i in range(n)],
        }
    )


@pytest.fixture
def noise_calls(monkeypatch) -> dict[str, list]:
    """The optimizer classes made secure, and every csprng_normal draw's (shape, std)."""
    calls: dict[str, list] = {"secured": [], "draws": []}
    make_secure, draw = noise._use_secure_noise, noise.csprng_normal

    def spy_secure(optimizer) -> None:
        make_secure(optimizer)
        calls["secured"].append(type(optimizer).__name__)

    def spy_draw(shape, *, std, device, dtype):
        calls["draws"].append((shape, std))
        return draw(shape, std=std, device=device, dtype=dtype)

    monkeypatch.setattr(steps, "_use_secure_noise", spy_secure)  # where the loops call it
    monkeypatch.setattr(noise, "csprng_normal", spy_draw)
    return calls


def _train(ranker: Ranker, *, unit: str, mode: str = "hooks", seed: int | None = None) -> dict:
    config = TrainConfig(
        local_steps=2,
        batch_size=4,
        learning_rate=1e-2,
        max_grad_norm=0.7,
        grad_sample_mode=mode,
        seed=seed,
    )
    train_local(ranker, _shoppers_frame(), config=config, noise_multiplier=1.3, unit=unit)
    return ranker.adapter_state()


@pytest.mark.parametrize(("unit", "mode"), [("user", "hooks"), ("row", "hooks"), ("row", "ghost")])
def test_without_a_seed_every_noise_draw_comes_from_the_csprng(
    unit: str, mode: str, ranker: Ranker, noise_calls
) -> None:
    _train(ranker, unit=unit, mode=mode)
    (secured,) = noise_calls["secured"]
    assert secured.startswith("SecureNoise")
    trainable = [p for p in ranker.model.parameters() if p.requires_grad]
    draws = noise_calls["draws"]
    # One draw per trainable tensor per non-empty step (2 steps; an empty Poisson batch
    # is skipped), each of the full tensor's shape at std = σ·C.
    assert len(draws) in (len(trainable), 2 * len(trainable))
    shapes = sorted(tuple(p.shape) for p in trainable)
    assert sorted(shape for shape, _ in draws[: len(trainable)]) == shapes
    assert all(std == pytest.approx(1.3 * 0.7) for _, std in draws)


def test_with_a_seed_noise_is_opacus_and_training_is_repeatable(
    ranker: Ranker, tiny_initial_state, noise_calls
) -> None:
    runs = []
    for _ in range(2):
        ranker.load_adapter_state(tiny_initial_state)
        runs.append(_train(ranker, unit="user", seed=11))
    assert noise_calls == {"secured": [], "draws": []}
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
    assert any(not np.array_equal(runs[0][n], tiny_initial_state[n]) for n in runs[0])


def test_without_a_seed_two_runs_from_the_same_start_differ(
    ranker: Ranker, tiny_initial_state
) -> None:
    runs = []
    for _ in range(2):
        ranker.load_adapter_state(tiny_initial_state)
        torch.manual_seed(0)  # a caller's seed does not make the noise repeatable
        runs.append(_train(ranker, unit="user"))
    assert max(float(np.max(np.abs(runs[0][n] - runs[1][n]))) for n in runs[0]) > 1e-4
