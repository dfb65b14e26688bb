"""SHAP explanations of the ranker's relevance scores.

Two views of one (query, product) score, both with the query held fixed:

* **Token level** (:func:`explain_tokens`): ``shap.maskers.Text`` over the
  product side only, with shap's Partition explainer. The model function maps a
  masked document to ``score(query, masked document)``. The query is never
  masked because the question an operator asks is "what about this *product*
  made it rank here for this query?"; joint query+document masking would need
  ``maskers.Composite(Text, Text)``, which shap does not implement.
* **Field level** (:func:`explain_fields`): exact Shapley values over the
  structured product fields (title, brand, colour, ...). Removing a field
  rebuilds the document from the remaining fields with the same functions the
  ranker reads products through (:func:`~ecrec.data.schema.compose_product_text`
  and :func:`~ecrec.data.schema.ranker_documents`), so every coalition is a
  document the model could really see.

Both satisfy additivity: ``base_value + sum(values) == score``. Partition
(Owen) values are additive by construction even when ``max_evals`` cuts the
recursion short (unexpanded clusters share their credit), and exact Shapley
values are additive by definition.

:func:`explain_run` explains the top products of a sample of validation
queries, aggregates them, and measures *faithfulness* on the synthetic
marketplace, whose hidden relevance rule is driven by category words first and
colour words second (see :mod:`ecrec.data.synth`).
"""

from __future__ import annotations

import contextlib
import html
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.schema import PRODUCT_FIELDS, compose_product_text, ranker_documents
from ecrec.data.synth import CATEGORIES, COLOURS
from ecrec.errors import DataError, EcrecError
from ecrec.model.ranker import Ranker
from ecrec.runfolder import atomic_write_bytes, atomic_write_json

#: Model calls per token explanation. The Text masker with MiniLM costs one
#: scored pair per call (~118 pairs/s on 2 CPU cores), so this is ~2 s a pair.
DEFAULT_MAX_EVALS = 200
#: Field names of a field-level explanation, in document order.
FIELD_ORDER: tuple[str, ...] = ("title", *PRODUCT_FIELDS)
#: A product text that does not parse into known fields is explained as one field.
OPAQUE_FIELD = "product_text"
#: Tolerance of the additivity check ``base + sum(values) == score``.
ADDITIVITY_TOLERANCE = 1e-4
#: How many of a pair's most positive tokens the faithfulness check looks at.
FAITHFULNESS_TOP = 3
#: Tokens / fields listed in the global aggregates.
GLOBAL_TOP_TOKENS = 20

EXPLANATIONS_FILE = "explanations.json"
EXPLANATIONS_DIR = "explanations"

__all__ = [
    "DEFAULT_MAX_EVALS",
    "FieldExplanation",
    "TokenExplanation",
    "explain_fields",
    "explain_run",
    "explain_tokens",
    "named_attributes",
    "product_fields",
    "write_explanations",
]


# --------------------------------------------------------------------------- #
# Result types
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Token level
# --------------------------------------------------------------------------- #


