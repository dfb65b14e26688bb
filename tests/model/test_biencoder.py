"""The bi-encoder ranker: starts as the zero-shot embedding model, trains LoRA on the shared
encoder, and its per-row DP gradient covers both towers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ecrec.errors import ConfigError, ModelError
from ecrec.model.biencoder import HEAD_PREFIX, BiEncoderRanker
from ecrec.model.hybrid import FEATURES, INIT_BIAS, INIT_SCALE
from ecrec.model.ranker import RankerConfig, build_ranker
from ecrec.train.local import TrainConfig, train_local

TINY_BI = RankerConfig(architecture="bi-encoder", base_model="tiny", max_length=24, seed=0)
QUERIES = ["cordless drill"] * 3 + ["white paint"] * 2
DOCS = ["Cordless Drill 20V", "Garden Hose", "Drill Bits | tools", "White Paint", "Oak Table"]


@pytest.fixture()
def bi() -> BiEncoderRanker:
    ranker = build_ranker(TINY_BI, device="cpu")
    assert isinstance(ranker, BiEncoderRanker)
    return ranker


def _frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = ["drill", "paint", "hose", "table", "saw", "lamp", "white", "oak"]
    queries = [" ".join(rng.choice(words, 2)) for _ in range(n)]
    return pd.DataFrame(
        {
            "query_id": [f"q{i // 2}" for i in range(n)],
            "product_id": [f"p{i}" for i in range(n)],
            "query": queries,
            "product_title": [q if i % 2 == 0 else "garden hose" for i, q in enumerate(queries)],
            "product_text": [""] * n,
            "label": [1 - i % 2 for i in range(n)],
            "relevance": [3 - 2 * (i % 2) for i in range(n)],
        }
    )


def test_round_zero_scores_the_zero_shot_cosine(bi: BiEncoderRanker) -> None:
    """Before training the bi-encoder is the frozen encoder's cosine (LoRA's B starts at
    zero), on the hybrid's initial logit scale: the same numbers as the hybrid's
    zero-shot feature from the same encoder."""
    hybrid = build_ranker(dataclasses.replace(TINY_BI, architecture="hybrid"), device="cpu")
    cosine = hybrid.features(QUERIES, DOCS)[:, FEATURES.index("cosine-doc")]
    np.testing.assert_allclose(
        bi.score(QUERIES, DOCS), INIT_SCALE * cosine + INIT_BIAS, rtol=1e-5, atol=1e-5
    )


def test_federation_sends_the_encoders_lora_and_the_head(bi: BiEncoderRanker) -> None:
    state = bi.adapter_state()
    assert {f"{HEAD_PREFIX}weight", f"{HEAD_PREFIX}bias"} <= set(state)
    lora = [name for name in state if not name.startswith(HEAD_PREFIX)]
    assert lora and all("lora_" in name for name in lora)
    assert all(not np.any(state[n]) for n in lora if "lora_B" in n)  # round 0 = zero-shot
    assert bi.full_model_nbytes() > 20 * bi.adapter_nbytes()
    assert sum(p.numel() for p in bi.trainable_parameters()) * 4 == bi.adapter_nbytes()


def test_load_adapter_state_refuses_what_does_not_fit_and_applies_what_does(
    bi: BiEncoderRanker,
) -> None:
    good = bi.adapter_state()
    name = next(n for n in good if "lora_B" in n)
    with pytest.raises(ModelError, match="1 missing"):
        bi.load_adapter_state({k: v for k, v in good.items() if k != name})
    with pytest.raises(ModelError, match="has shape"):
        bi.load_adapter_state({**good, name: np.zeros((1, 1), np.float32)})
    with pytest.raises(ModelError, match="non-finite"):
        bi.load_adapter_state({**good, name: np.full_like(good[name], np.nan)})
    before = bi.score(QUERIES, DOCS)
    rng = np.random.default_rng(1)
    moved = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in good.items()}
    bi.load_adapter_state(moved)
    assert not np.allclose(bi.score(QUERIES, DOCS), before)
    for key, value in bi.adapter_state().items():
        np.testing.assert_allclose(value, moved[key], rtol=1e-6)


def test_a_rows_per_sample_gradient_covers_both_towers(bi: BiEncoderRanker) -> None:
    """What DP-SGD clips: Opacus' per-sample gradient of each row, accumulated over the
    query and the product pass through the shared encoder, equals that row's own
    gradient computed alone."""
    import torch
    from opacus.grad_sample import GradSampleModule

    frame = _frame(4)
    bi.load_adapter_state(  # non-zero B, so every LoRA matrix has a gradient
        {k: v + 0.1 for k, v in bi.adapter_state().items()}
    )
    inputs = bi.training_inputs(frame)
    targets = torch.as_tensor(bi.training_targets(frame))
    module = bi.logits_module()
    for layer in module.modules():  # no dropout: the same function for batch and row
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    criterion = torch.nn.BCEWithLogitsLoss(reduction="sum")
    trainable = [p for p in module.parameters() if p.requires_grad]
    expected = []
    for row in range(len(frame)):
        module.zero_grad(set_to_none=True)
        one = {k: v[row : row + 1] for k, v in inputs.items()}
        criterion(module(**one), targets[row : row + 1]).backward()
        expected.append([p.grad.detach().clone() for p in trainable])
    gsm = GradSampleModule(module, batch_first=True, loss_reduction="sum", strict=False)
    try:
        module.zero_grad(set_to_none=True)
        criterion(gsm(**inputs), targets).backward()
        for i, param in enumerate(trainable):
            for row in range(len(frame)):
                torch.testing.assert_close(
                    param.grad_sample[row], expected[row][i], rtol=1e-4, atol=1e-6
                )
    finally:
        gsm._close()


def test_training_moves_the_encoder_and_dp_training_runs(bi: BiEncoderRanker) -> None:
    frame = _frame(8)
    targets = bi.training_targets(frame)

    def loss() -> float:
        from ecrec.privacy.audit import bce_per_example

        return float(np.mean(bce_per_example(bi.score_frame(frame), targets)))

    start, lora_before = loss(), bi.adapter_state()
    plain = TrainConfig(local_steps=40, batch_size=8, learning_rate=1e-2, dp=False, seed=0)
    train_local(bi, frame, config=plain)
    assert loss() < start - 0.05  # it learns the rows it trained on
    moved = [n for n, v in bi.adapter_state().items() if not np.allclose(v, lora_before[n])]
    assert any("lora_" in n for n in moved) and f"{HEAD_PREFIX}weight" in moved
    private = TrainConfig(local_steps=3, batch_size=4, learning_rate=1e-2, seed=0)
    result = train_local(bi, frame, config=private, noise_multiplier=1.0)
    assert result.dp and result.steps == 3
    assert all(np.all(np.isfinite(v)) for v in bi.adapter_state().values())


def test_ghost_clipping_is_refused_for_two_towers(bi: BiEncoderRanker) -> None:
    ghost = TrainConfig(local_steps=1, batch_size=4, grad_sample_mode="ghost", seed=0)
    with pytest.raises(ConfigError, match="bi-encoder"):
        train_local(bi, _frame(4), config=ghost, noise_multiplier=1.0)


@pytest.mark.slow
def test_real_minilm_starts_at_the_zero_shot_ranking() -> None:
    """With the bundled all-MiniLM-L6-v2, round 0 ranks every query exactly as the
    zero-shot embedding model (the hybrid's cosine feature)."""
    config = dataclasses.replace(TINY_BI, base_model="minilm", max_length=64)
    bi = build_ranker(config, device="cpu")
    hybrid = build_ranker(dataclasses.replace(config, architecture="hybrid"), device="cpu")
    cosine = hybrid.features(QUERIES, DOCS)[:, FEATURES.index("cosine-doc")]
    scores = bi.score(QUERIES, DOCS)
    for query in set(QUERIES):
        rows = [i for i, q in enumerate(QUERIES) if q == query]
        assert list(np.argsort(-scores[rows])) == list(np.argsort(-cosine[rows]))
