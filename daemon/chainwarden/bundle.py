"""Read a trust bundle (PEM, DER or PKCS#7) into certificates and a block-by-block account."""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.utils import CryptographyDeprecationWarning

from .certinfo import canonical, describe, parsed_once
from .regularfile import NotARegularFile, read_regular
from .report import Code, Problem, Severity, reduce_to_constructor

MAX_BUNDLE_BYTES = 8 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_MARKER = re.compile(rb"-----(BEGIN|END) ([^\r\n-]{1,64})-----")
_ESCAPED_BREAK = re.compile(rb"\\r\\n|\\n|\\r")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_NON_BLANK = re.compile(rb"\S")
_PADDED_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_PEM_LINE = 64
_MAX_LISTED = 8
_MIN_DER_ITEM = 32  # smaller "DER" is almost surely text that happens to start with "0"

_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
_PKCS7_LABELS = frozenset({"PKCS7", "PKCS #7 SIGNED DATA", "CMS"})
_KEY_KINDS = frozenset({"private_key", "encrypted_private_key"})

_WARNING_ISSUES = {
    "long_lines": "base64 lines longer than 64 characters (OpenSSL and the JVM still read them)",
    "spaces": "spaces or tabs inside its base64 lines (OpenSSL and the JVM still read them)",
}
_ERROR_ISSUES = {
    "bom_first": "the JVM and OpenSSL 1.1 would not read {cert}: the BEGIN line does not start the line (UTF-8 BOM)",
    "glued": "OpenSSL and the JVM would not read {cert}: blocks are glued without a line break "
    "(-----END CERTIFICATE----------BEGIN CERTIFICATE-----)",
    "begin_not_line_start": "OpenSSL and the JVM would not read {cert}: the BEGIN line does not "
    "start the line (text or spaces before it)",
    "end_trailing": "OpenSSL and the JVM would not read {cert}: other text follows the END line on the same line",
    "mangled_breaks": "OpenSSL or the JVM would not read {cert}: its base64 is not on lines of "
    "its own (line breaks missing or replaced by spaces); recovered here",
    "literal_newline": "OpenSSL and the JVM would not read {cert}: its line breaks are the two "
    "characters \\n (an escaped string); recovered here",
    "blank_line": "OpenSSL would not read {cert}: a blank line inside its base64",
    "end_mismatch": "OpenSSL and the JVM would not read {cert}: the END line names another label than the BEGIN line",
    "trusted_aux": "the JVM would not read {cert}: it is a TRUSTED CERTIFICATE carrying OpenSSL "
    "trust settings after the certificate, which OpenSSL applies (convert with openssl x509)",
    "after_nul": "OpenSSL would not read {cert}: an earlier line starts with a NUL byte, where "
    "OpenSSL's PEM reader stops reading the file",
    "pkcs7_block": "OpenSSL would not read {cert}: OpenSSL's PEM bundle reader skips PKCS7 "
    "blocks (and the JVM reads one only as the first block, then nothing after it)",
    "pkcs7_file": "OpenSSL's PEM reader would not read {cert}: the file is PKCS#7, not a PEM "
    "certificate bundle (convert with openssl pkcs7 -print_certs)",
    "der_file": "OpenSSL's PEM reader would not read {cert}: the file is DER (binary), not PEM "
    "(convert with openssl x509 -inform der)",
}

_Issue = tuple[Severity, str]
_D = TypeVar("_D")


@dataclass(frozen=True, slots=True)
class Block:
    """One object found in a bundle: a PEM block, a DER file, or one certificate of a PKCS#7."""

    index: int
    kind: str
    label: str | None
    line: int | None
    cert: x509.Certificate | None
    error: str | None
    consumer_readable: bool
    # For an unencrypted PEM private key: the SHA-256 of its public half (SubjectPublicKeyInfo DER),
    # so that a keycertchain's key can be matched with its certificate ("" when it cannot be decoded);
    # nothing of the key itself.
    key_public_sha256: str | None = None

    __reduce__ = reduce_to_constructor


