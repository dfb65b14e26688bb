"""Small helpers of process supervision: free and busy TCP ports, and waiting for a
condition while a child may die."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on ``host:port`` (bind test, no traffic sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll ``check`` until true or ``timeout``; ``abort`` returning text stops early (raises)."""
    deadline = time.monotonic() + timeout
    while True:
        if abort is not None and (reason := abort()):
            raise ChildFailed(reason)
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ChildFailed(RuntimeError):
    """A supervised process ended when it should not have."""
