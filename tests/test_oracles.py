"""Differential test: chainwarden's verdict against two real validators, OpenSSL and the JVM.

For every case (a bundle, the leaf the endpoint presents, a host and a pinned time) three oracles run:

- openssl: `openssl verify -no-CApath -no-CAstore -attime T -purpose sslserver -verify_hostname HOST
  -CAfile BUNDLE LEAF`: the bundle is the only trust store, the leaf alone is presented;
- jvm: what Windchill+ does (tests/oracle/JvmOracle.java): every bundle certificate a trusted entry
  of an empty KeyStore, a PKIX TrustManager, checkServerTrusted([leaf], "UNKNOWN"), then the JDK's
  TLS hostname check;
- strict: the same JVM validator with only the self-signed bundle certificates as trust anchors and
  the others offered as intermediates: chainwarden's own definition of complete (the bundle alone
  carries the leaf to a self-signed root in it).

chainwarden accepts a case when it calls the bundle complete and reports no error: `complete` alone
only says that the bundle carries the leaf to a root (an expired or misnamed leaf is complete, with
an error). The SAFETY property: whenever chainwarden accepts, all three oracles accept; and a bundle
called complete is one every oracle can at least read. Where
chainwarden does not accept although OpenSSL and the JVM both do, the case is in DIVERGENCES with
the reason, and stays so. Every case also records what the oracles answer (where they disagree
with each other, why), so the table keeps describing the validators it was written against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from chainwarden.bundle import read_bundle_bytes
from chainwarden.engine import Presented, Target, evaluate
from chainwarden.report import Result, Verdict
from oracle.certs import DAY, HOST, NOW, Cert, critical, issue, key_usage, name, pem, pki
from oracle.runners import Answer, Jvm, missing_tools, openssl_verify, write_case

_MISSING = missing_tools()
if _MISSING:
    pytest.skip(
        f"the oracles need {', '.join(_MISSING)} (scripts/bootstrap.sh installs openssl and default-jdk-headless)",
        allow_module_level=True,
    )


class Oracles(NamedTuple):
    """Which oracles accept a case."""

    openssl: bool
    jvm: bool
    strict: bool


ACCEPT = Oracles(openssl=True, jvm=True, strict=True)
REJECT = Oracles(openssl=False, jvm=False, strict=False)


@dataclass(frozen=True)
class Material:
    """One case's input: the trust bundle, the presented leaf, the host and the validation time."""

    bundle: bytes
    leaf: Cert
    host: str = HOST
    at: dt.datetime = NOW


@dataclass(frozen=True)
class Case:
    build: Callable[[], Material]
    oracles: Oracles
    why: str  # why the oracles disagree with each other (empty when they agree)


CASES: dict[str, Case] = {}


def case(oracles: Oracles, why: str = "") -> Callable[[Callable[[], Material]], Callable[[], Material]]:
    """Register a case builder under its function name (underscores as dashes)."""

    def register(build: Callable[[], Material]) -> Callable[[], Material]:
        CASES[build.__name__.replace("_", "-")] = Case(build, oracles, why)
        return build

    return register