@dataclass(frozen=True, slots=True)
class BundleReading:
    """Everything read from one bundle file, and what is wrong with it."""

    path: str
    encoding: str
    blocks: tuple[Block, ...]
    problems: tuple[Problem, ...]
    # certificates() by consumer_only, and derived(): asked for by every connection sharing the
    # bundle, on every pass; one dict for all copies of a clean reading
    _memo: dict[object, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    __reduce__ = reduce_to_constructor

    def certificates(self, *, consumer_only: bool = False) -> tuple[x509.Certificate, ...]:
        """Parsed certificates in file order, duplicates (same DER) removed, first one kept."""
        known: tuple[x509.Certificate, ...] | None = self._memo.get(consumer_only)
        if known is None:
            known = self._memo[consumer_only] = self._find_certificates(consumer_only)
        return known

    def derived(self, key: str, compute: Callable[[BundleReading], _D]) -> _D:
        """compute(self), once per reading and for all copies of a clean one (facts of its certificates)."""
        try:
            found: _D = self._memo[key]
        except KeyError:
            found = self._memo[key] = compute(self)
        return found

    def _find_certificates(self, consumer_only: bool) -> tuple[x509.Certificate, ...]:
        seen: set[x509.Certificate] = set()  # certificates hash and compare by their DER
        found: list[x509.Certificate] = []
        for block in self.blocks:
            if block.cert is None or (consumer_only and not block.consumer_readable):
                continue
            if block.cert not in seen:
                seen.add(block.cert)
                found.append(block.cert)
        return tuple(found)

    @property
    def readable(self) -> bool:
        """False when the whole file could not be read (bundle_unreadable)."""
        return not any(p.code is Code.BUNDLE_UNREADABLE for p in self.problems)

    @property
    def fails_consumers(self) -> bool:
        """A certificate block OpenSSL and the JVM cannot decode either, which fails the whole file for
        them; a BER length alone does not (both read it, where cryptography does not)."""
        return any(block.error is not None and not block.error.endswith(_BER_HINT) for block in self.blocks)

    @property
    def private_key_count(self) -> int:
        return sum(1 for block in self.blocks if block.kind in _KEY_KINDS)


def read_bundle_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BUNDLE_BYTES) -> BundleReading:
    """Read the bundle at `path` (at most max_bytes); OS errors become bundle_unreadable."""
    name = os.fspath(path)
    try:
        data = _read_at_most(name, max_bytes + 1)
    except OSError as exc:
        return _unreadable(name, "unknown", f"cannot be read: {_os_reason(exc)}")
    except ValueError:  # a NUL byte or an unencodable character in the path
        return _unreadable(name, "unknown", "cannot be read: its path is not valid")
    if len(data) > max_bytes:
        return _unreadable(name, "unknown", f"cannot be read: it is larger than {_limit(max_bytes)}")
    return read_bundle_bytes(data, name)


def read_bundle_bytes(data: bytes, path: str) -> BundleReading:
    """Read bundle bytes of any supported encoding; `path` only names the bundle in messages."""
    if not data.strip():
        reason = "the file is empty" if not data else "the file holds only whitespace"
        return _unreadable(path, "empty", reason)
    der_items = _der_items(data)
    if der_items is not None:
        return _read_der(data, der_items, path)
    if _MARKER.search(data):
        return _read_pem_bundle(data, path)
    return _unreadable(path, "unknown", f"cannot be read: {_describe_unknown(data)}")


# Readings of clean bundles by the digest of their bytes: per-connection bundles are very often copies
# of one CA chain, and a reading with no problem owes nothing to its path but its name.
_CLEAN_READINGS: dict[bytes, BundleReading] = {}
_CLEAN_READINGS_LIMIT = 50_000


def _read_pem_bundle(data: bytes, path: str) -> BundleReading:
    key = hashlib.sha256(data).digest()
    known = _CLEAN_READINGS.get(key)
    if known is not None:
        copy = BundleReading(path, "pem", known.blocks, ())
        object.__setattr__(copy, "_memo", known._memo)  # computed once for all copies
        return copy
    reading = _read_clean_pem(data, path)
    if reading is None:
        return _read_pem(data, path)
    if not reading.problems:
        if len(_CLEAN_READINGS) >= _CLEAN_READINGS_LIMIT:
            _CLEAN_READINGS.clear()
        _CLEAN_READINGS[key] = reading
    return reading


# --- file access -------------------------------------------------------------------------------


def _read_at_most(path: str, limit: int) -> bytes:
    return read_regular(path, limit)[0]


_OS_REASONS = {
    errno.ENOENT: "the file does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a directory, not a file",
    errno.ELOOP: "its path is a symbolic link loop (too many levels of symbolic links)",
    errno.ENOTDIR: "a component of its path is not a directory",
    errno.ENAMETOOLONG: "its path is too long",
}


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, NotARegularFile):
        return "it is not a regular file (a device, FIFO or socket)"
    return _OS_REASONS.get(exc.errno or 0) or exc.strerror or type(exc).__name__


def _limit(max_bytes: int) -> str:
    mib = 1024 * 1024
    if max_bytes >= mib and max_bytes % mib == 0:
        return f"the limit of {max_bytes} bytes ({max_bytes // mib} MiB)"
    return f"the limit of {max_bytes} bytes"


# --- collecting blocks and problems ------------------------------------------------------------


