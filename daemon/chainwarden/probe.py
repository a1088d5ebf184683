"""Fetch the certificate chain an HTTPS endpoint presents (shell: this module touches the network).

`probe()` opens a TCP connection, runs a TLS 1.2/1.3 client handshake with certificate
verification switched off (so broken chains are captured, not rejected), and returns the
certificates exactly as the server sent them, leaf first. It never raises for network or TLS
trouble: failures come back as a `ProbeResult` whose `error` is a sentence naming the endpoint.

How the chain is read:

* Python 3.13+ has `ssl.SSLObject.get_unverified_chain()`, which returns the presented chain
  as DER bytes; it is used when present.
* Python 3.11 and 3.12 can only return the leaf from the standard library, so there the
  handshake runs through pyOpenSSL (`SSL.Connection.get_peer_cert_chain()`).

Both paths drive the TLS engine through memory buffers while this module owns the socket.
That gives one deadline for the whole probe (TCP connect plus handshake: a server that
accepts and never answers fails at `timeout`, however it trickles bytes), and lets a failed
handshake be explained by what the server actually sent ("not a TLS server: it answered
'HTTP/1.1 400 Bad Request'"). One TLS context per backend is shared by all probes; a probe
holds a socket, a TLS session and at most one receive buffer, and closes the socket on every
path. The host name lookup counts against the same deadline (hostlookup: the probe stops
waiting for a hung resolver at the deadline).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from .hostlookup import ResolverBusy, getaddrinfo_within, is_ip_literal

__all__ = ["ProbeResult", "parse_target", "probe", "probe_many"]

Target = tuple[str, int, str | None]

_RECV_SIZE = 16384
_EXCERPT_BYTES = 48
# First byte of a TLS record: change_cipher_spec, alert, handshake, application_data, heartbeat.
_TLS_CONTENT_TYPES = frozenset(range(20, 25))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one endpoint presented, or why nothing could be read from it."""

    host: str
    port: int
    servername: str | None  # as requested; the SNI sent is servername or host, none for an IP
    chain: tuple[bytes, ...]  # DER certificates exactly as presented, leaf first; () on failure
    error: str | None  # a sentence naming the endpoint, None on success
    duration: float  # seconds, from start to the socket being closed
    tls_version: str | None  # "TLSv1.3" or "TLSv1.2" once negotiated

    @property
    def ok(self) -> bool:
        """True when the endpoint presented a certificate chain."""
        return self.error is None


class _Failure(Exception):
    """A probe failure; `reason` completes the sentence "host:port: ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TLSFailure(Exception):
    """The TLS engine rejected the handshake; `detail` is the library's reason, cleaned."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Session(Protocol):
    """A client TLS session driven through memory buffers (one per probe)."""

    def handshake(self) -> bool:
        """Advance the handshake: True when complete, False when more input is needed."""

    def outgoing(self) -> bytes:
        """Bytes the engine wants sent to the server (possibly empty)."""

    def feed(self, data: bytes) -> None:
        """Hand bytes received from the server to the engine."""

    def feed_eof(self) -> None:
        """Tell the engine the server closed its side."""

    def chain(self) -> tuple[bytes, ...]:
        """The presented chain as DER, leaf first; () if no Certificate message arrived."""

    def version(self) -> str | None:
        """The negotiated protocol version name, if known."""

    def close_notify(self) -> bytes:
        """Start a polite TLS shutdown; returns the close_notify alert to send."""


class _Backend(Protocol):
    def session(self, sni: str | None) -> _Session: ...


# --------------------------------------------------------------------------------------------
# Standard-library backend (Python 3.13+)


def _stdlib_unverified_chain(obj: ssl.SSLObject) -> list[Any]:
    method: Callable[[], list[Any] | None] = getattr(obj, "get_unverified_chain")  # noqa: B009
    return method() or []


class _StdlibSession:
    __slots__ = ("_get_chain", "_incoming", "_obj", "_outgoing")

    def __init__(
        self,
        context: ssl.SSLContext,
        sni: str | None,
        get_chain: Callable[[ssl.SSLObject], list[Any]],
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._get_chain = get_chain
        try:
            self._obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=sni)
        except (ValueError, UnicodeError) as exc:
            raise _Failure(f"cannot send {sni!r} as the TLS server name: {exc}") from None

    def handshake(self) -> bool:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise _TLSFailure(_clean_stdlib_error(exc)) from None
        return True

    def outgoing(self) -> bytes:
        return self._outgoing.read()

    def feed(self, data: bytes) -> None:
        self._incoming.write(data)

    def feed_eof(self) -> None:
        self._incoming.write_eof()

    def chain(self) -> tuple[bytes, ...]:
        try:
            certs = self._get_chain(self._obj)
        except (ssl.SSLError, ValueError, AttributeError):
            return ()
        return tuple(
            bytes(cert) if isinstance(cert, bytes | bytearray) else _der_of(cert) for cert in certs
        )

    def version(self) -> str | None:
        return self._obj.version()

    def close_notify(self) -> bytes:
        try:
            self._obj.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: the alert is written, the peer's reply is not awaited
        return self._outgoing.read()


