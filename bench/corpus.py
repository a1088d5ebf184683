"""The benchmark corpus, generated once per size and cached under bench/.corpus/ (git-ignored).

A corpus of N connections is what a large Windchill+ estate would hand chainwarden:

* connection JSONs of 500 connections each (`site/connections-NN.json`), every connection with its
  own endpoint (host:port) and a `server_cert` bundle under `site/pki/` (one folder, as in the README);
* a dozen CA hierarchies, RSA-2048 and ECDSA P-256, whose chains are 2, 3 or 4 certificates long
  (leaf + root, leaf + issuing CA + root, leaf + issuing CA + policy CA + root), some roots with
  two issuing CAs;
* shared bundles (one per hierarchy, and two multi-hierarchy "trust bundles") used by about 40% of
  the connections, and per-connection bundles (intermediates then root, 10% with the leaf appended)
  for the others;
* the last chain each endpoint presented (leaf + intermediates), stored exactly as the daemon
  stores it (`ChainCache.store` under `state/chains/`), so `[verify] probe = false` evaluates every
  connection against its cached leaf;
* about 5% broken connections, cycling through the problem codes: missing_intermediate,
  missing_root, expired, expiring_soon, hostname_mismatch, wrong_order, duplicate_certificate,
  format_nonstandard, private_key_in_bundle, bundle_unreadable, path_invalid (a leaf for
  clientAuth only), unrelated_certificate, unused_expired_certificate and endpoint_not_verified (no cached chain).

Every leaf is a distinct certificate (its own host name, serial number and signature); RSA leaf
keys come from pkigen's pool of 8 keys, CA keys are all fresh.

`manifest.json` lists every connection (file, name, endpoint, bundle, cached chain, what is broken)
for the floor loop, the openssl loop and the change-latency figure.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID

from chainwarden import pkigen
from chainwarden.chaincache import ChainCache
from chainwarden.pkigen import Issued

CORPUS_VERSION = 3
MAX_AGE = timedelta(days=7)  # validity windows are relative to generation; regenerate before they drift
CONNECTIONS_PER_FILE = 500
BROKEN_EVERY = 20  # one connection in 20 (5%) is broken
SHARED_SHARE = 0.4
LEAF_IN_BUNDLE_SHARE = 0.1
CACHE_ROOT = Path(__file__).resolve().parent / ".corpus"

SERVICES = ("erp", "material", "pricing", "plm", "mes", "crm", "hr", "shipping", "supplier", "billing", "qms", "docs")

# Broken kinds, in the order they are handed out; the ones marked True need an intermediate (depth >= 3).
BREAKS: tuple[tuple[str, bool], ...] = (
    ("missing_intermediate", True),
    ("missing_root", True),
    ("expired", False),
    ("hostname_mismatch", False),
    ("wrong_order", True),
    ("duplicate_certificate", False),
    ("format_nonstandard", False),
    ("private_key_in_bundle", False),
    ("bundle_unreadable", False),
    ("path_invalid", False),
    ("unrelated_certificate", False),
    ("unused_expired_certificate", True),
    ("expiring_soon", False),
    ("endpoint_not_verified", False),
)


@dataclass(frozen=True)
class HierarchySpec:
    slug: str
    label: str
    kind: pkigen.KeyKind
    depth: int  # certificates in the full chain, leaf and root included
    issuing: int  # issuing CAs under the root (or under the policy CA)
    weight: int
    domain: str


HIERARCHIES: tuple[HierarchySpec, ...] = (
    HierarchySpec("global-rsa", "Bench Global RSA", "rsa", 3, 2, 22, "global.bench.test"),
    HierarchySpec("global-ecc", "Bench Global ECC", "ec", 3, 2, 14, "global-ecc.bench.test"),
    HierarchySpec("cloud-rsa", "Bench Cloud RSA", "rsa", 3, 1, 10, "cloud.bench.test"),
    HierarchySpec("cloud-ecc", "Bench Cloud ECC", "ec", 3, 1, 6, "cloud-ecc.bench.test"),
    HierarchySpec("partner-rsa", "Bench Partner RSA", "rsa", 3, 1, 8, "partner.bench.test"),
    HierarchySpec("partner-ecc", "Bench Partner ECC", "ec", 3, 1, 4, "partner-ecc.bench.test"),
    HierarchySpec("corp-rsa", "Bench Corp Internal RSA", "rsa", 4, 2, 10, "corp.bench.test"),
    HierarchySpec("corp-ecc", "Bench Corp Internal ECC", "ec", 4, 1, 5, "corp-ecc.bench.test"),
    HierarchySpec("eu-rsa", "Bench EU Qualified RSA", "rsa", 4, 1, 5, "eu.bench.test"),
    HierarchySpec("legacy-rsa", "Bench Legacy Private RSA", "rsa", 2, 1, 8, "legacy.bench.test"),
    HierarchySpec("device-ecc", "Bench Device ECC", "ec", 2, 1, 4, "device.bench.test"),
    HierarchySpec("lab-rsa", "Bench Lab RSA", "rsa", 3, 1, 4, "lab.bench.test"),
)

# Multi-hierarchy trust bundles (shared by connections of every hierarchy in them).
MULTI_BUNDLES: dict[str, tuple[str, ...]] = {
    "corp-trust-bundle.pem": ("corp-rsa", "corp-ecc", "legacy-rsa"),
    "partner-trust-bundle.pem": ("partner-rsa", "partner-ecc"),
}


@dataclass
class Hierarchy:
    spec: HierarchySpec
    root: Issued
    # For each issuing CA: the CA certificates from it up to (not including) the root.
    above: list[list[Issued]]
    expired_copies: dict[int, Issued]

    def cas(self) -> list[Issued]:
        """Every CA certificate of the hierarchy, intermediates nearest the leaves first, root last."""
        seen: dict[bytes, Issued] = {}
        for layer in range(max(len(chain) for chain in self.above)):
            for chain in self.above:
                if layer < len(chain):
                    seen.setdefault(chain[layer].der, chain[layer])
        return [*seen.values(), self.root]


@dataclass(frozen=True)
class Corpus:
    """A generated corpus on disk."""

    n: int
    directory: Path  # holds site/, state/, manifest.json, meta.json

    @property
    def site(self) -> Path:
        return self.directory / "site"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / "manifest.json").read_text())
        return data

    def connection_files(self, base: Path | None = None) -> list[Path]:
        site = (base or self.directory) / "site"
        return sorted(site.glob("connections-*.json"))


def corpus(n: int, *, log: Any = print, regenerate: bool = False) -> Corpus:
    """The corpus of `n` connections, generated now unless a fresh enough one is cached."""
    directory = CACHE_ROOT / f"n{n}"
    meta_file = directory / "meta.json"
    if not regenerate and meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
            fresh = datetime.now(UTC) - datetime.fromisoformat(meta["created"]) < MAX_AGE
            if meta.get("version") == CORPUS_VERSION and meta.get("n") == n and fresh:
                return Corpus(n, directory)
        except (ValueError, KeyError, OSError):
            pass
    started = time.monotonic()
    log(f"corpus: generating {n} connections under {directory} (once; cached for {MAX_AGE.days} days)")
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _generate(n, staging, seed=n)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    log(f"corpus: {n} connections generated in {time.monotonic() - started:.1f} s")
    return Corpus(n, directory)


def _build_hierarchy(spec: HierarchySpec, now: datetime) -> Hierarchy:
    def key() -> pkigen.PrivateKey:
        return pkigen.new_key(spec.kind, fresh=True)

    org = spec.label.split(" ", 2)[1] + " Trust Services"
    root = pkigen.make_root(
        f"{spec.label} Root CA",
        kind=spec.kind,
        key=key(),
        org=org,
        not_before=now - timedelta(days=3650),
        not_after=now + timedelta(days=7300),
    )
    above: list[list[Issued]] = []
    if spec.depth == 2:
        above = [[]]
    elif spec.depth == 3:
        for number in range(spec.issuing):
            issuing = pkigen.make_intermediate(
                f"{spec.label} TLS Issuing CA {number + 1}",
                root,
                kind=spec.kind,
                key=key(),
                org=org,
                aia_url=f"http://pki.{spec.domain}/root.der",
                not_before=now - timedelta(days=700),
                not_after=now + timedelta(days=1800),
            )
            above.append([issuing])
    else:
        policy = pkigen.make_intermediate(
            f"{spec.label} Policy CA",
            root,
            kind=spec.kind,
            key=key(),
            org=org,
            path_length=1,
            aia_url=f"http://pki.{spec.domain}/root.der",
            not_before=now - timedelta(days=1500),
            not_after=now + timedelta(days=3000),
        )
        for number in range(spec.issuing):
            issuing = pkigen.make_intermediate(
                f"{spec.label} TLS Issuing CA {number + 1}",
                policy,
                kind=spec.kind,
                key=key(),
                org=org,
                aia_url=f"http://pki.{spec.domain}/policy.der",
                not_before=now - timedelta(days=700),
                not_after=now + timedelta(days=1800),
            )
            above.append([issuing, policy])
    return Hierarchy(spec, root, above, {})


def _expired_copy(h: Hierarchy, which: int, now: datetime) -> Issued:
    """The issuing CA's previous certificate: same name and key, expired (a lingering old copy)."""
    if which not in h.expired_copies:
        real = h.above[which][0]
        parent = h.above[which][1] if len(h.above[which]) > 1 else h.root
        h.expired_copies[which] = pkigen.make_intermediate(
            real.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            parent,
            kind=h.spec.kind,
            key=real.key,
            org=real.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value,
            not_before=now - timedelta(days=2000),
            not_after=now - timedelta(days=40),
        )
    return h.expired_copies[which]