# Why the oracles disagree with each other.
ISSUER_IS_ANCHOR = (
    "the JVM makes every bundle certificate a trust anchor and stops at the leaf's issuer: that CA's own "
    "validity, extensions, name constraints and issuer are never checked; OpenSSL and the strict mode "
    "go on to the self-signed root"
)
BUILDER_IGNORES_AKI = (
    "OpenSSL takes a CA as issuer only if its SKI matches the AKI keyIdentifier; the JVM's CertPathBuilder "
    "(strict) finds issuers by name and signature, the AKI only orders the candidates; the lenient JVM's "
    "validator does compare the AKI with its trust anchor, the leaf's issuer"
)
KEY_ENCIPHERMENT = (
    "OpenSSL's sslserver purpose accepts keyEncipherment alone (RSA key exchange); the JVM's "
    "checkServerTrusted with authType UNKNOWN requires digitalSignature"
)
CRITICAL_CRLDP = (
    "OpenSSL knows CRL distribution points, so a critical one is no error; the JVM's PKIX validator "
    "has no checker for it (revocation off) and rejects it as an unrecognized critical extension"
)
JVM_STRING_TYPES = (
    "the JVM compares names in RFC 2253 canonical form, where only PrintableString and UTF8String are "
    "text (folded for case and spaces); any other type is compared as its DER bytes. OpenSSL canonicalizes "
    "IA5String, BMPString and T61String values as text as well"
)
JVM_UNKNOWN_TYPE = (
    "the JVM's RFC 2253 canonical form writes the value of an attribute type it has no keyword for as "
    "hex DER, so case counts; OpenSSL folds any UTF8String value whatever its type"
)
TAB_IS_SPACE = "OpenSSL's name canonicalization collapses a tab into a space; the JVM's keeps it"
OPENSSL_DROPS_FILE = "OpenSSL refuses the whole CAfile over one block it cannot decode; the JVM reads it"
NUL_LINE = (
    "OpenSSL's PEM reader stops at a line that begins with a NUL byte (it measures lines with strlen), "
    "so it never reads the root after it; the JVM skips the text between blocks"
)
BOM_FIRST_BLOCK = (
    "OpenSSL skips a BOM as text before the first block; the JVM's PEM reader only takes '-----' at the "
    "start of a line, so it reads the first block's END line as a header and refuses the whole file"
)
ROOT_EXTENSIONS = (
    "OpenSSL checks the critical extensions of every certificate on the path, the self-signed root "
    "included; the JVM never processes a trust anchor's extensions"
)
SELF_SIGNATURE = (
    "OpenSSL takes a self-issued certificate without an AKI for self-signed and never checks a trust "
    "anchor's own signature, nor does the lenient JVM reach it; the strict mode's anchors must verify "
    "with their own key"
)
LEAF_IS_ANCHOR = (
    "the JVM trusts the leaf itself (it is a bundle certificate) and looks no further; OpenSSL requires a "
    "path to a self-signed certificate even from a trusted leaf"
)

# chainwarden does not accept although OpenSSL and the JVM (as Windchill+ uses it) both do.
ANCHOR_RULE = "a trust anchor must be a self-signed root in the bundle (chainwarden's definition of complete)"
DIVERGENCES: dict[str, str] = {
    "root-bad-self-signature": ANCHOR_RULE + "; this one's self-signature does not verify",
}


# ---------------------------------------------------------------- the cases

AIA = x509.AuthorityInformationAccess(
    [
        x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier("http://ca.example.test/ca.der")
        )
    ]
)
CRLDP = x509.CRLDistributionPoints(
    [x509.DistributionPoint([x509.UniformResourceIdentifier("http://ca.example.test/ca.crl")], None, None, None)]
)
CN = NameOID.COMMON_NAME
ORG = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Oracle Test")
UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.1")


def leaf_name(*extra: x509.NameAttribute) -> x509.Name:
    return x509.Name([*extra, x509.NameAttribute(CN, HOST)])


def sans(*names: x509.GeneralName) -> dict[type[x509.ExtensionType], tuple[x509.ExtensionType, bool] | None]:
    return {x509.SubjectAlternativeName: (x509.SubjectAlternativeName(list(names)), False)}


def name_mismatch(ca_subject: list[x509.NameAttribute], leaf_issuer: list[x509.NameAttribute]) -> Material:
    """The issuing CA's subject and the leaf's issuer field spell the 'same' name differently."""
    p = pki(inter={"subject": x509.Name(ca_subject)}, leaf={"issuer_name": x509.Name(leaf_issuer)})
    return Material(p.bundle, p.leaf)


def cn_texts(ca_text: str, leaf_text: str) -> Material:
    return name_mismatch([ORG, x509.NameAttribute(CN, ca_text)], [ORG, x509.NameAttribute(CN, leaf_text)])


def cn_types(ca_type: _ASN1Type, leaf_type: _ASN1Type, text: str = "Oracle Issuing CA") -> Material:
    return name_mismatch(
        [ORG, x509.NameAttribute(CN, text, _type=ca_type)], [ORG, x509.NameAttribute(CN, text, _type=leaf_type)]
    )


