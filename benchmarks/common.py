"""Shared plumbing for the benchmarks: machine facts, timing, JSON output, tables.

Only the standard library is imported at module level, so ``benchmarks.gpu``
can use this module to report missing packages on a machine that has nothing
but torch. rich is imported inside the functions that draw with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Versions worth recording next to any figure (missing ones are recorded as null).
PACKAGES: tuple[str, ...] = (
    "torch",
    "transformers",
    "peft",
    "opacus",
    "flwr",
    "numpy",
    "ecrec",
)


def setup_environment() -> None:
    """Offline and quiet, as the Makefile sets it: no hub, no telemetry, no update check."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars (weight loading, shard writing) inside the block."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def cpu_model() -> str:
    """The CPU's marketing name (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What a reader needs to judge a figure: hardware, versions, date, command line.

    ``command`` is the interpreter's own command line (``sys.orig_argv``), so a
    run can be repeated exactly; ``argv`` is what the entry point parsed (they
    differ when a test calls ``main(argv)`` in-process).
    """
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "cwd": str(Path.cwd()),
        "versions": {name: _version(name) for name in PACKAGES},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
            info["cuda_version"] = torch.version.cuda
    except ImportError:
        info["torch_version"] = None
    return info


def default_out(name: str) -> Path:
    """``benchmarks/results/<name>.json``, next to this file whatever the cwd."""
    return RESULTS_DIR / f"{name}.json"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers refuse them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_results(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as JSON atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else math.nan


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took on the wall clock, and what it returned."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when either is missing or the denominator is 0."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return numerator / denominator


def verdict(ok: bool | None) -> str:
    """PASS/MISS for a target; n/a when the figure could not be measured."""
    if ok is None:
        return "n/a"
    return "PASS" if ok else "MISS"


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: fixed digits, n/a for missing or NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def console(*, stderr: bool = False) -> Any:
    """A rich console: tables go to stdout, progress and notes to stderr."""
    from rich.console import Console

    out = Console(stderr=stderr)
    if not out.is_terminal:  # logs and CI: rich would wrap tables at 80 columns
        out = Console(stderr=stderr, width=160)
    return out


def progress(out: Any) -> Any:
    """The progress bar style every benchmark shares."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    )


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
) -> Any:
    """A rich table; the first column is left-aligned, the rest right-aligned.

    Strings are shown as given, so callers choose the precision of each figure.
    """
    from rich.table import Table

    out = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*(fmt(v) if not isinstance(v, str) else v for v in row))
    return out


def result_header(name: str, argv: Sequence[str] | None, **extra: Any) -> dict[str, Any]:
    """The common top of every results file."""
    return {"benchmark": name, "machine": machine_info(argv), **extra}


def print_saved(out: Any, path: Path) -> None:
    out.print(f"results written to [bold]{path}[/bold]")


def refuse_non_imports(parser: Any, folders: Sequence[Path] | None) -> None:
    """``--data`` folders must be ``ecrec data import`` output (they hold its manifest)."""
    for folder in folders or []:
        if not (folder / "manifest.json").is_file():
            parser.error(f"--data {folder}: no manifest.json (not an `ecrec data import` folder)")
