"""Field-level exact Shapley values of one (query, product) score.

A feature is a structured product field's presence (title, brand, colour,
...). Removing a field rebuilds the document from the remaining fields with the
same functions the ranker reads products through
(:func:`~ecrec.data.schema.compose_product_text` and the ranker's document
builder), so every coalition is a document the model could really see. Exact
Shapley values are additive by definition: ``base_value + sum(values) == score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.schema import PRODUCT_FIELDS, compose_product_text
from ecrec.errors import DataError
from ecrec.explain.quiet_shap import import_shap
from ecrec.explain.ranker_access import ExplainableRanker, product_documents, score_documents

#: A product text that does not parse into known fields is explained as one field.
OPAQUE_FIELD = "product_text"


@dataclass(frozen=True)
class FieldExplanation:
    """Exact Shapley values of the product fields for one (query, product) score.

    ``base_value`` is the score of the document with every field removed;
    ``texts`` holds each field's value as the model read it.
    """

    query: str
    fields: list[str]
    texts: dict[str, str]
    values: np.ndarray
    base_value: float
    score: float

    @property
    def additivity_error(self) -> float:
        return abs(self.base_value + float(np.sum(self.values)) - self.score)

    def as_mapping(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.fields, self.values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "values": [float(v) for v in self.values],
            "texts": dict(self.texts),
            "base_value": self.base_value,
            "score": self.score,
            "additivity_error": self.additivity_error,
        }


def text_of(value: Any) -> str:
    """A cell as text; missing values (None, NaN, NA) are empty."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def _parse_product_text(text: str) -> dict[str, str] | None:
    """``"brand: X | colour: Y"`` -> ``{"brand": "X", ...}`` when it round-trips."""
    parsed: dict[str, str] = {}
    for part in text.split(" | "):
        name, sep, value = part.partition(": ")
        if not sep or name not in PRODUCT_FIELDS or name in parsed or not value:
            return None
        parsed[name] = value
    return parsed if compose_product_text(parsed) == text else None


def product_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a product as the ranker reads them, in document order.

    ``product_text`` is what the model reads, so it is the source of truth: it
    is parsed back into fields when it has the ``compose_product_text`` format;
    otherwise the structured columns are used if they compose to exactly that
    text; otherwise the text is one opaque ``product_text`` field. The title
    is the ``title`` field. Empty fields are dropped.
    """
    title = text_of(row.get("product_title"))
    text = text_of(row.get("product_text"))
    parsed = _parse_product_text(text) if text else {}
    if parsed is None:
        structured = {name: text_of(row.get(name)) for name in PRODUCT_FIELDS}
        structured = {name: v for name, v in structured.items() if v}
        parsed = structured if compose_product_text(structured) == text else {OPAQUE_FIELD: text}
    out: dict[str, str] = {}
    if title:
        out["title"] = title
    out.update(parsed)
    return out


def field_documents(
    fields: Mapping[str, str], names: Sequence[str], masks: np.ndarray
) -> list[str]:
    """The document the model reads when only the fields where a mask is true remain."""
    titles, texts = [], []
    for mask in masks:
        kept = {name for name, on in zip(names, mask, strict=True) if on}
        titles.append(fields["title"] if "title" in kept else "")
        if OPAQUE_FIELD in fields:
            texts.append(fields[OPAQUE_FIELD] if OPAQUE_FIELD in kept else "")
        else:
            texts.append(
                compose_product_text(
                    {n: v for n, v in fields.items() if n in kept and n != "title"}
                )
            )
    return product_documents(pd.DataFrame({"product_title": titles, "product_text": texts}))


def explain_fields(
    ranker: ExplainableRanker,
    *,
    row: Mapping[str, Any],
    query: str | None = None,
    batch_size: int = 64,
) -> FieldExplanation:
    """Exact Shapley values of ``score(query, product)`` over the product's fields.

    shap's Exact explainer runs over binary presence vectors with a masker that
    zeroes the masked presences, i.e. masking a field removes it from the
    document; with at most seven fields that is at most 2**7 = 128 scored
    documents per product. (A plain function masker rather than
    ``maskers.Independent`` with a zero background: same values, and it skips
    numba compiling shap's tabular delta-masking code, which costs several
    seconds per process.)
    """
    shap = import_shap()

    query = text_of(row.get("query")) if query is None else query
    fields = product_fields(row)
    if not fields:
        raise DataError(f"product {row.get('product_id')!r} has no title and no product text")
    names = list(fields)
    full = field_documents(fields, names, np.ones((1, len(names)), dtype=bool))[0]
    expected = product_documents(
        pd.DataFrame(
            {
                "product_title": [text_of(row.get("product_title"))],
                "product_text": [text_of(row.get("product_text"))],
            }
        )
    )[0]
    if full != expected:  # a bug in the field decomposition, not bad input
        raise AssertionError(f"field decomposition does not rebuild the document: {full!r}")

    def model(presence: np.ndarray) -> np.ndarray:
        masks = np.asarray(presence).reshape(-1, len(names)) > 0.5
        docs = field_documents(fields, names, masks)
        return score_documents(ranker, query, docs, batch_size=batch_size)

    def presence_masker(mask: np.ndarray, x: np.ndarray) -> np.ndarray:
        # Masking a field = setting its presence to 0 = dropping it from the document.
        return (np.asarray(x) * mask).reshape(1, -1)

    explainer = shap.explainers.Exact(model, presence_masker)
    explanation = explainer(np.ones((1, len(names))), silent=True)
    return FieldExplanation(
        query=query,
        fields=names,
        texts=dict(fields),
        values=np.asarray(explanation.values[0], dtype=np.float64),
        base_value=float(np.asarray(explanation.base_values).reshape(-1)[0]),
        score=float(score_documents(ranker, query, [full])[0]),
    )
