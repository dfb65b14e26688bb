"""The hybrid ranker: starts as the zero-shot bi-encoder, trains only its head, under DP."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ecrec.errors import ModelError
from ecrec.model.hybrid import FEATURES, INIT_SCALE, HybridRanker
from ecrec.model.ranker import RankerConfig, build_ranker, training_targets
from ecrec.train.local import TrainConfig, train_local

TINY_HYBRID = RankerConfig(architecture="hybrid", base_model="tiny", max_length=32, seed=0)


@pytest.fixture(scope="module")
def hybrid() -> HybridRanker:
    ranker = build_ranker(TINY_HYBRID, device="cpu")
    assert isinstance(ranker, HybridRanker)
    return ranker


def test_hybrid_is_the_default_architecture() -> None:
    assert RankerConfig().architecture == "hybrid"


def test_only_the_head_trains_and_is_what_federation_sends(hybrid: HybridRanker) -> None:
    state = hybrid.adapter_state()
    assert sorted(state) == ["head.bias", "head.weight"]
    assert state["head.weight"].shape == (1, len(FEATURES))
    assert hybrid.adapter_nbytes() == 4 * (len(FEATURES) + 1)
    assert len(hybrid.trainable_parameters()) == 2
    assert hybrid.full_model_nbytes() > 1000 * hybrid.adapter_nbytes()


def test_round_zero_ranks_exactly_as_the_zero_shot_bi_encoder(hybrid: HybridRanker) -> None:
    queries = ["cordless drill"] * 3 + ["white paint"] * 2
    docs = ["Cordless Drill 20V", "Garden Hose", "Drill Bits | tools", "White Paint", "Oak Table"]
    feats = hybrid.features(queries, docs)
    scores = hybrid.score(queries, docs)
    cosine = feats[:, FEATURES.index("cosine-doc")]
    np.testing.assert_allclose(
        scores, INIT_SCALE * cosine + hybrid.adapter_state()["head.bias"], rtol=1e-5, atol=1e-5
    )
    assert np.all(np.abs(cosine) <= 1 + 1e-5)  # cosines of unit vectors


def test_a_product_embedding_is_computed_once(hybrid: HybridRanker) -> None:
    hybrid.embed(["a drill", "a hammer"])
    known = len(hybrid._embeddings)
    first = hybrid.embed(["a hammer", "a drill", "a hammer"])
    assert len(hybrid._embeddings) == known
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)


def test_embeddings_persist_in_the_cache_folder(tmp_path, monkeypatch) -> None:
    """With ECREC_EMBEDDING_CACHE set, a second ranker reads what the first computed
    (a repeated run on the same data does not re-encode it) and gets the same scores."""
    from ecrec.model.hybrid import EMBEDDING_CACHE_ENV

    monkeypatch.setenv(EMBEDDING_CACHE_ENV, str(tmp_path))
    first = build_ranker(TINY_HYBRID, device="cpu")
    scores = first.score(["oak table", "oak table"], ["Oak Dining Table", "Steel Shelf"])
    assert list(tmp_path.rglob("*.npz"))
    second = build_ranker(TINY_HYBRID, device="cpu")
    assert len(second._embeddings) == 3
    np.testing.assert_allclose(
        second.score(["oak table", "oak table"], ["Oak Dining Table", "Steel Shelf"]),
        scores,
        rtol=1e-6,
    )
    other = build_ranker(dataclasses.replace(TINY_HYBRID, seed=1), device="cpu")
    assert not other._embeddings  # another random encoder never reads these vectors


def test_load_adapter_state_refuses_what_does_not_fit(hybrid: HybridRanker) -> None:
    good = hybrid.adapter_state()
    with pytest.raises(ModelError, match="1 missing"):
        hybrid.load_adapter_state({"head.weight": good["head.weight"]})
    with pytest.raises(ModelError, match="has shape"):
        hybrid.load_adapter_state({**good, "head.weight": np.zeros((1, 3), np.float32)})
    with pytest.raises(ModelError, match="non-finite"):
        hybrid.load_adapter_state({**good, "head.bias": np.array([np.nan], np.float32)})
    changed = {**good, "head.bias": np.array([1.5], np.float32)}
    hybrid.load_adapter_state(changed)
    assert hybrid.adapter_state()["head.bias"][0] == 1.5
    hybrid.load_adapter_state(good)


def test_graded_relevance_becomes_soft_targets() -> None:
    frame = pd.DataFrame({"label": [0, 1, 1, 0], "relevance": [0, 3, 2, 1]})
    np.testing.assert_allclose(training_targets(frame, graded=True), [0, 1, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(training_targets(frame, graded=False), [0, 1, 1, 0])
    missing = frame.assign(relevance=[0, None, 2, 1])
    np.testing.assert_array_equal(training_targets(missing, graded=True), [0, 1, 1, 0])


def _ndcg(ranker: HybridRanker, frame: pd.DataFrame) -> float:
    from ecrec.metrics.ranking import ranking_metrics

    scores = ranker.score_frame(frame)
    return ranking_metrics(
        query_ids=frame["query_id"],
        labels=frame["label"],
        scores=scores,
        relevance=frame["relevance"],
    )["ndcg@10"]


def test_dp_training_of_the_head_improves_ranking() -> None:
    """The tiny encoder is random, so round 0 ranks at chance; keyword match is what the
    synthetic marketplace's relevance rewards. DP training (ε-scale noise σ = 0.8) of the
    head alone must lift validation NDCG@10 clearly, and give a keyword feature weight."""
    from ecrec.data.synth import SynthConfig, synthesize

    market = synthesize(
        SynthConfig(
            merchants=1,
            queries_per_merchant=80,
            candidates_per_query=8,
            validation_queries=40,
            seed=1,
        )
    )
    (train,) = market.merchants.values()
    ranker = build_ranker(TINY_HYBRID, device="cpu")
    before = _ndcg(ranker, market.validation)
    result = train_local(
        ranker,
        train,
        config=TrainConfig(local_steps=60, batch_size=32, learning_rate=0.1, seed=0),
        noise_multiplier=0.8,
    )
    after = _ndcg(ranker, market.validation)
    assert result.dp and result.steps == 60
    assert after > before + 0.03, (before, after, ranker.head_weights())
    lexical = ("char-title", "words-title", "stems-title", "char-doc", "words-doc")
    assert max(ranker.head_weights()[f] for f in lexical) > 0.5


def test_the_architecture_is_checked() -> None:
    from ecrec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.architecture"):
        dataclasses.replace(TINY_HYBRID, architecture="two-tower")
