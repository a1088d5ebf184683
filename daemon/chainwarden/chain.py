"""Path building and diagnosis: which path the bundle gives, and what is missing when it gives none."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .certinfo import CertInfo, signature_error
from .pathcheck import expiring_soon, validity_problems
from .report import Code, Problem, Severity, Source

MAX_DEPTH = 10
MAX_PATHS = 32
MAX_VISITS = 4000


@dataclass(frozen=True, slots=True)
class Link:
    """One certificate on a path and where it came from."""

    cert: CertInfo
    source: Source
    hidden: bool = False  # in the bundle, but a strict consumer would not read it


Path = tuple[Link, ...]


class Pool:
    """Candidate issuers indexed by subject name."""

    def __init__(self, links: Iterable[Link]) -> None:
        self._by_subject: dict[tuple[tuple[str, str], ...], list[Link]] = {}
        seen: set[str] = set()
        for link in links:
            if link.cert.sha256 in seen:
                continue
            seen.add(link.cert.sha256)
            self._by_subject.setdefault(link.cert.subject_key, []).append(link)

    def issuers_of(self, child: CertInfo) -> list[Link]:
        found = self._by_subject.get(child.issuer_key, [])
        if len(found) < 2:
            return list(found)
        # Key-identifier matches first: that is the issuer the child names most precisely.
        return sorted(
            found,
            key=lambda link: (
                not (child.aki is not None and link.cert.ski == child.aki),
                link.source is not Source.BUNDLE,
                link.hidden,
                -link.cert.not_after.timestamp(),
            ),
        )


def is_self_signed(cert: CertInfo) -> bool:
    return cert.self_issued and signature_error(cert, cert) is None


@dataclass(frozen=True, slots=True)
class Search:
    complete: tuple[Path, ...]  # paths ending in a self-signed certificate
    dead_ends: tuple[Path, ...]  # maximal paths whose top has no usable issuer in the pool
    bad_signatures: tuple[tuple[CertInfo, CertInfo, str], ...]  # child, candidate, why it is not the issuer


def find_paths(start: Link, pool: Pool) -> Search:
    """Depth-first search for every path from `start` up to a self-signed certificate."""
    walk = _Walk(pool)
    walk.visit((start,))
    return Search(tuple(walk.complete), tuple(walk.dead_ends), tuple(walk.bad))


class _Walk:
    """The state of one find_paths search (a class, not a closure: a recursive nested function is a
    reference cycle, which only the cyclic collector frees, and every connection made one)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.complete: list[Path] = []
        self.dead_ends: list[Path] = []
        self.bad: list[tuple[CertInfo, CertInfo, str]] = []
        self.visits = 0

    def visit(self, path: Path) -> None:
        self.visits += 1
        top = path[-1].cert
        if is_self_signed(top):
            self.complete.append(path)
            return
        if len(path) >= MAX_DEPTH or self.visits > MAX_VISITS or len(self.complete) >= MAX_PATHS:
            self.dead_ends.append(path)
            return
        on_path = {link.cert.sha256 for link in path}
        extended = False
        for candidate in self.pool.issuers_of(top):
            if candidate.cert.sha256 in on_path:
                continue
            if _same_key_already_on_path(candidate.cert, path):
                continue  # a cross-sign of a certificate already above us: a loop
            mismatch = identifier_mismatch(top, candidate.cert)
            if mismatch is not None:
                self.bad.append((top, candidate.cert, f"is not the issuer that {top.subject} names: {mismatch}"))
                continue
            reason = signature_error(top, candidate.cert)
            if reason is not None:
                self.bad.append((top, candidate.cert, f"did not sign {top.subject}: {reason}"))
                continue
            extended = True
            self.visit((*path, candidate))
        if not extended:
            self.dead_ends.append(path)


def identifier_mismatch(child: CertInfo, issuer: CertInfo) -> str | None:
    """Why `issuer` is not the certificate `child`'s authorityKeyIdentifier names; OpenSSL and the JVM
    pass over such a candidate even when its key made the signature."""
    if child.aki is not None and issuer.ski is not None and child.aki != issuer.ski:
        return f"its key identifier {issuer.ski.hex(':')} is not the authority key identifier {child.aki.hex(':')}"
    if child.aki_serial is not None and child.aki_serial != issuer.cert.serial_number:
        return "its serial number is not the one in the authority key identifier"
    if child.aki_issuers and issuer.issuer_key not in child.aki_issuers:
        return "its issuer is not the one in the authority key identifier"
    return None


def _same_key_already_on_path(cert: CertInfo, path: Path) -> bool:
    return any(link.cert.subject_key == cert.subject_key and link.cert.ski == cert.ski and cert.ski for link in path)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What the bundle gives for one leaf: the chosen path and every problem on it."""

    path: Path
    problems: tuple[Problem, ...]
    complete: bool  # the bundle alone (as a strict consumer reads it) gives a path to a root
    valid: bool  # ... and that path validates at the evaluation time
    related: frozenset[str]  # sha256 of every certificate on any path found
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything path diagnosis looks at, already parsed."""

    bundle: tuple[CertInfo, ...]  # certificates a strict consumer reads from the bundle
    hidden: tuple[CertInfo, ...] = ()  # parsed by us, missed by a strict consumer
    presented: tuple[CertInfo, ...] = ()  # what the endpoint sent after its leaf
    store: tuple[CertInfo, ...] = ()  # trusted roots, used only to explain a missing root
    store_name: str = "the trusted root store"
    bundle_pool: Pool | None = None  # Pool of `bundle`, when the caller keeps one per bundle


