"""Build the corpus into a folder: bundles, one shared connection JSON, and the JSON files of their own.

Layout under the root folder:

    conns/corpus.json      the healthy connection plus every bundle and connection-entry case
    conns/<case>.json      each connection-file case (the daemon watches conns/)
    elsewhere/<case>.json  connection-file cases only `check` can be given (not *.json files)
    pki/<case>.pem         each bundle case
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import Encoding

from chainwarden import pkigen

HOST = "erp.example.test"
BASEURL = f"https://{HOST}:8443"
SHARED = "corpus.json"
HEALTHY = "healthy"
# A secret in every connection: it must never reach a report, a log line or a metric.
CANARY = "Bearer corpus-canary-5c1d"


class Kit:
    """One fresh PKI and the byte-level tools the cases build their inputs with."""

    def __init__(self, root: Path, pki: pkigen.ThreeTier, other: pkigen.Issued) -> None:
        self.root = root
        self.pki = pki
        self.other = other  # a root no connection needs (for blocks that must not matter)
        self.conns = root / "conns"
        self.elsewhere = root / "elsewhere"
        self.bundles = root / "pki"
        self.healthy_bundle = self.bundles / f"{HEALTHY}.pem"

    # Certificates ----------------------------------------------------------------------------
    @property
    def inter(self) -> bytes:
        return self.pki.intermediate.pem

    @property
    def ca_root(self) -> bytes:
        return self.pki.root.pem

    @property
    def leaf(self) -> bytes:
        return self.pki.leaf.pem

    @property
    def good(self) -> bytes:
        """The documented order: intermediate, root, then the endpoint's own certificate."""
        return self.inter + self.ca_root + self.leaf

    def key(self, encryption: str = "none") -> bytes:
        """The leaf's private key as PEM: "none" (PKCS#8), "pkcs8" (ENCRYPTED), "legacy" (Proc-Type)."""
        key = self.pki.leaf.key
        if encryption == "none":
            return self.pki.leaf.key_pem()
        formats = serialization.PrivateFormat
        form = formats.PKCS8 if encryption == "pkcs8" else formats.TraditionalOpenSSL
        return key.private_bytes(serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"corpus"))

    # Paths -----------------------------------------------------------------------------------
    def bundle_path(self, case: str) -> Path:
        return self.bundles / f"{case}.pem"

    def file_path(self, case: str, *, watched: bool = True, filename: str | None = None) -> Path:
        return (self.conns if watched else self.elsewhere) / (filename or f"{case}.json")


# Byte-level helpers (pure) --------------------------------------------------------------------


def pem_of(der: bytes, label: str = "CERTIFICATE") -> bytes:
    body = base64.b64encode(der)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    tag = label.encode()
    return b"-----BEGIN " + tag + b"-----\n" + lines + b"\n-----END " + tag + b"-----\n"


def relabel(pem: bytes, label: str) -> bytes:
    return pem.replace(b"CERTIFICATE-----", label.encode() + b"-----")


