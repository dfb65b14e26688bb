"""Fairness audits of the global ranker: shopper groups (fairlearn) and provider exposure.

Names are imported on first use (PEP 562) so that ``ecrec.config`` -- which only
needs :class:`AuditConfig` -- does not pull in pandas and fairlearn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ecrec.fairness.audit import audit_rankings
    from ecrec.fairness.config import AuditConfig, config_help
    from ecrec.fairness.exposure import provider_exposure
    from ecrec.fairness.inputs import query_groups
    from ecrec.fairness.store import FAIRNESS_FILE, append_fairness, read_fairness

_WHERE = {
    "FAIRNESS_FILE": "ecrec.fairness.store",
    "AuditConfig": "ecrec.fairness.config",
    "append_fairness": "ecrec.fairness.store",
    "audit_rankings": "ecrec.fairness.audit",
    "config_help": "ecrec.fairness.config",
    "provider_exposure": "ecrec.fairness.exposure",
    "query_groups": "ecrec.fairness.inputs",
    "read_fairness": "ecrec.fairness.store",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ecrec.fairness' has no attribute {name!r}")


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
