"""``ecrec data synth|import|validate``: make, bring in and check marketplace data.

Output contract: ``validate`` prints every problem as ``file:row: field: what is
wrong`` on stdout (one per line, so it can be piped or grepped) and a one-line
summary on stderr; progress spinners also go to stderr, so stdout stays clean.
``synth`` and ``import`` build the output folder beside ``--out`` and rename it
into place, so a failure leaves no partial output and never half-replaces an
existing marketplace. ``import`` hashes shopper ids under a secret key kept in
``--hash-key-file`` (default ``<out>.hashkey``, mode 0600), outside the data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.console import Console

from ecrec.cli.args import fraction, non_negative_int, positive_float, positive_int
from ecrec.data.io import check_output_dir, check_user_path, publish_data_dir
from ecrec.data.schema import MANIFEST_FILE
from ecrec.data.synth import Marketplace, SynthConfig, config_help, synthesize, write_marketplace
from ecrec.errors import ConfigError, DataError

_EXAMPLES = {
    "synth": "example: ecrec data synth --merchants 4 --out data/synth --seed 0",
    "import": (
        "examples:\n"
        "  ecrec data import --format esci path/to/esci --out data/esci --merchants 8\n"
        "  ecrec data import --format csv logs.csv --out data/mine --partition-by merchant \\\n"
        "      --map shop=merchant_id --map title=product_title --map clicked=label \\\n"
        "      --map shopper=user_id   # hashed with the key in data/mine.hashkey"
    ),
    "validate": "example: ecrec data validate data/synth",
}


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def _status(message: str) -> Iterator[None]:
    """A spinner on stderr while a long step runs (silent when not a terminal)."""
    console = _stderr()
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


def _summarise(marketplace: Marketplace, written: list[str], out: Path) -> None:
    """Print what was written where: one line per file, then a total."""
    merchant_rows = sum(len(df) for df in marketplace.merchants.values())
    for merchant_id, df in sorted(marketplace.merchants.items()):
        tier = str(df["merchant_tier"].iloc[0]) if len(df) else "-"
        queries = df["query_id"].nunique()
        print(f"  merchant {merchant_id}: {len(df)} rows, {queries} queries, tier {tier}")
    print(
        f"  validation: {len(marketplace.validation)} rows, "
        f"{marketplace.validation['query_id'].nunique() if len(marketplace.validation) else 0} "
        "queries"
    )
    print(
        f"wrote {len(written)} files to {out} "
        f"({len(marketplace.merchants)} merchants, {merchant_rows} merchant rows, "
        f"{len(marketplace.validation)} validation rows; see {out / MANIFEST_FILE})"
    )


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a seeded synthetic marketplace."""
    config = SynthConfig(
        merchants=args.merchants,
        queries_per_merchant=args.queries_per_merchant,
        candidates_per_query=args.candidates,
        validation_queries=args.validation_queries,
        seed=args.seed,
        user_id_salt=args.salt,
    )
    out = check_user_path(args.out, option="--out").absolute()
    check_output_dir(out, replace=args.force)
    with _status(f"synthesising {config.merchants} merchants (seed {config.seed})"):
        from ecrec.cli.membership import plant_from_args

        marketplace, write_membership = plant_from_args(args, synthesize(config))
        written = _publish(marketplace, out, replace=args.force, also=write_membership)
    _summarise(marketplace, written, out)
    return 0


def _publish(
    marketplace: Marketplace,
    out: Path,
    *,
    replace: bool,
    before_rename: Callable[[], None] | None = None,
    also: Callable[[Path], Any] | None = None,
) -> list[str]:
    """Write ``marketplace`` into a temp folder beside ``out`` and rename it into place.

    ``before_rename`` runs once the data is complete and before it appears
    under ``out`` (the import writes a new hash key there).
    """
    names: list[str] = []

    def write(folder: Path) -> None:
        names.extend(p.name for p in write_marketplace(marketplace, folder))
        if also is not None:  # e.g. membership/ (ecrec.cli.membership)
            names.extend(str(p.relative_to(folder)) for p in also(folder))
        if before_rename is not None:
            before_rename()

    publish_data_dir(write, out, replace=replace)
    return names


def _hash_key_path(args: argparse.Namespace, out: Path) -> Path:
    from ecrec.data.desensitize import default_hash_key_path

    if args.hash_key_file:
        path = check_user_path(args.hash_key_file, option="--hash-key-file").absolute()
    else:
        path = default_hash_key_path(out)
    resolved, folder = path.resolve(), out.resolve()
    if resolved == folder or folder in resolved.parents:
        raise ConfigError(
            f"--hash-key-file: {path} is inside the output folder {out}; "
            "keep the key out of the data it protects"
        )
    return path


