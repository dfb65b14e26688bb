"""Everything the explainers need from a ranker, in one place.

Explanations treat the ranker as a black box that scores (query, product text)
pairs, plus its tokenizer (for shap's Text masker and for finding the part of a
product text the model reads). Any ranker with ``score(queries, texts, *,
batch_size)``, ``tokenizer`` and ``config.max_length`` can be explained; a
ranker with another interface (e.g. a bi-encoder) needs changes here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ecrec.data.schema import ranker_documents


class ExplainableRanker(Protocol):
    """What explanations use of :class:`ecrec.model.ranker.Ranker`."""

    tokenizer: Any
    config: Any  # needs ``max_length``: tokens per (query, product) pair

    def score(
        self, queries: Sequence[str], texts: Sequence[str], *, batch_size: int = ...
    ) -> np.ndarray: ...


def score_documents(
    ranker: ExplainableRanker, query: str, documents: Sequence[str], *, batch_size: int = 64
) -> NDArray[np.float64]:
    """The ranker's scores of ``documents`` for one ``query``."""
    docs = list(documents)
    return np.asarray(
        ranker.score([query] * len(docs), docs, batch_size=batch_size), dtype=np.float64
    )


def score_rows(ranker: ExplainableRanker, frame: pd.DataFrame) -> NDArray[np.float64]:
    """The ranker's score of every (query, product) row of an impressions frame."""
    return np.asarray(
        ranker.score(frame["query"].astype(str).tolist(), product_documents(frame)),
        dtype=np.float64,
    )


def product_documents(frame: pd.DataFrame) -> list[str]:
    """The product text the ranker reads for each row (``product_title``/``product_text``)."""
    return ranker_documents(frame)


def text_masker(ranker: ExplainableRanker) -> Any:
    """shap's Text masker over the ranker's own tokenizer (masked tokens -> ``[MASK]``)."""
    from ecrec.explain.quiet_shap import import_shap

    return import_shap().maskers.Text(ranker.tokenizer)


def read_document(ranker: ExplainableRanker, query: str, document: str) -> str:
    """The prefix of ``document`` the ranker actually reads next to ``query``.

    Pairs are truncated to ``max_length`` tokens, so the tail of a long product
    text never reaches the model. Explaining only the read prefix saves model
    calls on tokens whose attribution is zero by construction. The prefix is
    used only when it tokenizes to exactly the tokens the model reads (so its
    score is identical); otherwise the whole document is explained.
    """
    if not getattr(ranker, "truncates_pairs", True):
        return document  # e.g. the hybrid ranker: its string features read the whole text
    tokenizer = ranker.tokenizer
    enc = tokenizer(
        query,
        document,
        truncation="longest_first",
        max_length=ranker.config.max_length,
        return_offsets_mapping=True,
    )
    read = [i for i, s in enumerate(enc.sequence_ids()) if s == 1]
    full = tokenizer(document, add_special_tokens=False)["input_ids"]
    if not read or len(read) >= len(full):
        return document
    prefix = document[: enc["offset_mapping"][read[-1]][1]]
    kept = [enc["input_ids"][i] for i in read]
    if tokenizer(prefix, add_special_tokens=False)["input_ids"] != kept:
        return document
    return prefix
