"""The pure evaluation: connection + bundle reading + presented chain + clock -> Result."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .bundle import BundleReading
from .certinfo import CertInfo, describe
from .chain import Diagnosis, Inputs, Link, Pool, diagnose, find_paths, is_self_signed
from .pathcheck import expiring_soon, hostname_problems
from .report import ChainEntry, Code, Problem, Result, Role, Severity, Source, reduce_to_constructor
from .roots import RootStore

_MISSING = frozenset({Code.MISSING_INTERMEDIATE, Code.MISSING_ROOT})


@dataclass(frozen=True, slots=True)
class Presented:
    """What we know of the endpoint's chain, and how we know it."""

    chain: tuple[x509.Certificate, ...]  # leaf first
    origin: str  # "probe", "file" (--chain), "cache" (last good probe)
    probe_error: str | None = None  # set when a live probe failed (origin is then "cache" or chain is empty)


@dataclass(frozen=True, slots=True)
class Target:
    """Who the result is about (for the report), and the name the leaf must carry."""

    file: str | None
    connection: str | None
    endpoint: str | None
    hostname: str | None
    bundle_path: str | None
    connection_problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A Result plus what the bundle-sharing pass needs to finish it."""

    result: Result
    related: frozenset[str]  # bundle certificates this connection's paths use
    bundle_path: str | None
    bundle_certs: tuple[tuple[str, str], ...]  # (sha256, subject) of every bundle certificate
    leaf_sha256: str | None

    __reduce__ = reduce_to_constructor


@dataclass(frozen=True, slots=True)
class _BundleView:
    """A bundle's certificates as the engine reads them, made once per bundle content."""

    consumer: tuple[CertInfo, ...]  # what a strict consumer reads
    everything: tuple[CertInfo, ...]
    hidden: tuple[CertInfo, ...]  # parsed by us, missed by a strict consumer
    pool: Pool  # issuer candidates among `consumer`
    positions: dict[str, int]  # sha256 -> index of its first occurrence among everything
    load_refusals: tuple[Problem, ...]  # certificates that make OpenSSL refuse the whole file

    @classmethod
    def of(cls, bundle: BundleReading) -> _BundleView:
        consumer = tuple(describe(c) for c in bundle.certificates(consumer_only=True))
        everything = tuple(describe(c) for c in bundle.certificates())
        consumer_shas = {c.sha256 for c in consumer}
        positions: dict[str, int] = {}
        for index, cert in enumerate(everything):
            positions.setdefault(cert.sha256, index)
        return cls(
            consumer=consumer,
            everything=everything,
            hidden=tuple(c for c in everything if c.sha256 not in consumer_shas),
            pool=Pool(Link(c, Source.BUNDLE) for c in consumer),
            positions=positions,
            load_refusals=tuple(
                refusal for c in everything if (refusal := _load_refusal(bundle.path, c)) is not None
            ),
        )


def _load_refusal(path: str, cert: CertInfo) -> Problem | None:
    """Why OpenSSL or the JVM would refuse to load a bundle holding `cert` at all, if either would."""
    if cert.openssl_refused_tags:
        tags = ", ".join(_TAG_NAMES.get(tag, f"tag {tag}") for tag in cert.openssl_refused_tags)
        why = (
            f"OpenSSL would not load the file at all: {cert.subject} has a name value of type {tags}, "
            "which OpenSSL's certificate decoder refuses"
        )
    elif cert.jvm_unparsable:
        why = (
            f"the JVM would not load the file at all: certificate sha256 {cert.short_id} has an empty subject "
            "and a non-critical subjectAltName, which the JVM's certificate parser refuses"
        )
    else:
        return None
    return Problem(
        Code.FORMAT_NONSTANDARD,
        Severity.ERROR,
        f"bundle {path}: {why}; remove or replace that certificate",
        cert.subject,
    )


_TAG_NAMES = {
    0x02: "INTEGER",
    0x04: "OCTET STRING",
    0x15: "VideotexString",
    0x19: "GraphicString",
    0x1A: "VisibleString",
    0x1B: "GeneralString",
}


