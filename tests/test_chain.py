"""Path building and diagnosis on generated PKIs: every path-level problem code."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from chainwarden import pkigen
from chainwarden.certinfo import describe
from chainwarden.chain import Inputs, Link, diagnose
from chainwarden.report import Code, Severity, Source

NOW = pkigen.EPOCH + dt.timedelta(days=10)
HOST = "erp.example.test"


def run(leaf, bundle, presented=(), store=(), now=NOW, hostname=HOST, warn_days=30):
    inputs = Inputs(
        bundle=tuple(describe(c.cert) for c in bundle),
        presented=tuple(describe(c.cert) for c in presented),
        store=tuple(describe(c.cert) for c in store),
    )
    return diagnose(Link(describe(leaf.cert), Source.ENDPOINT), inputs, now, hostname=hostname, warn_days=warn_days)


def codes(diagnosis):
    return {p.code for p in diagnosis.problems}


def test_complete_bundle_is_valid(pki):
    """Intermediate plus root in the bundle: complete, valid, no problems, path leaf->int->root."""
    d = run(pki.leaf, [pki.intermediate, pki.root])
    assert d.complete and d.valid
    assert d.problems == ()
    assert [link.cert.subject for link in d.path] == [
        describe(c.cert).subject for c in (pki.leaf, pki.intermediate, pki.root)
    ]


def test_missing_intermediate_explained_from_presented_chain(pki):
    """A bundle with only the root lacks the intermediate the endpoint presents."""
    d = run(pki.leaf, [pki.root], presented=[pki.intermediate])
    assert not d.complete
    missing = [p for p in d.problems if p.code is Code.MISSING_INTERMEDIATE]
    assert len(missing) == 1 and "endpoint presents it" in missing[0].message
    assert "Issuing CA 1" in missing[0].message


def test_missing_intermediate_without_any_source_names_issuer_and_aia():
    """Nothing anywhere: the message names the leaf's issuer, key id and AIA URL."""
    root = pkigen.make_root("Lonely Root")
    inter = pkigen.make_intermediate("Lonely Issuing CA", root)
    leaf = pkigen.make_leaf([HOST], inter, aia_url="http://aia.example.test/issuing.der")
    d = run(leaf, [root])
    missing = [p for p in d.problems if p.code is Code.MISSING_INTERMEDIATE]
    assert missing and "http://aia.example.test/issuing.der" in missing[0].message
    assert "key id" in missing[0].message and "Lonely Issuing CA" in missing[0].message
    assert not d.complete


def test_missing_root_found_in_store(pki):
    """Only the intermediate in the bundle: the root is missing, and the store knows it."""
    d = run(pki.leaf, [pki.intermediate], store=[pki.root])
    assert codes(d) == {Code.MISSING_ROOT}
    assert "trusted root store" in d.problems[0].message


def test_missing_root_unknown_anywhere(pki):
    """Only the intermediate and no store: the unknown issuer of an intermediate is reported as a root."""
    d = run(pki.leaf, [pki.intermediate])
    assert Code.MISSING_ROOT in codes(d) and not d.complete


def test_root_presented_by_endpoint_still_missing(pki):
    """A root the endpoint sends does not make the bundle complete."""
    d = run(pki.leaf, [pki.intermediate], presented=[pki.intermediate, pki.root])
    assert Code.MISSING_ROOT in codes(d) and not d.complete


def test_expired_intermediate():
    """An expired intermediate in the bundle makes the path invalid with `expired` naming it."""
    root = pkigen.make_root("Exp Root")
    inter = pkigen.make_intermediate("Exp Issuing", root, not_after=NOW - dt.timedelta(days=1))
    leaf = pkigen.make_leaf([HOST], inter, not_after=NOW + dt.timedelta(days=200))
    d = run(leaf, [inter, root])
    assert d.complete and not d.valid
    expired = [p for p in d.problems if p.code is Code.EXPIRED]
    assert expired and expired[0].certificate and "Exp Issuing" in expired[0].certificate


def test_not_yet_valid_leaf(pki):
    """Evaluated before the leaf's notBefore: not_yet_valid."""
    d = run(pki.leaf, [pki.intermediate, pki.root], now=pkigen.EPOCH - dt.timedelta(days=60))
    assert Code.NOT_YET_VALID in codes(d)


