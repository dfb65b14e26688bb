"""Importers turn ESCI, WANDS, CSV and JSONL layouts into valid, desensitised marketplaces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from ecrec.data.desensitize import EMAIL_TOKEN, PHONE_TOKEN, check_desensitised, hash_user_id
from ecrec.data.importers import (
    ESCI_EXAMPLES_FILE,
    ESCI_PRODUCTS_FILE,
    import_dataset,
    parse_mapping,
)
from ecrec.data.io import check_path, load_data_dir, validate_frame
from ecrec.data.synth import Marketplace, write_marketplace
from ecrec.errors import ConfigError, DataError

KEY = bytes(range(32))

ESCI_QUERIES = [
    (101, "red running shoes"),
    (102, "couch for small flat"),
    (103, "bluetooth headphones"),
    (104, "mail me at buyer@example.com mug"),
    (105, "oak desk"),
    (106, "usb c cable"),
]


def write_esci(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    examples, products = [], []
    grades = "ESCI"
    example_id = 0
    for q, (query_id, query) in enumerate(ESCI_QUERIES):
        for c in range(4):
            product_id = f"B0{q}{c}XYZ"
            examples.append(
                {
                    "example_id": example_id,
                    "query": query,
                    "query_id": query_id,
                    "product_id": product_id,
                    "product_locale": "us",
                    "esci_label": grades[c],
                    "small_version": 1,
                    "large_version": 1,
                    "split": "train",
                }
            )
            example_id += 1
            products.append(
                {
                    "product_id": product_id,
                    "product_locale": "us",
                    "product_title": f"Product {q}-{c} for {query}",
                    "product_description": None if c == 1 else f"<p>Great <b>item</b> {c}</p>",
                    "product_bullet_point": f"Bullet {c}\nCall +1 415 555 01{q}{c}",
                    "product_brand": "Acme" if c % 2 else None,
                    "product_color": "Navy" if c == 0 else "",
                }
            )
    pd.DataFrame(examples).to_parquet(folder / ESCI_EXAMPLES_FILE)
    pd.DataFrame(products).to_parquet(folder / ESCI_PRODUCTS_FILE)
    return folder


def write_wands(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    queries = pd.DataFrame(
        {
            "query_id": [0, 1, 2, 3],
            "query": ["salon chair", "grey sofa", "outdoor lamp", "kids desk"],
            "query_class": ["Chairs", "Sofas", "Lamps", "Desks"],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": list(range(8)),
            "product_name": [f"wands product {i}" for i in range(8)],
            "product_class": [
                "Chairs",
                "Sofas",
                "Sofas",
                "Lamps",
                "Desks",
                "Desks",
                "Chairs",
                "Lamps",
            ],
            "category hierarchy": ["Furniture / Living Room"] * 8,
            "product_description": ["sturdy and comfy, email help@wayfair.example"] + ["nice"] * 7,
            "product_features": [
                "color : grey|primarymaterial : oak|overallwidth : 20",
                "",
                "colour:navy",
                "material : brass",
                "",
                "",
                "",
                "",
            ],
            "rating_count": [10] * 8,
            "average_rating": [4.5] * 8,
            "review_count": [3] * 8,
        }
    )
    labels = pd.DataFrame(
        {
            "id": list(range(12)),
            "query_id": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
            "product_id": [0, 6, 3, 1, 2, 4, 3, 7, 0, 4, 5, 1],
            "label": ["Exact", "Partial", "Irrelevant"] * 4,
        }
    )
    for name, frame in (("query.csv", queries), ("product.csv", products), ("label.csv", labels)):
        frame.to_csv(folder / name, sep="\t", index=False)
    return folder


def plain_rows() -> list[dict[str, object]]:
    rows = []
    for q in range(8):
        for c in range(3):
            rows.append(
                {
                    "search": f"query number {q}",
                    "sku": f"sku-{c}",
                    "title": f"Thing {c} (call 020 7946 0958)" if c == 2 else f"Thing {c}",
                    "shop": "north" if q < 5 else "south",
                    "clicked": "true" if c == 0 else "false",
                    "shopper": f"user-{q}",
                    "age": "25-34",
                    "colour": "red",
                    "extra": "ignored",
                }
            )
    return rows


MAPPING = {
    "search": "query",
    "sku": "product_id",
    "title": "product_title",
    "shop": "merchant_id",
    "clicked": "label",
    "shopper": "user_id",
    "age": "user_segment",
}


def assert_valid(market: Marketplace) -> None:
    for merchant_id, df in market.merchants.items():
        assert validate_frame(df, source=merchant_id) == [], merchant_id
        check_desensitised(df, source=merchant_id)
        assert len(df) > 0
    assert validate_frame(market.validation, source="validation") == []
    check_desensitised(market.validation, source="validation")


def all_rows(market: Marketplace) -> pd.DataFrame:
    return pd.concat([*market.merchants.values(), market.validation], ignore_index=True)


def test_esci_import_maps_grades_joins_products_and_masks(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci")
    market = import_dataset("esci", src, n_merchants=2, alpha=1.0, seed=3, validation_fraction=0.2)
    assert_valid(market)
    rows = all_rows(market)
    assert len(rows) == 4 * len(ESCI_QUERIES)
    assert rows["query_id"].nunique() == len(ESCI_QUERIES)
    grade = rows["product_id"].str[3].astype(int)  # the candidate index c encodes E, S, C, I
    assert (rows["relevance"] == grade.map({0: 3, 1: 2, 2: 1, 3: 0})).all()
    assert (rows["label"] == (rows["relevance"] >= 2).astype(int)).all()
    assert set(rows["user_segment"]) == {"unknown"}
    assert set(rows["merchant_tier"]) <= {"small", "large"}
    assert not rows["product_text"].str.contains("<").any(), "HTML is stripped"
    navy = rows[rows["product_id"].str.endswith("0XYZ")]
    assert navy["product_text"].str.contains("colour: Navy").all()
    bullets = rows[rows["product_id"].str[3] == "1"]
    assert bullets["description"].str.contains(PHONE_TOKEN).all(), "bullet points stand in"
    assert (rows["query"] == f"mail me at {EMAIL_TOKEN} mug").any()
    assert not rows["query"].str.contains("@").any()
    assert market.meta["source"] == "esci"


def test_esci_written_marketplace_validates(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci")
    market = import_dataset("esci", src, n_merchants=3, alpha=0.5, seed=0)
    write_marketplace(market, tmp_path / "out")
    report = check_path(tmp_path / "out")
    assert report.problems == []
    assert report.files == 4
    merchants, validation = load_data_dir(tmp_path / "out")
    assert sorted(merchants) == ["m00", "m01", "m02"]
    assert len(validation) > 0


def test_esci_bad_grade_and_missing_products_are_named(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci")
    examples = pd.read_parquet(src / ESCI_EXAMPLES_FILE)
    examples.loc[5, "esci_label"] = "X"
    examples.to_parquet(src / ESCI_EXAMPLES_FILE)
    with pytest.raises(DataError, match=r":6: esci_label: must be one of E, S, C, I, got 'X'"):
        import_dataset("esci", src)
    (src / ESCI_PRODUCTS_FILE).unlink()
    with pytest.raises(DataError, match=ESCI_PRODUCTS_FILE):
        import_dataset("esci", src)


def test_wands_import_reads_tab_separated_files(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "wands")
    market = import_dataset(
        "wands", src, n_merchants=2, alpha=5.0, seed=1, validation_fraction=0.25
    )
    assert_valid(market)
    rows = all_rows(market)
    assert len(rows) == 12
    grades = dict(zip(rows["query_id"] + "/" + rows["product_id"], rows["relevance"], strict=True))
    assert grades["0/0"] == 3 and grades["0/6"] == 1 and grades["0/3"] == 0
    assert (rows["label"] == (rows["relevance"] == 3).astype(int)).all()
    chair = rows[rows["product_id"] == "0"].iloc[0]
    assert chair["colour"] == "grey" and chair["material"] == "oak"
    assert chair["category"] == "Chairs"
    assert EMAIL_TOKEN in chair["description"] and "@" not in chair["product_text"]


def test_wands_bad_label_is_named(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "wands")
    labels = pd.read_csv(src / "label.csv", sep="\t")
    labels.loc[2, "label"] = "Maybe"
    labels.to_csv(src / "label.csv", sep="\t", index=False)
    with pytest.raises(
        DataError, match=r"label.csv:3: label: must be Exact, Partial or Irrelevant"
    ):
        import_dataset("wands", src)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_plain_import_with_mapping_keeps_merchants(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / f"log.{fmt}"
    if fmt == "csv":
        pd.DataFrame(plain_rows()).to_csv(src, index=False)
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in plain_rows()))
    market = import_dataset(
        fmt, src, mapping=MAPPING, partition_by="merchant", hash_key=KEY, validation_fraction=0.2
    )
    assert_valid(market)
    assert sorted(market.merchants) == ["north", "south"]
    rows = all_rows(market)
    assert len(rows) == 24
    assert set(rows["label"]) == {0, 1}
    assert (rows["label"] == (rows["product_id"] == "sku-0").astype(int)).all()
    assert rows.loc[rows["product_id"] == "sku-2", "product_title"].str.contains(PHONE_TOKEN).all()
    assert "user_id" not in rows.columns and "extra" not in rows.columns
    assert set(rows["user_id_hash"]) == {hash_user_id(f"user-{q}", key=KEY) for q in range(8)}
    assert market.meta["user_id_hash"]["key_id"] and KEY.hex() not in json.dumps(market.meta)
    assert set(rows["user_segment"]) == {"25-34"}
    assert rows["query_id"].nunique() == 8, "query ids are derived from the query text"
    assert rows["product_text"].str.contains("colour: red").all()
    tiers = {m: df["merchant_tier"].iloc[0] for m, df in market.merchants.items()}
    assert tiers == {"north": "large", "south": "small"}


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(plain_rows()).to_csv(src, index=False)
    mapping = {k: v for k, v in MAPPING.items() if v != "product_title"}
    with pytest.raises(DataError, match=r"product_title: required field missing.*--map"):
        import_dataset("csv", src, mapping=mapping)


def test_mapping_errors_are_named(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(plain_rows()).to_csv(src, index=False)
    with pytest.raises(DataError, match="'titel' is not a contract field"):
        import_dataset("csv", src, mapping={**MAPPING, "title": "titel"})
    with pytest.raises(DataError, match="nosuch: mapped column not in the file"):
        import_dataset("csv", src, mapping={**MAPPING, "nosuch": "description"})
    with pytest.raises(DataError, match="expected COLUMN=FIELD"):
        parse_mapping(["title:product_title"])
    assert parse_mapping(["a=query", " b = label "]) == {"a": "query", "b": "label"}


def test_bad_values_name_their_row(tmp_path: Path) -> None:
    rows = plain_rows()
    rows[4]["clicked"] = "maybe"
    src = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"log.csv:5: label: expected an integer, got 'maybe'"):
        import_dataset("csv", src, mapping=MAPPING, partition_by="merchant", hash_key=KEY)

    rows = plain_rows()
    rows[7]["sku"] = rows[6]["sku"]
    pd.DataFrame(rows).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"log.csv:8: product_id: 'sku-0' listed again .* row 7"):
        import_dataset("csv", src, mapping=MAPPING, partition_by="merchant", hash_key=KEY)


def test_broken_jsonl_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "log.jsonl"
    src.write_text(json.dumps(plain_rows()[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"log.jsonl:2: line: not valid JSON"):
        import_dataset("jsonl", src, mapping=MAPPING, hash_key=KEY)


def test_unknown_format_and_bad_options_are_refused(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "wands")
    with pytest.raises(ConfigError, match="unknown format"):
        import_dataset("xml", src)
    with pytest.raises(ConfigError, match="validation_fraction"):
        import_dataset("wands", src, validation_fraction=1.0)
    with pytest.raises(DataError, match="merchant_id"):
        import_dataset("wands", src, partition_by="merchant")
    with pytest.raises(DataError, match="no such file"):
        import_dataset("csv", tmp_path / "absent.csv")


def test_label_is_derived_from_relevance_and_ids_are_made_text(tmp_path: Path) -> None:
    src = tmp_path / "graded.csv"
    pd.DataFrame(
        {
            "query_id": [7, 7, 8, 8, 9, 9],
            "query": ["lamp", "lamp", "rug", "rug", "mug", "mug"],
            "product_id": [1, 2, 1, 3, 4, 5],
            "product_title": ["Lamp A", "Lamp B", "Lamp A", "Rug C", "Mug D", "Mug E"],
            "relevance": [3, 0, 0, 2, 1, 3],
            "position": [1, 2, 1, 2, 1, 2],
        }
    ).to_csv(src, index=False)
    market = import_dataset("csv", src, n_merchants=2, alpha=1.0, validation_fraction=0.0)
    assert_valid(market)
    rows = all_rows(market).sort_values(["query_id", "position"])
    assert rows["query_id"].tolist() == ["7", "7", "8", "8", "9", "9"]
    assert rows["label"].tolist() == [1, 0, 0, 1, 0, 1]
    assert rows["product_text"].tolist()[:2] == ["Lamp A", "Lamp B"], "title stands in for text"
    assert market.validation.empty and list(market.validation.columns) == list(rows.columns)


def test_out_of_range_values_name_the_source_row(tmp_path: Path) -> None:
    rows = plain_rows()
    rows[9]["clicked"] = 4
    src = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"log.csv:10: label: must be 0 or 1, got 4"):
        import_dataset("csv", src, mapping=MAPPING, hash_key=KEY)


def test_a_mapped_column_replaces_a_same_named_source_column(tmp_path: Path) -> None:
    rows = [{**r, "query": "stale text"} for r in plain_rows()]
    src = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    market = import_dataset("csv", src, mapping=MAPPING, partition_by="merchant", hash_key=KEY)
    assert not all_rows(market)["query"].eq("stale text").any()


def test_empty_merchant_id_is_named_when_partitioning_by_merchant(tmp_path: Path) -> None:
    rows = plain_rows()
    rows[3]["shop"] = ""
    src = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"log.csv:4: merchant_id: empty value"):
        import_dataset("csv", src, mapping=MAPPING, partition_by="merchant", hash_key=KEY)


# --------------------------------------------------------------------------- shopper ids


def test_user_ids_need_a_key_and_only_their_hmac_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(plain_rows()).to_csv(src, index=False)
    with pytest.raises(ConfigError, match=r"log.csv: user_id: .*secret hash key"):
        import_dataset("csv", src, mapping=MAPPING)
    other = import_dataset("csv", src, mapping=MAPPING, hash_key=bytes(32))
    market = import_dataset("csv", src, mapping=MAPPING, hash_key=KEY)
    rows, other_rows = all_rows(market), all_rows(other)
    assert "user_id" not in rows.columns
    assert not rows["user_id_hash"].str.contains("user").any()
    assert set(rows["user_id_hash"]).isdisjoint(other_rows["user_id_hash"]), "keyed, not salted"
    assert market.meta["user_id_hash"]["key_id"] != other.meta["user_id_hash"]["key_id"]


@pytest.mark.parametrize("partition_by", ["merchant", "dirichlet"])
def test_user_id_hash_survives_partitioning_hold_out_and_writing(
    tmp_path: Path, partition_by: str
) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(plain_rows()).to_csv(src, index=False)
    market = import_dataset(
        "csv",
        src,
        mapping=MAPPING,
        partition_by=partition_by,  # type: ignore[arg-type]
        n_merchants=2,
        alpha=5.0,
        hash_key=KEY,
        validation_fraction=0.25,
    )
    expected = {
        (f"query number {q}", f"sku-{c}"): hash_user_id(f"user-{q}", key=KEY)
        for q in range(8)
        for c in range(3)
    }
    rows = all_rows(market)
    keys = zip(rows["query"], rows["product_id"], strict=True)
    found = dict(zip(keys, rows["user_id_hash"], strict=True))
    assert found == expected
    assert len(market.validation) and market.validation["user_id_hash"].notna().all()

    write_marketplace(market, tmp_path / "out")
    assert check_path(tmp_path / "out").problems == []
    merchants, validation = load_data_dir(tmp_path / "out")
    back = pd.concat([*merchants.values(), validation], ignore_index=True)
    assert sorted(back["user_id_hash"]) == sorted(rows["user_id_hash"])


def test_esci_and_wands_user_id_columns_are_hashed(tmp_path: Path) -> None:
    esci = write_esci(tmp_path / "esci")
    examples = pd.read_parquet(esci / ESCI_EXAMPLES_FILE)
    examples["user_id"] = [f"shopper{i % 5}" for i in range(len(examples))]
    examples.to_parquet(esci / ESCI_EXAMPLES_FILE)
    market = import_dataset("esci", esci, n_merchants=2, hash_key=KEY)
    assert_valid(market)
    assert set(all_rows(market)["user_id_hash"]) == {
        hash_user_id(f"shopper{i}", key=KEY) for i in range(5)
    }

    wands = write_wands(tmp_path / "wands")
    labels = pd.read_csv(wands / "label.csv", sep="\t")
    labels["user_id"] = ["u1", "u2", ""] * 4
    labels.to_csv(wands / "label.csv", sep="\t", index=False)
    market = import_dataset("wands", wands, n_merchants=2, alpha=5.0, hash_key=KEY)
    assert_valid(market)
    hashes = all_rows(market)["user_id_hash"]
    assert set(hashes.dropna()) == {hash_user_id("u1", key=KEY), hash_user_id("u2", key=KEY)}
    assert hashes.isna().sum() == 4, "a blank id is a missing id, not a shared hash"


# --------------------------------------------------------------------------- hostile input


def test_a_path_traversing_merchant_id_is_refused_with_its_row(tmp_path: Path) -> None:
    rows = plain_rows()
    rows[5]["shop"] = "/../../x"
    src = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    with pytest.raises(DataError, match=r"log.csv:6: merchant_id: '/../../x' is not allowed"):
        import_dataset("csv", src, mapping=MAPPING, partition_by="merchant", hash_key=KEY)


def _write_csv(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


SIMPLE_MAPPING = {"q": "query", "sku": "product_id", "title": "product_title", "clicked": "label"}
HEADER = "q,sku,title,clicked\n"


def _rows(n: int) -> str:
    return "".join(f"query {i // 3},s{i % 3},Item {i % 3},{int(i % 3 == 0)}\n" for i in range(n))


LATIN_1_ROW = "caf\xe9,s1,Item,1\n".encode("latin-1")
BROKEN_CSV = {
    "long-row": (
        HEADER + _rows(4) + "query 9,s1,Item,1,extra\n",
        r":5: fields: expected 4 .*found 5",
    ),
    "short-row": (HEADER + _rows(4) + "query 9,s1\n", r":5: fields: expected 4 fields, found 2"),
    "unclosed-quote": (HEADER + _rows(4) + 'query 9,s1,"Item\n', r": line 6: malformed"),
    "bad-quote": (HEADER + _rows(2) + 'query 9,s1,"It"em,1\n', r": line 4: malformed"),
    "duplicate-header": ("q,sku,sku,clicked\n" + _rows(3), r": header: column 'sku' appears"),
    "nul": (HEADER + _rows(2) + "query\x00 9,s1,Item,1\n", r": line 4: NUL byte"),
    "empty": ("", r": file: empty"),
    "header-only": (HEADER, r": file: no rows to import"),
    "latin-1": (HEADER.encode() + LATIN_1_ROW, r": line 2: not valid utf-8 text \(byte 0xe9\); "),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r": line 1: not valid utf-8 text"),
    "not-a-number": (HEADER + _rows(2) + "query 9,s1,Item,maybe\n", r":3: label: expected an int"),
    "overflow": (HEADER + _rows(2) + "query 9,s1,Item,1e400\n", r":3: label: expected an integer"),
}


@pytest.mark.parametrize(("content", "message"), BROKEN_CSV.values(), ids=BROKEN_CSV.keys())
def test_broken_csv_files_give_one_line_naming_the_place(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    src = _write_csv(tmp_path / "log.csv", content)
    with pytest.raises(DataError, match=re.escape(str(src)) + message) as err:
        import_dataset("csv", src, mapping=SIMPLE_MAPPING, n_merchants=1)
    assert "\n" not in str(err.value) and str(src) in str(err.value)


def test_encodings_other_than_utf8_are_read_when_named_or_marked(tmp_path: Path) -> None:
    text = HEADER + "café crème,s1,Crème Mug,1\n" + _rows(6)
    latin = _write_csv(tmp_path / "latin.csv", text.encode("latin-1"))
    market = import_dataset("csv", latin, mapping=SIMPLE_MAPPING, n_merchants=1, encoding="latin-1")
    assert "café crème" in set(all_rows(market)["query"])
    for codec in ("utf-16", "utf-8-sig"):  # both write a byte-order mark
        marked = _write_csv(tmp_path / f"{codec}.csv", text.encode(codec))
        market = import_dataset("csv", marked, mapping=SIMPLE_MAPPING, n_merchants=1)
        assert "café crème" in set(all_rows(market)["query"])
    with pytest.raises(ConfigError, match="unknown text encoding"):
        import_dataset("csv", latin, mapping=SIMPLE_MAPPING, encoding="klingon")


def test_a_huge_cell_is_refused_with_row_and_field(tmp_path: Path) -> None:
    src = _write_csv(tmp_path / "log.csv", HEADER + _rows(3) + f"query 9,s1,{'x' * 10_000_000},1\n")
    with pytest.raises(
        DataError, match=r"log.csv:4: title: 10000000 characters, more than the 100000"
    ):
        import_dataset("csv", src, mapping=SIMPLE_MAPPING)


ROW = '{"q": "a", "sku": "s", "title": %s, "clicked": %s}'
BROKEN_JSONL = {
    "nested": (ROW % ('{"nested": 1}', 1), r":2: product_title: expected text or a number, got"),
    "surrogate": (ROW % ('"\\ud800"', 1), r":2: product_title: not valid Unicode text"),
    "huge-int": (ROW % ('"t"', "9" * 5000), r":2: line: not valid JSON"),
    "deep": ("[" * 100_000 + "]" * 100_000, r":2: line: not valid JSON"),
    "not-object": ('["a", "list"]', r":2: line: expected a JSON object"),
    "trailing": (ROW % ('"t"', "true") + " trailing", r":2: line: not valid JSON"),
}


@pytest.mark.parametrize(("line", "message"), BROKEN_JSONL.values(), ids=BROKEN_JSONL.keys())
def test_broken_jsonl_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    first = json.dumps({"q": "a", "sku": "s0", "title": "t", "clicked": 1})
    src = tmp_path / "log.jsonl"
    src.write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(src)) + message) as err:
        import_dataset("jsonl", src, mapping=SIMPLE_MAPPING, n_merchants=1)
    assert "\n" not in str(err.value)


def test_broken_esci_parquet_is_one_line(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci")
    data = (src / ESCI_EXAMPLES_FILE).read_bytes()
    (src / ESCI_EXAMPLES_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"examples.parquet: file: not a readable parquet file"):
        import_dataset("esci", src)


def test_esci_ids_of_different_types_still_join(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci")
    products = pd.read_parquet(src / ESCI_PRODUCTS_FILE)
    products["product_locale"] = products["product_locale"].astype("category")
    products.to_parquet(src / ESCI_PRODUCTS_FILE)
    assert_valid(import_dataset("esci", src, n_merchants=2))


MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10^6-row CSV (about 40 MB), written once for the tests that read it."""
    path = tmp_path_factory.mktemp("million") / "log.csv"
    n_queries = MILLION // 4
    q = pd.Series(range(MILLION)) // 4
    pd.DataFrame(
        {
            "q": "query " + q.astype(str),
            "sku": "s" + (pd.Series(range(MILLION)) % 4).astype(str),
            "title": "Item " + (q % 997).astype(str),
            "clicked": (pd.Series(range(MILLION)) % 4 == 0).astype(int),
        }
    ).to_csv(path, index=False)
    assert n_queries == 250_000
    return path


def test_a_bad_last_row_of_a_million_is_named(tmp_path: Path, million_rows: Path) -> None:
    bad = tmp_path / "bad.csv"
    data = million_rows.read_bytes()
    bad.write_bytes(data[: data.rstrip(b"\n").rfind(b",") + 1] + b"maybe\n")
    with pytest.raises(DataError, match=rf"bad.csv:{MILLION}: label: expected an integer"):
        import_dataset("csv", bad, mapping=SIMPLE_MAPPING)


@pytest.mark.slow
def test_a_million_rows_import_and_validate(tmp_path: Path, million_rows: Path) -> None:
    market = import_dataset(
        "csv", million_rows, mapping=SIMPLE_MAPPING, n_merchants=4, validation_fraction=0.01
    )
    assert sum(len(df) for df in market.merchants.values()) + len(market.validation) == MILLION
    write_marketplace(market, tmp_path / "out")
    report = check_path(tmp_path / "out")
    assert report.problems == [] and report.rows == MILLION
