"""``ecrec data synth`` options that make audit-ready data (see :mod:`ecrec.privacy.audit_data`).

``--audit-holdout F`` holds a share F of one merchant's shoppers out of its training
file as the membership audit's non-members; ``--canaries K`` plants K canaries in that
merchant's file. ``ecrec simulate --data DIR`` then trains on the rest, and
``ecrec privacy audit RUN`` attacks the run's global ranker.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecrec.cli.args import non_negative_int, open_fraction


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """The membership-audit options of ``ecrec data synth``."""
    group = parser.add_argument_group(
        "membership audit (for `ecrec privacy audit`)",
        "hold out some of one merchant's shoppers as non-members and plant canaries; "
        "written to DIR/membership/",
    )
    group.add_argument(
        "--audit-holdout",
        type=open_fraction,
        metavar="F",
        help="share of the audited merchant's shoppers held out of its training file "
        "(default 0.5 when --canaries is given; off otherwise)",
    )
    group.add_argument(
        "--audit-merchant", metavar="ID", default="", help="merchant to audit (default: largest)"
    )
    group.add_argument(
        "--canaries",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="canaries to plant (default 0)",
    )
    group.add_argument(
        "--canary-repeats", type=non_negative_int, default=1, metavar="R", help="rows per canary"
    )
    group.add_argument(
        "--canary-references",
        type=non_negative_int,
        default=199,
        metavar="N",
        help="never-inserted candidates each canary is ranked among (default 199)",
    )
    group.add_argument(
        "--audit-seed", type=non_negative_int, default=0, metavar="S", help="split seed"
    )
    group.add_argument(
        "--audit-mirror",
        action="store_true",
        help="hold out the shoppers the same seed would keep (the mirrored half of a paired "
        "audit: `ecrec privacy audit RUN --mirror RUN2`)",
    )


def plant_from_args(
    args: argparse.Namespace, marketplace: Any
) -> tuple[Any, Callable[[Path], Any] | None]:
    """The marketplace to write and a writer for ``membership/`` (None: no audit asked)."""
    if args.audit_holdout is None and not args.canaries:
        if args.audit_mirror:
            from ecrec.errors import ConfigError

            raise ConfigError("--audit-mirror needs --audit-holdout or --canaries")
        return marketplace, None
    from ecrec.privacy.audit_data import (
        MembershipSetup,
        plant_membership_audit,
        write_membership,
    )

    setup = MembershipSetup(
        merchant=args.audit_merchant,
        holdout=0.5 if args.audit_holdout is None else args.audit_holdout,
        canaries=args.canaries,
        repeats=args.canary_repeats,
        references=args.canary_references,
        seed=args.audit_seed,
        mirror=args.audit_mirror,
    )
    frames, membership = plant_membership_audit(marketplace.merchants, setup)
    print(
        f"  membership audit: merchant {membership.merchant}, {len(membership.holdout)} rows "
        f"of {membership.holdout.get('user_id_hash', membership.holdout['query_id']).nunique()} "
        f"shoppers held out, {setup.canaries} canaries x {setup.repeats} rows planted, "
        f"{setup.references} references each{' (mirrored split)' if setup.mirror else ''}"
    )
    return dataclasses.replace(marketplace, merchants=frames), (
        lambda folder: write_membership(membership, folder)
    )


__all__ = ["add_audit_options", "plant_from_args"]