def test_expiring_soon_is_a_warning(pki):
    """Twenty days before the leaf expires, expiring_soon (warning) with the days left."""
    now = pki.leaf.cert.not_valid_after_utc - dt.timedelta(days=20)
    d = run(pki.leaf, [pki.intermediate, pki.root], now=now)
    soon = [p for p in d.problems if p.code is Code.EXPIRING_SOON]
    assert d.valid and soon and soon[0].severity is Severity.WARNING and "in 20 days" in soon[0].message


def test_hostname_mismatch(pki):
    """The leaf does not name the connection's host."""
    d = run(pki.leaf, [pki.intermediate, pki.root], hostname="other.example.test")
    assert Code.HOSTNAME_MISMATCH in codes(d)


def test_wildcard_matches_one_label_only():
    """*.example.test matches a.example.test but not a.b.example.test nor example.test."""
    root = pkigen.make_root("W Root")
    inter = pkigen.make_intermediate("W Issuing", root)
    leaf = pkigen.make_leaf(["*.example.test"], inter)
    assert not run(leaf, [inter, root], hostname="a.example.test").problems
    assert Code.HOSTNAME_MISMATCH in codes(run(leaf, [inter, root], hostname="a.b.example.test"))
    assert Code.HOSTNAME_MISMATCH in codes(run(leaf, [inter, root], hostname="example.test"))


def test_ip_address_san():
    """An IP endpoint matches an IP SAN, not a DNS name."""
    root = pkigen.make_root("IP Root")
    inter = pkigen.make_intermediate("IP Issuing", root)
    leaf = pkigen.make_leaf(["127.0.0.1"], inter)
    assert not run(leaf, [inter, root], hostname="127.0.0.1").problems
    assert Code.HOSTNAME_MISMATCH in codes(run(leaf, [inter, root], hostname="127.0.0.2"))


def test_intermediate_without_ca_flag_is_path_invalid():
    """An issuer without basicConstraints CA:TRUE breaks the path."""
    root = pkigen.make_root("NC Root")
    inter = pkigen.make_intermediate("NC Issuing", root, is_ca=False)
    leaf = pkigen.make_leaf([HOST], inter)
    d = run(leaf, [inter, root])
    assert Code.PATH_INVALID in codes(d) and not d.valid


def test_key_usage_without_cert_sign_is_path_invalid():
    """An issuer whose keyUsage lacks keyCertSign breaks the path."""
    root = pkigen.make_root("KU Root")
    inter = pkigen.make_intermediate("KU Issuing", root, key_cert_sign=False)
    leaf = pkigen.make_leaf([HOST], inter)
    assert Code.PATH_INVALID in codes(run(leaf, [inter, root]))


def test_path_length_exceeded():
    """pathLen 0 on the first intermediate forbids a second one below it."""
    root = pkigen.make_root("PL Root")
    upper = pkigen.make_intermediate("PL Upper", root, path_length=0)
    lower = pkigen.make_intermediate("PL Lower", upper, path_length=0)
    leaf = pkigen.make_leaf([HOST], lower)
    d = run(leaf, [lower, upper, root])
    assert any(p.code is Code.PATH_INVALID and "pathLenConstraint" in p.message for p in d.problems)


def test_path_length_respected():
    """pathLen 1 on the upper intermediate allows one intermediate below it."""
    root = pkigen.make_root("PL1 Root")
    upper = pkigen.make_intermediate("PL1 Upper", root, path_length=1)
    lower = pkigen.make_intermediate("PL1 Lower", upper, path_length=0)
    leaf = pkigen.make_leaf([HOST], lower)
    assert run(leaf, [lower, upper, root]).valid


def test_wrong_key_same_name_is_not_an_issuer(pki):
    """A certificate with the issuer's name but another key does not complete the path; its key
    identifier already differs from the one the leaf names."""
    impostor = pkigen.make_intermediate("Demo Issuing CA 1", pki.root, key=pkigen.new_key("ec"))
    d = run(pki.leaf, [impostor, pki.root])
    assert not d.complete
    assert any(
        p.code is Code.PATH_INVALID and "is not the issuer that" in p.message and "key identifier" in p.message
        for p in d.problems
    )