class _Account:
    """Blocks and problems gathered while reading one bundle; local to one call."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.blocks: list[Block] = []
        self._block_problems: list[Problem] = []
        self._file_issues: list[_Issue] = []
        self._issues: dict[_Issue, list[Block]] = {}

    def add_certificate(self, der: bytes, label: str | None, line: int | None, issues: Sequence[_Issue]) -> None:
        cert, error = _load_certificate(der)
        readable = cert is not None and _consumer_ok(issues)
        self._add(Block(self._next(), "certificate", label, line, cert, error, readable), issues)

    def add_parsed(self, cert: x509.Certificate, label: str | None, line: int | None) -> None:
        """A certificate block already parsed, in a clean layout (no issues)."""
        self._add(Block(self._next(), "certificate", label, line, cert, None, True), ())

    def add_pkcs7(self, der: bytes, label: str | None, line: int | None, issues: Sequence[_Issue]) -> None:
        certs, error = _load_pkcs7(der)
        if error is not None:
            self.add_unreadable(error, label, line, issues)
        for cert in certs:
            block = Block(self._next(), "certificate", label, line, cert, None, _consumer_ok(issues))
            self._add(block, issues)

    def add_unreadable(self, error: str, label: str | None, line: int | None, issues: Sequence[_Issue] = ()) -> None:
        self._add(Block(self._next(), "certificate", label, line, None, error, False), issues)

    def add_key(self, kind: str, label: str | None, line: int | None, public_sha256: str | None = None) -> None:
        # Nothing of the key is kept: no payload, no error text; at most the digest of its public half.
        self._add(Block(self._next(), kind, label, line, None, None, False, public_sha256), ())

    def add_other(self, kind: str, label: str, line: int | None) -> None:
        issue = (
            Severity.ERROR,
            f"a '{label}' block, not a certificate: the JVM rejects a bundle holding one",
        )
        self._add(Block(self._next(), kind, label, line, None, None, False), (issue,))

    def note_file(self, severity: Severity, text: str) -> None:
        self._file_issues.append((severity, text))

    def finish(self, encoding: str) -> BundleReading:
        problems = [*self._unreadable_bundle(), *self._block_problems, *self._keys()]
        problems += [self._format(issue, ()) for issue in self._file_issues]
        problems += [self._format(issue, blocks) for issue, blocks in self._issues.items()]
        problems += self._duplicates()
        return BundleReading(self.path, encoding, tuple(self.blocks), tuple(problems))

    def _next(self) -> int:
        return len(self.blocks) + 1

    def _add(self, block: Block, issues: Sequence[_Issue]) -> None:
        self.blocks.append(block)
        if block.error is not None:
            self._block_problems.append(
                Problem(Code.BLOCK_UNREADABLE, Severity.ERROR, f"{self._where([block])}: {block.error}")
            )
        for issue in dict.fromkeys(issues):  # an issue seen both before and after a block counts once
            self._issues.setdefault(issue, []).append(block)

    def _where(self, blocks: Sequence[Block]) -> str:
        if not blocks:
            return f"bundle {self.path}"
        refs = [f"{b.index} (line {b.line})" if b.line is not None else str(b.index) for b in blocks]
        listed = ", ".join(refs[:_MAX_LISTED])
        if len(refs) > _MAX_LISTED:
            listed += f" and {len(refs) - _MAX_LISTED} more"
        return f"bundle {self.path}, {'block' if len(refs) == 1 else 'blocks'} {listed}"

    def _format(self, issue: _Issue, blocks: Sequence[Block]) -> Problem:
        severity, text = issue
        text = text.replace("{cert}", "this certificate" if len(blocks) <= 1 else "these certificates")
        subject = _subject(blocks[0].cert) if len(blocks) == 1 and blocks[0].cert else None
        message = f"{self._where(blocks)}: {text}"
        return Problem(Code.FORMAT_NONSTANDARD, severity, message, subject)

    def _unreadable_bundle(self) -> list[Problem]:
        if any(block.cert is not None for block in self.blocks):
            return []
        tried = any(block.kind == "certificate" for block in self.blocks)
        reason = "holds no readable certificate" if tried else "holds no certificate"
        return [Problem(Code.BUNDLE_UNREADABLE, Severity.ERROR, f"bundle {self.path}: {reason}")]

    def _keys(self) -> list[Problem]:
        keys = [block for block in self.blocks if block.kind in _KEY_KINDS]
        if not keys:
            return []
        labels = sorted({block.label for block in keys if block.label})
        single = len(keys) == 1
        what, it = ("a private key", "it") if single else (f"{len(keys)} private keys", "them")
        if labels:
            what += f" ({', '.join(labels)})"
        message = (
            f"{self._where(keys)}: {what} in a trust bundle; remove {it} (a trust bundle is not "
            "kept secret, and the JVM rejects a bundle holding a key)"
        )
        return [Problem(Code.PRIVATE_KEY_IN_BUNDLE, Severity.ERROR, message)]

    def _duplicates(self) -> list[Problem]:
        by_der: dict[x509.Certificate, list[Block]] = {}  # certificates hash and compare by their DER
        for block in self.blocks:
            if block.cert is not None:
                by_der.setdefault(block.cert, []).append(block)
        problems = []
        for blocks in by_der.values():
            if len(blocks) > 1:
                subject = _subject(blocks[0].cert)
                message = f"{self._where(blocks)}: the same certificate {subject} appears {len(blocks)} times"
                problems.append(Problem(Code.DUPLICATE_CERTIFICATE, Severity.WARNING, message, subject))
        return problems


def _consumer_ok(issues: Sequence[_Issue]) -> bool:
    return all(severity is not Severity.ERROR for severity, _ in issues)


def _issue(key: str) -> _Issue:
    if key in _WARNING_ISSUES:
        return Severity.WARNING, _WARNING_ISSUES[key]
    return Severity.ERROR, _ERROR_ISSUES[key]


def _subject(cert: x509.Certificate | None) -> str:
    return describe(cert).subject if cert is not None else ""  # never raises on an odd name


def _unreadable(path: str, encoding: str, reason: str) -> BundleReading:
    problem = Problem(Code.BUNDLE_UNREADABLE, Severity.ERROR, f"bundle {path}: {reason}")
    return BundleReading(path, encoding, (), (problem,))


# --- parsing with cryptography -----------------------------------------------------------------


def _load_certificate(der: bytes) -> tuple[x509.Certificate | None, str | None]:
    try:
        with warnings.catch_warnings():
            # Some real roots carry a zero or negative serial number; cryptography warns on them.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return canonical(x509.load_der_x509_certificate(der)), None
    except ValueError as exc:
        return None, f"not a valid certificate: {exc}{_ber_hint(der)}"


def _public_half(pem: bytes) -> str | None:
    """SHA-256 of the SubjectPublicKeyInfo of the unencrypted PEM private key `pem`; "" when it cannot
    be decoded; None when that cannot be told (a passphrase, an algorithm cryptography lacks). The key
    is dropped at once, and no library message about it is kept (it could quote the key)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # RSA's own key checks test primality (~20 ms a key, on every pass); the arithmetic
            # below finds the inconsistent keys that would sign wrongly, in microseconds.
            key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
            if isinstance(key, rsa.RSAPrivateKey) and not _consistent_rsa(key.private_numbers()):
                return ""
            spki = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
    except (TypeError, UnsupportedAlgorithm):
        return None
    except ValueError:
        return ""
    return hashlib.sha256(spki).hexdigest()


