"""The node's checks of what the server sends, against the merchant's policy.

Pure functions returning the violations (empty: allowed), so they cost nothing and
can run in a Flower mod before a single byte leaves the node: the round's request
(:func:`check_request`), the noise it would need (:func:`check_noise`), and each
SecAgg+ stage (:func:`check_secagg_setup`, :func:`check_peers`, :func:`check_unmask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ecrec.node.policy import NodePolicy, Violation

if TYPE_CHECKING:
    from ecrec.config import RunConfig


def check_request(
    policy: NodePolicy,
    request: RunConfig,
    *,
    units: int,
    has_user_ids: bool,
    ledger_delta: float,
    ledger_accountant: str,
    federated: bool = True,
) -> list[Violation]:
    """Every way the server's run config would weaken this node's promises.

    ``federated=False`` (``ecrec train``: nothing leaves the node) skips the checks of
    the aggregation the update would join.

    ``units`` is the number of DP units in the node's data (shoppers or rows);
    ``ledger_delta``/``ledger_accountant`` are what the node's ledger accounts at.
    """
    out: list[Violation] = []
    train, privacy, fed = request.train, request.privacy, request.federation
    if not train.dp and not policy.allow_non_private:
        out.append(
            Violation(
                "train.dp",
                "false asks for a non-private update; this node "
                "trains only with DP-SGD (policy allow-non-private = false)",
            )
        )
    if train.seed is not None and not policy.allow_server_seed:
        out.append(
            Violation(
                "train.seed",
                "a seed chosen by the server would make this node's "
                "DP noise and sampling predictable; noise comes only from the "
                "node's own secure randomness",
            )
        )
    ceiling = policy.delta_ceiling(units)
    if privacy.delta > ceiling:
        out.append(
            Violation(
                "privacy.delta",
                f"{privacy.delta:g} is above this node's ceiling "
                f"{ceiling:g} (policy max-delta, and at most 1/{units} units)",
                public=f"{privacy.delta:g} is above this node's δ ceiling",
            )
        )
    if ledger_delta > ceiling:
        out.append(
            Violation(
                "ledger delta",
                f"the ledger accounts at δ={ledger_delta:g}, above "
                f"1/{units} for this data; re-initialise the ledger",
                public="the node's ledger δ is too large for its data",
            )
        )
    if privacy.accountant != ledger_accountant:
        out.append(
            Violation(
                "privacy.accountant",
                f"{privacy.accountant!r}, but this node spends "
                f"and calibrates with {ledger_accountant!r}",
            )
        )
    if privacy.noise_multiplier is not None and not (
        privacy.noise_multiplier >= policy.min_noise_multiplier  # NaN is below every floor
    ):
        out.append(
            Violation(
                "privacy.noise-multiplier",
                f"{privacy.noise_multiplier:g} is below "
                f"this node's floor {policy.min_noise_multiplier:g}",
            )
        )
    if federated:
        out.extend(_federation_violations(policy, fed))
    wanted = policy.unit_for(has_user_ids=has_user_ids)
    if privacy.unit not in ("auto", wanted):
        why = (
            "its data has shopper ids, so one DP sample is one shopper"
            if wanted == "user"
            else "its data has no shopper ids"
        )
        out.append(
            Violation(
                "privacy.unit", f"{privacy.unit!r}, but this node's unit is {wanted!r} ({why})"
            )
        )
    return out


def _federation_violations(policy: NodePolicy, fed: Any) -> list[Violation]:
    """What the run asks of the aggregation this node's update would join."""
    out: list[Violation] = []
    if not fed.secagg and policy.require_secagg:
        out.append(
            Violation(
                "federation.secagg",
                "false would send this node's update unmasked; the node's policy requires SecAgg+",
            )
        )
    if fed.secagg:
        out.extend(_threshold_violations(policy, fed.reconstruction_threshold, fed.num_shares))
    if fed.min_trainers < policy.min_trainers:
        out.append(
            Violation(
                "federation.min-trainers",
                f"{fed.min_trainers} is below this "
                f"node's minimum of {policy.min_trainers} merchants per aggregate",
            )
        )
    if fed.weighting == "examples" and not policy.disclose_example_count:
        out.append(
            Violation(
                "federation.weighting",
                '"examples" would disclose this node\'s '
                "row count; its policy sends only a uniform weight",
            )
        )
    return out


def _threshold_violations(
    policy: NodePolicy, threshold: int | float, shares: int | float
) -> list[Violation]:
    """Static checks of integer SecAgg+ settings (fractions are checked at SETUP)."""
    out = []
    if isinstance(threshold, int) and threshold < policy.min_reconstruction_threshold:
        out.append(
            Violation(
                "federation.reconstruction-threshold",
                f"{threshold} is below this node's minimum {policy.min_reconstruction_threshold}",
            )
        )
    return out


