"""Shopper-level DP: one DP sample is one shopper, whatever number of rows they have.

Grouping (:func:`dp_units`), the per-shopper clipping bound C on the *combined*
gradient of a shopper's rows (read off the DP optimizer and the SGD step it takes),
and accounting over shoppers, checked against Google's ``dp_accounting``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from ecrec.data.schema import USER_ID
from ecrec.errors import DataError
from ecrec.model.ranker import Ranker
from ecrec.privacy.accounting import RoundSpend, epsilon_for_history
from ecrec.train.local import TrainConfig, dp_units, plan_round, train_local


def _frame(shoppers: list[str], *, same_text: bool = False) -> pd.DataFrame:
    """One row per entry of ``shoppers`` (the shopper id), with a row key in ``product_id``."""
    n = len(shoppers)
    return pd.DataFrame(
        {
            "query": ["red sneakers" if same_text else f"query {i % 5}" for i in range(n)],
            "product_id": [f"p{i:04d}" for i in range(n)],
            "product_title": ["Acme red sneaker" if same_text else f"item {i}" for i in range(n)],
            "product_text": ["colour: red" if same_text else f"colour: c{i % 3}" for i in range(n)],
            "label": [1 if same_text else i % 2 for i in range(n)],
            USER_ID: shoppers,
        }
    )


def _kept_keys(frame: pd.DataFrame, shopper: str, *, cap: int) -> set[str]:
    groups = dp_units(frame, unit="user", max_rows_per_user=cap)
    kept = frame.iloc[groups.rows]
    return set(kept.loc[kept[USER_ID] == shopper, "product_id"])


# -- dp_units ---------------------------------------------------------------------------


def test_row_unit_is_every_row() -> None:
    frame = _frame(["a", "b", "a", "c"])
    groups = dp_units(frame, unit="row")
    assert (groups.unit, groups.n_units) == ("row", 4)
    np.testing.assert_array_equal(groups.rows, np.arange(4))
    np.testing.assert_array_equal(groups.unit_of_row, np.arange(4))


def test_user_unit_groups_every_row_of_a_shopper_into_one_unit() -> None:
    shoppers = ["a", "b", "a", "c", "c", "a", "c", "c", "c"]
    frame = _frame(shoppers)
    groups = dp_units(frame, unit="user", max_rows_per_user=32)
    assert (groups.unit, groups.n_units) == ("user", 3)
    assert sorted(groups.rows.tolist()) == list(range(len(frame)))  # nothing dropped
    owner_of_row = dict(zip(groups.rows.tolist(), groups.unit_of_row.tolist(), strict=True))
    for unit in range(groups.n_units):
        members = {shoppers[row] for row, owner in owner_of_row.items() if owner == unit}
        assert len(members) == 1  # a unit is one shopper ...
    units_of = {s: {owner_of_row[i] for i, x in enumerate(shoppers) if x == s} for s in "abc"}
    assert all(len(units) == 1 for units in units_of.values())  # ... and a shopper one unit
    assert len(set().union(*units_of.values())) == 3


def test_heavy_shopper_is_capped_at_max_rows_per_user() -> None:
    frame = _frame(["heavy"] * 50 + ["light"] * 3 + ["one"])
    groups = dp_units(frame, unit="user", max_rows_per_user=8)
    assert groups.n_units == 3
    kept = frame.iloc[groups.rows]
    assert kept[USER_ID].value_counts().to_dict() == {"heavy": 8, "light": 3, "one": 1}
    assert len(set(groups.rows.tolist())) == len(groups.rows)  # no row twice
    assert dp_units(frame, unit="user", max_rows_per_user=1).rows.size == 3


def test_the_capped_choice_is_the_same_every_call() -> None:
    frame = _frame(["heavy"] * 50 + ["light"] * 3)
    first = dp_units(frame, unit="user", max_rows_per_user=8)
    for _ in range(3):
        again = dp_units(frame, unit="user", max_rows_per_user=8)
        np.testing.assert_array_equal(again.rows, first.rows)
        np.testing.assert_array_equal(again.unit_of_row, first.unit_of_row)


def test_the_capped_choice_depends_on_the_shopper_id_not_on_other_shoppers() -> None:
    heavy = ["heavy"] * 50
    alone = _kept_keys(_frame(heavy), "heavy", cap=8)
    with_others = _frame([*heavy, *(f"other{i}" for i in range(30))])
    assert _kept_keys(with_others, "heavy", cap=8) == alone
    # Another shopper with the same rows gets another (id-seeded) choice.
    renamed = _frame(["someone-else"] * 50)
    assert _kept_keys(renamed, "someone-else", cap=8) != alone


def test_the_capped_choice_does_not_depend_on_row_order() -> None:
    frame = _frame(["heavy"] * 50)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert _kept_keys(shuffled, "heavy", cap=8) == _kept_keys(frame, "heavy", cap=8)


def test_user_unit_needs_a_shopper_id_on_every_row() -> None:
    frame = _frame(["a", "b"])
    with pytest.raises(DataError, match=USER_ID):
        dp_units(frame.drop(columns=[USER_ID]), unit="user")
    for missing in ("", None):
        holed = frame.copy()
        holed[USER_ID] = ["a", missing]
        with pytest.raises(DataError, match=USER_ID):
            dp_units(holed, unit="user")


# -- a shopper's combined gradient is clipped to C -----------------------------------


@pytest.fixture
def dp_steps(monkeypatch) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Every DP step's per-unit gradients (as clipped) and their clipped sum, recorded
    inside Opacus' DPOptimizer; and plain SGD instead of AdamW, so that the adapter
    change is ``-lr * (clipped sum + noise) / expected units``."""
    from opacus.optimizers import DPOptimizer

    records: list[dict[str, torch.Tensor]] = []
    original = DPOptimizer.clip_and_accumulate

    def recording(self) -> None:
        per_unit = torch.cat([g.reshape(len(g), -1) for g in self.grad_samples], dim=1)
        original(self)
        summed = torch.cat([p.summed_grad.reshape(-1) for p in self.params])
        records.append({"per_unit": per_unit.detach().clone(), "summed": summed.detach().clone()})

    def sgd(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)

    monkeypatch.setattr(DPOptimizer, "clip_and_accumulate", recording)
    monkeypatch.setattr(torch.optim, "AdamW", sgd)
    yield records