def _consistent_rsa(numbers: rsa.RSAPrivateNumbers) -> bool:
    """n = pq, and d and the CRT values agree with e, p and q (what OpenSSL's rsa -check verifies
    but primality)."""
    p, q, d, e, n = numbers.p, numbers.q, numbers.d, numbers.public_numbers.e, numbers.public_numbers.n
    if p < 3 or q < 3 or p * q != n:
        return False
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    return (
        d * e % lcm == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and numbers.iqmp * q % p == 1
    )


def _load_pkcs7(der: bytes) -> tuple[list[x509.Certificate], str | None]:
    try:
        with warnings.catch_warnings():
            # OpenSSL writes the certificate SET unsorted; cryptography then warns and reads BER.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return list(pkcs7.load_der_pkcs7_certificates(der)), None
    except (ValueError, UnsupportedAlgorithm) as exc:
        return [], f"not a valid PKCS#7 certificate bundle: {exc}"


_BER_HINT = " (it is BER, not strict DER: its length is not minimally encoded)"


def _ber_hint(der: bytes) -> str:
    if len(der) < 3 or der[1] < 0x80:
        return ""
    size = der[1] & 0x7F
    length = int.from_bytes(der[2 : 2 + size], "big")
    if length < 0x80 or size > (length.bit_length() + 7) // 8:
        return _BER_HINT
    return ""


# --- DER and PKCS#7 files ----------------------------------------------------------------------


def _tlv(data: bytes, pos: int) -> tuple[int, int] | None:
    """(content start, end) of the definite-length DER/BER element at pos, if it fits in data."""
    if pos + 2 > len(data):
        return None
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or pos + 2 + size > len(data):
            return None
        start, length = pos + 2 + size, int.from_bytes(data[pos + 2 : pos + 2 + size], "big")
    return (start, start + length) if start + length <= len(data) else None


def _der_items(data: bytes) -> list[tuple[int, int]] | None:
    """Spans of the SEQUENCEs that make up data exactly, or None when data is not DER."""
    items: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        element = _tlv(data, pos) if data[pos] == 0x30 else None
        if element is None or element[1] - pos < _MIN_DER_ITEM:
            return None
        items.append((pos, element[1]))
        pos = element[1]
    return items