def constrained(constraints: x509.NameConstraints, **leaf: object) -> Material:
    """The issuing CA carries critical name constraints."""
    p = pki(inter={"extensions": critical(constraints)}, leaf=leaf)
    return Material(p.bundle, p.leaf)


# Paths and trust anchors


@case(ACCEPT)
def healthy_rsa() -> Material:
    p = pki(kind="rsa")
    return Material(p.bundle, p.leaf)


@case(ACCEPT)
def healthy_ec() -> Material:
    p = pki(kind="ec")
    return Material(p.bundle, p.leaf)


@case(REJECT)
def missing_intermediate() -> Material:
    p = pki()
    return Material(pem(p.root), p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def missing_root() -> Material:
    p = pki()
    return Material(pem(p.inter), p.leaf)


@case(REJECT)
def self_signed_ca_leaf_not_in_bundle() -> Material:
    leaf = issue(name(HOST), None, ca=True, extensions=sans(x509.DNSName(HOST)))
    return Material(pki().bundle, leaf)


@case(ACCEPT)
def leaf_in_bundle() -> Material:
    p = pki()
    return Material(pem(p.inter, p.root, p.leaf), p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), LEAF_IS_ANCHOR)
def leaf_in_bundle_without_root() -> Material:
    p = pki()
    return Material(pem(p.inter, p.leaf), p.leaf)


@case(ACCEPT)
def self_signed_leaf_pinned_in_bundle() -> Material:
    leaf = issue(leaf_name(), None, ca=False)
    return Material(leaf.pem, leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def expired_root() -> Material:
    p = pki(root={"not_before": NOW - 4000 * DAY, "not_after": NOW - DAY})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=True), ROOT_EXTENSIONS)
def root_unknown_critical_extension() -> Material:
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x05\x00")
    p = pki(root={"extensions": critical(unknown)})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=True, jvm=True, strict=False), SELF_SIGNATURE)
def root_bad_self_signature() -> Material:
    """A self-issued root signed by another key with its name, and no AKI to tell them apart."""
    impostor = issue(name("Oracle Root CA"), None, ca=True)
    root = issue(name("Oracle Root CA"), impostor, ca=True, extensions={x509.AuthorityKeyIdentifier: None})
    p = pki(root_cert=root)
    return Material(p.bundle, p.leaf)


@case(ACCEPT)
def duplicate_blocks() -> Material:
    p = pki()
    return Material(pem(p.inter, p.inter, p.root, p.root), p.leaf)


# The leaf's key usage and extended key usage


@case(REJECT)
def leaf_key_usage_crl_sign_only() -> Material:
    p = pki(leaf={"extensions": {x509.KeyUsage: (key_usage(crl_sign=True), True)}})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=True, jvm=False, strict=False), KEY_ENCIPHERMENT)
def leaf_key_usage_key_encipherment_only() -> Material:
    p = pki(kind="rsa", leaf={"extensions": {x509.KeyUsage: (key_usage(key_encipherment=True), True)}})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def leaf_eku_client_auth_only() -> Material:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    p = pki(leaf={"extensions": {x509.ExtendedKeyUsage: (eku, False)}})
    return Material(p.bundle, p.leaf)


# Critical extensions


@case(REJECT)
def leaf_critical_aia() -> Material:
    p = pki(leaf={"extensions": critical(AIA)})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def leaf_critical_issuer_alt_name() -> Material:
    ian = x509.IssuerAlternativeName([x509.UniformResourceIdentifier("http://ca.example.test/")])
    p = pki(leaf={"extensions": critical(ian)})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def leaf_critical_tls_feature() -> Material:
    p = pki(leaf={"extensions": critical(x509.TLSFeature([x509.TLSFeatureType.status_request]))})
    return Material(p.bundle, p.leaf)


# OpenSSL 3.0 and the JVM both lack SKI and AKI among the critical extensions they process.
@case(REJECT)
def leaf_critical_ski() -> Material:
    p = pki(leaf={"mark_critical": [x509.SubjectKeyIdentifier]})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def leaf_critical_aki() -> Material:
    p = pki(leaf={"mark_critical": [x509.AuthorityKeyIdentifier]})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=True, jvm=False, strict=False), CRITICAL_CRLDP)
