"""Tests for chainwarden.probe against real servers on loopback."""

from __future__ import annotations

import _ssl
import os
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chainwarden import pkigen
from chainwarden import probe as probe_mod
from chainwarden.probe import ProbeResult, parse_target, probe, probe_many
from servers import (
    BlackholeServer,
    GarbageServer,
    Identity,
    OpenSSLServer,
    PythonTLSServer,
    ResetServer,
    TrickleServer,
    refused_port,
    requires_ipv6,
    requires_openssl,
    started,
    tls_server,
)

MARGIN = 4.0  # generous slack for a loaded CI machine; deadlines are checked, not speed


@pytest.fixture(scope="module")
def pki() -> pkigen.ThreeTier:
    return pkigen.three_tier("erp.example.test")


# --------------------------------------------------------------------------------------------
# Backends: the default one, plus every other one this interpreter can run, so the pyOpenSSL
# path (3.11/3.12) and the standard-library path (3.13+) are both exercised where possible.


def _private_unverified_chain(obj: ssl.SSLObject) -> list[Any]:
    """Python 3.10-3.12's private twin of 3.13's SSLObject.get_unverified_chain()."""
    return list(obj._sslobj.get_unverified_chain() or [])  # type: ignore[attr-defined]


def _backend_params() -> list[Any]:
    params: list[Any] = []
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        pass
    else:
        params.append(pytest.param(probe_mod._PyOpenSSLBackend, id="pyopenssl"))
    if hasattr(ssl.SSLObject, "get_unverified_chain"):
        params.append(
            pytest.param(
                lambda: probe_mod._StdlibBackend(probe_mod._stdlib_unverified_chain), id="stdlib"
            )
        )
    elif hasattr(_ssl._SSLSocket, "get_unverified_chain"):
        params.append(
            pytest.param(
                lambda: probe_mod._StdlibBackend(_private_unverified_chain), id="stdlib-private"
            )
        )
    return params


Prober = Callable[..., ProbeResult]


@pytest.fixture(scope="module", params=_backend_params())
def run_probe(request: pytest.FixtureRequest) -> Prober:
    backend = request.param()

    def run(
        host: str, port: int = 443, *, servername: str | None = None, timeout: float = 10.0
    ) -> ProbeResult:
        return probe_mod._probe(host, port, servername, timeout, backend)

    return run


# --------------------------------------------------------------------------------------------
# Chains as presented (openssl s_server)


