"""Ranking quality of federated DP fine-tuning against the baselines that matter.

The question a merchant asks is: is joining the federation under DP better
than the ranker I could get alone, and how much does privacy cost against
pooling everyone's data (which nobody may do)? So on one marketplace, with the
same seeds and the same number of samples seen, this scores on the pooled
validation shard (NDCG@10, MRR@10, AUC):

a. zero-shot MiniLM as a bi-encoder (cosine of attention-mask-aware mean-pooled
   query and product embeddings: how all-MiniLM-L6-v2 is meant to be used);
b. the untrained cross-encoder (fresh LoRA, random head);
c. each merchant alone under DP at ε=8, with exactly the rounds × steps it
   would take in the federation (and the mean over merchants);
d. centralised non-private LoRA on all merchants' rows pooled, for
   rounds × (sum of merchants' steps) at the same batch size;
e. federated non-private;
f. federated with DP at each ε of ``--epsilons``;
g. FFA-LoRA against LoRA under DP at ε=1 and ε=8.

Federated runs use an in-process FedAvg loop: each round every merchant starts
from the global adapter, runs ``train_local`` exactly as ``ecrec.node`` does
(with a distinct, repeatable sampling/noise seed per merchant and round, where
real nodes draw fresh entropy), and the new global adapter is the
example-weighted mean of their adapter states. That mean is what SecAgg+
computes; the federation tests prove the SecAgg+ aggregate equals it within
1e-4. DP noise per merchant is calibrated as the node does it:
σ = noise_multiplier_for_target(ε, δ=1e-5, q = batch / rows, steps = rounds × steps).

Targets printed with PASS/MISS: federated DP at ε=8 reaches at least 0.95× the
centralised non-private NDCG@10, beats the mean local-only merchant, and beats
the zero-shot bi-encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    console,
    default_out,
    fmt,
    print_saved,
    progress,
    quiet_transformers,
    result_header,
    setup_environment,
    table,
    verdict,
    write_results,
)

TARGET_CENTRALISED_FRACTION = 0.95
REFERENCE_EPSILON = 8.0
FFA_EPSILONS: tuple[float, ...] = (1.0, 8.0)


@dataclass(frozen=True)
class QualitySettings:
    """Everything that decides the numbers (all of it goes into the results file)."""

    model: str = "minilm"
    data: str = ""
    merchants: int = 3
    queries_per_merchant: int = 40
    candidates_per_query: int = 10
    validation_queries: int = 40
    seed: int = 0
    rounds: int = 3
    steps: int = 12
    batch: int = 32
    length: int = 64
    learning_rate: float = 3e-3
    grad_sample_mode: str = "hooks"
    delta: float = 1e-5
    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    k: int = 10
    device: str = "cpu"
    bi_encoder_length: int = 128
    quick: bool = False


QUICK: dict[str, Any] = dict(
    model="tiny",
    merchants=3,
    queries_per_merchant=12,
    candidates_per_query=6,
    validation_queries=10,
    rounds=2,
    steps=2,
    batch=16,
    length=32,
)


# --------------------------------------------------------------------------- #
# Data and scoring
# --------------------------------------------------------------------------- #


def load_marketplace(settings: QualitySettings) -> tuple[dict[str, Any], Any]:
    """Merchants' frames and the pooled validation shard (synthetic or a data folder)."""
    if settings.data:
        from ecrec.data.io import load_data_dir

        return load_data_dir(settings.data)
    from ecrec.data.synth import SynthConfig, synthesize

    market = synthesize(
        SynthConfig(
            merchants=settings.merchants,
            queries_per_merchant=settings.queries_per_merchant,
            candidates_per_query=settings.candidates_per_query,
            validation_queries=settings.validation_queries,
            seed=settings.seed,
        )
    )
    return dict(market.merchants), market.validation


class Evaluator:
    """Scores go in, NDCG@k / MRR@k / AUC on the pooled validation shard come out."""

    def __init__(self, validation: Any, *, k: int) -> None:
        from ecrec.data.schema import ranker_documents

        self.frame = validation.reset_index(drop=True)
        self.k = k
        self.queries = self.frame["query"].astype(str).tolist()
        self.documents = ranker_documents(self.frame)
        self.relevance = (
            self.frame["relevance"].to_numpy() if "relevance" in self.frame.columns else None
        )

    def metrics(self, scores: np.ndarray) -> dict[str, float]:
        from ecrec.metrics.ranking import ranking_metrics

        m = ranking_metrics(
            query_ids=self.frame["query_id"].to_numpy(),
            labels=self.frame["label"].to_numpy(),
            scores=np.asarray(scores, dtype=np.float64),
            relevance=self.relevance,
            k=self.k,
        )
        return {
            f"ndcg@{self.k}": m[f"ndcg@{self.k}"],
            f"mrr@{self.k}": m[f"mrr@{self.k}"],
            "auc": m["auc"],
        }

    def score_ranker(self, ranker: Any) -> dict[str, float]:
        return self.metrics(ranker.score(self.queries, self.documents, batch_size=64))


