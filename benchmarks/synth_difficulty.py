"""How hard is the synthetic marketplace? Baselines against the hidden relevance oracle.

A synthetic marketplace is only useful for judging a learned ranker if naive
rankers cannot already solve it: when a zero-shot sentence-embedding model or a
keyword count scores near the oracle, "federated DP beats the baseline" means
nothing. So on the pooled validation shard of the default marketplace (the one
``ecrec simulate`` synthesizes: ``ecrec.config.DataConfig``'s defaults) this
prints NDCG@10, MRR@10 and AUC for:

* random scores (mean over several draws, so the floor is not one lucky shuffle);
* character n-gram TF-IDF cosine of query vs product title (sklearn);
* word overlap: how many distinct query words the product document contains;
* Okapi BM25 of the query against the product document;
* zero-shot all-MiniLM-L6-v2 as a bi-encoder (cosine of mean-pooled embeddings,
  exactly as ``benchmarks.quality`` computes it), offline;
* a learned baseline: logistic regression on hashed (query word, title word)
  pairs and title words, trained on the merchants' *clicks* (not on relevance),
  to show the clicks carry a learnable signal beyond word overlap;
* the text reader: :func:`ecrec.data.synth.parse_query` and
  :func:`~ecrec.data.synth.parse_product` read intent and facts back from the
  text and the relevance rule is applied to them: the ceiling a ranker that
  learned the vocabulary could reach (below 1.0 only through typos);
* the oracle: the hidden relevance itself.

The product document is what the ranker reads
(:func:`ecrec.data.schema.ranker_documents`: title + product text). AUC is
reported twice: against the click labels (what ``metrics.jsonl`` records) and
against "relevance >= 2" (how well a scorer separates good products from bad,
free of click noise).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import (
    console,
    default_out,
    fmt,
    print_saved,
    result_header,
    setup_environment,
    table,
    verdict,
    write_results,
)

K = 10
#: Products at or above this grade count as "relevant" for the relevance AUC.
RELEVANT_GRADE = 2
RANDOM_DRAWS = 20
#: The difficulty target: the zero-shot bi-encoder clearly below a perfect oracle.
BI_ENCODER_CEILING = 0.85
BM25_K1 = 1.2
BM25_B = 0.75

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_overlap_scores(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """Distinct query words that also occur in the document."""
    return np.array(
        [len(set(_words(q)) & set(_words(d))) for q, d in zip(queries, documents, strict=True)],
        dtype=np.float64,
    )


def bm25_scores(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """Okapi BM25 of each query against its own candidate document.

    Hand-written (no BM25 package is installed and it is a few lines); term
    counts come from sklearn's ``CountVectorizer`` and document frequencies from
    the distinct documents of the shard, so every query sees the same idf.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(tokenizer=_words, lowercase=False, token_pattern=None)
    distinct = sorted(set(documents))
    counts = vectorizer.fit_transform(distinct).tocsr()
    n_docs = counts.shape[0]
    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / lengths.mean())
    row_of = {d: i for i, d in enumerate(distinct)}
    vocabulary = vectorizer.vocabulary_
    scores = np.zeros(len(queries))
    for n, (query, document) in enumerate(zip(queries, documents, strict=True)):
        row = row_of[document]
        for term in set(_words(query)):
            column = vocabulary.get(term)
            if column is None:
                continue
            tf = counts[row, column]
            scores[n] += idf[column] * tf * (BM25_K1 + 1) / (tf + norm[row])
    return scores


