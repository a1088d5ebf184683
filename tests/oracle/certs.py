"""A small certificate builder for the oracle cases: every extension explicit and overridable by type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chainwarden import pkigen

DAY = dt.timedelta(days=1)
# The validation time every oracle is given (whole seconds: `openssl verify -attime` takes no fraction).
NOW = pkigen.EPOCH + dt.timedelta(hours=12)
HOST = "erp.example.test"

# An override of one extension: (value, critical), or None to leave it out.
Override = tuple[x509.ExtensionType, bool] | None


@dataclass(frozen=True)
class Cert:
    cert: x509.Certificate
    key: Any

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def key_usage(**flags: bool) -> x509.KeyUsage:
    names = (
        "digital_signature content_commitment key_encipherment data_encipherment key_agreement "
        "key_cert_sign crl_sign encipher_only decipher_only"
    ).split()
    unknown = set(flags) - set(names)
    assert not unknown, unknown
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


CA_KEY_USAGE = key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
LEAF_KEY_USAGE = key_usage(digital_signature=True, key_encipherment=True)


def name(common_name: str, org: str = "Oracle Test") -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def new_key(kind: str) -> Any:
    return pkigen.new_key("rsa") if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def issue(
    subject: x509.Name,
    issuer: Cert | None,
    *,
    ca: bool,
    kind: str = "ec",
    hosts: Sequence[str] = (HOST,),
    issuer_name: x509.Name | None = None,
    not_before: dt.datetime = NOW - 30 * DAY,
    not_after: dt.datetime = NOW + 300 * DAY,
    extensions: Mapping[type[x509.ExtensionType], Override] | None = None,
    mark_critical: Sequence[type[x509.ExtensionType]] = (),
) -> Cert:
    """A CA (`ca`) or server certificate signed by `issuer` (None: self-signed), with the usual
    extensions; `extensions` replaces (or, with None, drops) any of them by type and adds new ones;
    `mark_critical` marks the usual ones of these types critical. `issuer_name` writes another
    issuer name than the signer's subject (for name-matching cases)."""
    key = new_key(kind)
    signer = issuer.key if issuer else key
    usual: dict[type[x509.ExtensionType], Override] = {
        x509.BasicConstraints: (x509.BasicConstraints(ca=ca, path_length=None), True),
        x509.KeyUsage: (CA_KEY_USAGE if ca else LEAF_KEY_USAGE, True),
    }
    if not ca:
        usual[x509.ExtendedKeyUsage] = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        usual[x509.SubjectAlternativeName] = (x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
    usual[x509.SubjectKeyIdentifier] = (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    if issuer is not None:
        usual[x509.AuthorityKeyIdentifier] = (
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            False,
        )
    usual.update(extensions or {})
    for kind_of in mark_critical:
        value = usual[kind_of]
        assert value is not None, kind_of
        usual[kind_of] = (value[0], True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or (issuer.cert.subject if issuer else subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for override in usual.values():
        if override is not None:
            builder = builder.add_extension(*override)
    return Cert(builder.sign(signer, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    """root -> issuing CA -> leaf for HOST."""

    root: Cert
    inter: Cert
    leaf: Cert

    @property
    def bundle(self) -> bytes:
        """The usual complete bundle: the issuing CA, then the root."""
        return pem(self.inter, self.root)


def pki(
    *,
    kind: str = "ec",
    root: Mapping[str, Any] | None = None,
    inter: Mapping[str, Any] | None = None,
    leaf: Mapping[str, Any] | None = None,
    root_cert: Cert | None = None,
) -> Pki:
    """A three-tier PKI; `root`, `inter` and `leaf` are keyword arguments for `issue` (e.g. a `subject`);
    `root_cert` replaces the self-signed root altogether."""
    top = root_cert or issue(name("Oracle Root CA"), None, ca=True, kind=kind, **(root or {}))
    inter_kw = {"subject": name("Oracle Issuing CA"), **(inter or {})}
    issuing = issue(issuer=top, ca=True, kind=kind, **inter_kw)
    leaf_kw = {"subject": x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), **(leaf or {})}
    return Pki(top, issuing, issue(issuer=issuing, ca=False, kind=kind, **leaf_kw))


def pem(*certs: Cert) -> bytes:
    return b"".join(c.pem for c in certs)


def critical(extension: x509.ExtensionType) -> dict[type[x509.ExtensionType], Override]:
    """An `extensions` override adding (or replacing) one extension, marked critical."""
    return {type(extension): (extension, True)}
