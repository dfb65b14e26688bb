"""Speed of ecrec's moving parts, side by side in one run on the same data.

Why one run: DP overhead is a ratio, and ratios taken from different runs on a
shared machine mean little. So the three training modes (LoRA without DP,
Opacus per-sample hooks, Opacus ghost clipping) are timed interleaved
(repetition 1: no-DP, hooks, ghost; repetition 2: ...) through the product's
own ``train_local``, on one tokenised dataset, and the median is reported.

What is measured:

* training samples/s and step time per mode, and the DP / no-DP step-time
  ratio (target on CPU: best DP mode <= 1.15x). The first step of every timed
  call is left out (Opacus and allocator set-up), so the figure is the steady
  state; ``make_private`` and tokenisation are outside the timer as well;
* inference pairs/s: the model alone on pre-tokenised pairs in fp32 (and under
  bf16 autocast on CUDA), and ``Ranker.score`` end to end (tokenisation
  included; it uses bf16 autocast on CUDA by design);
* bytes a client sends per round: the adapter in float32, the SecAgg+ wire
  estimate (int64 masked values plus a weight factor, as ``ecrec.node``
  counts it) and both as a percentage of the full model (target <= 1.5 %);
* SecAgg+ against plain aggregation: two real Flower simulations of the tiny
  ranker (configs/tiny.toml, 2 merchants, 2 rounds), one with
  ``federation.secagg`` on and one off; per round the wall time, the slowest
  client's training seconds (from ``checkpoints/server_state.json``) and the
  overhead = wall - slowest client's training.

Run ``python -m benchmarks.speed --help``; ``--quick`` uses the tiny ranker and
small sizes to prove the whole path works (about 40 s, 90 s with the
simulations, on 2 busy cores).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    console,
    default_out,
    fmt,
    median,
    print_saved,
    progress,
    quiet_transformers,
    ratio,
    result_header,
    setup_environment,
    table,
    verdict,
    write_results,
)

#: Random-init BERT shapes used for speed only (no download; weights do not matter).
SHAPES: dict[str, dict[str, int]] = {
    "bert-base-shape": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    "minilm-shape": dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    ),
}
MODELS: tuple[str, ...] = ("minilm", "tiny", *SHAPES)

#: Training modes, in the order they are timed within a repetition.
MODES: tuple[tuple[str, bool, str], ...] = (
    ("lora", False, "hooks"),  # (name, dp, grad_sample_mode)
    ("dp-hooks", True, "hooks"),
    ("dp-ghost", True, "ghost"),
)

TARGET_DP_RATIO = 1.15
TARGET_BYTES_PERCENT = 1.5
NOISE_MULTIPLIER = 1.0  # the value does not change the cost of a DP step


@dataclass(frozen=True)
class SpeedSettings:
    """Sizes of one speed run (all of it goes into the results file)."""

    model: str = "minilm"
    device: str = "cpu"
    batch: int = 32
    length: int = 64
    steps: int = 8  # timed optimizer steps per repetition (the first is left out)
    repeats: int = 3
    warmup_steps: int = 3
    data_batches: int = 8  # dataset = batch * data_batches rows (sample rate 1/8)
    score_pairs: int = 512
    score_batch: int = 64
    simulations: bool = True
    sim_merchants: int = 2
    sim_rounds: int = 2
    tokenizer: str = ""  # a tokenizer folder when the bundled MiniLM package is absent
    quick: bool = False


QUICK = dict(
    model="tiny",
    batch=16,
    length=32,
    steps=4,
    repeats=2,
    warmup_steps=2,
    data_batches=4,
    score_pairs=128,
    score_batch=64,
)


# --------------------------------------------------------------------------- #
# Model and data
# --------------------------------------------------------------------------- #


def tokenizer_dir(explicit: str = "") -> Path:
    """The MiniLM tokenizer folder: an explicit one, else the bundled model's."""
    if explicit:
        return Path(explicit)
    from ecrec.model.ranker import minilm_path

    return minilm_path()