def char_tfidf_scores(queries: Sequence[str], titles: Sequence[str]) -> np.ndarray:
    """Cosine of character 3-5-gram TF-IDF vectors (within word boundaries) of query and title."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    vectorizer.fit([*set(queries), *set(titles)])
    q = vectorizer.transform(queries)
    t = vectorizer.transform(titles)
    return np.asarray(q.multiply(t).sum(axis=1)).ravel()  # rows are L2-normalised


def _word_pair_features(queries: Sequence[str], titles: Sequence[str]) -> Any:
    from sklearn.feature_extraction import FeatureHasher

    rows = []
    for query, title in zip(queries, titles, strict=True):
        q_words, t_words = set(_words(query)), set(_words(title))
        rows.append([f"{q}|{t}" for q in q_words for t in t_words] + [f"t:{t}" for t in t_words])
    return FeatureHasher(n_features=2**20, input_type="string").transform(rows)


def learned_word_pair_scores(train: pd.DataFrame, validation: pd.DataFrame) -> np.ndarray:
    """Logistic regression on hashed (query word, title word) pairs, fitted to clicks."""
    from sklearn.linear_model import LogisticRegression

    features = _word_pair_features(train["query"].tolist(), train["product_title"].tolist())
    model = LogisticRegression(max_iter=2000).fit(features, train["label"].to_numpy())
    return model.decision_function(
        _word_pair_features(validation["query"].tolist(), validation["product_title"].tolist())
    )


def text_reader_scores(validation: pd.DataFrame) -> np.ndarray:
    """The relevance rule applied to what the query and product text say (see module doc)."""
    from ecrec.data.synth import parse_product, parse_query, relevance

    scores = []
    for query, title, text in zip(
        validation["query"], validation["product_title"], validation["product_text"], strict=True
    ):
        intent = parse_query(str(query))
        product = parse_product(str(title), str(text))
        scores.append(float(relevance(intent, product)) if intent is not None else 0.0)
    return np.asarray(scores)


def minilm_scores(validation: pd.DataFrame, *, length: int, device: str) -> np.ndarray:
    """Zero-shot MiniLM bi-encoder, computed by the quality benchmark's own function."""
    from benchmarks.quality import Evaluator, bi_encoder_scores

    return bi_encoder_scores(Evaluator(validation, k=K), length=length, device=device)


