"""DP units: which rows form one DP sample (a shopper's rows, or one impression row).

A shopper's rows are summed and clipped once, so ε is per shopper; rows beyond
``max_rows_per_user`` are dropped, keeping a deterministic subset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.data.schema import USER_ID
from ecrec.errors import DataError

Unit = Literal["user", "row"]


@dataclass(frozen=True)
class DPUnits:
    """Which rows train, and which DP unit (shopper or row) each belongs to."""

    rows: np.ndarray  # indices into the frame of the rows kept
    unit_of_row: np.ndarray  # unit index 0..n_units-1 for each kept row
    n_units: int
    unit: Unit


def dp_units(frame: pd.DataFrame, *, unit: Unit, max_rows_per_user: int = 32) -> DPUnits:
    """Group a merchant's rows into DP units.

    ``"row"``: every impression is its own unit. ``"user"``: all of a shopper's rows
    (``user_id_hash``) form one unit, at most ``max_rows_per_user`` of them; which rows
    a heavy shopper keeps is a fixed choice seeded by the shopper's id hash, so every
    round trains on the same rows and nobody outside the node can steer it.
    """
    n = len(frame)
    if unit == "row":
        idx = np.arange(n)
        return DPUnits(rows=idx, unit_of_row=idx.copy(), n_units=n, unit="row")
    if USER_ID not in frame.columns:
        raise DataError(f"privacy unit 'user' needs a {USER_ID} column (shopper ids)")
    users = frame[USER_ID].astype(str).to_numpy()
    if (users == "").any() or pd.isna(frame[USER_ID]).any():
        raise DataError(f"privacy unit 'user': some rows have no {USER_ID}")
    keep: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    codes, uniques = pd.factorize(users, sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for u, user in enumerate(uniques):
        rows = order[bounds[u] : bounds[u + 1]]
        if len(rows) > max_rows_per_user:
            rows = np.sort(rows[_keep_order(frame, rows, str(user))[:max_rows_per_user]])
        keep.append(rows)
        owner.append(np.full(len(rows), u))
    return DPUnits(
        rows=np.concatenate(keep),
        unit_of_row=np.concatenate(owner),
        n_units=len(uniques),
        unit="user",
    )


def _keep_order(frame: pd.DataFrame, rows: np.ndarray, user: str) -> np.ndarray:
    """A fixed order of one shopper's rows, from a hash of the shopper and each row's
    content (query and product): the rows kept never depend on where they sit in the file."""
    columns = [c for c in ("query_id", "product_id", "query", "product_title") if c in frame]
    parts = frame.iloc[rows][columns].astype(str).agg("\x1f".join, axis=1)
    keys = [hashlib.sha256(f"{user}\x1f{text}".encode()).digest() for text in parts]
    return np.array(sorted(range(len(rows)), key=keys.__getitem__))


def _rows_by_unit(groups: DPUnits) -> list[Any]:
    import torch

    order = np.argsort(groups.unit_of_row, kind="stable")
    bounds = np.searchsorted(groups.unit_of_row[order], np.arange(groups.n_units + 1))
    return [torch.as_tensor(order[bounds[u] : bounds[u + 1]]) for u in range(groups.n_units)]