def _der_of(cert: Any) -> bytes:
    """DER of an `_ssl.Certificate` (its default `public_bytes()` encoding is PEM)."""
    return ssl.PEM_cert_to_DER_cert(cert.public_bytes())


def _clean_stdlib_error(exc: ssl.SSLError) -> str:
    text = exc.strerror or str(exc)
    text = re.sub(r"^\[[A-Z0-9_]+: [A-Z0-9_]+\]\s*", "", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    return text or (exc.reason or "").replace("_", " ").lower() or type(exc).__name__


class _StdlibBackend:
    def __init__(self, get_chain: Callable[[ssl.SSLObject], list[Any]]) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_3
        # Capture chains from legacy servers too: nothing secret crosses this connection.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.options |= ssl.OP_NO_TICKET | getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
        self._context = context
        self._get_chain = get_chain

    def session(self, sni: str | None) -> _Session:
        return _StdlibSession(self._context, sni, self._get_chain)


# --------------------------------------------------------------------------------------------
# pyOpenSSL backend (Python 3.11 and 3.12)


class _PyOpenSSLSession:
    __slots__ = ("_conn", "_ssl")

    def __init__(self, ssl_module: Any, context: Any, sni: str | None) -> None:
        self._ssl = ssl_module
        self._conn = ssl_module.Connection(context, None)
        self._conn.set_connect_state()
        if sni is not None:
            try:
                name = sni.encode("idna")
            except UnicodeError as exc:
                raise _Failure(f"cannot send {sni!r} as the TLS server name: {exc}") from None
            self._conn.set_tlsext_host_name(name)

    def handshake(self) -> bool:
        ssl_module = self._ssl
        try:
            self._conn.do_handshake()
        except ssl_module.WantReadError:
            return False
        except ssl_module.Error as exc:
            raise _TLSFailure(_clean_pyopenssl_error(exc)) from None
        return True

    def outgoing(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk: bytes = self._conn.bio_read(_RECV_SIZE)
            except self._ssl.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def feed(self, data: bytes) -> None:
        self._conn.bio_write(data)

    def feed_eof(self) -> None:
        self._conn.bio_shutdown()

    def chain(self) -> tuple[bytes, ...]:
        certs = self._conn.get_peer_cert_chain(as_cryptography=True) or []
        return tuple(cert.public_bytes(Encoding.DER) for cert in certs)

    def version(self) -> str | None:
        name: str = self._conn.get_protocol_version_name()
        return name if name.startswith("TLS") else None

    def close_notify(self) -> bytes:
        try:
            self._conn.shutdown()
        except self._ssl.Error:
            pass
        return self.outgoing()


def _clean_pyopenssl_error(exc: Exception) -> str:
    args = exc.args
    if args and isinstance(args[0], list):
        reasons = [str(item[-1]) for item in args[0] if isinstance(item, tuple) and item]
        if reasons:
            return "; ".join(dict.fromkeys(reasons))
    if len(args) == 2 and isinstance(args[1], str):  # SysCallError(errno, text)
        return args[1].lower()
    return str(exc) or type(exc).__name__


class _PyOpenSSLBackend:
    def __init__(self) -> None:
        try:
            from OpenSSL import SSL
        except ImportError as exc:  # pragma: no cover - a packaging error, not a probe result
            raise ImportError(
                "chainwarden needs pyOpenSSL on Python < 3.13 to read presented certificate "
                "chains; install it with: pip install 'pyOpenSSL>=24.3'"
            ) from exc
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_max_proto_version(SSL.TLS1_3_VERSION)
        context.set_verify(SSL.VERIFY_NONE)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        context.set_options(SSL.OP_NO_TICKET | getattr(SSL, "OP_LEGACY_SERVER_CONNECT", 0x4))
        self._ssl: Any = SSL
        self._context = context

    def session(self, sni: str | None) -> _Session:
        return _PyOpenSSLSession(self._ssl, self._context, sni)


# --------------------------------------------------------------------------------------------
# Backend selection (one shared context per process, created on first use)

_backend: _Backend | None = None
_backend_lock = threading.Lock()


def _default_backend() -> _Backend:
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                if hasattr(ssl.SSLObject, "get_unverified_chain"):
                    _backend = _StdlibBackend(_stdlib_unverified_chain)
                else:
                    _backend = _PyOpenSSLBackend()
    return _backend


# --------------------------------------------------------------------------------------------
# The probe


def probe(
    host: str, port: int = 443, *, servername: str | None = None, timeout: float = 10.0
) -> ProbeResult:
    """TLS connect with verification OFF (so broken chains are still captured), SNI = servername
    or host (no SNI for IP literals), return the presented chain. Never raises for network/TLS
    errors.

    `timeout` bounds the TCP connect and the TLS handshake together.
    """
    return _probe(host, port, servername, timeout, None)


def _probe(
    host: str, port: int, servername: str | None, timeout: float, backend: _Backend | None
) -> ProbeResult:
    started = time.monotonic()
    chain: tuple[bytes, ...] = ()
    version: str | None = None
    error: str | None = None
    try:
        chain, version = _run(host, port, servername, timeout, started, backend)
    except _Failure as failure:
        error = f"{_label(host, port)}: {failure.reason}"
    except Exception as exc:  # a library surprise must not take down a probe_many batch
        error = f"{_label(host, port)}: unexpected {type(exc).__name__} while probing: {exc}"
    return ProbeResult(
        host=host,
        port=port,
        servername=servername,
        chain=chain,
        error=error,
        duration=time.monotonic() - started,
        tls_version=version,
    )


def _run(
    host: str,
    port: int,
    servername: str | None,
    timeout: float,
    started: float,
    backend: _Backend | None,
) -> tuple[tuple[bytes, ...], str | None]:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise _Failure(f"port {port!r} is not a number between 1 and 65535")
    if not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        raise _Failure(f"timeout must be a positive number of seconds, got {timeout!r}")
    deadline = started + timeout
    clock = _Deadline(deadline, timeout)
    sni = _server_name(servername if servername is not None else host)
    session = (backend or _default_backend()).session(sni)
    addresses = _resolve(host, port, clock)
    sock = _connect(addresses, port, clock)
    try:
        return _handshake(sock, session, clock)
    finally:
        sock.close()


class _Deadline:
    __slots__ = ("_deadline", "timeout")

    def __init__(self, deadline: float, timeout: float) -> None:
        self._deadline = deadline
        self.timeout = timeout

    def remaining(self, phase: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self.expired(phase)
        return left

    def expired(self, phase: str) -> _Failure:
        return _Failure(f"timed out after {float(self.timeout)} s during {phase}")


def _label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _server_name(name: str) -> str | None:
    """The SNI to send for `name`: none for IP literals (RFC 6066), no trailing dot."""
    name = name.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name or is_ip_literal(name):
        return None
    return name.rstrip(".") or None


def _resolve(host: str, port: int, clock: _Deadline) -> list[tuple[Any, ...]]:
    lookup = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = getaddrinfo_within(clock.remaining("DNS lookup"), lookup, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise clock.expired("DNS lookup") from None
    except ResolverBusy as exc:
        raise _Failure(f"cannot resolve host name: {exc}") from None
    except socket.gaierror as exc:
        reason = (exc.strerror or str(exc)).rstrip(".")
        raise _Failure(f"cannot resolve host name: {reason[:1].lower()}{reason[1:]}") from None
    except (UnicodeError, ValueError) as exc:
        raise _Failure(f"invalid host name: {exc}") from None
    clock.remaining("DNS lookup")
    if not infos:
        raise _Failure("cannot resolve host name: no addresses")
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


def _connect(addresses: list[tuple[Any, ...]], port: int, clock: _Deadline) -> socket.socket:
    """Connect to the first address that accepts, trying each in turn within the deadline."""
    failures: list[tuple[str, str]] = []
    for family, sockaddr in dict.fromkeys(addresses):
        left = clock.remaining("TCP connect")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect(sockaddr)
        except TimeoutError:
            sock.close()
            raise clock.expired("TCP connect") from None
        except OSError as exc:
            sock.close()
            failures.append((_label(str(sockaddr[0]), port), _os_reason(exc)))
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(failures) == 1:
        raise _Failure(failures[0][1])
    tried = "; ".join(f"{address} {reason}" for address, reason in failures)
    raise _Failure(f"could not connect to any of its {len(failures)} addresses: {tried}")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _handshake(
    sock: socket.socket, session: _Session, clock: _Deadline
) -> tuple[tuple[bytes, ...], str | None]:
    phase = "TLS handshake"
    first = bytearray()  # the first bytes of the server's reply, to explain a failure
    eof = False
    while True:
        try:
            done = session.handshake()
        except _TLSFailure as failure:
            _send_best_effort(sock, session.outgoing())  # the alert, if any
            chain = session.chain()
            if chain:
                # The server sent its whole Certificate message before the handshake broke
                # (typically: it requires a client certificate under TLS 1.2). That chain is
                # what a probe is for; the rest of the handshake does not matter here.
                return chain, session.version()
            raise _explain(failure.detail, bytes(first), eof) from None
        _send(sock, session.outgoing(), clock, phase)
        if done:
            chain = session.chain()
            if not chain:
                raise _Failure("the server completed the TLS handshake without a certificate")
            version = session.version()
            _send_best_effort(sock, session.close_notify())
            return chain, version
        if eof:  # the engine wants more, but there is no more
            raise _explain("", bytes(first), eof)
        sock.settimeout(clock.remaining(phase))
        try:
            data = sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise clock.expired(phase) from None
        except OSError as exc:
            raise _Failure(f"{_os_reason(exc)} during TLS handshake") from None
        if not data:
            eof = True
            session.feed_eof()
            continue
        if len(first) < _EXCERPT_BYTES:
            first += data[: _EXCERPT_BYTES - len(first)]
        session.feed(data)


def _send(sock: socket.socket, data: bytes, clock: _Deadline, phase: str) -> None:
    if not data:
        return
    sock.settimeout(clock.remaining(phase))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise clock.expired(phase) from None
    except OSError as exc:
        raise _Failure(f"{_os_reason(exc)} during TLS handshake") from None


def _send_best_effort(sock: socket.socket, data: bytes) -> None:
    if not data:
        return
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


def _looks_like_tls(first: bytes) -> bool:
    if not first:
        return True  # nothing to judge by
    if first[0] not in _TLS_CONTENT_TYPES:
        return False
    return len(first) < 2 or first[1] == 3


def _explain(detail: str, first: bytes, eof: bool) -> _Failure:
    """Turn a failed handshake into a sentence, using what the server actually sent."""
    if first and not _looks_like_tls(first):
        return _Failure(f"not a TLS server: it answered {_excerpt(first)}")
    if eof and not first:
        return _Failure("the server closed the connection during the TLS handshake")
    if eof and not detail:
        return _Failure("the server closed the connection in the middle of the TLS handshake")
    return _Failure(f"TLS handshake failed: {detail or 'unknown reason'}")


def _excerpt(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if line and all(32 <= byte < 127 for byte in line):
        return repr(line.decode("ascii"))
    return "bytes " + data[:16].hex(" ")


# --------------------------------------------------------------------------------------------
# Many probes


def probe_many(
    targets: Iterable[Target], *, concurrency: int = 32, timeout: float = 10.0
) -> dict[Target, ProbeResult]:
    """Bounded-concurrency probing (thread pool); each probe has its own overall deadline.

    Results come back keyed by target, in the order the targets were first given; duplicate
    targets are probed once.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    unique = list(dict.fromkeys(targets))
    if not unique:
        return {}
    backend = _default_backend()  # build the shared context once, before the threads start
    workers = min(concurrency, len(unique))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chainwarden-probe") as pool:
        futures = [
            pool.submit(_probe, host, port, servername, timeout, backend)
            for host, port, servername in unique
        ]
        return {target: future.result() for target, future in zip(unique, futures, strict=True)}


# --------------------------------------------------------------------------------------------
# Target parsing

_HOST_RE = re.compile(r"[^\s/?#@\[\]:,;\\]+")


def parse_target(text: str) -> tuple[str, int]:
    """Parse "host", "host:8443", "[::1]:8443" or "::1" into (host, port); port 443 by default.

    Raises ValueError with a sentence naming the text when it is none of those.
    """
    raw = text
    text = text.strip()
    if not text:
        raise ValueError("empty target: expected host, host:port or [IPv6]:port")
    if "://" in text:
        raise ValueError(f"target {raw!r} is a URL: give host or host:port, without a scheme")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"target {raw!r}: missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if not _is_ipv6(host):
            raise ValueError(f"target {raw!r}: {host!r} inside brackets is not an IPv6 address")
        if not rest:
            return host, 443
        if not rest.startswith(":"):
            raise ValueError(f"target {raw!r}: expected ':port' after ']', got {rest!r}")
        return host, _parse_port(raw, rest[1:])
    if text.count(":") > 1:
        if _is_ipv6(text):
            return text, 443
        raise ValueError(
            f"target {raw!r} is not a valid IPv6 address; to add a port, write [address]:port"
        )
    host, sep, port_text = text.partition(":")
    if not host:
        raise ValueError(f"target {raw!r}: missing host before ':'")
    if not _HOST_RE.fullmatch(host) or ".." in host or host.startswith("."):
        raise ValueError(f"target {raw!r}: {host!r} is not a valid host name or address")
    return host, _parse_port(raw, port_text) if sep else 443


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _parse_port(raw: str, port_text: str) -> int:
    if not port_text:
        raise ValueError(f"target {raw!r}: missing port after ':'")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"target {raw!r}: port {port_text!r} is not a number from 1 to 65535")
    return int(port_text)
