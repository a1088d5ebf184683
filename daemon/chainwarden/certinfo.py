"""The facts about one certificate that path building needs, extracted once and cached by DER."""

from __future__ import annotations

import copyreg
import hashlib
import ipaddress
import re
import string
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID, PublicKeyAlgorithmOID

from .der import PRINTABLE_STRING, SHORT_NAMES, certificate_parts, name_value_tags, oid_pairs, simple_name

# Extensions that both OpenSSL and the JVM's PKIX validator process when marked critical; any other
# critical one (AIA, key identifiers, issuerAltName, TLS feature, CRL distribution points...) makes
# at least one of them refuse the certificate.
KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    }
)


@dataclass(frozen=True, slots=True)
class Policies:
    """The certificate policy extensions of one certificate (RFC 5280 4.2.1.4-4.2.1.14)."""

    oids: tuple[str, ...] | None  # certificatePolicies; None when absent
    mappings: tuple[tuple[str, str], ...] = ()  # policyMappings: (issuer domain, subject domain)
    require_explicit: int | None = None  # policyConstraints requireExplicitPolicy
    inhibit_mapping: int | None = None  # policyConstraints inhibitPolicyMapping
    inhibit_any: int | None = None  # inhibitAnyPolicy skipCerts
    critical_qualifiers: bool = False  # a critical certificatePolicies with policy qualifiers


@dataclass(frozen=True, slots=True, eq=False)
class CertInfo:
    """A parsed certificate plus the derived facts used by path building and reports."""

    cert: x509.Certificate
    sha256: str
    subject: str
    issuer: str
    subject_key: tuple[tuple[str, str], ...]
    issuer_key: tuple[tuple[str, str], ...]
    ski: bytes | None
    aki: bytes | None
    aia_ca_issuers: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    version: int
    basic_ca: bool | None  # None: no basicConstraints extension
    path_length: int | None
    key_cert_sign: bool | None  # None: no keyUsage extension
    eku: frozenset[str] | None  # dotted OIDs; None: no EKU extension
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    common_names: tuple[str, ...]
    name_constraints: x509.NameConstraints | None
    unknown_critical: tuple[str, ...]
    extension_error: str | None  # an extension cryptography could not decode
    self_issued: bool
    signature_hash: str | None = None  # signature_hash_name(cert), read once
    rsa_bits: int | None = None  # _rsa_key_bits(cert), read once
    name_error: str | None = None  # its subject or issuer name could not be read
    digital_signature: bool | None = None  # None: no keyUsage extension
    # The authorityKeyIdentifier's issuer names (as name keys) and serial number, when it has them.
    aki_issuers: tuple[tuple[tuple[str, str], ...], ...] = ()
    aki_serial: int | None = None
    emails: tuple[str, ...] = ()  # rfc822 names of the SAN, then emailAddress values of the subject
    uris: tuple[str, ...] = ()  # URIs of the SAN
    openssl_refused_tags: tuple[int, ...] = ()  # name value types that make OpenSSL refuse it
    san_count: int = 0  # entries of the SAN, of every kind
    san_kinds: frozenset[str] = frozenset()  # class names of the SAN's GeneralNames ("OtherName", ...)
    san_bad_ips: bool = False  # an iPAddress in the SAN that is no address (wrong length)
    email_not_ia5: bool = False  # an emailAddress of the subject that is not an IA5String
    san_critical: bool = False  # the subjectAltName extension is marked critical
    ns_cert_type: int | None = None  # Netscape certificate type bits (first byte), when present
    policies: Policies | None = None  # certificate policy extensions, when it has any of them

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CertInfo) and other.sha256 == self.sha256

    @property
    def is_ca(self) -> bool:
        return bool(self.basic_ca)

    @property
    def jvm_unparsable(self) -> bool:
        """An empty subject with a non-critical subjectAltName: the JVM's certificate parser refuses it."""
        return not self.subject_key and bool(self.san_count) and not self.san_critical

    @property
    def is_end_entity(self) -> bool:
        """Not a CA: no CA basicConstraints and not a self-issued v1 root."""
        if self.basic_ca is True:
            return False
        return not (self.basic_ca is None and self.self_issued)

    @property
    def short_id(self) -> str:
        return self.sha256[:16]

    def valid_at(self, moment: datetime) -> bool:
        return self.not_before <= moment <= self.not_after


