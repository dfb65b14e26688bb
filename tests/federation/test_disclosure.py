"""Minimal disclosure: exactly what the server receives from a node under SecAgg+.

The test plays the curious server: it records every reply that reaches the
ServerApp in a real simulation (the production apps, SecAgg+ on) and prints the
fields. Only the masked update, its weight and "trained" (plus the merchant's
name) may be there; no loss, no timing, no row count, no sample rate, no budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from ecrec.config import load_config
from ecrec.federation import server as federation_server
from ecrec.federation.simulation import simulate

ROOT = Path(__file__).resolve().parents[2]


def _fields(reply: Any) -> dict[str, Any]:
    """A reply's records as name -> a printable summary (values only when scalar)."""
    out: dict[str, Any] = {}
    for name, record in reply.content.config_records.items():
        for key, value in record.items():
            if (
                isinstance(value, bytes | list)
                and value
                and isinstance(value[0] if isinstance(value, list) else value, bytes | int)
            ):
                out[f"{name}.{key}"] = f"<{type(value).__name__} of {len(value)}>"
            else:
                out[f"{name}.{key}"] = value
    for name, record in reply.content.array_records.items():
        out[f"{name} (arrays)"] = len(record)
    for name, record in reply.content.metric_records.items():
        for key, value in record.items():
            out[f"{name}.{key}"] = value
    return out


@pytest.mark.slow
def test_the_server_receives_only_the_masked_update_its_weight_and_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    original = federation_server.RoundGrid.send_and_receive

    def curious(self: Any, messages: Any, *, timeout: float | None = None) -> Any:
        replies = list(original(self, messages, timeout=timeout))
        seen.extend(_fields(r) for r in replies if not r.has_error())
        return replies

    monkeypatch.setattr(federation_server.RoundGrid, "send_and_receive", curious)
    config = load_config(ROOT / "configs" / "tiny.toml").replace("federation", rounds=1)
    simulate(config.replace("report", explain=False, html=False), out=tmp_path / "run")

    stages = {
        "setup": {"secaggplus_configs.pk1", "secaggplus_configs.pk2"},
        "share_keys": {"secaggplus_configs.dsts", "secaggplus_configs.ctxts"},
        "unmask": {"secaggplus_configs.nids", "secaggplus_configs.shares"},
    }
    collect = [f for f in seen if f"{RECORD_KEY_CONFIGS}.masked_params" in f]
    assert len(collect) == 3, "one masked update per merchant"
    print("\nWhat the server receives from one node with its update (SecAgg+):")
    print(json.dumps(collect[0], indent=2, default=str))
    for fields in collect:
        prefix = "fitres.metrics."
        metrics = {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
        assert metrics.keys() == {"merchant", "trained"}, fields
        assert metrics["trained"] is True
        assert set(fields) == {
            "fitres.metrics.merchant",
            "fitres.metrics.trained",
            "fitres.status.code",
            "fitres.status.message",
            "fitres.num_examples.num_examples",
            "fitres.parameters (arrays)",
            "secaggplus_configs.masked_params",
        }, fields
        assert fields["fitres.num_examples.num_examples"] == 1  # uniform weight: no row count
        assert fields["fitres.parameters (arrays)"] == 0  # the update travels only masked
    others = [f for f in seen if f not in collect]
    for fields in others:
        assert any(set(fields) == keys for keys in stages.values()), fields
