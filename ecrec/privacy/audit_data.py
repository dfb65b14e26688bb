"""Audit-ready data: held-out non-members and planted canaries for one merchant.

A membership-inference audit needs rows from the *same distribution* as a merchant's
training rows that the run never trained on. :func:`plant_membership_audit` takes a
marketplace's merchant frames, moves a random share of one merchant's shoppers (all of
their rows: the shopper is the DP unit) out of its training file into a held-out set,
and plants ``k`` canaries in the file that remains:

* a canary is one (query, product) impression with ``label = 1`` and
  ``relevance = 3``: a product of the merchant's catalogue paired with a *random code
  query* of pseudo-words ("vekosa lumira tabe"), which no other row contains. It gets
  its own shopper id (so it is one DP unit) and may be repeated ``repeats`` times;
* for each canary, ``references`` more code queries are drawn from the same random
  space and paired with the same product. They are never inserted; the audit ranks the
  canary's score among theirs (exposure, :func:`ecrec.privacy.audit.exposure`).

The result is written beside the marketplace, in ``<data folder>/membership/``::

    setup.json          the setup (merchant, holdout, canaries, seed) and row counts
    holdout.parquet     the held-out rows (non-members)
    canaries.parquet    the planted canary rows (as inserted)
    references.parquet  the reference candidates (canary_id + the canary's columns)

``ecrec data synth --audit-merchant M --audit-holdout F --canaries K`` makes such a
folder; ``ecrec privacy audit RUN`` reads it through the run's ``data.dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.schema import USER_ID
from ecrec.errors import ConfigError, EcrecError

MEMBERSHIP_DIR = "membership"
SETUP_FILE = "setup.json"
HOLDOUT_FILE = "holdout.parquet"
CANARIES_FILE = "canaries.parquet"
REFERENCES_FILE = "references.parquet"
#: Column naming which canary a reference candidate (or a planted row) belongs to.
CANARY_ID = "canary_id"

#: Syllables of the code words; 3 words of 2-4 syllables: ~10^14 codes.
_SYLLABLES = tuple(
    c + v
    for c in ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
    for v in ("a", "e", "i", "o", "u")
)


@dataclass(frozen=True)
class MembershipSetup:
    """Which merchant is audited, how many of its shoppers are held out, which canaries."""

    merchant: str = ""  # "" = the largest merchant
    holdout: float = 0.5  # share of the merchant's shoppers held out as non-members
    canaries: int = 0
    repeats: int = 1  # rows per canary (all one shopper: one DP unit)
    references: int = 199  # reference candidates per canary (never inserted)
    seed: int = 0
    # Hold out the complement of the shoppers this seed would hold out: the mirrored half
    # of a paired audit (each row is a member of one run and a non-member of the other).
    mirror: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ConfigError(f"audit holdout must be in (0, 1), got {self.holdout}")
        if self.canaries < 0:
            raise ConfigError(f"canaries must not be negative, got {self.canaries}")
        if self.repeats < 1:
            raise ConfigError(f"canary repeats must be >= 1, got {self.repeats}")
        if self.references < 1:
            raise ConfigError(f"canary references must be >= 1, got {self.references}")
        if self.seed < 0:
            raise ConfigError(f"audit seed must not be negative, got {self.seed}")


@dataclass
class MembershipData:
    """What the audit needs besides the run: the setup, non-members and canaries."""

    setup: MembershipSetup
    merchant: str
    holdout: pd.DataFrame
    canaries: pd.DataFrame
    references: pd.DataFrame


def code_query(rng: np.random.Generator) -> str:
    """A random code of three pseudo-words, the canaries' secret."""
    words = []
    for _ in range(3):
        n = int(rng.integers(2, 5))
        words.append("".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n)))
    return " ".join(words)


def _shopper_hash(seed: int, index: int, width: int) -> str:
    digest = hashlib.sha256(f"ecrec-canary\x1f{seed}\x1f{index}".encode()).hexdigest()
    return digest[: max(8, width)]


def plant_membership_audit(
    merchants: Mapping[str, pd.DataFrame], setup: MembershipSetup
) -> tuple[dict[str, pd.DataFrame], MembershipData]:
    """The merchant frames with one merchant's held-out shoppers removed and canaries
    planted, and the audit's side of it. Deterministic for ``setup.seed``."""
    if not merchants:
        raise EcrecError("no merchants to audit")
    merchant = setup.merchant or max(sorted(merchants), key=lambda m: len(merchants[m]))
    if merchant not in merchants:
        known = ", ".join(sorted(merchants))
        raise ConfigError(f"audit merchant {merchant!r} is not in the marketplace ({known})")
    setup = dataclasses.replace(setup, merchant=merchant)
    frame = merchants[merchant].reset_index(drop=True)
    rng = np.random.default_rng(setup.seed)
    key = USER_ID if USER_ID in frame.columns else "query_id"
    units = np.array(sorted(frame[key].astype(str).unique()))
    if len(units) < 2:
        raise EcrecError(f"merchant {merchant} has {len(units)} shopper(s); the audit needs two")
    n_out = min(len(units) - 1, max(1, round(setup.holdout * len(units))))
    held = set(rng.permutation(units)[:n_out].tolist())
    out_mask = frame[key].astype(str).isin(held).to_numpy()
    if setup.mirror:
        out_mask = ~out_mask
    train, holdout = frame[~out_mask], frame[out_mask].reset_index(drop=True)
    # Canaries are drawn from the whole frame, so both halves of a mirrored pair plant the
    # same ones.
    canaries, references = _canaries(frame, merchant, setup, rng)
    planted = canaries.drop(columns=[CANARY_ID])
    new_train = pd.concat([train, planted], ignore_index=True) if len(planted) else train
    frames = dict(merchants)
    frames[merchant] = new_train.reset_index(drop=True)
    return frames, MembershipData(setup, merchant, holdout, canaries, references)