def test_wrong_key_without_key_identifiers_fails_the_signature():
    """Without an authorityKeyIdentifier to rule it out, the signature check does."""
    root = pkigen.make_root("NoAKI Root")
    ca_only = [(x509.BasicConstraints(ca=True, path_length=0), True)]
    real = pkigen.custom_cert(pkigen.name("NoAKI CA"), root, ca_only)
    impostor = pkigen.custom_cert(pkigen.name("NoAKI CA"), root, ca_only)
    leaf = pkigen.custom_cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]),
        real,
        [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)],
    )
    d = run(leaf, [impostor, root])
    assert not d.complete
    assert any(p.code is Code.PATH_INVALID and "did not sign" in p.message for p in d.problems)


def _ca_with(issuer, name, *extensions):
    return pkigen.custom_cert(
        pkigen.name(name),
        issuer,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.SubjectKeyIdentifier.from_public_key(pkigen.new_key("ec").public_key()), False),
            *extensions,
        ],
    )


_HOST_SAN = (x509.DNSName(HOST),)


def _leaf_with(issuer, *extensions, subject=None, san=_HOST_SAN):
    return pkigen.custom_cert(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]),
        issuer,
        [(x509.SubjectAlternativeName(list(san)), False), *extensions],
    )


def test_authority_key_identifier_rules_out_a_candidate_whose_key_signed_it():
    """OpenSSL and the JVM pass over an issuer whose subject key identifier is not the child's
    authority key identifier, even when its key made the signature."""
    root = pkigen.make_root("AKI Root")
    ca = pkigen.make_intermediate("AKI CA", root)
    other_id = x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)
    d = run(_leaf_with(ca, (other_id, False)), [ca, root])
    assert not d.complete and Code.MISSING_INTERMEDIATE in codes(d)
    assert any("01:01:01" in p.message and "is not the issuer that" in p.message for p in d.problems)
    other_serial = x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(root.cert.subject)], 12345)
    assert not run(_leaf_with(ca, (other_serial, False)), [ca, root]).complete
    right_serial = x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(root.cert.subject)], ca.cert.serial_number)
    assert run(_leaf_with(ca, (right_serial, False)), [ca, root]).valid


@pytest.mark.parametrize(
    "extension",
    [
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier("http://a/b")
                )
            ]
        ),
        x509.IssuerAlternativeName([x509.DNSName("ca.example.test")]),
        x509.TLSFeature([x509.TLSFeatureType.status_request]),
        x509.CRLDistributionPoints(
            [x509.DistributionPoint([x509.UniformResourceIdentifier("http://a/c.crl")], None, None, None)]
        ),
    ],
    ids=["aia", "issuer-alt-name", "tls-feature", "crl-distribution-points"],
)
def test_critical_extensions_openssl_or_the_jvm_refuse_invalidate_the_leaf(extension):
    root = pkigen.make_root("Crit Root")
    ca = pkigen.make_intermediate("Crit CA", root)
    d = run(_leaf_with(ca, (extension, True)), [ca, root])
    assert not d.valid
    assert any("unrecognised critical extension" in p.message for p in d.problems)
    assert run(_leaf_with(ca, (extension, False)), [ca, root]).valid


@pytest.mark.parametrize(
    ("usage", "valid"),
    [
        (dict(digital_signature=True), True),
        (dict(crl_sign=True), False),
        (dict(key_encipherment=True), False),
    ],
)
def test_leaf_key_usage_must_allow_signing_handshakes(usage, valid):
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    flags.update(usage)
    key_usage = x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)
    root = pkigen.make_root("KU Root")
    ca = pkigen.make_intermediate("KU CA", root)
    d = run(_leaf_with(ca, (key_usage, True)), [ca, root])
    assert d.valid is valid
    if not valid:
        assert any("keyUsage lacks digitalSignature" in p.message for p in d.problems)


def test_san_with_a_trailing_dot_does_not_match_the_host():
    root = pkigen.make_root("Dot Root")
    ca = pkigen.make_intermediate("Dot CA", root)
    d = run(_leaf_with(ca, san=(x509.DNSName(HOST + "."),)), [ca, root])
    assert Code.HOSTNAME_MISMATCH in codes(d) and not d.valid


def test_expiry_is_judged_to_the_instant_not_the_second():
    root = pkigen.make_root("Instant Root")
    ca = pkigen.make_intermediate("Instant CA", root)
    leaf = pkigen.make_leaf([HOST], ca)
    not_after = leaf.cert.not_valid_after_utc
    assert run(leaf, [ca, root], now=not_after - dt.timedelta(milliseconds=1)).valid
    for moment in (not_after, not_after + dt.timedelta(milliseconds=600)):  # OpenSSL: expired at notAfter
        late = run(leaf, [ca, root], now=moment)
        assert Code.EXPIRED in codes(late) and not late.valid


