"""Addresses and a TLS pre-flight check (standard library only).

A SuperNode that cannot talk to its SuperLink retries for ever with a generic
"Connection attempt failed" (a plain-HTTP node against a TLS server) or exits
with Flower's code 305 and a log full of text. Before starting one,
``ecrec-client`` shakes hands with the server itself, so a wrong CA, a
certificate for another host name, or a TLS/plain mismatch is reported in one
line that says what to change.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecrec.errors import ConfigError, EcrecError

#: Listening on these means "every interface"; local tools connect via loopback.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class NodeRefusedError(EcrecError):
    """The server will not accept this node (TLS trust, TLS mode or node key)."""

    exit_code = 5


class ServerUnreachableError(EcrecError):
    """Nothing answered at the server address within the time allowed."""

    exit_code = 6


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        return self.host in WILDCARD_HOSTS

    def local(self) -> Address:
        """How a process on the same machine reaches this listening address."""
        if self.host in ("::",):
            return Address("::1", self.port)
        if self.is_wildcard:
            return Address("127.0.0.1", self.port)
        return self


def parse_address(text: str, *, what: str = "address") -> Address:
    """``HOST:PORT`` or ``[IPv6]:PORT``, with a one-line error naming ``what``."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{what}: write IPv6 addresses as [ADDRESS]:PORT, got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{what}: port must be in 1..65535, got {port}")
    if any(c in host for c in " /@"):
        raise ConfigError(f"{what}: invalid host {host!r}")
    return Address(host, port)


def wait_reachable(
    address: Address,
    *,
    timeout: float,
    on_wait: Callable[[float], None] | None = None,
    interval: float = 2.0,
) -> None:
    """Wait until a TCP connection to ``address`` succeeds (``timeout`` 0: for ever)."""
    started = time.monotonic()
    last_error = ""
    while True:
        try:
            with socket.create_connection((address.host, address.port), timeout=5.0):
                return
        except OSError as err:
            last_error = err.strerror or str(err)
        waited = time.monotonic() - started
        if timeout and waited >= timeout:
            raise ServerUnreachableError(
                f"cannot reach the server at {address} ({last_error}) after {waited:.0f} s; "
                "check the address, that ecrec-server is running and that the port is open"
            )
        if on_wait is not None:
            on_wait(waited)
        time.sleep(interval)


def _handshake(address: Address, context: ssl.SSLContext, server_hostname: str | None) -> None:
    with (
        socket.create_connection((address.host, address.port), timeout=10.0) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.getpeercert()


def probe_tls(address: Address, *, ca: Path | None, insecure: bool) -> None:
    """Check that this node and the server agree on TLS, before Flower tries.

    * ``insecure``: the server must *not* speak TLS (else Flower retries for ever).
    * otherwise: the server's certificate must chain to ``ca`` and name ``address.host``.
    """
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            _handshake(address, context, None)
        except (ssl.SSLError, OSError):
            return  # no TLS handshake possible: a plain server, as --insecure expects
        raise NodeRefusedError(
            f"the server at {address} requires TLS and refuses --insecure nodes; "
            "drop --insecure and pass --ca (the operator's ca.crt) and --key"
        )
    assert ca is not None
    context = ssl.create_default_context(cafile=str(ca))
    try:
        _handshake(address, context, address.host)
    except ssl.SSLCertVerificationError as err:
        reason = (err.verify_message or err.reason or str(err)).lower()
        if "hostname" in reason or "ip address mismatch" in reason:
            raise NodeRefusedError(
                f"the server's TLS certificate is not valid for {address.host!r}; connect with "
                "a host name it was issued for, or ask the operator to reissue it with "
                f"`ecrec certs --host {address.host}`"
            ) from None
        raise NodeRefusedError(
            f"the server at {address} is not trusted by --ca {ca} ({reason}); "
            "use the ca.crt the server operator gave you"
        ) from None
    except ssl.SSLError as err:
        raise NodeRefusedError(
            f"TLS handshake with {address} failed ({err.reason or err}); if the server runs "
            "without TLS (insecure = true), use --insecure"
        ) from None
    except (ConnectionResetError, ConnectionAbortedError, TimeoutError):
        raise NodeRefusedError(
            f"the server at {address} closed the TLS handshake; it may not speak TLS "
            "(insecure = true on the server needs --insecure here)"
        ) from None


__all__ = [
    "Address",
    "NodeRefusedError",
    "ServerUnreachableError",
    "parse_address",
    "probe_tls",
    "wait_reachable",
]
