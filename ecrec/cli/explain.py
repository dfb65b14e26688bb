"""``ecrec explain RUN``: SHAP explanations of a run's global ranker.

Loads the run's config and a round's global adapter (default: the last),
explains the top products of a few sampled validation queries (token- and
field-level SHAP), writes ``explanations.json`` and ``explanations/`` into the
run folder, and prints a short summary on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ecrec.cli.args import one_line_errors, positive_int, round_number

_EXAMPLE = "example: ecrec explain runs/20260101-120000 --queries 5 --top-k 3"


def register(subparsers: Any) -> None:
    from ecrec.explain import DEFAULT_MAX_EVALS

    parser = subparsers.add_parser(
        "explain",
        help="SHAP explanations of a run's global ranker",
        description="Explain why the global ranker puts its top products first for a few "
        "validation queries (token- and field-level SHAP), and write explanations.json, "
        "HTML text plots and bar charts into the run folder.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one_line_errors(parser)
    parser.add_argument("run", metavar="RUN", help="run folder (from ecrec simulate or the server)")
    parser.add_argument(
        "--queries", type=positive_int, default=5, metavar="N", help="validation queries to sample"
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=3,
        metavar="K",
        help="top products explained per query",
    )
    parser.add_argument(
        "--round",
        type=round_number,
        default=None,
        metavar="R",
        help="checkpoint round (default: last)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="query sampling seed")
    parser.add_argument(
        "--max-evals",
        type=positive_int,
        default=DEFAULT_MAX_EVALS,
        metavar="E",
        help=f"model calls per token explanation (default {DEFAULT_MAX_EVALS}; more = finer)",
    )
    parser.add_argument(
        "--no-fields", action="store_true", help="skip the field-level (exact Shapley) view"
    )
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda"')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecrec.explain import ADDITIVITY_TOLERANCE, explain_run, write_explanations
    from ecrec.run_context import checkpoint_round, load_run

    err = Console(stderr=True, highlight=False)
    server_round = checkpoint_round(args.run, args.round)
    with err.status(f"loading round {server_round} of {args.run}..."):
        _config, ranker, validation = load_run(
            args.run, server_round=server_round, device=args.device
        )
    progress = Progress(
        TextColumn("[bold]explaining"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} pairs"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("pairs", total=None)

        def on_pair(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = explain_run(
            ranker,
            validation,
            queries=args.queries,
            top_k=args.top_k,
            seed=args.seed,
            max_evals=args.max_evals,
            fields=not args.no_fields,
            on_pair=on_pair,
        )
    result = {"round": server_round, **result}
    written = write_explanations(result, args.run)

    out = sys.stdout
    faith = result["faithfulness"]
    rate = "n/a" if faith["rate"] is None else f"{faith['rate']:.0%}"
    print(
        f"round {server_round}: explained {len(result['pairs'])} pairs "
        f"({result['queries']} queries x top {result['top_k']}) in {result['seconds']:.0f} s",
        file=out,
    )
    chance = ""
    if faith.get("chance_rate") is not None:
        chance = f"; shuffled: {faith['chance_rate']:.0%}, p = {faith['p_value']:.2g}"
    print(
        f"faithfulness: {rate} ({faith['hits']}/{faith['pairs']} pairs whose query names a "
        f"category or colour have it among the top {faith['top']} document tokens{chance})",
        file=out,
    )
    tokens = ", ".join(f"{t['name']} {t['mean_abs']:.3g}" for t in result["global"]["tokens"][:8])
    print(f"top tokens (mean |SHAP|): {tokens}", file=out)
    if result["global"]["fields"]:
        fields = ", ".join(f"{f['name']} {f['mean_abs']:.3g}" for f in result["global"]["fields"])
        print(f"fields (mean |SHAP|): {fields}", file=out)
    additivity = result["additivity"]
    worst = max(additivity["max_token_error"], additivity["max_field_error"])
    if worst > ADDITIVITY_TOLERANCE:
        print(f"warning: additivity error {worst:.2e} exceeds {ADDITIVITY_TOLERANCE}", file=out)
    print(f"wrote {written['json']} and {written['index'].parent}/", file=out)
    return 0
