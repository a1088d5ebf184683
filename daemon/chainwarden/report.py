"""Report value objects and the fixed problem-code vocabulary shared by CLI, metrics and fixer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

_FIELD_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def reduce_to_constructor(self: Any) -> tuple[type, tuple[Any, ...]]:
    """__reduce__ for frozen slotted dataclasses: pickled as their constructor call, which loads several
    times faster than slot state (results travel back from worker processes this way)."""
    cls = type(self)
    getter = _FIELD_GETTERS.get(cls)
    if getter is None:
        names = tuple(f.name for f in fields(cls) if f.init)
        getter = _FIELD_GETTERS[cls] = attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
    return cls, getter(self)


class Severity(StrEnum):
    """How bad a problem is; ordered so that max() gives the verdict."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


class Code(StrEnum):
    """Problem codes. Public contract: names never change, new ones may be added."""

    CONNECTION_INVALID = "connection_invalid"
    APPLY_AT_INVALID = "apply_at_invalid"
    SCHEDULE_AT_USED = "schedule_at_used"
    BUNDLE_UNREADABLE = "bundle_unreadable"
    BLOCK_UNREADABLE = "block_unreadable"
    FORMAT_NONSTANDARD = "format_nonstandard"
    PRIVATE_KEY_IN_BUNDLE = "private_key_in_bundle"
    DUPLICATE_CERTIFICATE = "duplicate_certificate"
    MISSING_INTERMEDIATE = "missing_intermediate"
    MISSING_ROOT = "missing_root"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRING_SOON = "expiring_soon"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    PATH_INVALID = "path_invalid"
    WRONG_ORDER = "wrong_order"
    UNRELATED_CERTIFICATE = "unrelated_certificate"
    UNUSED_EXPIRED_CERTIFICATE = "unused_expired_certificate"
    LEAF_IN_BUNDLE = "leaf_in_bundle"
    ENDPOINT_UNREACHABLE = "endpoint_unreachable"
    ENDPOINT_NOT_VERIFIED = "endpoint_not_verified"
    WEAK_ALGORITHM = "weak_algorithm"
    CLIENT_CERT_INVALID = "client_cert_invalid"
    FIX_FAILED = "fix_failed"


class Role(StrEnum):
    LEAF = "leaf"
    INTERMEDIATE = "intermediate"
    ROOT = "root"


class Source(StrEnum):
    """Where a certificate on a reported chain came from."""

    ENDPOINT = "endpoint"
    BUNDLE = "bundle"
    AIA = "aia"
    STORE = "store"


class Verdict(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {Verdict.OK: 0, Verdict.WARNING: 1, Verdict.ERROR: 2}[self]


@dataclass(frozen=True, slots=True)
class Problem:
    code: Code
    severity: Severity
    message: str
    certificate: str | None = None  # subject of the certificate concerned, when one is

    __reduce__ = reduce_to_constructor

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code.value,
            "severity": self.severity.value,
            "message": self.message,
        }
        if self.certificate is not None:
            out["certificate"] = self.certificate
        return out


@dataclass(frozen=True, slots=True)
class ChainEntry:
    role: Role
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha256: str
    source: Source
    unread: bool = False  # in the bundle, but in a block OpenSSL and the JVM would not read

    __reduce__ = reduce_to_constructor

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "role": self.role.value,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": iso_utc(self.not_before),
            "not_after": iso_utc(self.not_after),
            "sha256": self.sha256,
            "source": self.source.value,
        }
        if self.unread:
            out["unread_by_consumers"] = True
        return out


@dataclass(frozen=True, slots=True)
class Result:
    """The verdict for one connection (or one bundle checked on its own)."""

    file: str | None
    connection: str | None
    endpoint: str | None
    bundle: str | None
    problems: tuple[Problem, ...]
    chain: tuple[ChainEntry, ...] = ()
    # Every certificate in the bundle (for expiry metrics), whether or not on the path.
    bundle_certificates: tuple[ChainEntry, ...] = ()
    # The bundle alone carries the endpoint's leaf to a root; never True while no leaf is known.
    complete: bool = False
    endpoint_verified: bool = False
    probe_ok: bool | None = None
    notes: tuple[str, ...] = field(default=())
    # Without any leaf, only the bundle's own CA structure could be checked: whether it held up
    # (every CA certificate chains to a root in it). None when a leaf was known.
    structure_sound: bool | None = None

    __reduce__ = reduce_to_constructor

    @property
    def verdict(self) -> Verdict:
        severities = {p.severity for p in self.problems}
        if Severity.ERROR in severities:
            return Verdict.ERROR
        return Verdict.WARNING if Severity.WARNING in severities else Verdict.OK

    @property
    def chain_expires_at(self) -> datetime | None:
        return min((c.not_after for c in self.chain), default=None)

    def to_json(self) -> dict[str, object]:
        expires = self.chain_expires_at
        return {
            "file": self.file,
            "connection": self.connection,
            "endpoint": self.endpoint,
            "bundle": self.bundle,
            "verdict": self.verdict.value,
            "complete": self.complete,
            **({} if self.structure_sound is None else {"structure_sound": self.structure_sound}),
            "endpoint_verified": self.endpoint_verified,
            "problems": [p.to_json() for p in sorted_problems(self.problems)],
            "chain": [c.to_json() for c in self.chain],
            "chain_expires_at": iso_utc(expires) if expires else None,
            "notes": list(self.notes),
        }


def sorted_problems(problems: tuple[Problem, ...] | list[Problem]) -> list[Problem]:
    """Errors first, then warnings, then info; stable otherwise."""
    return sorted(problems, key=lambda p: -p.severity.rank)


def iso_utc(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def overall_exit_code(results: list[Result]) -> int:
    return max((r.verdict.exit_code for r in results), default=0)
