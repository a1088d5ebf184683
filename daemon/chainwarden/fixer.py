"""Plan completed bundles and the resubmission JSON: which path, which new bundle bytes, which JSON edits."""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .bundle import BundleReading
from .certinfo import CertInfo, describe
from .chain import Link, Pool, find_paths, is_self_signed
from .connections import Connection, ConnectionFile, format_apply_at
from .engine import Presented
from .jsonedit import mask_sensitive, rewrite_connection_json
from .pathcheck import hostname_problems, validity_problems
from .report import Code, Problem, Result, Severity, Source
from .roots import RootStore

log = logging.getLogger("chainwarden.fix")

# Finds candidate issuers for a certificate (offline directory, then AIA): (certificates with origin, errors).
IssuerFinder = Callable[[x509.Certificate], tuple[list[tuple[x509.Certificate, str]], list[str]]]

FIXABLE = frozenset(
    {
        Code.MISSING_INTERMEDIATE,
        Code.MISSING_ROOT,
        Code.FORMAT_NONSTANDARD,
        Code.EXPIRED,
        Code.BLOCK_UNREADABLE,
        Code.PRIVATE_KEY_IN_BUNDLE,
        Code.PATH_INVALID,
    }
)
MAX_FETCH_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class Completion:
    """A validated path for one connection, or why none could be had."""

    connection: str
    path: tuple[CertInfo, ...] = ()
    origins: tuple[str, ...] = ()  # where each path certificate came from
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.path)


@dataclass(frozen=True, slots=True)
class BundlePlan:
    source: str  # the bundle being replaced
    content: bytes
    file_name: str
    certificates: tuple[CertInfo, ...]
    added: tuple[tuple[CertInfo, str], ...]  # (certificate, origin)
    dropped: tuple[tuple[CertInfo, str], ...]  # (certificate, reason)
    connections: tuple[str, ...]  # the connections it replaces `source` for


@dataclass(frozen=True, slots=True)
class FilePlan:
    source: str
    source_bytes: bytes
    new_json: bytes | None
    apply_at: datetime | None
    bundles: tuple[BundlePlan, ...]
    failures: tuple[Completion, ...]
    server_certs: dict[str, str] = field(default_factory=dict)
    apply_at_text: str | None = None  # exactly as written into the JSON
    source_apply_at: datetime | None = None

    @property
    def moves_rollout_earlier(self) -> bool:
        """The source was scheduled later than the resubmission will be (a planned window is lost)."""
        return bool(self.apply_at and self.source_apply_at and self.source_apply_at > self.apply_at)

    @property
    def changes(self) -> bool:
        return self.new_json is not None

    def json_diff(self, output_name: str) -> str:
        """A unified diff of the real source bytes and the real new bytes, line numbers as in the files,
        with every sensitive value (under `secrets`, and `blob_sas_url`) masked in place on both sides."""
        if self.new_json is None:
            return ""
        try:
            old = _masked_lines(self.source_bytes)
            new = _masked_lines(self.new_json)
        except ValueError:  # never the unmasked text: only say that there is no diff to show
            return "(the JSON diff cannot be shown with its secrets masked)\n"
        lines = difflib.unified_diff(old, new, self.source, output_name, lineterm="")
        return "".join(line + "\n" for line in lines)


# Line breaks as editors count them (a JSON string can hold U+2028 or U+0085 raw: no line break).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _masked_lines(document: bytes) -> list[str]:
    """The document's lines, without their line breaks, sensitive values masked; ValueError when it is
    not UTF-8 JSON that can be masked."""
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    lines = _LINE_BREAK.split(mask_sensitive(text).removeprefix("\ufeff"))
    return lines[:-1] if lines and lines[-1] == "" else lines


