"""How a simulated federation's wall time and memory grow with merchants and rounds.

Why: a data scientist sizing ``ecrec simulate`` (or an operator sizing a round
deadline and a machine) needs the cost of one more merchant and one more round,
not only one run's time.

Two measurements, each simulation in a fresh child process so its memory is its own:

* **merchants**: for each N, the real Flower simulation (the ecrec ServerApp and
  ClientApp on Ray, SecAgg+ on, the tiny ranker of configs/tiny.toml); optionally
  with the seeded dropout scenario (``ecrec_simulations.dropout``: each node loses
  its round reply with probability ``--dropout``, after training). Reported: total
  and per-round wall time, the least-squares cost of one more merchant, who was
  dropped and whether every round still aggregated, and peak RSS -- of the whole
  process tree (the driver, Ray's services and its workers), of the driver, and of
  the largest Ray worker (the process that runs a merchant's round; workers run the
  merchants one after another, so this is the memory one merchant's round needs).
* **rounds** (``--memory-rounds``): the ``ecrec simulate`` command itself at a few
  round counts, the same merchants: its tree and driver peaks must not grow with
  rounds, and the driver's RSS after each round shows any leak.

Peak RSS: the kernel's per-process high-water mark (``VmHWM``, never missed between
samples) and the tree's sampled sum of current RSS every 0.2 s (a lower bound of the
tree's true peak; the sum of the per-process high-water marks is an upper bound).
Linux only.

SecAgg+ share settings must be valid for every N, so they are fractions of the
clients (``--num-shares``, ``--threshold``); the effective integers Flower derives
from them are recorded per N. Each merchant keeps the tiny config's data scale (the
marketplace grows with N) and fixed local steps, so the per-client training work is
constant and growth comes from the federation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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

DEFAULT_MERCHANTS = "4,8,12,16,20"
QUICK_MERCHANTS = "3,4"
DEFAULT_MEMORY_ROUNDS = "2,6"
#: What marks a process as one of Ray's workers (they run the ClientApps).
RAY_WORKER = ("ray::", "default_worker.py")
MB = 1024 * 1024


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
    """configs/tiny.toml for ``n`` merchants, SecAgg+ on, reports off.

    ``min-trainers`` stays 3, the least a default node policy accepts, so with dropouts
    a round needs 3 survivors (and SecAgg+'s threshold) to be aggregated.
    """
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
        clipping_range=16.0,  # room for the hybrid head's weights (configs/default.toml)
    )
    return config.replace("report", audit=False, explain=False, html=False)


# --------------------------------------------------------------------------- memory


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB ({} if it is gone)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class TreeMemory:
    """Samples the RSS of a process and everything below it (or carrying its tag)."""

    root: int
    tag: str | None = None
    interval: float = 0.2
    run_dir: Path | None = None  # if set: the driver's RSS each time a round is recorded
    peak_tree_kb: int = 0
    hwm_kb: dict[int, int] = field(default_factory=dict)
    cmdline: dict[int, str] = field(default_factory=dict)
    after_round: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _pids(self) -> list[int]:
        from ecrec.deploy.processes import descendants, list_processes, tagged_processes

        table = list_processes()
        pids = {self.root} | {p.pid for p in descendants(self.root, table)}
        if self.tag:
            pids |= {p.pid for p in tagged_processes(self.tag)}
        for info in table:
            if info.pid in pids and info.pid not in self.cmdline:
                self.cmdline[info.pid] = info.cmdline
        return sorted(pids)

    def sample(self) -> None:
        total = 0
        for pid in self._pids():
            status = _status_kb(pid)
            if not status:
                continue
            total += status.get("VmRSS", 0)
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status.get("VmHWM", 0))
        self.peak_tree_kb = max(self.peak_tree_kb, total)
        self.samples += 1
        if self.run_dir is not None:
            done = _recorded_rounds(self.run_dir)
            if done > len(self.after_round):
                driver = _status_kb(self.root).get("VmRSS", 0)
                for number in range(len(self.after_round), done):
                    self.after_round.append(
                        {
                            "round": number,
                            "driver_rss_mb": driver / 1024,
                            "tree_rss_mb": total / 1024,
                        }
                    )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        workers = {
            pid: kb
            for pid, kb in self.hwm_kb.items()
            if any(mark in self.cmdline.get(pid, "") for mark in RAY_WORKER)
        }
        return {
            "peak_tree_rss_mb": self.peak_tree_kb / 1024,
            "sum_process_peaks_mb": sum(self.hwm_kb.values()) / 1024,
            "driver_peak_rss_mb": self.hwm_kb.get(self.root, 0) / 1024,
            "ray_workers": len(workers),
            "worker_peak_rss_mb": max(workers.values(), default=0) / 1024,
            "processes": len(self.hwm_kb),
            "samples": self.samples,
            "driver_rss_after_round_mb": [round(r["driver_rss_mb"], 1) for r in self.after_round],
        }


def _recorded_rounds(run_dir: Path) -> int:
    try:
        text = (run_dir / "metrics.jsonl").read_text()
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip().endswith("}"))


def measured(argv: list[str], *, run_dir: Path, log: Path, timeout: float) -> dict[str, Any]:
    """Run ``argv`` in a child process, sampling its tree's memory; raise if it fails."""
    from ecrec.deploy.processes import TAG_VARIABLE

    tag = f"scaling-{secrets.token_hex(4)}"
    env = {**os.environ, TAG_VARIABLE: tag}
    started = time.perf_counter()
    with log.open("wb") as sink:
        child = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        memory = TreeMemory(child.pid, tag=tag, run_dir=run_dir).start()
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise SystemExit(f"{argv[2]}: no result within {timeout:.0f} s (log: {log})") from None
        finally:
            memory.stop()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(argv[:4])}... exited {code}:\n{tail}")
    return {"seconds": time.perf_counter() - started, **memory.summary()}


