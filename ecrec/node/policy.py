"""The merchant's own privacy policy: what no request from the server may weaken.

A node's policy comes from its merchant -- ``ecrec-client`` flags and/or a TOML policy
file on the node, ``ecrec simulate --node-policy FILE`` for simulated nodes -- never
from the server. Every round the node checks what the server asks for (the ecrec run
config shipped with the round, and the SecAgg+ setup) against it and declines whatever
conflicts, naming the setting. Nothing here trains or touches data: the checks are pure
functions that return the violations, so they are cheap to run in a Flower mod before a
single byte leaves the node.

Policy file (TOML; kebab-case keys; unknown keys are refused)::

    [policy]
    budget-epsilon = 8.0
    max-delta = 1e-5
    min-noise-multiplier = 0.5
    min-trainers = 3
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ecrec.errors import ConfigError, EcrecError

if TYPE_CHECKING:
    from ecrec.config import RunConfig

Unit = Literal["user", "row"]


class PolicyDeclined(EcrecError):
    """The node declines a round because the request conflicts with its policy."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


@dataclass(frozen=True)
class Violation:
    """One server setting that the node's policy refuses, and why.

    ``reason`` is the whole story, for the node's own journal; ``public`` (when set)
    is what the server is told instead, because the full reason would disclose a
    figure of the merchant's data (its number of shoppers, the ε a round costs).
    """

    setting: str
    reason: str
    public: str | None = None

    def __str__(self) -> str:
        return f"{self.setting}: {self.reason}"

    def told_server(self) -> str:
        return f"{self.setting}: {self.public or self.reason}"


@dataclass(frozen=True)
class NodePolicy:
    """What this merchant's node guarantees whatever the server asks."""

    budget_epsilon: float = field(
        default=8.0, metadata={"help": "the merchant's total ε budget on this node's data"}
    )
    allow_non_private: bool = field(
        default=False,
        metadata={"help": "accept train.dp = false (benchmarks only; never for real shoppers)"},
    )
    max_delta: float = field(
        default=1e-5,
        metadata={"help": "δ ceiling; the node also never accepts δ above 1/(number of units)"},
    )
    accountant: str = field(
        default="pld", metadata={"help": "the accountant this node spends and calibrates with"}
    )
    min_noise_multiplier: float = field(
        default=0.5, metadata={"help": "σ floor: the node never trains with less noise"}
    )
    max_epsilon_per_round: float = field(
        default=0.0, metadata={"help": "cap on the ε one round may spend; 0 = no cap"}
    )
    require_secagg: bool = field(
        default=True, metadata={"help": "send updates only masked by SecAgg+"}
    )
    min_reconstruction_threshold: int = field(
        default=2, metadata={"help": "smallest SecAgg+ reconstruction threshold accepted"}
    )
    min_trainers: int = field(
        default=3,
        metadata={
            "help": "smallest number of merchants whose updates may be summed with this one's"
        },
    )
    allow_server_seed: bool = field(
        default=False,
        metadata={"help": "accept a train.seed from the server (tests only: it makes noise known)"},
    )
    unit: Literal["auto", "user", "row"] = field(
        default="auto",
        metadata={"help": '"user" wherever shopper ids exist ("auto"), or force "user"/"row"'},
    )
    disclose_epsilon: bool = field(
        default=False, metadata={"help": "report ε spent and remaining to the server"}
    )
    disclose_example_count: bool = field(
        default=False,
        metadata={"help": "allow example-count weighting (the server then learns the row count)"},
    )
    allowed_base_models: tuple[str, ...] = field(
        default=("minilm", "tiny"),
        metadata={"help": "base models the server may ask this node to load (names or folders)"},
    )
    keep_sent_updates: bool = field(
        default=False,
        metadata={"help": "keep a copy of every update this node released, for its own audit"},
    )

    def __post_init__(self) -> None:
        from ecrec.privacy.accounting import ACCOUNTANTS

        checks = (
            (self.budget_epsilon > 0 and math.isfinite(self.budget_epsilon), "budget-epsilon > 0"),
            (0 < self.max_delta < 1, "max-delta in (0, 1)"),
            (self.min_noise_multiplier >= 0, "min-noise-multiplier >= 0"),
            (self.max_epsilon_per_round >= 0, "max-epsilon-per-round >= 0"),
            (self.min_reconstruction_threshold >= 1, "min-reconstruction-threshold >= 1"),
            (self.min_trainers >= 1, "min-trainers >= 1"),
        )
        for ok, rule in checks:
            if not ok:
                raise ConfigError(f"node policy: {rule} is required")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"node policy: accountant must be one of {', '.join(ACCOUNTANTS)}, "
                f"got {self.accountant!r}"
            )
        object.__setattr__(self, "allowed_base_models", tuple(self.allowed_base_models))
        if self.unit not in ("auto", "user", "row"):
            raise ConfigError(
                f'node policy: unit must be "auto", "user" or "row", got {self.unit!r}'
            )

    def unit_for(self, *, has_user_ids: bool) -> Unit:
        """The DP unit this node trains with on its data."""
        if self.unit == "auto":
            return "user" if has_user_ids else "row"
        return self.unit

    def delta_ceiling(self, units: int) -> float:
        """δ this node accepts: the policy's ceiling and at most 1/n (n = DP units)."""
        return min(self.max_delta, 1.0 / max(1, units))


def load_policy(path: str | Path) -> NodePolicy:
    """Read a policy file (``[policy]`` table, kebab-case keys); errors name the file."""
    from ecrec.config import section_from_mapping

    path = Path(path)
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: node policy file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read node policy: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    extra = sorted(set(document) - {"policy"})
    if extra:
        raise ConfigError(f"{path}: unknown table [{extra[0]}] (a policy file has [policy])")
    table = document.get("policy", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [policy] must be a table")
    try:
        return section_from_mapping(NodePolicy, table, where=f"{path}: policy")
    except ConfigError as err:
        message = str(err)
        raise ConfigError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None


def policy_to_toml(policy: NodePolicy) -> str:
    """The policy as a file ``load_policy`` reads back unchanged."""
    import dataclasses

    import tomli_w

    values = {f.name.replace("_", "-"): getattr(policy, f.name) for f in dataclasses.fields(policy)}
    return tomli_w.dumps({"policy": values})


# --------------------------------------------------------------------------- the checks


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


def check_noise(policy: NodePolicy, *, sigma: float, round_epsilon: float) -> list[Violation]:
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
                f"this round would spend ε={round_epsilon:.4g}, "
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
    "NodePolicy",
    "PolicyDeclined",
    "Unit",
    "Violation",
    "check_noise",
    "check_peers",
    "check_request",
    "check_secagg_setup",
    "check_unmask",
    "load_policy",
    "policy_to_toml",
]