def mean_pooled(model: Any, tokenizer: Any, texts: list[str], *, length: int) -> np.ndarray:
    """Attention-mask-aware mean of the last hidden states (padding excluded)."""
    import torch

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            enc = tokenizer(
                texts[start : start + 64],
                padding=True,
                truncation=True,
                max_length=length,
                return_tensors="pt",
            ).to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(pooled.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def bi_encoder_scores(evaluator: Evaluator, *, length: int, device: str) -> np.ndarray:
    """Zero-shot all-MiniLM-L6-v2: cosine(mean-pool(query), mean-pool(product))."""
    from transformers import AutoModel, AutoTokenizer

    from ecrec.model.ranker import minilm_path

    path = minilm_path()
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    unique_queries = sorted(set(evaluator.queries))
    q_emb = mean_pooled(model, tokenizer, unique_queries, length=length)
    q_index = {q: i for i, q in enumerate(unique_queries)}
    d_emb = mean_pooled(model, tokenizer, evaluator.documents, length=length)
    q = q_emb[[q_index[x] for x in evaluator.queries]]
    q /= np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
    d = d_emb / np.linalg.norm(d_emb, axis=1, keepdims=True).clip(min=1e-12)
    return np.sum(q * d, axis=1)


# --------------------------------------------------------------------------- #
# Training recipes
# --------------------------------------------------------------------------- #


@dataclass
class RunOutcome:
    """One trained (or untrained) model's scores and what it took to get there."""

    name: str
    group: str
    metrics: dict[str, float]
    seconds: float
    samples: float = 0.0
    steps: int = 0
    dp: bool = False
    epsilon: float | None = None
    ffa: bool = False
    sigma: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


class Lab:
    """Holds the merchants, evaluator and rankers; every run starts from the same init."""

    def __init__(
        self, settings: QualitySettings, merchants: dict[str, Any], validation: Any
    ) -> None:
        self.settings = settings
        self.merchants = merchants
        self.evaluator = Evaluator(validation, k=settings.k)
        self._rankers: dict[bool, tuple[Any, dict[str, np.ndarray]]] = {}

    def ranker(self, *, ffa: bool) -> tuple[Any, dict[str, np.ndarray]]:
        """The (LoRA or FFA-LoRA) ranker and its initial adapter state, built once."""
        if ffa not in self._rankers:
            from ecrec.model.ranker import RankerConfig, build_ranker

            config = RankerConfig(
                base_model=self.settings.model, max_length=self.settings.length, ffa=ffa, seed=0
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ranker = build_ranker(config, device=self.settings.device)
            self._rankers[ffa] = (ranker, ranker.adapter_state())
        return self._rankers[ffa]

    def train_config(self, *, dp: bool, steps: int) -> Any:
        from ecrec.train.local import TrainConfig

        s = self.settings
        return TrainConfig(
            local_steps=steps,
            batch_size=s.batch,
            learning_rate=s.learning_rate,
            dp=dp,
            grad_sample_mode=s.grad_sample_mode,  # type: ignore[arg-type]
            device=s.device,
            seed=s.seed,
        )

    def sigma(self, rows: int, epsilon: float) -> float:
        """The node's calibration: spend ε over all planned rounds × steps."""
        from ecrec.privacy.accounting import noise_multiplier_for_target
        from ecrec.train.local import plan_round

        s = self.settings
        q, steps = plan_round(rows, self.train_config(dp=True, steps=s.steps))
        return noise_multiplier_for_target(
            target_epsilon=epsilon, delta=s.delta, sample_rate=q, steps=steps * s.rounds
        )

    def federate(
        self,
        merchants: Mapping[str, Any],
        *,
        epsilon: float | None,
        ffa: bool = False,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """FedAvg in process: example-weighted mean of adapter states, every round.

        With one merchant this is that merchant training alone for the same
        rounds × steps (fresh optimizer each round, as on a node).
        """
        from ecrec.train.local import train_local

        s = self.settings
        ranker, initial = self.ranker(ffa=ffa)
        dp = epsilon is not None
        config = self.train_config(dp=dp, steps=s.steps)
        sigmas = {m: self.sigma(len(f), epsilon) for m, f in merchants.items()} if dp else {}
        global_state = {k: v.copy() for k, v in initial.items()}
        samples = 0.0
        losses: list[float] = []
        for server_round in range(s.rounds):
            states, weights = [], []
            for index, (merchant_id, frame) in enumerate(merchants.items()):
                ranker.load_adapter_state(global_state)
                # Repeatable, but never the same sampling/noise seed twice (as on real
                # nodes, which draw fresh entropy every round).
                round_config = dataclasses.replace(
                    config, seed=s.seed * 1_000_003 + server_round * 1009 + index
                )
                result = train_local(
                    ranker, frame, config=round_config, noise_multiplier=sigmas.get(merchant_id)
                )
                samples += result.sample_rate * result.examples * result.steps
                losses.append(result.mean_loss)
                states.append(ranker.adapter_state())
                weights.append(float(len(frame)))
            total = sum(weights)
            global_state = {
                name: (
                    sum(
                        w * st[name].astype(np.float64)
                        for w, st in zip(weights, states, strict=True)
                    )
                    / total
                ).astype(np.float32)
                for name in global_state
            }
        ranker.load_adapter_state(global_state)
        metrics = self.evaluator.score_ranker(ranker)
        ranker.load_adapter_state(initial)
        detail = {"samples": samples, "final_round_mean_loss": _mean(losses[-len(merchants) :])}
        return metrics, {"sigma": sigmas, **detail}

    def centralised(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Non-private LoRA on all merchants' rows pooled, rounds × Σ merchants' steps."""
        import pandas as pd

        from ecrec.train.local import train_local

        s = self.settings
        ranker, initial = self.ranker(ffa=False)
        pooled = pd.concat(list(self.merchants.values()), ignore_index=True)
        steps = s.rounds * s.steps * len(self.merchants)
        ranker.load_adapter_state(initial)
        result = train_local(ranker, pooled, config=self.train_config(dp=False, steps=steps))
        metrics = self.evaluator.score_ranker(ranker)
        ranker.load_adapter_state(initial)
        samples = result.sample_rate * result.examples * result.steps
        return metrics, {"samples": samples, "steps": steps, "rows": len(pooled)}


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# --------------------------------------------------------------------------- #
# The benchmark
# --------------------------------------------------------------------------- #


def plan_runs(settings: QualitySettings, merchant_ids: Sequence[str]) -> list[tuple[str, Any]]:
    """(label, spec) for every training run, in order, so the progress bar has a total."""
    runs: list[tuple[str, Any]] = [("zero-shot bi-encoder", ("bi",)), ("untrained", ("untrained",))]
    runs += [(f"local-only {m} DP ε=8", ("local", m)) for m in merchant_ids]
    runs.append(("centralised non-private", ("central",)))
    runs.append(("federated non-private", ("fed", None, False)))
    lora_eps = sorted(set(settings.epsilons) | set(FFA_EPSILONS) | {REFERENCE_EPSILON})
    runs += [(f"federated DP ε={fmt_eps(e)}", ("fed", e, False)) for e in lora_eps]
    runs += [(f"federated FFA-LoRA DP ε={fmt_eps(e)}", ("fed", e, True)) for e in FFA_EPSILONS]
    return runs


def fmt_eps(epsilon: float) -> str:
    return f"{epsilon:g}"


def run_quality(settings: QualitySettings, *, out: Any) -> dict[str, Any]:
    merchants, validation = load_marketplace(settings)
    lab = Lab(settings, merchants, validation)
    runs = plan_runs(settings, sorted(merchants))
    outcomes: list[RunOutcome] = []
    with progress(out) as bar:
        task = bar.add_task("quality runs", total=len(runs))
        for label, spec in runs:
            bar.update(task, description=label)
            started = time.perf_counter()
            kind = spec[0]
            if kind == "bi":
                metrics = lab.evaluator.metrics(
                    bi_encoder_scores(
                        lab.evaluator, length=settings.bi_encoder_length, device=settings.device
                    )
                )
                outcome = RunOutcome(label, "a", metrics, 0.0)
            elif kind == "untrained":
                ranker, _ = lab.ranker(ffa=False)
                outcome = RunOutcome(label, "b", lab.evaluator.score_ranker(ranker), 0.0)
            elif kind == "local":
                merchant_id = spec[1]
                metrics, detail = lab.federate(
                    {merchant_id: merchants[merchant_id]}, epsilon=REFERENCE_EPSILON
                )
                outcome = RunOutcome(
                    label,
                    "c",
                    metrics,
                    0.0,
                    samples=detail["samples"],
                    steps=settings.rounds * settings.steps,
                    dp=True,
                    epsilon=REFERENCE_EPSILON,
                    sigma=detail["sigma"],
                    detail={"merchant": merchant_id, "rows": len(merchants[merchant_id])},
                )
            elif kind == "central":
                metrics, detail = lab.centralised()
                outcome = RunOutcome(
                    label,
                    "d",
                    metrics,
                    0.0,
                    samples=detail["samples"],
                    steps=detail["steps"],
                    detail={"rows": detail["rows"]},
                )
            else:
                _, epsilon, ffa = spec
                metrics, detail = lab.federate(merchants, epsilon=epsilon, ffa=ffa)
                group = "g" if ffa else ("e" if epsilon is None else "f")
                outcome = RunOutcome(
                    label,
                    group,
                    metrics,
                    0.0,
                    samples=detail["samples"],
                    steps=settings.rounds * settings.steps * len(merchants),
                    dp=epsilon is not None,
                    epsilon=epsilon,
                    ffa=ffa,
                    sigma=detail["sigma"],
                )
            outcome.seconds = time.perf_counter() - started
            outcomes.append(outcome)
            bar.advance(task)
    return summarise(settings, merchants, outcomes)


def summarise(
    settings: QualitySettings, merchants: Mapping[str, Any], outcomes: list[RunOutcome]
) -> dict[str, Any]:
    """Runs, the local-only mean, and the three targets with PASS/MISS."""
    key = f"ndcg@{settings.k}"
    by_label = {o.name: o for o in outcomes}
    local = [o for o in outcomes if o.group == "c"]
    local_mean = {
        m: _mean([o.metrics[m] for o in local]) for m in (key, f"mrr@{settings.k}", "auc")
    }
    reference = by_label[f"federated DP ε={fmt_eps(REFERENCE_EPSILON)}"].metrics[key]
    central = by_label["centralised non-private"].metrics[key]
    zero_shot = by_label["zero-shot bi-encoder"].metrics[key]
    targets = [
        {
            "target": f"federated DP ε=8 {key} >= {TARGET_CENTRALISED_FRACTION} × centralised "
            "non-private",
            "value": reference,
            "threshold": TARGET_CENTRALISED_FRACTION * central,
            "verdict": verdict(reference >= TARGET_CENTRALISED_FRACTION * central),
        },
        {
            "target": f"federated DP ε=8 {key} > mean local-only (DP ε=8)",
            "value": reference,
            "threshold": local_mean[key],
            "verdict": verdict(reference > local_mean[key]),
        },
        {
            "target": f"federated DP ε=8 {key} > zero-shot bi-encoder",
            "value": reference,
            "threshold": zero_shot,
            "verdict": verdict(reference > zero_shot),
        },
    ]
    ffa_vs_lora = {
        fmt_eps(e): {
            "lora": by_label[f"federated DP ε={fmt_eps(e)}"].metrics[key],
            "ffa_lora": by_label[f"federated FFA-LoRA DP ε={fmt_eps(e)}"].metrics[key],
        }
        for e in FFA_EPSILONS
    }
    for entry in ffa_vs_lora.values():
        entry["ffa_minus_lora"] = entry["ffa_lora"] - entry["lora"]
    return {
        "ffa_vs_lora_" + key: ffa_vs_lora,
        "dataset": {
            "source": settings.data or "synthetic",
            "merchant_rows": {m: len(f) for m, f in merchants.items()},
        },
        "runs": [asdict(o) for o in outcomes],
        "local_only_mean": local_mean,
        "targets": targets,
        "method": (
            "federated runs: in-process FedAvg (example-weighted mean of adapter states each "
            "round, what SecAgg+ computes; the federation tests check SecAgg+ equals it within "
            "1e-4); each merchant runs train_local with the same TrainConfig every round, as "
            "ecrec.node does; σ per merchant = noise_multiplier_for_target(ε, δ, q=batch/rows, "
            "steps=rounds×steps); centralised = one non-private run of rounds × Σ merchants' "
            "steps on the pooled rows; all runs start from the same seeded initial adapters"
        ),
    }


def results_table(settings: QualitySettings, result: dict[str, Any]) -> Any:
    k = settings.k
    rows = []
    last_local = max((i for i, r in enumerate(result["runs"]) if r["group"] == "c"), default=-1)
    for i, run in enumerate(result["runs"]):
        sigmas = run["sigma"]
        rows.append(
            [
                f"({run['group']}) {run['name']}",
                fmt(run["metrics"][f"ndcg@{k}"]),
                fmt(run["metrics"][f"mrr@{k}"]),
                fmt(run["metrics"]["auc"]),
                fmt(round(run["samples"])) if run["samples"] else "-",
                " ".join(f"{v:.2f}" for v in sigmas.values()) if sigmas else "-",
                fmt(run["seconds"], 1),
            ]
        )
        if i == last_local:
            mean = result["local_only_mean"]
            rows.append(
                [
                    "(c) local-only mean",
                    fmt(mean[f"ndcg@{k}"]),
                    fmt(mean[f"mrr@{k}"]),
                    fmt(mean["auc"]),
                    "",
                    "",
                    "",
                ]
            )
    source = settings.data or f"synthetic, {settings.merchants} merchants, seed {settings.seed}"
    return table(
        f"quality on the pooled validation shard ({source}; {settings.model}, "
        f"{settings.rounds} rounds × {settings.steps} steps, batch {settings.batch})",
        [
            "run",
            f"NDCG@{k}",
            f"MRR@{k}",
            "AUC",
            "samples seen",
            "σ per merchant",
            "s",
        ],
        rows,
        caption="federated runs: in-process FedAvg (the example-weighted mean SecAgg+ "
        "computes; SecAgg+ = this mean within 1e-4 per the federation tests)",
    )


def targets_table(result: dict[str, Any], *, k: int) -> Any:
    ffa = result[f"ffa_vs_lora_ndcg@{k}"]
    caption = "FFA-LoRA minus LoRA NDCG@{}: {}".format(
        k, ", ".join(f"ε={e}: {v['ffa_minus_lora']:+.4f}" for e, v in ffa.items())
    )
    return table(
        "quality targets",
        ["target", "value", "threshold", "verdict"],
        [
            [t["target"], fmt(t["value"]), fmt(t["threshold"]), t["verdict"]]
            for t in result["targets"]
        ],
        caption=caption,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny ranker, tiny marketplace")
    parser.add_argument("--data", default="", help="a folder from `ecrec data synth|import`")
    parser.add_argument("--model", default=None, help="minilm (default), tiny, or a folder")
    parser.add_argument("--merchants", type=int, default=None, help="synthetic merchants")
    parser.add_argument("--epsilons", default="1,4,8", help="comma-separated ε for (f)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="local steps per round")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--length", type=int, default=None, help="tokens per pair")
    parser.add_argument("--lr", type=float, default=None, help="learning rate")
    parser.add_argument("--grad-sample-mode", choices=("hooks", "ghost"), default="hooks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=default_out("quality"))
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> QualitySettings:
    base: dict[str, Any] = dict(QUICK) if args.quick else {}
    for key, value in (
        ("model", args.model),
        ("merchants", args.merchants),
        ("rounds", args.rounds),
        ("steps", args.steps),
        ("batch", args.batch),
        ("length", args.length),
        ("learning_rate", args.lr),
    ):
        if value is not None:
            base[key] = value
    try:
        epsilons = tuple(float(x) for x in args.epsilons.split(",") if x.strip())
    except ValueError as err:
        raise SystemExit(
            f"--epsilons: not a comma-separated list of numbers: {args.epsilons!r}"
        ) from err
    if not epsilons or any(not e > 0 for e in epsilons):
        raise SystemExit(f"--epsilons: every ε must be > 0, got {args.epsilons!r}")
    return replace(
        QualitySettings(**base),
        data=args.data,
        epsilons=epsilons,
        grad_sample_mode=args.grad_sample_mode,
        seed=args.seed,
        device=args.device,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    settings = settings_from_args(args)
    out, note = console(), console(stderr=True)
    note.print(f"quality benchmark: {asdict(settings)}")
    payload = result_header("quality", argv, settings=asdict(settings))
    result = run_quality(settings, out=note)
    payload.update(result)
    out.print(results_table(settings, result))
    out.print(targets_table(result, k=settings.k))
    path = write_results(args.out, payload)
    print_saved(out, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