def shaped_model_dir(shape: str, *, tokenizer: Path, root: Path, max_length: int) -> Path:
    """Save a random-init BERT of a named shape plus the MiniLM tokenizer to a folder.

    ``build_ranker`` loads any local model folder, so going through disk keeps
    the benchmark on the product's own loading and LoRA code path.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = root / shape
    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        max_position_embeddings=max(512, max_length),
        num_labels=1,
        **SHAPES[shape],
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with quiet_transformers():
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder


def build_bench_ranker(
    model: str,
    *,
    device: str,
    max_length: int,
    workdir: Path,
    tokenizer: str = "",
    ffa: bool = False,
) -> Any:
    """A LoRA ranker for ``model`` ("minilm", "tiny" or a random-init shape)."""
    from ecrec.model.ranker import RankerConfig, build_ranker

    if model in SHAPES:
        base = str(
            shaped_model_dir(
                model, tokenizer=tokenizer_dir(tokenizer), root=workdir, max_length=max_length
            )
        )
    else:
        base = model
    return build_ranker(
        RankerConfig(
            architecture="cross-encoder", base_model=base, max_length=max_length, ffa=ffa, seed=0
        ),
        device=device,
    )


def make_frame(rows: int, *, seed: int = 0) -> Any:
    """``rows`` impressions from the synthetic marketplace (sampled with replacement)."""
    from ecrec.data.synth import SynthConfig, synthesize

    market = synthesize(
        SynthConfig(
            merchants=2,
            queries_per_merchant=max(8, rows // 10),
            candidates_per_query=10,
            validation_queries=0,
            seed=seed,
        )
    )
    import pandas as pd

    pooled = pd.concat(list(market.merchants.values()), ignore_index=True)
    return pooled.sample(n=rows, replace=len(pooled) < rows, random_state=seed).reset_index(
        drop=True
    )


# --------------------------------------------------------------------------- #
# Timing helpers
# --------------------------------------------------------------------------- #


def synchronize(device: str) -> None:
    """Wait for queued CUDA work, so the wall clock covers it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@contextlib.contextmanager
def cuda_peak(device: str, sink: dict[str, float]) -> Iterator[None]:
    """Record ``torch.cuda.max_memory_allocated`` (MiB) over the block into ``sink``."""
    if not device.startswith("cuda"):
        yield
        return
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
        sink["peak_mib"] = max(sink.get("peak_mib", 0.0), peak)


def max_rss_mib() -> float:
    """This process's peak resident memory so far (a high-water mark)."""
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (2**20 if sys.platform == "darwin" else 2**10)


# --------------------------------------------------------------------------- #
# Training
# --------------------------------------------------------------------------- #


def _train_once(
    ranker: Any,
    frame: Any,
    initial: dict[str, Any],
    *,
    dp: bool,
    mode: str,
    steps: int,
    settings: SpeedSettings,
    seed: int,
) -> dict[str, float]:
    """One ``train_local`` call; steady-state time from per-step timestamps."""
    from ecrec.train.local import TrainConfig, train_local

    ranker.load_adapter_state(initial)
    stamps: list[float] = []
    config = TrainConfig(
        dp=dp,
        grad_sample_mode=mode,  # type: ignore[arg-type]
        local_steps=steps,
        batch_size=settings.batch,
        learning_rate=1e-3,
        device=settings.device,
        seed=seed,
    )

    def on_step(_step: int, _total: int, _loss: float) -> None:
        # train_local reads the loss with float(), which waits for CUDA.
        stamps.append(time.perf_counter())

    result = train_local(
        ranker,
        frame,
        config=config,
        noise_multiplier=NOISE_MULTIPLIER if dp else None,
        on_step=on_step,
    )
    if len(stamps) >= 2:
        span = stamps[-1] - stamps[0]
        timed_steps = len(stamps) - 1
    else:  # a single step: nothing to leave out
        span, timed_steps = result.seconds, max(1, len(stamps))
    step_s = span / timed_steps
    return {
        "step_seconds": step_s,
        "samples_per_second": settings.batch / step_s,
        "call_seconds": result.seconds,
        "call_samples_per_second": result.samples_per_second,
    }