def evaluate(
    target: Target,
    bundle: BundleReading,
    presented: Presented | None,
    now: datetime,
    *,
    store: RootStore | None = None,
    warn_days: int = 30,
    client_chain: BundleReading | None = None,
) -> Evaluation:
    view = bundle.derived("engine.view", _BundleView.of)
    problems: list[Problem] = [*target.connection_problems, *bundle.problems, *view.load_refusals]
    notes: list[str] = []
    everything = view.everything
    inputs = Inputs(
        bundle=view.consumer,
        hidden=view.hidden,
        presented=tuple(describe(c) for c in (presented.chain[1:] if presented else ())),
        store=store.roots if store else (),
        store_name=store.name if store else "the trusted root store",
        bundle_pool=view.pool,
    )

    leaf, leaf_source = _choose_leaf(presented, everything, target.hostname)
    problems.extend(_endpoint_problems(presented, leaf, leaf_source))
    if leaf is not None and leaf_source is Source.ENDPOINT and leaf.is_ca and not leaf.self_issued:
        notes.append(
            f"the first certificate of the presented chain, {leaf.subject}, is a CA certificate: "
            "an endpoint's own certificate comes first (was a bundle given as the chain?)"
        )
    if client_chain is not None:
        problems.extend(client_cert_problems(client_chain, now, warn_days))

    if leaf is None:
        diagnosis = _structural(inputs, now, warn_days)
        if bundle.readable and everything:
            problems.append(
                Problem(
                    Code.ENDPOINT_NOT_VERIFIED,
                    Severity.WARNING,
                    "no certificate of the endpoint is known (no live probe result, no cached chain, no leaf "
                    "in the bundle): only the bundle's own structure was checked, which cannot show a "
                    "missing intermediate",
                )
            )
    else:
        diagnosis = _diagnose_leaf(leaf, leaf_source, inputs, now, target.hostname, warn_days)
        if leaf.sha256 in {c.sha256 for c in everything}:
            problems.append(
                Problem(
                    Code.LEAF_IN_BUNDLE,
                    Severity.INFO,
                    f"the bundle contains the endpoint's own certificate {leaf.subject}; "
                    "optional, but it must be replaced whenever the endpoint renews it",
                    leaf.subject,
                )
            )
    if bundle.readable:
        problems.extend(diagnosis.problems)
    else:
        # The bundle itself is the problem; "missing" links would only repeat it.
        problems.extend(p for p in diagnosis.problems if p.code not in _MISSING)
    notes.extend(diagnosis.notes)

    if bundle.readable and everything:
        path_shas = {link.cert.sha256 for link in diagnosis.path}
        problems.extend(_unused_expired(everything, path_shas, now))
        problems.extend(_order_problems(diagnosis, view.positions, leaf))

    chain = tuple(_entry(link, i, len(diagnosis.path), leaf is not None) for i, link in enumerate(diagnosis.path))
    sound = diagnosis.complete and bundle.readable and not _consumer_rejects(bundle) and not view.load_refusals
    result = Result(
        file=target.file,
        connection=target.connection,
        endpoint=target.endpoint,
        bundle=target.bundle_path,
        problems=tuple(_dedupe(problems)),
        chain=chain,
        bundle_certificates=tuple(_bundle_entry(c) for c in everything),
        # OpenSSL and the JVM reject a whole file over most format errors: never call it complete;
        # nor without the endpoint's leaf, which alone shows whether an intermediate is missing.
        complete=leaf is not None and sound,
        # Verified only against a live probe or a presented chain the operator supplied, not a cache.
        endpoint_verified=leaf is not None
        and leaf_source is Source.ENDPOINT
        and presented is not None
        and presented.origin in ("probe", "file")
        and presented.probe_error is None,
        probe_ok=_probe_ok(presented),
        notes=tuple(notes),
        structure_sound=None if leaf is not None else sound,
    )
    return Evaluation(
        result=result,
        related=diagnosis.related | ({leaf.sha256} if leaf else set()),
        bundle_path=target.bundle_path,
        bundle_certs=tuple((c.sha256, c.subject) for c in everything),
        leaf_sha256=leaf.sha256 if leaf else None,
    )


def _probe_ok(presented: Presented | None) -> bool | None:
    """True/False only when a live probe ran; None for --chain files and chains merely loaded from cache."""
    if presented is None or presented.origin == "file":
        return None
    if presented.probe_error is not None:
        return False
    return True if presented.origin == "probe" else None


def _consumer_rejects(bundle: BundleReading) -> bool:
    return bundle.fails_consumers or any(
        (p.code is Code.FORMAT_NONSTANDARD and p.severity is Severity.ERROR) or p.code is Code.PRIVATE_KEY_IN_BUNDLE
        for p in bundle.problems
    )