def cmd_import(args: argparse.Namespace) -> int:
    """Import ESCI, WANDS, CSV or JSONL into a desensitised, partitioned marketplace."""
    from ecrec.data.desensitize import new_hash_key, read_hash_key, write_hash_key
    from ecrec.data.importers import import_dataset, parse_mapping

    mapping = parse_mapping(args.map)
    src = check_user_path(args.src, option="SRC")
    out = check_user_path(args.out, option="--out").absolute()
    key_path = _hash_key_path(args, out)
    check_output_dir(out, replace=args.force)  # refuse before the (long) import
    key_existed = key_path.exists() or key_path.is_symlink()
    key = read_hash_key(key_path) if key_existed else new_hash_key()
    created_key = False

    def save_new_key() -> None:
        nonlocal created_key
        if marketplace.meta.get("user_id_hash") and not key_existed:
            write_hash_key(key_path, key)
            created_key = True

    with _status(f"importing {args.format} data from {src}"):
        marketplace = import_dataset(
            args.format,
            src,
            mapping=mapping or None,
            partition_by=args.partition_by,
            n_merchants=args.merchants,
            alpha=args.alpha,
            seed=args.seed,
            validation_fraction=args.validation_fraction,
            dirichlet_by=args.dirichlet_by,
            hash_key=key,
            encoding=args.encoding,
        )
        try:
            written = _publish(marketplace, out, replace=args.force, before_rename=save_new_key)
        except BaseException:
            if created_key:  # the data it hashed was never published
                key_path.unlink(missing_ok=True)
            raise
    _summarise(marketplace, written, out)
    if marketplace.meta.get("user_id_hash"):
        state = "new; keep it secret and reuse it for re-imports" if created_key else "reused"
        print(f"shopper ids hashed with the key in {key_path} ({state})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """List every contract violation; exit 2 if there is any."""
    from ecrec.data.io import check_path

    path = check_user_path(args.path, option="PATH")
    with _status(f"validating {path}"):
        report = check_path(path)
    for problem in report.problems:
        print(problem)
    if report.problems:
        n = len(report.problems)
        files = f"{report.files} file{'s' if report.files != 1 else ''}"
        print(
            f"{n} problem{'s' if n != 1 else ''} in {files} ({report.rows} rows read)",
            file=sys.stderr,
        )
        return DataError.exit_code
    files = f"{report.files} file{'s' if report.files != 1 else ''}"
    print(f"ok: {report.rows} rows in {files}")
    return 0


def _add_synth(data_sub: Any) -> None:
    helps = config_help()
    defaults = {f.name: f.default for f in fields(SynthConfig)}
    parser = data_sub.add_parser(
        "synth",
        help="write a seeded synthetic marketplace",
        description="Write a seeded, non-IID synthetic marketplace: one parquet file per "
        "merchant, a pooled validation shard and a manifest stating the hidden relevance rule.",
        epilog=_EXAMPLES["synth"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    parser.add_argument(
        "--merchants", type=positive_int, default=defaults["merchants"], help=helps["merchants"]
    )
    parser.add_argument(
        "--queries-per-merchant",
        type=positive_int,
        default=defaults["queries_per_merchant"],
        help=helps["queries_per_merchant"],
    )
    parser.add_argument(
        "--candidates",
        type=positive_int,
        default=defaults["candidates_per_query"],
        help=helps["candidates_per_query"],
    )
    parser.add_argument(
        "--validation-queries",
        type=non_negative_int,
        default=defaults["validation_queries"],
        help=helps["validation_queries"],
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=defaults["seed"], help=helps["seed"]
    )
    parser.add_argument("--salt", default=defaults["user_id_salt"], help=helps["user_id_salt"])
    parser.add_argument(
        "--force", action="store_true", help="replace a marketplace already in --out"
    )
    from ecrec.cli.membership import add_audit_options

    add_audit_options(parser)
    parser.set_defaults(handler=cmd_synth)


def _add_import(data_sub: Any) -> None:
    parser = data_sub.add_parser(
        "import",
        help="import ESCI, WANDS, CSV or JSONL data",
        description="Import a search log into ecrec's data contract: text is desensitised, "
        "user ids hashed, whole queries split into merchants, and a fraction of every "
        "merchant's queries held out as the server's validation shard.",
        epilog=_EXAMPLES["import"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="source file or folder")
    parser.add_argument(
        "--format", required=True, choices=("esci", "wands", "csv", "jsonl"), help="source format"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    parser.add_argument(
        "--map",
        action="append",
        metavar="COLUMN=FIELD",
        help="map a source column onto a contract field (csv/jsonl; repeatable)",
    )
    parser.add_argument(
        "--partition-by",
        choices=("merchant", "dirichlet"),
        default="dirichlet",
        help="use the data's merchant_id column, or a seeded Dirichlet split (default)",
    )
    parser.add_argument(
        "--dirichlet-by",
        choices=("query", "category"),
        default="query",
        help="skew merchant sizes (query, default) or category mixes (category)",
    )
    parser.add_argument(
        "--merchants", type=positive_int, default=4, help="merchants for a Dirichlet split"
    )
    parser.add_argument(
        "--alpha",
        type=positive_float,
        default=0.5,
        help="Dirichlet concentration: small is skewed, large is even (default 0.5)",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    parser.add_argument(
        "--hash-key-file",
        metavar="FILE",
        help="secret key for hashing shopper ids (user_id): reused if it exists, else created "
        "with mode 0600 when the data has user ids; default <out>.hashkey beside --out, never "
        "inside it",
    )
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of csv/jsonl/WANDS files (default: UTF-8, or what a byte-order "
        "mark says), e.g. latin-1 or cp1252",
    )
    parser.add_argument(
        "--validation-fraction",
        type=fraction,
        default=0.1,
        help="share of each merchant's queries held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a marketplace already in --out"
    )
    parser.set_defaults(handler=cmd_import)


def _add_validate(data_sub: Any) -> None:
    parser = data_sub.add_parser(
        "validate",
        help="check parquet files against the data contract",
        description="Check a parquet file, or every parquet file in a folder, against the "
        "data contract. Prints every problem as FILE:ROW: FIELD: MESSAGE; exits 2 if any.",
        epilog=_EXAMPLES["validate"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="parquet file or folder")
    parser.set_defaults(handler=cmd_validate)


def register(subparsers: Any) -> None:
    """Add the ``data`` command group to the top-level parser."""
    parser = subparsers.add_parser(
        "data",
        help="make, import and validate marketplace data",
        description="Make, import and validate marketplace data.",
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    adders: tuple[Callable[[Any], None], ...] = (_add_synth, _add_import, _add_validate)
    for add in adders:
        add(data_sub)
