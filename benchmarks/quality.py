"""Ranking quality on real search data, against the baselines a merchant already has.

``python -m benchmarks.quality --data ../shared/data/homedepot/pairs.csv`` samples
``--queries`` queries of the Home Depot file (real queries, human relevance ratings; the
file is read in place and never copied into the project), and for each ``--seeds`` seed
imports them with ``ecrec data import`` (Dirichlet split by category into ``--merchants``
merchants, 20% of each merchant's queries held out as the pooled validation shard), then
scores on that validation shard:

* baselines: random scores, character TF-IDF (query vs title), BM25, the zero-shot
  bi-encoder (MiniLM cosine: the hybrid ranker's round 0), the untrained cross-encoder;
* each merchant alone under DP at ε = 8 (the ranker it could train by itself, the same
  rounds x steps it takes in the federation; the mean and the best merchant);
* centralised non-private training on all merchants' rows pooled (what nobody may do);
* federated non-private, and federated DP at each ``--epsilons`` ε: these run
  ``ecrec simulate`` (``ecrec.federation.simulation.simulate``): the production Flower
  apps, merchant nodes with their policy and sealed ledgers, SecAgg+.

Each row reports NDCG@10, its lift over random, MRR@10 and AUC (means over seeds) with a
95% bootstrap CI over validation queries (queries resampled within each seed, the
seeds' means averaged per replicate), wall time, and for the federated DP ranker at ε = 8
the paired difference to every baseline with its CI (same resampled queries for both).
DP noise on every node comes from the OS CSPRNG (nodes refuse server seeds), so a seed
fixes the split and the initial weights, not the noise.

``--quick``: 300 queries, one seed, ε = 8 only (a few minutes on 2 cores).
Without ``--data``: the synthetic marketplace of the embedded default config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import (
    console,
    default_out,
    fmt,
    print_saved,
    progress,
    result_header,
    setup_environment,
    table,
    verdict,
    write_results,
)
from benchmarks.synth_difficulty import bm25_scores, char_tfidf_scores
from ecrec.model.hybrid import EMBEDDING_CACHE_ENV

REFERENCE_EPSILON = 8.0
TARGET_CENTRALISED_FRACTION = 0.95
K = 10


@dataclass(frozen=True)
class QualitySettings:
    """Everything that decides the numbers (all of it goes into the results file)."""

    data: str = ""
    queries: int = 900
    merchants: int = 6
    alpha: float = 0.5
    validation_fraction: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    bootstrap: int = 500
    cross_encoder: bool = True
    base_model: str = "minilm"
    rounds: int = 0  # 0: the embedded default config's
    quick: bool = False
    bi_encoder: bool = False  # also the LoRA bi-encoder, federated under DP (slow on CPU)


#: The row of the LoRA bi-encoder (``--bi-encoder``) and the comparisons printed for it.
BI_ENCODER = f"federated bi-encoder (LoRA) DP ε={REFERENCE_EPSILON:g}"
BI_ENCODER_AGAINST = (
    "zero-shot bi-encoder (MiniLM cosine)", f"federated DP ε={REFERENCE_EPSILON:g}",
    "character TF-IDF (query vs title)",
)  # fmt: skip


def bi_encoder_config(config: Any) -> Any:
    """The bi-encoder recipe measured (a LoRA learning rate, CPU-sized steps and lengths:
    MiniLM with per-sample gradients through two towers costs ~0.7 s a step at batch 16,
    length 32, on 2 cores), on the hybrid run's data, rounds and privacy."""
    config = config.replace("model", architecture="bi-encoder", max_length=32)
    config = config.replace("train", local_steps=20, batch_size=16, learning_rate=1e-3)
    return config.replace("privacy", budget_epsilon=REFERENCE_EPSILON)


# --------------------------------------------------------------------------- data