def diagnose(
    leaf: Link,
    inputs: Inputs,
    now: datetime,
    *,
    hostname: str | None,
    warn_days: int,
    leaf_is_endpoint: bool = True,
) -> Diagnosis:
    """Can `inputs.bundle` alone carry `leaf` to a self-signed root, valid at `now`?"""
    bundle_pool = inputs.bundle_pool or Pool(Link(c, Source.BUNDLE) for c in inputs.bundle)
    bundle_search = find_paths(leaf, bundle_pool)

    def problems_of(path: Path) -> list[Problem]:
        return validity_problems(
            [link.cert for link in path], now, hostname=hostname, leaf_is_endpoint=leaf_is_endpoint
        )

    scored = [(path, problems_of(path)) for path in bundle_search.complete]
    valid = [(p, probs) for p, probs in scored if not _errors(probs)]
    related = {link.cert.sha256 for path in bundle_search.complete for link in path}
    notes: list[str] = []

    if valid:
        chosen, problems = min(valid, key=lambda item: _rank(item[0], item[1]))
        notes.extend(_path_notes(chosen, scored))
        problems = problems + expiring_soon([link.cert for link in chosen], now, warn_days, has_leaf=leaf_is_endpoint)
        return Diagnosis(chosen, tuple(problems), True, True, frozenset(related), tuple(notes))

    extended_pool = Pool(
        [Link(c, Source.BUNDLE) for c in inputs.bundle]
        + [Link(c, Source.BUNDLE, hidden=True) for c in inputs.hidden]
        + [Link(c, Source.ENDPOINT) for c in inputs.presented]
        + list(_store_links(inputs.store))
    )
    extended_search = find_paths(leaf, extended_pool)
    related |= {link.cert.sha256 for path in extended_search.complete for link in path if link.source is Source.BUNDLE}
    # The extended pool holds the bundle's certificates too: its search finds the bundle's paths again.
    known = {path for path, _ in scored}
    candidates = scored + [(p, problems_of(p)) for p in extended_search.complete if p not in known]
    if candidates:
        chosen, problems = min(candidates, key=lambda item: _rank(item[0], item[1]))
        missing = _missing_links(chosen, inputs.store_name)
        complete = not any(_is_missing(link) for link in chosen[1:])
        notes.extend(_path_notes(chosen, candidates))
        problems = (
            missing
            + problems
            + expiring_soon([link.cert for link in chosen], now, warn_days, has_leaf=leaf_is_endpoint)
        )
        valid_now = complete and not _errors(problems)
        return Diagnosis(chosen, tuple(problems), complete, valid_now, frozenset(related), tuple(notes))

    # No path to any self-signed certificate, even with help: explain the deepest dead end.
    dead_end = max(
        extended_search.dead_ends or ((leaf,),),
        key=lambda path: (len(path), -sum(_is_missing(link) for link in path)),
    )
    # Until the missing issuer is known, no bundle certificate can be judged unrelated to this path.
    related |= {c.sha256 for c in inputs.bundle + inputs.hidden}
    problems = _missing_links(dead_end, inputs.store_name)
    problems.append(
        _unknown_issuer(dead_end[-1].cert, inputs.store_name, is_leaf=len(dead_end) == 1 and leaf_is_endpoint)
    )
    problems.extend(_signature_explanations(extended_search, dead_end))
    problems.extend(_partial_path_problems(dead_end, now, hostname, leaf_is_endpoint))
    problems.extend(expiring_soon([link.cert for link in dead_end], now, warn_days, has_leaf=leaf_is_endpoint))
    return Diagnosis(dead_end, tuple(problems), False, False, frozenset(related), tuple(notes))


_LAST_STORE: list[tuple[tuple[CertInfo, ...], tuple[Link, ...]]] = []


def _store_links(store: tuple[CertInfo, ...]) -> tuple[Link, ...]:
    """Links for the trusted root store, made once per store (every broken connection asks for them)."""
    if _LAST_STORE and _LAST_STORE[0][0] is store:
        return _LAST_STORE[0][1]
    links = tuple(Link(c, Source.STORE) for c in store)
    _LAST_STORE[:] = [(store, links)]
    return links


def _partial_path_problems(path: Path, now: datetime, hostname: str | None, leaf_is_endpoint: bool) -> list[Problem]:
    """Validity problems of the certificates we have on a path that does not reach a root."""
    certs = [link.cert for link in path]
    # The top's issuer is unknown, so the top is checked the way a path's last certificate is. A
    # lone leaf is then only faulted for what is wrong with it whatever its issuer (an unreadable
    # extension or name): that stays wrong once the missing intermediate is added.
    return validity_problems(certs, now, hostname=hostname, leaf_is_endpoint=leaf_is_endpoint)


