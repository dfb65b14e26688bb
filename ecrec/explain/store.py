"""Writing a run's explanations into its run folder (``explanations.json`` and ``explanations/``).

File I/O kept apart from computing (:mod:`ecrec.explain.run`) and drawing
(:mod:`ecrec.explain.render`); this module is due to move into the run-folder module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ecrec.explain.render import render_explanations
from ecrec.runfolder import atomic_write_bytes, atomic_write_json

EXPLANATIONS_FILE = "explanations.json"
EXPLANATIONS_DIR = "explanations"


def write_explanations(result: Mapping[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Write ``explanations.json``, HTML text plots and the global bar charts.

    Files: ``<run>/explanations.json`` (atomic); ``<run>/explanations/pair_NN_*.html``
    (one shap text plot per pair; earlier ``pair_*.html`` files are removed so the
    folder matches the JSON) and ``index.html`` with all of them;
    ``global_tokens.png`` and ``global_fields.png``. Returns the paths by role
    (``json``, ``index``, ``tokens_png``, ``fields_png``).
    """
    run_dir = Path(run_dir)
    out_dir = run_dir / EXPLANATIONS_DIR
    rendered = render_explanations(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("pair_*.html"):
        stale.unlink()
    pairs = []
    for (name, snippet), pair in zip(rendered.pair_html, result.get("pairs", []), strict=True):
        atomic_write_bytes(out_dir / name, snippet.encode("utf-8"))
        pairs.append({**pair, "html": f"{EXPLANATIONS_DIR}/{name}"})
    written = {
        "index": out_dir / "index.html",
        "tokens_png": out_dir / "global_tokens.png",
        "fields_png": out_dir / "global_fields.png",
        "json": run_dir / EXPLANATIONS_FILE,
    }
    atomic_write_bytes(written["index"], rendered.index_html.encode("utf-8"))
    atomic_write_bytes(written["tokens_png"], rendered.tokens_png)
    atomic_write_bytes(written["fields_png"], rendered.fields_png)
    payload = {
        **result,
        "pairs": pairs,
        "files": {
            "html": [p["html"] for p in pairs],
            "index": f"{EXPLANATIONS_DIR}/index.html",
            "global_tokens": f"{EXPLANATIONS_DIR}/global_tokens.png",
            "global_fields": f"{EXPLANATIONS_DIR}/global_fields.png",
        },
    }
    atomic_write_json(written["json"], payload)
    return written