def prepare_seed(settings: QualitySettings, seed: int, work: Path) -> Path:
    """The marketplace folder of one seed: imported real data, or the synthetic default."""
    folder = work / f"data-seed{seed}"
    if (folder / "manifest.json").is_file():
        return folder
    if not settings.data:
        command = ["data", "synth", "--out", str(folder), "--seed", str(seed)]
    else:
        source = Path(settings.data)
        if source.is_dir():
            return source
        sample = work / "sample.csv"
        if not sample.is_file():
            frame = pd.read_csv(source)
            queries = frame["query"].drop_duplicates().sample(frac=1.0, random_state=0)
            frame[frame["query"].isin(set(queries[: settings.queries]))].to_csv(sample, index=False)
        command = [
            "data", "import", "--format", "csv", str(sample), "--out", str(folder),
            "--dirichlet-by", "category", "--merchants", str(settings.merchants),
            "--alpha", str(settings.alpha), "--seed", str(seed),
            "--validation-fraction", str(settings.validation_fraction),
        ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "ecrec", *command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"ecrec {' '.join(command[:2])} failed: {done.stderr.strip()[-400:]}")
    return folder


def read_market(folder: Path) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    from ecrec.data.io import read_impressions

    merchants = {
        p.stem.removeprefix("merchant_"): read_impressions(p)
        for p in sorted(folder.glob("merchant_*.parquet"))
    }
    return merchants, read_impressions(folder / "validation.parquet")


# --------------------------------------------------------------------------- training


def base_config(settings: QualitySettings, data_dir: Path) -> Any:
    """The embedded default config (the product's defaults) on this marketplace."""
    from ecrec.config import load_config

    config = load_config(None).replace("data", dir=str(data_dir))
    config = config.replace("model", base_model=settings.base_model)
    if settings.rounds:
        config = config.replace("federation", rounds=settings.rounds)
    # Explanations and the HTML page do not change a single score; they only cost time.
    return config.replace("report", explain=False, html=False)


def federated_state(config: Any, *, out: Path, private: bool) -> dict[str, np.ndarray]:
    """Run ``ecrec simulate`` (production apps, nodes, ledgers, SecAgg+) and return the
    final global adapter."""
    from ecrec.federation.simulation import simulate
    from ecrec.node.policy import NodePolicy
    from ecrec.run_context import checkpoint_round
    from ecrec.runfolder import RunFolder

    policy = NodePolicy(
        allow_non_private=not private,
        budget_epsilon=max(config.privacy.budget_epsilon, NodePolicy().budget_epsilon),
    )
    if not private:
        config = config.replace("train", dp=False)
    quiet = _quiet_console()
    simulate(config, out=out, node_policy=policy, console=quiet)
    return RunFolder(out).load_checkpoint(checkpoint_round(out))


def _quiet_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=True)