def needs_fix(result: Result) -> bool:
    """Broken in a way a new bundle can mend (not the endpoint's own certificate or name)."""
    if result.connection is None or result.verdict.value != "error":
        return False
    leaf_known = result.structure_sound is None  # else only the bundle's own structure was checked
    for problem in result.problems:
        if problem.severity is not Severity.ERROR:
            continue
        if problem.code is Code.EXPIRED and result.chain and problem.certificate == result.chain[0].subject:
            return False  # the endpoint's own certificate expired: no bundle can mend that
        if problem.code in (Code.HOSTNAME_MISMATCH, Code.CONNECTION_INVALID, Code.ENDPOINT_UNREACHABLE):
            if problem.code is Code.ENDPOINT_UNREACHABLE and leaf_known:
                continue  # down now, but its cached chain shows what the bundle lacks
            return False
    fixable = any(p.code in FIXABLE and p.severity is Severity.ERROR for p in result.problems)
    return fixable or (leaf_known and not result.complete)


def complete_connection(
    conn: Connection,
    leaf_chain: Sequence[x509.Certificate],
    bundle: BundleReading,
    store: RootStore,
    find_issuers: IssuerFinder,
    times: Sequence[datetime],
) -> Completion:
    """The path leaf -> ... -> root for `conn`, using only trustworthy roots, valid at every moment in `times`."""
    bundle_certs = [describe(c) for c in bundle.certificates()]
    # The endpoint's leaf as check chooses it: presented (or cached), else the bundle's own for this host.
    bundled_leaves = [c for c in bundle_certs if c.is_end_entity and not hostname_problems(c, conn.host)]
    leaf_is_endpoint = bool(leaf_chain or bundled_leaves)
    if leaf_chain:
        start = describe(leaf_chain[0])
        extras = [describe(c) for c in leaf_chain[1:]]
    elif bundled_leaves:
        start, extras = max(bundled_leaves, key=lambda c: c.not_after), []
    else:
        bottoms = [c for c in bundle_certs if not c.is_end_entity and not is_self_signed(c)]
        if not bottoms:
            return Completion(
                conn.name,
                problem=_fail(
                    conn, "no endpoint certificate is known and the bundle has no intermediate to start from"
                ),
            )
        start, extras = bottoms[0], []
    # Roots may come only from the operator's bundle or the trusted store, never from the endpoint or AIA.
    links = [Link(c, Source.BUNDLE) for c in bundle_certs]
    links += [Link(c, Source.STORE) for c in store.roots]
    links += [Link(c, Source.ENDPOINT) for c in extras if not c.self_issued]
    # Where each certificate is admitted from. A root only ever enters from the bundle or the store,
    # so a root the endpoint also presents is labelled by the store it was admitted from.
    origins: dict[str, str] = {c.sha256: "bundle" for c in bundle_certs}
    for root in store.roots:
        origins.setdefault(root.sha256, store_origin(store))
    origins.update({c.sha256: "endpoint" for c in extras if c.sha256 not in origins and not c.self_issued})
    fetch_errors: list[str] = []
    ignored_roots: list[str] = []
    last_failure = ""
    tops: dict[str, CertInfo] = {}
    for _ in range(MAX_FETCH_ROUNDS + 1):
        search = find_paths(Link(start, Source.ENDPOINT), Pool(links))
        valid = []
        for path in search.complete:
            certs = [link.cert for link in path]
            failures = [
                p
                for moment in times
                for p in validity_problems(
                    certs, moment, hostname=conn.host if leaf_is_endpoint else None, leaf_is_endpoint=leaf_is_endpoint
                )
                if p.severity is Severity.ERROR
            ]
            if failures:
                last_failure = failures[0].message
            else:
                valid.append(path)
        if valid:
            best = min(valid, key=lambda p: (sum(link.source is not Source.BUNDLE for link in p), len(p)))
            path_certs = tuple(link.cert for link in best)
            return Completion(conn.name, path_certs, tuple(origins.get(c.sha256, "?") for c in path_certs))
        tops = {path[-1].cert.sha256: path[-1].cert for path in search.dead_ends}
        added = False
        for top in tops.values():
            candidates, errors = find_issuers(top.cert)
            fetch_errors.extend(errors)
            for cert, origin in candidates:
                info = describe(cert)
                if info.sha256 in origins:
                    continue
                if info.self_issued:
                    ignored_roots.append(f"{info.subject} (from {origin})")
                    origins[info.sha256] = "ignored"
                    continue
                origins[info.sha256] = origin
                links.append(Link(info, Source.AIA))
                added = True
        if not added:
            break
    if last_failure:
        why = f"the only complete path is invalid: {last_failure}"
        if fetch_errors:
            why += "; fetching failed: " + "; ".join(dict.fromkeys(fetch_errors))
        return Completion(conn.name, problem=_fail(conn, why))
    known = {c.sha256 for c in bundle_certs} | {r.sha256 for r in store.roots}
    wanted = {top.issuer_key for top in tops.values()}
    presented_roots = [
        c for c in extras if c.self_issued and c.sha256 not in known and (not wanted or c.subject_key in wanted)
    ]
    why = _no_root_reason(list(tops.values()), presented_roots, ignored_roots, fetch_errors, store)
    return Completion(conn.name, problem=_fail(conn, why))