NameKey = tuple[tuple[str, str], ...]  # how names are compared (see name_key)


def name_key(name: x509.Name) -> tuple[tuple[str, str], ...]:
    """Comparison key for names, matching where both OpenSSL and the JVM match them (see value_key).

    The RDN grouping is part of the name: OpenSSL and the JVM never match CN=a+O=b (one RDN) with
    O=b,CN=a (two), even when the key that signed the certificate is the right one. A multi-valued
    RDN is keyed by a marker and its attributes in sorted order (a SET has no order); a name of
    single-valued RDNs keeps the plain form that der-read simple names produce.
    """
    out: list[tuple[str, str]] = []
    for rdn in name.rdns:
        attributes = sorted(_attribute_key(attr) for attr in rdn)
        if len(attributes) > 1:
            out.append(("+", str(len(attributes))))  # no dotted OID is "+"
        out.extend(attributes)
    return tuple(out)


def loose_name_key(name: x509.Name) -> tuple[tuple[str, str], ...]:
    """A key that matches wherever OpenSSL or the JVM might match two names (any string type, case
    folded, any whitespace run folded): for exclusions, where missing a match lets a name through."""
    out: list[tuple[str, str]] = []
    for rdn in name.rdns:
        attributes = sorted(_loose_attribute_key(attr) for attr in rdn)
        if len(attributes) > 1:
            out.append(("+", str(len(attributes))))
        out.extend(attributes)
    return tuple(out)


def _loose_attribute_key(attr: x509.NameAttribute[Any]) -> tuple[str, str]:
    value = attr.value if isinstance(attr.value, str) else attr.value.hex()
    return attr.oid.dotted_string, " ".join(value.split()).casefold()


def _attribute_key(attr: x509.NameAttribute[Any]) -> tuple[str, str]:
    tag = getattr(getattr(attr, "_type", None), "value", None)  # the value's ASN.1 string type
    return value_key(attr.oid.dotted_string, tag, attr.value)


# Only PrintableString and UTF8String values of the attribute types RFC 4514 names by keyword are
# compared loosely by the JVM (its RFC 2253 canonical form; any other value becomes '#' and its
# DER); OpenSSL folds those too. Loosely means here what both do: ASCII case and runs of spaces.
# Anything else must match in type and content, so that no two names match that either rejects.
_UTF8_STRING = 0x0C
_IA5_STRING = 0x16
_FOLDED_TAGS = frozenset({PRINTABLE_STRING, _UTF8_STRING})
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def value_key(dotted: str, tag: int | None, value: str | bytes) -> tuple[str, str]:
    """How one attribute value compares: '=' + folded text, or '#' + its type and exact content."""
    if isinstance(value, bytes):
        return sys.intern(dotted), f"#{tag}:{value.hex()}"
    if tag in _FOLDED_TAGS and dotted in SHORT_NAMES:
        return sys.intern(dotted), "=" + " ".join(part for part in value.split(" ") if part).translate(_ASCII_LOWER)
    return sys.intern(dotted), f"#{tag}:{value}"


# Keyed by the certificate itself: cryptography hashes and compares certificates by their DER,
# without the cost of encoding it again (public_bytes) on every lookup.
_CACHE: dict[x509.Certificate, CertInfo] = {}
_CACHE_LIMIT = 200_000


_CANONICAL: dict[x509.Certificate, x509.Certificate] = {}
_SHARED: dict[object, object] = {}
_T = TypeVar("_T", str, bytes, frozenset[str], tuple[str, ...], tuple[tuple[str, str], ...])


def _shared(value: _T) -> _T:
    """One object for the equal values that the certificates of one issuer repeat (its name, key id, EKUs)."""
    if len(_SHARED) >= _CACHE_LIMIT:
        _SHARED.clear()
    return cast(_T, _SHARED.setdefault(value, value))


