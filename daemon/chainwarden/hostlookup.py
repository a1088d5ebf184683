"""Host name lookups that give up at a deadline, although getaddrinfo itself cannot be interrupted."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

# Lookups still waiting on a hung resolver, each holding one thread; beyond this many, new lookups
# fail at once instead of piling up threads behind a resolver that does not answer.
PENDING_LIMIT = 64
_pending = threading.BoundedSemaphore(PENDING_LIMIT)


class ResolverBusy(OSError):
    """Too many earlier lookups are still unanswered: the system resolver hangs."""


def getaddrinfo_within(seconds: float, host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
    """`socket.getaddrinfo(host, port, **kwargs)`, or TimeoutError once `seconds` have passed.

    The lookup runs in a thread of its own; one that times out goes on there until the resolver
    gives up, and its answer is dropped. IP literals need no resolver and are answered directly.
    """
    if is_ip_literal(host):
        return socket.getaddrinfo(host, port, **kwargs)
    if seconds <= 0:
        raise TimeoutError(f"no time left to look up {host}")
    if not _pending.acquire(blocking=False):
        raise ResolverBusy(f"{PENDING_LIMIT} earlier host name lookups are still unanswered (the resolver hangs)")
    outcome: list[Any] = []
    answered = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, raised there
            outcome.append(exc)
        finally:
            _pending.release()
            answered.set()

    threading.Thread(target=lookup, name="chainwarden-lookup", daemon=True).start()
    if not answered.wait(seconds):
        raise TimeoutError(f"the host name lookup of {host} took more than {seconds:.3g} s")
    found = outcome[0]
    if isinstance(found, BaseException):
        raise found
    return list(found)


def is_ip_literal(host: str) -> bool:
    # The whole text: "10.0.0.1%x.example" is no address, and the resolver would be asked about it.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