def _pem(items: list[Issued]) -> bytes:
    return pkigen.pem_bundle(*items)


def _generate(n: int, directory: Path, *, seed: int) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    site = directory / "site"
    pki = site / "pki"
    pki.mkdir(parents=True)
    cache = ChainCache(directory / "state" / "chains")
    hierarchies = {spec.slug: _build_hierarchy(spec, now) for spec in HIERARCHIES}
    slugs = [spec.slug for spec in HIERARCHIES]
    weights = [spec.weight for spec in HIERARCHIES]
    deep = [spec.slug for spec in HIERARCHIES if spec.depth >= 3]

    shared_for: dict[str, list[str]] = {slug: [f"shared-{slug}-chain.pem"] for slug in slugs}
    for bundle_name, members in MULTI_BUNDLES.items():
        (pki / bundle_name).write_bytes(b"".join(_pem(hierarchies[m].cas()) for m in members))
        for member in members:
            shared_for[member].append(bundle_name)
    for slug, h in hierarchies.items():
        (pki / f"shared-{slug}-chain.pem").write_bytes(_pem(h.cas()))

    entries: list[dict[str, Any]] = []
    documents: list[dict[str, Any]] = []
    break_turn = 0
    for index in range(n):
        broken = index % BROKEN_EVERY == BROKEN_EVERY // 2
        kind = "ok"
        slug = rng.choices(slugs, weights)[0]
        if broken:
            kind, needs_intermediate = BREAKS[break_turn % len(BREAKS)]
            break_turn += 1
            if needs_intermediate and slug not in deep:
                slug = rng.choice(deep)
        h = hierarchies[slug]
        which = rng.randrange(len(h.above))
        issuer = h.above[which][0] if h.above[which] else h.root
        service = SERVICES[index % len(SERVICES)]
        name = f"{service}_{index:05d}"
        host = f"{service}-{index:05d}.{h.spec.domain}"
        port = 8443 if rng.random() < 0.2 else 443
        leaf_days = {"expired": -5, "expiring_soon": 20}.get(kind, 200 + rng.randrange(500))
        leaf = pkigen.make_leaf(
            [f"other-{index:05d}.{h.spec.domain}" if kind == "hostname_mismatch" else host],
            issuer,
            kind=h.spec.kind,
            aia_url=f"http://pki.{h.spec.domain}/issuing-{which + 1}.der" if h.above[which] else None,
            not_before=now - timedelta(days=400 if kind == "expired" else 30 + rng.randrange(300)),
            not_after=now + timedelta(days=leaf_days),
            server_auth=kind != "path_invalid",  # a client certificate deployed on a server
            client_auth=kind == "path_invalid",
        )
        intermediates = list(h.above[which])
        normal = [*intermediates, h.root]
        shared = kind == "ok" and rng.random() < SHARED_SHARE
        with_leaf = False
        if shared:
            bundle_name = rng.choice(shared_for[slug])
        else:
            bundle_name = f"{name.replace('_', '-')}-chain.pem"
            content: bytes
            if kind == "missing_intermediate":
                content = _pem([h.root])
            elif kind == "missing_root":
                content = _pem(intermediates)
            elif kind == "wrong_order":
                content = _pem([h.root, *intermediates])
            elif kind == "duplicate_certificate":
                content = _pem([*normal, normal[0]])
            elif kind == "format_nonstandard":
                content = b"\xef\xbb\xbf" + _pem(normal).replace(b"\n", b"\r\n")
            elif kind == "private_key_in_bundle":
                content = _pem(normal) + leaf.key_pem()
            elif kind == "bundle_unreadable":
                content = b"# paste the endpoint's chain here\n"
            elif kind == "unrelated_certificate":
                other = hierarchies[slugs[(slugs.index(slug) + 1) % len(slugs)]]
                content = _pem([*normal, other.root])
            elif kind == "unused_expired_certificate":
                content = _pem([*normal, _expired_copy(h, which, now)])
            else:
                with_leaf = kind == "ok" and rng.random() < LEAF_IN_BUNDLE_SHARE
                content = _pem([*normal, leaf] if with_leaf else normal)
            (pki / bundle_name).write_bytes(content)
        cache_file = None
        if kind != "endpoint_not_verified":
            presented = (leaf.cert, *(ca.cert for ca in intermediates))
            cache.store(host, port, presented)
            cache_file = str(cache._file(host, port).relative_to(directory))
        file_number = index // CONNECTIONS_PER_FILE
        if file_number == len(documents):
            documents.append(
                {
                    "blob_sas_url": "https://example.invalid/sas-placeholder",
                    "public_key_for_encrypting_custom_secrets": "keys/ptc-public.pem",
                    "apply_at": (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                    "external_connections": {},
                }
            )
        documents[file_number]["external_connections"][name] = {
            "baseurl": f"https://{host}{'' if port == 443 else f':{port}'}/api/v1",
            "url_fragments": {"status": "/status", "items": "/items"},
            "secrets": {"bearer_token": "Bearer bench-not-a-real-token"},
            "server_cert": f"pki/{bundle_name}",
        }
        entries.append(
            {
                "file": f"site/connections-{file_number:02d}.json",
                "name": name,
                "host": host,
                "port": port,
                "bundle": f"site/pki/{bundle_name}",
                "shared": shared,
                "cache": cache_file,
                "kind": kind,
                "hierarchy": slug,
                "depth": h.spec.depth,
                "key": h.spec.kind,
                # Toggled between complete and root-only by the change-latency figure.
                "toggle": kind == "ok" and not shared and not with_leaf and h.spec.depth >= 3,
            }
        )
    for number, document in enumerate(documents):
        (site / f"connections-{number:02d}.json").write_text(json.dumps(document, indent=2) + "\n")
    (directory / "manifest.json").write_text(json.dumps({"n": n, "connections": entries}) + "\n")
    meta = {"version": CORPUS_VERSION, "n": n, "created": now.isoformat()}
    (directory / "meta.json").write_text(json.dumps(meta) + "\n")


# ------------------------------------------------------------------------------------------------
# The TLS endpoints of the probing figure


@dataclass(frozen=True)
class ProbeCorpus:
    k: int
    directory: Path  # endpoint-NNN-chain.pem (leaf + intermediate) and endpoint-NNN-key.pem

    def files(self) -> list[tuple[Path, Path]]:
        return [
            (self.directory / f"endpoint-{i:03d}-chain.pem", self.directory / f"endpoint-{i:03d}-key.pem")
            for i in range(self.k)
        ]


def probe_corpus(k: int, *, log: Any = print, regenerate: bool = False) -> ProbeCorpus:
    """K endpoint identities (half RSA-2048, half ECDSA P-256, each a distinct leaf for localhost)."""
    directory = CACHE_ROOT / f"probe{k}"
    meta_file = directory / "meta.json"
    if not regenerate and meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
            fresh = datetime.now(UTC) - datetime.fromisoformat(meta["created"]) < MAX_AGE
            if meta.get("version") == CORPUS_VERSION and fresh:
                return ProbeCorpus(k, directory)
        except (ValueError, KeyError, OSError):
            pass
    log(f"corpus: generating {k} TLS endpoint identities under {directory}")
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)
    cas = {spec.kind: _build_hierarchy(spec, now) for spec in (HIERARCHIES[0], HIERARCHIES[1])}
    for i in range(k):
        h = cas["rsa" if i % 2 == 0 else "ec"]
        issuing = h.above[i % len(h.above)][0]
        leaf = pkigen.make_leaf(
            ["localhost", "127.0.0.1"],
            issuing,
            kind=h.spec.kind,
            not_before=now - timedelta(days=30),
            not_after=now + timedelta(days=300),
        )
        (staging / f"endpoint-{i:03d}-chain.pem").write_bytes(_pem([leaf, issuing]))
        key_file = staging / f"endpoint-{i:03d}-key.pem"
        key_file.write_bytes(leaf.key_pem())
        key_file.chmod(0o600)
    (staging / "meta.json").write_text(json.dumps({"version": CORPUS_VERSION, "k": k, "created": now.isoformat()}))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return ProbeCorpus(k, directory)
