"""Small HTML builders the report's sections share: inline images, escaped values, tables,
numbers with intervals and verdicts, and reading a run's JSON files."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value)) or "–"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read_json(path: Path) -> Any | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise EcrecError(f"{path}: invalid JSON: {err.msg} (line {err.lineno})") from None


_WIDE = "overflow-x:auto;max-width:100%;margin:.4rem 0"
_COMPACT = "font-size:.82rem;white-space:nowrap"


def _num(value: Any, *, percent: bool = False) -> str:
    """A compact cell: 3 decimals (or a percentage), big numbers whole, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if percent:
            return f"{value:.1%}"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    return html.escape(str(value))


def _ci(interval: Any) -> str:
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        return "–"
    return f"{_num(interval[0])}–{_num(interval[1])}"


def _wide_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table of pre-formatted cells that scrolls sideways inside its section if too wide."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<div class='table-scroll' style='{_WIDE}'><table style='{_COMPACT}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _verdict(status: Any) -> str:
    text = html.escape(str(status)) if status else "–"
    return f"<span class='flag'>{text}</span>" if status == "flag" else text