def bench_training(
    ranker: Any, frame: Any, settings: SpeedSettings, bar: Any
) -> dict[str, dict[str, Any]]:
    """Interleaved repetitions of the three modes; medians per mode."""
    initial = ranker.adapter_state()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in MODES}
    peaks: dict[str, dict[str, float]] = {name: {} for name, _, _ in MODES}
    rss: dict[str, float] = {}
    task = bar.add_task("training (warm-up + repeats)", total=len(MODES) * (settings.repeats + 1))
    for _name, dp, mode in MODES:  # warm-up: kernels, allocator, Opacus imports
        _train_once(
            ranker,
            frame,
            initial,
            dp=dp,
            mode=mode,
            steps=settings.warmup_steps,
            settings=settings,
            seed=0,
        )
        bar.advance(task)
    for rep in range(settings.repeats):
        for name, dp, mode in MODES:
            before = max_rss_mib()
            with cuda_peak(settings.device, peaks[name]):
                runs[name].append(
                    _train_once(
                        ranker,
                        frame,
                        initial,
                        dp=dp,
                        mode=mode,
                        steps=settings.steps,
                        settings=settings,
                        seed=rep + 1,
                    )
                )
            rss[name] = max(rss.get(name, 0.0), max_rss_mib() - before)
            bar.advance(task)
    ranker.load_adapter_state(initial)
    out: dict[str, dict[str, Any]] = {}
    for name, dp, mode in MODES:
        step_s = median(r["step_seconds"] for r in runs[name])
        out[name] = {
            "dp": dp,
            "grad_sample_mode": mode if dp else None,
            "samples_per_second": settings.batch / step_s,
            "step_ms": 1000 * step_s,
            "step_ms_each": [1000 * r["step_seconds"] for r in runs[name]],
            "peak_memory_mib": peaks[name].get("peak_mib"),
            "rss_growth_mib": rss.get(name) if not settings.device.startswith("cuda") else None,
        }
    base = out["lora"]["step_ms"]
    for name in ("dp-hooks", "dp-ghost"):
        out[name]["step_ratio_vs_lora"] = ratio(out[name]["step_ms"], base)
    return out


def dp_summary(training: dict[str, dict[str, Any]], device: str) -> dict[str, Any]:
    """The best DP mode and its ratio, with the CPU target verdict."""
    best = min(("dp-hooks", "dp-ghost"), key=lambda n: training[n]["step_ms"])
    best_ratio = training[best]["step_ratio_vs_lora"]
    on_cpu = not device.startswith("cuda")
    return {
        "best_dp_mode": best,
        "best_dp_step_ratio": best_ratio,
        "target_ratio": TARGET_DP_RATIO,
        "target_applies": on_cpu,
        "verdict": verdict(best_ratio <= TARGET_DP_RATIO)
        if on_cpu and math.isfinite(best_ratio)
        else "n/a",
    }


# --------------------------------------------------------------------------- #
# Inference
# --------------------------------------------------------------------------- #


def _forward_seconds(
    ranker: Any, batches: list[dict[str, Any]], *, device: str, bf16: bool
) -> float:
    import torch

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    synchronize(device)
    started = time.perf_counter()
    with torch.inference_mode(), autocast:
        for enc in batches:
            ranker.logits(**enc)
    synchronize(device)
    return time.perf_counter() - started


