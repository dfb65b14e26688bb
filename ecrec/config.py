"""Typed run configuration, loaded from TOML with kebab-case keys.

Each TOML table maps onto one frozen dataclass (``[model]`` ->
:class:`~ecrec.model.RankerConfig`, ``[train]`` -> :class:`~ecrec.train.TrainConfig`,
...). Unknown keys and wrongly typed values are refused with the file and key
named, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ecrec.errors import ConfigError, one_line, toml_problem
from ecrec.fairness.config import AuditConfig
from ecrec.model.ranker import RankerConfig
from ecrec.toml_tables import _check_type, section_from_mapping
from ecrec.train.local import TrainConfig

DEFAULT_CONFIG = "default.toml"


@dataclass(frozen=True)
class DataConfig:
    """Where merchants' data comes from."""

    dir: str = field(
        default="",
        metadata={"help": "folder written by `ecrec data synth|import`; empty = synthesize"},
    )
    merchants: int = field(default=3, metadata={"help": "merchants to synthesize"})
    queries_per_merchant: int = field(default=40, metadata={"help": "synthetic queries scale"})
    candidates_per_query: int = field(default=10, metadata={"help": "products shown per query"})
    validation_queries: int = field(default=40, metadata={"help": "queries in the pooled shard"})
    seed: int = field(default=0, metadata={"help": "synthetic marketplace seed"})


