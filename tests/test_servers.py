"""Tests for the loopback test servers in tests/servers.py (the suite's own fixtures)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from chainwarden import pkigen
from servers import (
    AIAServer,
    BlackholeServer,
    Body,
    GarbageServer,
    OpenSSLServer,
    Oversized,
    PythonTLSServer,
    Redirect,
    Slow,
    Status,
    TrickleServer,
    refused_port,
    requires_openssl,
    wait_for_port,
)

MARGIN = 4.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore proxy settings


@pytest.fixture(scope="module")
def pki() -> pkigen.ThreeTier:
    return pkigen.three_tier("erp.example.test")


def _connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


def _get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    with OPENER.open(url, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Every test stops what it started: no server thread outlives its test."""
    before = set(threading.enumerate())
    yield
    extra = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    for thread in extra:
        thread.join(5.0)
    assert not [t for t in extra if t.is_alive()], f"threads left running: {extra}"


# --------------------------------------------------------------------------------------------
# TLS servers


@requires_openssl
def test_openssl_server_presents_the_chain_and_stops(pki: pkigen.ThreeTier) -> None:
    """s_server presents leaf + chain in order; stop() reaps it and frees the port."""
    server = OpenSSLServer.from_issued(pki.leaf, pki.intermediate)
    with server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(server.address, timeout=5.0) as raw,
            context.wrap_socket(raw) as tls,
        ):
            assert tls.getpeercert(binary_form=True) == pki.leaf.der
    assert server._proc.returncode is not None
    assert _connect_refused(server.port)
    server.stop()  # idempotent


@requires_openssl
def test_openssl_server_that_cannot_start_raises_with_its_stderr(pki: pkigen.ThreeTier) -> None:
    """A key that does not match the certificate makes start-up fail with s_server's words."""
    other = pkigen.make_leaf(["other.example.test"], pki.intermediate)
    with pytest.raises(RuntimeError, match="openssl s_server exited"):
        OpenSSLServer(pki.leaf.pem, other.key_pem())


