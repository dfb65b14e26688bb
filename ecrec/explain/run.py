"""A run's explanations: the top products of a sample of validation queries, explained.

:func:`explain_run` picks the pairs, explains each at token and field level,
aggregates the attributions and measures faithfulness; it returns a JSON-ready
dict and writes nothing (see :mod:`ecrec.explain.store`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ecrec.errors import DataError, EcrecError
from ecrec.explain.faithfulness import FaithfulnessTally, faithfulness_check
from ecrec.explain.fields import explain_fields
from ecrec.explain.ranker_access import ExplainableRanker, product_documents, score_rows
from ecrec.explain.tokens import DEFAULT_MAX_EVALS, explain_tokens

#: Tolerance of the additivity check ``base + sum(values) == score``.
ADDITIVITY_TOLERANCE = 1e-4
#: Tokens listed in the global aggregate.
GLOBAL_TOP_TOKENS = 20
#: Columns copied into each pair's entry when the shard has them.
CONTEXT_COLUMNS = ("relevance", "label", "merchant_id", "merchant_tier", "user_segment")
REQUIRED_COLUMNS = ("query_id", "query", "product_id", "product_title", "product_text")


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _ranked(values: Mapping[str, list[float]], top: int | None) -> list[dict[str, Any]]:
    """Mean |attribution| per name, largest first."""
    rows = [
        {"name": name, "mean_abs": float(np.mean(v)), "count": len(v)} for name, v in values.items()
    ]
    rows.sort(key=lambda r: (-r["mean_abs"], r["name"]))
    return rows[:top] if top is not None else rows


def pick_pairs(
    ranker: ExplainableRanker, validation: pd.DataFrame, *, queries: int, top_k: int, seed: int
) -> tuple[list[Any], list[tuple[int, pd.Series]]]:
    """(chosen query ids, [(rank, row)] of each one's top ``top_k`` by score).

    Queries are drawn without replacement with ``numpy.random.default_rng(seed)``
    from the shard's query ids (in order of first appearance).
    """
    ids = pd.unique(validation["query_id"])
    if len(ids) == 0:
        raise DataError("validation shard has no queries")
    rng = np.random.default_rng(seed)
    drawn = sorted(rng.choice(len(ids), size=min(queries, len(ids)), replace=False))
    chosen = [ids[i] for i in drawn]
    frame = validation[validation["query_id"].isin(chosen)].reset_index(drop=True)
    frame = frame.assign(_score=score_rows(ranker, frame))
    picked: list[tuple[int, pd.Series]] = []
    for qid in chosen:
        rows = frame[frame["query_id"] == qid].sort_values("_score", ascending=False, kind="stable")
        picked += [(rank, row) for rank, (_, row) in enumerate(rows.head(top_k).iterrows(), 1)]
    return chosen, picked


def explain_run(
    ranker: ExplainableRanker,
    validation: pd.DataFrame,
    *,
    queries: int = 5,
    top_k: int = 3,
    seed: int = 0,
    max_evals: int = DEFAULT_MAX_EVALS,
    batch_size: int = 64,
    fields: bool = True,
    on_pair: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Explain the top ``top_k`` products of ``queries`` sampled validation queries.

    The same seed explains the same queries. Returns a JSON-ready dict: one
    entry per pair (token and field attributions), global aggregates (mean
    |attribution| per lower-cased token, top 20, and per field), the
    faithfulness statistic and the worst additivity errors. ``on_pair(done,
    total)`` is called after each pair (progress bars).
    """
    if queries < 1 or top_k < 1:
        raise EcrecError(f"queries and top-k must be >= 1, got {queries} and {top_k}")
    for column in REQUIRED_COLUMNS:
        if column not in validation.columns:
            raise DataError(f"validation shard has no {column!r} column")
    started = time.perf_counter()
    chosen, picked = pick_pairs(ranker, validation, queries=queries, top_k=top_k, seed=seed)

    pairs: list[dict[str, Any]] = []
    token_abs: dict[str, list[float]] = defaultdict(list)
    field_abs: dict[str, list[float]] = defaultdict(list)
    faithfulness = FaithfulnessTally()
    max_token_error = max_field_error = 0.0
    for done, (rank, row) in enumerate(picked, 1):
        query = str(row["query"])
        document = product_documents(pd.DataFrame([row]))[0]
        tokens = explain_tokens(
            ranker,
            query=query,
            document=document,
            max_evals=max_evals,
            batch_size=batch_size,
            seed=seed,
        )
        max_token_error = max(max_token_error, tokens.additivity_error)
        for token, value in zip(tokens.tokens, tokens.values, strict=True):
            if key := token.strip().lower():
                token_abs[key].append(abs(float(value)))
        entry: dict[str, Any] = {
            "query_id": _json_value(row["query_id"]),
            "query": query,
            "product_id": _json_value(row["product_id"]),
            "rank": rank,
            "score": float(row["_score"]),
            "document": document,
            "explained_document": tokens.document,
            "tokens": tokens.to_dict(),
        }
        entry |= {c: _json_value(row[c]) for c in CONTEXT_COLUMNS if c in row.index}
        if fields:
            field_expl = explain_fields(ranker, row=row, query=query, batch_size=batch_size)
            max_field_error = max(max_field_error, field_expl.additivity_error)
            for name, value in field_expl.as_mapping().items():
                field_abs[name].append(abs(value))
            entry["fields"] = field_expl.to_dict()
        entry["faithfulness"] = check = faithfulness_check(tokens)
        faithfulness.add(check)
        pairs.append(entry)
        if on_pair is not None:
            on_pair(done, len(picked))

    return {
        "queries": len(chosen),
        "top_k": top_k,
        "seed": seed,
        "max_evals": max_evals,
        "pairs": pairs,
        "global": {
            "tokens": _ranked(token_abs, GLOBAL_TOP_TOKENS),
            "fields": _ranked(field_abs, None),
        },
        "faithfulness": faithfulness.to_dict(),
        "additivity": {
            "max_token_error": max_token_error,
            "max_field_error": max_field_error,
            "tolerance": ADDITIVITY_TOLERANCE,
        },
        "seconds": time.perf_counter() - started,
    }