def leaf_critical_crl_distribution_points() -> Material:
    p = pki(leaf={"extensions": critical(CRLDP)})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def intermediate_critical_aia() -> Material:
    p = pki(inter={"extensions": critical(AIA)})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def intermediate_critical_ski() -> Material:
    p = pki(inter={"mark_critical": [x509.SubjectKeyIdentifier]})
    return Material(p.bundle, p.leaf)


# Key identifiers


@case(Oracles(openssl=False, jvm=False, strict=True), BUILDER_IGNORES_AKI)
def leaf_aki_not_issuer_ski() -> Material:
    aki = x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)
    p = pki(leaf={"extensions": {x509.AuthorityKeyIdentifier: (aki, False)}})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=True), BUILDER_IGNORES_AKI)
def intermediate_aki_not_root_ski() -> Material:
    aki = x509.AuthorityKeyIdentifier(b"\x02" * 20, None, None)
    p = pki(inter={"extensions": {x509.AuthorityKeyIdentifier: (aki, False)}})
    return Material(p.bundle, p.leaf)


# Name matching: the issuing CA's subject against the leaf's issuer field


@case(REJECT)
def name_numeric_string_vs_utf8() -> Material:
    return cn_types(_ASN1Type.NumericString, _ASN1Type.UTF8String, text="12345")


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_STRING_TYPES)
def name_ia5_string_vs_utf8() -> Material:
    return cn_types(_ASN1Type.IA5String, _ASN1Type.UTF8String)


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_STRING_TYPES)
def name_bmp_string_vs_utf8() -> Material:
    return cn_types(_ASN1Type.BMPString, _ASN1Type.UTF8String)


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_STRING_TYPES)
def name_t61_string_vs_utf8() -> Material:
    return cn_types(_ASN1Type.T61String, _ASN1Type.UTF8String)


@case(ACCEPT)
def name_printable_string_vs_utf8() -> Material:
    return cn_types(_ASN1Type.PrintableString, _ASN1Type.UTF8String)


@case(ACCEPT)
def name_ascii_case() -> Material:
    return cn_texts("Oracle Issuing CA", "ORACLE issuing ca")


@case(Oracles(openssl=True, jvm=False, strict=False), TAB_IS_SPACE)
def name_tab_vs_space() -> Material:
    return cn_texts("Oracle\tIssuing CA", "Oracle Issuing CA")


@case(REJECT)
def name_unit_separator_vs_space() -> Material:
    return cn_texts("Oracle\x1fIssuing CA", "Oracle Issuing CA")


@case(REJECT)
def name_sharp_s_vs_ss() -> Material:
    return cn_texts("Oracle Stra\u1e9ee CA", "oracle strasse ca")


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_STRING_TYPES)
def name_domain_component_case() -> Material:
    dc = NameOID.DOMAIN_COMPONENT
    return name_mismatch(
        [x509.NameAttribute(dc, "Example"), x509.NameAttribute(dc, "Test"), ORG, x509.NameAttribute(CN, "Oracle CA")],
        [x509.NameAttribute(dc, "example"), x509.NameAttribute(dc, "test"), ORG, x509.NameAttribute(CN, "Oracle CA")],
    )


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_STRING_TYPES)
def name_email_address_case() -> Material:
    email = NameOID.EMAIL_ADDRESS
    return name_mismatch(
        [ORG, x509.NameAttribute(CN, "Oracle CA"), x509.NameAttribute(email, "PKI@Example.Test")],
        [ORG, x509.NameAttribute(CN, "Oracle CA"), x509.NameAttribute(email, "pki@example.test")],
    )


@case(Oracles(openssl=True, jvm=False, strict=False), JVM_UNKNOWN_TYPE)
def name_unknown_oid_case() -> Material:
    return name_mismatch(
        [ORG, x509.NameAttribute(UNKNOWN_OID, "Oracle Unit"), x509.NameAttribute(CN, "Oracle CA")],
        [ORG, x509.NameAttribute(UNKNOWN_OID, "oracle unit"), x509.NameAttribute(CN, "Oracle CA")],
    )