@requires_openssl
def test_leaf_only_chain_is_returned_as_presented(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """A server presenting only its leaf yields exactly that one DER certificate."""
    with OpenSSLServer.from_issued(pki.leaf) as server:
        result = run_probe("127.0.0.1", server.port)
    assert result.error is None
    assert result.ok
    assert result.chain == (pki.leaf.der,)


@requires_openssl
def test_leaf_and_intermediate_are_returned_leaf_first(
    pki: pkigen.ThreeTier, run_probe: Prober
) -> None:
    """A server presenting leaf + intermediate yields exactly those DER bytes, leaf first."""
    with OpenSSLServer.from_issued(pki.leaf, pki.intermediate) as server:
        result = run_probe("127.0.0.1", server.port)
    assert result.chain == (pki.leaf.der, pki.intermediate.der)


@requires_openssl
def test_misordered_and_duplicated_chain_is_kept_verbatim(
    pki: pkigen.ThreeTier, run_probe: Prober
) -> None:
    """Wrong order and duplicates are returned untouched: the probe never normalises a chain."""
    with OpenSSLServer.from_issued(pki.leaf, pki.root, pki.intermediate, pki.root) as server:
        result = run_probe("127.0.0.1", server.port)
    assert result.chain == (pki.leaf.der, pki.root.der, pki.intermediate.der, pki.root.der)


@requires_openssl
@pytest.mark.parametrize(("version", "name"), [("1.3", "TLSv1.3"), ("1.2", "TLSv1.2")])
def test_tls_versions_each_return_the_chain(
    pki: pkigen.ThreeTier, run_probe: Prober, version: str, name: str
) -> None:
    """TLS 1.3-only and TLS 1.2-only servers both give the chain and report their version."""
    with OpenSSLServer.from_issued(pki.leaf, pki.intermediate, tls_version=version) as server:
        result = run_probe("127.0.0.1", server.port)
    assert result.error is None
    assert result.tls_version == name
    assert result.chain == (pki.leaf.der, pki.intermediate.der)


@requires_openssl
def test_ec_chain_is_returned(run_probe: Prober) -> None:
    """An ECDSA chain is captured like an RSA one."""
    ec = pkigen.three_tier("ec.example.test", kind="ec", label="EC")
    with OpenSSLServer.from_issued(ec.leaf, ec.intermediate) as server:
        result = run_probe("127.0.0.1", server.port)
    assert result.chain == (ec.leaf.der, ec.intermediate.der)


def test_probe_returns_the_chain_from_a_python_tls_server(pki: pkigen.ThreeTier) -> None:
    """The public probe() with its default backend reads the chain from a Python ssl server."""
    with PythonTLSServer.from_issued(pki.leaf, pki.intermediate) as server:
        result = probe("127.0.0.1", server.port, timeout=5.0)
        assert server.wait_for_handshakes(1)
    assert result == ProbeResult(
        host="127.0.0.1",
        port=server.port,
        servername=None,
        chain=(pki.leaf.der, pki.intermediate.der),
        error=None,
        duration=result.duration,
        tls_version="TLSv1.3",
    )
    assert 0 < result.duration < 5.0 + MARGIN


def test_expired_leaf_is_still_captured(run_probe: Prober) -> None:
    """Verification is off: an expired, untrusted chain is captured rather than rejected."""
    root = pkigen.make_root("Old Root")
    leaf = pkigen.make_leaf(
        ["old.example.test"],
        root,
        not_before=pkigen.EPOCH - 800 * pkigen.DAY,
        not_after=pkigen.EPOCH - 400 * pkigen.DAY,
    )
    with PythonTLSServer.from_issued(leaf) as server:
        result = run_probe("127.0.0.1", server.port, servername="old.example.test")
    assert result.chain == (leaf.der,)


@pytest.mark.parametrize(
    "maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_chain_is_kept_when_server_demands_a_client_certificate(
    pki: pkigen.ThreeTier, run_probe: Prober, maximum: ssl.TLSVersion
) -> None:
    """A server that requires a client certificate still yields its chain; none is sent."""
    with PythonTLSServer.from_issued(
        pki.leaf, pki.intermediate, maximum_version=maximum, require_client_cert=True
    ) as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error is None
    assert result.chain == (pki.leaf.der, pki.intermediate.der)


# --------------------------------------------------------------------------------------------
# SNI


def test_sni_defaults_to_the_host_name(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """Probing a host name sends that name as SNI."""
    with PythonTLSServer.from_issued(pki.leaf) as server:
        result = run_probe("localhost", server.port)
        names = list(server.server_names)
    assert result.ok, result.error
    assert names == ["localhost"]


def test_explicit_servername_is_sent_as_sni(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """servername overrides the host for SNI, and the result keeps the servername asked for."""
    with PythonTLSServer.from_issued(pki.leaf) as server:
        result = run_probe("127.0.0.1", server.port, servername="erp.example.test.")
        names = list(server.server_names)
    assert names == ["erp.example.test"]
    assert result.servername == "erp.example.test."


def test_ip_literal_sends_no_sni(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """An IP literal host is probed without SNI (RFC 6066 forbids addresses there)."""
    with PythonTLSServer.from_issued(pki.leaf) as server:
        result = run_probe("127.0.0.1", server.port)
        names = list(server.server_names)
    assert result.chain == (pki.leaf.der,)
    assert names == [None]


def test_sni_selects_the_chain_the_server_presents(
    pki: pkigen.ThreeTier, run_probe: Prober
) -> None:
    """A server that picks its certificate by SNI returns the chain for the name asked for."""
    other = pkigen.three_tier("plm.example.test", label="Other")
    by_name = {"plm.example.test": Identity.from_issued(other.leaf, other.intermediate)}
    with PythonTLSServer.from_issued(pki.leaf, pki.intermediate, by_name=by_name) as server:
        default = run_probe("127.0.0.1", server.port, servername="erp.example.test")
        selected = run_probe("127.0.0.1", server.port, servername="plm.example.test")
    assert default.chain == (pki.leaf.der, pki.intermediate.der)
    assert selected.chain == (other.leaf.der, other.intermediate.der)


@requires_ipv6
def test_ipv6_literal_is_probed(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """An IPv6 literal host connects over IPv6 with no SNI."""
    with PythonTLSServer.from_issued(pki.leaf, host="::1") as server:
        result = run_probe("::1", server.port)
        names = list(server.server_names)
    assert result.chain == (pki.leaf.der,)
    assert names == [None]


@requires_ipv6
def test_ipv6_errors_name_the_endpoint_in_brackets(run_probe: Prober) -> None:
    """An error for an IPv6 endpoint writes it as [address]:port."""
    with refused_port("::1") as port:
        result = run_probe("::1", port)
    assert result.error == f"[::1]:{port}: connection refused"


# --------------------------------------------------------------------------------------------
# Failures: each a sentence naming the endpoint, never an exception


def test_blackhole_times_out_at_the_deadline(run_probe: Prober) -> None:
    """A server that accepts and never answers fails at the timeout, not later."""
    with BlackholeServer() as server:
        result = run_probe("127.0.0.1", server.port, timeout=1.0)
    assert result.error == f"127.0.0.1:{server.port}: timed out after 1.0 s during TLS handshake"
    assert result.chain == ()
    assert not result.ok
    assert 0.9 <= result.duration < 1.0 + MARGIN


def test_trickling_server_cannot_extend_the_deadline(run_probe: Prober) -> None:
    """A server dripping a byte at a time still fails at the overall deadline."""
    with TrickleServer(interval=0.05) as server:
        result = run_probe("127.0.0.1", server.port, timeout=1.0)
    assert result.error == f"127.0.0.1:{server.port}: timed out after 1.0 s during TLS handshake"
    assert result.duration < 1.0 + MARGIN


def test_reset_is_reported(run_probe: Prober) -> None:
    """A server that resets the connection gives a 'connection reset' error."""
    with ResetServer() as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error == (
        f"127.0.0.1:{server.port}: connection reset by peer during TLS handshake"
    )
    assert result.chain == ()


def test_immediate_reset_is_reported(run_probe: Prober) -> None:
    """A reset before the ClientHello is read is also reported as a reset, not a crash."""
    with ResetServer(read_first=False) as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error is not None
    assert "connection reset by peer" in result.error or "closed the connection" in result.error


def test_http_answer_is_not_a_tls_server(run_probe: Prober) -> None:
    """A plain-HTTP answer is reported as 'not a TLS server' with the first line it sent."""
    with GarbageServer() as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error == (
        f"127.0.0.1:{server.port}: not a TLS server: it answered 'HTTP/1.1 400 Bad Request'"
    )


def test_binary_garbage_is_shown_as_hex(run_probe: Prober) -> None:
    """A binary non-TLS answer is shown as its first bytes in hex."""
    with GarbageServer(payload=b"\x00\x01\x02\xff" * 8, read_first=False) as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error == (
        f"127.0.0.1:{server.port}: not a TLS server: it answered bytes "
        "00 01 02 ff 00 01 02 ff 00 01 02 ff 00 01 02 ff"
    )


def test_banner_of_a_server_that_speaks_first_is_quoted(run_probe: Prober) -> None:
    """A server that talks first (an SSH banner) is named by what it said."""
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
    with GarbageServer(payload=banner, read_first=False, hold_open=True) as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error == (
        f"127.0.0.1:{server.port}: not a TLS server: it answered 'SSH-2.0-OpenSSH_9.2p1 Debian-2'"
    )


def test_silent_close_is_reported(run_probe: Prober) -> None:
    """A server that reads the ClientHello and closes without a word is reported as closing."""
    with GarbageServer(payload=b"") as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error == (
        f"127.0.0.1:{server.port}: the server closed the connection during the TLS handshake"
    )


def test_tls_alert_is_reported_as_a_handshake_failure(run_probe: Prober) -> None:
    """A fatal TLS alert in answer to the ClientHello gives 'TLS handshake failed: <reason>'."""
    handshake_failure_alert = b"\x15\x03\x03\x00\x02\x02\x28"
    with GarbageServer(payload=handshake_failure_alert) as server:
        result = run_probe("127.0.0.1", server.port, timeout=5.0)
    assert result.error is not None
    assert result.error.startswith(f"127.0.0.1:{server.port}: TLS handshake failed: ")
    assert "handshake failure" in result.error
    assert result.chain == ()


def test_refused_port_is_reported(run_probe: Prober) -> None:
    """Nothing listening gives '<host>:<port>: connection refused'."""
    with refused_port() as port:
        result = run_probe("127.0.0.1", port)
    assert result.error == f"127.0.0.1:{port}: connection refused"
    assert result.tls_version is None


def test_unresolvable_host_is_reported(run_probe: Prober) -> None:
    """A name that does not resolve gives a 'cannot resolve host name' sentence."""
    result = run_probe("no-such-host.invalid", 443, timeout=5.0)
    assert result.error is not None
    assert result.error.startswith("no-such-host.invalid:443: cannot resolve host name")


@pytest.mark.parametrize(
    ("port", "timeout", "message"),
    [
        (0, 1.0, "port 0 is not a number between 1 and 65535"),
        (70000, 1.0, "port 70000 is not a number between 1 and 65535"),
        (443, 0.0, "timeout must be a positive number of seconds, got 0.0"),
        (443, float("inf"), "timeout must be a positive number of seconds, got inf"),
    ],
)
def test_bad_arguments_come_back_as_errors(port: int, timeout: float, message: str) -> None:
    """Out-of-range ports and non-positive timeouts are reported in the result, not raised."""
    result = probe("127.0.0.1", port, timeout=timeout)
    assert result.error == f"127.0.0.1:{port}: {message}"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_probes_leave_no_open_file_descriptors(pki: pkigen.ThreeTier, run_probe: Prober) -> None:
    """Every path through a probe closes its socket (counted once the servers are stopped)."""
    with PythonTLSServer.from_issued(pki.leaf) as warm:
        run_probe("127.0.0.1", warm.port)  # lazily created contexts are not leaks
    before = len(os.listdir("/proc/self/fd"))
    with (
        PythonTLSServer.from_issued(pki.leaf) as good,
        BlackholeServer() as hole,
        ResetServer() as reset,
        GarbageServer() as garbage,
        refused_port() as refused,
    ):
        for _ in range(3):
            assert run_probe("127.0.0.1", good.port).ok
            for port in (hole.port, reset.port, garbage.port, refused):
                assert not run_probe("127.0.0.1", port, timeout=0.3).ok
    after = len(os.listdir("/proc/self/fd"))
    assert after == before


# --------------------------------------------------------------------------------------------
# probe_many


def test_probe_many_over_twenty_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """probe_many returns every server's own chain, never running more than `concurrency`."""
    root = pkigen.make_root("Many Root")
    inter = pkigen.make_intermediate("Many Issuing CA", root)
    leaves = [pkigen.make_leaf([f"host{i}.example.test"], inter) for i in range(20)]
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    real = probe_mod._probe

    def counting(*args: Any) -> ProbeResult:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return real(*args)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(probe_mod, "_probe", counting)
    factories = iter(leaves)
    servers = started(lambda: tls_server(next(factories), inter), len(leaves))
    try:
        targets = [
            ("127.0.0.1", server.port, f"host{i}.example.test") for i, server in enumerate(servers)
        ]
        results = probe_many(targets, concurrency=4, timeout=10.0)
    finally:
        for server in servers:
            server.stop()
    assert list(results) == targets
    for target, leaf in zip(targets, leaves, strict=True):
        assert results[target].error is None
        assert results[target].chain == (leaf.der, inter.der)
        assert results[target].servername == target[2]
    assert 1 <= peak <= 4


def test_probe_many_mixes_failures_with_successes(pki: pkigen.ThreeTier) -> None:
    """One endpoint's failure does not affect the others; duplicates are probed once."""
    with PythonTLSServer.from_issued(pki.leaf) as good, refused_port() as refused:
        targets = [
            ("127.0.0.1", good.port, None),
            ("127.0.0.1", refused, None),
            ("127.0.0.1", good.port, None),
        ]
        results = probe_many(targets, concurrency=2, timeout=5.0)
        assert good.wait_for_handshakes(1)
        assert good.handshakes == 1
    assert list(results) == targets[:2]
    assert results[targets[0]].chain == (pki.leaf.der,)
    assert results[targets[1]].error == f"127.0.0.1:{refused}: connection refused"


def test_probe_many_deadlines_are_per_probe() -> None:
    """Blackholed probes queued behind each other each get their own full timeout."""
    with BlackholeServer() as hole:
        targets = [("127.0.0.1", hole.port, f"n{i}.example.test") for i in range(4)]
        started_at = time.monotonic()
        results = probe_many(targets, concurrency=2, timeout=0.5)
        elapsed = time.monotonic() - started_at
    for result in results.values():
        assert result.error is not None and "timed out after 0.5 s" in result.error
    assert elapsed >= 0.9  # two rounds of 0.5 s: queued probes did not share one deadline


def test_probe_many_edge_cases() -> None:
    """No targets gives {}; a concurrency below 1 is a ValueError."""
    assert probe_many([]) == {}
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        probe_many([("127.0.0.1", 443, None)], concurrency=0)


# --------------------------------------------------------------------------------------------
# parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("erp.example.test", ("erp.example.test", 443)),
        ("erp.example.test:8443", ("erp.example.test", 8443)),
        ("  erp.example.test:8443 \n", ("erp.example.test", 8443)),
        ("erp.example.test.", ("erp.example.test.", 443)),
        ("10.0.0.7", ("10.0.0.7", 443)),
        ("10.0.0.7:636", ("10.0.0.7", 636)),
        ("[::1]:8443", ("::1", 8443)),
        ("[2001:db8::7]", ("2001:db8::7", 443)),
        ("::1", ("::1", 443)),
        ("2001:db8::7", ("2001:db8::7", 443)),
        ("internal_host:1", ("internal_host", 1)),
        ("bücher.example:65535", ("bücher.example", 65535)),
    ],
)
def test_parse_target_accepts(text: str, expected: tuple[str, int]) -> None:
    """Host, host:port, [IPv6]:port and bare IPv6 forms parse to (host, port)."""
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty target"),
        ("   ", "empty target"),
        ("erp.example.test:", "missing port after ':'"),
        ("erp.example.test:0", "port '0' is not a number from 1 to 65535"),
        ("erp.example.test:65536", "port '65536' is not a number from 1 to 65535"),
        ("erp.example.test:https", "port 'https' is not a number from 1 to 65535"),
        ("erp.example.test:-1", "port '-1' is not a number from 1 to 65535"),
        (":8443", "missing host before ':'"),
        ("[::1", "missing ']'"),
        ("[::1]8443", "expected ':port' after ']'"),
        ("[erp.example.test]:443", "inside brackets is not an IPv6 address"),
        ("2001:db8::zz", "is not a valid IPv6 address; to add a port, write [address]:port"),
        ("https://erp.example.test/", "is a URL"),
        ("erp example test", "is not a valid host name or address"),
        ("erp..example.test", "is not a valid host name or address"),
        ("user@erp.example.test", "is not a valid host name or address"),
    ],
)
def test_parse_target_rejects_with_a_sentence(text: str, message: str) -> None:
    """Malformed targets raise ValueError with a sentence that quotes the input."""
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_target(text)
    if text.strip():
        assert repr(text) in str(info.value)


# --------------------------------------------------------------------------------------------
# Value object


def test_probe_result_is_immutable() -> None:
    """ProbeResult is a frozen, slotted value object."""
    result = ProbeResult("h", 443, None, (), "h:443: connection refused", 0.1, None)
    with pytest.raises(AttributeError):
        result.error = None  # type: ignore[misc]
    assert not hasattr(result, "__dict__")
    assert not result.ok


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Every test stops what it started: no server thread outlives its test."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        extra = [
            t
            for t in set(threading.enumerate()) - before
            if t.is_alive() and not t.name.startswith("chainwarden-probe")
        ]
        if not extra or time.monotonic() > deadline:
            break
        extra[0].join(0.1)
    assert not extra, f"threads left running: {extra}"


if sys.version_info >= (3, 13):  # pragma: no cover - exercised on 3.13+ only

    def test_default_backend_is_the_standard_library() -> None:
        """On Python 3.13+ the probe needs no pyOpenSSL: ssl gives the unverified chain."""
        assert isinstance(probe_mod._default_backend(), probe_mod._StdlibBackend)

else:

    def test_default_backend_is_pyopenssl_before_3_13() -> None:
        """Before Python 3.13 the probe reads chains through pyOpenSSL."""
        assert isinstance(probe_mod._default_backend(), probe_mod._PyOpenSSLBackend)