def bench_inference(ranker: Any, frame: Any, settings: SpeedSettings) -> dict[str, Any]:
    """Pairs/s for the model alone (fp32, and bf16 on CUDA) and for ``Ranker.score``."""
    from ecrec.data.schema import ranker_documents

    queries = frame["query"].astype(str).tolist()
    docs = ranker_documents(frame)
    reps = max(1, math.ceil(settings.score_pairs / len(queries)))
    queries, docs = (queries * reps)[: settings.score_pairs], (docs * reps)[: settings.score_pairs]
    n = len(queries)
    device = settings.device
    batches = []
    for start in range(0, n, settings.score_batch):
        enc = ranker.encode(
            queries[start : start + settings.score_batch],
            docs[start : start + settings.score_batch],
        )
        batches.append({k: v.to(device) for k, v in enc.items()})
    was_training = ranker.model.training
    ranker.model.eval()
    precisions = ["fp32", "bf16"] if device.startswith("cuda") else ["fp32"]
    out: dict[str, Any] = {"pairs": n, "batch": settings.score_batch}
    try:
        for precision in precisions:
            bf16 = precision == "bf16"
            _forward_seconds(ranker, batches[:2], device=device, bf16=bf16)  # warm-up
            peak: dict[str, float] = {}
            with cuda_peak(device, peak):
                times = [
                    _forward_seconds(ranker, batches, device=device, bf16=bf16)
                    for _ in range(settings.repeats)
                ]
            out[f"model_{precision}_pairs_per_second"] = n / median(times)
            out[f"model_{precision}_peak_memory_mib"] = peak.get("peak_mib")
    finally:
        ranker.model.train(was_training)
    ranker.score(queries[: settings.score_batch], docs[: settings.score_batch])  # warm-up
    times = []
    for _ in range(settings.repeats):
        synchronize(device)
        started = time.perf_counter()
        ranker.score(queries, docs, batch_size=settings.score_batch)
        times.append(time.perf_counter() - started)
    out["score_end_to_end_pairs_per_second"] = n / median(times)
    out["score_end_to_end_precision"] = "bf16-autocast" if device.startswith("cuda") else "fp32"
    return out


# --------------------------------------------------------------------------- #
# Bytes on the wire
# --------------------------------------------------------------------------- #


def bench_bytes(ranker: Any) -> dict[str, Any]:
    """What one client sends per round, against the full model it would otherwise ship."""
    adapter = ranker.adapter_nbytes()
    # ecrec.node counts SecAgg+ uploads as int64 masked values plus one weight factor.
    secagg = adapter * 2 + 8
    full = ranker.full_model_nbytes()
    params = sum(a.size for a in ranker.adapter_state().values())
    return {
        "adapter_parameters": int(params),
        "adapter_bytes": adapter,
        "secagg_upload_bytes": secagg,
        "download_bytes": adapter,
        "full_model_bytes": full,
        "adapter_percent_of_full": 100 * adapter / full,
        "secagg_percent_of_full": 100 * secagg / full,
        "target_percent": TARGET_BYTES_PERCENT,
        "verdict": verdict(100 * secagg / full <= TARGET_BYTES_PERCENT),
        "note": "SecAgg+ key agreement and share messages (a few hundred bytes per "
        "neighbour) are not counted",
    }


# --------------------------------------------------------------------------- #
# SecAgg+ vs plain aggregation (real Flower simulations)
# --------------------------------------------------------------------------- #


def simulation_config(*, merchants: int, rounds: int, secagg: bool) -> Any:
    """configs/tiny.toml with the given size; reports off so rounds time the protocol."""
    from ecrec.config import load_config

    config = load_config(REPO_ROOT / "configs" / "tiny.toml")
    config = config.replace("data", merchants=merchants)
    config = config.replace(
        "federation",
        rounds=rounds,
        secagg=secagg,
        min_clients=merchants,
        min_trainers=min(3, merchants),
    )
    return config.replace("report", audit=False, explain=False, html=False)


