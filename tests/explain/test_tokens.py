"""Token-level SHAP: additivity against the model, and only the part the model reads."""

from __future__ import annotations

import pytest

from ecrec.data.schema import ranker_documents
from ecrec.explain import ADDITIVITY_TOLERANCE, explain_tokens, read_document
from ecrec.model.ranker import Ranker


def test_token_values_add_up_to_the_score(varied: Ranker, shard) -> None:
    query = str(shard["query"].iloc[0])
    document = ranker_documents(shard)[0]
    expl = explain_tokens(varied, query=query, document=document, max_evals=60)
    assert expl.score == pytest.approx(float(varied.score([query], [document])[0]), abs=1e-6)
    assert abs(expl.base_value + expl.values.sum() - expl.score) < ADDITIVITY_TOLERANCE
    assert expl.additivity_error < ADDITIVITY_TOLERANCE
    assert abs(expl.values).max() > 1e-3  # a real check: attributions are not all ~0
    assert "".join(expl.tokens) == expl.document
    assert document.startswith(expl.document)
    assert expl.evals <= 60
    again = explain_tokens(varied, query=query, document=document, max_evals=60)
    assert again.values.tolist() == expl.values.tolist()  # seeded: reproducible


def test_only_the_part_the_model_reads_is_explained(varied: Ranker, shard) -> None:
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


def test_too_few_evals_are_refused(varied: Ranker) -> None:
    from ecrec.errors import EcrecError

    with pytest.raises(EcrecError, match="max_evals"):
        explain_tokens(varied, query="mug", document="Acme Red Mug", max_evals=2)
