"""Token-level SHAP values of one (query, product) score, over the product text.

``shap.maskers.Text`` over the product side only, with shap's Partition
explainer; the model function maps a masked document to ``score(query, masked
document)``. The query is never masked because the question an operator asks
is "what about this *product* made it rank here for this query?"; joint
query+document masking would need ``maskers.Composite(Text, Text)``, which shap
does not implement. Partition (Owen) values are additive by construction even
when ``max_evals`` cuts the recursion short (unexpanded clusters share their
credit): ``base_value + sum(values) == score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ecrec.errors import EcrecError
from ecrec.explain.quiet_shap import import_shap, seeded_numpy
from ecrec.explain.ranker_access import (
    ExplainableRanker,
    read_document,
    score_documents,
    text_masker,
)

#: Model calls per token explanation. The Text masker with MiniLM costs one
#: scored pair per call (~118 pairs/s on 2 CPU cores), so this is ~2 s a pair.
DEFAULT_MAX_EVALS = 200


@dataclass(frozen=True)
class TokenExplanation:
    """SHAP values of the document's tokens for one (query, document) score.

    ``tokens`` are the substrings shap's Text masker split the document into
    (each with its trailing whitespace), so ``"".join(tokens) == document``.
    The first and last entries are the tokenizer's ``[CLS]``/``[SEP]`` slots,
    which are empty strings: shap never masks them, but when ``max_evals`` cuts
    the recursion short they can receive a share of an unexpanded cluster's
    credit, and dropping them would break additivity, so they are kept.
    """

    query: str
    document: str
    tokens: list[str]
    values: np.ndarray
    base_value: float
    score: float
    evals: int

    @property
    def additivity_error(self) -> float:
        """``|base_value + sum(values) - score|``; shap guarantees ~0."""
        return abs(self.base_value + float(np.sum(self.values)) - self.score)

    def spans(self) -> list[tuple[int, int]]:
        """Character span of each token in ``document``, without trailing whitespace."""
        out = []
        start = 0
        for token in self.tokens:
            out.append((start, start + len(token.rstrip())))
            start += len(token)
        return out

    def top_positive(self, n: int) -> list[int]:
        """Indices of the ``n`` tokens with the largest positive values (non-empty only)."""
        order = np.argsort(-self.values, kind="stable")
        picked = [int(i) for i in order if self.values[i] > 0 and self.tokens[i].strip()]
        return picked[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "values": [float(v) for v in self.values],
            "base_value": self.base_value,
            "score": self.score,
            "evals": self.evals,
            "additivity_error": self.additivity_error,
        }


def explain_tokens(
    ranker: ExplainableRanker,
    *,
    query: str,
    document: str,
    max_evals: int = DEFAULT_MAX_EVALS,
    batch_size: int = 64,
    seed: int = 0,
    truncate: bool = True,
) -> TokenExplanation:
    """Token-level SHAP values of ``score(query, document)`` over the document.

    At most ``max_evals`` model calls. With ``truncate`` only the part of the
    document the model reads is explained (see
    :func:`~ecrec.explain.ranker_access.read_document`); the score is unchanged.
    """
    shap = import_shap()

    if max_evals < 4:
        raise EcrecError(f"max_evals must be at least 4, got {max_evals}")
    if truncate:
        document = read_document(ranker, query, document)
    evals = 0

    def model(masked: np.ndarray) -> np.ndarray:
        nonlocal evals
        docs = [str(d) for d in np.asarray(masked).reshape(-1)]
        evals += len(docs)
        return score_documents(ranker, query, docs, batch_size=batch_size)

    explainer = shap.explainers.Partition(model, text_masker(ranker))
    with seeded_numpy(seed):
        explanation = explainer([document], max_evals=max_evals, batch_size=batch_size, silent=True)
    # The score of the unmasked document, computed directly rather than read
    # back from shap, so the additivity check compares against the model.
    score = float(score_documents(ranker, query, [document])[0])
    return TokenExplanation(
        query=query,
        document=document,
        tokens=[str(t) for t in explanation.data[0]],
        values=np.asarray(explanation.values[0], dtype=np.float64),
        base_value=float(np.asarray(explanation.base_values).reshape(-1)[0]),
        score=score,
        evals=evals,
    )