def round_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per round: wall seconds, clients' training seconds, overhead = wall - slowest client.

    metrics.jsonl has the wall time; each node's ``train_seconds`` is in its own journal
    (a simulation keeps every node's journal in the run folder; they never reach the server).
    """
    import json

    from ecrec.runfolder import RunFolder

    run = RunFolder(run_dir)
    reports: dict[str, list[dict[str, Any]]] = {}
    for journal in sorted((run_dir / "journals").glob("*.jsonl")):
        for line in journal.read_text("utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("event") == "trained":
                reports.setdefault(str(record["round"]), []).append(record)
    rows = []
    for record in run.read_metrics():
        server_round = int(record["round"])
        if server_round == 0:  # the initial evaluation, no training
            continue
        train = [float(r.get("train_seconds", 0.0)) for r in reports.get(str(server_round), [])]
        wall = float(record.get("wall_seconds", math.nan))
        slowest = max(train) if train else math.nan
        rows.append(
            {
                "round": server_round,
                "wall_seconds": wall,
                "client_train_seconds": train,
                "max_client_train_seconds": slowest,
                "overhead_seconds": wall - slowest,
                "bytes_up": record.get("bytes_up"),
                "bytes_down": record.get("bytes_down"),
            }
        )
    return rows


def evaluation_seconds(run_dir: Path, config: Any, repeats: int = 3) -> float:
    """How long the server's per-round evaluation takes (it is inside the round wall time)."""
    from ecrec.data.io import load_data_dir
    from ecrec.evaluation import PooledEvaluator
    from ecrec.model.ranker import build_ranker

    _, validation = load_data_dir(run_dir / "data")
    evaluator = PooledEvaluator(
        ranker=build_ranker(config.model, device="cpu"),
        validation=validation,
        config=config.evaluation,
    )
    evaluator.evaluate()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluator.evaluate()
        times.append(time.perf_counter() - started)
    return median(times)


def bench_simulations(settings: SpeedSettings, workdir: Path, out: Any) -> dict[str, Any]:
    """Two tiny-ranker federations, SecAgg+ on and off, on this machine's CPUs.

    ``simulate`` draws its own progress bar, so this one only prints phases.
    """
    from ecrec.federation.simulation import simulate
    from ecrec.node.policy import NodePolicy

    results: dict[str, Any] = {}
    for secagg in (True, False):
        name = "secagg" if secagg else "plain"
        out.print(f"[bold]simulation with SecAgg+ {'on' if secagg else 'off'}[/bold]")
        config = simulation_config(
            merchants=settings.sim_merchants, rounds=settings.sim_rounds, secagg=secagg
        )
        run_dir = workdir / f"sim-{name}"
        policy = NodePolicy(require_secagg=secagg, min_trainers=min(3, settings.sim_merchants))
        summary = simulate(config, out=run_dir, console=out, node_policy=policy)
        rows = round_rows(run_dir)
        # Round 1 also pays for starting Ray workers and importing torch in them.
        steady = [r for r in rows if r["round"] >= 2] or rows
        results[name] = {
            "total_seconds": summary.seconds,
            "rounds": rows,
            "steady_rounds": [r["round"] for r in steady],
            "median_round_wall_seconds": median(r["wall_seconds"] for r in steady),
            "median_overhead_seconds": median(r["overhead_seconds"] for r in steady),
            "median_max_client_train_seconds": median(
                r["max_client_train_seconds"] for r in steady
            ),
        }
    config = simulation_config(
        merchants=settings.sim_merchants, rounds=settings.sim_rounds, secagg=True
    )
    eval_s = evaluation_seconds(workdir / "sim-secagg", config)
    on, off = results["secagg"], results["plain"]
    results["comparison"] = {
        "secagg_minus_plain_round_seconds": on["median_round_wall_seconds"]
        - off["median_round_wall_seconds"],
        "secagg_over_plain_round_ratio": ratio(
            on["median_round_wall_seconds"], off["median_round_wall_seconds"]
        ),
        "server_evaluation_seconds": eval_s,
        "note": "medians over rounds >= 2 (round 1 also starts Ray workers); "
        "overhead = round wall - slowest client's train_seconds; it includes "
        "sending the model, building each node's ranker (a ClientApp starts per message), "
        "SecAgg+ stages, aggregation and the server's evaluation (measured separately "
        "as server_evaluation_seconds)",
        "config": {
            "base": "configs/tiny.toml",
            "merchants": settings.sim_merchants,
            "rounds": settings.sim_rounds,
            "reports": "audit, explain and html off",
        },
    }
    return results


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny ranker, small sizes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", choices=MODELS, default=None, help="default minilm (tiny)")
    parser.add_argument("--batch", type=int, default=None, help="training batch size")
    parser.add_argument("--length", type=int, default=None, help="tokens per pair")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repetition")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per mode")
    parser.add_argument("--score-pairs", type=int, default=None, help="pairs for inference")
    parser.add_argument("--score-batch", type=int, default=None, help="inference batch size")
    parser.add_argument(
        "--no-simulations", action="store_true", help="skip the SecAgg+ on/off simulations"
    )
    parser.add_argument(
        "--sim-rounds", type=int, default=2, help="rounds per simulation (round 1 is cold)"
    )
    parser.add_argument("--tokenizer", default="", help="tokenizer folder for random shapes")
    parser.add_argument("--out", type=Path, default=default_out("speed"))
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> SpeedSettings:
    base: dict[str, Any] = dict(QUICK) if args.quick else {}
    for key, value in (
        ("model", args.model),
        ("batch", args.batch),
        ("length", args.length),
        ("steps", args.steps),
        ("repeats", args.repeats),
        ("score_pairs", args.score_pairs),
        ("score_batch", args.score_batch),
    ):
        if value is not None:
            base[key] = value
    return SpeedSettings(
        **base,
        device=args.device,
        simulations=not args.no_simulations,
        sim_rounds=args.sim_rounds,
        tokenizer=args.tokenizer,
        quick=args.quick,
    )