def _org(org):
    return x509.Name(list(pkigen.name("x", org=org))[:-1])  # C=US, O=org


def _constrained(permitted=None, excluded=None):
    root = pkigen.make_root("NC Root")
    ca = _ca_with(root, "NC CA", (x509.NameConstraints(permitted, excluded), True))
    return root, ca


@pytest.mark.parametrize(
    ("permitted", "excluded", "leaf_subject", "san", "valid"),
    [
        ([x509.DirectoryName(_org("Allowed"))], None, "O=Allowed", (), True),
        ([x509.DirectoryName(_org("Allowed"))], None, "O=Other", (), False),
        (None, [x509.DirectoryName(_org("Allowed"))], "O=Allowed", (), False),
        ([x509.RFC822Name("example.org")], None, None, (x509.RFC822Name("ops@example.org"),), True),
        ([x509.RFC822Name("example.org")], None, None, (x509.RFC822Name("a@evil.test"),), False),
        ([x509.RFC822Name(".example.org")], None, None, (x509.RFC822Name("a@mail.example.org"),), True),
        (None, [x509.RFC822Name("ops@example.org")], None, (x509.RFC822Name("ops@example.org"),), False),
        (
            [x509.UniformResourceIdentifier(".example.org")],
            None,
            None,
            (x509.UniformResourceIdentifier("https://api.example.org/x"),),
            True,
        ),
        (
            [x509.UniformResourceIdentifier(".example.org")],
            None,
            None,
            (x509.UniformResourceIdentifier("https://evil.test/"),),
            False,
        ),
        (
            None,
            [x509.UniformResourceIdentifier("evil.test")],
            None,
            (x509.UniformResourceIdentifier("urn:no-host"),),
            False,
        ),
    ],
)
def test_directory_email_and_uri_name_constraints(permitted, excluded, leaf_subject, san, valid):
    """Beyond DNS and IP names: directory names (subject prefixes), mailboxes and URI hosts."""
    root, ca = _constrained(permitted, excluded)
    subject = None
    if leaf_subject:
        subject = x509.Name([*_org(leaf_subject.removeprefix("O=")), x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    leaf = _leaf_with(ca, subject=subject, san=(x509.DNSName(HOST), *san))
    d = run(leaf, [ca, root])
    assert d.valid is valid, [p.message for p in d.problems]
    if not valid:
        assert any("violates the name constraints" in p.message for p in d.problems)


def test_leaf_eku_without_server_auth():
    """A leaf valid only for client authentication cannot serve TLS."""
    root = pkigen.make_root("EKU Root")
    inter = pkigen.make_intermediate("EKU Issuing", root)
    leaf = pkigen.make_leaf([HOST], inter, server_auth=False, client_auth=True)
    assert Code.PATH_INVALID in codes(run(leaf, [inter, root]))


def _letsencrypt_like():
    """ISRG-like new root cross-signed by an old root that expires (the 2021 case)."""
    old_root = pkigen.make_root(
        "Old Root X3", not_before=NOW - dt.timedelta(days=7000), not_after=NOW - dt.timedelta(days=5)
    )
    new_root = pkigen.make_root("New Root X1", not_before=NOW - dt.timedelta(days=2000))
    cross = pkigen.cross_sign(new_root, old_root, not_after=NOW + dt.timedelta(days=400))
    inter = pkigen.make_intermediate("R3 Like", new_root)
    leaf = pkigen.make_leaf([HOST], inter)
    return old_root, new_root, cross, inter, leaf


def test_cross_signed_chooses_valid_path_and_says_which():
    """Old root expired, new root self-signed in bundle: the valid path via the new root is chosen."""
    old_root, new_root, cross, inter, leaf = _letsencrypt_like()
    d = run(leaf, [inter, cross, old_root, new_root], presented=[inter, cross])
    assert d.valid and d.complete
    assert d.path[-1].cert.subject.endswith("CN=New Root X1") or "New Root X1" in d.path[-1].cert.subject
    assert any("alternative path" in n and "Old Root X3" in n for n in d.notes)


def test_cross_signed_with_only_expired_old_root():
    """Only the expired old root and the cross-sign: expired, and the new root is missing from the bundle."""
    old_root, new_root, cross, inter, leaf = _letsencrypt_like()
    d = run(leaf, [inter, cross, old_root], store=[new_root])
    assert not d.valid
    assert Code.MISSING_ROOT in codes(d)


def test_cross_signed_with_only_expired_old_root_and_no_store():
    """Without a store, the expired old root is reported as expired and the chain is not valid."""
    old_root, new_root, cross, inter, leaf = _letsencrypt_like()
    d = run(leaf, [inter, cross, old_root])
    assert not d.valid and Code.EXPIRED in codes(d)


def test_expired_copy_next_to_renewal():
    """An expired copy of the intermediate next to its renewal: the renewal is used."""
    root = pkigen.make_root("Ren Root")
    key = pkigen.new_key()
    old = pkigen.make_intermediate(
        "Ren Issuing", root, key=key, not_before=NOW - dt.timedelta(days=800), not_after=NOW - dt.timedelta(days=3)
    )
    new = pkigen.make_intermediate("Ren Issuing", root, key=key, not_before=NOW - dt.timedelta(days=30))
    leaf = pkigen.make_leaf([HOST], new)
    d = run(leaf, [old, new, root])
    assert d.valid and d.path[1].cert.sha256 == describe(new.cert).sha256


def test_only_expired_copy_while_endpoint_presents_renewal():
    """Bundle holds the expired copy only; the endpoint presents the renewal: missing_intermediate."""
    root = pkigen.make_root("Ren2 Root")
    key = pkigen.new_key()
    old = pkigen.make_intermediate(
        "Ren2 Issuing", root, key=key, not_before=NOW - dt.timedelta(days=800), not_after=NOW - dt.timedelta(days=3)
    )
    new = pkigen.make_intermediate("Ren2 Issuing", root, key=key, not_before=NOW - dt.timedelta(days=30))
    leaf = pkigen.make_leaf([HOST], new)
    d = run(leaf, [old, root], presented=[new])
    assert not d.complete and Code.MISSING_INTERMEDIATE in codes(d)


def test_name_constraints_enforced():
    """An intermediate permitted only .corp.test cannot vouch for erp.example.test."""
    root = pkigen.make_root("NCx Root")
    inter = pkigen.custom_cert(
        pkigen.name("NCx Issuing"),
        root,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.NameConstraints([x509.DNSName("corp.test")], None), True),
        ],
    )
    bad = pkigen.make_leaf([HOST], inter)
    good = pkigen.make_leaf(["api.corp.test"], inter)
    assert Code.PATH_INVALID in codes(run(bad, [inter, root]))
    assert run(good, [inter, root], hostname="api.corp.test").valid


