"""Real loopback servers for the test suite: TLS endpoints, misbehaving TCP peers, an AIA host.

Every server here binds a loopback address (127.0.0.1 unless told otherwise) on a free port
chosen by the kernel, is ready when its constructor returns, is a context manager, and stops
cleanly with `stop()` (idempotent): threads are joined, sockets closed, processes reaped.
Readiness and shutdown are synchronised with events and deadline-bounded polls, never with
fixed sleeps.

    from servers import OpenSSLServer, tls_server

    pki = pkigen.three_tier()
    with OpenSSLServer.from_issued(pki.leaf, pki.intermediate) as server:
        result = probe("127.0.0.1", server.port)

Classes:

* `OpenSSLServer`: `openssl s_server -www` presenting a leaf plus the chain certificates given,
  in the order given (skip with `requires_openssl` where the tool is missing).
* `PythonTLSServer`: the same contract with Python's `ssl` module in threads, plus special
  behaviour: SNI recording, per-name certificates, version limits, client-certificate demand.
* `BlackholeServer`, `ResetServer`, `GarbageServer`, `TrickleServer`: TCP peers that never
  answer, reset the connection, answer with bytes that are not TLS, or drip bytes forever.
* `AIAServer`: a threaded HTTP server for AIA caIssuers fetches with per-path behaviours
  (`Body`, `Redirect`, `Slow`, `Oversized`, `Status`) and per-path hit counts.

`tls_server()` returns an OpenSSLServer when openssl is installed and a PythonTLSServer
otherwise; `free_port()` and `refused_port()` help with "nothing listens here" tests.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import selectors
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from chainwarden.pkigen import Issued

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds a server may take to become ready
STOP_TIMEOUT = 10.0  # seconds stop() waits for a thread or process before giving up on it

OPENSSL = shutil.which("openssl")
requires_openssl = pytest.mark.skipif(
    OPENSSL is None,
    reason="the openssl command-line tool is not installed (needed to run openssl s_server)",
)


def ipv6_loopback_available() -> bool:
    """True when a socket can bind ::1 here (some containers have no IPv6 at all)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine cannot bind the IPv6 loopback ::1"
)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Poll until a TCP connect to host:port succeeds; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is a bounded pause between polls
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last = exc
        pause.wait(0.02)
    raise RuntimeError(f"nothing accepted connections on {host}:{port} within {timeout} s: {last}")


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (racy: prefer `refused_port()` to keep it reserved)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refused_port(host: str = LOOPBACK) -> Iterator[int]:
    """A port bound but not listening for the duration: connecting to it is refused."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


class LoopbackServer:
    """What every server here offers: `host`, `port`, `address`, `stop()`, `with` support."""

    host: str
    port: int

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _write_pki(
    directory: Path, cert_pem: bytes, key_pem: bytes, chain_pems: Sequence[bytes]
) -> tuple[Path, Path, Path | None]:
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    os.chmod(key, 0o600)
    chain: Path | None = None
    if chain_pems:
        chain = directory / "chain.pem"
        chain.write_bytes(b"".join(_ensure_newline(pem) for pem in chain_pems))
    return cert, key, chain


def _ensure_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


# --------------------------------------------------------------------------------------------
# openssl s_server


class OpenSSLServer(LoopbackServer):
    """`openssl s_server -www` on 127.0.0.1, presenting the leaf then `chain_pems` in order.

    The process serves any number of connections, one at a time. The kernel picks the port
    (`-accept 127.0.0.1:0`); it is read from the server's "ACCEPT" line, then confirmed with a
    TCP connect. `tls_version` is "1.2" or "1.3" to allow only that version.
    """

    def __init__(
        self,
        cert_pem: bytes,
        key_pem: bytes,
        chain_pems: Sequence[bytes] = (),
        *,
        tls_version: str | None = None,
        extra_args: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if OPENSSL is None:
            raise RuntimeError("the openssl command-line tool is not installed")
        if tls_version not in (None, "1.2", "1.3"):
            raise ValueError(f"tls_version must be '1.2', '1.3' or None, not {tls_version!r}")
        self.host = LOOPBACK
        self.port = 0
        self._stopped = False
        self._tmp = tempfile.TemporaryDirectory(prefix="chainwarden-s_server-")
        directory = Path(self._tmp.name)
        cert, key, chain = _write_pki(directory, cert_pem, key_pem, chain_pems)
        args = [OPENSSL, "s_server", "-accept", f"{LOOPBACK}:0", "-www", "-no_ticket"]
        args += ["-cert", str(cert), "-key", str(key)]
        if chain is not None:
            args += ["-cert_chain", str(chain)]
        if tls_version is not None:
            args.append("-tls1_2" if tls_version == "1.2" else "-tls1_3")
        args += list(extra_args)
        self.args = args
        self._stderr_path = directory / "stderr.log"
        self._ready = threading.Event()
        try:
            with open(self._stderr_path, "wb") as stderr:
                self._proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
                )
        except BaseException:
            self._tmp.cleanup()
            raise
        self._reader = threading.Thread(
            target=self._read_stdout, name="s_server-stdout", daemon=True
        )
        self._reader.start()
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    @classmethod
    def from_issued(cls, leaf: Issued, *chain: Issued, **kwargs: Any) -> OpenSSLServer:
        """Serve `leaf` (with its key) and present `chain` after it, in that order."""
        return cls(leaf.pem, leaf.key_pem(), [item.pem for item in chain], **kwargs)

    def _read_stdout(self) -> None:
        """Find the ACCEPT line, then keep draining stdout so the server never blocks on it."""
        stdout = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            if not self._ready.is_set() and line.startswith(b"ACCEPT"):
                _, _, port = line.strip().rpartition(b":")
                if port.isdigit():
                    self.port = int(port)
                self._ready.set()
        self._ready.set()  # EOF: the process ended; the waiter checks why

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout) or not self.port:
            code = self._proc.poll()
            if code is None and self._ready.is_set():
                # stdout reached EOF: the process is ending; reap it rather than race its exit.
                try:
                    code = self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
            state = "is still starting" if code is None else f"exited with status {code}"
            raise RuntimeError(
                f"openssl s_server {state} without listening: {self.stderr_text().strip()}"
            )
        wait_for_port(self.host, self.port, max(0.1, deadline - time.monotonic()))

    def stderr_text(self) -> str:
        """What s_server wrote to stderr so far (for diagnosing a failed test)."""
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate (then kill if needed) and reap the process; remove the key files."""
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()
        self._tmp.cleanup()


