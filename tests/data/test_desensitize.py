"""Masking must remove contact details and card numbers, and leave product numbers alone."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.data.desensitize import (
    CARD_TOKEN,
    EMAIL_TOKEN,
    PHONE_TOKEN,
    desensitize_frame,
    hash_user_id,
    mask_text,
)
from ecrec.errors import ConfigError

EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=0, max_size=20)
emails = st.builds(
    lambda user, host, tld: f"{user}@{host}.{tld}",
    st.from_regex(r"[a-z][a-z0-9._+-]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.sampled_from(["com", "org", "co.uk", "de", "shop"]),
)
phones = st.one_of(
    st.builds(
        lambda cc, a, b, c, sep: f"+{cc}{sep}{a}{sep}{b}{sep}{c}",
        st.integers(1, 99),
        st.from_regex(r"[1-9][0-9]{1,2}", fullmatch=True),
        st.from_regex(r"[0-9]{3,4}", fullmatch=True),
        st.from_regex(r"[0-9]{4}", fullmatch=True),
        st.sampled_from([" ", "-", "."]),
    ),
    st.from_regex(r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"[0-9]{3}-[0-9]{3}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"0[0-9]{2,4} [0-9]{3,4} [0-9]{3,4}", fullmatch=True),
)
cards = st.one_of(
    st.from_regex(r"[0-9]{13,19}", fullmatch=True),
    st.from_regex(r"[0-9]{4}( [0-9]{4}){3}", fullmatch=True),
    st.from_regex(r"[0-9]{4}(-[0-9]{4}){3}", fullmatch=True),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.doe+shop@example.co.uk today", f"mail {EMAIL_TOKEN} today"),
        ("call +44 20 7946 0958 now", f"call {PHONE_TOKEN} now"),
        ("call +1-415-555-0134.", f"call {PHONE_TOKEN}."),
        ("+4915112345678", PHONE_TOKEN),
        ("(555) 123-4567", PHONE_TOKEN),
        ("555.123.4567", PHONE_TOKEN),
        ("ring 020 7946 0958", f"ring {PHONE_TOKEN}"),
        ("mobile 07700 900123", f"mobile {PHONE_TOKEN}"),
        ("card 4111 1111 1111 1111 ok", f"card {CARD_TOKEN} ok"),
        ("4111-1111-1111-1111", CARD_TOKEN),
        ("amex 3782 822463 10005", f"amex {CARD_TOKEN}"),
        ("4111111111111111", CARD_TOKEN),
    ],
)
def test_masks_contact_details_and_cards(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "trainers size 42",
        "summer collection 2024",
        "glass bottle 500ml",
        "now only 19.99",
        "sizes 36 37 38 39 40 41 42 43",
        "released 2024-01-15",
        "10 x 20 x 30 cm",
        "pack of 3, 2019-2020 season",
        "ISBN 978-3-16-148410-0",
        "batch 123456789012",
        "1 000 000 units sold",
    ],
)
def test_leaves_ordinary_numbers_alone(text: str) -> None:
    assert mask_text(text) == text


@settings(max_examples=150, deadline=None)
@given(before=words, email=emails, after=words)
def test_masked_text_never_contains_an_email(before: str, email: str, after: str) -> None:
    masked = mask_text(f"{before} {email} {after}")
    assert EMAIL_PATTERN.search(masked) is None
    assert EMAIL_TOKEN in masked


@settings(max_examples=150, deadline=None)
@given(before=words, phone=phones, after=words)
def test_phone_numbers_are_masked(before: str, phone: str, after: str) -> None:
    masked = mask_text(f"{before} {phone} {after}")
    assert PHONE_TOKEN in masked or CARD_TOKEN in masked
    assert not any(ch.isdigit() for ch in masked)


@settings(max_examples=150, deadline=None)
@given(before=words, card=cards, after=words)
def test_card_numbers_are_masked(before: str, card: str, after: str) -> None:
    masked = mask_text(f"{before} {card} {after}")
    assert not any(ch.isdigit() for ch in masked)


@settings(max_examples=200, deadline=None)
@given(
    before=words,
    number=st.one_of(
        st.integers(0, 10**12 - 1).map(str),
        st.decimals(0, 10000, places=2).map(str),
        st.integers(1, 5000).map(lambda n: f"{n}ml"),
    ),
    after=words,
)
def test_numbers_under_13_digits_are_untouched(before: str, number: str, after: str) -> None:
    text = f"{before} {number} {after}"
    assert mask_text(text) == text


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("ab1234567890 +-.()@x")) | st.characters(),
        max_size=60,
    )
)
def test_masking_is_idempotent(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once


def test_hash_user_id_is_salted_stable_and_opaque() -> None:
    a = hash_user_id("alice@example.com", salt="s1")
    assert a == hash_user_id("alice@example.com", salt="s1")
    assert a != hash_user_id("alice@example.com", salt="s2")
    assert a != hash_user_id("bob@example.com", salt="s1")
    assert len(a) >= 16 and re.fullmatch(r"[0-9a-f]+", a)
    assert "alice" not in a
    with pytest.raises(ConfigError):
        hash_user_id("alice", salt="")


def test_desensitize_frame_masks_text_and_replaces_raw_user_ids() -> None:
    df = pd.DataFrame(
        {
            "query": ["red mug for jo@mail.com", "blue sofa"],
            "product_title": ["Acme Mug", "Call 555-123-4567 Sofa"],
            "product_text": ["brand: Acme", "card 4111 1111 1111 1111"],
            "description": ["500ml ceramic mug", None],
            "user_id": ["alice", "bob"],
            "label": [1, 0],
        }
    )
    out = desensitize_frame(df, salt="pepper")
    assert "user_id" not in out.columns
    assert out["user_id_hash"].tolist() == [
        hash_user_id("alice", salt="pepper"),
        hash_user_id("bob", salt="pepper"),
    ]
    assert out["query"].tolist() == [f"red mug for {EMAIL_TOKEN}", "blue sofa"]
    assert out["product_title"].iloc[1] == f"Call {PHONE_TOKEN} Sofa"
    assert out["product_text"].iloc[1] == f"card {CARD_TOKEN}"
    assert out["description"].iloc[0] == "500ml ceramic mug"
    assert pd.isna(out["description"].iloc[1])
    assert out["label"].tolist() == [1, 0]
    assert df["user_id"].tolist() == ["alice", "bob"], "input frame must not be modified"