def test_missing_aki_and_critical_san_are_not_errors():
    """CA/B Forum profile details (no AKI, critical SAN) do not fail a path, as with the JVM."""
    root = pkigen.make_root("Lenient Root")
    inter = pkigen.make_intermediate("Lenient Issuing", root)
    leaf = pkigen.custom_cert(x509.Name([]), inter, [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), True)])
    d = run(leaf, [inter, root])
    assert d.valid, d.problems


def test_unknown_critical_extension_on_intermediate_fails():
    """An unrecognised critical extension on an intermediate is path_invalid."""
    root = pkigen.make_root("Crit Root")
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    inter = pkigen.custom_cert(
        pkigen.name("Crit Issuing"), root, [(x509.BasicConstraints(ca=True, path_length=None), True), (unknown, True)]
    )
    leaf = pkigen.make_leaf([HOST], inter)
    assert Code.PATH_INVALID in codes(run(leaf, [inter, root]))


def test_cn_fallback_only_without_san():
    """Without any SAN the subject CN is used for the host name, as the JVM does."""
    root = pkigen.make_root("CN Root")
    inter = pkigen.make_intermediate("CN Issuing", root)
    leaf = pkigen.custom_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), inter)
    assert run(leaf, [inter, root]).valid


def test_cn_fallback_as_the_jvm_does_it():
    """The JVM matches the most specific (last) CN only, and falls back to it when the SAN holds IP
    addresses but no DNS name; a DNS name in the SAN rules the CN out."""
    root = pkigen.make_root("CN Root")
    inter = pkigen.make_intermediate("CN Issuing", root)

    def leaf(common_names, san=None):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names])
        extensions = [(x509.SubjectAlternativeName(san), False)] if san else []
        return pkigen.custom_cert(subject, inter, extensions)

    ip_only = [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]
    assert run(leaf([HOST], ip_only), [inter, root]).valid
    assert run(leaf(["other.example", HOST]), [inter, root]).valid  # the last CN is the most specific
    first_only = run(leaf([HOST, "other.example"]), [inter, root])
    assert Code.HOSTNAME_MISMATCH in codes(first_only)
    assert "CN other.example" in next(p.message for p in first_only.problems if p.code is Code.HOSTNAME_MISMATCH)
    assert Code.HOSTNAME_MISMATCH in codes(run(leaf([HOST], [x509.DNSName("else.example")]), [inter, root]))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_both_key_types(kind):
    """RSA and ECDSA chains both verify."""
    t = pkigen.three_tier(kind=kind, label=f"K{kind}")
    assert run(t.leaf, [t.intermediate, t.root]).valid