def _shap() -> Any:
    """Import shap quietly: its colour maps trip a matplotlib PendingDeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    return shap


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block, then restore it.

    shap's Partition explainer breaks priority ties with ``np.random.randn``;
    when ``max_evals`` cuts the recursion short, the tie order decides which
    clusters get expanded, so an unseeded run is not reproducible.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def read_document(ranker: Ranker, query: str, document: str) -> str:
    """The prefix of ``document`` the ranker actually reads next to ``query``.

    Pairs are truncated to ``max_length`` tokens, so the tail of a long product
    text never reaches the model. Explaining only the read prefix saves model
    calls on tokens whose attribution is zero by construction. The prefix is
    used only when it tokenizes to exactly the tokens the model reads (so its
    score is identical); otherwise the whole document is explained.
    """
    tokenizer = ranker.tokenizer
    enc = tokenizer(
        query,
        document,
        truncation="longest_first",
        max_length=ranker.config.max_length,
        return_offsets_mapping=True,
    )
    sequence_ids = enc.sequence_ids()
    read = [i for i, s in enumerate(sequence_ids) if s == 1]
    full = tokenizer(document, add_special_tokens=False)["input_ids"]
    if not read or len(read) >= len(full):
        return document
    end = enc["offset_mapping"][read[-1]][1]
    prefix = document[:end]
    kept = [enc["input_ids"][i] for i in read]
    if tokenizer(prefix, add_special_tokens=False)["input_ids"] != kept:
        return document
    return prefix


def explain_tokens(
    ranker: Ranker,
    *,
    query: str,
    document: str,
    max_evals: int = DEFAULT_MAX_EVALS,
    batch_size: int = 64,
    seed: int = 0,
    truncate: bool = True,
) -> TokenExplanation:
    """Token-level SHAP values of ``score(query, document)`` over the document.

    Uses ``shap.maskers.Text(ranker.tokenizer)`` (masked tokens become
    ``[MASK]``) and shap's Partition explainer with at most ``max_evals``
    model calls. With ``truncate`` only the part of the document the model
    reads is explained (see :func:`read_document`); the score is unchanged.
    """
    shap = _shap()

    if max_evals < 4:
        raise EcrecError(f"max_evals must be at least 4, got {max_evals}")
    if truncate:
        document = read_document(ranker, query, document)
    evals = 0

    def model(masked: np.ndarray) -> np.ndarray:
        nonlocal evals
        docs = [str(d) for d in np.asarray(masked).reshape(-1)]
        evals += len(docs)
        return ranker.score([query] * len(docs), docs, batch_size=batch_size).astype(np.float64)

    masker = shap.maskers.Text(ranker.tokenizer)
    explainer = shap.explainers.Partition(model, masker)
    with _seeded_numpy(seed):
        explanation = explainer([document], max_evals=max_evals, batch_size=batch_size, silent=True)
    tokens = [str(t) for t in explanation.data[0]]
    values = np.asarray(explanation.values[0], dtype=np.float64)
    base = float(np.asarray(explanation.base_values).reshape(-1)[0])
    # The score of the unmasked document, computed directly rather than read
    # back from shap, so the additivity check compares against the model.
    score = float(ranker.score([query], [document])[0])
    return TokenExplanation(
        query=query,
        document=document,
        tokens=tokens,
        values=values,
        base_value=base,
        score=score,
        evals=evals,
    )


# --------------------------------------------------------------------------- #
# Field level
# --------------------------------------------------------------------------- #


def _text(value: Any) -> str:
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
    title = _text(row.get("product_title"))
    text = _text(row.get("product_text"))
    parsed = _parse_product_text(text) if text else {}
    if parsed is None:
        structured = {name: _text(row.get(name)) for name in PRODUCT_FIELDS}
        structured = {name: v for name, v in structured.items() if v}
        parsed = structured if compose_product_text(structured) == text else {OPAQUE_FIELD: text}
    out: dict[str, str] = {}
    if title:
        out["title"] = title
    out.update(parsed)
    return out


def _documents_for(fields: Mapping[str, str], names: Sequence[str], masks: np.ndarray) -> list[str]:
    """The document the model reads when only the fields where ``mask`` is true remain."""
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
    return ranker_documents(pd.DataFrame({"product_title": titles, "product_text": texts}))


def explain_fields(
    ranker: Ranker,
    *,
    row: Mapping[str, Any],
    query: str | None = None,
    batch_size: int = 64,
) -> FieldExplanation:
    """Exact Shapley values of ``score(query, product)`` over the product's fields.

    A feature is a field's presence. shap's Exact explainer runs over binary
    presence vectors with a custom masker that zeroes the masked presences,
    i.e. masking a field removes it from the document; with at most seven
    fields that is at most 2**7 = 128 scored documents per product. (A plain
    function masker rather than ``maskers.Independent`` with a zero background:
    same values, and it skips numba compiling shap's tabular delta-masking
    code, which costs several seconds per process.)
    """
    shap = _shap()

    query = _text(row.get("query")) if query is None else query
    fields = product_fields(row)
    if not fields:
        raise DataError(f"product {row.get('product_id')!r} has no title and no product text")
    names = list(fields)
    full = _documents_for(fields, names, np.ones((1, len(names)), dtype=bool))[0]
    expected = ranker_documents(
        pd.DataFrame(
            {
                "product_title": [_text(row.get("product_title"))],
                "product_text": [_text(row.get("product_text"))],
            }
        )
    )[0]
    if full != expected:  # a bug in the field decomposition, not bad input
        raise AssertionError(f"field decomposition does not rebuild the document: {full!r}")

    def model(presence: np.ndarray) -> np.ndarray:
        masks = np.asarray(presence).reshape(-1, len(names)) > 0.5
        docs = _documents_for(fields, names, masks)
        return ranker.score([query] * len(docs), docs, batch_size=batch_size).astype(np.float64)

    def presence_masker(mask: np.ndarray, x: np.ndarray) -> np.ndarray:
        # Masking a field = setting its presence to 0 = dropping it from the document.
        return (np.asarray(x) * mask).reshape(1, -1)

    explainer = shap.explainers.Exact(model, presence_masker)
    explanation = explainer(np.ones((1, len(names))), silent=True)
    score = float(ranker.score([query], [full])[0])
    return FieldExplanation(
        query=query,
        fields=names,
        texts=dict(fields),
        values=np.asarray(explanation.values[0], dtype=np.float64),
        base_value=float(np.asarray(explanation.base_values).reshape(-1)[0]),
        score=score,
    )


# --------------------------------------------------------------------------- #
# Faithfulness vocabulary (synthetic marketplace)
# --------------------------------------------------------------------------- #


def _surface_forms() -> list[tuple[str, str, str]]:
    """``(attribute, canonical value, word)`` for every category and colour word."""
    forms = [("category", name, word) for name, cat in CATEGORIES.items() for word in cat.synonyms]
    forms += [("colour", name, word) for name, words in COLOURS.items() for word in words]
    # Longest first, so "dark blue" is read as navy before "blue" is considered.
    return sorted(forms, key=lambda f: -len(f[2]))


_FORMS = _surface_forms()


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", re.IGNORECASE)


def named_attributes(query: str) -> dict[str, str]:
    """The category and colour a query names, as canonical values (synthetic vocabulary).

    Longest phrases win and consume their words, so "dark blue" names navy,
    not blue. A typo'd word is not recognised (the query then does not count).
    """
    text = query.lower()
    taken = np.zeros(len(text), dtype=bool)
    named: dict[str, str] = {}
    for attribute, canonical, word in _FORMS:
        if attribute in named:
            continue
        for match in _word_pattern(word).finditer(text):
            if not taken[match.start() : match.end()].any():
                taken[match.start() : match.end()] = True
                named[attribute] = canonical
                break
    return named


def _attribute_spans(document: str, attribute: str, canonical: str) -> list[tuple[int, int]]:
    """Where the document mentions the named value, by any of its words."""
    words = CATEGORIES[canonical].synonyms if attribute == "category" else COLOURS[canonical]
    spans = []
    for word in words:
        spans += [(m.start(), m.end()) for m in _word_pattern(word).finditer(document)]
    return spans


def faithfulness_check(explanation: TokenExplanation) -> dict[str, Any] | None:
    """Is a query-named category/colour word among the top positive document tokens?

    Applies to pairs whose query names a category or colour that the document
    mentions (a word absent from the document cannot be attributed; ranking a
    product without it is a ranking error, not an explanation error). A token
    belongs to a word when its character span overlaps the word's, so any of a
    word's word-pieces counts. Returns None when the check does not apply.
    """
    named = named_attributes(explanation.query)
    spans = explanation.spans()
    top = explanation.top_positive(FAITHFULNESS_TOP)
    per_attribute: dict[str, bool] = {}
    for attribute, canonical in named.items():
        word_spans = _attribute_spans(explanation.document, attribute, canonical)
        if not word_spans:
            continue
        per_attribute[attribute] = any(
            spans[i][0] < end and start < spans[i][1] for i in top for start, end in word_spans
        )
    if not per_attribute:
        return None
    return {
        "named": named,
        "hit": any(per_attribute.values()),
        "by_attribute": per_attribute,
        "top_tokens": [explanation.tokens[i].strip() for i in top],
    }


# --------------------------------------------------------------------------- #
# A run's explanations
# --------------------------------------------------------------------------- #


def _rate(hits: int, pairs: int) -> dict[str, Any]:
    return {"pairs": pairs, "hits": hits, "rate": (hits / pairs) if pairs else None}


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def explain_run(
    ranker: Ranker,
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

    Queries are drawn without replacement with ``numpy.random.default_rng(seed)``
    from the shard's query ids (in order of first appearance), so the same seed
    explains the same queries. Returns a JSON-ready dict: one entry per pair
    (token and field attributions), global aggregates (mean |attribution| per
    lower-cased token, top 20, and per field) and the faithfulness statistic.
    ``on_pair(done, total)`` is called after each pair (progress bars).
    """
    if queries < 1 or top_k < 1:
        raise EcrecError(f"queries and top-k must be >= 1, got {queries} and {top_k}")
    for column in ("query_id", "query", "product_id", "product_title", "product_text"):
        if column not in validation.columns:
            raise DataError(f"validation shard has no {column!r} column")
    started = time.perf_counter()
    ids = pd.unique(validation["query_id"])
    if len(ids) == 0:
        raise DataError("validation shard has no queries")
    rng = np.random.default_rng(seed)
    chosen = [
        ids[i] for i in sorted(rng.choice(len(ids), size=min(queries, len(ids)), replace=False))
    ]
    frame = validation[validation["query_id"].isin(chosen)].reset_index(drop=True)
    scores = ranker.score(frame["query"].astype(str).tolist(), ranker_documents(frame))
    frame = frame.assign(_score=scores)

    picked: list[tuple[int, pd.Series]] = []
    for qid in chosen:
        rows = frame[frame["query_id"] == qid].sort_values("_score", ascending=False, kind="stable")
        picked += [(rank, row) for rank, (_, row) in enumerate(rows.head(top_k).iterrows(), 1)]

    pairs: list[dict[str, Any]] = []
    token_abs: dict[str, list[float]] = defaultdict(list)
    field_abs: dict[str, list[float]] = defaultdict(list)
    hits = applicable = 0
    by_attribute: dict[str, list[int]] = {"category": [0, 0], "colour": [0, 0]}
    max_token_error = max_field_error = 0.0
    for done, (rank, row) in enumerate(picked, 1):
        query = str(row["query"])
        document = ranker_documents(pd.DataFrame([row]))[0]
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
            key = token.strip().lower()
            if key:
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
        for column in ("relevance", "label", "merchant_id", "merchant_tier", "user_segment"):
            if column in row.index:
                entry[column] = _json_value(row[column])
        if fields:
            field_expl = explain_fields(ranker, row=row, query=query, batch_size=batch_size)
            max_field_error = max(max_field_error, field_expl.additivity_error)
            for name, value in field_expl.as_mapping().items():
                field_abs[name].append(abs(value))
            entry["fields"] = field_expl.to_dict()
        check = faithfulness_check(tokens)
        entry["faithfulness"] = check
        if check is not None:
            applicable += 1
            hits += int(check["hit"])
            for attribute, hit in check["by_attribute"].items():
                by_attribute[attribute][0] += 1
                by_attribute[attribute][1] += int(hit)
        pairs.append(entry)
        if on_pair is not None:
            on_pair(done, len(picked))

    def ranked(values: Mapping[str, list[float]], top: int | None) -> list[dict[str, Any]]:
        rows = [
            {"name": name, "mean_abs": float(np.mean(v)), "count": len(v)}
            for name, v in values.items()
        ]
        rows.sort(key=lambda r: (-r["mean_abs"], r["name"]))
        return rows[:top] if top is not None else rows

    return {
        "queries": len(chosen),
        "top_k": top_k,
        "seed": seed,
        "max_evals": max_evals,
        "pairs": pairs,
        "global": {
            "tokens": ranked(token_abs, GLOBAL_TOP_TOKENS),
            "fields": ranked(field_abs, None),
        },
        "faithfulness": {
            **_rate(hits, applicable),
            "top": FAITHFULNESS_TOP,
            "by_attribute": {a: _rate(h, n) for a, (n, h) in by_attribute.items()},
            "rule": (
                "pairs whose query names a category or colour word (synthetic vocabulary, "
                "synonyms included) that the document mentions; a hit when any word-piece "
                f"of that value is among the top {FAITHFULNESS_TOP} positively attributed "
                "document tokens"
            ),
        },
        "additivity": {
            "max_token_error": max_token_error,
            "max_field_error": max_field_error,
            "tolerance": ADDITIVITY_TOLERANCE,
        },
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _text_plot(pair: Mapping[str, Any]) -> str:
    """shap's interactive text plot of one pair, as an HTML snippet."""
    shap = _shap()

    tokens = pair["tokens"]
    explanation = shap.Explanation(
        values=np.asarray(tokens["values"], dtype=np.float64),
        base_values=float(tokens["base_value"]),
        data=np.asarray(tokens["tokens"], dtype=object),
    )
    plot = shap.plots.text(explanation, display=False)
    heading = (
        f"<p><b>query:</b> {html.escape(str(pair['query']))} &nbsp; "
        f"<b>product:</b> {html.escape(str(pair['product_id']))} (rank {pair['rank']}, "
        f"score {pair['score']:.3f})</p>"
    )
    return heading + str(plot)


def _bar_chart(rows: Sequence[Mapping[str, Any]], *, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [str(r["name"]) for r in rows][::-1]
    values = [float(r["mean_abs"]) for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(names), 3) + 1.2))
    try:
        ax.barh(names, values, color="#1f77b4")
        ax.set_xlabel("mean |SHAP value| (logit)")
        ax.set_title(title)
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=100)
        tmp.replace(path)
    finally:
        plt.close(fig)


