"""Fuzzing every data input path: whatever the bytes, one line, a non-zero exit, no output.

Hypothesis feeds ``ecrec data import`` (csv, jsonl, ESCI parquet) and ``ecrec
data validate`` random bytes and mutations of valid files: truncations, flipped
and inserted bytes (NULs, quotes, separators, newlines), duplicated and dropped
lines, other encodings. The promise checked on each example: the command either
succeeds with output that validates, or exits 2 with exactly one line on stderr,
never a traceback or an internal error, and leaves nothing behind (no output
folder, no temp folder, no new key file).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrec.cli import main
from ecrec.data.importers import ESCI_EXAMPLES_FILE, ESCI_PRODUCTS_FILE
from ecrec.data.io import check_path
from ecrec.data.synth import SynthConfig, synthesize

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAPPING_ARGS = [
    "--map", "q=query", "--map", "sku=product_id", "--map", "title=product_title",
    "--map", "clicked=label", "--map", "shopper=user_id",
]  # fmt: skip


def _records() -> list[dict[str, object]]:
    return [
        {
            "q": f"query {i // 3} call 555-123-4567" if i == 4 else f"query {i // 3}",
            "sku": f"s{i % 3}",
            "title": f'Item "{i % 3}", 2 in. x 4 ft.',
            "clicked": int(i % 3 == 0),
            "shopper": f"u{i // 4}",
        }
        for i in range(12)
    ]


@functools.cache
def _valid_csv() -> bytes:
    return pd.DataFrame(_records()).to_csv(index=False).encode()


@functools.cache
def _valid_jsonl() -> bytes:
    return "".join(json.dumps(r) + "\n" for r in _records()).encode()


@functools.cache
def _valid_esci() -> tuple[bytes, bytes]:
    examples = pd.DataFrame(
        {
            "query_id": [q for q in range(4) for _ in range(3)],
            "query": [f"query {q}" for q in range(4) for _ in range(3)],
            "product_id": [f"B{q}{c}" for q in range(4) for c in range(3)],
            "esci_label": ["E", "S", "I"] * 4,
        }
    )
    products = pd.DataFrame(
        {
            "product_id": examples["product_id"],
            "product_title": [f"Title {i}" for i in range(12)],
            "product_description": ["<p>desc</p>"] * 12,
        }
    )
    out = []
    for frame in (examples, products):
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        out.append(buffer.getvalue())
    return out[0], out[1]


@functools.cache
def _valid_merchant_parquet() -> bytes:
    frame = synthesize(SynthConfig(merchants=1, queries_per_merchant=4)).merchants["m00"]
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


INSERTS = [b"\x00", b'"', b",", b"\n", b"\r", b"\t", b"\xff", b"\xe9", b"{", b"\\", b"\xef\xbb\xbf"]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` after 1-3 random edits of the kinds real broken files show."""
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["truncate", "flip", "insert", "dup-line", "drop-line", "utf16", "random-insert"]
            )
        )
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and data:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.sampled_from(INSERTS)) + data[at:]
        elif kind == "random-insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif kind in ("dup-line", "drop-line"):
            lines = data.split(b"\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "dup-line":
                lines.insert(index, lines[index])
            else:
                del lines[index]
            data = b"\n".join(lines)
        elif kind == "utf16":
            with contextlib.suppress(UnicodeDecodeError):
                data = data.decode("utf-8").encode(draw(st.sampled_from(["utf-16", "utf-16-le"])))
    return data


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _assert_failed_cleanly(code: int, err: str, folder: Path, out_dir: Path) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecrec: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert not out_dir.exists(), "no partial output"
    leftovers = [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == [] and not (folder / f"{out_dir.name}.hashkey").exists()


def _import_and_check(fmt: str, src: Path, folder: Path, *extra: str) -> None:
    out_dir = folder / "out"
    code, _, err = _run("data", "import", "--format", fmt, str(src), "--out", str(out_dir), *extra)
    if code == 0:
        assert check_path(out_dir).problems == [], "what import writes always validates"
    else:
        _assert_failed_cleanly(code, err, folder, out_dir)


@FUZZ
@given(data=st.one_of(mutated(_valid_csv()), st.binary(max_size=300)))
def test_csv_import_survives_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "log.csv"
        src.write_bytes(data)
        _import_and_check("csv", src, folder, *MAPPING_ARGS, "--merchants", "1")


@FUZZ
@given(data=st.one_of(mutated(_valid_jsonl()), st.binary(max_size=300)))
def test_jsonl_import_survives_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "log.jsonl"
        src.write_bytes(data)
        _import_and_check("jsonl", src, folder, *MAPPING_ARGS, "--merchants", "1")


@FUZZ
@given(which=st.sampled_from([0, 1]), data=st.data())
def test_esci_import_survives_broken_parquet(which: int, data: st.DataObject) -> None:
    files = list(_valid_esci())
    files[which] = data.draw(st.one_of(mutated(files[which]), st.binary(max_size=300)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "esci"
        src.mkdir()
        (src / ESCI_EXAMPLES_FILE).write_bytes(files[0])
        (src / ESCI_PRODUCTS_FILE).write_bytes(files[1])
        _import_and_check("esci", src, folder, "--merchants", "1")


@FUZZ
@given(data=st.one_of(mutated(_valid_merchant_parquet()), st.binary(max_size=300)))
def test_validate_survives_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "merchant_m00.parquet"
        path.write_bytes(data)
        code, out, err = _run("data", "validate", str(path))
    assert code in (0, 2), err
    assert "Traceback" not in out + err and "internal error" not in err
    if code == 2:
        assert out.strip() and all(line.startswith(str(path)) for line in out.splitlines())
        assert len(err.strip().splitlines()) == 1