@dataclass(frozen=True)
class PrivacyConfig:
    """What the federation asks of each merchant's DP-SGD. A request, not a guarantee:
    every node checks it against its own policy (:mod:`ecrec.node.policy`) and its own
    budget, and declines a round that would weaken either."""

    budget_epsilon: float = field(
        default=8.0,
        metadata={"help": "ε the run plans to spend per merchant; each node caps it by its own"},
    )
    delta: float = field(default=1e-5, metadata={"help": "δ of the (ε, δ) guarantee"})
    accountant: Literal["pld", "rdp", "prv"] = field(
        default="pld",
        metadata={"help": '"pld" (tight, default), "rdp" or "prv": what each ε is computed with'},
    )
    noise_multiplier: float | None = field(
        default=None,
        metadata={"help": "explicit σ; unset = calibrate σ to spend the budget over all rounds"},
    )
    unit: Literal["auto", "user", "row"] = field(
        default="auto",
        metadata={
            "help": 'the DP unit: "user" (one shopper = all their rows), "row" (one impression), '
            'or "auto" (user wherever shopper ids exist, row otherwise)'
        },
    )
    max_rows_per_user: int = field(
        default=32,
        metadata={"help": "with unit = user: rows kept per shopper (a fixed per-shopper choice)"},
    )

    def __post_init__(self) -> None:
        if not self.budget_epsilon > 0:
            raise ConfigError(f"privacy.budget-epsilon must be > 0, got {self.budget_epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if self.accountant not in ("pld", "rdp", "prv"):
            raise ConfigError(
                f'privacy.accountant must be "pld", "rdp" or "prv", got {self.accountant!r}'
            )
        if self.unit not in ("auto", "user", "row"):
            raise ConfigError(f'privacy.unit must be "auto", "user" or "row", got {self.unit!r}')
        if self.max_rows_per_user < 1:
            raise ConfigError(
                f"privacy.max-rows-per-user must be >= 1, got {self.max_rows_per_user}"
            )


@dataclass(frozen=True)
class FederationConfig:
    """Rounds, aggregation and secure aggregation."""

    rounds: int = field(default=3, metadata={"help": "federated rounds"})
    strategy: Literal["fedavg", "fedprox", "fedadam"] = field(
        default="fedavg", metadata={"help": "aggregation strategy"}
    )
    proximal_mu: float = field(default=0.01, metadata={"help": "FedProx proximal weight"})
    server_learning_rate: float = field(default=0.01, metadata={"help": "FedAdam server lr"})
    secagg: bool = field(default=True, metadata={"help": "SecAgg+ (masking) on the updates"})
    num_shares: int | float = field(
        default=3,
        metadata={"help": "SecAgg+ shares per client: an integer > 2, or a fraction of clients"},
    )
    reconstruction_threshold: int | float = field(
        default=2,
        metadata={"help": "SecAgg+ shares needed to unmask: integer < num-shares, or a fraction"},
    )
    clipping_range: float = field(default=8.0, metadata={"help": "SecAgg+ clipping range"})
    quantization_range: int = field(default=4194304, metadata={"help": "SecAgg+ quantization"})
    weighting: Literal["uniform", "examples"] = field(
        default="uniform",
        metadata={
            "help": '"uniform": every trainer weighs 1, so no example count leaves a node; '
            '"examples": FedAvg by example count (nodes must allow disclosing it)'
        },
    )
    max_weight: float = field(
        default=0.0,
        metadata={
            "help": "SecAgg+ bound on any node's weight; 0 = 1 with uniform weighting "
            "(required with weighting = examples)"
        },
    )
    timeout: float = field(default=300.0, metadata={"help": "SecAgg+ stage timeout (s)"})
    min_clients: int = field(default=3, metadata={"help": "nodes that must be online per round"})
    min_trainers: int = field(
        default=3,
        metadata={
            "help": "merchants that must actually train for a round to be aggregated; fewer "
            "and the round is skipped, so no small group can be singled out"
        },
    )
    client_dp: bool = field(default=False, metadata={"help": "client-level DP (clip + noise)"})
    client_clipping_norm: float = field(default=1.0, metadata={"help": "client update clip"})
    client_noise_multiplier: float = field(default=0.5, metadata={"help": "client-level σ"})
    client_cpus: float = field(default=1.0, metadata={"help": "CPUs per simulated client"})

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"federation.rounds must be >= 1, got {self.rounds}")
        if self.min_trainers < 1:
            raise ConfigError(f"federation.min-trainers must be >= 1, got {self.min_trainers}")
        if self.min_clients < self.min_trainers:
            raise ConfigError(
                f"federation.min-clients ({self.min_clients}) must be >= "
                f"federation.min-trainers ({self.min_trainers})"
            )
        if self.weighting not in ("uniform", "examples"):
            raise ConfigError(
                f'federation.weighting must be "uniform" or "examples", got {self.weighting!r}'
            )
        self._check_secagg()
        if self.strategy not in ("fedavg", "fedprox", "fedadam"):
            raise ConfigError(
                f'federation.strategy must be fedavg, fedprox or fedadam, got "{self.strategy}"'
            )

    def _check_secagg(self) -> None:
        """Flower's own SecAgg+ rules, checked early so the error names the key."""
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if isinstance(shares, int) and shares not in (1,) and shares <= 2:
            raise ConfigError(
                f"federation.num-shares must be an integer > 2 or a fraction in (0, 1], "
                f"got {shares}"
            )
        if isinstance(shares, float) and not 0 < shares <= 1:
            raise ConfigError(
                f"federation.num-shares as a fraction must be in (0, 1], got {shares}"
            )
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ConfigError(
                f"federation.reconstruction-threshold as a fraction must be in (0, 1], "
                f"got {threshold}"
            )
        if isinstance(threshold, int) and isinstance(shares, int) and 1 < shares <= threshold:
            raise ConfigError(
                f"federation.reconstruction-threshold ({threshold}) must be less than "
                f"federation.num-shares ({shares})"
            )
        if self.max_weight < 0:
            raise ConfigError(f"federation.max-weight must be >= 0, got {self.max_weight}")
        if self.secagg and self.weighting == "examples" and self.max_weight <= 0:
            raise ConfigError(
                "federation.max-weight must be set (> 0) with weighting = examples: SecAgg+ "
                "needs a bound on every node's example count"
            )

    @property
    def secagg_max_weight(self) -> float:
        """The bound SecAgg+ scales weights by: 1 for uniform weighting."""
        if self.weighting == "uniform":
            return self.max_weight or 1.0
        return self.max_weight


@dataclass(frozen=True)
class EvaluationConfig:
    """How the server scores the global ranker on the pooled validation shard."""

    k: int = field(default=10, metadata={"help": "cut-off for @k metrics"})
    batch_size: int = field(default=64, metadata={"help": "scoring batch size"})
    max_queries: int = field(default=0, metadata={"help": "evaluate at most this many; 0 = all"})


@dataclass(frozen=True)
class ReportConfig:
    """What the server writes besides metrics: audits, explanations, the HTML report."""

    audit: bool = field(default=True, metadata={"help": "fairness audit after every round"})
    explain: bool = field(default=True, metadata={"help": "SHAP explanations at the end"})
    explain_every: int = field(
        default=0, metadata={"help": "also explain every N rounds; 0 = only at the end"}
    )
    explain_queries: int = field(default=3, metadata={"help": "validation queries to explain"})
    explain_top_k: int = field(default=2, metadata={"help": "top products explained per query"})
    html: bool = field(default=True, metadata={"help": "write report.html at the end"})


