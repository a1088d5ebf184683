"""A hung resolver costs a probe or an AIA fetch its deadline, never more, and never piles up threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chainwarden import hostlookup
from chainwarden.aia import FetchPolicy, fetch_url
from chainwarden.probe import probe

HUNG = ".hung.test"  # names the fake resolver never answers (until released)


class HungResolver:
    """socket.getaddrinfo that blocks on names ending in HUNG until released, and fails others."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = 0
        self.callers: list[str] = []
        self._lock = threading.Lock()
        self._real = socket.getaddrinfo

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.callers.append(threading.current_thread().name)
        if host.endswith(HUNG):
            with self._lock:
                self.waiting += 1
            try:
                self.release.wait()
            finally:
                with self._lock:
                    self.waiting -= 1
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return self._real(host, port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HungResolver]:
    fake = HungResolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.release.set()
    _wait_until(lambda: fake.waiting == 0, "the released lookups to finish")


def _wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_hung_lookup_gives_up_at_the_deadline(resolver: HungResolver) -> None:
    with pytest.raises(TimeoutError, match="took more than 0.2 s"):
        hostlookup.getaddrinfo_within(0.2, "erp" + HUNG, 443)
    assert not resolver.release.is_set() and resolver.waiting == 1  # it did not wait for the resolver


def test_a_lookup_error_reaches_the_caller(resolver: HungResolver) -> None:
    resolver.release.set()
    with pytest.raises(socket.gaierror, match="Temporary failure"):
        hostlookup.getaddrinfo_within(5.0, "erp" + HUNG, 443)


def test_ip_literals_need_no_resolver_thread(resolver: HungResolver) -> None:
    answers = hostlookup.getaddrinfo_within(5.0, "127.0.0.1", 443, type=socket.SOCK_STREAM)
    assert answers[0][4] == ("127.0.0.1", 443)
    assert resolver.callers == [threading.current_thread().name]


def test_stuck_lookups_are_bounded_then_freed(resolver: HungResolver) -> None:
    """Once PENDING_LIMIT lookups hang, the next fails at once (no more threads); released, lookups work."""
    for i in range(hostlookup.PENDING_LIMIT):
        with pytest.raises(TimeoutError):
            hostlookup.getaddrinfo_within(0.01, f"n{i}{HUNG}", 443)
    _wait_until(lambda: resolver.waiting == hostlookup.PENDING_LIMIT, "every lookup to reach the resolver")
    threads = threading.active_count()
    with pytest.raises(hostlookup.ResolverBusy, match="still unanswered"):
        hostlookup.getaddrinfo_within(5.0, "one-more" + HUNG, 443)
    assert threading.active_count() == threads
    resolver.release.set()
    _wait_until(lambda: resolver.waiting == 0, "the released lookups to finish")
    _wait_until(
        lambda: hostlookup._pending._value == hostlookup.PENDING_LIMIT,  # type: ignore[attr-defined]
        "every lookup slot to be returned",
    )
    assert hostlookup.getaddrinfo_within(5.0, "localhost", 443, type=socket.SOCK_STREAM)


def test_probe_of_a_hung_name_fails_at_its_timeout(resolver: HungResolver) -> None:
    result = probe("erp" + HUNG, 443, timeout=0.3)
    assert result.error == f"erp{HUNG}:443: timed out after 0.3 s during DNS lookup"
    assert not resolver.release.is_set()


def test_aia_fetch_of_a_hung_name_fails_at_its_timeout(resolver: HungResolver) -> None:
    result = fetch_url(f"http://ca{HUNG}/issuer.der", FetchPolicy(timeout=0.3))
    assert result.error == f"AIA http://ca{HUNG}/issuer.der: timed out after 0.3 s"
    assert not resolver.release.is_set()


def test_a_name_that_only_starts_like_an_address_is_looked_up_with_the_deadline(resolver: HungResolver) -> None:
    """"10.0.0.1%x..." is no IP literal (glibc would ask the resolver): it gets the thread and deadline."""
    with pytest.raises(TimeoutError):
        hostlookup.getaddrinfo_within(0.2, "10.0.0.1%25x" + HUNG, 443)
    assert resolver.callers[-1] == "chainwarden-lookup"
