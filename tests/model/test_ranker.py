"""The LoRA cross-encoder: building offline, adapter state, scoring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ecrec.errors import ConfigError, ModelError
from ecrec.model.ranker import Ranker, RankerConfig, build_ranker

QUERIES = ["red running shoes", "grey sofa", "cheap kettle", "navy trainers", "oak table"]
TEXTS = [
    "Acme running shoes, red, mesh. A breathable upper.",
    "Haven sofa, grey, linen. Deep seats.",
    "Lumen kettle, white, steel. Budget price.",
    "Vela sneakers, navy, canvas. Flat laces.",
    "Orbis table, brown, oak. Seats six.",
]


def _cross(**changes: object) -> RankerConfig:
    """A cross-encoder config (this module tests the LoRA cross-encoder)."""
    return RankerConfig(architecture="cross-encoder", **changes)  # type: ignore[arg-type]


def _lora_params(hidden: int, layers: int, r: int, modules: int) -> int:
    """A (r x hidden) + B (hidden x r) per adapted module, plus the 1-logit head."""
    return layers * modules * 2 * r * hidden + hidden + 1


def _perturbed(state: dict[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: (a + rng.normal(0, 0.05, a.shape)).astype(np.float32) for name, a in state.items()
    }


def _assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- building -------------------------------------------------------------------


def test_tiny_ranker_builds_offline_with_expected_adapters(ranker: Ranker) -> None:
    state = ranker.adapter_state()
    assert ranker.config.base_model == "tiny"
    # 2 layers x (query, value) x (lora_A, lora_B) + classifier weight and bias.
    assert len(state) == 10
    assert sum("lora_A" in n for n in state) == 4
    assert sum("lora_B" in n for n in state) == 4
    assert sum("classifier" in n for n in state) == 2
    for name, array in state.items():
        assert isinstance(array, np.ndarray), name
        assert array.dtype == np.float32, name
        assert np.all(np.isfinite(array)), name
    assert ranker.adapter_nbytes() == 4 * _lora_params(hidden=64, layers=2, r=8, modules=2)
    # LoRA B starts at zero (the adapted model starts as the base model); A does not.
    assert all(not state[n].any() for n in state if "lora_B" in n)
    assert all(state[n].any() for n in state if "lora_A" in n)


def test_adapter_state_is_a_copy(ranker: Ranker) -> None:
    state = ranker.adapter_state()
    name = next(iter(state))
    state[name][...] = 123.0
    assert not np.any(ranker.adapter_state()[name] == 123.0)


def test_same_seed_gives_identical_initial_adapters(
    tiny_config: RankerConfig, tiny_initial_state: dict[str, np.ndarray]
) -> None:
    again = build_ranker(tiny_config, device="cpu")
    _assert_same_state(again.adapter_state(), tiny_initial_state)
    other = build_ranker(dataclasses.replace(tiny_config, seed=1), device="cpu")
    other_state = other.adapter_state()
    differs = [n for n in other_state if not np.array_equal(other_state[n], tiny_initial_state[n])]
    # Every randomly initialised entry (A matrices, head weight) depends on the seed.
    assert sum("lora_A" in n for n in differs) == 4
    assert any("classifier" in n for n in differs)


def test_ffa_lora_freezes_every_lora_a(tiny_config: RankerConfig) -> None:
    ffa = build_ranker(dataclasses.replace(tiny_config, ffa=True), device="cpu")
    named = dict(ffa.model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    lora_a = [n for n in named if "lora_A" in n]
    assert len(lora_a) == 4
    assert not any(named[n].requires_grad for n in lora_a)
    assert all("lora_B" in n or "classifier" in n for n in trainable), trainable
    assert sum("lora_B" in n for n in trainable) == 4
    assert sum("classifier" in n for n in trainable) == 2
    assert len(ffa.trainable_parameters()) == 6

    plain = build_ranker(tiny_config, device="cpu")
    plain_trainable = [n for n, p in plain.model.named_parameters() if p.requires_grad]
    assert sum("lora_A" in n for n in plain_trainable) == 4


def test_bad_base_model_folder_is_a_one_line_model_error(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError) as info:
        build_ranker(_cross(base_model=str(missing)), device="cpu")
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)

    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelError) as info:
        build_ranker(_cross(base_model=str(empty)), device="cpu")
    assert str(empty) in str(info.value)
    assert "\n" not in str(info.value)

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError) as info:
        build_ranker(_cross(base_model=str(broken)), device="cpu")
    assert str(broken) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_target_modules_are_a_model_error(tiny_config: RankerConfig) -> None:
    config = dataclasses.replace(tiny_config, target_modules=("no_such_projection",))
    with pytest.raises(ModelError, match="no_such_projection"):
        build_ranker(config, device="cpu")


@pytest.mark.parametrize(
    "changes",
    [{"max_length": 4}, {"lora_r": 0}, {"target_modules": ()}],
    ids=["max-length", "lora-r", "target-modules"],
)
def test_ranker_config_refuses_bad_values(changes: dict) -> None:
    with pytest.raises(ConfigError):
        RankerConfig(base_model="tiny", **changes)


# -- adapter state --------------------------------------------------------------


def test_adapter_state_round_trips_exactly_and_is_live(ranker: Ranker) -> None:
    before_scores = ranker.score(QUERIES, TEXTS)
    initial = ranker.adapter_state()
    new = _perturbed(initial)
    ranker.load_adapter_state(new)
    _assert_same_state(ranker.adapter_state(), new)
    # The loaded adapters are the ones the model uses (B != 0 now, head changed).
    assert not np.allclose(ranker.score(QUERIES, TEXTS), before_scores)
    # float64 input is accepted and stored as float32.
    ranker.load_adapter_state({n: a.astype(np.float64) for n, a in initial.items()})
    restored = ranker.adapter_state()
    _assert_same_state(restored, initial)
    assert all(a.dtype == np.float32 for a in restored.values())
    np.testing.assert_array_equal(ranker.score(QUERIES, TEXTS), before_scores)


def _refused(ranker: Ranker, state: dict[str, np.ndarray]) -> ModelError:
    reference = ranker.adapter_state()
    reference_scores = ranker.score(QUERIES, TEXTS)
    with pytest.raises(ModelError) as info:
        ranker.load_adapter_state(state)
    # Nothing was applied, not even the valid entries.
    _assert_same_state(ranker.adapter_state(), reference)
    np.testing.assert_array_equal(ranker.score(QUERIES, TEXTS), reference_scores)
    return info.value


def test_load_adapter_state_refuses_missing_key(ranker: Ranker) -> None:
    state = _perturbed(ranker.adapter_state())
    name = sorted(state)[3]
    del state[name]
    assert name in str(_refused(ranker, state))


def test_load_adapter_state_refuses_extra_key(ranker: Ranker) -> None:
    state = _perturbed(ranker.adapter_state())
    state["base_model.model.bert.pooler.dense.lora_A.weight"] = np.zeros((8, 64), np.float32)
    assert "base_model.model.bert.pooler.dense.lora_A.weight" in str(_refused(ranker, state))


def test_load_adapter_state_refuses_wrong_shape(ranker: Ranker) -> None:
    state = _perturbed(ranker.adapter_state())
    name = next(n for n in state if "lora_B" in n)
    state[name] = state[name].T.copy()
    message = str(_refused(ranker, state))
    assert name in message
    assert "(8, 64)" in message and "(64, 8)" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_load_adapter_state_refuses_non_finite(ranker: Ranker, bad: float) -> None:
    state = _perturbed(ranker.adapter_state())
    names = list(state)
    # Put the bad value in the *last* entry, after valid ones that must not be applied.
    name = names[-3]
    state[name][0, 0] = bad
    assert name in str(_refused(ranker, state))


# -- scoring --------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_score_is_one_deterministic_float32_per_pair(ranker: Ranker, training: bool) -> None:
    ranker.load_adapter_state(_perturbed(ranker.adapter_state()))
    ranker.model.train(training)
    first = ranker.score(QUERIES, TEXTS)
    assert first.dtype == np.float32
    assert first.shape == (len(QUERIES),)
    assert np.all(np.isfinite(first))
    assert ranker.model.training is training
    assert all(m.training is training for m in ranker.model.modules())
    # Deterministic, and independent of batching (no dropout, padding to max length).
    np.testing.assert_array_equal(ranker.score(QUERIES, TEXTS), first)
    np.testing.assert_allclose(ranker.score(QUERIES, TEXTS, batch_size=2), first, atol=1e-6)
    # Pairs are scored as pairs: the text matters.
    assert len(np.unique(first)) == len(QUERIES)
    assert ranker.model.training is training


def test_score_reports_batches_and_handles_empty_input(ranker: Ranker) -> None:
    seen: list[int] = []
    ranker.score(QUERIES, TEXTS, batch_size=2, on_batch=seen.append)
    assert seen == [2, 2, 1]
    empty = ranker.score([], [])
    assert empty.dtype == np.float32 and empty.shape == (0,)
    with pytest.raises(ValueError):
        ranker.score(QUERIES, TEXTS[:-1])


# -- the real base model (slow) -------------------------------------------------


@pytest.mark.slow
def test_minilm_lora_update_is_a_small_fraction_of_the_model() -> None:
    minilm = build_ranker(_cross(), device="cpu")  # LoRA r=8
    state = minilm.adapter_state()
    # all-MiniLM-L6-v2: 6 layers, hidden 384.
    expected = 4 * _lora_params(hidden=384, layers=6, r=8, modules=2)
    assert minilm.adapter_nbytes() == expected == 296_452
    assert sum(a.nbytes for a in state.values()) == expected
    full = minilm.full_model_nbytes()
    assert 85e6 < full < 95e6  # ~91 MB of float32 parameters
    ratio = minilm.adapter_nbytes() / full
    # Measured: 296,452 / 91.1 MB = 0.33 %.
    assert ratio < 0.015
    assert 0.002 < ratio < 0.005
    scores = minilm.score(QUERIES, TEXTS)
    assert scores.dtype == np.float32 and np.all(np.isfinite(scores))
