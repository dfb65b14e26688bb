"""``ecrec audit RUN``: fairness audit of a run's global ranker.

Scores the run's validation shard (the same queries the server evaluates) with
a round's global adapter, audits the ranking (shopper groups and provider
exposure, see :mod:`ecrec.fairness`), records it in ``fairness.json`` for
that round and prints per-group tables, each comparison with its bootstrap
interval and verdict, and any flags. Flags are findings, not failures: the exit
code is 0 either way.
"""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import MISSING, fields
from typing import Any, Literal

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
    from ecrec.fairness import AuditConfig

    parser = subparsers.add_parser(
        "audit",
        help="fairness audit of a run's global ranker (fairlearn)",
        description="Score the run's validation shard with a round's global ranker, compare "
        "shopper groups (ndcg, precision, selection rate, TPR/FPR) and provider exposure "
        "against thresholds with bootstrap intervals over queries, and record the result in "
        "fairness.json. A comparison is flagged only when its whole interval is beyond the "
        "threshold. Exit 0 even when flags are raised.",
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
    hints = typing.get_type_hints(AuditConfig)
    for f in fields(AuditConfig):
        option = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        hint = hints[f.name]
        kwargs: dict[str, Any] = {"default": None}
        if f.name == "by":
            kwargs.update(type=_columns, metavar="COL[,COL]")
            default = ",".join(default)
        elif typing.get_origin(hint) is Literal:
            kwargs.update(choices=typing.get_args(hint))
        elif hint is int:
            kwargs.update(type=int, metavar="N")
        else:
            kwargs.update(type=_finite, metavar="X")
        parser.add_argument(option, help=f"{f.metadata['help']} (default: {default})", **kwargs)
    parser.set_defaults(handler=run)


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return pattern.format(value)
    return str(value)


def _ci(interval: Any, pattern: str = "{:.3f}") -> str:
    if not interval:
        return "-"
    return f"{pattern.format(interval[0])}..{pattern.format(interval[1])}"


_STYLE = {"flag": "[bold red]flag[/]", "inconclusive": "[yellow]inconclusive[/]"}


def _print_column(out: Any, column: str, result: dict[str, Any], config: Any) -> None:
    from rich.table import Table

    k = config.k
    table = Table(title=f"{column}", title_justify="left")
    for name in ("group", "queries", f"ndcg@{k}", f"precision@{k}", "sel. rate", "TPR", "FPR"):
        table.add_column(name, justify="left" if name == "group" else "right")
    for group, row in result["by_group"].items():
        table.add_row(
            group + ("" if row["enough_queries"] else " *"),
            str(row["queries"]),
            _fmt(row[f"ndcg@{k}"]),
            _fmt(row[f"precision@{k}"]),
            _fmt(row["selection_rate"]),
            _fmt(row["tpr"]),
            _fmt(row["fpr"]),
        )
    out.print(table)
    for metric, comparison in result["comparisons"].items():
        status = comparison["status"]
        out.print(
            f"  {metric} {_fmt(comparison['value'])} "
            f"(CI {_ci(comparison['ci'])}, max {comparison['threshold']}): "
            + _STYLE.get(status, status)
        )
    if result["mixed_queries"]:
        out.print(f"  {result['mixed_queries']} queries mix several {column} values")
    if not all(row["enough_queries"] for row in result["by_group"].values()):
        out.print(f"  * fewer than {config.min_queries_per_group} queries: not compared")


def _print_provider(out: Any, provider: dict[str, Any], config: Any) -> None:
    k = config.k
    out.print(
        f"provider exposure (top {k}, attention {provider['attention']}, "
        f"{provider['queries_considered']} queries showing both tiers):"
    )
    for group, row in provider["by_group"].items():
        out.print(
            f"  {group}: {_fmt(row['exposure_share'], '{:.1%}')} of exposure / "
            f"{_fmt(row['target_share'], '{:.1%}')} merited; ratio "
            f"{_fmt(row['exposure_ratio'], '{:.2f}')} (CI {_ci(row['ci'], '{:.2f}')}): "
            + _STYLE.get(row["status"], row["status"])
        )
    out.print(
        f"  all queries: ratio {_fmt(provider['exposure_ratio_all_queries'], '{:.2f}')}"
        f" for {provider['protected']}"
    )
    if provider["note"]:
        out.print(f"  note: {provider['note']}")
    merchants = provider["merchants"]
    if merchants and merchants["by_group"]:
        rows = merchants["by_group"]
        counts = {s: sum(r["status"] == s for r in rows.values()) for s in _STYLE}
        judged = {m: r for m, r in rows.items() if r["exposure_ratio"] is not None}
        lowest = min(judged, key=lambda m: judged[m]["exposure_ratio"], default=None)
        out.print(
            f"  merchants: {len(rows)} in {merchants['queries_considered']} multi-merchant "
            f"queries; {counts['flag']} flagged, {counts['inconclusive']} inconclusive"
            + (
                f"; lowest ratio {lowest} {judged[lowest]['exposure_ratio']:.2f}"
                if lowest is not None
                else ""
            )
        )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ecrec.data.schema import ranker_documents
    from ecrec.evaluation import limit_queries
    from ecrec.fairness import AuditConfig, append_fairness, audit_rankings
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

    out.print(
        f"round {server_round}: {audit['queries']} queries, {audit['rows']} rows; "
        f"relevant = {audit['relevant_label']}; selected = score >= {config.threshold}; "
        f"{config.confidence_level:.0%} bootstrap intervals over queries"
    )
    for column, result in audit["groups"].items():
        _print_column(out, column, result, config)
    for column in audit["missing_columns"]:
        out.print(f"[yellow]note:[/] no {column!r} column in the validation shard; skipped")
    if audit["provider"] is not None:
        _print_provider(out, audit["provider"], config)
    too_few = audit["status_counts"].get("too few queries", 0)
    if too_few:
        out.print(
            f"{too_few} comparison(s) not made: too few queries "
            f"(min-queries-per-group {config.min_queries_per_group})"
        )
    if audit["flags"]:
        out.print(f"[bold red]{len(audit['flags'])} FAIRNESS FLAG(S):[/]")
        for flag in audit["flags"]:
            out.print(f"[red]  FLAG[/] {flag['message']}")
    else:
        out.print("[green]no fairness flags[/]: no interval wholly beyond its threshold")
    out.print(f"recorded round {server_round} in {path}")
    return 0
