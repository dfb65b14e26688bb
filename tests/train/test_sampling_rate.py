"""The sample rate the ledger records is the rate Opacus' Poisson loader really samples at.

Opacus' ``DPDataLoader.from_data_loader`` samples every example independently with
q = 1 / len(data_loader) = 1 / ceil(n / B), not B / n. These tests build the real
loader the way ``train_local`` does, draw many Poisson batches (seeded), count how
often each example is included, and compare with :func:`plan_round`'s rate through
binomial tests: the accounted q must fit, and B / n must be rejected where it differs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.data_loader import DPDataLoader
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from ecrec.train.local import TrainConfig, plan_round

#: Binomial tests at this level, seeded: a wrong rate fails by far more (see below).
ALPHA = 1e-4


def poisson_loader(n: int, batch_size: int, seed: int) -> DPDataLoader:
    """The loader ``train_local`` builds: B capped at n, then Opacus' Poisson version."""
    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=min(batch_size, n))
    return DPDataLoader.from_data_loader(loader, generator=torch.Generator().manual_seed(seed))


def inclusion_counts(loader: DPDataLoader, n: int, draws: int) -> np.ndarray:
    """How many of ``draws`` Poisson batches included each example."""
    counts = np.zeros(n, dtype=np.int64)
    drawn = 0
    while drawn < draws:
        for (indices,) in loader:
            np.add.at(counts, indices.numpy(), 1)
            drawn += 1
            if drawn == draws:
                break
    return counts


@pytest.mark.parametrize(
    ("n", "batch_size", "draws"),
    [
        (100, 32, 4000),  # q = 1/4, not 0.32
        (1000, 32, 1500),  # q = 1/32, not 0.032
        (50, 7, 4000),  # q = 1/8, not 0.14
        (64, 16, 3000),  # divisible: q = B / n = 1/4
        (33, 32, 3000),  # q = 1/2, not 0.97
        (10, 32, 200),  # B >= n: every example in every batch
    ],
)
def test_accounted_rate_is_the_rate_opacus_samples_at(n, batch_size, draws):
    q, _ = plan_round(n, TrainConfig(batch_size=batch_size))
    loader = poisson_loader(n, batch_size, seed=n * 1000 + batch_size)
    assert loader.sample_rate == q  # the very float Opacus samples with
    counts = inclusion_counts(loader, n, draws)
    if q == 1.0:
        assert (counts == draws).all()
        return
    trials, included = n * draws, int(counts.sum())
    # Pooled: the empirical rate is within 4 binomial standard errors of q ...
    standard_error = math.sqrt(q * (1 - q) / trials)
    assert abs(included / trials - q) <= 4 * standard_error
    assert stats.binomtest(included, trials, q).pvalue > ALPHA
    # ... and so is every example's own rate (Bonferroni over the n examples),
    z = (counts - draws * q) / math.sqrt(draws * q * (1 - q))
    assert np.abs(z).max() <= stats.norm.isf(ALPHA / (2 * n))
    # with the spread of independent binomials (no example favoured or starved).
    assert stats.chi2.sf(float((z**2).sum()), df=n) > ALPHA


def test_batch_over_examples_would_be_detectably_wrong():
    """For n=100, B=32 the loader samples at 0.25; recording 0.32 would be rejected."""
    n, batch_size, draws = 100, 32, 4000
    q, _ = plan_round(n, TrainConfig(batch_size=batch_size))
    assert q == 0.25
    counts = inclusion_counts(poisson_loader(n, batch_size, seed=7), n, draws)
    trials, included = n * draws, int(counts.sum())
    naive = batch_size / n
    standard_error = math.sqrt(naive * (1 - naive) / trials)
    assert abs(included / trials - naive) > 50 * standard_error
    assert stats.binomtest(included, trials, naive).pvalue < 1e-12
    assert stats.binomtest(included, trials, q).pvalue > ALPHA


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20_000), st.integers(1, 1024))
def test_plan_round_rate_equals_opacus_for_any_size(n, batch_size):
    q, steps = plan_round(n, TrainConfig(batch_size=batch_size, local_epochs=1.0))
    loader = DataLoader(TensorDataset(torch.zeros(n)), batch_size=min(batch_size, n))
    assert q == DPDataLoader.from_data_loader(loader).sample_rate == 1 / len(loader)
    # One epoch is ceil(n / B) = 1/q steps: n examples in expectation.
    assert steps == len(loader) == math.ceil(n / batch_size)
    assert 0 < q <= 1 and (q == 1.0) == (batch_size >= n)


@pytest.mark.parametrize(
    ("n", "batch_size", "epochs", "steps"),
    [
        (100, 32, 1.0, 4),
        (100, 32, 2.5, 10),  # 2.5 epochs of 4 batches
        (47, 3, 3.0, 48),  # 3 x ceil(47/3) = 3 x 16
        (500, 10, 0.14, 7),  # 0.14 x 50 is 7.000000000000001 in floats: still 7
        (64, 16, 0.1, 1),  # at least one step
    ],
)
def test_epochs_are_passes_of_the_poisson_loader(n, batch_size, epochs, steps):
    q, planned = plan_round(n, TrainConfig(batch_size=batch_size, local_epochs=epochs))
    assert planned == steps
    if steps > 1:  # expected examples seen = epochs x n, up to the last partial batch
        assert (steps - 1) * q * n < epochs * n <= steps * q * n