def ber(der: bytes) -> bytes:
    """The same certificate with a non-minimal outer length: BER, not the strict DER parsers want."""
    assert der[:2] == b"\x30\x82", "expected a certificate with a two-byte length"
    return b"\x30\x83\x00" + der[2:]


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = (len(content).bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + len(content).to_bytes(size, "big") + content


def _elements(der: bytes) -> list[bytes]:
    """The complete elements (tag, length, content) inside the DER SEQUENCE `der`."""
    def length_at(at: int) -> tuple[int, int]:
        first = der[at]
        if first < 0x80:
            return first, at + 1
        size = first & 0x7F
        return int.from_bytes(der[at + 1 : at + 1 + size], "big"), at + 1 + size

    _, at = length_at(1)
    out = []
    while at < len(der):
        length, start = length_at(at + 1)
        out.append(der[at : start + length])
        at = start + length
    return out


def odd_name(value_tag: int, value: bytes, oid: bytes = b"\x55\x04\x03") -> bytes:
    """The DER of a Name with one attribute (CN by default) whose value has any tag and bytes: a
    BIT STRING or INTEGER common name, invalid UTF-8 in a UTF8String, ..."""
    attribute = _tlv(0x30, _tlv(0x06, oid) + _tlv(value_tag, value))
    return _tlv(0x30, _tlv(0x31, attribute))


def with_subject(issued: pkigen.Issued, issuer: pkigen.Issued, name_der: bytes) -> bytes:
    """`issued`'s certificate with its subject replaced by `name_der`, signed again by `issuer`:
    a certificate cryptography still loads, with a name no builder would write."""
    der = issued.cert.public_bytes(Encoding.DER)
    tbs, algorithm, _ = _elements(der)
    subject = issued.cert.subject.public_bytes()
    assert tbs.count(subject) == 1, "the subject must be found once in the TBSCertificate"
    new_tbs = _tlv(0x30, b"".join(_elements(tbs)).replace(subject, name_der))
    key, digest = issuer.key, issued.cert.signature_hash_algorithm  # as the algorithm kept says
    assert isinstance(digest, hashes.HashAlgorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(new_tbs, ec.ECDSA(digest))
    else:
        signature = key.sign(new_tbs, padding.PKCS1v15(), digest)  # type: ignore[union-attr, call-arg]
    return _tlv(0x30, new_tbs + algorithm + _tlv(0x03, b"\x00" + signature))


def flatten(pem: bytes, joiner: bytes) -> bytes:
    """Every line break replaced by `joiner` (spaces, or the two characters \\n)."""
    return joiner.join(pem.rstrip(b"\n").split(b"\n")) + b"\n"


def junk(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# File-system builders -------------------------------------------------------------------------


def write_sparse(path: Path, head: bytes, size: int) -> None:
    """A file of `size` bytes that takes no disk space beyond `head` (a hole after it)."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)


def write_streamed(path: Path, parts: Iterable[bytes]) -> None:
    with open(path, "wb") as handle:
        for part in parts:
            handle.write(part)


def symlink_loop(path: Path) -> None:
    partner = path.with_name(path.name + ".loop")
    path.symlink_to(partner.name)
    partner.symlink_to(path.name)


# Connection JSON text -------------------------------------------------------------------------


def connection(bundle: str | Path | None = None, **overrides: object) -> dict[str, object]:
    """A valid connection object using `bundle`; keys that end up None are left out."""
    value: dict[str, object] = {
        "baseurl": BASEURL,
        "url_fragments": {"get_material_number": "/api/material"},
        "secrets": {"bearer_token": CANARY},
        "server_cert": str(bundle) if bundle is not None else None,
    }
    value.update(overrides)
    return {key: item for key, item in value.items() if item is not None}


def dumps(value: object) -> str:
    return json.dumps(value, indent=2)


def connection_file(entries: Iterable[tuple[str, str]], *, head: str = "") -> str:
    """A connection JSON from (name, raw JSON value) pairs; raw text so that keys may repeat."""
    body = ",\n".join(f"    {json.dumps(name)}: {text}" for name, text in entries)
    return "{\n" + head + '  "external_connections": {\n' + body + "\n  }\n}\n"


@dataclass
class Built:
    """Where the corpus was built, and what to give `check` and the daemon."""

    kit: Kit
    shared: Path
    files: dict[str, Path] = field(default_factory=dict)  # connection-file case -> its path

    def paths(self, names: Iterable[str] | None = None) -> list[str]:
        """The shared JSON first, then the connection files of these cases (all without names)."""
        chosen = self.files if names is None else {n: self.files[n] for n in names if n in self.files}
        return [str(self.shared), *(str(p) for p in chosen.values())]


MakeBundle = Callable[[Kit, Path], None]


def build(root: Path, cases: Iterable[object], pki: pkigen.ThreeTier, other: pkigen.Issued) -> Built:
    """Write every case's input under `root` from the given PKI."""
    from .cases import BundleCase, EntryCase, FileCase

    kit = Kit(root, pki, other)
    for folder in (kit.conns, kit.elsewhere, kit.bundles):
        folder.mkdir(parents=True, exist_ok=True)
    kit.healthy_bundle.write_bytes(kit.good)
    entries = [(HEALTHY, dumps(connection(kit.healthy_bundle)))]
    built = Built(kit, kit.conns / SHARED)
    for case in cases:
        if isinstance(case, BundleCase):
            path = kit.bundle_path(case.name)
            case.make(kit, path)
            entries.append((case.name, dumps(connection(path))))
        elif isinstance(case, EntryCase):
            entries.extend(case.make(kit, case.name))
        elif isinstance(case, FileCase):
            path = kit.file_path(case.name, watched=case.watched, filename=case.filename)
            case.make(kit, path)
            built.files[case.name] = path
    built.shared.write_text(connection_file(entries))
    return built