def canonical(cert: x509.Certificate) -> x509.Certificate:
    """One object per distinct certificate: the same CA read from thousands of bundles and cached
    chains is then kept once (a parsed certificate costs about 2 KiB)."""
    found = _CANONICAL.get(cert)
    if found is not None:
        return found
    if len(_CANONICAL) >= _CACHE_LIMIT:
        _CANONICAL.clear()
    _CANONICAL[cert] = cert
    return cert


# Parsed certificates by the digest of the exact text they were read from (a PEM body, say): the same
# CA in thousands of bundles and cached chains is then decoded and parsed once, not once per file.
_BY_BLOCK: dict[bytes, x509.Certificate] = {}


def parsed_once(block: bytes, parse: Callable[[bytes], x509.Certificate]) -> x509.Certificate:
    """canonical(parse(block)), parsing each distinct `block` once; errors of `parse` propagate uncached."""
    key = hashlib.sha256(block).digest()
    found = _BY_BLOCK.get(key)
    if found is not None:
        return found
    cert = canonical(parse(block))
    if len(_BY_BLOCK) >= _CACHE_LIMIT:
        _BY_BLOCK.clear()
    _BY_BLOCK[key] = cert
    return cert


def _certificate_from_der(der: bytes) -> x509.Certificate:
    return parsed_once(der, _load_der_quietly)