# --------------------------------------------------------------------------- merchants


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """One simulation in this process (the child side of :func:`run_one`)."""
    from rich.console import Console

    from ecrec.federation.simulation import simulate

    n, rounds, dropout, seed = spec["merchants"], spec["rounds"], spec["dropout"], spec["seed"]
    config = scaling_config(
        n, rounds=rounds, num_shares=spec["num_shares"], threshold=spec["threshold"]
    )
    run_dir = Path(spec["run_dir"])
    note = Console(stderr=True, width=160)
    dropped: dict[int, list[int]] = {}
    if dropout > 0:
        from ecrec_simulations.dropout import simulate_with_dropout

        summary, dropped = simulate_with_dropout(
            config, out=run_dir, probability=dropout, seed=seed, console=note
        )
    else:
        summary = simulate(config, out=run_dir, console=note)
    ids = sorted(summary.privacy)  # partition p is the p-th merchant by id
    records = {int(r["round"]): r for r in summary.rounds}
    return {
        "total_seconds": summary.seconds,
        "min_trainers": config.federation.min_trainers,
        "dropped": {str(r): [ids[p] for p in parts] for r, parts in dropped.items()},
        "trained": {str(r): records[r]["trained"] for r in sorted(records) if r > 0},
        "failures": {str(r): records[r]["failures"] for r in sorted(records) if r > 0},
        "skipped": {str(r): records[r]["skipped"] for r in sorted(records) if r > 0},
        "ledger_rounds": {m: info.get("rounds") for m, info in summary.privacy.items()},
    }


def run_one(
    n: int,
    *,
    rounds: int,
    num_shares: float,
    threshold: float,
    dropout: float,
    seed: int,
    workdir: Path,
    timeout: float,
) -> dict[str, Any]:
    run_dir = workdir / f"n{n}"
    spec = {
        "merchants": n,
        "rounds": rounds,
        "num_shares": num_shares,
        "threshold": threshold,
        "dropout": dropout,
        "seed": seed,
        "run_dir": str(run_dir),
    }
    result_file = workdir / f"n{n}.json"
    argv = [sys.executable, "-m", "benchmarks.scaling", "--point", json.dumps(spec)]
    argv += ["--point-out", str(result_file)]
    memory = measured(argv, run_dir=run_dir, log=workdir / f"n{n}.log", timeout=timeout)
    inner = json.loads(result_file.read_text())
    rows = round_rows(run_dir)
    rounds_wall = sum(r["wall_seconds"] for r in rows)
    steady = [r["wall_seconds"] for r in rows if r["round"] >= 2]
    shares, thresh = effective_shares(n, num_shares, threshold)
    aggregated = all(s is None for s in inner["skipped"].values())
    return {
        "merchants": n,
        "rounds": rounds,
        "dropout": dropout,
        "seed": seed,
        "process_seconds": memory["seconds"],
        "total_seconds": inner["total_seconds"],
        "rounds_seconds": rounds_wall,
        "round_wall_seconds": [r["wall_seconds"] for r in rows],
        "steady_round_seconds": median(steady) if steady else None,
        "steady_round_seconds_per_merchant": median(steady) / n if steady else None,
        "max_client_train_seconds": [r["max_client_train_seconds"] for r in rows],
        "seconds_per_merchant_round": inner["total_seconds"] / (n * rounds),
        "round_seconds_per_merchant_round": rounds_wall / (n * rounds),
        "secagg_shares": shares,
        "secagg_threshold": thresh,
        "min_trainers": inner["min_trainers"],
        "bytes_up_per_round": [r["bytes_up"] for r in rows],
        "dropped": inner["dropped"],
        "trained": inner["trained"],
        "failures": inner["failures"],
        "skipped": inner["skipped"],
        "every_round_aggregated": aggregated,
        "ledger_rounds": inner["ledger_rounds"],
        "memory": {k: v for k, v in memory.items() if k != "seconds"},
        "peak_tree_rss_mb_per_merchant": memory["peak_tree_rss_mb"] / n,
    }