def write_explanations(result: Mapping[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Write ``explanations.json``, HTML text plots and the global bar charts.

    Files: ``<run>/explanations.json`` (atomic); ``<run>/explanations/pair_NN_*.html``
    (one shap text plot per pair; earlier ``pair_*.html`` files are removed so the
    folder matches the JSON) and ``index.html`` with all of them;
    ``global_tokens.png`` and ``global_fields.png``. Returns the paths by role.
    """
    run_dir = Path(run_dir)
    out_dir = run_dir / EXPLANATIONS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("pair_*.html"):
        stale.unlink()
    payload = dict(result)
    snippets = []
    pairs = []
    for number, pair in enumerate(result.get("pairs", []), 1):
        snippet = _text_plot(pair)
        name = f"pair_{number:02d}_{_safe_name(str(pair['query_id']))}.html"
        atomic_write_bytes(out_dir / name, snippet.encode("utf-8"))
        snippets.append(snippet)
        pairs.append({**pair, "html": f"{EXPLANATIONS_DIR}/{name}"})
    payload["pairs"] = pairs
    written: dict[str, Path] = {}
    index = (
        "<!doctype html><html><head><meta charset='utf-8'><title>ecrec explanations</title>"
        "</head><body><h1>Token attributions (SHAP)</h1>" + "<hr>".join(snippets) + "</body></html>"
    )
    written["index"] = out_dir / "index.html"
    atomic_write_bytes(written["index"], index.encode("utf-8"))
    glob = result.get("global", {})
    written["tokens_png"] = out_dir / "global_tokens.png"
    _bar_chart(glob.get("tokens", []), title="Most influential tokens", path=written["tokens_png"])
    written["fields_png"] = out_dir / "global_fields.png"
    _bar_chart(glob.get("fields", []), title="Product fields", path=written["fields_png"])
    payload["files"] = {
        "html": [p["html"] for p in pairs],
        "index": f"{EXPLANATIONS_DIR}/index.html",
        "global_tokens": f"{EXPLANATIONS_DIR}/global_tokens.png",
        "global_fields": f"{EXPLANATIONS_DIR}/global_fields.png",
    }
    written["json"] = run_dir / EXPLANATIONS_FILE
    atomic_write_json(written["json"], payload)
    return written
