"""Generate realistic test PKIs (roots, intermediates, cross-signs, leaves) for the demo, tests and bench."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KeyKind = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DAY = dt.timedelta(days=1)
# Certificates are placed around today, so live endpoints (demo, daemon tests) are valid now;
# tests that pin the clock do so relative to EPOCH.
EPOCH = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (so it can sign or serve TLS)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


_RSA_POOL: list[rsa.RSAPrivateKey] = []


def new_key(kind: KeyKind = "rsa", *, fresh: bool = False) -> PrivateKey:
    """A new key; RSA keys come from a small pool unless `fresh`, since generation is slow."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if fresh or len(_RSA_POOL) < 8:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if not fresh:
            _RSA_POOL.append(key)
        return key
    new_key.counter = getattr(new_key, "counter", 0) + 1  # type: ignore[attr-defined]
    return _RSA_POOL[new_key.counter % len(_RSA_POOL)]  # type: ignore[attr-defined]


def name(common_name: str, org: str = "Chainwarden Demo") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign_alg(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else hashes.SHA256()


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: object,
    not_before: dt.datetime,
    not_after: dt.datetime,
    serial: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _ca_extensions(
    builder: x509.CertificateBuilder,
    subject_key: PrivateKey,
    issuer_key: PrivateKey,
    path_length: int | None,
    is_ca: bool = True,
    key_cert_sign: bool = True,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), False)
    )


def _aki(builder: x509.CertificateBuilder, issuer_key: PrivateKey) -> x509.CertificateBuilder:
    return builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)


def _aia(builder: x509.CertificateBuilder, url: str | None) -> x509.CertificateBuilder:
    if not url:
        return builder
    return builder.add_extension(
        x509.AuthorityInformationAccess(
            [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))]
        ),
        False,
    )


def make_root(
    common_name: str,
    *,
    kind: KeyKind = "rsa",
    key: PrivateKey | None = None,
    not_before: dt.datetime = EPOCH - 3650 * DAY,
    not_after: dt.datetime = EPOCH + 7300 * DAY,
    org: str = "Chainwarden Demo",
) -> Issued:
    key = key or new_key(kind)
    subject = name(common_name, org)
    builder = _builder(subject, subject, key.public_key(), not_before, not_after, None)
    builder = _ca_extensions(builder, key, key, None)
    return Issued(builder.sign(key, _sign_alg(key)), key)


def make_intermediate(
    common_name: str,
    issuer: Issued,
    *,
    kind: KeyKind = "rsa",
    key: PrivateKey | None = None,
    aia_url: str | None = None,
    path_length: int | None = 0,
    not_before: dt.datetime = EPOCH - 365 * DAY,
    not_after: dt.datetime = EPOCH + 1825 * DAY,
    is_ca: bool = True,
    key_cert_sign: bool = True,
    org: str = "Chainwarden Demo",
) -> Issued:
    key = key or new_key(kind)
    builder = _builder(name(common_name, org), issuer.cert.subject, key.public_key(), not_before, not_after, None)
    builder = _ca_extensions(builder, key, issuer.key, path_length, is_ca, key_cert_sign)
    builder = _aki(builder, issuer.key)
    builder = _aia(builder, aia_url)
    return Issued(builder.sign(issuer.key, _sign_alg(issuer.key)), key)


def cross_sign(
    subject: Issued,
    issuer: Issued,
    *,
    aia_url: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int | None = None,
) -> Issued:
    """The same subject and key as `subject`, certified by `issuer` (e.g. ISRG X1 by DST X3)."""
    builder = _builder(
        subject.cert.subject,
        issuer.cert.subject,
        subject.key.public_key(),
        not_before or subject.cert.not_valid_before_utc,
        not_after or subject.cert.not_valid_after_utc,
        None,
    )
    builder = _ca_extensions(builder, subject.key, issuer.key, path_length)
    builder = _aki(builder, issuer.key)
    builder = _aia(builder, aia_url)
    return Issued(builder.sign(issuer.key, _sign_alg(issuer.key)), subject.key)


def make_leaf(
    hosts: list[str],
    issuer: Issued,
    *,
    kind: KeyKind = "rsa",
    aia_url: str | None = None,
    not_before: dt.datetime = EPOCH - 30 * DAY,
    not_after: dt.datetime = EPOCH + 365 * DAY,
    common_name: str | None = None,
    server_auth: bool = True,
    client_auth: bool = False,
) -> Issued:
    key = new_key(kind)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cn = common_name or (hosts[0] if hosts else "leaf")
    builder = _builder(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        issuer.cert.subject,
        key.public_key(),
        not_before,
        not_after,
        None,
    )
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    usages = []
    if server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    builder = _aki(builder, issuer.key)
    builder = _aia(builder, aia_url)
    return Issued(builder.sign(issuer.key, _sign_alg(issuer.key)), key)


def custom_cert(
    subject: x509.Name,
    issuer: Issued | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    *,
    kind: KeyKind = "ec",
    not_before: dt.datetime = EPOCH - DAY,
    not_after: dt.datetime = EPOCH + 90 * DAY,
    hash_alg: hashes.SHA1 | hashes.SHA256 | hashes.SHA384 | None = None,
) -> Issued:
    """A certificate built exactly as told (`issuer` None: self-signed), with no extension added
    implicitly: for tests of unusual shapes (missing AKI, critical SAN, name constraints...)."""
    key = new_key(kind)
    signer_key = issuer.key if issuer else key
    builder = _builder(
        subject, issuer.cert.subject if issuer else subject, key.public_key(), not_before, not_after, None
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return Issued(builder.sign(signer_key, hash_alg or hashes.SHA256()), key)  # type: ignore[arg-type]


def pem_bundle(*items: Issued | x509.Certificate) -> bytes:
    out = b""
    for item in items:
        cert = item.cert if isinstance(item, Issued) else item
        out += cert.public_bytes(serialization.Encoding.PEM)
    return out


@dataclass(frozen=True)
class ThreeTier:
    """root -> intermediate -> leaf, the shape most public endpoints present."""

    root: Issued
    intermediate: Issued
    leaf: Issued


def three_tier(
    host: str = "erp.example.test",
    *,
    kind: KeyKind = "rsa",
    label: str = "Demo",
    aia_base: str | None = None,
    org: str = "Chainwarden Demo",
) -> ThreeTier:
    root = make_root(f"{label} Root CA", kind=kind, org=org)
    inter = make_intermediate(
        f"{label} Issuing CA 1",
        root,
        kind=kind,
        aia_url=f"{aia_base}/root.der" if aia_base else None,
        org=org,
    )
    leaf = make_leaf([host], inter, kind=kind, aia_url=f"{aia_base}/issuing.der" if aia_base else None)
    return ThreeTier(root, inter, leaf)