# --------------------------------------------------------------------------------------------
# Threaded TCP servers


class _ThreadedTCPServer(LoopbackServer):
    """Accept loop in a thread, one handler thread per connection, clean stop.

    Subclasses implement `handle(conn)`; they may block on `self._stopping` (an Event set by
    `stop()`). `stop()` wakes the accept loop, shuts down open connections so blocked
    handlers return, and joins every thread.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self._stopping = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        self.connections = 0  # connections accepted so far
        self.errors: list[BaseException] = []  # unexpected handler exceptions, for debugging
        self._listener = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            self._listener.bind((host, 0))
            self._listener.listen(128)
        except BaseException:
            self._listener.close()
            raise
        self.port = int(self._listener.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._acceptor.start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        return
                    try:
                        conn, _addr = self._listener.accept()
                    except OSError:
                        continue
                    self._start_handler(conn)

    def _start_handler(self, conn: socket.socket) -> None:
        with self._lock:
            if self._stopping.is_set():
                conn.close()
                return
            self.connections += 1
            self._conns.add(conn)
            thread = threading.Thread(
                target=self._run_handler, args=(conn,), name=f"{type(self).__name__}-conn"
            )
            self._handlers.append(thread)
        thread.start()

    def _replace(self, old: socket.socket, new: socket.socket) -> bool:
        """Track `new` (e.g. the TLS socket wrapping `old`) so stop() can shut it down.

        Returns False when the server is stopping, in which case the handler should return.
        """
        with self._lock:
            self._conns.discard(old)
            if self._stopping.is_set():
                return False
            self._conns.add(new)
            return True

    def _run_handler(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass  # the client went away or stop() shut the socket: both are normal here
        except BaseException as exc:  # kept for the test to inspect, never raised in a thread
            self.errors.append(exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def stop(self) -> None:
        """Stop accepting, unblock and join every handler, close every socket."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping.set()
            conns = list(self._conns)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._acceptor.join(STOP_TIMEOUT)
        self._listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._lock:
            handlers = list(self._handlers)
        for thread in handlers:
            thread.join(STOP_TIMEOUT)
        self._wake_r.close()
        self._wake_w.close()


def _read_some(conn: socket.socket, timeout: float = 5.0) -> bytes:
    """Wait for the client's first bytes (its ClientHello), up to `timeout` seconds."""
    conn.settimeout(timeout)
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""


