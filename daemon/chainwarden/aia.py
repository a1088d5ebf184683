"""Find the certificates that issued a certificate: an offline directory, then AIA caIssuers.

Shell module: it reads files and fetches over HTTP. `fetch_url()` downloads one AIA
caIssuers URL and returns the certificates in the response; `IntermediateFinder` answers
"which certificates could have issued this one?" from `[regenerate] intermediates_dir` first
and from the certificate's AIA caIssuers URLs only when the directory has no match.

What a fetch promises:

* Only `http://` and `https://` URLs are fetched (`ldap:`, `file:`, ... are refused with a
  sentence). https uses the system default trust store and host name checking.
* SSRF guard: the host is resolved once and refused when any of its addresses is loopback,
  private, link-local, multicast, reserved, unspecified or otherwise not global, unless
  `allow_private` is set. The socket then connects to one of exactly those checked addresses
  (so a second, different DNS answer cannot redirect it), sending the name in the Host header
  and as TLS SNI / the name checked against the server certificate. Every redirect target
  gets the same checks; redirects are followed here (never by a library), at most
  `max_redirects`, loops are detected, and a redirect to a non-http(s) URL is refused.
* Bounded: one deadline (`timeout`) covers connect, TLS, request, response and every
  redirect. Each socket read gets only the time left, so a server that drips one byte at a
  time is cut at the deadline. The body is capped at `max_bytes` (a larger Content-Length is
  refused before reading).
* Formats: a DER certificate, PEM (one or several certificates), PKCS#7 certs-only (DER or
  PEM). Anything else is an error naming the URL. Response bodies never appear in errors or
  logs.
* `fetch_url()` never raises for network or format trouble: `FetchResult.error` is a
  sentence naming the URL.

Trust: AIA is an untrusted channel. Whatever it returns, including self-signed (root)
certificates, is returned as data only. Callers must check signatures themselves and must
never treat a root obtained from AIA (or from the cache) as a trust anchor; roots come from a
trusted store only.

Cache: successful fetches are stored under `cache_dir` as `<sha256 of URL>.der` (one DER
certificate, or a DER PKCS#7 certs-only bundle when the URL returned several), written
atomically. A cached entry is used without any network access and never expires (a caIssuers
URL names an immutable certificate in practice); an entry that no longer parses is ignored
and refetched. A cache that cannot be written is logged at warning level and otherwise
ignored. The URL scheme is checked before the cache is consulted. What was fetched while
`allow_private` was on may come from a private address, so it is kept apart
(`<state dir>/aia-cache-private-allowed`) and never served once the setting is off; with it
off, the SSRF guard has vetted every entry of `<state dir>/aia-cache`.

Limitations:

* The host name lookup counts against the fetch's deadline (hostlookup stops waiting for a
  hung resolver); the lookup itself goes on in its thread until the resolver gives up.
* Proxies (`http_proxy`, `https_proxy`) are not used: the guard has to see and connect to
  the real address.
* Addresses are judged by Python's `ipaddress` tables (IPv4-mapped IPv6 addresses are
  unwrapped first); NAT64 prefixes and other translation schemes are not unwrapped.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, cast
from urllib.parse import SplitResult, urljoin, urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID

from .certinfo import NameKey, describe
from .hostlookup import getaddrinfo_within
from .regularfile import NotARegularFile, read_regular

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from chainwarden.config import Config

__all__ = [
    "Candidate",
    "FetchPolicy",
    "FetchResult",
    "IntermediateFinder",
    "fetch_url",
    "parse_certificates",
]

log = logging.getLogger("chainwarden.aia")

PRIVATE_HINT = "(set [regenerate] allow_private_aia = true for internal CAs)"
MAX_DIRECTORY_FILE = 1024 * 1024  # intermediates_dir files larger than this are skipped
MAX_AIA_URLS = 5  # caIssuers URLs tried per certificate; more are ignored
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SCHEMES = ("http", "https")
_SCHEME_REFUSAL = "only http:// and https:// URLs are fetched"
_SHOWN_URL_CHARS = 300
_READ_CHUNK = 65536
_USER_AGENT = "chainwarden-aia/1"


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How AIA fetches are bounded and where they look first."""

    timeout: float = 10.0  # overall per URL, including redirects
    max_bytes: int = 1024 * 1024
    max_redirects: int = 3
    allow_private: bool = False  # loopback/private/link-local/reserved targets refused unless True
    cache_dir: str | None = None  # on-disk cache of fetched certificates (see cache_folder)
    intermediates_dir: str | None = None  # offline directory searched FIRST (PEM/DER/PKCS#7)

    @classmethod
    def from_config(cls, config: Config) -> FetchPolicy:
        """The policy for the daemon's `[regenerate]` and `[state]` settings."""
        return cls(
            timeout=config.regenerate_aia_timeout,
            max_bytes=config.regenerate_aia_max_bytes,
            allow_private=config.regenerate_allow_private_aia,
            cache_dir=os.path.join(config.state_dir, cache_folder(config.regenerate_allow_private_aia)),
            intermediates_dir=config.regenerate_intermediates_dir,
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A certificate whose subject matches a child's issuer; its signature is NOT checked.

    Being a candidate implies no trust: a self-signed candidate from AIA is not a root.
    """

    cert: x509.Certificate
    origin: str  # "intermediates_dir:/path/file.pem" | "aia:http://..." | "cache:http://..."


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The certificates one URL returned, or why there are none."""

    url: str
    certificates: tuple[x509.Certificate, ...]
    error: str | None  # a sentence naming the URL; None on success
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class _Failure(Exception):
    """A fetch failure; `reason` completes the sentence "AIA <url>: ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Parsing


_PEM_BEGIN = b"-----BEGIN "
_PEM_DASHES = b"-----"
_PEM_CERT_LABELS = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE"})
_PEM_PKCS7_LABELS = frozenset({b"PKCS7"})
_MAX_PEM_LABEL = 64


def _pem_blocks(data: bytes) -> Iterable[tuple[bytes, bytes]]:
    """(label, whole block) for every well-formed PEM block, in a single linear scan."""
    pos = 0
    while True:
        begin = data.find(_PEM_BEGIN, pos)
        if begin < 0:
            return
        label_start = begin + len(_PEM_BEGIN)
        label_end = data.find(_PEM_DASHES, label_start, label_start + _MAX_PEM_LABEL + 5)
        if label_end < 0:
            pos = label_start
            continue
        label = data[label_start:label_end]
        end_marker = b"-----END " + label + _PEM_DASHES
        end = data.find(end_marker, label_end + len(_PEM_DASHES))
        if end < 0:
            return  # unterminated: nothing after it can be a block of its own
        pos = end + len(end_marker)
        yield label, data[begin:pos]


def parse_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Certificates in `data`: DER, PEM (one or many), PKCS#7 certs-only as DER or PEM.

    PEM blocks other than CERTIFICATE / X509 CERTIFICATE / PKCS7 are ignored, as are blocks
    that do not decode. Raises ValueError (with a message that quotes none of `data`) when
    no certificate is found. Self-signed certificates are returned like any other.
    """
    if _PEM_BEGIN in data:
        found: list[x509.Certificate] = []
        for label, block in _pem_blocks(data):
            try:
                if label in _PEM_CERT_LABELS:
                    found.append(x509.load_pem_x509_certificate(block))
                elif label in _PEM_PKCS7_LABELS:
                    found.extend(pkcs7.load_pem_pkcs7_certificates(block))
            except (ValueError, UnsupportedAlgorithm):
                continue
        if found:
            return tuple(found)
        raise ValueError("no readable CERTIFICATE or PKCS7 block in PEM data")
    if not data:
        raise ValueError("empty data")
    try:
        return (x509.load_der_x509_certificate(data),)
    except ValueError:
        pass
    try:
        certs = pkcs7.load_der_pkcs7_certificates(data)
    except (ValueError, UnsupportedAlgorithm):
        certs = []
    if certs:
        return tuple(certs)
    raise ValueError(
        f"{len(data)} bytes that are neither a DER certificate, PEM, nor PKCS#7 certs-only"
    )


# --------------------------------------------------------------------------------------------
# Fetching


def _show(url: str) -> str:
    """`url` safe for a log line: control and non-ASCII characters escaped, length capped."""
    shown = "".join(ch if 0x20 < ord(ch) < 0x7F else f"\\x{ord(ch):02x}" for ch in url)
    if len(shown) > _SHOWN_URL_CHARS:
        shown = shown[:_SHOWN_URL_CHARS] + "..."
    return shown


def _split(url: str) -> SplitResult:
    """The parts of an http(s) URL, or _Failure saying why it is not fetched."""
    if any(not 0x20 < ord(ch) < 0x7F for ch in url):
        raise _Failure("refused: the URL contains spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise _Failure("refused: not a valid URL") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise _Failure(f"refused: {_SCHEME_REFUSAL}")
    if not parts.hostname:
        raise _Failure("refused: the URL has no host")
    return parts


# family, type, proto, sockaddr: one getaddrinfo answer that passed the guard
_Address = tuple[socket.AddressFamily, socket.SocketKind, int, tuple[object, ...]]


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout

    def remaining(self) -> float:
        """Seconds left; TimeoutError when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        return left


class _DeadlineReader(io.RawIOBase):
    """Raw reads from a socket, each allowed only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """Just enough of a socket for http.client.HTTPResponse (which only calls makefile)."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "rb", *_args: object, **_kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address this is ("a loopback address"), None when global."""
    kinds = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((label for flag, label in kinds if flag), None)


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc.__class__.__name__}"
    return exc.strerror or str(exc) or exc.__class__.__name__


def _resolve(host: str, port: int, policy: FetchPolicy, deadline: _Deadline) -> list[_Address]:
    """The addresses to connect to, all checked against the SSRF guard."""
    try:
        infos = getaddrinfo_within(
            deadline.remaining(), host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except TimeoutError:
        raise  # the fetch's deadline: reported as a timeout like every other phase
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _Failure(f"cannot resolve {host}: {reason}") from None
    deadline.remaining()
    if not infos:
        raise _Failure(f"cannot resolve {host}: no addresses")
    addresses: list[_Address] = []
    seen: set[tuple[object, ...]] = set()
    for family, kind, proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6) or sockaddr in seen:
            continue
        seen.add(sockaddr)
        text = str(sockaddr[0])
        address = _ip(text)
        problem = _non_public(address)
        if problem is not None and not policy.allow_private:
            literal = address == _literal(host)
            what = f"{text} is {problem}" if literal else f"{host} resolves to {text}, {problem}"
            raise _Failure(f"refused: {what} {PRIVATE_HINT}")
        addresses.append((family, kind, proto, tuple(sockaddr)))
    if not addresses:
        raise _Failure(f"cannot resolve {host}: no IPv4 or IPv6 addresses")
    return addresses


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return _ip(host)
    except ValueError:
        return None


def _connect(addresses: list[_Address], host: str, port: int, deadline: _Deadline) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # e.g. no IPv6 on this host: try the next address
            last = exc
            continue
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = exc
    reason = _os_reason(last) if last is not None else "no address"
    raise _Failure(f"cannot connect to {host} port {port}: {reason}")


def _host_header(parts: SplitResult, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme.lower() == "https" else 80
    return shown if parts.port in (None, default) else f"{shown}:{parts.port}"


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    location: str | None
    body: bytes


def _get_once(url: str, policy: FetchPolicy, deadline: _Deadline) -> _Response:
    """One GET of `url` (no redirect following), bounded by `deadline` and `max_bytes`."""
    parts = _split(url)
    host = cast(str, parts.hostname)
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    addresses = _resolve(host, port, policy, deadline)
    sock = _connect(addresses, host, port, deadline)
    try:
        if https:
            sock.settimeout(deadline.remaining())
            sock = _tls_context().wrap_socket(sock, server_hostname=host)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        request = (
            f"GET {target} HTTP/1.1\r\n"
            f"Host: {_host_header(parts, host)}\r\n"
            f"User-Agent: {_USER_AGENT}\r\n"
            "Accept: application/pkix-cert, application/pkcs7-mime, */*\r\n"
            "Accept-Encoding: identity\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        sock.settimeout(deadline.remaining())
        sock.sendall(request)
        # HTTPResponse only calls makefile("rb") on what it is given.
        response = http.client.HTTPResponse(
            cast(socket.socket, _DeadlineSocket(sock, deadline)), method="GET"
        )
        try:
            response.begin()
            if response.status in _REDIRECT_STATUSES:
                return _Response(response.status, response.getheader("Location"), b"")
            if response.status != 200:
                return _Response(response.status, None, b"")
            return _Response(200, None, _read_body(response, policy.max_bytes))
        finally:
            response.close()
    finally:
        sock.close()


def _read_body(response: http.client.HTTPResponse, cap: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise _Failure(f"response is larger than {cap} bytes (Content-Length {int(declared)})")
    body = bytearray()
    while True:
        chunk = response.read(min(_READ_CHUNK, cap + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > cap:
            raise _Failure(f"response is larger than {cap} bytes")


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _download(url: str, policy: FetchPolicy) -> bytes:
    """The body at `url` after following redirects; _Failure or TimeoutError otherwise."""
    deadline = _Deadline(policy.timeout)
    current = url
    visited = {url}
    redirects = 0
    while True:
        try:
            response = _get_once(current, policy, deadline)
        except _Failure as failure:
            if current == url:
                raise
            raise _Failure(f"after redirect to {_show(current)}: {failure.reason}") from None
        if response.status not in _REDIRECT_STATUSES:
            if response.status != 200:
                where = "" if current == url else f" (after redirect to {_show(current)})"
                raise _Failure(_status_text(response.status) + where)
            return response.body
        if not response.location:
            raise _Failure(f"{_status_text(response.status)} without a Location header")
        target = urljoin(current, response.location.strip())
        try:
            _split(target)
        except _Failure as failure:
            raise _Failure(
                f"redirect from {_show(current)} to {_show(target)}: {failure.reason}"
            ) from None
        if target in visited:
            raise _Failure(f"redirect loop: {_show(current)} redirects back to {_show(target)}")
        redirects += 1
        if redirects > max(policy.max_redirects, 0):
            raise _Failure(
                f"more than {max(policy.max_redirects, 0)} redirects (next was {_show(target)})"
            )
        visited.add(target)
        current = target


def fetch_url(url: str, policy: FetchPolicy) -> FetchResult:
    """The certificates at an AIA caIssuers `url`; never raises for network or format errors.

    Self-signed certificates are returned as data like any other; the caller decides what
    they are worth and must never trust a root because AIA (or the cache) returned it.
    """
    try:
        _split(url)
    except _Failure as failure:
        return FetchResult(url, (), f"AIA {_show(url)}: {failure.reason}")
    cached = _cache_read(url, policy)
    if cached:
        return FetchResult(url, cached, None, from_cache=True)
    started = time.monotonic()
    try:
        body = _download(url, policy)
    except _Failure as failure:
        return FetchResult(url, (), f"AIA {_show(url)}: {failure.reason}")
    except TimeoutError:
        return FetchResult(url, (), f"AIA {_show(url)}: timed out after {policy.timeout:g} s")
    except OSError as exc:  # before ValueError: ssl.SSLCertVerificationError is both
        return FetchResult(url, (), f"AIA {_show(url)}: {_os_reason(exc)}")
    except (http.client.HTTPException, ValueError) as exc:
        # The exception text may quote what the server sent; name only the kind of fault.
        reason = f"malformed HTTP response ({exc.__class__.__name__})"
        return FetchResult(url, (), f"AIA {_show(url)}: {reason}")
    try:
        certificates = parse_certificates(body)
    except ValueError as exc:  # parse_certificates' messages never quote the data
        return FetchResult(url, (), f"AIA {_show(url)}: response is not a certificate: {exc}")
    log.debug(
        "AIA %s: %d certificate(s) in %.2f s",
        _show(url),
        len(certificates),
        time.monotonic() - started,
    )
    _cache_write(url, certificates, policy)
    return FetchResult(url, certificates, None)


# --------------------------------------------------------------------------------------------
# Cache


def cache_folder(allow_private: bool) -> str:
    """The cache's folder under the state dir: apart for fetches that the SSRF guard did not vet."""
    return "aia-cache-private-allowed" if allow_private else "aia-cache"


def _cache_path(url: str, cache_dir: str) -> str:
    return os.path.join(cache_dir, hashlib.sha256(url.encode("utf-8")).hexdigest() + ".der")


def _cache_read(url: str, policy: FetchPolicy) -> tuple[x509.Certificate, ...]:
    """The cached certificates for `url`; () when absent or unreadable (then refetched)."""
    if not policy.cache_dir:
        return ()
    path = _cache_path(url, policy.cache_dir)
    limit = 2 * max(policy.max_bytes, MAX_DIRECTORY_FILE)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as exc:
        log.warning("AIA cache %s: cannot read (%s); fetching %s", path, _os_reason(exc), _show(url))
        return ()
    if len(data) > limit:
        log.warning("AIA cache %s: too large, ignored; fetching %s", path, _show(url))
        return ()
    try:
        return parse_certificates(data)
    except ValueError:
        log.warning("AIA cache %s: unreadable entry ignored; fetching %s", path, _show(url))
        return ()


def _cache_write(url: str, certificates: tuple[x509.Certificate, ...], policy: FetchPolicy) -> None:
    """Store `certificates` for `url` atomically; trouble is logged, never raised."""
    if not policy.cache_dir or not certificates:
        return
    if len(certificates) == 1:
        data = certificates[0].public_bytes(Encoding.DER)
    else:
        data = pkcs7.serialize_certificates(list(certificates), Encoding.DER)
    path = _cache_path(url, policy.cache_dir)
    temp: str | None = None
    try:
        os.makedirs(policy.cache_dir, mode=0o700, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".der", dir=policy.cache_dir)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        log.warning(
            "AIA cache %s: cannot store the certificates of %s: %s",
            policy.cache_dir,
            _show(url),
            _os_reason(exc),
        )
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# Finder


def _ca_issuers_urls(cert: x509.Certificate) -> list[str]:
    """caIssuers URIs of `cert`'s AIA extension, http(s) first, deduplicated, capped."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    urls: list[str] = []
    for description in extension.value:
        location = description.access_location
        if (
            description.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(location, x509.UniformResourceIdentifier)
            and location.value not in urls
        ):
            urls.append(location.value)
    fetchable = [u for u in urls if urlsplit(u).scheme.lower() in _SCHEMES]
    others = [u for u in urls if u not in fetchable]
    return (fetchable + others)[:MAX_AIA_URLS]


class IntermediateFinder:
    """Find candidate issuers for a certificate: the offline directory first, then its AIA caIssuers URLs.

    Candidates are matched by name only (the child's issuer and the candidate's subject, compared
    as path building compares them, certinfo's name keys): checking the
    signature, and deciding whether a self-signed candidate may be trusted (it may not, when
    it came from AIA), is the caller's job. The directory is read once, on first use; files
    that cannot be used are logged at warning level and listed in `directory_errors`.
    Safe to share between threads.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        fetch: Callable[[str, FetchPolicy], FetchResult] = fetch_url,
    ) -> None:
        self._policy = policy
        self._fetch = fetch
        self._lock = threading.Lock()
        self._index: dict[NameKey, list[Candidate]] | None = None
        self._directory_errors: tuple[str, ...] = ()

    @property
    def directory_errors(self) -> tuple[str, ...]:
        """Sentences about intermediates_dir files that were skipped (loads the directory)."""
        self._directory()
        return self._directory_errors

    def issuers_for(self, child: x509.Certificate) -> tuple[list[Candidate], list[str]]:
        """(candidates whose subject equals child's issuer name, error sentences).

        The directory's matches are returned alone when there are any; otherwise the child's
        caIssuers URLs are fetched (http and https before other schemes) until one yields a
        match. Errors are the sentences of failed fetches and of responses with no match.
        """
        facts = describe(child)  # names as path building reads them (never raises on odd ones)
        matches = self._directory().get(facts.issuer_key)
        if matches:
            return list(matches), []
        try:
            urls = _ca_issuers_urls(child)
        except ValueError as exc:
            return [], [f"certificate {facts.subject}: unreadable Authority Information Access: {exc}"]
        errors: list[str] = []
        for url in urls:
            result = self._fetch(url, self._policy)
            if result.error is not None:
                errors.append(result.error)
                continue
            prefix = "cache:" if result.from_cache else "aia:"
            found = _dedupe(
                Candidate(cert, prefix + url)
                for cert in result.certificates
                if describe(cert).subject_key == facts.issuer_key
            )
            if found:
                return found, errors
            errors.append(
                f"AIA {_show(url)}: {len(result.certificates)} certificate(s), none with "
                f"subject {facts.issuer}"
            )
        return [], errors

    def _directory(self) -> dict[NameKey, list[Candidate]]:
        with self._lock:
            if self._index is None:
                self._index, errors = _load_directory(self._policy.intermediates_dir)
                self._directory_errors = tuple(errors)
                for error in errors:
                    log.warning("%s", error)
            return self._index


def _dedupe(candidates: Iterable[Candidate]) -> list[Candidate]:
    seen: set[bytes] = set()
    kept: list[Candidate] = []
    for candidate in candidates:
        der = candidate.cert.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            kept.append(candidate)
    return kept


def _read_regular_file(path: str) -> bytes | None:
    """The bytes of `path` if it is a regular file (never blocks on a FIFO); _Failure if big."""
    try:
        data, _ = read_regular(path, MAX_DIRECTORY_FILE + 1)
    except (IsADirectoryError, NotARegularFile):
        return None
    if len(data) > MAX_DIRECTORY_FILE:
        raise _Failure(f"skipped: larger than {MAX_DIRECTORY_FILE} bytes")
    return data


def _load_directory(directory: str | None) -> tuple[dict[NameKey, list[Candidate]], list[str]]:
    """Every certificate in the regular files of `directory` (not recursive), by subject."""
    index: dict[NameKey, list[Candidate]] = {}
    errors: list[str] = []
    if not directory:
        return index, errors
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        return index, [f"intermediates_dir {directory}: cannot list: {_os_reason(exc)}"]
    for name in names:
        path = os.path.join(directory, name)
        try:
            data = _read_regular_file(path)
            if data is None:
                continue
            certificates = parse_certificates(data)
        except _Failure as failure:
            errors.append(f"intermediates_dir {path}: {failure.reason}")
            continue
        except OSError as exc:
            errors.append(f"intermediates_dir {path}: cannot read: {_os_reason(exc)}")
            continue
        except ValueError as exc:
            errors.append(f"intermediates_dir {path}: no certificate: {exc}")
            continue
        for cert in certificates:
            entries = index.setdefault(describe(cert).subject_key, [])
            der = cert.public_bytes(Encoding.DER)
            if all(entry.cert.public_bytes(Encoding.DER) != der for entry in entries):
                entries.append(Candidate(cert, f"intermediates_dir:{path}"))
    return index, errors
