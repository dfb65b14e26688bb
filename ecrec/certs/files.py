"""The files of a deployment's trust: their names, curves, lifetimes, :class:`CertBundle`
and the one error every certificate or key problem raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ecrec.errors import EcrecError

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
NODE_PRIVATE_SUFFIX, NODE_PUBLIC_SUFFIX = ".key", ".pub"
#: Curves ``flwr supernode register`` accepts (NIST); P-384 is what we make.
NIST_CURVES = ("secp256r1", "secp384r1", "secp521r1")
#: The CA outlives server certificates, so a server cert can be renewed without
#: redistributing ``ca.crt`` to every merchant.
CA_DAYS = 3650


class CertsError(EcrecError):
    """A certificate or key file is missing, unreadable or of the wrong kind."""


@dataclass
class CertBundle:
    """The files one ``ecrec certs`` run wrote (for the summary and for tests)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    hosts: tuple[str, ...]
    nodes: list[tuple[Path, Path]] = field(default_factory=list)  # (private, public)