def _load_der_quietly(der: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a negative serial number, say: reported elsewhere, never printed
        return x509.load_der_x509_certificate(der)


def _reduce_certificate(cert: x509.Certificate) -> tuple[Callable[[bytes], x509.Certificate], tuple[bytes]]:
    return _certificate_from_der, (cert.public_bytes(serialization.Encoding.DER),)


# Certificates travel (from worker processes) as their DER, and arrive as the canonical object.
copyreg.pickle(x509.Certificate, _reduce_certificate)


# The same, by object identity, for the objects the facts hold (so their ids cannot be reused): most
# lookups are of canonical() objects, and hashing a certificate's DER costs more than the rest.
_BY_ID: dict[int, CertInfo] = {}


def describe(cert: x509.Certificate) -> CertInfo:
    """Facts about `cert`, cached by its DER encoding (certificates repeat across bundles)."""
    known = _BY_ID.get(id(cert))
    if known is not None:
        return known
    cached = _CACHE.get(cert)
    if cached is not None:
        return cached
    der = cert.public_bytes(serialization.Encoding.DER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a negative serial number, say: reported elsewhere, never printed
        return _remember(cert, _build(cert, der))


def described_from_der(der: bytes) -> x509.Certificate:
    """canonical() of the certificate encoded as `der`, its facts read from `der` already (for a
    certificate met for the first time, such as an endpoint's leaf, this saves encoding it again)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as above; one filter for the parse and the facts
        cert = canonical(x509.load_der_x509_certificate(der))
        if id(cert) not in _BY_ID and cert not in _CACHE:
            _remember(cert, _build(cert, der))
    return cert


def _remember(cert: x509.Certificate, info: CertInfo) -> CertInfo:
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
        _BY_ID.clear()
    _CACHE[cert] = info
    _BY_ID[id(cert)] = info  # info.cert is cert: alive as long as this entry
    return info


def _scratch_copy(cert: x509.Certificate, der: bytes) -> x509.Certificate:
    """A second parse of `der` to read the facts from: cryptography keeps every name and extension
    object it hands out alive with the certificate (about 6 KiB), and only the facts are kept here."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return cert


def _build(kept: x509.Certificate, der: bytes) -> CertInfo:
    """The facts of `kept` (encoded as `der`); called with cryptography's warnings filtered out."""
    cert = _scratch_copy(kept, der)
    extension_error = None
    unknown_critical: list[str] = []
    try:
        extensions = list(cert.extensions)
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        extensions = []
        extension_error = str(exc)
    for ext in extensions:
        if ext.critical and ext.oid not in KNOWN_EXTENSIONS:
            unknown_critical.append(ext.oid.dotted_string)

    # The first extension of each type, as get_extension_for_class would find it, in one pass.
    by_type: dict[type, object] = {}
    if extension_error is None:
        for ext in extensions:
            by_type.setdefault(type(ext.value), ext.value)

    def get(cls: type) -> object | None:
        return by_type.get(cls)

    bc = get(x509.BasicConstraints)
    ku = get(x509.KeyUsage)
    eku = get(x509.ExtendedKeyUsage)
    san = get(x509.SubjectAlternativeName)
    ski = get(x509.SubjectKeyIdentifier)
    aki = get(x509.AuthorityKeyIdentifier)
    aia = get(x509.AuthorityInformationAccess)
    nc = get(x509.NameConstraints)

    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    san_count, san_kinds, san_bad_ips = 0, frozenset[str](), False
    if isinstance(san, x509.SubjectAlternativeName):
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(
            str(ip)
            for ip in san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        )
        emails = tuple(san.get_values_for_type(x509.RFC822Name))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        san_count = len(san)
        san_kinds = _shared(frozenset(type(general).__name__ for general in san))
        san_bad_ips = len(ips) != len(san.get_values_for_type(x509.IPAddress))
    ca_issuers: tuple[str, ...] = ()
    if isinstance(aia, x509.AuthorityInformationAccess):
        ca_issuers = tuple(
            d.access_location.value
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )
    raw_issuer: bytes | None
    raw_subject: bytes | None
    sha256 = hashlib.sha256(der).hexdigest()
    try:
        tbs, raw_issuer, raw_subject = certificate_parts(der)
    except ValueError:
        raw_issuer = raw_subject = None
    else:
        _remember_tbs(sha256, tbs)
    issuer = _name_facts(raw_issuer, lambda: cert.issuer, keep=True, which="issuer")
    is_ca = isinstance(bc, x509.BasicConstraints) and bc.ca
    subject = (
        issuer
        if raw_subject == raw_issuer
        else _name_facts(raw_subject, lambda: cert.subject, keep=is_ca, which="subject")
    )
    aki_id = aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None
    aki_issuers: tuple[NameKey, ...] = ()
    aki_serial = None
    if isinstance(aki, x509.AuthorityKeyIdentifier):
        aki_serial = aki.authority_cert_serial_number
        aki_issuers = tuple(
            name_key(general.value)
            for general in aki.authority_cert_issuer or ()
            if isinstance(general, x509.DirectoryName)
        )
    return CertInfo(
        cert=kept,
        sha256=sha256,
        subject=subject.display,
        issuer=issuer.display,
        subject_key=subject.key,
        issuer_key=issuer.key,
        ski=ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None,
        aki=_shared(aki_id) if aki_id is not None else None,
        aia_ca_issuers=_shared(ca_issuers),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        version=cert.version.value + 1,
        basic_ca=bc.ca if isinstance(bc, x509.BasicConstraints) else None,
        path_length=bc.path_length if isinstance(bc, x509.BasicConstraints) else None,
        key_cert_sign=ku.key_cert_sign if isinstance(ku, x509.KeyUsage) else None,
        eku=_shared(frozenset(o.dotted_string for o in eku)) if isinstance(eku, x509.ExtendedKeyUsage) else None,
        dns_names=dns,
        ip_addresses=ips,
        common_names=subject.common_names,
        name_constraints=nc if isinstance(nc, x509.NameConstraints) else None,
        unknown_critical=tuple(unknown_critical),
        extension_error=extension_error,
        self_issued=subject.key == issuer.key,
        signature_hash=signature_hash_name(cert),
        rsa_bits=_rsa_key_bits(cert),
        name_error=_name_error(subject, issuer),
        digital_signature=ku.digital_signature if isinstance(ku, x509.KeyUsage) else None,
        aki_issuers=aki_issuers,
        aki_serial=aki_serial,
        emails=emails + subject.emails,
        uris=uris,
        openssl_refused_tags=tuple(sorted(set(subject.refused_tags) | set(issuer.refused_tags))),
        san_count=san_count,
        san_kinds=san_kinds,
        san_bad_ips=san_bad_ips,
        san_critical=any(ext.critical for ext in extensions if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME),
        email_not_ia5=subject.email_not_ia5,
        ns_cert_type=_ns_cert_type(extensions),
        policies=_policies(by_type, extensions),
    )


def _policies(by_type: dict[type, object], extensions: list[x509.Extension[x509.ExtensionType]]) -> Policies | None:
    """The policy extensions, or None without any. policyMappings, which cryptography does not decode,
    is read from its DER; one that cannot be read maps anyPolicy, which fails every path (as it should)."""
    policies = by_type.get(x509.CertificatePolicies)
    constraints = by_type.get(x509.PolicyConstraints)
    inhibit = by_type.get(x509.InhibitAnyPolicy)
    mappings: tuple[tuple[str, str], ...] = ()
    critical_qualifiers = False
    for ext in extensions:
        if (
            ext.oid == ExtensionOID.CERTIFICATE_POLICIES
            and ext.critical
            and isinstance(policies, x509.CertificatePolicies)
        ):
            critical_qualifiers = any(p.policy_qualifiers for p in policies)
        if ext.oid == ExtensionOID.POLICY_MAPPINGS and isinstance(ext.value, x509.UnrecognizedExtension):
            try:
                mappings = tuple(oid_pairs(ext.value.value))
            except ValueError:
                mappings = ((ANY_POLICY, ANY_POLICY),)
    if policies is None and not mappings and constraints is None and inhibit is None:
        return None
    constrained = constraints if isinstance(constraints, x509.PolicyConstraints) else None
    return Policies(
        oids=tuple(p.policy_identifier.dotted_string for p in policies)
        if isinstance(policies, x509.CertificatePolicies)
        else None,
        mappings=mappings,
        require_explicit=constrained.require_explicit_policy if constrained else None,
        inhibit_mapping=constrained.inhibit_policy_mapping if constrained else None,
        inhibit_any=inhibit.skip_certs if isinstance(inhibit, x509.InhibitAnyPolicy) else None,
        critical_qualifiers=critical_qualifiers,
    )


ANY_POLICY = "2.5.29.32.0"


_NS_CERT_TYPE = x509.ObjectIdentifier("2.16.840.1.113730.1.1")


def _ns_cert_type(extensions: list[x509.Extension[x509.ExtensionType]]) -> int | None:
    """The first byte of a Netscape certificate type extension (a BIT STRING), which OpenSSL and the
    JVM still honour; None when absent. An unreadable one reads as no type at all."""
    for ext in extensions:
        if ext.oid == _NS_CERT_TYPE and isinstance(ext.value, x509.UnrecognizedExtension):
            der = ext.value.value
            if len(der) >= 3 and der[0] == 0x03 and der[1] >= 1:
                return der[3] if der[1] >= 2 and len(der) > 3 else 0
            return 0
    return None


@dataclass(frozen=True, slots=True)
class _NameFacts:
    display: str
    key: tuple[tuple[str, str], ...]
    common_names: tuple[str, ...]
    error: str | None = None  # why the name could not be read (it then matches no other name)
    emails: tuple[str, ...] = ()  # emailAddress attribute values (never in a simple name)
    email_not_ia5: bool = False  # one of them is not an IA5String
    refused_tags: tuple[int, ...] = ()  # value types OpenSSL's name decoder refuses (see OPENSSL_NAME_TAGS)


# Name facts by the Name's DER as encoded: a CA's name recurs as the issuer of every certificate it
# signed, and building cryptography's Name objects for it costs more than the rest of the facts.
_NAMES: dict[bytes, _NameFacts] = {}


def _name_facts(raw: bytes | None, read: Callable[[], x509.Name], *, keep: bool, which: str) -> _NameFacts:
    """Facts of the Name encoded as `raw` (read with `read` on a miss); kept for the names that recur."""
    if raw is not None:
        known = _NAMES.get(raw)
        if known is not None:
            return known
    facts = (_simple_name_facts(raw) if raw is not None else None) or _read_name_facts(read, raw, which)
    if not keep:
        return facts
    facts = _NameFacts(
        _shared(facts.display),
        _shared(facts.key),
        facts.common_names,
        facts.error,
        facts.emails,
        facts.email_not_ia5,
        facts.refused_tags,
    )
    if raw is not None:
        if len(_NAMES) >= _CACHE_LIMIT:
            _NAMES.clear()
        _NAMES[raw] = facts
    return facts


def _read_name_facts(read: Callable[[], x509.Name], raw: bytes | None, which: str) -> _NameFacts:
    """The facts of the Name `read()` gives; for one cryptography parses but cannot give as a Name
    (a BIT STRING common name, bad UTF-8, an empty RDN), a placeholder that names no other certificate."""
    tags = name_value_tags(raw) if raw is not None else None
    refused = tuple(sorted(tags - OPENSSL_NAME_TAGS)) if tags is not None else ()
    try:
        facts = _facts_of_name(read())
    except Exception as exc:  # noqa: BLE001 - any odd value in a peer's certificate must not stop a pass
        digest = hashlib.sha256(raw or b"").hexdigest()[:16]
        return _NameFacts(
            display=f"<unreadable {which} name, DER sha256 {digest}>",
            key=(("unreadable", (raw or b"").hex()),),
            common_names=(),
            error=f"its {which} name cannot be read ({type(exc).__name__}: a value of a type or encoding "
            "that names do not hold)",
            refused_tags=refused,
        )
    return _NameFacts(
        facts.display, facts.key, facts.common_names, facts.error, facts.emails, facts.email_not_ia5, refused
    )


# Name value types OpenSSL's certificate decoder accepts (BIT STRING, ObjectDescriptor, UTF8String,
# NumericString, PrintableString, T61String, IA5String, UniversalString, BMPString, as OpenSSL 3.0
# was seen to load them); a certificate with any other (VisibleString, GeneralString, INTEGER...)
# fails to load, and a PEM file holding it fails as a whole.
OPENSSL_NAME_TAGS = frozenset({0x03, 0x07, 0x0C, 0x12, 0x13, 0x14, 0x16, 0x1C, 0x1E})


def _name_error(subject: _NameFacts, issuer: _NameFacts) -> str | None:
    return subject.error or issuer.error


def _facts_of_name(name: x509.Name) -> _NameFacts:
    common_names = tuple(str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME))
    email_attributes = name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    emails = tuple(str(a.value) for a in email_attributes)
    not_ia5 = any(getattr(getattr(a, "_type", None), "value", None) != _IA5_STRING for a in email_attributes)
    return _NameFacts(_display_name(name), name_key(name), common_names, emails=emails, email_not_ia5=not_ia5)


# Values that RFC 4514 writes as they are (nothing to escape, no space to fold): those every string
# type may hold, and for UTF8String and IA5String a few more that host names use.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9'()./:=?-]+(?: [A-Za-z0-9'()./:=?-]+)*")
_PLAIN_TEXT_VALUE = re.compile(r"[A-Za-z0-9'()./:=?*_@-]+(?: [A-Za-z0-9'()./:=?*_@-]+)*")
_COMMON_NAME = NameOID.COMMON_NAME.dotted_string


def _simple_name_facts(raw: bytes) -> _NameFacts | None:
    """The facts of a simple Name read straight from its DER, as cryptography's Name would give them
    (an endpoint's subject is new each time, and building that Name costs more than the rest of its
    facts); None for any Name that is not of the simple kind (der.simple_name) with plain values."""
    attributes = simple_name(raw)
    if attributes is None:
        return None
    parts, key, common_names = [], [], []
    for dotted, encoded, tag in attributes:
        try:
            value = encoded.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not (_PLAIN_VALUE if tag == PRINTABLE_STRING else _PLAIN_TEXT_VALUE).fullmatch(value):
            return None
        parts.append(f"{SHORT_NAMES[dotted]}={value}")
        key.append(value_key(dotted, tag, value))
        if dotted == _COMMON_NAME:
            common_names.append(value)
    return _NameFacts(",".join(reversed(parts)), tuple(key), tuple(common_names))


def _display_name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # noqa: BLE001 - exotic attribute types must not break a report
        return repr(name)


_SIG_CACHE: dict[tuple[str, str], str | None] = {}


def signature_error(child: CertInfo, issuer: CertInfo) -> str | None:
    """None when `issuer`'s key verifies `child`'s signature, else why not (cached)."""
    key = (child.sha256, issuer.sha256)
    if key in _SIG_CACHE:
        return _SIG_CACHE[key]
    result = _check_signature(child, issuer)
    if len(_SIG_CACHE) >= _CACHE_LIMIT:
        _SIG_CACHE.clear()
    _SIG_CACHE[key] = result
    return result


# An issuer's public key, loaded once: a CA's key checks the signature of every certificate it issued.
# A key that cannot be loaded is kept as its reason (a kept exception would grow a traceback per raise).
_PUBLIC_KEYS: dict[str, PublicKeyTypes | str] = {}


def _public_key(issuer: CertInfo) -> PublicKeyTypes | str:
    found = _PUBLIC_KEYS.get(issuer.sha256)
    if found is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = issuer.cert.public_key()
        except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
            found = f"signature could not be checked: {exc}"
        if len(_PUBLIC_KEYS) >= _CACHE_LIMIT:
            _PUBLIC_KEYS.clear()
        _PUBLIC_KEYS[issuer.sha256] = found
    return found


# The TBSCertificate of the certificates described last, sliced from the DER at hand then: the check of
# their signature, which usually follows within a few certificates, would have cryptography encode it again.
_RECENT_TBS: dict[str, bytes] = {}
_RECENT_TBS_LIMIT = 64


def _remember_tbs(sha256: str, tbs: bytes) -> None:
    if len(_RECENT_TBS) >= _RECENT_TBS_LIMIT:
        _RECENT_TBS.clear()
    _RECENT_TBS[sha256] = tbs


def _check_signature(info: CertInfo, issuer: CertInfo) -> str | None:
    public_key = _public_key(issuer)
    if isinstance(public_key, str):
        return public_key
    child = info.cert
    try:
        sig = child.signature
        data = _RECENT_TBS.get(info.sha256) or child.tbs_certificate_bytes
        if isinstance(public_key, rsa.RSAPublicKey):
            params = child.signature_algorithm_parameters
            hash_alg = child.signature_hash_algorithm
            if not isinstance(params, padding.PSS | padding.PKCS1v15) or hash_alg is None:
                return "signature algorithm does not match the issuer's RSA key"
            public_key.verify(sig, data, params, hash_alg)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            params = child.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                return "signature algorithm does not match the issuer's EC key"
            public_key.verify(sig, data, params)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(sig, data)
        elif isinstance(public_key, dsa.DSAPublicKey):
            hash_alg = child.signature_hash_algorithm
            if hash_alg is None:
                return "signature algorithm does not match the issuer's DSA key"
            public_key.verify(sig, data, hash_alg)
        else:
            return f"unsupported issuer key type {type(public_key).__name__}"
    except InvalidSignature:
        return "signature does not verify with the issuer's public key"
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return f"signature could not be checked: {exc}"
    return None


def signature_hash_name(cert: x509.Certificate) -> str | None:
    try:
        alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "unknown"
    return alg.name if isinstance(alg, hashes.HashAlgorithm) else None


def _rsa_key_bits(cert: x509.Certificate) -> int | None:
    if cert.public_key_algorithm_oid == PublicKeyAlgorithmOID.EC_PUBLIC_KEY:
        return None  # the common case of not RSA, without loading the key
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


_NOT_IP = re.compile(r"[^0-9a-fA-F:.]")  # a character no IP literal holds outside an IPv6 zone (%eth0)


def is_ip_literal(host: str) -> bool:
    if "%" not in host and _NOT_IP.search(host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