def _one_step(ranker: Ranker, frame: pd.DataFrame, *, unit: str, clip: float) -> dict:
    start = ranker.adapter_state()
    config = TrainConfig(
        local_steps=1, batch_size=len(frame), learning_rate=0.1, max_grad_norm=clip, seed=0
    )
    result = train_local(ranker, frame, config=config, noise_multiplier=1e-9, unit=unit)
    after = ranker.adapter_state()
    ranker.load_adapter_state(start)
    change = np.concatenate([(after[k] - start[k]).ravel() for k in start])
    return {"result": result, "change": float(np.linalg.norm(change))}


def test_a_shoppers_combined_gradient_is_clipped_to_C(ranker: Ranker, dp_steps) -> None:
    """One shopper, eight alike rows: every row's gradient is below C, their sum above it.

    Per shopper the DP optimizer sees one gradient, the sum of the eight rows'
    gradients, and clips it to C; per row it sees eight gradients under C and clips
    none, so the shopper moves the model by the whole (unclipped) sum.
    """
    frame = _frame(["heavy"] * 8, same_text=True)
    # Probe without clipping: the per-row gradients and their sum.
    _one_step(ranker, frame, unit="row", clip=1e6)
    (probe,) = dp_steps
    rows = probe["per_unit"]
    assert rows.shape[0] == 8
    row_norms = rows.norm(dim=1)
    total = float(rows.sum(dim=0).norm())
    assert float(row_norms.max()) < total
    clip = (float(row_norms.max()) + total) / 2
    dp_steps.clear()

    shopper = _one_step(ranker, frame, unit="user", clip=clip)
    (step,) = dp_steps
    assert shopper["result"].units == 1 and shopper["result"].unit == "user"
    # The shopper's one gradient is the sum of its rows' gradients ...
    assert step["per_unit"].shape[0] == 1
    torch.testing.assert_close(step["per_unit"][0], rows.sum(dim=0), rtol=1e-4, atol=1e-7)
    assert float(step["per_unit"][0].norm()) > clip
    # ... clipped to C, and the SGD step shows it: |Δ| = lr * C (one expected unit).
    assert float(step["summed"].norm()) == pytest.approx(clip, rel=1e-5)
    assert float(step["summed"].norm()) <= clip
    assert shopper["change"] == pytest.approx(0.1 * clip, rel=1e-3)
    dp_steps.clear()

    per_row = _one_step(ranker, frame, unit="row", clip=clip)
    (step,) = dp_steps
    assert per_row["result"].units == 8
    assert bool((step["per_unit"].norm(dim=1) < clip).all())  # no row is clipped ...
    assert float(step["summed"].norm()) == pytest.approx(total, rel=1e-4)
    assert float(step["summed"].norm()) > clip  # ... so the same rows together exceed C


