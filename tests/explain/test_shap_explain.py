"""SHAP explanations: additivity, exactness, faithfulness rules, and what gets written.

Fast tests use the tiny random ranker with perturbed adapters (so scores vary
by tenths of a logit and additivity is a real check, not 0 == 0). The first
explanation in a process pays shap's numba compilation (seconds); after that a
tiny-ranker explanation takes well under a second.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from ecrec.data.schema import compose_product_text, ranker_documents
from ecrec.data.synth import SynthConfig, synthesize
from ecrec.explain.shap_explain import (
    ADDITIVITY_TOLERANCE,
    OPAQUE_FIELD,
    TokenExplanation,
    _documents_for,
    explain_fields,
    explain_run,
    explain_tokens,
    faithfulness_check,
    named_attributes,
    product_fields,
    read_document,
    write_explanations,
)
from ecrec.model.ranker import Ranker, RankerConfig, build_ranker


@pytest.fixture
def varied(ranker: Ranker) -> Iterator[Ranker]:
    """The shared tiny ranker with random adapters large enough to move scores.

    The ``ranker`` fixture restores the original adapters afterwards.
    """
    rng = np.random.default_rng(1)
    ranker.load_adapter_state(
        {
            name: (a + rng.normal(0, 0.5, a.shape)).astype(np.float32)
            for name, a in ranker.adapter_state().items()
        }
    )
    ranker.model.eval()
    yield ranker


@pytest.fixture(scope="module")
def shard() -> pd.DataFrame:
    return synthesize(
        SynthConfig(
            merchants=2, queries_per_merchant=12, candidates_per_query=6, validation_queries=10
        )
    ).validation


# -- additivity --------------------------------------------------------------------


def test_token_values_add_up_to_the_score(varied: Ranker, shard: pd.DataFrame) -> None:
    query = str(shard["query"].iloc[0])
    document = ranker_documents(shard)[0]
    expl = explain_tokens(varied, query=query, document=document, max_evals=60)
    assert expl.score == pytest.approx(float(varied.score([query], [document])[0]), abs=1e-6)
    assert abs(expl.base_value + expl.values.sum() - expl.score) < ADDITIVITY_TOLERANCE
    assert expl.additivity_error < ADDITIVITY_TOLERANCE
    assert np.abs(expl.values).max() > 1e-3  # a real check: attributions are not all ~0
    assert "".join(expl.tokens) == expl.document
    assert document.startswith(expl.document)
    assert expl.evals <= 60


def test_field_values_add_up_and_are_exact_shapley(varied: Ranker, shard: pd.DataFrame) -> None:
    row = shard.iloc[1]
    expl = explain_fields(varied, row=row)
    assert expl.fields == [
        "title",
        "brand",
        "colour",
        "category",
        "material",
        "price_band",
        "description",
    ]
    assert abs(expl.base_value + expl.values.sum() - expl.score) < ADDITIVITY_TOLERANCE
    query = str(row["query"])
    assert expl.score == pytest.approx(
        float(varied.score([query], ranker_documents(shard.iloc[[1]]))[0]), abs=1e-6
    )
    assert expl.base_value == pytest.approx(float(varied.score([query], [""])[0]), abs=1e-6)

    # Brute-force Shapley values over all 2**7 coalitions agree with shap's Exact.
    fields = product_fields(row)
    names = list(fields)
    n = len(names)
    masks = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    value = dict(
        zip(
            map(tuple, masks),
            varied.score([query] * len(masks), _documents_for(fields, names, masks)),
            strict=True,
        )
    )
    brute = np.zeros(n)
    for mask in masks:
        for i in np.flatnonzero(~mask):
            size = int(mask.sum())
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            with_i = mask.copy()
            with_i[i] = True
            brute[i] += weight * (value[tuple(with_i)] - value[tuple(mask)])
    np.testing.assert_allclose(expl.values, brute, atol=1e-5)


def test_only_the_part_the_model_reads_is_explained(varied: Ranker, shard: pd.DataFrame) -> None:
    query = str(shard["query"].iloc[0])
    document = ranker_documents(shard)[0]  # ~45 tokens; the tiny ranker reads 32 per pair
    prefix = read_document(varied, query, document)
    assert len(prefix) < len(document) and document.startswith(prefix)
    encoded = varied.encode([query, query], [document, prefix])
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert bool((encoded[name][0] == encoded[name][1]).all()), name
    # Same inputs, same score (up to batch-position rounding in the CPU kernels).
    full, cut = varied.score([query, query], [document, prefix])
    assert full == pytest.approx(cut, abs=1e-6)
    short = "Acme Red Mug"
    assert read_document(varied, query, short) == short


# -- field decomposition ------------------------------------------------------------


def test_product_fields_follow_what_the_ranker_reads() -> None:
    structured = {"brand": "Acme", "colour": "red", "category": "mug", "description": "A mug."}
    row = {"product_title": "Acme Red Mug", "product_text": compose_product_text(structured)}
    assert product_fields(row) == {"title": "Acme Red Mug", **structured}
    # Free text that is not in the field format is one opaque field.
    row = {"product_title": "Lamp", "product_text": "bright | warm light"}
    assert product_fields(row) == {"title": "Lamp", OPAQUE_FIELD: "bright | warm light"}
    # Structured columns are used when they compose to exactly the product text.
    row = {
        "product_title": "",
        "product_text": "brand: Vela | colour: navy | x",
        "brand": "Vela",
        "colour": "navy | x",
    }
    assert product_fields(row) == {"brand": "Vela", "colour": "navy | x"}


def test_removing_fields_rebuilds_the_document_like_the_ranker() -> None:
    fields = {"title": "Acme Red Mug", "brand": "Acme", "colour": "red"}
    names = list(fields)
    masks = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=bool)
    assert _documents_for(fields, names, masks) == [
        "Acme Red Mug | brand: Acme | colour: red",
        " | brand: Acme | colour: red",
        "Acme Red Mug",
        "",
    ]


# -- faithfulness rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("dark blue running shoes", {"colour": "navy", "category": "running shoes"}),
        ("gray couch", {"colour": "grey", "category": "sofa"}),
        ("cheap acme tshirt", {"category": "t-shirt"}),
        ("blue t-shirt", {"colour": "blue", "category": "t-shirt"}),
        ("olive drinks bottle", {"colour": "green", "category": "water bottle"}),
        ("red senakers", {"colour": "red"}),  # a typo'd category is not recognised
        ("premium leather", {}),
    ],
)
def test_named_attributes(query: str, named: dict[str, str]) -> None:
    assert named_attributes(query) == named


def _token_expl(query: str, tokens: list[str], values: list[float]) -> TokenExplanation:
    return TokenExplanation(
        query=query,
        document="".join(tokens),
        tokens=tokens,
        values=np.asarray(values, dtype=float),
        base_value=0.0,
        score=float(sum(values)),
        evals=0,
    )


def test_faithfulness_counts_any_word_piece_in_the_top_three() -> None:
    tokens = ["", "Vela ", "Navy ", "Sn", "eakers ", "| ", "colour", ": ", "navy", ""]
    # "Sn" is a word-piece of "Sneakers", the document's word for "trainers".
    hit = _token_expl("trainers", tokens, [0, 0.3, 0.01, 0.2, 0.0, 0.25, 0, 0, 0, 0])
    check = faithfulness_check(hit)
    assert check is not None and check["hit"] and check["by_attribute"] == {"category": True}
    assert check["top_tokens"] == ["Vela", "|", "Sn"]
    # The category word exists but only ranks 4th; negative values never count.
    miss = _token_expl("navy kicks", tokens, [0, 0.3, -0.5, 0.01, 0.02, 0.25, 0.2, 0, -1, 0])
    check = faithfulness_check(miss)
    assert check is not None and not check["hit"]
    assert check["by_attribute"] == {"category": False, "colour": False}


def test_faithfulness_skips_pairs_that_cannot_be_judged() -> None:
    tokens = ["", "Acme ", "Mug", ""]
    assert faithfulness_check(_token_expl("premium leather", tokens, [0, 1, 1, 0])) is None
    # The query names a colour the product does not mention: not applicable.
    assert faithfulness_check(_token_expl("pink kettle", tokens, [0, 1, 1, 0])) is None


# -- a run's explanations ----------------------------------------------------------


def test_explain_run_and_write(varied: Ranker, shard: pd.DataFrame, tmp_path) -> None:
    done: list[tuple[int, int]] = []
    result = explain_run(
        varied,
        shard,
        queries=2,
        top_k=2,
        seed=3,
        max_evals=20,
        batch_size=128,
        on_pair=lambda d, t: done.append((d, t)),
    )
    assert done[-1] == (4, 4) and len(result["pairs"]) == 4
    assert result["queries"] == 2 and result["top_k"] == 2
    for pair in result["pairs"]:
        tok, fld = pair["tokens"], pair["fields"]
        assert abs(tok["base_value"] + sum(tok["values"]) - tok["score"]) < ADDITIVITY_TOLERANCE
        assert abs(fld["base_value"] + sum(fld["values"]) - fld["score"]) < ADDITIVITY_TOLERANCE
        assert pair["score"] == pytest.approx(fld["score"], abs=1e-5)
    # The top k of each query, in score order.
    for qid in {p["query_id"] for p in result["pairs"]}:
        assert [p["rank"] for p in result["pairs"] if p["query_id"] == qid] == [1, 2]
        scores = [p["score"] for p in result["pairs"] if p["query_id"] == qid]
        expected = np.sort(
            varied.score(
                shard.loc[shard["query_id"] == qid, "query"].tolist(),
                ranker_documents(shard[shard["query_id"] == qid]),
            )
        )[::-1][:2]
        np.testing.assert_allclose(scores, expected, atol=1e-6)
    tokens = result["global"]["tokens"]
    assert 0 < len(tokens) <= 20 and all(t["name"] == t["name"].lower().strip() for t in tokens)
    assert [t["mean_abs"] for t in tokens] == sorted((t["mean_abs"] for t in tokens), reverse=True)
    assert {f["name"] for f in result["global"]["fields"]} >= {"title", "colour", "category"}
    faith = result["faithfulness"]
    assert set(faith) >= {"pairs", "hits", "rate"}
    assert faith["rate"] is None or faith["rate"] == faith["hits"] / faith["pairs"]

    # The same seed explains the same pairs.
    again = explain_run(
        varied, shard, queries=2, top_k=2, seed=3, max_evals=8, batch_size=128, fields=False
    )
    assert [p["product_id"] for p in again["pairs"]] == [p["product_id"] for p in result["pairs"]]
    assert "fields" not in again["pairs"][0]

    (tmp_path / "explanations").mkdir()
    (tmp_path / "explanations" / "pair_99_stale.html").write_text("old")
    written = write_explanations(result, tmp_path)
    data = json.loads((tmp_path / "explanations.json").read_text())
    json.dumps(data, allow_nan=False)
    assert len(data["pairs"]) == 4
    html_files = sorted((tmp_path / "explanations").glob("pair_*.html"))
    assert [f"explanations/{p.name}" for p in html_files] == sorted(data["files"]["html"])
    snippet = html_files[0].read_text()
    assert data["pairs"][0]["query"] in snippet and "<div" in snippet
    for key in ("tokens_png", "fields_png"):
        assert written[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written["index"].stat().st_size > 0


def test_explain_run_refuses_bad_input(ranker: Ranker, shard: pd.DataFrame) -> None:
    from ecrec.errors import EcrecError

    with pytest.raises(EcrecError, match=">= 1"):
        explain_run(ranker, shard, queries=0)
    with pytest.raises(EcrecError, match="product_text"):
        explain_run(ranker, shard.drop(columns=["product_text"]))


# -- the real base model (slow) ----------------------------------------------------


@pytest.mark.slow
def test_minilm_explanations_are_additive(shard: pd.DataFrame) -> None:
    minilm = build_ranker(RankerConfig(), device="cpu")
    row = shard.iloc[0]
    query = str(row["query"])
    tokens = explain_tokens(
        minilm, query=query, document=ranker_documents(shard.iloc[[0]])[0], max_evals=100
    )
    assert tokens.additivity_error < ADDITIVITY_TOLERANCE
    fields = explain_fields(minilm, row=row)
    assert fields.additivity_error < ADDITIVITY_TOLERANCE
    assert fields.score == pytest.approx(tokens.score, abs=1e-4)


@pytest.mark.slow
def test_minilm_explanations_are_faithful_to_the_hidden_relevance_rule() -> None:
    """Train MiniLM (no DP) on a synthetic merchant; its explanations should credit
    the query's category / colour words, which decide relevance (see ecrec.data.synth).

    Budget on 2 idle cores: ~10 s load, ~50 s for 60 steps x 32, ~30 s to explain
    5 queries x top 3 (token level only; the field view is not needed here).
    """
    from ecrec.train.local import TrainConfig, train_local

    started = time.perf_counter()
    market = synthesize(
        SynthConfig(merchants=2, queries_per_merchant=40, validation_queries=30, seed=0)
    )
    frame = max(market.merchants.values(), key=len)
    minilm = build_ranker(RankerConfig(), device="cpu")
    loaded = time.perf_counter()
    config = TrainConfig(
        dp=False, local_steps=60, batch_size=32, learning_rate=3e-3, device="cpu", seed=0
    )
    train_local(minilm, frame, config=config)
    trained = time.perf_counter()
    result = explain_run(minilm, market.validation, queries=5, top_k=3, seed=0, fields=False)
    done = time.perf_counter()
    faith = result["faithfulness"]
    print(
        f"\nfaithfulness rate {faith['rate']:.3f} ({faith['hits']}/{faith['pairs']}; "
        f"category {faith['by_attribute']['category']}, colour {faith['by_attribute']['colour']}); "
        f"load {loaded - started:.0f} s, train {trained - loaded:.0f} s, "
        f"explain {done - trained:.0f} s"
    )
    assert result["additivity"]["max_token_error"] < ADDITIVITY_TOLERANCE
    assert faith["pairs"] >= 5  # enough applicable pairs for a rate to mean something
    assert faith["rate"] > 0.5