def evaluate(validation: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """NDCG@k and MRR@k on graded relevance; AUC on clicks and on relevance >= 2."""
    from ecrec.metrics.ranking import ranking_metrics

    query_ids = validation["query_id"].to_numpy()
    relevance = validation["relevance"].to_numpy()
    on_clicks = ranking_metrics(
        query_ids=query_ids,
        labels=validation["label"].to_numpy(),
        scores=scores,
        relevance=relevance,
        k=K,
    )
    on_relevance = ranking_metrics(
        query_ids=query_ids,
        labels=(relevance >= RELEVANT_GRADE).astype(np.int64),
        scores=scores,
        relevance=relevance,
        k=K,
    )
    return {
        f"ndcg@{K}": on_clicks[f"ndcg@{K}"],
        f"mrr@{K}": on_clicks[f"mrr@{K}"],
        "auc_clicks": on_clicks["auc"],
        "auc_relevant": on_relevance["auc"],
    }


def mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


def run_difficulty(args: argparse.Namespace) -> dict[str, Any]:
    from ecrec.data.schema import ranker_documents
    from ecrec.data.synth import SynthConfig, synthesize

    synth = SynthConfig(
        merchants=args.merchants,
        queries_per_merchant=args.queries_per_merchant,
        candidates_per_query=args.candidates,
        validation_queries=args.validation_queries,
        seed=args.seed,
    )
    market = synthesize(synth)
    validation = market.validation.reset_index(drop=True)
    train = pd.concat(market.merchants.values(), ignore_index=True)
    queries = validation["query"].astype(str).tolist()
    titles = validation["product_title"].astype(str).tolist()
    documents = ranker_documents(validation)

    rng = np.random.default_rng(args.seed)
    scorers: list[tuple[str, Callable[[], dict[str, float]]]] = [
        (
            f"random (mean of {RANDOM_DRAWS} draws)",
            lambda: mean_metrics(
                [evaluate(validation, rng.random(len(validation))) for _ in range(RANDOM_DRAWS)]
            ),
        ),
        (
            "char TF-IDF, query vs title",
            lambda: evaluate(validation, char_tfidf_scores(queries, titles)),
        ),
        ("word overlap", lambda: evaluate(validation, word_overlap_scores(queries, documents))),
        ("BM25", lambda: evaluate(validation, bm25_scores(queries, documents))),
    ]
    if not args.no_minilm:
        scorers.append(
            (
                "zero-shot MiniLM bi-encoder",
                lambda: evaluate(
                    validation, minilm_scores(validation, length=args.length, device=args.device)
                ),
            )
        )
    scorers += [
        (
            "learned word pairs (logistic regression on clicks)",
            lambda: evaluate(validation, learned_word_pair_scores(train, validation)),
        ),
        (
            "text reader (parse_query + parse_product)",
            lambda: evaluate(validation, text_reader_scores(validation)),
        ),
    ]
    scorers.append(
        (
            "oracle (hidden relevance)",
            lambda: evaluate(validation, validation["relevance"].to_numpy(dtype=np.float64)),
        )
    )
    results = {name: run() for name, run in scorers}
    shard = {
        "queries": int(validation["query_id"].nunique()),
        "rows": len(validation),
        "merchants": int(validation["merchant_id"].nunique()),
        "relevance_counts": {
            str(g): int(n) for g, n in validation["relevance"].value_counts().sort_index().items()
        },
        "click_rate": float(validation["label"].mean()),
        "training_rows": len(train),
    }
    return {"synth_config": asdict(synth), "shard": shard, "scores": results}


def results_table(result: dict[str, Any]) -> Any:
    synth = result["synth_config"]
    shard = result["shard"]
    return table(
        f"synthetic marketplace difficulty (seed {synth['seed']}, {synth['merchants']} merchants; "
        f"pooled validation: {shard['queries']} queries, {shard['rows']} rows, "
        f"{shard['merchants']} merchants; {shard['training_rows']:,} training rows)",
        ["scorer", f"NDCG@{K}", f"MRR@{K}", "AUC (clicks)", f"AUC (rel ≥ {RELEVANT_GRADE})"],
        [
            [
                name,
                fmt(m[f"ndcg@{K}"]),
                fmt(m[f"mrr@{K}"]),
                fmt(m["auc_clicks"]),
                fmt(m["auc_relevant"]),
            ]
            for name, m in result["scores"].items()
        ],
        caption=f"relevance grades in the shard: {shard['relevance_counts']}; "
        f"click rate {shard['click_rate']:.3f}",
    )


def target_line(result: dict[str, Any]) -> str:
    scores = result["scores"]
    bi = scores.get("zero-shot MiniLM bi-encoder")
    oracle = scores["oracle (hidden relevance)"][f"ndcg@{K}"]
    if bi is None:
        return f"target: bi-encoder NDCG@{K} ≤ {BI_ENCODER_CEILING} (not measured: --no-minilm)"
    ok = bi[f"ndcg@{K}"] <= BI_ENCODER_CEILING and oracle > 0.999
    return (
        f"target: bi-encoder NDCG@{K} ≤ {BI_ENCODER_CEILING} with the oracle at 1.0: "
        f"{bi[f'ndcg@{K}']:.4f} vs {oracle:.4f} → {verdict(ok)}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from ecrec.config import DataConfig

    data = DataConfig()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synth_difficulty", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--merchants", type=int, default=data.merchants)
    parser.add_argument("--queries-per-merchant", type=int, default=data.queries_per_merchant)
    parser.add_argument("--candidates", type=int, default=data.candidates_per_query)
    parser.add_argument("--validation-queries", type=int, default=data.validation_queries)
    parser.add_argument("--seed", type=int, default=data.seed)
    parser.add_argument("--length", type=int, default=128, help="bi-encoder tokens per text")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM bi-encoder")
    parser.add_argument("--out", type=Path, default=default_out("synth_difficulty"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    out = console()
    payload = result_header("synth_difficulty", argv)
    result = run_difficulty(args)
    payload.update(result)
    out.print(results_table(result))
    out.print(target_line(result))
    print_saved(out, write_results(args.out, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
