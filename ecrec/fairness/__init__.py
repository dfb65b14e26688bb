"""Fairness audits of the global ranker (fairlearn): shopper groups and provider exposure."""

from ecrec.fairness.audit import (
    FAIRNESS_FILE,
    AuditConfig,
    append_fairness,
    audit_rankings,
    config_help,
    provider_exposure,
    query_groups,
    read_fairness,
)

__all__ = [
    "FAIRNESS_FILE",
    "AuditConfig",
    "append_fairness",
    "audit_rankings",
    "config_help",
    "provider_exposure",
    "query_groups",
    "read_fairness",
]
