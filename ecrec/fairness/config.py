"""What a fairness audit measures, how sure it must be before it flags, and its thresholds.

:class:`AuditConfig` is a frozen dataclass whose snake_case field names map to
kebab-case keys (``min_queries_per_group`` <-> ``min-queries-per-group``), so
the same fields serve a TOML ``[audit]`` table and the ``ecrec audit`` options.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ecrec.errors import ConfigError

#: The column that says which provider group (merchant tier) a product belongs to.
PROVIDER_COLUMN = "merchant_tier"
#: The provider group whose exposure is protected.
PROTECTED_PROVIDER = "small"
#: The column naming each product's merchant, for per-merchant exposure.
MERCHANT_COLUMN = "merchant_id"
#: How a missing sensitive value is reported.
MISSING_GROUP = "(missing)"

Attention = Literal["log", "rbp"]


@dataclass(frozen=True)
class AuditConfig:
    """What the audit measures and the thresholds that raise a flag."""

    k: int = field(default=10, metadata={"help": "cut-off for ndcg@k, precision@k and exposure"})
    threshold: float = field(
        default=0.0,
        metadata={
            "help": 'score (logit) at or above which an item counts as "selected"; 0 = p 0.5'
        },
    )
    by: tuple[str, ...] = field(
        default=("user_segment", "merchant_tier"),
        metadata={"help": "sensitive columns to compare groups of (comma-separated)"},
    )
    max_ndcg_gap: float = field(
        default=0.1,
        metadata={"help": "flag when the whole CI of the ndcg@k gap between groups is above this"},
    )
    max_precision_gap: float = field(
        default=0.1,
        metadata={"help": "flag when the whole CI of the precision@k gap is above this"},
    )
    max_demographic_parity_difference: float = field(
        default=0.1,
        metadata={"help": "flag when the whole CI of the selection-rate difference is above this"},
    )
    max_equalized_odds_difference: float = field(
        default=0.1,
        metadata={"help": "flag when the whole CI of the larger TPR/FPR gap is above this"},
    )
    min_exposure_ratio: float = field(
        default=0.8,
        metadata={
            "help": "flag when the whole CI of small merchants' exposure / merit-based target "
            "exposure is below this"
        },
    )
    relevant_threshold: int = field(
        default=2, metadata={"help": "graded relevance at or above which an item is relevant"}
    )
    min_queries_per_group: int = field(
        default=30,
        metadata={
            "help": "groups with fewer queries are not compared; a comparison left with fewer "
            'than two groups reports "too few queries"'
        },
    )
    confidence_level: float = field(
        default=0.95, metadata={"help": "confidence level of the bootstrap intervals"}
    )
    bootstrap_resamples: int = field(
        default=1000, metadata={"help": "bootstrap resamples of the queries per interval"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap resampling"})
    attention: Attention = field(
        default="log",
        metadata={
            "help": 'position-based attention of the exposure model: "log" (1/log2(1+rank)) '
            'or "rbp" (patience^(rank-1))'
        },
    )
    rbp_patience: float = field(
        default=0.5,
        metadata={"help": "probability of looking at the next result (attention = rbp)"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or self.k < 1:
            raise ConfigError(f"audit k must be >= 1, got {self.k}")
        object.__setattr__(self, "by", tuple(self.by))
        if not self.by:
            raise ConfigError("audit --by must name at least one column")
        for name in (
            "max_ndcg_gap",
            "max_precision_gap",
            "max_demographic_parity_difference",
            "max_equalized_odds_difference",
            "min_exposure_ratio",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"audit {_key(name)} must be >= 0, got {value}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"audit threshold must be finite, got {self.threshold}")
        # A bootstrap interval needs at least two queries in each group it resamples.
        if self.min_queries_per_group < 2:
            raise ConfigError(
                f"audit min-queries-per-group must be >= 2, got {self.min_queries_per_group}"
            )
        if not 0.5 <= self.confidence_level < 1:
            raise ConfigError(
                f"audit confidence-level must be in [0.5, 1), got {self.confidence_level}"
            )
        if self.bootstrap_resamples < 100:
            raise ConfigError(
                f"audit bootstrap-resamples must be >= 100, got {self.bootstrap_resamples}"
            )
        if self.attention not in ("log", "rbp"):
            raise ConfigError(f'audit attention must be "log" or "rbp", got {self.attention!r}')
        if not 0 < self.rbp_patience < 1:
            raise ConfigError(f"audit rbp-patience must be in (0, 1), got {self.rbp_patience}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["by"] = list(self.by)
        return out


def _key(name: str) -> str:
    return name.replace("_", "-")


def config_help() -> dict[str, str]:
    """Help text of every :class:`AuditConfig` field, for the CLI."""
    return {f.name: f.metadata.get("help", "") for f in fields(AuditConfig)}