def store_origin(store: RootStore) -> str:
    """The origin of a root admitted from the trusted root store: the setting and what it names."""
    return f"trusted_roots: {store.name}"


def _no_root_reason(
    tops: Sequence[CertInfo],
    presented_roots: Sequence[CertInfo],
    ignored_roots: Sequence[str],
    fetch_errors: Sequence[str],
    store: RootStore,
) -> str:
    """Why no path reaches a trusted root, and what to change: the store searched, a root the endpoint
    (or AIA) offered that is not in it, and the setting that names the store fix uses."""
    searched = store.name
    if store.errors:
        searched += " (unreadable: " + "; ".join(store.errors[:3]) + ")"
    elif not store.roots:
        searched += " (no root certificate in it)"
    places = (
        "among the certificates fix may use (the bundle, intermediates presented by the endpoint, in "
        f"[regenerate] intermediates_dir or fetched by AIA, and the trusted root store searched, {searched})"
    )
    if not tops:
        where = f"the chain's issuers are not {places}"
    elif len(tops) == 1:
        where = f"the chain stops at {tops[0].subject}: its issuer {tops[0].issuer} is not {places}"
    else:
        ends = " and ".join(f"{top.subject} (issuer {top.issuer})" for top in tops[:3])
        where = f"the chain stops at {ends}: no issuer of them is {places}"
    reasons = [f"no path to a trusted root: {where}"]
    offered = [f"the endpoint presented the root {r.subject}, which is not in that store" for r in presented_roots]
    offered += [f"a root was offered by AIA but is not trusted: {r}, not in that store" for r in ignored_roots]
    if offered:
        reasons.append("; ".join(offered) + " (a root is never taken from the endpoint or AIA)")
    if fetch_errors:
        reasons.append("fetching failed: " + "; ".join(dict.fromkeys(fetch_errors)))
    setting = (
        "add the root to the bundle or set [regenerate] trusted_roots (used by fix and the daemon's "
        "regeneration; [verify] trusted_roots only serves verification) to a PEM file or folder holding it"
    )
    if offered:
        reasons.append(f"if you trust it, {setting}")
    else:
        reasons.append(
            "if the missing issuer is an intermediate, put it in [regenerate] intermediates_dir; "
            f"if it is a root you trust, {setting}"
        )
    return "; ".join(reasons)


def _fail(conn: Connection, why: str) -> Problem:
    return Problem(
        Code.FIX_FAILED,
        Severity.ERROR,
        f"connection {conn.name}: cannot complete the bundle {conn.server_cert_path}: {why}",
    )