def _errors(problems: Sequence[Problem]) -> bool:
    return any(p.severity is Severity.ERROR for p in problems)


def _is_missing(link: Link) -> bool:
    return link.source is not Source.BUNDLE or link.hidden


def _rank(path: Path, problems: Sequence[Problem]) -> tuple[int, int, int, int, float]:
    """Valid first, then fewest links missing from the bundle, fewest problems, shortest, latest expiry."""
    return (
        1 if _errors(problems) else 0,
        sum(_is_missing(link) for link in path[1:]),
        len(problems),
        len(path),
        -min(link.cert.not_after.timestamp() for link in path),
    )


def _missing_links(path: Path, store_name: str) -> list[Problem]:
    out = []
    for position in range(1, len(path)):
        link = path[position]
        if not _is_missing(link):
            continue
        child = path[position - 1].cert
        cert = link.cert
        is_root = position == len(path) - 1 and is_self_signed(cert)
        code = Code.MISSING_ROOT if is_root else Code.MISSING_INTERMEDIATE
        word = "root" if is_root else "intermediate"
        if link.hidden:
            out.append(
                Problem(
                    Code.FORMAT_NONSTANDARD,
                    Severity.ERROR,
                    f"{word} {cert.subject} is in the bundle, but in a block that OpenSSL "
                    "and the JVM would not read; rewrite the bundle as plain PEM",
                    cert.subject,
                )
            )
            continue
        where = {
            Source.ENDPOINT: "the endpoint presents it",
            Source.STORE: f"it is in {store_name}",
            Source.AIA: "it was fetched from the issuer's AIA URL",
        }.get(link.source, "")
        out.append(
            Problem(
                code,
                Severity.ERROR,
                f"the bundle lacks the {word} {cert.subject} (issuer of {child.subject}{_child_hints(child)}); {where}",
                cert.subject,
            )
        )
    return out


def _child_hints(child: CertInfo) -> str:
    hints = []
    if child.aki:
        hints.append(f"key id {child.aki.hex(':')}")
    if child.aia_ca_issuers:
        hints.append(f"AIA {child.aia_ca_issuers[0]}")
    return ", " + ", ".join(hints) if hints else ""


def _unknown_issuer(child: CertInfo, store_name: str, *, is_leaf: bool) -> Problem:
    """The issuer of `child` is nowhere: not in the bundle, the presented chain or the store."""
    key = f", key id {child.aki.hex(':')}" if child.aki else ""
    aia = f"; its AIA URL is {child.aia_ca_issuers[0]}" if child.aia_ca_issuers else "; it has no AIA URL"
    if is_leaf:
        code, word, hint = Code.MISSING_INTERMEDIATE, "intermediate", "the CA that issued it"
    else:
        # An intermediate's unknown issuer is most often a private root; say that we are guessing.
        code, word, hint = Code.MISSING_ROOT, "root", "a root, or another intermediate"
    return Problem(
        code,
        Severity.ERROR,
        f"the bundle lacks the {word} that issued {child.subject}: issuer {child.issuer}{key}"
        f" ({hint}) was found neither in the bundle nor in the chain the endpoint presents nor in {store_name}{aia}",
        child.issuer,
    )


def _signature_explanations(search: Search, dead_end: Path) -> list[Problem]:
    top = dead_end[-1].cert
    return [
        Problem(
            Code.PATH_INVALID,
            Severity.ERROR,
            f"{candidate.subject} has the issuer's name but {why}",
            candidate.subject,
        )
        for child, candidate, why in search.bad_signatures
        if child == top
    ]


def _path_notes(chosen: Path, others: Sequence[tuple[Path, list[Problem]]]) -> list[str]:
    names = " -> ".join(link.cert.subject for link in chosen)
    notes = [f"path: {names}"]
    on_chosen = {link.cert.subject: link.cert.sha256 for link in chosen}
    for path, problems in others:
        if path == chosen:
            continue
        # Named by everything above the leaf: two paths may end in the same root. A certificate
        # with the name of another one on the chosen path (an expired copy, a cross-sign) gets
        # its digest, so the two can be told apart.
        via = " -> ".join(_named(link, on_chosen) for link in path[1:])
        reason = next((p.message for p in problems if p.severity is Severity.ERROR), "valid")
        note = f"alternative path via {via} not chosen ({reason})"
        if note not in notes:
            notes.append(note)
    return notes


def _named(link: Link, on_chosen: dict[str, str] | None = None) -> str:
    if on_chosen and on_chosen.get(link.cert.subject, link.cert.sha256) != link.cert.sha256:
        return f"{_named(link)} [sha256 {link.cert.short_id}]"
    if link.hidden:
        return link.cert.subject + " (in a bundle block OpenSSL and the JVM would not read)"
    where = {Source.ENDPOINT: " (as the endpoint presents it)", Source.STORE: " (from the root store)"}
    return link.cert.subject + where.get(link.source, "")