def test_a_lone_leaf_with_an_unknown_issuer_keeps_its_own_faults():
    """The leaf's issuer is nowhere (missing_intermediate), and the leaf itself has a name no client
    reads: both are said, since adding the intermediate would not mend the second."""
    from corpus.build import odd_name, with_subject

    t = pkigen.three_tier(HOST, kind="ec", label="Lone")
    odd = x509.load_der_x509_certificate(with_subject(t.leaf, t.intermediate, odd_name(0x03, b"\x00\x01")))
    found = codes(run(pkigen.Issued(odd, t.leaf.key), [t.root]))
    assert Code.MISSING_INTERMEDIATE in found and Code.PATH_INVALID in found


def _eku(*oids):
    return x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in oids])


SERVER_AUTH, CLIENT_AUTH, ANY_EKU = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2", "2.5.29.37.0"


@pytest.mark.parametrize(
    ("leaf_eku", "ca_eku", "root_eku", "valid"),
    [
        ((SERVER_AUTH,), (SERVER_AUTH, CLIENT_AUTH), None, True),
        ((ANY_EKU,), None, None, False),  # OpenSSL's TLS server purpose wants serverAuth itself
        ((SERVER_AUTH,), (CLIENT_AUTH,), None, False),  # checked on every certificate of the path
        ((SERVER_AUTH,), None, (CLIENT_AUTH,), False),  # the root's included
    ],
)
def test_extended_key_usage_along_the_path(leaf_eku, ca_eku, root_eku, valid):
    root = pkigen.custom_cert(
        pkigen.name("EKU Path Root"),
        None,
        [(x509.BasicConstraints(ca=True, path_length=None), True)] + ([(_eku(*root_eku), False)] if root_eku else []),
    )
    ca = _ca_with(root, "EKU Path CA", *([(_eku(*ca_eku), False)] if ca_eku else []))
    d = run(_leaf_with(ca, (_eku(*leaf_eku), False)), [ca, root])
    assert d.valid is valid, [p.message for p in d.problems]


@pytest.mark.parametrize(("bits", "valid"), [(b"\x05\x20", False), (b"\x06\x40", True)])
def test_netscape_certificate_type_must_allow_ssl_server(bits, valid):
    """A leaf whose (old) Netscape certificate type excludes SSL server: OpenSSL and the JVM refuse it."""
    ns_type = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.16.840.1.113730.1.1"), b"\x03\x02" + bits)
    root = pkigen.make_root("NS Root")
    ca = pkigen.make_intermediate("NS CA", root)
    d = run(_leaf_with(ca, (ns_type, False)), [ca, root])
    assert d.valid is valid
    if not valid:
        assert any("Netscape certificate type" in p.message for p in d.problems)


def _dns_constrained_leaf(permitted, excluded, *, subject_cn=HOST, san=None):
    root, ca = _constrained(permitted, excluded)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    leaf = _leaf_with(ca, subject=subject, san=san if san is not None else (x509.DNSName(subject_cn),))
    return run(leaf, [ca, root], hostname=None)


def test_common_name_is_constrained_when_the_san_holds_only_ip_addresses():
    """OpenSSL checks the CN as a DNS name unless the SAN has one: an IP address does not count."""
    d = _dns_constrained_leaf(
        None,
        [x509.DNSName("evil.test")],
        subject_cn="erp.evil.test",
        san=(x509.IPAddress(ipaddress.ip_address("10.0.0.1")),),
    )
    assert not d.valid and any("DNS name erp.evil.test is excluded" in p.message for p in d.problems)