def _child_tags(item: bytes) -> list[int]:
    """Tags of the first three elements inside a SEQUENCE (enough to tell what it is)."""
    outer = _tlv(item, 0)
    tags: list[int] = []
    pos = outer[0] if outer else len(item)
    while pos < len(item) and len(tags) < 3:
        tags.append(item[pos])
        element = _tlv(item, pos)
        if element is None:
            break
        pos = element[1]
    return tags


def _first_child(item: bytes) -> bytes:
    outer = _tlv(item, 0)
    inner = _tlv(item, outer[0]) if outer else None
    return item[inner[0] : inner[1]] if inner else b""


def _der_shape(item: bytes) -> str:
    # Decided by structure alone, so that a key is recognised without ever being parsed.
    tags = _child_tags(item)
    if tags[:1] == [0x06]:
        return "pkcs7"  # ContentInfo starts with its content-type OID
    if tags[:1] == [0x02]:
        if _first_child(item) == b"\x03" and tags[1:2] == [0x30]:
            return "pkcs12"  # PFX: version 3, then a ContentInfo
        return "private_key"  # PKCS#1, SEC1 and PKCS#8 keys start with a version INTEGER
    if tags[:2] == [0x30, 0x04]:
        return "encrypted_private_key"  # AlgorithmIdentifier, then the encrypted OCTET STRING
    return "certificate"


def _read_der(data: bytes, items: list[tuple[int, int]], path: str) -> BundleReading:
    shapes = [_der_shape(data[start:end]) for start, end in items]
    if "pkcs12" in shapes:
        return _unreadable(
            path,
            "unknown",
            "cannot be read: it is a PKCS#12 keystore (.p12/.pfx), not a certificate bundle "
            "(it may also hold a private key)",
        )
    encoding = "pkcs7-der" if all(shape == "pkcs7" for shape in shapes) else "der"
    account = _Account(path)
    for (start, end), shape in zip(items, shapes, strict=True):
        item = data[start:end]
        if shape == "pkcs7":
            account.add_pkcs7(item, None, None, [_issue("pkcs7_file")])
        elif shape in _KEY_KINDS:
            account.add_key(shape, None, None)
        else:
            account.add_certificate(item, None, None, [_issue("der_file")])
    return account.finish(encoding)


# --- PEM ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Span:
    """Where one PEM block lies in the file."""

    label: str
    start: int  # offset of "-----BEGIN"
    body_start: int
    body_end: int
    end_label: str | None  # None when the block has no END line
    stop: int  # offset just after the END marker, or where the cut-off block stops


class _Lines:
    """1-based line numbers of byte offsets, counted incrementally."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._line = 1

    def at(self, offset: int) -> int:
        if offset < self._pos:
            self._pos, self._line = 0, 1
        self._line += self._data.count(b"\n", self._pos, offset)
        self._pos = offset
        return self._line


class _LineRanges:
    """Line numbers kept as a few compact ranges for a message; gives up after `budget` lines."""

    def __init__(self, budget: int = 1000) -> None:
        self.ranges: list[list[int]] = []
        self.more = False
        self._budget = budget

    def add(self, line: int) -> bool:
        """Record a line; False once enough is known for the message."""
        self._budget -= 1
        if self.ranges and self.ranges[-1][1] + 1 >= line:
            self.ranges[-1][1] = line
        elif len(self.ranges) < _MAX_LISTED:
            self.ranges.append([line, line])
        else:
            self.more = True
        if self._budget <= 0:
            self.more = True
        return not self.more

    def __str__(self) -> str:
        parts = [str(a) if a == b else f"{a}-{b}" for a, b in self.ranges]
        plural = len(parts) > 1 or self.ranges[0][0] != self.ranges[0][1]
        return f"line{'s' if plural else ''} {', '.join(parts)}{' and more' if self.more else ''}"


@dataclass(frozen=True, slots=True)
class _Gap:
    """What lies between two blocks (or before the first / after the last)."""

    orphan_end: tuple[int, str] | None  # line and label of an END line with no BEGIN line
    zero_line: int | None  # the JVM takes a "0" where a block may start for binary DER


def _label(raw: bytes) -> str:
    return raw.decode("ascii", "replace")


def _pem_spans(data: bytes) -> list[_Span]:
    markers = list(_MARKER.finditer(data))
    spans = []
    for i, begin in enumerate(markers):
        if begin[1] != b"BEGIN":
            continue  # an END not right after a BEGIN lies in a gap; _scan_gap reports it
        after = markers[i + 1] if i + 1 < len(markers) else None
        if after is not None and after[1] == b"END":
            span = _Span(
                _label(begin[2]),
                begin.start(),
                begin.end(),
                after.start(),
                _label(after[2]),
                after.end(),
            )
        else:
            cut = after.start() if after is not None else len(data)
            span = _Span(_label(begin[2]), begin.start(), begin.end(), cut, None, cut)
        spans.append(span)
    return spans


def _scan_gap(data: bytes, start: int, stop: int, first_line: int, after_end: bool, text: _LineRanges) -> _Gap:
    """Note the text lines of a stretch between blocks and what in it would upset the JVM."""
    line, pos = first_line, start
    # Jump from one non-blank byte to the next, so that long blank stretches cost no Python loop.
    while not text.more and (hit := _NON_BLANK.search(data, pos, stop)) is not None:
        line += data.count(b"\n", pos, hit.start())
        begin = max(start, data.rfind(b"\n", start, hit.start()) + 1)
        end = data.find(b"\n", hit.start(), stop)
        end = stop if end < 0 else end
        piece = data[begin:end]
        if begin == 0:
            piece = piece.removeprefix(_BOM)
        if _ESCAPED_BREAK.sub(b"", piece).strip():
            text.add(line)
        pos = end
    found = next((m for m in _MARKER.finditer(data, start, stop) if m[1] == b"END"), None)
    orphan = None
    if found is not None:
        orphan = (first_line + data.count(b"\n", start, found.start()), _label(found[2]))
    zero_line = None
    first = _jvm_block_start(data, start, stop, after_end)
    if first is not None and first < stop and data[first] == ord("0"):
        zero_line = first_line + data.count(b"\n", start, first)
    return _Gap(orphan, zero_line)


def _jvm_block_start(data: bytes, start: int, stop: int, after_end: bool) -> int | None:
    """Where the JVM looks for the next block: the file's first byte, or just after an END line."""
    if start == 0:
        return 0
    if not after_end:
        return None
    newline = data.find(b"\n", start, stop)
    return newline + 1 if newline >= 0 else None