def compose_bundle(
    source: str,
    reading: BundleReading,
    paths: Sequence[tuple[str, tuple[CertInfo, ...], tuple[str, ...]]],
    now: datetime,
    *,
    include_leaf: bool,
) -> BundlePlan:
    """Intermediates nearest the leaf first, then roots, then (optionally) leaves; normalized PEM."""
    intermediates: list[CertInfo] = []
    roots: list[CertInfo] = []
    leaves: list[CertInfo] = []
    origin_of: dict[str, str] = {}
    seen: set[str] = set()
    for _, path, origins in paths:
        for position, (cert, origin) in enumerate(zip(path, origins, strict=True)):
            origin_of.setdefault(cert.sha256, origin)
            if cert.sha256 in seen:
                continue
            seen.add(cert.sha256)
            if position == 0 and not cert.is_ca:
                leaves.append(cert)
            elif position == len(path) - 1:
                roots.append(cert)
            else:
                intermediates.append(cert)
    ordered = intermediates + roots + (leaves if include_leaf else [])
    old = [describe(c) for c in reading.certificates()]
    old_shas = {c.sha256 for c in old}
    kept = {c.sha256 for c in ordered}
    dropped: list[tuple[CertInfo, str]] = []
    for cert in old:
        if cert.sha256 in kept:
            continue
        if cert.is_end_entity and not include_leaf:
            reason = "a leaf ([regenerate] include_leaf is off)"
        elif now > cert.not_after:
            reason = "expired"
        else:
            reason = "on no connection's path"
        dropped.append((cert, reason))
    duplicates = len(reading.certificates()) != len({c.sha256 for c in old}) or any(
        p.code is Code.DUPLICATE_CERTIFICATE for p in reading.problems
    )
    if duplicates:
        log.info("bundle %s: duplicate certificates dropped", source)
    content = b"".join(c.cert.public_bytes(Encoding.PEM) for c in ordered)
    digest = hashlib.sha256(content).hexdigest()[:12]
    stem = Path(source).stem or "bundle"
    added = tuple((c, origin_of.get(c.sha256, "?")) for c in ordered if c.sha256 not in old_shas)
    return BundlePlan(
        source=source,
        content=content,
        file_name=f"{stem}-{digest}.pem",
        certificates=tuple(ordered),
        added=added,
        dropped=tuple(dropped),
        connections=tuple(name for name, _, _ in paths),
    )


def plan_file(
    connection_file: ConnectionFile,
    source_bytes: bytes,
    results: Sequence[Result],
    bundles: dict[str, BundleReading],
    presented: Mapping[Any, Presented],
    store: RootStore,
    find_issuers: IssuerFinder,
    now: datetime,
    *,
    lead: timedelta,
    include_leaf: bool,
    outbox: str,
    output_json: str,
    only: str | None = None,
) -> FilePlan:
    """Everything to write for one connection JSON; nothing at all when no connection needs fixing."""
    by_name = {r.connection: r for r in results if r.file == connection_file.path and r.connection}
    apply_at = now + lead
    times = (now, apply_at)
    completions: dict[str, Completion] = {}
    for conn in connection_file.connections:
        result = by_name.get(conn.name)
        if result is None or (only is not None and conn.name != only) or not needs_fix(result):
            continue
        pres = presented.get((conn.host, conn.port))
        chain = pres.chain if pres is not None else ()
        completions[conn.name] = complete_connection(
            conn, chain, bundles[conn.server_cert_path], store, find_issuers, times
        )
    fixed = {name: c for name, c in completions.items() if c.ok}
    failures = tuple(c for c in completions.values() if not c.ok)
    if not fixed:
        return FilePlan(connection_file.path, source_bytes, None, None, (), failures)

    by_bundle: dict[str, list[Connection]] = {}
    for conn in connection_file.connections:
        by_bundle.setdefault(conn.server_cert_path, []).append(conn)
    plans: list[BundlePlan] = []
    server_certs: dict[str, str] = {}
    for bundle_path, conns in by_bundle.items():
        if not any(c.name in fixed for c in conns):
            continue
        paths = []
        for conn in conns:
            if conn.name in fixed:
                completion = fixed[conn.name]
                paths.append((conn.name, completion.path, completion.origins))
            else:
                kept = _current_path(by_name.get(conn.name), bundles[bundle_path])
                if kept:
                    paths.append((conn.name, kept, tuple("bundle" for _ in kept)))
        plan = compose_bundle(bundle_path, bundles[bundle_path], paths, now, include_leaf=include_leaf)
        target = os.path.join(outbox, plan.file_name)
        # The new bundle replaces the shared one for every connection whose whole path it is known to
        # carry (left behind, each would see the others' certificates as unrelated); not for one whose
        # leaf is unknown, whose needs only the old bundle surely meets; --connection moves only its own.
        moved = set(fixed)
        if only is None:
            moved |= {conn.name for conn in conns if _verified_complete(by_name.get(conn.name))}
        # The plan names the connections it moves, not every one whose path it carries (those stay put).
        plan = replace(plan, connections=tuple(name for name in plan.connections if name in moved))
        plans.append(plan)
        for conn in conns:
            if conn.name in moved:
                relative = not os.path.isabs(conn.server_cert)
                server_certs[conn.name] = (
                    os.path.relpath(target, os.path.dirname(output_json)) if relative else os.path.abspath(target)
                )
    apply_at_text = format_apply_at(apply_at, connection_file.apply_at_raw)
    relocated = _relocated_paths(connection_file, source_bytes, server_certs, os.path.dirname(output_json))
    try:
        new_json = rewrite_connection_json(
            source_bytes, server_certs={**relocated, **server_certs}, apply_at=apply_at_text
        )
    except ValueError as error:  # ambiguous keys, say: its sentence names the key, never a value
        problem = Problem(
            Code.FIX_FAILED,
            Severity.ERROR,
            f"connection file {connection_file.path}: no resubmission JSON can be written from it: {error}",
        )
        unwritable = tuple(Completion(name, problem=problem) for name in fixed)
        return FilePlan(connection_file.path, source_bytes, None, None, (), failures + unwritable)
    return FilePlan(
        connection_file.path,
        source_bytes,
        new_json,
        apply_at,
        tuple(plans),
        failures,
        server_certs,
        apply_at_text,
        connection_file.apply_at,
    )