@pytest.mark.parametrize(
    ("permitted", "excluded", "name", "valid"),
    [
        ([".example.test"], None, "api.example.test", True),
        ([".example.test"], None, "example.test", False),  # a leading dot permits only names below
        (["example.test"], None, "example.test", True),
        (None, [".evil.test"], "evil.test", False),  # ... but excludes the domain too, to be safe
    ],
)
def test_a_leading_dot_in_a_dns_base(permitted, excluded, name, valid):
    dns = [x509.DNSName(b) for b in permitted] if permitted else None
    excl = [x509.DNSName(b) for b in excluded] if excluded else None
    assert _dns_constrained_leaf(dns, excl, subject_cn=name).valid is valid


@pytest.mark.parametrize(
    ("permitted", "excluded", "san"),
    [
        (None, [x509.RFC822Name("@evil.test")], x509.RFC822Name("admin@evil.test")),  # OpenSSL: any mailbox there
        (
            None,
            [x509.UniformResourceIdentifier("evil.test")],
            x509.UniformResourceIdentifier("https://evil.test:1@good.test/"),
        ),
        ([x509.UniformResourceIdentifier("good.test")], None, x509.UniformResourceIdentifier("https://good.test?x")),
        (
            None,
            [x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))],
            x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
        ),
    ],
    ids=["email-at-host", "uri-userinfo-host", "uri-query", "registered-id"],
)
def test_names_openssl_reads_otherwise_are_refused(permitted, excluded, san):
    """Where OpenSSL reads a name or a base differently (or not at all), the stricter reading wins."""
    assert not _dns_constrained_leaf(permitted, excluded, san=(x509.DNSName(HOST), san)).valid


def test_a_utf8_email_address_in_the_subject_fails_under_any_constraint():
    root, ca = _constrained([x509.DNSName(HOST)], None)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, HOST),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.test", _type=_ASN1Type.UTF8String),
        ]
    )
    d = run(_leaf_with(ca, subject=subject), [ca, root])
    assert not d.valid and any("not an IA5String" in p.message for p in d.problems)


@pytest.mark.parametrize(
    "subject_org",
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "banned"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban\tned"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BANNED", _type=_ASN1Type.IA5String),
    ],
    ids=["case", "tab", "ia5"],
)
def test_directory_exclusions_match_as_loosely_as_either_validator(subject_org):
    """An excluded directory name matches whenever OpenSSL's looser comparison would."""
    banned = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban ned" if "\t" in subject_org.value else "Banned")]
    )
    root, ca = _constrained(None, [x509.DirectoryName(banned)])
    subject = x509.Name([subject_org, x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    d = run(_leaf_with(ca, subject=subject), [ca, root])
    assert not d.valid and any("excluded directory name" in p.message for p in d.problems)


def _policies(*oids):
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in oids])


def _require_explicit(skip=0):
    return x509.PolicyConstraints(require_explicit_policy=skip, inhibit_policy_mapping=None)


POLICY, OTHER, ANY_POLICY = "1.3.6.1.4.1.99999.1", "1.3.6.1.4.1.99999.2", "2.5.29.32.0"


def _policy_mapping(issuer_domain, subject_domain):
    """policyMappings, which cryptography cannot build: SEQUENCE OF SEQUENCE { OID, OID }."""
    from chainwarden.der import oid_content
    from corpus.build import _tlv

    def encoded(dotted):
        return _tlv(0x06, oid_content(dotted))

    pair = _tlv(0x30, encoded(issuer_domain) + encoded(subject_domain))
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.33"), _tlv(0x30, pair))