def check_noise(
    policy: NodePolicy, *, sigma: float, round_epsilon: float, accountant: str = "pld"
) -> list[Violation]:
    """The noise this round would really use, against the floor and the per-round cap."""
    out = []
    if not sigma >= policy.min_noise_multiplier:  # NaN is below every floor
        out.append(
            Violation(
                "noise multiplier",
                f"this round would use σ={sigma:.4g}, below the "
                f"node's floor {policy.min_noise_multiplier:g} (too few rounds "
                "planned for the budget, or too many steps)",
                public="the noise this round would need is below the node's σ floor",
            )
        )
    cap = policy.max_epsilon_per_round
    if cap and not round_epsilon <= cap:
        out.append(
            Violation(
                "epsilon per round",
                f"this round would spend ε={round_epsilon:.4g} ({accountant}), "
                f"over the node's per-round cap {cap:g}",
                public="this round would spend more ε than the node's per-round cap",
            )
        )
    return out


def check_secagg_setup(
    policy: NodePolicy,
    *,
    sample_num: int,
    share_num: int,
    threshold: int,
    max_weight: float,
    weight: float,
) -> list[Violation]:
    """The SecAgg+ SETUP message, checked before this node sends its public keys.

    ``threshold`` shares reconstruct a node's secrets. A server that can ask two
    disjoint groups of neighbours -- one for a node's mask seed, one for its key --
    learns that node's update unless ``2 * threshold > share_num``; a threshold
    below the policy minimum lets too few colluders unmask it.
    """
    out = []
    if sample_num < policy.min_trainers:
        out.append(
            Violation(
                "secagg sample_num",
                f"only {sample_num} nodes in this round; the "
                f"node requires at least {policy.min_trainers}",
            )
        )
    if threshold < policy.min_reconstruction_threshold:
        out.append(
            Violation(
                "secagg threshold",
                f"{threshold} is below this node's minimum {policy.min_reconstruction_threshold}",
            )
        )
    if 2 * threshold <= share_num:
        out.append(
            Violation(
                "secagg threshold",
                f"{threshold} of {share_num} shares lets the "
                "server reconstruct both secrets of one node from disjoint groups "
                "(needs 2 x threshold > shares)",
            )
        )
    if share_num > sample_num:
        out.append(Violation("secagg share_num", f"{share_num} shares for {sample_num} nodes"))
    if weight > max_weight:
        out.append(
            Violation(
                "secagg max_weight",
                f"{max_weight:g} is below this node's weight {weight:g}: SecAgg+ would overflow",
            )
        )
    elif max_weight > 1024 * weight:
        out.append(
            Violation(
                "secagg max_weight",
                f"{max_weight:g} is over 1000 x this node's "
                f"weight {weight:g}: quantisation would erase its update",
            )
        )
    return out


def check_peers(policy: NodePolicy, *, peers: int) -> list[Violation]:
    """SHARE_KEYS: how many nodes (this one included) this node shares keys with."""
    if peers < policy.min_trainers:
        return [
            Violation(
                "secagg peers",
                f"keys shared with only {peers} nodes; the node "
                f"requires at least {policy.min_trainers}",
            )
        ]
    return []


def check_unmask(
    policy: NodePolicy,
    *,
    node_id: int,
    active: Sequence[int],
    dead: Sequence[int],
    contributed: bool,
) -> list[Violation]:
    """UNMASK, checked before this node reveals any share.

    A node listed both as active and dead would have its mask seed *and* its key
    reconstructed -- its individual update; too few active nodes make the sum
    another merchant's update; a node that sent no masked vector but is listed as
    active would help unmask a sum it is not part of.
    """
    out = []
    both = sorted(set(active) & set(dead))
    if both:
        out.append(
            Violation(
                "secagg unmask",
                f"nodes {both} are listed as both active and "
                "dropped: revealing both shares would unmask their updates",
            )
        )
    if len(set(active)) < policy.min_trainers:
        out.append(
            Violation(
                "secagg unmask",
                f"only {len(set(active))} active nodes to sum; "
                f"the node requires at least {policy.min_trainers}",
            )
        )
    if node_id in active and not contributed:
        out.append(
            Violation("secagg unmask", "this node sent no masked update but is listed as active")
        )
    elif contributed and node_id not in active:
        out.append(
            Violation(
                "secagg unmask", "this node sent its masked update but is not listed as active"
            )
        )
    return out


__all__ = [
    "check_noise",
    "check_peers",
    "check_request",
    "check_secagg_setup",
    "check_unmask",
]