def run_speed(
    settings: SpeedSettings,
    *,
    workdir: Path,
    out: Any,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything but the simulations for one model (``benchmarks.gpu`` reuses this)."""
    import torch

    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    rows = settings.batch * settings.data_batches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranker = build_bench_ranker(
            settings.model,
            device=settings.device,
            max_length=settings.length,
            workdir=workdir,
            tokenizer=settings.tokenizer,
        )
    frame = make_frame(rows)
    result: dict[str, Any] = {"dataset_rows": rows}
    with progress(out) as bar:
        if on_phase:
            on_phase("training")
        result["training"] = bench_training(ranker, frame, settings, bar)
        task = bar.add_task("inference", total=1)
        result["inference"] = bench_inference(ranker, frame, settings)
        bar.advance(task)
    result["dp"] = dp_summary(result["training"], settings.device)
    result["bytes"] = bench_bytes(ranker)
    if not settings.device.startswith("cuda"):
        result["memory_note"] = (
            "CPU: no per-mode peak. ru_maxrss is a process-wide high-water mark, so "
            "rss_growth_mib is only how much a mode raised it (0 when an earlier mode "
            f"already needed as much); process peak RSS {max_rss_mib():.0f} MiB"
        )
    result["ranker"] = ranker
    return result


def _n(value: Any, digits: int = 1) -> str:
    return fmt(value, digits)


def training_table(settings: SpeedSettings, result: dict[str, Any]) -> Any:
    training = result["training"]
    cuda = settings.device.startswith("cuda")
    rows = []
    for name, _, _ in MODES:
        entry = training[name]
        memory = entry["peak_memory_mib"] if cuda else entry["rss_growth_mib"]
        rows.append(
            [
                name,
                _n(entry["samples_per_second"]),
                _n(entry["step_ms"]),
                _n(entry.get("step_ratio_vs_lora", 1.0), 3),
                _n(memory, 0),
            ]
        )
    dp = result["dp"]
    target = (
        f"target: best DP mode <= {TARGET_DP_RATIO}x the no-DP step on CPU -> "
        f"{dp['best_dp_mode']} {_n(dp['best_dp_step_ratio'], 3)}x {dp['verdict']}"
    )
    if not cuda:
        target += "\nmemory: RSS growth is a process high-water mark (see memory_note)"
    return table(
        f"training: {settings.model} on {settings.device}, batch {settings.batch}, "
        f"length {settings.length}, median of {settings.repeats}",
        ["mode", "samples/s", "step ms", "x lora", "peak MiB" if cuda else "RSS growth MiB"],
        rows,
        caption=target,
    )


def other_tables(settings: SpeedSettings, result: dict[str, Any]) -> list[Any]:
    inf = result["inference"]
    rows = [["model fp32, pre-tokenised", _n(inf["model_fp32_pairs_per_second"])]]
    if "model_bf16_pairs_per_second" in inf:
        rows.append(["model bf16 autocast, pre-tokenised", _n(inf["model_bf16_pairs_per_second"])])
    rows.append(
        [
            f"Ranker.score end to end ({inf['score_end_to_end_precision']})",
            _n(inf["score_end_to_end_pairs_per_second"]),
        ]
    )
    b = result["bytes"]
    return [
        table(f"inference: {inf['pairs']} pairs, batch {inf['batch']}", ["path", "pairs/s"], rows),
        table(
            "bytes per client per round",
            ["what", "bytes", "% of full model"],
            [
                [
                    "adapter float32 (download)",
                    fmt(b["adapter_bytes"]),
                    _n(b["adapter_percent_of_full"], 3),
                ],
                [
                    "SecAgg+ upload (int64 masked)",
                    fmt(b["secagg_upload_bytes"]),
                    _n(b["secagg_percent_of_full"], 3),
                ],
                ["full model float32", fmt(b["full_model_bytes"]), "100"],
            ],
            caption=f"target: SecAgg+ upload <= {TARGET_BYTES_PERCENT}% of the full model -> "
            f"{b['verdict']}",
        ),
    ]


def simulation_table(sims: dict[str, Any]) -> Any:
    rows = []
    for name in ("secagg", "plain"):
        for r in sims[name]["rounds"]:
            rows.append(
                [
                    f"{name} round {r['round']}" + (" (cold)" if r["round"] == 1 else ""),
                    _n(r["wall_seconds"], 2),
                    _n(r["max_client_train_seconds"], 2),
                    _n(r["overhead_seconds"], 2),
                    fmt(r["bytes_up"]),
                ]
            )
    comp = sims["comparison"]
    caption = (
        f"steady rounds (2+): SecAgg+ {_n(comp['secagg_minus_plain_round_seconds'], 2)} s/round "
        f"more than plain ({_n(comp['secagg_over_plain_round_ratio'], 2)}x); server evaluation "
        f"takes {_n(comp['server_evaluation_seconds'], 2)} s of each round\n"
        "round 1 also starts the Ray workers and imports torch in them"
    )
    return table(
        f"simulation rounds: tiny ranker, {comp['config']['merchants']} merchants",
        ["round", "wall s", "max client train s", "overhead s", "bytes up"],
        rows,
        caption=caption,
    )


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    settings = settings_from_args(args)
    out, note = console(), console(stderr=True)
    note.print(f"speed benchmark: {asdict(settings)}")
    payload = result_header("speed", argv, settings=asdict(settings))
    with tempfile.TemporaryDirectory(prefix="ecrec-speed-") as tmp:
        workdir = Path(tmp)
        result = run_speed(settings, workdir=workdir, out=note)
        result.pop("ranker")
        payload.update(result)
        out.print(training_table(settings, result))
        for t in other_tables(settings, result):
            out.print(t)
        if settings.simulations:
            payload["simulation"] = bench_simulations(settings, workdir, note)
            out.print(simulation_table(payload["simulation"]))
    path = write_results(args.out, payload)
    print_saved(out, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
