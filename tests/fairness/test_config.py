"""AuditConfig: range checks, and the same fields read from a TOML ``[audit]`` table."""

from __future__ import annotations

import math

import pytest

from ecrec.config import section_from_mapping
from ecrec.errors import ConfigError
from ecrec.fairness import AuditConfig, config_help


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k": 0}, "k must be >= 1"),
        ({"by": ()}, "at least one column"),
        ({"max_ndcg_gap": -0.1}, "max-ndcg-gap"),
        ({"threshold": math.inf}, "threshold must be finite"),
        ({"min_queries_per_group": 1}, "min-queries-per-group"),
        ({"confidence_level": 1.0}, "confidence-level"),
        ({"bootstrap_resamples": 10}, "bootstrap-resamples"),
        ({"attention": "cascade"}, "attention"),
        ({"rbp_patience": 1.0}, "rbp-patience"),
    ],
)
def test_bad_config_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**changes)


def test_every_field_has_help() -> None:
    assert all(config_help().values())


def test_config_reads_from_a_kebab_case_toml_table() -> None:
    table = {
        "min-queries-per-group": 50,
        "by": ["user_segment"],
        "attention": "rbp",
        "rbp-patience": 0.8,
        "bootstrap-resamples": 500,
        "max-ndcg-gap": 0.05,
    }
    config = section_from_mapping(AuditConfig, table, where="run.toml: audit")
    assert config == AuditConfig(
        min_queries_per_group=50,
        by=("user_segment",),
        attention="rbp",
        rbp_patience=0.8,
        bootstrap_resamples=500,
        max_ndcg_gap=0.05,
    )
    with pytest.raises(ConfigError, match=r"audit\.min_queries_per_group: keys are kebab-case"):
        section_from_mapping(AuditConfig, {"min_queries_per_group": 50}, where="run.toml: audit")
    with pytest.raises(ConfigError, match="must be one of"):
        section_from_mapping(AuditConfig, {"attention": "dcg"}, where="run.toml: audit")


def test_every_exported_name_resolves() -> None:
    import ecrec.fairness

    assert sorted(ecrec.fairness.__all__) == sorted(ecrec.fairness._WHERE)
    for name in ecrec.fairness.__all__:
        assert getattr(ecrec.fairness, name) is not None