@dataclass(frozen=True)
class RunConfig:
    """The whole resolved configuration of one run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: RankerConfig = field(default_factory=RankerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def replace(self, section: str, **changes: Any) -> RunConfig:
        """A copy with some fields of one section changed (validated again)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Kebab-case TOML-ready tables; ``None`` values are left out."""
        out: dict[str, dict[str, Any]] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            out[section.name] = {
                key.replace("_", "-"): list(v) if isinstance(v, tuple) else v
                for key, v in values.items()
                if v is not None
            }
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())


def config_from_mapping(mapping: dict[str, Any], *, source: str = "<config>") -> RunConfig:
    hints = typing.get_type_hints(RunConfig)
    sections: dict[str, Any] = {}
    for key, table in mapping.items():
        if key not in hints:
            options = ", ".join(hints)
            raise ConfigError(f"{source}: unknown table [{key}] (known: {options})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{key}] must be a table")
        try:
            sections[key] = section_from_mapping(hints[key], table, where=f"{source}: {key}")
        except ConfigError as err:
            message = one_line(str(err))
            # Range checks in __post_init__ don't know the file: add it.
            raise ConfigError(
                message if message.startswith(source) else f"{source}: {message}"
            ) from None
    return RunConfig(**sections)


def load_config(path: str | Path | None = None) -> RunConfig:
    """Load a TOML config; ``None`` loads the embedded default."""
    if path is None:
        text = resources.files("ecrec.configs").joinpath(DEFAULT_CONFIG).read_text("utf-8")
        source = f"<embedded {DEFAULT_CONFIG}>"
    else:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from None
    return loads_config(text, source=source)


def loads_config(text: str, *, source: str = "<config>") -> RunConfig:
    """Parse a TOML config from text (e.g. the config a server ships to nodes)."""
    try:
        mapping = tomllib.loads(text)
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, or an absurd number/nesting
        raise ConfigError(f"{source}: invalid TOML: {toml_problem(err)}") from None
    try:
        return config_from_mapping(mapping, source=source)
    except TypeError as err:  # a dataclass refused its arguments
        raise ConfigError(f"{source}: {err}") from None


#: The Flower app's run-config keys (``[tool.flwr.app.config]`` in pyproject.toml), flat and
#: kebab-case as Flower apps have them: each overrides one field of the ecrec config that
#: ``config-file`` names (empty: the embedded default). ``0`` or ``""`` keeps that value.
RUN_CONFIG_OVERRIDES: dict[str, tuple[str, str]] = {
    "num-server-rounds": ("federation", "rounds"),
    "local-steps": ("train", "local_steps"),
    "learning-rate": ("train", "learning_rate"),
    "batch-size": ("train", "batch_size"),
    "base-model": ("model", "base_model"),
    "max-length": ("model", "max_length"),
    "strategy": ("federation", "strategy"),
    "min-trainers": ("federation", "min_trainers"),
    "budget-epsilon": ("privacy", "budget_epsilon"),
    "merchants": ("data", "merchants"),
    "data-dir": ("data", "dir"),
}
#: Run-config keys that are not part of the ecrec config: where the server's files are.
RUN_CONFIG_SERVER_KEYS: tuple[str, ...] = (
    "config-file",
    "run-dir",
    "validation-path",
    "resume",
    "simulation-nodes",
)


def config_from_run_config(run_config: Mapping[str, Any]) -> RunConfig:
    """The ecrec config a Flower run config describes: ``config-file`` plus flat overrides.

    Unknown keys are refused (Flower itself refuses overrides of undeclared keys, but a
    run config built by hand must not silently drop a typo).
    """
    known = set(RUN_CONFIG_OVERRIDES) | set(RUN_CONFIG_SERVER_KEYS)
    unknown = sorted(set(run_config) - known)
    if unknown:
        raise ConfigError(
            f"run config: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    path = str(run_config.get("config-file", "") or "")
    config = load_config(path or None)
    hints = {
        section: typing.get_type_hints(type(getattr(config, section)))
        for section in {s for s, _ in RUN_CONFIG_OVERRIDES.values()}
    }
    for key, (section, name) in RUN_CONFIG_OVERRIDES.items():
        value = run_config.get(key)
        if value is None or value == "" or (value == 0 and not isinstance(value, bool)):
            continue
        checked = _check_type(value, hints[section][name], f"run config: {key}")
        try:
            config = config.replace(section, **{name: checked})
        except TypeError as err:
            raise ConfigError(f"run config: {key}: {err}") from None
    return config
