"""What each ranker architecture costs at scoring time, measured side by side.

A cross-encoder reads every (query, product) pair through the whole BERT; the hybrid
ranker embeds each product once (a catalogue is embedded ahead of time) and each query
once, then adds cheap string features and a dot product. This scores the same
``--queries`` x ``--candidates`` pairs (synthetic marketplace) with:

* the LoRA cross-encoder;
* the hybrid ranker, cold (nothing embedded yet: queries and products both encoded);
* the hybrid ranker, warm catalogue (products embedded beforehand, as a search service
  would; only the queries are new).

It prints pairs per second and the ratios to the cross-encoder, from one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    console,
    default_out,
    fmt,
    print_saved,
    result_header,
    setup_environment,
    table,
    write_results,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scoring_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--base-model", default="minilm")
    parser.add_argument("--out", type=Path, default=default_out("scoring_cost"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    from ecrec.data.schema import ranker_documents
    from ecrec.data.synth import SynthConfig, synthesize
    from ecrec.model.ranker import RankerConfig, build_ranker

    market = synthesize(
        SynthConfig(
            merchants=1,
            queries_per_merchant=args.queries,
            candidates_per_query=args.candidates,
            validation_queries=max(1, args.queries // 4),
            seed=0,
        )
    )
    frame = next(iter(market.merchants.values()))
    queries = frame["query"].astype(str).tolist()
    documents = ranker_documents(frame)
    pairs = len(queries)
    figures: dict[str, float] = {}

    cross = build_ranker(
        RankerConfig(architecture="cross-encoder", base_model=args.base_model), device="cpu"
    )
    started = time.perf_counter()
    cross.score(queries, documents)
    figures["cross-encoder"] = pairs / (time.perf_counter() - started)

    hybrid = build_ranker(RankerConfig(base_model=args.base_model), device="cpu")
    started = time.perf_counter()
    hybrid.score(queries, documents)
    figures["hybrid, cold"] = pairs / (time.perf_counter() - started)

    warm = build_ranker(RankerConfig(base_model=args.base_model), device="cpu")
    warm.embed(sorted(set(documents)))  # the catalogue, embedded ahead of serving
    started = time.perf_counter()
    warm.score(queries, documents)
    figures["hybrid, warm catalogue"] = pairs / (time.perf_counter() - started)

    base = figures["cross-encoder"]
    rows = [[name, fmt(value, 1), f"{value / base:.1f}×"] for name, value in figures.items()]
    out = console()
    out.print(
        table(
            f"scoring {pairs} pairs ({len(set(queries))} queries, {args.base_model}, CPU)",
            ["ranker", "pairs/s", "vs cross-encoder"],
            rows,
        )
    )
    payload = result_header("scoring_cost", argv, pairs=pairs, base_model=args.base_model)
    payload["pairs_per_second"] = figures
    payload["ratio_vs_cross_encoder"] = {k: v / base for k, v in figures.items()}
    print_saved(out, write_results(args.out, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
