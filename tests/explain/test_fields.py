"""Field-level Shapley values: exact (checked by brute force) and built from real documents."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ecrec.data.schema import compose_product_text, ranker_documents
from ecrec.explain import ADDITIVITY_TOLERANCE, explain_fields, product_fields
from ecrec.explain.fields import OPAQUE_FIELD, field_documents
from ecrec.model.ranker import Ranker


def test_field_values_add_up_and_are_exact_shapley(varied: Ranker, shard) -> None:
    row = shard.iloc[1]
    expl = explain_fields(varied, row=row)
    fields = product_fields(row)
    assert expl.fields == list(fields) and expl.fields[0] == "title" and len(fields) >= 4
    assert abs(expl.base_value + expl.values.sum() - expl.score) < ADDITIVITY_TOLERANCE
    query = str(row["query"])
    assert expl.score == pytest.approx(
        float(varied.score([query], ranker_documents(shard.iloc[[1]]))[0]), abs=1e-6
    )
    assert expl.base_value == pytest.approx(float(varied.score([query], [""])[0]), abs=1e-6)

    # Brute-force Shapley values over all 2**n coalitions agree with shap's Exact.
    names = list(fields)
    n = len(names)
    masks = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    value = dict(
        zip(
            map(tuple, masks),
            varied.score([query] * len(masks), field_documents(fields, names, masks)),
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
    assert field_documents(fields, names, masks) == [
        "Acme Red Mug | brand: Acme | colour: red",
        " | brand: Acme | colour: red",
        "Acme Red Mug",
        "",
    ]
