"""Certificate facts: the raw-name walk, the per-block parse cache and the IP-literal test agree with
what they shortcut (cryptography's own parsing, ipaddress)."""

from __future__ import annotations

import ipaddress
import json
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type

from chainwarden import certinfo, pkigen
from chainwarden.der import certificate_names, certificate_parts
from conftest import shared_data_dir


def _names_agree(cert: x509.Certificate) -> None:
    tbs, issuer, subject = certificate_parts(cert.public_bytes(Encoding.DER))
    assert issuer == cert.issuer.public_bytes()
    assert subject == cert.subject.public_bytes()
    assert tbs == cert.tbs_certificate_bytes  # what the signature is checked over


def test_names_of_generated_certificates_match_cryptography() -> None:
    pki = pkigen.three_tier("names.example.test")
    long_name = x509.Name(
        [x509.NameAttribute(x509.NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i} " + "x" * 40) for i in range(8)]
    )  # over 255 bytes: a two-byte DER length
    odd = pkigen.custom_cert(long_name, pki.intermediate)
    for cert in (pki.root.cert, pki.intermediate.cert, pki.leaf.cert, odd.cert):
        _names_agree(cert)


def test_names_of_real_certificates_match_cryptography() -> None:
    base = shared_data_dir()
    checked = 0
    for path in sorted(base.rglob("*.pem")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                certs = x509.load_pem_x509_certificates(path.read_bytes())
            except ValueError:
                continue
        for cert in certs:
            _names_agree(cert)
            checked += 1
    assert checked > 20


def test_names_of_limbo_certificates_match_cryptography() -> None:
    """x509-limbo holds v1 certificates (no version field) and deliberately odd encodings."""
    cases = json.loads((shared_data_dir("x509-limbo") / "limbo.json").read_text())["testcases"]
    checked = 0
    for case in cases[:400]:
        for pem in [*case["trusted_certs"], *case["untrusted_intermediates"], case["peer_certificate"]]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cert = x509.load_pem_x509_certificate(pem.encode())
                    issuer, subject = cert.issuer.public_bytes(), cert.subject.public_bytes()
                except ValueError:
                    continue
            assert certificate_names(cert.public_bytes(Encoding.DER)) == (issuer, subject)
            assert certificate_parts(cert.public_bytes(Encoding.DER))[0] == cert.tbs_certificate_bytes
            checked += 1
    assert checked > 400


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x04\x03abc", b"\x30\x85\x00\x00\x00\x00\x01", b"\x30\x05\x30\x10"])
def test_names_of_garbage_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        certificate_names(data)


def test_facts_from_cached_issuer_names_equal_fresh_ones() -> None:
    pki = pkigen.three_tier("facts.example.test")
    first = certinfo.describe(pki.leaf.cert)
    second_leaf = pkigen.make_leaf(["other.example.test"], pki.intermediate)
    second = certinfo.describe(second_leaf.cert)  # its issuer's name comes from the cache
    ca = certinfo.describe(pki.intermediate.cert)
    assert second.issuer == first.issuer == ca.subject
    assert second.issuer_key == first.issuer_key == ca.subject_key
    assert second.common_names == ("other.example.test",)
    assert not second.self_issued and certinfo.describe(pki.root.cert).self_issued


def test_parsed_once_returns_one_object_per_block_and_never_caches_failures() -> None:
    pki = pkigen.three_tier("blocks.example.test")
    pem = pki.intermediate.cert.public_bytes(Encoding.PEM)
    calls: list[bytes] = []

    def parse(block: bytes) -> x509.Certificate:
        calls.append(block)
        return x509.load_pem_x509_certificate(block)

    first = certinfo.parsed_once(pem, parse)
    assert certinfo.parsed_once(pem, parse) is first and len(calls) == 1
    assert first is certinfo.canonical(pki.intermediate.cert)
    for _ in range(2):
        with pytest.raises(ValueError):
            certinfo.parsed_once(b"not a certificate", parse)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "fe80::1%eth0",
        "::ffff:10.0.0.1",
        "dead.beef",
        "a:b",
        "example.com",
        "1.2.3.4 ",
        "",
        "٣.1.1.1",
    ],
)
def test_ip_literal_agrees_with_ipaddress(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        expected = True
    except ValueError:
        expected = False
    assert certinfo.is_ip_literal(host) is expected


def _name_facts_agree(name: x509.Name) -> bool:
    """The facts read straight from the DER, when that shortcut applies, equal cryptography's;
    returns whether it applied."""
    simple = certinfo._simple_name_facts(name.public_bytes())
    if simple is not None:
        assert simple == certinfo._facts_of_name(name), name
    return simple is not None


def _attribute(oid: x509.ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long CN or C values: read as they come, all the same
        return x509.NameAttribute(oid, value, kind) if kind is not None else x509.NameAttribute(oid, value)


_VALUES = [
    "api.example.test", "*.example.test", "Example Org (Test) Ltd.", "R3", "a", "x" * 80, "a  b", " lead",
    "trail ", "#hash", "a+b", "a,b", 'q"uote', "back\\slash", "semi;colon", "<angle>", "nul\x00",
    "café", "tab\there", "under_score", "at@sign", "equals=sign",
]
_KINDS = [None, _ASN1Type.PrintableString, _ASN1Type.UTF8String, _ASN1Type.IA5String]


# An empty value only with the default type: cryptography refuses it with an explicit one.
@pytest.mark.parametrize(("value", "kind"), [(v, k) for v in _VALUES for k in _KINDS] + [("", None)])
def test_simple_name_facts_equal_cryptographys_for_every_value(value: str, kind: _ASN1Type | None) -> None:
    """Whatever the value and its string type, the shortcut either gives cryptography's display
    name, comparison key and common names, or stands aside."""
    for oid in (x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATION_NAME, x509.NameOID.DOMAIN_COMPONENT):
        try:
            name = x509.Name([_attribute(x509.NameOID.COUNTRY_NAME, "DE"), _attribute(oid, value, kind)])
            name.public_bytes()
        except ValueError:
            continue  # not encodable as that string type
        _name_facts_agree(name)


def test_simple_name_facts_stand_aside_for_what_they_do_not_read() -> None:
    """Multi-valued RDNs, attribute types without a short name, and the empty name go to cryptography."""
    pair = [_attribute(x509.NameOID.COMMON_NAME, "a"), _attribute(x509.NameOID.ORGANIZATION_NAME, "b")]
    multi = x509.Name([x509.RelativeDistinguishedName(pair)])
    email = x509.Name([_attribute(x509.NameOID.EMAIL_ADDRESS, "ops@example.test")])
    for name in (multi, email, x509.Name([])):
        assert certinfo._simple_name_facts(name.public_bytes()) is None
    plain = x509.Name([_attribute(x509.NameOID.COUNTRY_NAME, "DE"), _attribute(x509.NameOID.COMMON_NAME, "plain")])
    assert _name_facts_agree(plain)  # and the common case does take the shortcut


def test_simple_name_facts_of_real_and_limbo_certificates_equal_cryptographys() -> None:
    """Subjects and issuers of the captured public chains and of x509-limbo (odd encodings included)."""
    certs = []
    for path in sorted(shared_data_dir().rglob("*.pem")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                certs.extend(x509.load_pem_x509_certificates(path.read_bytes()))
            except ValueError:
                continue
    cases = json.loads((shared_data_dir("x509-limbo") / "limbo.json").read_text())["testcases"]
    for case in cases[:400]:
        for pem in [*case["trusted_certs"], *case["untrusted_intermediates"], case["peer_certificate"]]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    certs.append(x509.load_pem_x509_certificate(pem.encode()))
                except ValueError:
                    continue
    took = 0
    for cert in certs:
        for name in _readable_names(cert):
            took += _name_facts_agree(name)
    assert took > 100


def _readable_names(cert: x509.Certificate) -> list[x509.Name]:
    names = []
    for read in (lambda: cert.subject, lambda: cert.issuer):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                names.append(read())
            except ValueError:
                continue
    return names
