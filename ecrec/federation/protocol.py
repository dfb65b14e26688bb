"""What travels between the ecrec ServerApp and ClientApp, besides the adapter arrays.

Fit config (server -> node, with every round's training message)::

    server-round      the round number
    ecrec-config      the resolved ecrec run config (TOML): the server's *request*
    simulation-nodes  (simulation only) the nodes file with each simulated node's config

Fit metrics (node -> server): only what :attr:`ecrec.node.RoundOutcome.disclosed`
holds -- ``merchant`` and ``trained``, plus ε if the merchant's policy discloses it.
A node that declines answers with an error whose reason starts with
:data:`DECLINE_TAG`, so the server can say who declined and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVER_ROUND = "server-round"
ECREC_CONFIG = "ecrec-config"
SIMULATION_NODES = "simulation-nodes"
PROXIMAL_MU = "proximal_mu"  # the key Flower's FedProx strategy sends

DECLINE_TAG = "ecrec-decline"
_DECLINE = re.compile(
    rf"{DECLINE_TAG} merchant=(?P<merchant>\S+) round=(?P<round>\d+): (?P<reason>.*)"
)


class RoundDeclined(Exception):
    """Raised by a node's ClientApp to answer "no" to a round (Flower sends it as an error)."""

    def __init__(self, *, merchant: str, server_round: int, reason: str) -> None:
        self.merchant = merchant
        self.server_round = server_round
        self.reason = reason
        super().__init__(f"{DECLINE_TAG} merchant={merchant} round={server_round}: {reason}")


@dataclass(frozen=True)
class Decline:
    merchant: str
    server_round: int
    reason: str


def parse_decline(error_reason: str) -> Decline | None:
    """The decline inside a Flower error reason (``"<class ...>:<'ecrec-decline ...'>"``)."""
    match = _DECLINE.search(error_reason)
    if match is None:
        return None
    reason = match.group("reason")
    if reason.endswith("'>"):
        reason = reason[:-2]
    return Decline(match.group("merchant"), int(match.group("round")), reason)


__all__ = [
    "DECLINE_TAG",
    "ECREC_CONFIG",
    "PROXIMAL_MU",
    "SERVER_ROUND",
    "SIMULATION_NODES",
    "Decline",
    "RoundDeclined",
    "parse_decline",
]
