"""Splitting one impressions table into per-merchant shards.

Public data sets (ESCI, WANDS) have no merchants, so federated experiments need
a split. Two rules hold for every split here:

* whole queries move together: a query's impressions are one ranking list, and
  cutting it across merchants would make per-merchant NDCG meaningless;
* the split is a pure function of the data and the seed;
* every column travels with its rows (``user_id_hash`` included, so a
  shopper's rows can still be grouped as one privacy unit in each shard).

``partition_dirichlet`` is the usual way to make a split non-IID: a Dirichlet
draw with concentration ``alpha`` decides how unevenly queries (``by="query"``:
size skew) or each category's queries (``by="category"``: category
specialisation) spread over merchants. Small ``alpha`` (0.1) is very skewed,
large ``alpha`` (100) is close to even.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ecrec.data.schema import check_merchant_id, is_safe_name, merchant_ids, tiers_by_size
from ecrec.errors import ConfigError, DataError

DirichletBy = Literal["query", "category"]


def _with_merchant(df: pd.DataFrame, merchant_id: str, tier: str) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    out["merchant_id"] = pd.Series([merchant_id] * len(out), dtype="str")
    out["merchant_tier"] = pd.Series([tier] * len(out), dtype="str")
    return out


def partition_by_merchant(df: pd.DataFrame, *, source: str = "data") -> dict[str, pd.DataFrame]:
    """Split on the existing ``merchant_id`` column; tiers are (re)assigned by row count.

    Merchant ids become file names, so each must pass
    :func:`~ecrec.data.schema.check_merchant_id`; errors name ``source`` and the row.
    """
    if "merchant_id" not in df.columns:
        raise DataError(
            "merchant_id: column not in the data; map one with --map COLUMN=merchant_id "
            "or use --partition-by dirichlet"
        )
    ids = df["merchant_id"]
    if ids.isna().any() or ids.astype("str").str.strip().eq("").any():
        row = int((ids.isna() | ids.astype("str").str.strip().eq("")).to_numpy().argmax()) + 1
        raise DataError(f"{source}:{row}: merchant_id: empty value")
    keys = ids.astype("str")
    groups = {str(m): g for m, g in df.groupby(keys, sort=True)}
    for merchant_id in groups:
        if not is_safe_name(merchant_id):
            row = int((keys == merchant_id).to_numpy().argmax()) + 1
            check_merchant_id(merchant_id, source=source, row=row)
    tiers = tiers_by_size({m: len(g) for m, g in groups.items()})
    return {m: _with_merchant(g, m, tiers[m]) for m, g in groups.items()}


def _query_categories(df: pd.DataFrame, query_ids: pd.Index) -> np.ndarray:
    """One category per query: the category of its most relevant (else first) impression."""
    if "category" not in df.columns:
        raise DataError(
            "category: column not in the data, so it cannot be split by category; "
            "use by='query' (--dirichlet-by query)"
        )
    ranked = df.assign(_qid=df["query_id"].astype("str"), _cat=df["category"].astype("str"))
    if "relevance" in ranked.columns:
        ranked = ranked.sort_values("relevance", ascending=False, kind="stable")
    first = ranked.groupby("_qid", sort=False)["_cat"].first()
    return first.reindex(query_ids).to_numpy()


def _fill_empty(assignment: np.ndarray, n_merchants: int, rng: np.random.Generator) -> None:
    """Give every empty merchant one query from the currently largest one."""
    for merchant in range(n_merchants):
        if (assignment == merchant).any():
            continue
        counts = np.bincount(assignment, minlength=n_merchants)
        donor = int(counts.argmax())
        candidates = np.flatnonzero(assignment == donor)
        assignment[candidates[int(rng.integers(len(candidates)))]] = merchant


def partition_dirichlet(
    df: pd.DataFrame,
    *,
    n_merchants: int,
    alpha: float,
    seed: int,
    by: DirichletBy = "query",
) -> dict[str, pd.DataFrame]:
    """Assign whole queries to ``n_merchants`` merchants with Dirichlet(``alpha``) skew.

    ``by="query"`` draws one set of merchant shares and assigns each query by
    it (size skew); ``by="category"`` draws shares per category (category
    specialisation). Every merchant gets at least one query; merchant ids are
    ``m00, m01, ...`` and the largest quarter by rows is tier ``large``.
    """
    if n_merchants < 1:
        raise ConfigError(f"merchants must be at least 1, got {n_merchants}")
    if not alpha > 0:
        raise ConfigError(f"alpha must be positive, got {alpha}")
    if by not in ("query", "category"):
        raise ConfigError(f"dirichlet split must be by 'query' or 'category', got {by!r}")
    if "query_id" not in df.columns:
        raise DataError("query_id: column not in the data")
    qids = df["query_id"].astype("str")
    query_ids = pd.Index(pd.unique(qids))
    if len(query_ids) < n_merchants:
        raise DataError(
            f"query_id: only {len(query_ids)} queries, cannot give each of "
            f"{n_merchants} merchants at least one"
        )
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(query_ids), dtype=np.int64)
    if by == "query":
        shares = rng.dirichlet(np.full(n_merchants, alpha))
        assignment[:] = rng.choice(n_merchants, size=len(query_ids), p=shares)
    else:
        categories = _query_categories(df, query_ids)
        for category in sorted(set(categories.tolist())):
            members = np.flatnonzero(categories == category)
            shares = rng.dirichlet(np.full(n_merchants, alpha))
            assignment[members] = rng.choice(n_merchants, size=len(members), p=shares)
    _fill_empty(assignment, n_merchants, rng)

    ids = merchant_ids(n_merchants)
    row_merchant = pd.Series(assignment, index=query_ids).reindex(qids).to_numpy()
    groups = {ids[m]: df[row_merchant == m] for m in range(n_merchants)}
    tiers = tiers_by_size({m: len(g) for m, g in groups.items()})
    return {m: _with_merchant(g, m, tiers[m]) for m, g in groups.items()}