class BlackholeServer(_ThreadedTCPServer):
    """Accepts TCP connections and never sends a byte; holds them open until stop()."""

    def handle(self, conn: socket.socket) -> None:
        self._stopping.wait()


class ResetServer(_ThreadedTCPServer):
    """Accepts, then resets the connection (SO_LINGER 0 and close sends a TCP RST).

    With `read_first` (the default) it waits for the client's first bytes before resetting,
    so the client sees the reset while waiting for the server's reply.
    """

    def __init__(self, host: str = LOOPBACK, *, read_first: bool = True) -> None:
        self.read_first = read_first
        super().__init__(host)

    def handle(self, conn: socket.socket) -> None:
        if self.read_first:
            _read_some(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class GarbageServer(_ThreadedTCPServer):
    """Answers every connection with `payload` (not TLS), then closes it.

    With `read_first` (the default) it waits for the client's first bytes before answering,
    like a plain HTTP server receiving a ClientHello; otherwise it speaks first, like SSH.
    With `hold_open` it keeps the connection open after the payload until stop().
    """

    DEFAULT_PAYLOAD = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
        b"Connection: close\r\n\r\nbad request"
    )

    def __init__(
        self,
        host: str = LOOPBACK,
        *,
        payload: bytes = DEFAULT_PAYLOAD,
        read_first: bool = True,
        hold_open: bool = False,
    ) -> None:
        self.payload = payload
        self.read_first = read_first
        self.hold_open = hold_open
        super().__init__(host)

    def handle(self, conn: socket.socket) -> None:
        if self.read_first:
            _read_some(conn)
        conn.sendall(self.payload)
        if self.hold_open:
            self._stopping.wait()


class TrickleServer(_ThreadedTCPServer):
    """Reads the client's first bytes, sends `prefix`, then one filler byte every `interval`.

    The default prefix is a TLS handshake record header announcing 16 KiB, so a client keeps
    waiting for the rest of the record: a read timeout that restarts on every byte never
    fires, only an overall deadline does. Trickling ends when the client leaves or on stop().
    """

    TLS_RECORD_HEADER = b"\x16\x03\x03\x40\x00"

    def __init__(
        self, host: str = LOOPBACK, *, prefix: bytes = TLS_RECORD_HEADER, interval: float = 0.1
    ) -> None:
        self.prefix = prefix
        self.interval = interval
        super().__init__(host)

    def handle(self, conn: socket.socket) -> None:
        _read_some(conn)
        conn.sendall(self.prefix)
        # Pacing, not synchronisation: stop() sets the event and ends the loop at once.
        while not self._stopping.wait(self.interval):
            conn.sendall(b"\x00")


# --------------------------------------------------------------------------------------------
# Python ssl server


@dataclass(frozen=True)
class Identity:
    """A certificate to serve: leaf PEM, its key PEM and the chain PEMs presented after it."""

    cert_pem: bytes
    key_pem: bytes
    chain_pems: tuple[bytes, ...] = ()

    @classmethod
    def from_issued(cls, leaf: Issued, *chain: Issued) -> Identity:
        return cls(leaf.pem, leaf.key_pem(), tuple(item.pem for item in chain))


