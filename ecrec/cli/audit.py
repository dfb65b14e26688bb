"""``ecrec audit RUN``: fairness audit of a run's global ranker.

Scores the run's validation shard (the same queries the server evaluates) with
a round's global adapter, audits the ranking (shopper groups and provider
exposure, see :mod:`ecrec.fairness.audit`), records it in ``fairness.json``
for that round and prints per-group tables and any flags. Flags are findings,
not failures: the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, fields
from typing import Any

from ecrec.cli.args import one_line_errors, round_number

_EXAMPLE = "example: ecrec audit runs/20260101-120000 --by user_segment,merchant_tier --threshold 0"


def _columns(text: str) -> tuple[str, ...]:
    columns = tuple(part.strip() for part in text.split(",") if part.strip())
    if not columns:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return columns


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    from ecrec.fairness.audit import AuditConfig

    parser = subparsers.add_parser(
        "audit",
        help="fairness audit of a run's global ranker (fairlearn)",
        description="Score the run's validation shard with a round's global ranker, compare "
        "shopper groups (ndcg, selection rate, TPR/FPR) and provider exposure against "
        "thresholds, and record the result in fairness.json. Exit 0 even when flags are raised.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one_line_errors(parser)
    parser.add_argument("run", metavar="RUN", help="run folder (from ecrec simulate or the server)")
    parser.add_argument(
        "--round",
        type=round_number,
        default=None,
        metavar="R",
        help="checkpoint round (default: last)",
    )
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda"')
    # One option per AuditConfig field, with the field's own help text.
    for f in fields(AuditConfig):
        option = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        if f.name == "by":
            parser.add_argument(
                option,
                type=_columns,
                default=None,
                metavar="COL[,COL]",
                help=f"{f.metadata['help']} (default: {','.join(default)})",
            )
        elif f.type in ("int", int):
            parser.add_argument(
                option,
                type=int,
                default=None,
                metavar="N",
                help=f"{f.metadata['help']} (default: {default})",
            )
        else:
            parser.add_argument(
                option,
                type=_finite,
                default=None,
                metavar="X",
                help=f"{f.metadata['help']} (default: {default})",
            )
    parser.set_defaults(handler=run)


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return pattern.format(value)
    return str(value)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ecrec.data.schema import ranker_documents
    from ecrec.evaluation import limit_queries
    from ecrec.fairness.audit import AuditConfig, append_fairness, audit_rankings
    from ecrec.run_context import checkpoint_round, load_run

    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(AuditConfig)
        if getattr(args, f.name, None) is not None
    }
    config = AuditConfig(**overrides)  # validated before the slow part
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False)
    server_round = checkpoint_round(args.run, args.round)
    with err.status(f"scoring the validation shard with round {server_round}..."):
        run_config, ranker, validation = load_run(
            args.run, server_round=server_round, device=args.device
        )
        frame = limit_queries(validation, run_config.evaluation.max_queries).reset_index(drop=True)
        scores = ranker.score(
            frame["query"].astype(str).tolist(),
            ranker_documents(frame),
            batch_size=run_config.evaluation.batch_size,
        )
        audit = audit_rankings(frame, scores, config=config)
    path = append_fairness(args.run, server_round, audit)

    k = config.k
    out.print(
        f"round {server_round}: {audit['queries']} queries, {audit['rows']} rows; "
        f"relevant = {audit['relevant_label']}; selected = score >= {config.threshold}"
    )
    for column, result in audit["groups"].items():
        table = Table(title=f"{column}", title_justify="left")
        for name in ("group", "queries", f"ndcg@{k}", f"precision@{k}", "sel. rate", "TPR", "FPR"):
            table.add_column(name, justify="left" if name == "group" else "right")
        for group, row in result["by_group"].items():
            table.add_row(
                group + ("" if row["compared"] else " *"),
                str(row["queries"]),
                _fmt(row[f"ndcg@{k}"]),
                _fmt(row[f"precision@{k}"]),
                _fmt(row["selection_rate"]),
                _fmt(row["tpr"]),
                _fmt(row["fpr"]),
            )
        out.print(table)
        out.print(
            f"  ndcg@{k} gap {_fmt(result[f'ndcg@{k}_gap'])}, demographic parity difference "
            f"{_fmt(result['demographic_parity_difference'])}, equalized odds difference "
            f"{_fmt(result['equalized_odds_difference'])}"
            + (f", {result['mixed_queries']} mixed queries" if result["mixed_queries"] else "")
        )
        if not all(row["compared"] for row in result["by_group"].values()):
            out.print(f"  * fewer than {config.min_group_queries} queries: not compared")
    for column in audit["missing_columns"]:
        out.print(f"[yellow]note:[/] no {column!r} column in the validation shard; skipped")
    provider = audit["provider"]
    if provider is not None:
        shares = ", ".join(
            f"{g} {_fmt(v, '{:.1%}')} of exposure / "
            f"{_fmt(provider['relevant_share'].get(g), '{:.1%}')} of relevant"
            for g, v in provider["exposure_share"].items()
        )
        out.print(
            f"provider exposure (top {k}, {provider['queries_considered']} queries showing both "
            f"tiers): {shares or '-'}; exposure ratio {_fmt(provider['exposure_ratio'], '{:.2f}')}"
            f" (all queries: {_fmt(provider['exposure_ratio_all_queries'], '{:.2f}')})"
        )
        if provider["note"]:
            out.print(f"  note: {provider['note']}")
    if audit["flags"]:
        out.print(f"[bold red]{len(audit['flags'])} FAIRNESS FLAG(S):[/]")
        for flag in audit["flags"]:
            out.print(f"[red]  FLAG[/] {flag['message']}")
    else:
        out.print("[green]no fairness flags[/] at the configured thresholds")
    out.print(f"recorded round {server_round} in {path}")
    return 0
