"""The merchant's own privacy policy: what no request from the server may weaken.

A node's policy comes from its merchant -- ``ecrec-client`` flags and/or a TOML policy
file on the node, ``ecrec simulate --node-policy FILE`` for simulated nodes -- never
from the server. Every round the node checks what the server asks for (the ecrec run
config shipped with the round, and the SecAgg+ setup) against it and declines whatever
conflicts, naming the setting. Nothing here trains or touches data: the checks are pure
functions that return the violations, so they are cheap to run in a Flower mod before a
single byte leaves the node (:mod:`ecrec.node.checks`).

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
from typing import TYPE_CHECKING, Literal

from ecrec.errors import ConfigError, EcrecError, one_line, toml_problem

if TYPE_CHECKING:
    pass

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
                f"got {self.accountant!r:.60}"
            )
        object.__setattr__(self, "allowed_base_models", tuple(self.allowed_base_models))
        if self.unit not in ("auto", "user", "row"):
            raise ConfigError(
                f'node policy: unit must be "auto", "user" or "row", got {self.unit!r:.60}'
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
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, or an absurd number/nesting
        raise ConfigError(f"{path}: invalid TOML: {toml_problem(err)}") from None
    extra = sorted(set(document) - {"policy"})
    if extra:
        raise ConfigError(f"{path}: unknown table [{extra[0]}] (a policy file has [policy])")
    table = document.get("policy", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [policy] must be a table")
    try:
        return section_from_mapping(NodePolicy, table, where=f"{path}: policy")
    except ConfigError as err:
        message = one_line(str(err))
        raise ConfigError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None


def policy_to_toml(policy: NodePolicy) -> str:
    """The policy as a file ``load_policy`` reads back unchanged."""
    import dataclasses

    import tomli_w

    values = {f.name.replace("_", "-"): getattr(policy, f.name) for f in dataclasses.fields(policy)}
    return tomli_w.dumps({"policy": values})


__all__ = [
    "NodePolicy",
    "PolicyDeclined",
    "Unit",
    "Violation",
    "load_policy",
    "policy_to_toml",
]