@pytest.mark.parametrize(
    ("ca_extensions", "leaf_extensions", "valid"),
    [
        ((), ((_require_explicit(), True),), False),  # the leaf requires a policy and has none
        (((_policies(POLICY), False),), ((_require_explicit(), True), (_policies(POLICY), False)), True),
        (((_require_explicit(), True), (_policies(POLICY), False)), (), False),  # required from the CA down
        (((_require_explicit(), True), (_policies(POLICY), False)), ((_policies(OTHER), False),), False),
        (((_require_explicit(), True), (_policies(POLICY), False)), ((_policies(POLICY), False),), True),
        (((_require_explicit(), True), (_policies(ANY_POLICY), False)), ((_policies(POLICY), False),), True),
        (
            ((_require_explicit(), True), (x509.InhibitAnyPolicy(0), True), (_policies(ANY_POLICY), False)),
            ((_policies(ANY_POLICY), False),),
            False,  # anyPolicy no longer counts below the CA
        ),
        (
            ((_require_explicit(), True), (_policies(POLICY), False), (_policy_mapping(POLICY, OTHER), True)),
            ((_policies(OTHER), False),),
            True,  # the CA maps its policy to the one the leaf asserts
        ),
    ],
    ids=[
        "leaf-requires",
        "leaf-requires-met",
        "ca-requires",
        "ca-requires-other",
        "ca-requires-met",
        "ca-any-leaf-specific",
        "inhibit-any",
        "mapped",
    ],
)
def test_certificate_policies_where_a_certificate_requires_one(ca_extensions, leaf_extensions, valid):
    """The JVM processes certificate policies: a path fails where requireExplicitPolicy is reached and
    no policy is common to the certificates from there down."""
    root = pkigen.make_root("Policy Root")
    ca = _ca_with(root, "Policy CA", *ca_extensions)
    d = run(_leaf_with(ca, *leaf_extensions), [ca, root])
    assert d.valid is valid, [p.message for p in d.problems]
    if not valid:
        assert any("certificate policy is required" in p.message for p in d.problems)


def test_an_expired_copy_on_an_alternative_path_is_told_apart_by_its_digest():
    """Two intermediates of one name (an expired copy beside its renewal): the note names the copy's digest."""
    root = pkigen.make_root("Copy Root")
    key = pkigen.new_key("ec")
    current = pkigen.make_intermediate("Copy CA", root, key=key)
    expired = pkigen.make_intermediate(
        "Copy CA", root, key=key, not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=10)
    )
    d = run(pkigen.make_leaf([HOST], current), [expired, current, root])
    assert d.valid
    (note,) = [n for n in d.notes if n.startswith("alternative path")]
    assert f"[sha256 {describe(expired.cert).short_id}]" in note and "expired" in note


def test_policy_qualifiers_in_a_critical_certificate_policies_fail():
    """The JVM's validator rejects policy qualifiers in a critical certificatePolicies by default."""
    cps = x509.PolicyInformation(x509.ObjectIdentifier(POLICY), ["https://ca.example.test/cps"])
    root = pkigen.make_root("CPS Root")
    ca = pkigen.make_intermediate("CPS CA", root)
    d = run(_leaf_with(ca, (x509.CertificatePolicies([cps]), True)), [ca, root])
    assert not d.valid and any("policy qualifiers" in p.message for p in d.problems)
    assert run(_leaf_with(ca, (x509.CertificatePolicies([cps]), False)), [ca, root]).valid


@pytest.mark.parametrize(
    ("permitted", "excluded", "san", "valid"),
    [
        ([x509.RFC822Name("@example.test")], None, x509.RFC822Name("admin@example.test"), False),  # JVM: one mailbox
        (None, [x509.RFC822Name("Admin@evil.test")], x509.RFC822Name("admin@evil.test"), False),  # JVM: any case
        ([x509.RFC822Name("Admin@example.test")], None, x509.RFC822Name("admin@example.test"), False),  # OpenSSL
        ([x509.DNSName("example.test")], None, x509.DNSName("x.example.test."), False),  # OpenSSL: not within
    ],
    ids=["permit-at-host", "exclude-local-case", "permit-local-case", "permit-trailing-dot"],
)
def test_mailbox_and_trailing_dot_readings(permitted, excluded, san, valid):
    root, ca = _constrained(permitted, excluded)
    sans = (x509.DNSName("erp.example.test"), san) if isinstance(san, x509.DNSName) else (x509.DNSName(HOST), san)
    d = run(_leaf_with(ca, san=sans), [ca, root], hostname=None)
    assert d.valid is valid, [p.message for p in d.problems]


def test_an_empty_subject_needs_a_critical_san():
    """The JVM cannot even parse a certificate with an empty subject and a non-critical SAN."""
    root = pkigen.make_root("Empty Root")
    ca = pkigen.make_intermediate("Empty CA", root)
    leaf = pkigen.custom_cert(x509.Name([]), ca, [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)])
    d = run(leaf, [ca, root])
    assert not d.valid and any("empty subject" in p.message for p in d.problems)
    critical = pkigen.custom_cert(x509.Name([]), ca, [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), True)])
    assert run(critical, [ca, root]).valid