def _canaries(
    frame: pd.DataFrame, merchant: str, setup: MembershipSetup, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canary rows and their references, drawn from the merchant's whole frame."""
    columns = [*frame.columns, CANARY_ID]
    if not setup.canaries:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=columns)
    products = frame.drop_duplicates("product_id").reset_index(drop=True)
    picks = rng.choice(len(products), size=setup.canaries, replace=setup.canaries > len(products))
    width = len(str(frame[USER_ID].iloc[0])) if USER_ID in frame.columns and len(frame) else 32
    planted, refs, seen = [], [], set(frame["query"].astype(str))
    for i, pick in enumerate(picks):
        base = products.iloc[int(pick)].to_dict()
        canary_id = f"{merchant}-canary{i:03d}"
        codes = _fresh_codes(rng, 1 + setup.references, seen)
        row = {
            **base,
            "query_id": canary_id,
            "query": codes[0],
            "label": 1,
            "relevance": 3,
            "position": 1,
            CANARY_ID: canary_id,
        }
        if USER_ID in frame.columns:
            row[USER_ID] = _shopper_hash(setup.seed, i, width)
        # Repeats need their own query ids: a (query_id, product_id) pair is unique in a file.
        planted.extend({**row, "query_id": f"{canary_id}-r{r}"} for r in range(setup.repeats))
        for j, code in enumerate(codes[1:]):
            refs.append({**row, "query_id": f"{canary_id}-ref{j:04d}", "query": code})
    cast = {c: frame[c].dtype for c in frame.columns}
    return (
        pd.DataFrame(planted, columns=columns).astype(cast),
        pd.DataFrame(refs, columns=columns).astype(cast),
    )


def _fresh_codes(rng: np.random.Generator, n: int, seen: set[str]) -> list[str]:
    codes: list[str] = []
    while len(codes) < n:
        code = code_query(rng)
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


# --------------------------------------------------------------------------- files


def membership_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / MEMBERSHIP_DIR


def write_membership(data: MembershipData, data_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``membership/`` into a data folder; returns the files written."""
    folder = membership_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (
        (HOLDOUT_FILE, data.holdout),
        (CANARIES_FILE, data.canaries),
        (REFERENCES_FILE, data.references),
    ):
        path = folder / name
        frame.to_parquet(path, index=False)
        written.append(path)
    setup = {
        **asdict(data.setup),
        "rows": {
            "holdout": len(data.holdout),
            "canary_rows": len(data.canaries),
            "references": len(data.references),
        },
    }
    path = folder / SETUP_FILE
    path.write_text(json.dumps(setup, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    return written


def read_membership(data_dir: str | os.PathLike[str]) -> MembershipData:
    """Read ``membership/`` from a data folder; a missing or broken one is one-line error."""
    folder = membership_dir(data_dir)
    setup_path = folder / SETUP_FILE
    if not setup_path.is_file():
        raise EcrecError(
            f"{setup_path}: missing: this run's data has no held-out rows to audit against "
            "(make audit-ready data with `ecrec data synth --out DIR --audit-holdout 0.5 "
            "--canaries 8`, then `ecrec simulate --data DIR`)"
        )
    try:
        raw: dict[str, Any] = json.loads(setup_path.read_text("utf-8"))
        merchant = str(raw["merchant"])
        fields = {k: raw[k] for k in MembershipSetup.__dataclass_fields__ if k in raw}
        setup = MembershipSetup(**fields)
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as err:
        raise EcrecError(f"{setup_path}: not a membership setup: {err}") from None
    frames = []
    for name in (HOLDOUT_FILE, CANARIES_FILE, REFERENCES_FILE):
        path = folder / name
        try:
            frames.append(pd.read_parquet(path))
        except FileNotFoundError:
            raise EcrecError(f"{path}: missing") from None
        except Exception as err:  # pyarrow raises several kinds for a torn file
            raise EcrecError(f"{path}: unreadable parquet: {err}") from None
    holdout, canaries, references = frames
    if not len(holdout):
        raise EcrecError(f"{folder / HOLDOUT_FILE}: no held-out rows")
    return MembershipData(setup, merchant, holdout, canaries, references)


__all__ = [
    "CANARY_ID",
    "MEMBERSHIP_DIR",
    "MembershipData",
    "MembershipSetup",
    "code_query",
    "membership_dir",
    "plant_membership_audit",
    "read_membership",
    "write_membership",
]