def _kind(label: str) -> str:
    if label in _CERT_LABELS:
        return "certificate"
    if label in _PKCS7_LABELS:
        return "pkcs7"
    if "PRIVATE KEY" in label:
        return "encrypted_private_key" if "ENCRYPTED" in label else "private_key"
    return "crl" if label == "X509 CRL" else "other"


def _layout_issues(data: bytes, span: _Span, prev_end: int | None, floor: int, ceiling: int) -> list[str]:
    """How the BEGIN and END lines of a block differ from what a strict reader accepts."""
    # Searches stop at the neighbouring blocks (floor, ceiling), so that a file squeezed onto
    # one line is still read in linear time.
    issues = []
    newline = data.rfind(b"\n", floor, span.start)
    line_start = newline + 1 if newline >= 0 else floor
    prefix = data[line_start : span.start]
    if prefix:
        if line_start == 0 and prefix == _BOM:
            issues.append("bom_first")
        elif _ESCAPED_BREAK.search(prefix) and not _ESCAPED_BREAK.split(prefix)[-1].strip():
            issues.append("literal_newline")
        elif prev_end == span.start:
            issues.append("glued")
        elif prev_end is not None and prev_end >= line_start and not data[prev_end : span.start].strip():
            issues.append("mangled_breaks")
        else:
            issues.append("begin_not_line_start")
    if span.end_label is not None:
        if span.end_label != span.label:
            issues.append("end_mismatch")
        reach = min(ceiling + len(b"-----BEGIN "), len(data))  # up to the next BEGIN marker
        line_end = data.find(b"\n", span.stop, reach)
        suffix = data[span.stop : line_end if line_end >= 0 else reach]
        rest = suffix.strip()
        if rest:
            if _ESCAPED_BREAK.match(rest):
                issues.append("literal_newline")
            elif suffix.startswith(b"-----BEGIN "):
                issues.append("glued")
            elif rest.startswith(b"-----BEGIN"):  # the suffix stops just after "-----BEGIN "; strip() ate the space
                issues.append("mangled_breaks")
            else:
                issues.append("end_trailing")
    return issues


def _decode_body(body: bytes, begin_line: int) -> tuple[bytes | None, str | None, set[str]]:
    """Decode a block's base64 leniently, noting every way it departs from strict PEM."""
    issues: set[str] = set()
    if _ESCAPED_BREAK.search(body):
        issues.add("literal_newline")
        body = _ESCAPED_BREAK.sub(b"\n", body)
    pieces = body.split(b"\n")
    one_line = len(pieces) == 1 or pieces[0].strip() or pieces[-1].strip()
    if one_line and "literal_newline" not in issues:
        issues.add("mangled_breaks")
    seen_data = False
    for piece in pieces[1:-1]:
        text = piece.strip()
        if not text:
            if seen_data:
                issues.add("blank_line")
            continue
        seen_data = True
        if len(text.split()) > 1 or piece[:1].isspace():
            issues.add("spaces")
        if len(text) > _PEM_LINE:
            issues.add("long_lines")
    compact = b"".join(body.split())
    if not compact:
        return None, "the block is empty", issues
    bad = _NOT_BASE64.search(compact)
    if bad is not None:
        where = "" if "literal_newline" in issues else _line_of(pieces, begin_line)
        return (
            None,
            f"its base64 holds a character that is not base64 (0x{bad[0].hex()}){where}",
            issues,
        )
    if not _PADDED_BASE64.fullmatch(compact):
        return None, "its base64 has '=' padding before its end", issues
    try:
        return base64.b64decode(compact, validate=True), None, issues
    except binascii.Error as exc:
        return None, f"its base64 cannot be decoded: {exc}", issues