def marginal_cost(points: list[dict[str, Any]], key: str) -> float:
    """Least-squares slope of ``key`` against N: the cost of one more merchant."""
    points = [p for p in points if _lookup(p, key) is not None]
    if len(points) < 2:
        return math.nan
    xs = [float(p["merchants"]) for p in points]
    ys = [float(_lookup(p, key)) for p in points]  # type: ignore[arg-type]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan


def _lookup(point: dict[str, Any], key: str) -> Any:
    value: Any = point
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# --------------------------------------------------------------------------- rounds


MEMORY_REPORT = """
[report]
audit = false
explain = false
html = false
"""


def memory_vs_rounds(
    rounds: list[int], *, merchants: int, workdir: Path, timeout: float
) -> list[dict[str, Any]]:
    """``ecrec simulate`` (the command) at each round count, tiny config, reports off."""
    config = workdir / "memory.toml"
    text = (REPO_ROOT / "configs" / "tiny.toml").read_text()
    config.write_text(text + MEMORY_REPORT)
    ecrec = str(Path(sys.executable).with_name("ecrec"))
    out = []
    for count in rounds:
        run_dir = workdir / f"rounds{count}"
        argv = [ecrec, "simulate", "--config", str(config), "--merchants", str(merchants)]
        argv += ["--rounds", str(count), "--out", str(run_dir)]
        memory = measured(
            argv, run_dir=run_dir, log=workdir / f"rounds{count}.log", timeout=timeout
        )
        out.append({"rounds": count, "merchants": merchants, **memory})
    return out


# --------------------------------------------------------------------------- command line


def parse_ints(text: str, *, name: str, least: int) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise SystemExit(f"{name}: not a comma-separated list of integers: {text!r}") from err
    if not values or any(v < least for v in values):
        raise SystemExit(f"{name}: every value must be >= {least}, got {text!r}")
    return values