def finish_shared_bundles(evaluations: Sequence[Evaluation]) -> list[Result]:
    """Add `unrelated_certificate` once every connection sharing a bundle is known."""
    used: dict[str, set[str]] = {}
    for ev in evaluations:
        if ev.bundle_path is not None:
            used.setdefault(ev.bundle_path, set()).update(ev.related)
    results = []
    for ev in evaluations:
        extra = []
        if ev.bundle_path is not None:
            related = used[ev.bundle_path]
            for sha256, subject in ev.bundle_certs:
                if sha256 in related:
                    continue
                if any(
                    p.code is Code.UNUSED_EXPIRED_CERTIFICATE and p.certificate == subject for p in ev.result.problems
                ):
                    continue
                extra.append(
                    Problem(
                        Code.UNRELATED_CERTIFICATE,
                        Severity.WARNING,
                        f"{subject} is in the bundle but on no path of any connection using it; "
                        "it widens this connection's trust for nothing",
                        subject,
                    )
                )
        results.append(replace(ev.result, problems=ev.result.problems + tuple(extra)) if extra else ev.result)
    return results


def _choose_leaf(
    presented: Presented | None, bundle: Sequence[CertInfo], hostname: str | None
) -> tuple[CertInfo | None, Source]:
    if presented is not None and presented.chain:
        return describe(presented.chain[0]), Source.ENDPOINT
    end_entities = [c for c in bundle if c.is_end_entity]
    if hostname:
        matching = [c for c in end_entities if not hostname_problems(c, hostname)]
        if matching:
            return max(matching, key=lambda c: c.not_after), Source.BUNDLE
    if len(end_entities) == 1:
        return end_entities[0], Source.BUNDLE
    return None, Source.BUNDLE


# One object for the note every offline result carries (results are kept, and pickled by workers).
_CHECKED_AGAINST_CACHE = Problem(
    Code.ENDPOINT_NOT_VERIFIED,
    Severity.INFO,
    "checked against the chain the endpoint presented when the daemon last probed it (cached), not a live probe",
)


def _endpoint_problems(presented: Presented | None, leaf: CertInfo | None, leaf_source: Source) -> list[Problem]:
    if presented is not None and presented.probe_error is None and presented.origin == "cache" and presented.chain:
        return [_CHECKED_AGAINST_CACHE]
    if presented is None or presented.probe_error is None:
        if leaf is not None and leaf_source is Source.BUNDLE:
            return [
                Problem(
                    Code.ENDPOINT_NOT_VERIFIED,
                    Severity.INFO,
                    f"checked against the leaf {leaf.subject} found in the bundle, "
                    "not against a live probe of the endpoint",
                    leaf.subject,
                )
            ]
        return []
    fallback = {
        "cache": "the bundle was checked against the last chain the endpoint presented",
    }.get(presented.origin if presented.chain else "", "")
    if not fallback and leaf is not None:
        fallback = "the bundle was checked against the leaf it contains"
    severity = Severity.WARNING if leaf is not None else Severity.ERROR
    suffix = f"; {fallback}" if fallback else "; the endpoint's chain is unknown"
    return [Problem(Code.ENDPOINT_UNREACHABLE, severity, f"{presented.probe_error}{suffix}")]


def _diagnose_leaf(
    leaf: CertInfo,
    leaf_source: Source,
    inputs: Inputs,
    now: datetime,
    hostname: str | None,
    warn_days: int,
) -> Diagnosis:
    if is_self_signed(leaf):  # CA or not: no certificate but itself in the bundle can make it trusted
        return _self_signed_leaf(leaf, leaf_source, inputs, now, hostname, warn_days)
    return diagnose(Link(leaf, leaf_source), inputs, now, hostname=hostname, warn_days=warn_days)


def _self_signed_leaf(
    leaf: CertInfo,
    leaf_source: Source,
    inputs: Inputs,
    now: datetime,
    hostname: str | None,
    warn_days: int,
) -> Diagnosis:
    """A self-signed endpoint certificate is its own root: only trusted if the bundle holds it."""
    from .pathcheck import validity_problems

    problems = validity_problems([leaf], now, hostname=hostname, leaf_is_endpoint=True)
    in_bundle = leaf.sha256 in {c.sha256 for c in inputs.bundle}
    if not in_bundle:
        problems.insert(
            0,
            Problem(
                Code.MISSING_ROOT,
                Severity.ERROR,
                f"the endpoint presents the self-signed certificate {leaf.subject}; "
                "the bundle must contain that exact certificate",
                leaf.subject,
            ),
        )
    problems.extend(expiring_soon([leaf], now, warn_days))
    valid = in_bundle and not any(p.severity is Severity.ERROR for p in problems)
    return Diagnosis((Link(leaf, leaf_source),), tuple(problems), in_bundle, valid, frozenset({leaf.sha256}), ())


