"""A merchant with real-size logs: round wall time, peak memory, scoring throughput.

One synthetic merchant of ``--rows`` impressions (default 50,000) trains one DP round of
the default hybrid ranker exactly as its node does (``train_local``: Poisson sampling,
per-row clipping, CSPRNG noise) and scores all its rows. Measured separately, in one run:

* feature building (the one-time cost a node caches: encoder passes + string features),
  with the encoder of ``--base-model``; with ``--minilm-sample N`` the MiniLM encoder's
  throughput is also measured on N distinct texts, to size the one-time embedding of
  the whole log with the production encoder;
* one local DP round (``--steps`` steps at the default batch size);
* scoring every row once its features are built;
* peak resident memory of the process (``ru_maxrss``) after each phase.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
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


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merchant_size")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--base-model", default="tiny", help="encoder for the full log")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--minilm-sample", type=int, default=500)
    parser.add_argument("--out", type=Path, default=default_out("merchant_size"))
    args = parser.parse_args(argv)

    import numpy as np

    from ecrec.config import load_config
    from ecrec.data.schema import ranker_documents
    from ecrec.data.synth import SynthConfig, synthesize
    from ecrec.model.ranker import RankerConfig, build_ranker
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.accounting import noise_multiplier_for_target
    from ecrec.train.local import plan_round, train_local

    figures: dict[str, float] = {}
    candidates = 10
    started = time.perf_counter()
    market = synthesize(
        SynthConfig(
            merchants=1,
            queries_per_merchant=-(-args.rows // candidates),
            candidates_per_query=candidates,
            validation_queries=10,
            seed=0,
        )
    )
    frame = next(iter(market.merchants.values())).head(args.rows)
    figures["rows"] = len(frame)
    figures["synthesis_s"] = time.perf_counter() - started
    figures["peak_mib_after_data"] = _peak_mib()

    defaults = load_config(None)
    model = dataclasses.replace(defaults.model, base_model=args.base_model)
    ranker = build_ranker(model, device="cpu")
    started = time.perf_counter()
    inputs = ranker.training_inputs(frame)
    figures["features_s"] = time.perf_counter() - started
    figures["features_rows_per_s"] = len(frame) / figures["features_s"]
    figures["peak_mib_after_features"] = _peak_mib()

    train = dataclasses.replace(defaults.train, local_steps=args.steps, seed=None)
    rate, steps = plan_round(len(frame), train)
    sigma = noise_multiplier_for_target(
        target_epsilon=defaults.privacy.budget_epsilon,
        delta=defaults.privacy.delta,
        sample_rate=rate,
        steps=steps * defaults.federation.rounds,
        accountant=defaults.privacy.accountant,
    )
    sigma = max(sigma, NodePolicy().min_noise_multiplier)  # as the node applies it
    started = time.perf_counter()
    train_local(ranker, frame, config=train, noise_multiplier=sigma, encode=lambda _: inputs)
    figures["dp_round_s"] = time.perf_counter() - started
    figures["peak_mib_after_round"] = _peak_mib()

    started = time.perf_counter()
    scores = ranker.score_frame(frame)
    figures["score_s"] = time.perf_counter() - started
    figures["score_rows_per_s"] = len(frame) / figures["score_s"]
    assert np.all(np.isfinite(scores))

    if args.minilm_sample:
        minilm = build_ranker(RankerConfig(), device="cpu")
        texts = sorted(set(ranker_documents(frame)))[: args.minilm_sample]
        started = time.perf_counter()
        minilm.embed(texts)
        per_text = (time.perf_counter() - started) / len(texts)
        distinct = len(set(ranker_documents(frame))) + frame["query"].nunique()
        figures["minilm_texts_per_s"] = 1 / per_text
        figures["minilm_distinct_texts"] = distinct
        figures["minilm_full_log_embedding_s_estimate"] = distinct * per_text
    figures["peak_mib"] = _peak_mib()

    out = console()
    out.print(
        table(
            f"one merchant, {len(frame)} rows (encoder {args.base_model}; sigma {sigma:.3f}, "
            f"q {rate:.5f}, {steps} steps)",
            ["figure", "value"],
            [[k, fmt(v, 2)] for k, v in figures.items()],
        )
    )
    payload = result_header("merchant_size", argv, figures=figures, sigma=sigma, rate=rate)
    print_saved(out, write_results(args.out, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