def parse_merchants(text: str) -> list[int]:
    return parse_ints(text, name="--merchants", least=3)  # min-trainers is 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"merchants {QUICK_MERCHANTS}, rounds 2,3"
    )
    parser.add_argument("--merchants", default=None, help=f"default {DEFAULT_MERCHANTS}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="probability that a node loses its round reply (seeded scenario); 0 = none",
    )
    parser.add_argument("--seed", type=int, default=0, help="dropout seed")
    parser.add_argument(
        "--num-shares", type=float, default=1.0, help="SecAgg+ shares as a fraction of clients"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.67, help="SecAgg+ threshold as a fraction of shares"
    )
    parser.add_argument(
        "--memory-rounds",
        default=None,
        help=f"round counts for `ecrec simulate`'s memory (default {DEFAULT_MEMORY_ROUNDS}; "
        "'' to skip)",
    )
    parser.add_argument("--memory-merchants", type=int, default=3)
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds one simulation may take"
    )
    parser.add_argument("--out", type=Path, default=default_out("scaling"))
    parser.add_argument("--point", help=argparse.SUPPRESS)  # the child of run_one
    parser.add_argument("--point-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _merchants_table(points: list[dict[str, Any]], args: argparse.Namespace, marginal: Any) -> Any:
    dropout = (
        f", dropout {args.dropout:g} per node-round (seed {args.seed})" if args.dropout else ""
    )
    return table(
        f"simulation vs merchants (tiny ranker, {args.rounds} rounds, SecAgg+ on{dropout})",
        [
            "merchants",
            "shares/thr/min",
            "total s",
            "rounds s",
            "steady round s",
            "round s / merchant",
            "dropped",
            "aggregated",
            "tree peak MB",
            "per merchant MB",
            "driver MB",
            "worker MB",
        ],
        [
            [
                str(p["merchants"]),
                f"{p['secagg_shares']}/{p['secagg_threshold']}/{p['min_trainers']}",
                fmt(p["total_seconds"], 1),
                fmt(p["rounds_seconds"], 1),
                fmt(p["steady_round_seconds"], 2),
                fmt(p["round_seconds_per_merchant_round"], 2),
                str(sum(len(v) for v in p["dropped"].values())),
                "all" if p["every_round_aggregated"] else "NO",
                fmt(p["memory"]["peak_tree_rss_mb"], 0),
                fmt(p["peak_tree_rss_mb_per_merchant"], 0),
                fmt(p["memory"]["driver_peak_rss_mb"], 0),
                fmt(p["memory"]["worker_peak_rss_mb"], 0),
            ]
            for p in points
        ],
        caption="one more merchant adds about "
        f"{fmt(marginal['steady_round'], 2)} s to a steady round (rounds >= 2), "
        f"{fmt(marginal['total'], 1)} s to the whole run and "
        f"{fmt(marginal['peak_tree_rss_mb'], 1)} MB to the tree's peak RSS (least-squares "
        "slopes); worker = the largest Ray worker (it runs merchants' rounds one at a time)\n"
        "total includes Ray start-up, the round-0 evaluation, and round 1 starting the workers",
    )


def _rounds_table(rows: list[dict[str, Any]]) -> Any:
    return table(
        "`ecrec simulate` memory vs rounds (tiny config, reports off)",
        [
            "rounds",
            "merchants",
            "seconds",
            "tree peak MB",
            "driver peak MB",
            "worker MB",
            "driver MB after each round",
        ],
        [
            [
                str(r["rounds"]),
                str(r["merchants"]),
                fmt(r["seconds"], 1),
                fmt(r["peak_tree_rss_mb"], 0),
                fmt(r["driver_peak_rss_mb"], 0),
                fmt(r["worker_peak_rss_mb"], 0),
                " ".join(f"{v:.0f}" for v in r["driver_rss_after_round_mb"]),
            ]
            for r in rows
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    if args.point:
        write_results(args.point_out, run_point(json.loads(args.point)))
        return 0
    merchants = parse_merchants(
        args.merchants or (QUICK_MERCHANTS if args.quick else DEFAULT_MERCHANTS)
    )
    memory_text = args.memory_rounds
    if memory_text is None:
        memory_text = "2,3" if args.quick else DEFAULT_MEMORY_ROUNDS
    memory_rounds = parse_ints(memory_text, name="--memory-rounds", least=1) if memory_text else []
    for name, value in (("--num-shares", args.num_shares), ("--threshold", args.threshold)):
        if not 0 < value <= 1:
            raise SystemExit(f"{name} must be a fraction in (0, 1], got {value}")
    if not 0 <= args.dropout < 1:
        raise SystemExit(f"--dropout must be in [0, 1), got {args.dropout}")
    out, note = console(), console(stderr=True)
    settings = {
        "merchants": merchants,
        "rounds": args.rounds,
        "dropout": args.dropout,
        "seed": args.seed,
        "num_shares": args.num_shares,
        "threshold": args.threshold,
        "memory_rounds": memory_rounds,
        "memory_merchants": args.memory_merchants,
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
                    dropout=args.dropout,
                    seed=args.seed,
                    workdir=Path(tmp),
                    timeout=args.timeout,
                )
            )
        if memory_rounds:
            note.print(f"[bold]ecrec simulate at rounds {memory_rounds}[/bold]")
            payload["memory_vs_rounds"] = memory_vs_rounds(
                memory_rounds, merchants=args.memory_merchants, workdir=Path(tmp),
                timeout=args.timeout,
            )  # fmt: skip
    payload["points"] = points
    payload["marginal_seconds_per_merchant"] = marginal = {
        "total": marginal_cost(points, "total_seconds"),
        "steady_round": marginal_cost(points, "steady_round_seconds"),
        "peak_tree_rss_mb": marginal_cost(points, "memory.peak_tree_rss_mb"),
    }
    out.print(_merchants_table(points, args, marginal))
    if memory_rounds:
        out.print(_rounds_table(payload["memory_vs_rounds"]))
    path = write_results(args.out, payload)
    print_saved(out, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