@case(REJECT)
def name_multi_valued_rdn_vs_separate() -> Material:
    attrs = [ORG, x509.NameAttribute(CN, "Oracle CA")]
    p = pki(
        inter={"subject": x509.Name([x509.RelativeDistinguishedName(attrs)])},
        leaf={"issuer_name": x509.Name(attrs)},
    )
    return Material(p.bundle, p.leaf)


# Name constraints on the issuing CA


@case(ACCEPT)
def nc_dns_permitted_satisfied() -> Material:
    return constrained(x509.NameConstraints([x509.DNSName("example.test")], None))


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_dns_permitted_violated() -> Material:
    return constrained(x509.NameConstraints([x509.DNSName("other.test")], None))


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_dns_excluded() -> Material:
    return constrained(x509.NameConstraints(None, [x509.DNSName("example.test")]))


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_directory_name_permitted_violated() -> Material:
    allowed = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Allowed")])
    other = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Other")
    return constrained(x509.NameConstraints([x509.DirectoryName(allowed)], None), subject=leaf_name(other))


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_directory_name_excluded() -> Material:
    banned = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Banned")
    return constrained(x509.NameConstraints(None, [x509.DirectoryName(x509.Name([banned]))]), subject=leaf_name(banned))


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_rfc822_permitted_violated() -> Material:
    return constrained(
        x509.NameConstraints([x509.RFC822Name("example.org")], None),
        extensions=sans(x509.DNSName(HOST), x509.RFC822Name("admin@evil.test")),
    )


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_rfc822_excluded() -> Material:
    return constrained(
        x509.NameConstraints(None, [x509.RFC822Name("evil.test")]),
        extensions=sans(x509.DNSName(HOST), x509.RFC822Name("admin@evil.test")),
    )


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_uri_permitted_violated() -> Material:
    return constrained(
        x509.NameConstraints([x509.UniformResourceIdentifier(".example.org")], None),
        extensions=sans(x509.DNSName(HOST), x509.UniformResourceIdentifier("https://evil.test/")),
    )


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def nc_uri_excluded() -> Material:
    return constrained(
        x509.NameConstraints(None, [x509.UniformResourceIdentifier("evil.test")]),
        extensions=sans(x509.DNSName(HOST), x509.UniformResourceIdentifier("https://evil.test/")),
    )


# Host names


@case(REJECT)
def wrong_host() -> Material:
    p = pki(leaf={"hosts": ["other.example.test"]})
    return Material(p.bundle, p.leaf)


@case(ACCEPT)
def wildcard_host() -> Material:
    p = pki(leaf={"hosts": ["*.example.test"]})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def san_with_trailing_dot() -> Material:
    p = pki(leaf={"hosts": [HOST + "."]})
    return Material(p.bundle, p.leaf)


# Validity periods


@case(REJECT)
def expired_leaf() -> Material:
    p = pki(leaf={"not_before": NOW - 400 * DAY, "not_after": NOW - DAY})
    return Material(p.bundle, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=False), ISSUER_IS_ANCHOR)
def expired_intermediate() -> Material:
    p = pki(inter={"not_before": NOW - 400 * DAY, "not_after": NOW - DAY})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def leaf_not_yet_valid() -> Material:
    p = pki(leaf={"not_before": NOW + DAY})
    return Material(p.bundle, p.leaf)


@case(REJECT)
def pinned_time_after_leaf_expiry() -> Material:
    """Valid today, expired at the pinned time: every validator must use the time it is given."""
    p = pki()
    return Material(p.bundle, p.leaf, at=NOW + 301 * DAY)


@case(ACCEPT)
def pinned_time_before_leaf_expiry() -> Material:
    """Expired today, valid at the pinned time."""
    p = pki(leaf={"not_before": NOW - 90 * DAY, "not_after": NOW - DAY})
    return Material(p.bundle, p.leaf, at=NOW - 2 * DAY)


# How the bundle file is written

UNDECODABLE_BLOCK = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
BOM = b"\xef\xbb\xbf"