def _line_of(pieces: list[bytes], begin_line: int) -> str:
    for offset, piece in enumerate(pieces):
        if _NOT_BASE64.search(b"".join(piece.split())):
            return f" on line {begin_line + offset}"
    return ""


def _certificate_part(label: str, der: bytes) -> tuple[bytes, list[str]]:
    """The certificate DER of a block, and what its label means for strict readers."""
    if label == "CERTIFICATE":
        return der, []
    if label == "TRUSTED CERTIFICATE":
        # OpenSSL's "aux" form: the certificate, then a second element with trust settings.
        element = _tlv(der, 0)
        if element is not None and element[1] < len(der):
            return der[: element[1]], ["trusted_aux"]
    return der, [f"label:{label}"]


def _block_issues(keys: Sequence[str]) -> list[_Issue]:
    issues = []
    for key in keys:
        if key.startswith("label:"):
            label = key.removeprefix("label:")
            text = f"labelled '{label}' instead of 'CERTIFICATE' (OpenSSL and the JVM still read it)"
            issues.append((Severity.WARNING, text))
        else:
            issues.append(_issue(key))
    return issues


# The common case: nothing but CERTIFICATE blocks, each line of its own ending in LF, base64 lines of at
# most 64 characters. For it, every layout check of _read_pem finds nothing, so it is skipped.
_CLEAN_PEM = re.compile(rb"(?:-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n)+")
_CLEAN_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\n((?:[A-Za-z0-9+/=]{1,64}\n)+)-----END CERTIFICATE-----\n")


def _read_clean_pem(data: bytes, path: str) -> BundleReading | None:
    """What _read_pem gives for a clean bundle, faster; None (read it with _read_pem) for anything else."""
    if _CLEAN_PEM.fullmatch(data) is None:
        return None
    account = _Account(path)
    line = 1
    for match in _CLEAN_BLOCK.finditer(data):
        try:
            cert = parsed_once(match[1], _parse_clean_body)
        except ValueError:
            return None  # not base64, or an unreadable certificate: _read_pem words the problem
        account.add_parsed(cert, "CERTIFICATE", line)
        line += match[0].count(b"\n")
    return account.finish("pem")


def _parse_clean_body(body: bytes) -> x509.Certificate:
    """The certificate of a clean PEM body (base64 lines); ValueError for anything _read_pem must word."""
    compact = body.replace(b"\n", b"")
    if not _PADDED_BASE64.fullmatch(compact):
        raise ValueError("not padded base64")
    der = base64.b64decode(compact, validate=True)  # binascii.Error is a ValueError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def _read_pem(data: bytes, path: str) -> BundleReading:
    account = _Account(path)
    lines = _Lines(data)
    spans = _pem_spans(data)
    pkcs7_only = bool(spans) and all(_kind(span.label) == "pkcs7" for span in spans)
    outside = _LineRanges()
    gap_start, prev_end = 0, None
    openssl_stop = _openssl_stop(data)
    for i, span in enumerate(spans):
        after_end = prev_end is not None
        gap = _scan_gap(data, gap_start, span.start, lines.at(gap_start), after_end, outside)
        floor = spans[i - 1].start if i else 0
        ceiling = spans[i + 1].start if i + 1 < len(spans) else len(data)
        layout = _layout_issues(data, span, prev_end, floor, ceiling)
        if openssl_stop is not None and span.stop > openssl_stop:
            layout.append("after_nul")
        issues = _jvm_gap_issues(gap)
        _read_span(account, data, span, lines.at(span.start), layout, issues, pkcs7_only)
        gap_start = span.stop
        prev_end = span.stop if span.end_label is not None else None
    after_end = prev_end is not None
    tail = _scan_gap(data, gap_start, len(data), lines.at(gap_start), after_end, outside)
    _note_file_layout(account, data, spans, outside, tail)
    return account.finish("pkcs7-pem" if pkcs7_only else "pem")


def _openssl_stop(data: bytes) -> int | None:
    """Where OpenSSL stops reading PEM: at a line that starts with a NUL byte (its line reader
    measures lines with strlen, so that line reads as the end of the file)."""
    if data.startswith(b"\x00"):
        return 0
    found = data.find(b"\n\x00")
    return found + 1 if found >= 0 else None