class PythonTLSServer(_ThreadedTCPServer):
    """A TLS server in threads using Python's `ssl`, presenting the leaf then `chain_pems`.

    Special behaviour:

    * `server_names` lists the SNI value of every ClientHello (None when none was sent).
    * `by_name` maps an SNI name to another `Identity` to present for that name.
    * `minimum_version` / `maximum_version` limit the TLS versions (`ssl.TLSVersion`).
    * `require_client_cert=True` demands a client certificate (signed by `client_ca_pem`,
      default: the served leaf, so no real client passes) and fails handshakes without one.

    After a handshake the server reads until the client closes or stop() is called.
    `handshakes` counts completed handshakes, `handshake_errors` the failed ones.
    """

    def __init__(
        self,
        cert_pem: bytes,
        key_pem: bytes,
        chain_pems: Sequence[bytes] = (),
        *,
        host: str = LOOPBACK,
        minimum_version: ssl.TLSVersion | None = None,
        maximum_version: ssl.TLSVersion | None = None,
        by_name: Mapping[str, Identity] | None = None,
        require_client_cert: bool = False,
        client_ca_pem: bytes | None = None,
        handshake_timeout: float = 5.0,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="chainwarden-pytls-")
        self._counter = 0
        self.server_names: list[str | None] = []
        self.handshakes = 0
        self.handshake_errors: list[str] = []
        self.handshake_timeout = handshake_timeout
        self._settings = (minimum_version, maximum_version, require_client_cert)
        self._client_ca_pem = client_ca_pem if client_ca_pem is not None else cert_pem
        try:
            self._context = self._make_context(Identity(cert_pem, key_pem, tuple(chain_pems)))
            self._by_name = {
                name.lower(): self._make_context(identity)
                for name, identity in (by_name or {}).items()
            }
            self._context.sni_callback = self._on_sni
            super().__init__(host)
            self._handshake_done = threading.Condition(self._lock)
        except BaseException:
            self._tmp.cleanup()
            raise

    @classmethod
    def from_issued(cls, leaf: Issued, *chain: Issued, **kwargs: Any) -> PythonTLSServer:
        """Serve `leaf` (with its key) and present `chain` after it, in that order."""
        return cls(leaf.pem, leaf.key_pem(), [item.pem for item in chain], **kwargs)

    def _make_context(self, identity: Identity) -> ssl.SSLContext:
        minimum, maximum, require_client_cert = self._settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        self._counter += 1
        directory = Path(self._tmp.name) / str(self._counter)
        directory.mkdir()
        cert, key, _ = _write_pki(directory, identity.cert_pem, identity.key_pem, ())
        # load_cert_chain sends the extra certificates of the file in file order.
        full = directory / "full.pem"
        full.write_bytes(
            b"".join(_ensure_newline(pem) for pem in (identity.cert_pem, *identity.chain_pems))
        )
        context.load_cert_chain(full, key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self._client_ca_pem.decode("ascii"))
        return context

    def _on_sni(
        self, sslobj: ssl.SSLSocket | ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        with self._lock:
            self.server_names.append(name)
        if name is not None and name.lower() in self._by_name:
            sslobj.context = self._by_name[name.lower()]

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(self.handshake_timeout)
        tls = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            if self._replace(conn, tls):
                self._serve(tls)
        finally:
            with self._lock:
                self._conns.discard(tls)
            tls.close()

    def wait_for_handshakes(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `count` handshakes have completed server-side; False on timeout.

        A TLS 1.3 client finishes its handshake before the server does, so a test that has
        its probe result in hand may still need to wait for the server's count.
        """
        with self._handshake_done:
            return self._handshake_done.wait_for(lambda: self.handshakes >= count, timeout)

    def _serve(self, tls: ssl.SSLSocket) -> None:
        try:
            tls.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            with self._lock:
                self.handshake_errors.append(str(exc))
            return
        with self._handshake_done:
            self.handshakes += 1
            self._handshake_done.notify_all()
        # Serve until the client leaves; stop() shuts the socket down to end this early.
        tls.settimeout(None)
        with contextlib.suppress(OSError, ssl.SSLError):
            while tls.recv(4096):
                pass

    def stop(self) -> None:
        super().stop()
        self._tmp.cleanup()


# --------------------------------------------------------------------------------------------
# AIA (HTTP) server


@dataclass(frozen=True)
class Body:
    """Answer with `data` (status 200 unless told)."""

    data: bytes
    content_type: str = "application/pkix-cert"
    status: int = 200


@dataclass(frozen=True)
class Redirect:
    """Redirect to `to`: a path on this server or an absolute URL."""

    to: str
    status: int = 302


@dataclass(frozen=True)
class Slow:
    """Send `data` in `chunks` pieces spread evenly over `seconds` (Content-Length up front)."""

    data: bytes
    seconds: float
    content_type: str = "application/pkix-cert"
    chunks: int = 10


@dataclass(frozen=True)
class Oversized:
    """Stream `size` bytes of filler; `declare_length=False` omits Content-Length."""

    size: int
    content_type: str = "application/pkix-cert"
    declare_length: bool = True


@dataclass(frozen=True)
class Status:
    """Answer with an empty body and this status (404, 500, ...)."""

    code: int


Route = Body | Redirect | Slow | Oversized | Status
RouteLike = Route | tuple[bytes, str]


def _as_route(route: RouteLike) -> Route:
    if isinstance(route, tuple):
        data, content_type = route
        return Body(data, content_type)
    return route


class _AIAHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads
    block_on_close = True
    owner: AIAServer


class _AIAHandler(http.server.BaseHTTPRequestHandler):
    server: _AIAHTTPServer
    timeout = 5.0  # a client that connects and sends nothing does not hold a thread forever
    protocol_version = "HTTP/1.0"  # one request per connection, so stop() never waits on one

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.owner._serve(self)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.owner._serve(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output quiet


class AIAServer(LoopbackServer):
    """Threaded HTTP server on 127.0.0.1 serving `routes` (path -> route); other paths 404.

    A route is `(bytes, content_type)` or one of `Body`, `Redirect`, `Slow`, `Oversized`,
    `Status`. `hits` counts requests per path (query strings stripped), unknown paths too.
    """

    def __init__(self, routes: Mapping[str, RouteLike] | None = None) -> None:
        self.host = LOOPBACK
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {
            path: _as_route(route) for path, route in (routes or {}).items()
        }
        self._hits: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._stopped = False
        self._httpd = _AIAHTTPServer((LOOPBACK, 0), _AIAHandler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="aia-http"
        )
        self._thread.start()

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self.host}:{self.port}{path}"

    def set(self, path: str, route: RouteLike) -> None:
        """Add or replace the route for `path`."""
        with self._lock:
            self._routes[path] = _as_route(route)

    def redirect_loop(self, first: str, second: str) -> None:
        """Make `first` redirect to `second` and `second` back to `first`."""
        self.set(first, Redirect(second))
        self.set(second, Redirect(first))

    @property
    def hits(self) -> Counter[str]:
        """Requests received per path so far (a snapshot)."""
        with self._lock:
            return Counter(self._hits)

    def _serve(self, handler: _AIAHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self._hits[path] += 1
            route = self._routes.get(path)
        head_only = handler.command == "HEAD"
        if route is None:
            route = Status(404)
        if isinstance(route, Body):
            self._headers(handler, route.status, route.content_type, len(route.data))
            if not head_only:
                handler.wfile.write(route.data)
        elif isinstance(route, Status):
            self._headers(handler, route.code, "text/plain", 0)
        elif isinstance(route, Redirect):
            location = route.to if "://" in route.to else self.url(route.to)
            handler.send_response(route.status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif isinstance(route, Slow):
            self._headers(handler, 200, route.content_type, len(route.data))
            if not head_only:
                self._drip(handler, route)
        else:
            length = route.size if route.declare_length else None
            self._headers(handler, 200, route.content_type, length)
            if not head_only:
                self._flood(handler, route.size)

    @staticmethod
    def _headers(handler: _AIAHandler, status: int, content_type: str, length: int | None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()

    def _drip(self, handler: _AIAHandler, route: Slow) -> None:
        pieces = max(1, min(route.chunks, len(route.data) or 1))
        step = -(-len(route.data) // pieces) if route.data else 0
        interval = route.seconds / pieces
        with contextlib.suppress(OSError):
            for index in range(pieces):
                # Pacing, not synchronisation: stop() sets the event and ends the drip at once.
                if self._stopping.wait(interval):
                    return
                handler.wfile.write(route.data[index * step : (index + 1) * step])
                handler.wfile.flush()

    def _flood(self, handler: _AIAHandler, size: int) -> None:
        block = b"0" * 65536
        left = size
        with contextlib.suppress(OSError):
            while left > 0 and not self._stopping.is_set():
                chunk = block[: min(left, len(block))]
                handler.wfile.write(chunk)
                left -= len(chunk)

    def stop(self) -> None:
        """Stop serving, end slow responses, join every thread, close the socket."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._httpd.shutdown()
        self._thread.join(STOP_TIMEOUT)
        self._httpd.server_close()


# --------------------------------------------------------------------------------------------
# Factories


def tls_server(leaf: Issued, *chain: Issued, tls_version: str | None = None) -> LoopbackServer:
    """An OpenSSLServer presenting leaf + chain if openssl is installed, else a PythonTLSServer."""
    if OPENSSL is not None:
        return OpenSSLServer.from_issued(leaf, *chain, tls_version=tls_version)
    versions = {
        None: (None, None),
        "1.2": (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
        "1.3": (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
    }
    minimum, maximum = versions[tls_version]
    return PythonTLSServer.from_issued(
        leaf, *chain, minimum_version=minimum, maximum_version=maximum
    )


def started(factory: Callable[[], LoopbackServer], count: int) -> list[LoopbackServer]:
    """Start `count` servers from `factory`; if one fails to start, stop the ones already up."""
    servers: list[LoopbackServer] = []
    try:
        for _ in range(count):
            servers.append(factory())
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
