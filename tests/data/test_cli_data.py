"""``ecrec data``: what a user sees and the exit codes scripts rely on."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pandas as pd
import pytest

from ecrec.cli import main
from ecrec.data.desensitize import hash_user_id, read_hash_key
from ecrec.data.synth import SynthConfig, synthesize


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_then_validate_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "market"
    code, out, _ = run(
        capsys,
        "data", "synth", "--merchants", "3", "--out", str(out_dir), "--seed", "5",
        "--queries-per-merchant", "10", "--candidates", "6", "--validation-queries", "4",
    )  # fmt: skip
    assert code == 0
    assert f"wrote 5 files to {out_dir}" in out
    assert "merchant m00:" in out and "tier large" in out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 5 and manifest["config"]["candidates_per_query"] == 6

    code, out, _ = run(capsys, "data", "validate", str(out_dir))
    assert code == 0
    total = sum(len(pd.read_parquet(p)) for p in out_dir.glob("*.parquet"))
    assert out.strip() == f"ok: {total} rows in 4 files"


def test_synth_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "data",
        "synth",
        "--merchants",
        "2",
        "--queries-per-merchant",
        "4",
        "--out",
        str(tmp_path),
    ]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 2
    assert "already holds a marketplace" in err and "--force" in err
    assert run(capsys, *args, "--force")[0] == 0


def test_broken_parquet_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = synthesize(SynthConfig(merchants=1, queries_per_merchant=3)).merchants["m00"]
    df = df.drop(columns=["user_segment"])
    df.loc[1, "label"] = 7
    df.loc[2, "merchant_tier"] = "medium"
    df.loc[3, "query"] = ""
    path = tmp_path / "broken.parquet"
    df.to_parquet(path)

    code, out, err = run(capsys, "data", "validate", str(path))
    assert code == 2
    assert out.splitlines() == [
        f"{path}: user_segment: required column is missing",
        f"{path}:4: query: empty value",
        f"{path}:2: label: must be 0 or 1, got 7",
        f"{path}:3: merchant_tier: must be large or small, got 'medium'",
    ]
    assert err.strip() == "4 problems in 1 file (30 rows read)"


def test_a_non_parquet_file_gives_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "impressions.parquet"
    path.write_text("query_id,query\n1,shoes\n")
    code, out, err = run(capsys, "data", "validate", str(path))
    assert code == 2
    assert len(out.splitlines()) == 1
    assert out.startswith(f"{path}: file: not a readable parquet file")
    assert "Traceback" not in out + err


def test_import_csv_with_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "q": [f"query {i // 3}" for i in range(18)],
            "sku": [f"s{i % 3}" for i in range(18)],
            "name": [f"Item {i % 3}" for i in range(18)],
            "clicked": [int(i % 3 == 0) for i in range(18)],
        }
    ).to_csv(src, index=False)
    out_dir = tmp_path / "imported"
    code, out, err = run(
        capsys,
        "data", "import", "--format", "csv", str(src), "--out", str(out_dir),
        "--map", "q=query", "--map", "sku=product_id", "--map", "name=product_title",
        "--map", "clicked=label", "--merchants", "2", "--alpha", "10", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    assert f"to {out_dir}" in out
    assert run(capsys, "data", "validate", str(out_dir))[0] == 0


def test_bad_map_syntax_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "log.csv"
    src.write_text("q\nshoes\n")
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(tmp_path / "o"),
        "--map", "q->query",
    )  # fmt: skip
    assert code == 2
    assert (
        err.strip()
        == "ecrec: error: --map 'q->query': expected COLUMN=FIELD, e.g. --map title=product_title"
    )
    assert not (tmp_path / "o").exists()


def test_import_of_a_missing_source_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "wands",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "no such file or folder" in err


# --------------------------------------------------------------------------- shopper ids and keys


def _log_with_shoppers(path: Path, *, n: int = 18) -> Path:
    pd.DataFrame(
        {
            "q": [f"query {i // 3}" for i in range(n)],
            "sku": [f"s{i % 3}" for i in range(n)],
            "name": [f"Item {i % 3}" for i in range(n)],
            "clicked": [int(i % 3 == 0) for i in range(n)],
            "shopper": [f"alice{i // 6}@example.com" for i in range(n)],
        }
    ).to_csv(path, index=False)
    return path


IMPORT_MAP = [
    "--map", "q=query", "--map", "sku=product_id", "--map", "name=product_title",
    "--map", "clicked=label", "--map", "shopper=user_id", "--merchants", "2", "--alpha", "10",
]  # fmt: skip


def _hashes(folder: Path) -> list[str]:
    frames = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    return sorted(pd.concat(frames)["user_id_hash"])


def test_import_hashes_shopper_ids_with_a_private_key_kept_beside_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _log_with_shoppers(tmp_path / "log.csv")
    out_dir = tmp_path / "mine"
    code, out, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(out_dir), *IMPORT_MAP
    )
    assert code == 0, err
    key_file = tmp_path / "mine.hashkey"
    assert f"shopper ids hashed with the key in {key_file} (new;" in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(out_dir.glob("*hashkey*")), "the key never travels with the data"
    key_hex = key_file.read_text().strip()
    for file in out_dir.iterdir():
        content = file.read_bytes()
        assert key_hex.encode() not in content and b"alice" not in content
    first = _hashes(out_dir)
    assert first == sorted(
        hash_user_id(f"alice{i // 6}@example.com", key=read_hash_key(key_file)) for i in range(18)
    )
    assert run(capsys, "data", "validate", str(out_dir))[0] == 0

    code, out, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "csv",
        str(src),
        "--out",
        str(out_dir),
        *IMPORT_MAP,
        "--force",
    )
    assert code == 0, err
    assert "(reused)" in out and _hashes(out_dir) == first, "re-imports hash consistently"

    other = tmp_path / "other.key"
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(tmp_path / "o2"),
        *IMPORT_MAP, "--hash-key-file", str(other),
    )  # fmt: skip
    assert code == 0, err
    assert other.is_file() and set(_hashes(tmp_path / "o2")).isdisjoint(first)


def test_a_key_file_inside_the_output_or_readable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _log_with_shoppers(tmp_path / "log.csv")
    out_dir = tmp_path / "mine"
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(out_dir), *IMPORT_MAP,
        "--hash-key-file", str(out_dir / "key"),
    )  # fmt: skip
    assert code == 2 and "inside the output folder" in err and len(err.splitlines()) == 1
    loose = tmp_path / "loose.key"
    loose.write_text("00" * 32 + "\n")
    loose.chmod(0o644)
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(out_dir), *IMPORT_MAP,
        "--hash-key-file", str(loose),
    )  # fmt: skip
    assert code == 2 and "readable by other users" in err
    assert not out_dir.exists()


def test_no_key_file_is_made_without_shopper_ids_or_when_the_import_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _log_with_shoppers(tmp_path / "log.csv")
    at = IMPORT_MAP.index("shopper=user_id")
    no_ids = IMPORT_MAP[: at - 1] + IMPORT_MAP[at + 1 :]
    code, out, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(tmp_path / "a"), *no_ids
    )
    assert code == 0, err
    assert not (tmp_path / "a.hashkey").exists() and "hashed" not in out

    rows = src.read_text().splitlines()
    src.write_text("\n".join([*rows, "query 9,s1,Item 1,maybe,bob"]) + "\n")
    code, _, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "csv",
        str(src),
        "--out",
        str(tmp_path / "b"),
        *IMPORT_MAP,
    )
    assert code == 2 and ":19: label: expected an integer" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.hashkey").exists()


# --------------------------------------------------------------------------- atomic output


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_a_failed_forced_import_leaves_the_old_marketplace_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _log_with_shoppers(tmp_path / "log.csv")
    out_dir = tmp_path / "mine"
    assert (
        run(
            capsys,
            "data",
            "import",
            "--format",
            "csv",
            str(src),
            "--out",
            str(out_dir),
            *IMPORT_MAP,
        )[0]
        == 0
    )
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    src.write_text(src.read_text() + "query 9,s1,Item 1,1,bob,extra\n")
    code, _, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "csv",
        str(src),
        "--out",
        str(out_dir),
        *IMPORT_MAP,
        "--force",
    )
    assert code == 2 and "fields: expected 5 fields, found 6" in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_a_crash_while_writing_never_half_replaces_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ecrec.data.synth.marketplace as synth_module

    out_dir = tmp_path / "market"
    args = [
        "data",
        "synth",
        "--merchants",
        "3",
        "--queries-per-merchant",
        "5",
        "--out",
        str(out_dir),
    ]
    assert run(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    real_write = synth_module.write_impressions
    calls = []

    def write_then_crash(df: pd.DataFrame, path: Path, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(df, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synth_module, "write_impressions", write_then_crash)
    code, _, err = run(capsys, *args, "--seed", "9", "--force")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert len(calls) == 2 and calls[0].parent != out_dir, "files go to a temp folder first"
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_an_output_folder_with_other_files_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    args = ["data", "synth", "--merchants", "2", "--queries-per-merchant", "4", "--out", str(home)]
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, *args, *extra)
        assert code == 2 and "not part of a marketplace" in err and "'thesis.tex'" in err
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]


# ----------------------------------------------------------------- hostile names and paths


def test_a_merchant_id_that_escapes_the_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "q": [f"query {i}" for i in range(6)],
            "sku": ["s1"] * 6,
            "name": ["Item"] * 6,
            "clicked": [1, 0] * 3,
            "shop": ["north", "north", "/../../x", "/../../x", "south", "south"],
        }
    ).to_csv(src, index=False)
    out_dir = tmp_path / "deep" / "out"
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(out_dir),
        "--map", "q=query", "--map", "sku=product_id", "--map", "name=product_title",
        "--map", "clicked=label", "--map", "shop=merchant_id", "--partition-by", "merchant",
    )  # fmt: skip
    assert code == 2
    assert err.strip() == (
        f"ecrec: error: {src}:3: merchant_id: '/../../x' is not allowed as a merchant id "
        "(1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit) (and 1 more)"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["log.csv"]


@pytest.mark.parametrize("bad", ["a\x00b", "out\nput", ""])
def test_impossible_paths_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    src = _log_with_shoppers(tmp_path / "log.csv")
    for argv in (
        ["data", "import", "--format", "csv", str(src), "--out", bad, *IMPORT_MAP],
        ["data", "synth", "--out", bad],
        ["data", "validate", bad],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "internal error" not in err
