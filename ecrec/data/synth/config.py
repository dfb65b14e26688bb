"""The size and seed of a synthetic marketplace."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ecrec.errors import ConfigError


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a synthetic marketplace."""

    merchants: int = field(default=4, metadata={"help": "number of merchants (federated nodes)"})
    queries_per_merchant: int = field(
        default=60,
        metadata={
            "help": "average queries per merchant; sizes follow a power law, so the "
            "largest merchant has several times this and the smallest fewer"
        },
    )
    candidates_per_query: int = field(
        default=10, metadata={"help": "products shown for each query (impressions per query)"}
    )
    validation_queries: int = field(
        default=80, metadata={"help": "queries in the server's pooled validation shard"}
    )
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same marketplace"})
    user_id_salt: str = field(
        default="ecrec-synth",
        metadata={"help": "mixed with the seed into the key that hashes synthetic shopper ids"},
    )

    def check(self) -> None:
        """Refuse sizes that cannot make a usable marketplace, naming the option."""
        if self.merchants < 1:
            raise ConfigError(f"merchants must be at least 1, got {self.merchants}")
        if self.queries_per_merchant < 1:
            raise ConfigError(
                f"queries_per_merchant must be at least 1, got {self.queries_per_merchant}"
            )
        if not 2 <= self.candidates_per_query <= 100:
            raise ConfigError(
                f"candidates_per_query must be between 2 and 100, got {self.candidates_per_query}"
            )
        if self.validation_queries < 0:
            raise ConfigError(
                f"validation_queries must not be negative, got {self.validation_queries}"
            )
        if self.seed < 0:
            raise ConfigError(f"seed must not be negative, got {self.seed}")
        if not self.user_id_salt:
            raise ConfigError("user_id_salt must not be empty")


def config_help() -> dict[str, str]:
    """Help text of every :class:`SynthConfig` field, for the CLI."""
    return {f.name: f.metadata.get("help", "") for f in fields(SynthConfig)}
