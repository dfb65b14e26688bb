"""Local DP-SGD training of one merchant (Opacus on the peft ranker)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from ecrec.errors import ConfigError, DataError
from ecrec.model.ranker import Ranker, RankerConfig, build_ranker
from ecrec.train.local import TrainConfig, TrainResult, plan_round, train_local

SIGMA = 1.0


def _config(**changes) -> TrainConfig:
    base = dict(local_steps=3, batch_size=16, learning_rate=3e-3, device="cpu", seed=0)
    base.update(changes)
    return TrainConfig(**base)


def _max_change(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[n] - b[n]))) for n in a)


def _hook_count(ranker: Ranker) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in ranker.model.modules()
    )


# -- plan_round -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch", "epochs", "steps", "expected"),
    [
        (100, 32, 1.0, None, (0.25, 4)),  # Opacus: q = 1 / ceil(100 / 32)
        (64, 16, 1.0, None, (0.25, 4)),
        (64, 16, 2.5, None, (0.25, 10)),
        (64, 16, 0.1, None, (0.25, 1)),  # at least one step
        (100, 32, 1.0, 7, (0.25, 7)),  # explicit steps win over epochs
        (100, 32, 5.0, 2, (0.25, 2)),
        (10, 32, 1.0, None, (1.0, 1)),  # sample rate capped at 1
        (10, 32, 3.0, None, (1.0, 3)),
        (32, 32, 1.0, 5, (1.0, 5)),
    ],
)
def test_plan_round_arithmetic(n, batch, epochs, steps, expected) -> None:
    config = TrainConfig(batch_size=batch, local_epochs=epochs, local_steps=steps)
    rate, planned = plan_round(n, config)
    assert isinstance(planned, int)
    assert planned == expected[1]
    assert rate == pytest.approx(expected[0], rel=1e-12)
    assert 0 < rate <= 1


@pytest.mark.parametrize(("n", "batch", "epochs"), [(49, 1, 1.0), (47, 3, 3.0), (94, 6, 3.0)])
def test_plan_round_epochs_are_exact(n: int, batch: int, epochs: float) -> None:
    _, steps = plan_round(n, TrainConfig(batch_size=batch, local_epochs=epochs))
    assert steps == math.ceil(round(epochs * math.ceil(n / batch), 9))  # epoch = 1/q steps


def test_plan_round_refuses_no_examples() -> None:
    with pytest.raises(DataError):
        plan_round(0, TrainConfig())


@pytest.mark.parametrize(
    "changes",
    [
        {"batch_size": 0},
        {"local_steps": 0},
        {"local_epochs": 0.0},
        {"max_grad_norm": 0.0},
        {"grad_sample_mode": "functorch"},
    ],
)
def test_train_config_refuses_bad_values(changes: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**changes)


# -- DP training on the tiny ranker ---------------------------------------------


def test_dp_training_changes_adapters_and_keeps_them_finite(
    ranker: Ranker, merchant_frame: pd.DataFrame, tiny_initial_state
) -> None:
    config = _config()
    steps_seen: list[tuple[int, int, float]] = []
    result = train_local(
        ranker,
        merchant_frame,
        config=config,
        noise_multiplier=SIGMA,
        on_step=lambda s, t, loss: steps_seen.append((s, t, loss)),
    )
    assert isinstance(result, TrainResult)
    rate, steps = plan_round(len(merchant_frame), config)
    assert (result.examples, result.steps, result.sample_rate) == (
        len(merchant_frame),
        steps,
        rate,
    )
    assert result.dp is True and result.noise_multiplier == SIGMA
    assert 1 <= len(result.losses) <= steps
    assert all(math.isfinite(loss) for loss in result.losses)
    assert [s for s, _, _ in steps_seen] == list(range(1, len(steps_seen) + 1))
    assert all(t == steps for _, t, _ in steps_seen)

    state = ranker.adapter_state()
    assert all(np.all(np.isfinite(a)) for a in state.values())
    # Every trained tensor moved (LoRA A, LoRA B which started at 0, and the head).
    for name, array in state.items():
        assert not np.array_equal(array, tiny_initial_state[name]), name
    assert _max_change(state, tiny_initial_state) < 1.0  # a few small Adam steps, not garbage


def _per_sample_grad_norms(ranker: Ranker, frame: pd.DataFrame) -> np.ndarray:
    import torch

    enc = ranker.encode(frame["query"].tolist(), frame["product_text"].tolist())
    labels = torch.as_tensor(frame["label"].to_numpy(dtype=np.float32))
    params = ranker.trainable_parameters()
    norms = []
    for i in range(len(frame)):
        ranker.model.zero_grad(set_to_none=True)
        logit = ranker.logits(**{k: v[i : i + 1] for k, v in enc.items()})
        torch.nn.functional.binary_cross_entropy_with_logits(logit, labels[i : i + 1]).backward()
        norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)))
    ranker.model.zero_grad(set_to_none=True)
    return np.array(norms)


def test_ghost_clipping_matches_per_sample_hooks(
    ranker: Ranker, merchant_frame: pd.DataFrame, tiny_initial_state
) -> None:
    # A clipping norm in the middle of the per-sample gradient norms, so that
    # clipping binds for some samples and not others: then a wrong per-sample
    # norm in either mode changes the update direction (a uniform error would
    # be hidden by Adam's scale invariance). Little noise, so the clipped
    # gradients, not the (identical) noise, drive the trajectory.
    norms = _per_sample_grad_norms(ranker, merchant_frame.head(32))
    clip = float(np.median(norms))
    assert (norms > clip).sum() >= 4 and (norms < clip).sum() >= 4
    runs = {}
    for mode, c in (("hooks", clip), ("ghost", clip), ("hooks-clip-all", clip / 100)):
        ranker.load_adapter_state(tiny_initial_state)
        config = _config(
            local_steps=4,
            max_grad_norm=c,
            grad_sample_mode="ghost" if mode == "ghost" else "hooks",
        )
        result = train_local(ranker, merchant_frame, config=config, noise_multiplier=0.01)
        runs[mode] = (np.array(result.losses), ranker.adapter_state())

    hooks_losses, hooks_state = runs["hooks"]
    ghost_losses, ghost_state = runs["ghost"]
    assert len(hooks_losses) >= 3
    np.testing.assert_allclose(ghost_losses, hooks_losses, rtol=0, atol=1e-5)
    for name in hooks_state:
        np.testing.assert_allclose(ghost_state[name], hooks_state[name], rtol=0, atol=1e-5)
    # The comparison is sensitive: clipping every sample instead of about half
    # of them gives a clearly different trajectory.
    assert _max_change(runs["hooks-clip-all"][1], hooks_state) > 1e-3


def test_same_seed_same_trajectory_other_seed_differs(
    ranker: Ranker, merchant_frame: pd.DataFrame, tiny_initial_state
) -> None:
    states = []
    for seed in (0, 0, 1):
        ranker.load_adapter_state(tiny_initial_state)
        train_local(
            ranker,
            merchant_frame,
            config=_config(seed=seed, grad_sample_mode="ghost"),
            noise_multiplier=SIGMA,
        )
        states.append(ranker.adapter_state())
    assert _max_change(states[0], states[1]) == 0.0
    assert _max_change(states[0], states[2]) > 1e-4


def test_ffa_training_leaves_lora_a_untouched(
    tiny_config: RankerConfig, merchant_frame: pd.DataFrame
) -> None:
    import dataclasses

    ffa = build_ranker(dataclasses.replace(tiny_config, ffa=True), device="cpu")
    before = ffa.adapter_state()
    train_local(ffa, merchant_frame, config=_config(), noise_multiplier=SIGMA)
    after = ffa.adapter_state()
    for name in before:
        if "lora_A" in name:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            assert not np.array_equal(after[name], before[name]), name


def test_dp_needs_a_noise_multiplier(ranker: Ranker, merchant_frame: pd.DataFrame) -> None:
    before = ranker.adapter_state()
    for sigma in (None, 0.0, -1.0):
        with pytest.raises(ConfigError, match="noise multiplier"):
            train_local(ranker, merchant_frame, config=_config(), noise_multiplier=sigma)
    assert _max_change(ranker.adapter_state(), before) == 0.0


def test_non_dp_training_does_not_use_opacus(
    ranker: Ranker, merchant_frame: pd.DataFrame, tiny_initial_state, monkeypatch
) -> None:
    import opacus

    def forbidden(*args, **kwargs):
        raise AssertionError("Opacus used with dp = false")

    monkeypatch.setattr(opacus, "PrivacyEngine", forbidden)
    result = train_local(ranker, merchant_frame, config=_config(dp=False))
    assert result.dp is False and result.noise_multiplier == 0.0
    assert result.steps == 3 and len(result.losses) >= 1
    state = ranker.adapter_state()
    assert all(np.all(np.isfinite(a)) for a in state.values())
    assert _max_change(state, tiny_initial_state) > 0


@pytest.mark.parametrize(
    "mode",
    [
        "hooks",
        "ghost",
    ],
)
def test_dp_training_leaves_no_opacus_residue(
    ranker: Ranker, merchant_frame: pd.DataFrame, tiny_config: RankerConfig, mode: str
) -> None:
    hooks_before = _hook_count(ranker)
    train_local(
        ranker, merchant_frame, config=_config(grad_sample_mode=mode), noise_multiplier=SIGMA
    )
    assert _hook_count(ranker) == hooks_before
    for name, param in ranker.model.named_parameters():
        for attr in ("grad_sample", "_forward_counter", "_current_grad_sample"):
            assert not hasattr(param, attr), (name, attr)
        assert param.grad is None, name
    queries = merchant_frame["query"].tolist()[:20]
    texts = merchant_frame["product_text"].tolist()[:20]
    first = ranker.score(queries, texts)
    second = ranker.score(queries, texts)
    np.testing.assert_array_equal(first, second)
    assert not any(hasattr(p, "grad_sample") for p in ranker.model.parameters())
    # The trained model scores exactly like a clean model given the same adapters.
    clean = build_ranker(tiny_config, device="cpu")
    clean.load_adapter_state(ranker.adapter_state())
    np.testing.assert_allclose(clean.score(queries, texts), first, rtol=0, atol=1e-6)


@pytest.mark.parametrize("column", ["query", "product_title", "product_text", "label"])
def test_missing_column_is_a_data_error(
    ranker: Ranker, merchant_frame: pd.DataFrame, column: str
) -> None:
    with pytest.raises(DataError, match=column):
        train_local(
            ranker,
            merchant_frame.drop(columns=[column]),
            config=_config(),
            noise_multiplier=SIGMA,
        )


def test_empty_frame_is_a_data_error(ranker: Ranker, merchant_frame: pd.DataFrame) -> None:
    with pytest.raises(DataError):
        train_local(ranker, merchant_frame.head(0), config=_config(), noise_multiplier=SIGMA)


# -- acceptance: the real MiniLM learns under DP (slow) ---------------------------


@pytest.mark.slow
def test_minilm_dp_training_improves_heldout_ndcg() -> None:
    """Guards against Opacus + peft silently corrupting LoRA updates (opacus #820).

    Real all-MiniLM-L6-v2 cross-encoder (pinned: the default architecture, the
    hybrid, has no LoRA adapters), LoRA(q, v) r=8, DP-SGD at ε≈8 on the largest of
    two synthetic merchants (trained on its graded relevance, the default
    ``graded_targets``), judged by NDCG@10 with graded relevance on the marketplace's
    held-out validation shard.
    """
    from ecrec.data.schema import ranker_documents
    from ecrec.data.synth import SynthConfig, synthesize
    from ecrec.metrics.ranking import ranking_metrics
    from ecrec.privacy.accounting import (
        RoundSpend,
        epsilon_for_history,
        noise_multiplier_for_target,
    )

    started = time.perf_counter()
    market = synthesize(
        SynthConfig(merchants=2, queries_per_merchant=40, validation_queries=30, seed=0)
    )
    frame = max(market.merchants.values(), key=len)
    validation = market.validation
    assert len(frame) >= 500 and validation["query_id"].nunique() == 30
    ranker = build_ranker(RankerConfig(architecture="cross-encoder"), device="cpu")

    def ndcg() -> float:
        scores = ranker.score(validation["query"].tolist(), ranker_documents(validation))
        return ranking_metrics(
            query_ids=validation["query_id"].to_numpy(),
            labels=validation["label"].to_numpy(),
            scores=scores,
            relevance=validation["relevance"].to_numpy(),
            k=10,
        )["ndcg@10"]

    before_state = ranker.adapter_state()
    before = ndcg()
    config = TrainConfig(local_steps=50, batch_size=32, learning_rate=3e-3, device="cpu", seed=0)
    rate, steps = plan_round(len(frame), config)
    sigma = noise_multiplier_for_target(target_epsilon=8, delta=1e-5, sample_rate=rate, steps=steps)
    spent = epsilon_for_history(
        [RoundSpend(noise_multiplier=sigma, sample_rate=rate, steps=steps)], delta=1e-5
    )
    assert 7.5 < spent <= 8.0
    result = train_local(ranker, frame, config=config, noise_multiplier=sigma)
    after_state = ranker.adapter_state()
    after = ndcg()

    assert result.steps == steps == 50
    assert all(np.all(np.isfinite(a)) for a in after_state.values())
    for name in before_state:
        assert not np.array_equal(after_state[name], before_state[name]), name
    # Seeded (sampling and noise), so a run is repeatable. On the harder marketplace
    # (hard negatives, paraphrases; 2026-12-02, synth seed 0 / train seed 0):
    # 0.593 -> 0.636 (+0.044). The easier marketplace gave +0.089 .. +0.131 over
    # 5 seeds. A corrupted update (opacus #820) leaves NDCG at the untrained level
    # or below.
    assert after > before + 0.03, (before, after)
    print(f"ndcg@10 {before:.4f} -> {after:.4f}; {time.perf_counter() - started:.0f}s")