def _relocated_paths(
    connection_file: ConnectionFile, source_bytes: bytes, fixed: Mapping[str, str], out_dir: str
) -> dict[str, str]:
    """Relative server_cert paths of the connections left as they are, rewritten to name the same files
    from the resubmission's folder (a relative path is read from the JSON's own folder). Connections
    too broken to check are moved too: their bundle must not seem to vanish once they are fixed."""
    json_dir = os.path.dirname(connection_file.path)
    given = {c.name: (c.server_cert, c.server_cert_path) for c in connection_file.connections}
    for name, server_cert in _plain_server_certs(source_bytes).items():
        given.setdefault(name, (server_cert, os.path.join(json_dir, server_cert)))
    moved = {}
    for name, (server_cert, path) in given.items():
        if name in fixed or os.path.isabs(server_cert):
            continue
        from_outbox = os.path.relpath(path, out_dir)
        if from_outbox != server_cert:
            moved[name] = from_outbox
    return moved


def _plain_server_certs(source_bytes: bytes) -> dict[str, str]:
    """Every connection's server_cert string where the JSON names it unambiguously (no repeated key on
    the way), whether or not the connection is otherwise usable."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
        decoded = dict(pairs)
        return decoded if len(decoded) == len(pairs) else None  # repeated keys: ambiguous, left alone

    try:
        top = json.loads(source_bytes.decode("utf-8-sig"), object_pairs_hook=unique)
    except (ValueError, RecursionError):
        return {}
    table = top.get("external_connections") if isinstance(top, dict) else None
    if not isinstance(table, dict):
        return {}
    return {
        name: value["server_cert"]
        for name, value in table.items()
        if isinstance(value, dict) and isinstance(value.get("server_cert"), str) and value["server_cert"]
    }


def _verified_complete(result: Result | None) -> bool:
    """A connection whose leaf is known and whose bundle carries it to a root."""
    return result is not None and result.complete and result.structure_sound is None


def _current_path(result: Result | None, reading: BundleReading) -> tuple[CertInfo, ...]:
    """The path a healthy connection sharing the bundle uses now, so its certificates are kept."""
    if result is None or not result.chain:
        return ()
    by_sha = {describe(c).sha256: describe(c) for c in reading.certificates()}
    return tuple(by_sha[e.sha256] for e in result.chain if e.sha256 in by_sha)