def test_a_heavy_shopper_trains_on_its_capped_rows_summed(ranker: Ranker, dp_steps) -> None:
    """Per shopper, the gradient is the sum over exactly the rows dp_units kept."""
    frame = _frame(["heavy"] * 12 + ["light"] * 2)
    groups = dp_units(frame, unit="user", max_rows_per_user=4)
    kept = frame.iloc[groups.rows].reset_index(drop=True)
    assert kept[USER_ID].tolist() == ["heavy"] * 4 + ["light"] * 2
    config = TrainConfig(local_steps=1, batch_size=6, learning_rate=0.1, max_grad_norm=1e6, seed=0)
    start = ranker.adapter_state()
    train_local(ranker, kept, config=config, noise_multiplier=1e-9, unit="row")
    ranker.load_adapter_state(start)  # the same starting point for both
    (probe,) = dp_steps
    dp_steps.clear()
    config = TrainConfig(local_steps=1, batch_size=2, learning_rate=0.1, max_grad_norm=1e6, seed=0)
    result = train_local(
        ranker, frame, config=config, noise_multiplier=1e-9, unit="user", max_rows_per_user=4
    )
    ranker.load_adapter_state(start)
    assert (result.units, result.examples, result.sample_rate) == (2, 14, 1.0)
    (step,) = dp_steps
    rows = probe["per_unit"]
    expected = torch.stack([rows[:4].sum(dim=0), rows[4:].sum(dim=0)])
    torch.testing.assert_close(step["per_unit"], expected, rtol=1e-4, atol=1e-7)


# -- accounting over shoppers -------------------------------------------------------------


@pytest.fixture
def poisson_rates(monkeypatch) -> list[float]:
    """The sample rate of every Poisson loader training really builds."""
    from opacus.data_loader import DPDataLoader

    rates: list[float] = []
    original = DPDataLoader.from_data_loader

    def recording(cls, data_loader, *args, **kwargs):
        loader = original(data_loader, *args, **kwargs)
        rates.append(float(loader.batch_sampler.sample_rate))
        return loader

    monkeypatch.setattr(DPDataLoader, "from_data_loader", classmethod(recording))
    return rates


def _dp_accounting_epsilon(spend: RoundSpend, *, delta: float, accountant: str) -> float:
    """ε of one round from Google's dp_accounting (independent of ecrec and Opacus)."""
    import dp_accounting
    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant

    reference = PLDAccountant() if accountant == "pld" else RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(
        spend.sample_rate, dp_accounting.GaussianDpEvent(spend.noise_multiplier)
    )
    return float(reference.compose(event, spend.steps).get_epsilon(delta))


def test_sample_rate_and_accounting_are_over_shoppers(ranker: Ranker, poisson_rates) -> None:
    # 8 shoppers with 20 rows; B = 4 shoppers per batch.
    shoppers = [f"s{i % 8}" for i in range(20)]
    frame = _frame(shoppers)
    config = TrainConfig(local_steps=3, batch_size=4, seed=0)
    result = train_local(ranker, frame, config=config, noise_multiplier=1.0, unit="user")
    assert (result.unit, result.units, result.examples) == ("user", 8, 20)
    assert (result.sample_rate, result.steps) == plan_round(8, config) == (0.5, 3)
    assert poisson_rates == [result.sample_rate]  # what the ledger records is what was used
    assert result.sample_rate != plan_round(20, config)[0]  # not over rows
    spend = RoundSpend(noise_multiplier=1.0, sample_rate=result.sample_rate, steps=result.steps)
    for accountant, tolerance in (("pld", 1e-3), ("rdp", 1e-2)):
        ours = epsilon_for_history([spend], delta=1e-5, accountant=accountant)
        theirs = _dp_accounting_epsilon(spend, delta=1e-5, accountant=accountant)
        assert ours == pytest.approx(theirs, rel=tolerance), accountant
        assert math.isfinite(ours) and ours > 0


def test_the_recorded_rate_is_the_rate_really_used_when_B_does_not_divide_U(
    ranker: Ranker, poisson_rates
) -> None:
    # Opacus' Poisson loader samples at 1/ceil(U/B) = 1/3 here, not B/U = 4/9.
    frame = _frame([f"s{i}" for i in range(9)])
    config = TrainConfig(local_steps=1, batch_size=4, seed=0)
    result = train_local(ranker, frame, config=config, noise_multiplier=1.0, unit="user")
    assert result.units == 9
    assert result.sample_rate == 1 / math.ceil(9 / 4)
    assert poisson_rates == [result.sample_rate]
