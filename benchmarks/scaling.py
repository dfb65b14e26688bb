"""How a simulated federation's wall time grows with the number of merchants.

Why: a data scientist sizing ``ecrec simulate`` (or an operator sizing a
round deadline) needs the cost of one more merchant, not only one run's time.
For each N this runs the real Flower simulation (``simulate``: Ray, SecAgg+
on, the tiny ranker of configs/tiny.toml, 2 rounds) and reports the total
wall time, the rounds' wall time from ``metrics.jsonl``, and the cost per
merchant-round = wall / (N × rounds).

SecAgg+ share settings must be valid for every N, so they are fractions of the
clients (``--num-shares``, ``--threshold``); the effective integers Flower
derives from them are recorded per N. Each merchant keeps the tiny config's
data scale (the marketplace grows with N) and fixed local steps, so the
per-client training work is constant and growth comes from the federation.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    console,
    default_out,
    fmt,
    median,
    print_saved,
    result_header,
    setup_environment,
    table,
    write_results,
)
from benchmarks.speed import round_rows

DEFAULT_MERCHANTS = "2,4,8,16"
QUICK_MERCHANTS = "2,3"


def effective_shares(n: int, num_shares: float, threshold: float) -> tuple[int, int]:
    """The (shares, threshold) SecAgg+ uses for ``n`` clients given fractions.

    Mirrors the documented rule of Flower's SecAggPlusWorkflow for float
    settings (round, make the share count odd when below n, at least 3 shares
    or all clients, threshold at least 2), for the record only.
    """
    shares = round(num_shares * n)
    if shares < n and shares % 2 == 0:
        shares += 1
    if shares <= 2:
        shares = n
    return shares, max(round(threshold * shares), 2)


def scaling_config(n: int, *, rounds: int, num_shares: float, threshold: float) -> Any:
    """configs/tiny.toml for ``n`` merchants, SecAgg+ on, reports off."""
    from ecrec.config import load_config

    config = load_config(REPO_ROOT / "configs" / "tiny.toml")
    config = config.replace("data", merchants=n)
    config = config.replace(
        "federation",
        rounds=rounds,
        secagg=True,
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        min_clients=n,
    )
    return config.replace("report", audit=False, explain=False, html=False)


def run_one(
    n: int, *, rounds: int, num_shares: float, threshold: float, workdir: Path, out: Any
) -> dict[str, Any]:
    from ecrec_simulations.runner import simulate

    config = scaling_config(n, rounds=rounds, num_shares=num_shares, threshold=threshold)
    run_dir = workdir / f"n{n}"
    summary = simulate(config, out=run_dir, console=out)
    rows = round_rows(run_dir)
    rounds_wall = sum(r["wall_seconds"] for r in rows)
    steady = [r for r in rows if r["round"] >= 2]
    shares, thresh = effective_shares(n, num_shares, threshold)
    return {
        "merchants": n,
        "rounds": rounds,
        "total_seconds": summary.seconds,
        "rounds_seconds": rounds_wall,
        "round_wall_seconds": [r["wall_seconds"] for r in rows],
        "steady_round_seconds": median(r["wall_seconds"] for r in steady) if steady else None,
        "steady_round_seconds_per_merchant": (
            median(r["wall_seconds"] for r in steady) / n if steady else None
        ),
        "max_client_train_seconds": [r["max_client_train_seconds"] for r in rows],
        "seconds_per_merchant_round": summary.seconds / (n * rounds),
        "round_seconds_per_merchant_round": rounds_wall / (n * rounds),
        "secagg_shares": shares,
        "secagg_threshold": thresh,
        "bytes_up_per_round": [r["bytes_up"] for r in rows],
    }


def marginal_cost(points: list[dict[str, Any]], key: str) -> float:
    """Least-squares slope of ``key`` seconds against N: the cost of one more merchant."""
    points = [p for p in points if p.get(key) is not None]
    if len(points) < 2:
        return math.nan
    xs = [float(p["merchants"]) for p in points]
    ys = [float(p[key]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan


def parse_merchants(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise SystemExit(f"--merchants: not a comma-separated list of integers: {text!r}") from err
    if not values or any(v < 2 for v in values):
        raise SystemExit(f"--merchants: SecAgg+ needs at least 2 merchants per run, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help=f"merchants {QUICK_MERCHANTS}")
    parser.add_argument("--merchants", default=None, help=f"default {DEFAULT_MERCHANTS}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--num-shares", type=float, default=1.0, help="SecAgg+ shares as a fraction of clients"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.67, help="SecAgg+ threshold as a fraction of shares"
    )
    parser.add_argument("--out", type=Path, default=default_out("scaling"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    merchants = parse_merchants(
        args.merchants or (QUICK_MERCHANTS if args.quick else DEFAULT_MERCHANTS)
    )
    for name, value in (("--num-shares", args.num_shares), ("--threshold", args.threshold)):
        if not 0 < value <= 1:
            raise SystemExit(f"{name} must be a fraction in (0, 1], got {value}")
    out, note = console(), console(stderr=True)
    settings = {
        "merchants": merchants,
        "rounds": args.rounds,
        "num_shares": args.num_shares,
        "threshold": args.threshold,
        "base_config": "configs/tiny.toml",
        "reports": "audit, explain and html off",
        "quick": args.quick,
    }
    payload = result_header("scaling", argv, settings=settings)
    points = []
    with tempfile.TemporaryDirectory(prefix="ecrec-scaling-") as tmp:
        for i, n in enumerate(merchants, 1):
            note.print(f"[bold]simulation {i}/{len(merchants)}: {n} merchants[/bold]")
            points.append(
                run_one(
                    n,
                    rounds=args.rounds,
                    num_shares=args.num_shares,
                    threshold=args.threshold,
                    workdir=Path(tmp),
                    out=note,
                )
            )
    payload["points"] = points
    payload["marginal_seconds_per_merchant"] = {
        "total": marginal_cost(points, "total_seconds"),
        "steady_round": marginal_cost(points, "steady_round_seconds"),
    }
    marginal = payload["marginal_seconds_per_merchant"]
    out.print(
        table(
            f"simulation wall time vs merchants (tiny ranker, {args.rounds} rounds, SecAgg+ on)",
            [
                "merchants",
                "shares/threshold",
                "total s",
                "rounds s",
                "steady round s",
                "steady round s / N",
                "s per merchant-round",
                "rounds s per merchant-round",
            ],
            [
                [
                    str(p["merchants"]),
                    f"{p['secagg_shares']}/{p['secagg_threshold']}",
                    fmt(p["total_seconds"], 1),
                    fmt(p["rounds_seconds"], 1),
                    fmt(p["steady_round_seconds"], 2),
                    fmt(p["steady_round_seconds_per_merchant"], 2),
                    fmt(p["seconds_per_merchant_round"], 2),
                    fmt(p["round_seconds_per_merchant_round"], 2),
                ]
                for p in points
            ],
            caption="one more merchant adds about "
            f"{fmt(marginal['steady_round'], 2)} s to a steady round (rounds >= 2) and "
            f"{fmt(marginal['total'], 1)} s to the whole run (least-squares slopes)\n"
            "per merchant-round = wall / (N × rounds); total includes Ray start-up, the "
            "round-0 evaluation, and round 1 starting the workers",
        )
    )
    path = write_results(args.out, payload)
    print_saved(out, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