def test_python_tls_server_stop_unblocks_open_connections(pki: pkigen.ThreeTier) -> None:
    """stop() returns promptly even while a client keeps a TLS connection open."""
    server = PythonTLSServer.from_issued(pki.leaf)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(server.address, timeout=5.0) as raw,
        context.wrap_socket(raw, server_hostname="erp.example.test") as tls,
    ):
        assert server.wait_for_handshakes(1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < MARGIN
        assert tls.recv(1) == b""  # the server side is gone
    assert server.server_names == ["erp.example.test"]
    assert _connect_refused(server.port)


def test_blackhole_holds_connections_until_stop() -> None:
    """The blackhole sends nothing; stop() closes the held connection and the port."""
    with BlackholeServer() as server, socket.create_connection(server.address) as client:
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(1)
        server.stop()
        client.settimeout(5.0)
        assert client.recv(1) == b""
    assert server.connections == 1
    assert _connect_refused(server.port)


def test_garbage_server_sends_its_payload() -> None:
    """The garbage server answers with its payload and closes."""
    with GarbageServer(payload=b"hello", read_first=False) as server:
        with socket.create_connection(server.address, timeout=5.0) as client:
            data = b""
            while chunk := client.recv(100):
                data += chunk
    assert data == b"hello"


def test_trickle_server_drips_after_a_record_header() -> None:
    """The trickle server sends a TLS record header, then keeps dripping bytes."""
    with TrickleServer(interval=0.01) as server:
        with socket.create_connection(server.address, timeout=5.0) as client:
            client.sendall(b"hello")
            data = b""
            while len(data) < 8:
                data += client.recv(100)
    assert data.startswith(TrickleServer.TLS_RECORD_HEADER)


def test_wait_for_port_gives_up_at_its_deadline() -> None:
    """wait_for_port raises after its timeout when nothing listens."""
    with refused_port() as port, pytest.raises(RuntimeError, match="nothing accepted"):
        wait_for_port("127.0.0.1", port, timeout=0.3)


# --------------------------------------------------------------------------------------------
# AIA server


def test_aia_serves_bodies_and_counts_hits(pki: pkigen.ThreeTier) -> None:
    """Paths serve their bytes and content type; hits count per path, query stripped."""
    with AIAServer({"/issuing.der": (pki.intermediate.der, "application/pkix-cert")}) as aia:
        status, headers, body = _get(aia.url("/issuing.der"))
        _get(aia.url("issuing.der?x=1"))
        assert aia.hits["/issuing.der"] == 2
    assert status == 200
    assert headers["Content-Type"] == "application/pkix-cert"
    assert body == pki.intermediate.der


def test_aia_unknown_path_is_404_and_status_routes_answer_their_code() -> None:
    """Unknown paths give 404; a Status route gives its code; both are counted."""
    with AIAServer({"/broken": Status(500)}) as aia:
        for path, code in (("/nothing", 404), ("/broken", 500)):
            with pytest.raises(urllib.error.HTTPError) as info:
                _get(aia.url(path))
            assert info.value.code == code
            info.value.close()
        assert aia.hits == {"/nothing": 1, "/broken": 1}


def test_aia_redirects_to_a_path() -> None:
    """A Redirect route sends the client on to another path of the same server."""
    with AIAServer({"/old": Redirect("/new"), "/new": Body(b"cert")}) as aia:
        status, _headers, body = _get(aia.url("/old"))
        assert aia.hits == {"/old": 1, "/new": 1}
    assert (status, body) == (200, b"cert")


def test_aia_redirect_loop_is_a_loop() -> None:
    """redirect_loop makes two paths point at each other; a client gives up on it."""
    with AIAServer() as aia:
        aia.redirect_loop("/a", "/b")
        with pytest.raises(urllib.error.HTTPError, match="redirect") as info:
            _get(aia.url("/a"))
        info.value.close()
        hits = aia.hits
    assert hits["/a"] >= 2 and hits["/b"] >= 2


def test_aia_slow_route_drips_over_the_given_time() -> None:
    """A Slow route delivers the whole body, taking about the given number of seconds."""
    with AIAServer({"/slow": Slow(b"x" * 100, seconds=0.5, chunks=5)}) as aia:
        started = time.monotonic()
        _status, _headers, body = _get(aia.url("/slow"))
        elapsed = time.monotonic() - started
    assert body == b"x" * 100
    assert 0.4 <= elapsed < 0.5 + MARGIN


def test_aia_stop_ends_a_slow_response_at_once() -> None:
    """stop() does not wait for a slow response to finish dripping."""
    aia = AIAServer({"/slow": Slow(b"x" * 10, seconds=60.0)})
    response = OPENER.open(aia.url("/slow"), timeout=10.0)
    started = time.monotonic()
    aia.stop()
    stopped_in = time.monotonic() - started
    response.close()
    assert stopped_in < MARGIN


@pytest.mark.parametrize("declare_length", [True, False])
def test_aia_oversized_route_streams_that_many_bytes(declare_length: bool) -> None:
    """An Oversized route streams `size` bytes, with or without a Content-Length."""
    size = 3 * 1024 * 1024 + 5
    with AIAServer({"/big": Oversized(size, declare_length=declare_length)}) as aia:
        _status, headers, body = _get(aia.url("/big"))
    assert len(body) == size
    assert ("Content-Length" in headers) is declare_length


def test_aia_client_abandoning_an_oversized_body_does_not_break_the_server() -> None:
    """A client that stops reading a huge body early leaves the server healthy."""
    with AIAServer({"/big": Oversized(1 << 30), "/ok": Body(b"fine")}) as aia:
        with OPENER.open(aia.url("/big"), timeout=10.0) as response:
            assert len(response.read(1024)) == 1024
        assert _get(aia.url("/ok"))[2] == b"fine"