@case(Oracles(openssl=False, jvm=True, strict=True), OPENSSL_DROPS_FILE)
def extra_visible_string_certificate() -> Material:
    visible = x509.Name([x509.NameAttribute(CN, "Oracle Visible Root", _type=_ASN1Type.VisibleString)])
    p = pki()
    return Material(p.bundle + issue(visible, None, ca=True).pem, p.leaf)


@case(REJECT)
def extra_undecodable_block() -> Material:
    p = pki()
    return Material(p.bundle + UNDECODABLE_BLOCK, p.leaf)


@case(Oracles(openssl=False, jvm=True, strict=True), NUL_LINE)
def nul_line_between_blocks() -> Material:
    p = pki()
    return Material(p.inter.pem + b"\x00\n" + p.root.pem, p.leaf)


@case(Oracles(openssl=True, jvm=False, strict=False), BOM_FIRST_BLOCK)
def bom_before_first_block() -> Material:
    p = pki()
    return Material(BOM + p.bundle, p.leaf)


@case(ACCEPT)
def crlf_line_ends() -> Material:
    p = pki()
    return Material(p.bundle.replace(b"\n", b"\r\n"), p.leaf)


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory):
    """JvmOracle, compiled and started once for this module (JVM start-up is slow), and gone with it:
    other tests (worker processes) expect no child process they did not start."""
    oracle = Jvm(tmp_path_factory.mktemp("jvm-oracle"))
    yield oracle
    oracle.close()


def chainwarden(material: Material) -> Result:
    """chainwarden's verdict, as `check --bundle BUNDLE --chain LEAF --host HOST --at T` reaches it."""
    target = Target("oracle.json", "oracle", f"{material.host}:443", material.host, "/bundle.pem")
    bundle = read_bundle_bytes(material.bundle, "/bundle.pem")
    return evaluate(target, bundle, Presented((material.leaf.cert,), "probe"), material.at).result


def accepts(result: Result) -> bool:
    """chainwarden says the connection will work: the bundle is complete and nothing is an error."""
    return result.complete and result.verdict is not Verdict.ERROR


def _report(result: Result, answers: dict[str, Answer]) -> str:
    lines = [f"chainwarden: complete={result.complete}, verdict={result.verdict.value}"]
    lines += [f"    {p.severity.value} {p.code.value}: {p.message[:200]}" for p in result.problems]
    lines += [f"{oracle}: {answer}" for oracle, answer in answers.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("case_id", list(CASES))
def test_oracles(case_id: str, jvm: Jvm, tmp_path: Path) -> None:
    """Accepted only if OpenSSL and the JVM (also strict) accept; every other difference is documented."""
    material = CASES[case_id].build()
    at = int(material.at.timestamp())
    directory = write_case(tmp_path / case_id, material.bundle, material.leaf.pem, material.host, at)
    lenient, strict = jvm.check(directory)
    answers = {"openssl": openssl_verify(directory), "jvm": lenient, "jvm-strict": strict}
    result = chainwarden(material)
    report = _report(result, answers)

    if accepts(result):
        assert all(a.ok for a in answers.values()), f"SAFETY: chainwarden accepts, but an oracle rejects\n{report}"
    if result.complete:
        assert all(a.readable for a in answers.values()), f"complete, but an oracle cannot read the bundle\n{report}"
    if case_id in DIVERGENCES:
        assert not accepts(result) and answers["openssl"].ok and lenient.ok, (
            f"documented divergence ({DIVERGENCES[case_id]}) no longer holds\n{report}"
        )
    elif answers["openssl"].ok and lenient.ok:
        assert accepts(result), f"OpenSSL and the JVM accept, chainwarden does not: undocumented divergence\n{report}"
    observed = Oracles(answers["openssl"].ok, lenient.ok, strict.ok)
    assert observed == CASES[case_id].oracles, f"the oracles no longer answer as recorded\n{report}"


def test_the_table_explains_itself() -> None:
    """Every disagreement between the oracles has its reason; every divergence names a case."""
    for case_id, c in CASES.items():
        unanimous = c.oracles in (ACCEPT, REJECT)
        assert unanimous == (not c.why), case_id
    assert set(DIVERGENCES) <= set(CASES)
    assert len(CASES) >= 40