def local_state(
    ranker: Any, frame: pd.DataFrame, config: Any, initial: dict[str, np.ndarray], *,
    private: bool, steps: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Train alone (in process): the same ``train_local`` a node runs, σ calibrated as the
    node calibrates it for the whole plan."""
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.accounting import noise_multiplier_for_target
    from ecrec.train.local import dp_units, plan_round, train_local

    train = dataclasses.replace(config.train, local_steps=steps, dp=private)
    ranker.load_adapter_state(initial)
    sigma = None
    if private:
        units = dp_units(frame, unit="row").n_units
        rate, _ = plan_round(units, train)
        sigma = max(
            noise_multiplier_for_target(
                target_epsilon=REFERENCE_EPSILON, delta=config.privacy.delta,
                sample_rate=rate, steps=steps, accountant=config.privacy.accountant,
            ),
            NodePolicy().min_noise_multiplier,
        )  # fmt: skip
    train_local(ranker, frame, config=train, noise_multiplier=sigma)
    return ranker.adapter_state()


# --------------------------------------------------------------------------- scoring


@dataclass
class SeedScores:
    """Every method's scores of one seed's validation rows."""

    validation: pd.DataFrame
    scores: dict[str, np.ndarray]
    seconds: dict[str, float]


def _queries(validation: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    codes, _ = pd.factorize(validation["query_id"])
    rows = [np.flatnonzero(codes == q) for q in range(codes.max() + 1)]
    return codes, rows


def per_query(validation: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    from ecrec.metrics.ranking import per_query_metrics

    return per_query_metrics(
        query_ids=validation["query_id"], labels=validation["label"], scores=scores,
        relevance=validation["relevance"], k=K,
    )  # fmt: skip


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if np.unique(labels).size == 2 else math.nan


def metric_replicates(
    seeds: Sequence[SeedScores], name: str, *, replicates: int, rng_seed: int = 0
) -> dict[str, np.ndarray]:
    """Per bootstrap replicate (index 0 = the full sample): the seeds' mean NDCG, MRR, AUC.

    Every method uses the same resampled queries (``rng_seed``), so differences between
    two methods' replicates are paired."""
    out = {key: np.zeros(replicates + 1) for key in ("ndcg", "mrr", "auc")}
    seeds = [s for s in seeds if name in s.scores]  # the cross-encoder: first seed only
    for seed_scores in seeds:
        validation, scores = seed_scores.validation, seed_scores.scores[name]
        table_q = per_query(validation, scores)
        _, rows = _queries(validation)
        labels = validation["label"].to_numpy()
        ndcg = table_q["ndcg"].to_numpy()
        mrr = table_q["mrr"].to_numpy()
        rng = np.random.default_rng(rng_seed)
        for r in range(replicates + 1):
            pick = np.arange(len(rows)) if r == 0 else rng.integers(0, len(rows), len(rows))
            idx = np.concatenate([rows[q] for q in pick])
            out["ndcg"][r] += np.nanmean(ndcg[pick]) / len(seeds)
            out["mrr"][r] += np.nanmean(mrr[pick]) / len(seeds)
            out["auc"][r] += _auc(labels[idx], scores[idx]) / len(seeds)
    return out


def summarise_method(reps: dict[str, np.ndarray], random: dict[str, np.ndarray]) -> dict:
    lift = reps["ndcg"] - random["ndcg"]
    out: dict[str, Any] = {}
    for key, values in (("ndcg", reps["ndcg"]), ("lift", lift), ("mrr", reps["mrr"]),
                        ("auc", reps["auc"])):  # fmt: skip
        lo, hi = np.nanpercentile(values[1:], [2.5, 97.5])
        out[key] = {"mean": float(values[0]), "ci": [float(lo), float(hi)]}
    return out


def paired(reps_a: dict[str, np.ndarray], reps_b: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for key in ("ndcg", "auc"):
        diff = reps_a[key] - reps_b[key]
        lo, hi = np.nanpercentile(diff[1:], [2.5, 97.5])
        out[key] = {"mean": float(diff[0]), "ci": [float(lo), float(hi)]}
    return out


# --------------------------------------------------------------------------- the runs


def run_seed(settings: QualitySettings, seed: int, work: Path, bar: Any, task: Any) -> SeedScores:
    from ecrec.model.ranker import RankerConfig, build_ranker

    saved = work / f"scores-seed{seed}.pkl"
    if saved.is_file():  # a seed already scored in this --work folder (an interrupted run)
        cached: SeedScores = pd.read_pickle(saved)
        if settings.bi_encoder and BI_ENCODER not in cached.scores:
            bar.advance(task, _methods_per_seed(settings) - 1)
            config = base_config(settings, prepare_seed(settings, seed, work))
            _score_bi_encoder(config.replace("model", seed=seed), seed, work, cached, bar, task)
            pd.to_pickle(cached, saved)
        else:
            bar.advance(task, _methods_per_seed(settings))
        return cached
    folder = prepare_seed(settings, seed, work)
    merchants, validation = read_market(folder)
    config = base_config(settings, folder).replace("model", seed=seed)
    queries = validation["query"].astype(str).tolist()
    titles = validation["product_title"].astype(str).tolist()
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, compute: Callable[[], np.ndarray]) -> None:
        bar.update(task, description=f"seed {seed}: {name}")
        started = time.perf_counter()
        scores[name] = np.asarray(compute(), dtype=np.float64)
        seconds[name] = time.perf_counter() - started
        bar.advance(task)
        bar.console.print(f"seed {seed}: {name} scored in {seconds[name]:.0f} s")

    rng = np.random.default_rng(seed)
    timed("random scores", lambda: rng.random(len(validation)))
    timed("character TF-IDF (query vs title)", lambda: char_tfidf_scores(queries, titles))
    timed("BM25 (query vs title)", lambda: bm25_scores(queries, titles))
    ranker = build_ranker(config.model, device="cpu")
    initial = ranker.adapter_state()
    timed("zero-shot bi-encoder (MiniLM cosine)", lambda: ranker.score_frame(validation))
    if settings.cross_encoder and seed == settings.seeds[0]:
        # Untrained, it only shows where a fresh cross-encoder starts; on CPU it costs
        # more than all the other baselines together, so it is scored on one seed.
        cross = RankerConfig(
            architecture="cross-encoder", base_model=settings.base_model, seed=seed
        )
        timed("untrained cross-encoder", lambda: build_ranker(cross).score_frame(validation))

    def with_state(state: dict[str, np.ndarray]) -> np.ndarray:
        ranker.load_adapter_state(state)
        return ranker.score_frame(validation)

    rounds, steps = config.federation.rounds, config.train.local_steps
    for merchant, frame in merchants.items():
        timed(f"alone {merchant}, DP ε=8", lambda f=frame: with_state(local_state(
            ranker, f, config, initial, private=True, steps=rounds * steps)))  # fmt: skip
    pooled = pd.concat(merchants.values(), ignore_index=True)
    timed("centralised, non-private", lambda: with_state(local_state(
        ranker, pooled, config, initial, private=False,
        steps=rounds * steps * len(merchants))))  # fmt: skip
    timed("federated, non-private", lambda: with_state(federated_state(
        config, out=work / f"run-seed{seed}-nonprivate", private=False)))  # fmt: skip
    for epsilon in settings.epsilons:
        eps_config = config.replace("privacy", budget_epsilon=epsilon)
        timed(f"federated DP ε={epsilon:g}", lambda c=eps_config, e=epsilon: with_state(
            federated_state(c, out=work / f"run-seed{seed}-eps{e:g}", private=True)))  # fmt: skip
    result = SeedScores(validation=validation, scores=scores, seconds=seconds)
    if settings.bi_encoder:
        _score_bi_encoder(config, seed, work, result, bar, task)
    pd.to_pickle(result, saved)
    return result


def _score_bi_encoder(
    config: Any, seed: int, work: Path, result: SeedScores, bar: Any, task: Any
) -> None:
    """Train the LoRA bi-encoder through ``ecrec simulate`` and score the validation rows."""
    from ecrec.model.ranker import build_ranker

    bar.update(task, description=f"seed {seed}: {BI_ENCODER}")
    started = time.perf_counter()
    bi_config = bi_encoder_config(config)
    state = federated_state(bi_config, out=work / f"run-seed{seed}-bi-encoder", private=True)
    ranker = build_ranker(bi_config.model, device="cpu")
    ranker.load_adapter_state(state)
    result.scores[BI_ENCODER] = np.asarray(ranker.score_frame(result.validation), np.float64)
    result.seconds[BI_ENCODER] = time.perf_counter() - started
    bar.advance(task)
    bar.console.print(f"seed {seed}: {BI_ENCODER} in {result.seconds[BI_ENCODER]:.0f} s")


def _methods_per_seed(settings: QualitySettings) -> int:
    return 4 + settings.merchants + 2 + len(settings.epsilons) + int(settings.bi_encoder)


def run_quality(settings: QualitySettings, *, work: Path, out: Any) -> dict[str, Any]:
    per_seed = _methods_per_seed(settings)
    seeds: list[SeedScores] = []
    with progress(out) as bar:
        task = bar.add_task("quality", total=per_seed * len(settings.seeds))
        for seed in settings.seeds:
            seeds.append(run_seed(settings, seed, work, bar, task))
    names = list(seeds[0].scores)
    reps = {n: metric_replicates(seeds, n, replicates=settings.bootstrap) for n in names}
    alone = [n for n in names if n.startswith("alone ")]
    reps["alone: mean of merchants"] = {
        key: np.mean([reps[n][key] for n in alone], axis=0) for key in ("ndcg", "mrr", "auc")
    }
    best = max(alone, key=lambda n: reps[n]["ndcg"][0])
    reps["alone: best merchant"] = reps[best]
    random = reps["random scores"]
    rows = {
        n: {**summarise_method(r, random),
            "seconds": float(np.nanmean([s.seconds.get(n, math.nan) for s in seeds])),
        "seeds": sum(n in s.scores for s in seeds) or len(seeds)}
        for n, r in reps.items()
    }  # fmt: skip
    reference = f"federated DP ε={REFERENCE_EPSILON:g}"
    against = [
        "character TF-IDF (query vs title)", "BM25 (query vs title)",
        "zero-shot bi-encoder (MiniLM cosine)", "alone: mean of merchants",
        "alone: best merchant", "centralised, non-private",
    ]  # fmt: skip
    comparisons = {}
    if reference in reps:
        comparisons = {b: paired(reps[reference], reps[b]) for b in against if b in reps}
    bi_encoder = {}
    if BI_ENCODER in reps:
        bi_encoder = {b: paired(reps[BI_ENCODER], reps[b]) for b in BI_ENCODER_AGAINST if b in reps}
    return {"rows": rows, "best_merchant": best, "reference": reference,
            "comparisons": comparisons, "bi_encoder_comparisons": bi_encoder,
            "validation": {"queries": [int(s.validation["query_id"].nunique()) for s in seeds],
                           "rows": [len(s.validation) for s in seeds]}}  # fmt: skip


# --------------------------------------------------------------------------- output


def _ci(cell: dict[str, Any], digits: int = 3) -> str:
    lo, hi = cell["ci"]
    return f"{cell['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def results_table(result: dict[str, Any]) -> Any:
    rows = [
        [name, _ci(r["ndcg"]), _ci(r["lift"]), _ci(r["mrr"]), _ci(r["auc"]), fmt(r["seconds"], 1)]
        for name, r in result["rows"].items()
    ]
    return table(
        "quality on the pooled validation shard (mean over seeds, 95% bootstrap CI)",
        ["run", f"NDCG@{K}", "lift over random", f"MRR@{K}", "AUC", "s"],
        rows,
    )


def markdown_table(result: dict[str, Any]) -> str:
    """The results as the Markdown table BENCHMARKS.md quotes."""
    lines = [
        f"| run | NDCG@{K} | lift over random | MRR@{K} | AUC | seeds | s per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        cells = [_ci(r[key]) for key in ("ndcg", "lift", "mrr", "auc")]
        seconds = "–" if math.isnan(r["seconds"]) else f"{r['seconds']:.0f}"
        lines.append(f"| {name} | {' | '.join(cells)} | {r.get('seeds', '')} | {seconds} |")
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    comp, rows, ref = result["comparisons"], result["rows"], result["reference"]
    if not comp:
        return []
    out = []
    for base in ("character TF-IDF (query vs title)", "BM25 (query vs title)",
                 "zero-shot bi-encoder (MiniLM cosine)", "alone: mean of merchants",
                 "alone: best merchant"):  # fmt: skip
        d = comp.get(base)
        if d is None:
            continue
        clear = d["ndcg"]["ci"][0] > 0 and d["auc"]["ci"][0] > 0
        out.append((f"{ref} beats {base} (CI of ΔNDCG and ΔAUC > 0)", clear,
                    f"ΔNDCG {_ci(d['ndcg'], 4)}, ΔAUC {_ci(d['auc'], 4)}"))  # fmt: skip
    central = rows["centralised, non-private"]["lift"]["mean"]
    fraction = rows[ref]["lift"]["mean"] / central if central > 0 else math.nan
    out.append((f"{ref} lift ≥ {TARGET_CENTRALISED_FRACTION}× centralised non-private lift",
                fraction >= TARGET_CENTRALISED_FRACTION, f"{fraction:.3f}×"))  # fmt: skip
    return out


def learning_curves(work: Path) -> dict[str, list[dict[str, float]]]:
    """Per federated run folder: NDCG@10 and AUC of the global ranker after each round."""
    curves: dict[str, list[dict[str, float]]] = {}
    for run in sorted(work.glob("run-seed*")):
        path = run / "metrics.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            curves[run.name] = [
                {"round": r["round"], "ndcg": r[f"ndcg@{K}"], "auc": r["auc"]}
                for r in rows if "round" in r and f"ndcg@{K}" in r
            ]  # fmt: skip
    return curves


def plot_learning_curves(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name, points in curves.items():
        rounds = [p["round"] for p in points]
        for ax, key in zip(axes, ("ndcg", "auc"), strict=True):
            ax.plot(rounds, [p[key] for p in points], marker="o", label=name.removeprefix("run-"))
    for ax, label in zip(axes, (f"NDCG@{K}", "AUC"), strict=True):
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", default="", help="pairs CSV (e.g. the Home Depot file) or "
                        "a marketplace folder; default: the synthetic marketplace")  # fmt: skip
    parser.add_argument("--queries", type=int, default=900, help="queries sampled from --data")
    parser.add_argument("--merchants", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated split/init seeds")
    parser.add_argument("--epsilons", default="1,4,8", help="comma-separated ε")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates")
    parser.add_argument("--no-cross-encoder", action="store_true", help="skip that baseline")
    parser.add_argument("--base-model", default="minilm", help='"minilm", "tiny" or a folder')
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="300 queries, seed 0, ε=8")
    parser.add_argument("--bi-encoder", action="store_true",
                        help="also train the LoRA bi-encoder federated at ε=8 (~5 min a seed "
                        "on 2 cores)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs")
    parser.add_argument("--out", type=Path, default=default_out("quality"))
    parser.add_argument("--plot", type=Path, default=None, help="learning-curve PNG to write")
    return parser.parse_args(argv)


def _numbers(text: str, flag: str, kind: Callable[[str], Any]) -> tuple[Any, ...]:
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{flag}: not a comma-separated list of numbers: {text!r}") from None
    if not values:
        raise SystemExit(f"{flag}: give at least one value")
    return values


def settings_from_args(args: argparse.Namespace) -> QualitySettings:
    settings = QualitySettings(
        data=args.data, queries=args.queries, merchants=args.merchants,
        seeds=_numbers(args.seeds, "--seeds", int),
        epsilons=_numbers(args.epsilons, "--epsilons", float),
        bootstrap=args.bootstrap, cross_encoder=not args.no_cross_encoder,
        base_model=args.base_model, rounds=args.rounds, bi_encoder=args.bi_encoder,
    )  # fmt: skip
    if any(not e > 0 for e in settings.epsilons):
        raise SystemExit(f"--epsilons: every ε must be > 0, got {args.epsilons!r}")
    if args.quick:
        settings = dataclasses.replace(
            settings, queries=300, seeds=(0,), epsilons=(REFERENCE_EPSILON,), quick=True
        )
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    setup_environment()
    args = parse_args(argv)
    settings = settings_from_args(args)
    out, note = console(), console(stderr=True)
    note.print(f"quality benchmark: {asdict(settings)}")
    payload = result_header("quality", argv, settings=asdict(settings))
    with tempfile.TemporaryDirectory(prefix="ecrec-quality-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # Every run (and every simulated node, which inherits the environment) reads the
        # same texts' embeddings instead of re-encoding them: the benchmark's own cache.
        os.environ.setdefault(EMBEDDING_CACHE_ENV, str(work / "embeddings"))
        result = run_quality(settings, work=work, out=note)
        result["learning_curves"] = learning_curves(work)
        if args.plot:
            plot_learning_curves(result["learning_curves"], args.plot)
    payload.update(result)
    out.print(results_table(result))
    for label, ok, detail in targets(result):
        out.print(f"{verdict(ok)}  {label}: {detail}")
    for base, d in result["bi_encoder_comparisons"].items():
        out.print(f"{BI_ENCODER} vs {base}: ΔNDCG {_ci(d['ndcg'], 4)}, ΔAUC {_ci(d['auc'], 4)}")
    for label, ok, detail in targets(result):
        payload.setdefault("targets", []).append(
            {"target": label, "verdict": verdict(ok), "detail": detail}
        )
    path = write_results(args.out, payload)
    path.with_suffix(".md").write_text(markdown_table(result) + "\n", encoding="utf-8")
    print_saved(out, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