def _structural(inputs: Inputs, now: datetime, warn_days: int) -> Diagnosis:
    """No leaf: every CA certificate in the bundle must chain to a self-signed root in it."""
    bundle = inputs.bundle + inputs.hidden
    if not bundle:
        return Diagnosis((), (), False, False, frozenset(), ())
    issuers = {c.issuer_key for c in bundle if not c.self_issued}
    bottoms = [c for c in bundle if c.subject_key not in issuers and not is_self_signed(c)]
    # An expired copy next to its renewal is an unused extra, not the thing to judge the bundle by.
    current = [c for c in bottoms if c.valid_at(now)]
    bottoms = current or bottoms
    if not bottoms:
        bottoms = [c for c in bundle if is_self_signed(c)][:1] or [bundle[0]]
    problems: list[Problem] = []
    notes: list[str] = []
    related: set[str] = set()
    diagnoses = [
        diagnose(Link(bottom, Source.BUNDLE), inputs, now, hostname=None, warn_days=warn_days, leaf_is_endpoint=False)
        for bottom in bottoms
    ]
    for d in diagnoses:
        problems.extend(d.problems)
        notes.extend(d.notes)
        related |= d.related
    complete = all(d.complete for d in diagnoses)
    return Diagnosis(diagnoses[0].path, tuple(problems), complete, False, frozenset(related), tuple(notes))


def _unused_expired(bundle: Sequence[CertInfo], on_path: set[str], now: datetime) -> list[Problem]:
    return [
        Problem(
            Code.UNUSED_EXPIRED_CERTIFICATE,
            Severity.WARNING,
            f"{cert.subject} in the bundle expired on {cert.not_after:%Y-%m-%d} and is not on the path; remove it",
            cert.subject,
        )
        for cert in bundle
        if cert.not_after < now and cert.sha256 not in on_path
    ]


def _order_problems(diagnosis: Diagnosis, positions: dict[str, int], leaf: CertInfo | None) -> list[Problem]:
    """The documented order: intermediates nearest the leaf first, then the root, then the leaf."""
    wanted = [link.cert.sha256 for link in diagnosis.path[1:] if link.source is Source.BUNDLE]
    if leaf is not None and leaf.sha256 in positions:
        wanted.append(leaf.sha256)
    actual = [positions[s] for s in wanted if s in positions]
    if actual == sorted(actual):
        return []
    return [
        Problem(
            Code.WRONG_ORDER,
            Severity.WARNING,
            "the bundle is not in the documented order (intermediates nearest the leaf first, "
            "then the root, then optionally the leaf)",
        )
    ]


# How client_cert_problems names the file: its path is a value under `secrets`, never printed.
_CLIENT_CERT_FILE = "the client certificate file (secrets.client_cert)"


def client_cert_problems(reading: BundleReading, now: datetime, warn_days: int) -> list[Problem]:
    """A client_cert keycertchain: key, client certificate (the first certificate), its CA chain.

    The key is counted and checked against the client certificate's public key, never shown; the
    file's path is a secrets value, so no message names it."""
    label = _CLIENT_CERT_FILE
    if not reading.readable:
        return [
            Problem(Code.CLIENT_CERT_INVALID, Severity.ERROR, f"{label}: {_without_path(p.message, reading.path)}")
            for p in reading.problems
            if p.code is Code.BUNDLE_UNREADABLE
        ]
    out: list[Problem] = []
    certs = [describe(c) for c in reading.certificates()]
    if reading.private_key_count != 1:
        out.append(
            Problem(
                Code.CLIENT_CERT_INVALID,
                Severity.ERROR,
                f"{label}: holds {reading.private_key_count} private keys, expected exactly one",
            )
        )
    if not certs:
        out.append(Problem(Code.CLIENT_CERT_INVALID, Severity.ERROR, f"{label}: holds no certificate"))
        return out
    client = certs[0]  # key, then the client certificate, then its CA chain
    if reading.private_key_count == 1:
        key_problem = reading.derived("engine.client_key", _client_key_problem)
        if key_problem:
            out.append(
                Problem(Code.CLIENT_CERT_INVALID, Severity.ERROR, f"{label}: {key_problem}", client.subject)
            )
    for index, cert in enumerate(certs):
        role = _client_chain_role(index, cert)
        if now > cert.not_after:
            out.append(
                Problem(
                    Code.EXPIRED,
                    Severity.ERROR,
                    f"{label}: {role} {cert.subject} expired on {cert.not_after:%Y-%m-%d}",
                    cert.subject,
                )
            )
    if now <= client.not_after <= now + timedelta(days=warn_days):
        days = (client.not_after - now).days
        out.append(
            Problem(
                Code.EXPIRING_SOON,
                Severity.WARNING,
                f"{label}: the client certificate {client.subject} expires on "
                f"{client.not_after:%Y-%m-%d %H:%M} UTC (in {days} days)",
                client.subject,
            )
        )
    search = find_paths(Link(client, Source.BUNDLE), Pool(Link(c, Source.BUNDLE) for c in certs))
    if len(certs) > 1 and not search.complete and not any(len(p) > 1 for p in search.dead_ends):
        out.append(
            Problem(
                Code.CLIENT_CERT_INVALID,
                Severity.WARNING,
                f"{label}: the CA certificates in it do not certify the client certificate {client.subject}",
                client.subject,
            )
        )
    return out


