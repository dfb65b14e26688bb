"""Rendering explanations: shap's own plots, returned as HTML text and PNG bytes.

Nothing here writes files (see :mod:`ecrec.explain.store`).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecrec.explain.quiet_shap import import_shap


@dataclass(frozen=True)
class RenderedExplanations:
    """Everything :func:`render_explanations` draws for one run's explanations."""

    #: (file name, HTML snippet) per pair, in pair order.
    pair_html: list[tuple[str, str]]
    index_html: str
    tokens_png: bytes
    fields_png: bytes


def pair_file_name(number: int, query_id: Any) -> str:
    """``pair_NN_<query id made file-safe>.html``."""
    return f"pair_{number:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(query_id))[:60]}.html"


def text_plot_html(pair: Mapping[str, Any]) -> str:
    """shap's interactive text plot of one explained pair, as an HTML snippet."""
    shap = import_shap()

    tokens = pair["tokens"]
    explanation = shap.Explanation(
        values=np.asarray(tokens["values"], dtype=np.float64),
        base_values=float(tokens["base_value"]),
        data=np.asarray(tokens["tokens"], dtype=object),
    )
    plot = shap.plots.text(explanation, display=False)
    heading = (
        f"<p><b>query:</b> {html.escape(str(pair['query']))} &nbsp; "
        f"<b>product:</b> {html.escape(str(pair['product_id']))} (rank {pair['rank']}, "
        f"score {pair['score']:.3f})</p>"
    )
    return heading + str(plot)


def index_html(snippets: Sequence[str]) -> str:
    """One page with every pair's text plot."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ecrec explanations</title>"
        "</head><body><h1>Token attributions (SHAP)</h1>" + "<hr>".join(snippets) + "</body></html>"
    )


def bar_chart_png(rows: Sequence[Mapping[str, Any]], *, title: str) -> bytes:
    """shap's bar plot of mean |SHAP value| per name (``rows`` of name, mean_abs) as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shap = import_shap()
    names = [str(r["name"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(names), 3) + 1.2))
    try:
        if names:
            values = np.asarray([float(r["mean_abs"]) for r in rows], dtype=np.float64)
            explanation = shap.Explanation(values=values, feature_names=names)
            shap.plots.bar(explanation, max_display=len(names), ax=ax, show=False)
        ax.set_xlabel("mean |SHAP value| (logit)")
        ax.set_title(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def render_explanations(result: Mapping[str, Any]) -> RenderedExplanations:
    """Text plots of every pair, the index page and the two global bar charts."""
    pair_html = [
        (pair_file_name(number, pair["query_id"]), text_plot_html(pair))
        for number, pair in enumerate(result.get("pairs", []), 1)
    ]
    overall = result.get("global", {})
    return RenderedExplanations(
        pair_html=pair_html,
        index_html=index_html([snippet for _, snippet in pair_html]),
        tokens_png=bar_chart_png(overall.get("tokens", []), title="Most influential tokens"),
        fields_png=bar_chart_png(overall.get("fields", []), title="Product fields"),
    )