def _jvm_gap_issues(gap: _Gap) -> list[_Issue]:
    issues = []
    if gap.orphan_end is not None:
        issues.append((Severity.ERROR, "the JVM would not read {cert}: " + _orphan_text(gap.orphan_end)))
    if gap.zero_line is not None:
        issues.append(
            (
                Severity.ERROR,
                f"the JVM would not read {{cert}}: the text before it starts with '0' (line "
                f"{gap.zero_line}), which the JVM reads as the start of binary DER data",
            )
        )
    return issues


def _orphan_text(orphan: tuple[int, str]) -> str:
    line, label = orphan
    lost = "private key" if "PRIVATE KEY" in label else "certificate"
    return f"line {line} is an END {label} line without a BEGIN line (a {lost} may have lost its BEGIN line)"


def _read_span(
    account: _Account,
    data: bytes,
    span: _Span,
    line: int,
    keys: list[str],
    gap_issues: list[_Issue],
    pkcs7_only: bool,
) -> None:
    kind = _kind(span.label)
    if kind in _KEY_KINDS:
        head = data[span.body_start : min(span.body_end, span.body_start + 80)]
        encrypted = kind == "encrypted_private_key" or (b"Proc-Type:" in head and b"ENCRYPTED" in head)
        if encrypted:
            digest = None
        else:  # a block without an END line cannot be read by anyone: "" as undecodable
            digest = _public_half(data[span.start : span.stop]) if span.end_label is not None else ""
        account.add_key("encrypted_private_key" if encrypted else "private_key", span.label, line, digest)
        return
    if kind in ("crl", "other"):
        account.add_other(kind, span.label, line)
        return
    if span.end_label is None:
        error: str | None = "the block has no END line"
        der = None
    else:
        der, error, body_keys = _decode_body(data[span.body_start : span.body_end], line)
        keys += sorted(body_keys - set(keys))
    if der is None:
        account.add_unreadable(error or "unreadable", span.label, line, _block_issues(keys) + gap_issues)
    elif kind == "pkcs7":
        keys.append("pkcs7_file" if pkcs7_only else "pkcs7_block")
        account.add_pkcs7(der, span.label, line, _block_issues(keys) + gap_issues)
    else:
        der, label_keys = _certificate_part(span.label, der)
        account.add_certificate(der, span.label, line, _block_issues(keys + label_keys) + gap_issues)


def _note_file_layout(account: _Account, data: bytes, spans: list[_Span], outside: _LineRanges, tail: _Gap) -> None:
    warn = Severity.WARNING
    # Read identically by OpenSSL and the JVM: worth knowing, not worth a warning verdict.
    if b"\r\n" in data:
        account.note_file(Severity.INFO, "uses CRLF (Windows) line endings (OpenSSL and the JVM accept them)")
    if data.startswith(_BOM) and not (spans and spans[0].start == len(_BOM)):
        account.note_file(warn, "starts with a UTF-8 byte order mark (BOM)")
    if outside.ranges:
        account.note_file(Severity.INFO, f"text outside the PEM blocks ({outside}; OpenSSL and the JVM skip it)")
    if not data.endswith(b"\n"):
        account.note_file(
            warn,
            "does not end with a newline: a certificate appended to it would be glued to the last END line",
        )
    if tail.orphan_end is not None:
        account.note_file(Severity.ERROR, _orphan_text(tail.orphan_end) + "; the JVM would reject the bundle")
    if tail.zero_line is not None:
        account.note_file(
            Severity.ERROR,
            f"the text after the last block starts with '0' (line {tail.zero_line}): the JVM "
            "reads it as binary DER data and would reject the bundle",
        )


# --- neither PEM nor DER -----------------------------------------------------------------------


def _utf16_codec(data: bytes) -> str | None:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    sample = data[:1024]
    even, odd = sample[0::2], sample[1::2]
    if len(sample) >= 4 and odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if len(sample) >= 4 and even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


def _describe_unknown(data: bytes) -> str:
    codec = _utf16_codec(data)
    if codec is not None:
        holding = " holding PEM" if "-----BEGIN" in data.decode(codec, "replace") else ""
        return (
            f"it is UTF-16 text{holding}; OpenSSL and the JVM read PEM only as ASCII "
            "(save it as ASCII or UTF-8 without a byte order mark)"
        )
    if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):
        return "it is a Java keystore (JKS/JCEKS), not a certificate bundle"
    head = data[:4096]
    if any(byte < 0x09 or 0x0E <= byte < 0x20 for byte in head):
        return "it is binary data that is neither a DER certificate nor PKCS#7"
    compact = b"".join(data.split())
    if len(compact) >= _PEM_LINE and _PADDED_BASE64.fullmatch(compact):
        return "it is bare base64 without -----BEGIN and -----END lines"
    return "it holds no PEM block (no -----BEGIN line) and is neither DER nor PKCS#7"