def _without_path(message: str, path: str) -> str:
    """The bundle reader's sentence about the file without its path ("bundle PATH: " starts it); a
    sentence still naming the path elsewhere is replaced by a plain one."""
    text = message.removeprefix(f"bundle {path}: ")
    if re.search(rf"(?<![\w./-]){re.escape(path)}(?![\w./-])", text):
        return "cannot be read"
    return text


def _client_chain_role(index: int, cert: CertInfo) -> str:
    """The first certificate of a keycertchain is the client's own; then its CA chain up to a root."""
    if index == 0:
        return "the client certificate"
    return "its root CA certificate" if is_self_signed(cert) else "its intermediate CA certificate"


def _client_key_problem(reading: BundleReading) -> str | None:
    """Why the keycertchain's one private key does not go with its first certificate, or None when it
    does or cannot be told (an encrypted key, an algorithm cryptography lacks). The reading keeps only
    the digest of the key's public half, compared here with the certificate's."""
    keys = ("private_key", "encrypted_private_key")
    digests = [block.key_public_sha256 for block in reading.blocks if block.kind in keys]
    certs = reading.certificates()
    if len(digests) != 1 or digests[0] is None or not certs:
        return None
    if not digests[0]:
        return "its private key cannot be decoded, or is not a consistent key (the key is not shown)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spki = certs[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):
        return None  # the certificate's own key cannot be read here: nothing to compare with
    if hashlib.sha256(spki).hexdigest() != digests[0]:
        return (
            "its private key does not belong to the client certificate (the first certificate after "
            "the key): their public keys differ, so a TLS client cannot use them together"
        )
    return None


def _entry(link: Link, index: int, length: int, has_leaf: bool) -> ChainEntry:
    if index == 0 and has_leaf and length > 1:
        role = Role.LEAF
    elif index == length - 1 and is_self_signed(link.cert):
        role = Role.ROOT
    elif index == 0 and has_leaf:
        role = Role.LEAF
    else:
        role = Role.INTERMEDIATE
    if link.hidden:
        return replace(_new_chain_entry(link.cert, role, link.source), unread=True)
    return _chain_entry(link.cert, role, link.source)


def _bundle_entry(cert: CertInfo) -> ChainEntry:
    if cert.is_end_entity:
        role = Role.LEAF
    elif is_self_signed(cert):
        role = Role.ROOT
    else:
        role = Role.INTERMEDIATE
    return _chain_entry(cert, role, Source.BUNDLE)


# Entries of CA certificates repeat across thousands of connections: one object each.
_CA_ENTRIES: dict[tuple[str, Role, Source], ChainEntry] = {}


def _chain_entry(cert: CertInfo, role: Role, source: Source) -> ChainEntry:
    if role is Role.LEAF:
        return _new_chain_entry(cert, role, source)
    key = (cert.sha256, role, source)
    entry = _CA_ENTRIES.get(key)
    if entry is None:
        if len(_CA_ENTRIES) >= 100_000:
            _CA_ENTRIES.clear()
        entry = _CA_ENTRIES[key] = _new_chain_entry(cert, role, source)
    return entry


def _new_chain_entry(cert: CertInfo, role: Role, source: Source) -> ChainEntry:
    return ChainEntry(
        role=role,
        subject=cert.subject,
        issuer=cert.issuer,
        not_before=cert.not_before,
        not_after=cert.not_after,
        sha256=cert.sha256,
        source=source,
    )


def _dedupe(problems: Sequence[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.code, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
