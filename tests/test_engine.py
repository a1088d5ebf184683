"""The engine on whole bundles: order, extras, leaves, endpoint state, client certificates, shared bundles."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chainwarden import pkigen
from chainwarden.bundle import read_bundle_bytes
from chainwarden.engine import Presented, Target, evaluate, finish_shared_bundles
from chainwarden.report import Code, Severity, Verdict

NOW = pkigen.EPOCH + dt.timedelta(days=10)
HOST = "erp.example.test"


def target(bundle_path="/b.pem", name="erp"):
    return Target("prod.json", name, f"{HOST}:443", HOST, bundle_path)


def run(bundle_bytes, presented=None, *, now=NOW, client=None, bundle_path="/b.pem", name="erp"):
    ev = evaluate(
        target(bundle_path, name),
        read_bundle_bytes(bundle_bytes, bundle_path),
        presented,
        now,
        client_chain=read_bundle_bytes(client, "/client.pem") if client is not None else None,
    )
    return ev


def codes(result):
    return {p.code for p in result.problems}


def probe(*items):
    return Presented(tuple(i.cert for i in items), "probe")


def test_healthy_bundle_is_ok(pki):
    """Intermediate + root, leaf probed: verdict ok, complete, chain leaf->intermediate->root from the right sources."""
    result = finish_shared_bundles(
        [run(pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.leaf, pki.intermediate))]
    )[0]
    assert result.verdict is Verdict.OK and result.complete and result.endpoint_verified
    assert [(e.role.value, e.source.value) for e in result.chain] == [
        ("leaf", "endpoint"),
        ("intermediate", "bundle"),
        ("root", "bundle"),
    ]
    assert result.probe_ok is True


def test_wrong_order(pki):
    """Root before intermediate: wrong_order (warning), still complete."""
    result = run(pkigen.pem_bundle(pki.root, pki.intermediate), probe(pki.leaf)).result
    assert Code.WRONG_ORDER in codes(result) and result.complete and result.verdict is Verdict.WARNING


def test_leaf_in_bundle_is_info(pki):
    """The endpoint's own certificate after the root: leaf_in_bundle (info), verdict stays ok."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root, pki.leaf), probe(pki.leaf)).result
    assert Code.LEAF_IN_BUNDLE in codes(result) and result.verdict is Verdict.OK


def test_leaf_taken_from_bundle_offline(pki):
    """No probe: the leaf inside the bundle is used, and the report says the live endpoint was not checked."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root, pki.leaf)).result
    assert result.complete and not result.endpoint_verified
    assert {Code.LEAF_IN_BUNDLE, Code.ENDPOINT_NOT_VERIFIED} <= codes(result)
    assert result.verdict is Verdict.OK  # both are info


def test_structural_check_without_any_leaf(pki):
    """Offline, no leaf anywhere: the bundle's CA structure is checked and endpoint_not_verified is a
    warning; the bundle is never called complete, since only the leaf shows a missing intermediate."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root)).result
    assert not result.complete and result.structure_sound is True and result.verdict is Verdict.WARNING
    assert Code.ENDPOINT_NOT_VERIFIED in codes(result)
    root_only = run(pkigen.pem_bundle(pki.root)).result  # lacks the intermediate, which nothing here shows
    assert not root_only.complete and root_only.structure_sound is True
    broken = run(pkigen.pem_bundle(pki.intermediate)).result
    assert Code.MISSING_ROOT in codes(broken) and not broken.complete and broken.structure_sound is False
    with_leaf = run(pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.leaf)).result
    assert with_leaf.complete and with_leaf.structure_sound is None


def test_unrelated_certificate(pki):
    """A root of another PKI in the bundle is on no path: unrelated_certificate."""
    other = pkigen.make_root("Stranger Root")
    result = finish_shared_bundles([run(pkigen.pem_bundle(pki.intermediate, pki.root, other), probe(pki.leaf))])[0]
    unrelated = [p for p in result.problems if p.code is Code.UNRELATED_CERTIFICATE]
    assert len(unrelated) == 1 and "Stranger Root" in unrelated[0].message


def test_shared_bundle_certificates_are_related_across_connections():
    """Two connections sharing one bundle: each one's chain is not 'unrelated' for the other."""
    a = pkigen.three_tier(HOST, label="Share A")
    b = pkigen.three_tier(HOST, label="Share B")
    bundle = pkigen.pem_bundle(a.intermediate, b.intermediate, a.root, b.root)
    results = finish_shared_bundles([run(bundle, probe(a.leaf), name="a"), run(bundle, probe(b.leaf), name="b")])
    for result in results:
        assert Code.UNRELATED_CERTIFICATE not in codes(result), result.problems


def test_unused_expired_certificate():
    """An expired old intermediate next to its renewal: unused_expired_certificate, and the renewal is the path."""
    root = pkigen.make_root("UE Root")
    key = pkigen.new_key()
    old = pkigen.make_intermediate(
        "UE Issuing", root, key=key, not_before=NOW - dt.timedelta(days=900), not_after=NOW - dt.timedelta(days=2)
    )
    new = pkigen.make_intermediate("UE Issuing", root, key=key, not_before=NOW - dt.timedelta(days=20))
    leaf = pkigen.make_leaf([HOST], new)
    result = finish_shared_bundles([run(pkigen.pem_bundle(new, old, root), probe(leaf))])[0]
    assert Code.UNUSED_EXPIRED_CERTIFICATE in codes(result)
    assert Code.UNRELATED_CERTIFICATE not in codes(result)  # reported once, under the more precise code
    assert result.complete and result.verdict is Verdict.WARNING


def test_duplicate_is_reported_once(pki):
    """The intermediate twice: one duplicate_certificate warning."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.intermediate, pki.root), probe(pki.leaf)).result
    assert [p.code for p in result.problems].count(Code.DUPLICATE_CERTIFICATE) == 1


def test_endpoint_unreachable_with_cached_chain(pki):
    """Probe failed, cached chain known: endpoint_unreachable is a warning and the bundle is still checked."""
    cached = Presented((pki.leaf.cert,), "cache", "erp.example.test:443: connection refused")
    result = run(pkigen.pem_bundle(pki.root), cached).result
    assert Code.ENDPOINT_UNREACHABLE in codes(result) and Code.MISSING_INTERMEDIATE in codes(result)
    unreachable = next(p for p in result.problems if p.code is Code.ENDPOINT_UNREACHABLE)
    assert unreachable.severity is Severity.WARNING and "last chain" in unreachable.message
    assert result.probe_ok is False


def test_endpoint_unreachable_without_any_leaf_is_an_error(pki):
    """Probe failed and nothing known about the endpoint: endpoint_unreachable is an error."""
    failed = Presented((), "probe", "erp.example.test:443: connection refused")
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root), failed).result
    unreachable = next(p for p in result.problems if p.code is Code.ENDPOINT_UNREACHABLE)
    assert unreachable.severity is Severity.ERROR and result.verdict is Verdict.ERROR


def test_cached_chain_without_probe_reports_no_probe_result(pki):
    """A chain merely loaded from the cache does not count as a successful probe."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root), Presented((pki.leaf.cert,), "cache")).result
    assert result.probe_ok is None


def test_self_signed_endpoint(pki):
    """A self-signed endpoint certificate is trusted only when the bundle holds exactly it."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOST)])
    selfsigned = pkigen.custom_cert(
        name, None, [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)], not_after=NOW + dt.timedelta(days=300)
    )
    assert run(selfsigned.pem, probe(selfsigned)).result.complete
    missing = run(pki.root.pem, probe(selfsigned)).result
    assert not missing.complete and Code.MISSING_ROOT in codes(missing)


def _sha1_intermediate_by_openssl(root, folder):
    """An intermediate CA signed by `root` with SHA-1, made by the openssl command (cryptography no
    longer creates SHA-1 signatures)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("cryptography refuses SHA-1 signatures and openssl is not installed")
    (folder / "root.pem").write_bytes(root.pem)
    (folder / "root.key").write_bytes(root.key_pem())
    (folder / "ext.cnf").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
    )
    inter = pkigen.new_key("rsa")
    (folder / "inter.key").write_bytes(
        inter.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    subprocess.run(
        [openssl, "req", "-new", "-key", folder / "inter.key", "-subj", "/CN=SHA1 Issuing", "-out", folder / "csr"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [openssl, "x509", "-req", "-in", folder / "csr", "-CA", folder / "root.pem", "-CAkey", folder / "root.key",
         "-set_serial", "7", "-days", "30", "-sha1", "-extfile", folder / "ext.cnf", "-out", folder / "inter.pem"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return pkigen.Issued(x509.load_pem_x509_certificate((folder / "inter.pem").read_bytes()), inter)


def test_weak_signature_algorithm(tmp_path):
    """An intermediate signed with SHA-1 is a weak_algorithm warning; the path still validates."""
    root = pkigen.make_root("SHA1 Root")
    try:
        inter = pkigen.custom_cert(
            pkigen.name("SHA1 Issuing"),
            root,
            [(x509.BasicConstraints(ca=True, path_length=0), True)],
            kind="rsa",
            hash_alg=hashes.SHA1(),
        )
    except UnsupportedAlgorithm:
        inter = _sha1_intermediate_by_openssl(root, tmp_path)
    assert isinstance(inter.cert.signature_hash_algorithm, hashes.SHA1)
    leaf = pkigen.make_leaf([HOST], inter)
    result = run(pkigen.pem_bundle(inter, root), probe(leaf)).result
    weak = [p for p in result.problems if p.code is Code.WEAK_ALGORITHM]
    assert weak and weak[0].severity is Severity.WARNING and result.complete


def _keycertchain(client, *chain, keys=1):
    out = b""
    for _ in range(keys):
        out += client.key_pem()
    return out + pkigen.pem_bundle(client, *chain)


def test_client_cert_keycertchain_ok_and_key_never_shown():
    """A valid keycertchain adds no problem, and no byte of its key appears in the report."""
    ca = pkigen.three_tier(HOST, label="Client CA")
    client = pkigen.make_leaf(["client"], ca.intermediate, server_auth=False, client_auth=True)
    pki = pkigen.three_tier(HOST, label="Srv")
    material = _keycertchain(client, ca.intermediate, ca.root)
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.leaf), client=material).result
    assert result.verdict is Verdict.OK, result.problems
    body = b"".join(client.key_pem().splitlines()[1:-1]).decode()
    rendered = repr(result) + str(result.to_json())
    assert body[:40] not in rendered and body[-40:] not in rendered


def test_client_cert_expired_and_two_keys():
    """An expired client certificate and a file with two keys are reported against the client_cert file."""
    ca = pkigen.three_tier(HOST, label="Client CA2")
    client = pkigen.make_leaf(["client"], ca.intermediate, client_auth=True, not_after=NOW - dt.timedelta(days=1))
    pki = pkigen.three_tier(HOST, label="Srv2")
    result = run(
        pkigen.pem_bundle(pki.intermediate, pki.root),
        probe(pki.leaf),
        client=_keycertchain(client, ca.intermediate, keys=2),
    ).result
    messages = [p.message for p in result.problems]
    assert any(
        p.code is Code.EXPIRED and "client certificate file (secrets.client_cert)" in p.message
        for p in result.problems
    ), messages
    assert any(p.code is Code.CLIENT_CERT_INVALID and "2 private keys" in p.message for p in result.problems), messages


def test_client_cert_unreadable():
    """A client_cert path that cannot be read is client_cert_invalid."""
    pki = pkigen.three_tier(HOST, label="Srv3")
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.leaf), client=b"").result
    assert Code.CLIENT_CERT_INVALID in codes(result)


def test_1024_bit_rsa_is_accepted_like_the_jvm():
    """An intermediate with a 1024-bit RSA key is not weak_algorithm: 1024 is the JVM's floor."""
    root = pkigen.make_root("Tiny Root")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert small.key_size == 1024
    pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert b"PRIVATE KEY" in pem  # 1024 is the JVM's floor: accepted
    inter = pkigen.make_intermediate("Tiny Issuing", root, key=small)
    leaf = pkigen.make_leaf([HOST], inter)
    result = run(pkigen.pem_bundle(inter, root), probe(leaf)).result
    assert Code.WEAK_ALGORITHM not in codes(result)


def _name(*rdns: list[x509.NameAttribute]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in rdns])


_CN = x509.NameAttribute(x509.NameOID.COMMON_NAME, "Grouped Root")
_O = x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Example")


@pytest.mark.parametrize(
    ("root_subject", "leaf_issuer", "complete"),
    [
        (_name([_O], [_CN]), _name([_O, _CN]), False),  # O=..., CN=... vs O=...+CN=...: different names
        (_name([_O, _CN]), _name([_O], [_CN]), False),
        (_name([_O, _CN]), _name([_CN, _O]), True),  # one multi-valued RDN, attributes listed in either order
    ],
)
def test_rdn_grouping_is_part_of_the_name(tmp_path, root_subject, leaf_issuer, complete):
    """A leaf whose issuer groups the root's attributes differently is not issued by it for OpenSSL,
    even when the root's key signed it: complete only when `openssl verify` agrees."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (scripts/bootstrap.sh installs it)")
    root = pkigen.custom_cert(root_subject, None, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    leaf_key = pkigen.new_key("ec")
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOST)]))
        .issuer_name(leaf_issuer)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)
        .sign(root.key, hashes.SHA256())
    )
    (tmp_path / "root.pem").write_bytes(pkigen.pem_bundle(root))
    (tmp_path / "leaf.pem").write_bytes(pkigen.pem_bundle(leaf))
    verified = subprocess.run(
        [openssl, "verify", "-no-CApath", "-no-CAstore", "-attime", str(int(NOW.timestamp())),
         "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        timeout=60,
    )
    assert (verified.returncode == 0) is complete, verified.stderr
    result = run(pkigen.pem_bundle(root), Presented((leaf,), "probe")).result
    assert result.complete is complete
    if not complete:
        assert Code.MISSING_INTERMEDIATE in codes(result)


def test_self_signed_ca_leaf_needs_that_very_certificate_in_the_bundle(pki):
    """A self-signed CA certificate presented as the endpoint's own is trusted only when the bundle
    holds it (OpenSSL: 'self-signed certificate'; the JVM: no path)."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOST)])
    extensions = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName(HOST)]), False),
    ]
    selfsigned = pkigen.custom_cert(name, None, extensions)
    missing = run(pki.root.pem, probe(selfsigned)).result
    assert not missing.complete and Code.MISSING_ROOT in codes(missing)
    assert run(selfsigned.pem, probe(selfsigned)).result.complete


def test_a_certificate_block_no_one_can_decode_fails_the_whole_bundle(pki):
    """OpenSSL's loader and the JVM's generateCertificates fail on it: never complete, whatever else
    the bundle holds; a BER length alone (both read it) does not."""
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root) + garbage, probe(pki.leaf)).result
    assert Code.BLOCK_UNREADABLE in codes(result) and not result.complete
    other = pkigen.three_tier("other.example.test").intermediate.cert.public_bytes(serialization.Encoding.DER)
    assert other[:2] == b"\x30\x82"
    ber = b"\x30\x83\x00" + other[2:]
    ber_block = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(ber) + b"-----END CERTIFICATE-----\n"
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root) + ber_block, probe(pki.leaf)).result
    assert Code.BLOCK_UNREADABLE in codes(result) and result.complete


def test_a_line_starting_with_nul_ends_what_openssl_reads(pki):
    """OpenSSL's PEM reader takes such a line for the end of the file: the root after it is lost."""
    result = run(pki.intermediate.pem + b"\x00\n" + pki.root.pem, probe(pki.leaf)).result
    assert not result.complete
    assert any("NUL byte" in p.message for p in result.problems if p.code is Code.FORMAT_NONSTANDARD)
    inside = run(pki.intermediate.pem + b"note\x00here\n" + pki.root.pem, probe(pki.leaf)).result
    assert inside.complete  # a NUL later in a line is only text between blocks


def test_a_name_openssl_cannot_decode_fails_the_whole_bundle(pki):
    """A VisibleString name: cryptography and the JVM read it, OpenSSL refuses to load the file."""
    from cryptography.x509.name import _ASN1Type

    visible = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Visible Root", _type=_ASN1Type.VisibleString)])
    extra = pkigen.custom_cert(visible, None, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root, extra), probe(pki.leaf)).result
    assert not result.complete
    (refusal,) = [p for p in result.problems if "OpenSSL would not load the file" in p.message]
    assert "VisibleString" in refusal.message and refusal.severity is Severity.ERROR


def test_a_ca_certificate_presented_first_is_pointed_out(pki):
    """A bundle given as --chain starts with a CA: say so rather than only report a host name mismatch."""
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.intermediate, pki.root)).result
    assert any("is a CA certificate" in note for note in result.notes)
    assert not any("is a CA certificate" in note for note in run(pki.root.pem, probe(pki.leaf)).result.notes)


def test_a_link_only_in_an_unread_block_is_marked_so(pki):
    """A BOM before the first block hides the intermediate from OpenSSL and the JVM: the chain drawn to
    explain what is missing says so, in JSON and text, instead of 'from bundle' alone."""
    from chainwarden.render import result_text

    result = run(b"\xef\xbb\xbf" + pkigen.pem_bundle(pki.intermediate, pki.root), probe(pki.leaf)).result
    assert not result.complete
    (hidden,) = [e for e in result.chain if e.unread]
    assert hidden.subject == pki.intermediate.cert.subject.rfc4514_string()
    assert hidden.to_json()["unread_by_consumers"] is True
    assert "from bundle, in a block OpenSSL and the JVM would not read" in result_text(result)
    plain = run(pki.root.pem + pki.intermediate.pem, probe(pki.leaf)).result.to_json()
    assert not any("unread_by_consumers" in entry for entry in plain["chain"])


# --------------------------------------------------------------------------------------------
# The client_cert keycertchain: its path is a secrets value, roles are named, the key must match


def _rendered(result):
    import json

    return repr(result) + json.dumps(result.to_json())


def _client_result(path, *, now=NOW):
    from chainwarden.bundle import read_bundle_file

    pki = pkigen.three_tier(HOST, label="Srv KCC")
    return evaluate(
        target(),
        read_bundle_bytes(pkigen.pem_bundle(pki.intermediate, pki.root), "/b.pem"),
        probe(pki.leaf),
        now,
        client_chain=read_bundle_file(path),
    ).result


def test_client_cert_path_is_never_printed(tmp_path):
    """secrets.client_cert is a secrets value: no message names its path, whether the file is missing,
    holds no key or holds an expired certificate; each says "the client certificate file (secrets.client_cert)"."""
    secret_dir = tmp_path / "cw-secret-folder-5150"
    secret_dir.mkdir()
    ca = pkigen.three_tier(HOST, label="Client CA path")
    expired = pkigen.make_leaf(["client"], ca.intermediate, client_auth=True, not_after=NOW - dt.timedelta(days=1))
    no_key = secret_dir / "client4.keycertchain"
    no_key.write_bytes(pkigen.pem_bundle(expired, ca.intermediate))
    for path in (secret_dir / "nowhere.keycertchain", no_key):
        result = _client_result(path)
        said = [p for p in result.problems if p.code in (Code.CLIENT_CERT_INVALID, Code.EXPIRED)]
        assert said, result.problems
        for problem in said:
            assert problem.message.startswith("the client certificate file (secrets.client_cert): "), problem
        rendered = _rendered(result)
        assert "cw-secret-folder-5150" not in rendered and "keycertchain" not in rendered


def test_client_cert_roles_are_named_from_the_first_certificate(tmp_path):
    """key + client certificate + intermediate: the client certificate is called that (not "root"),
    an expired intermediate is called an intermediate."""
    ca = pkigen.three_tier(HOST, label="Client CA roles")
    soon = pkigen.make_leaf(
        ["wcp-client"], ca.intermediate, client_auth=True, server_auth=False, not_after=NOW + dt.timedelta(days=5)
    )
    path = tmp_path / "client.keycertchain"
    path.write_bytes(soon.key_pem() + pkigen.pem_bundle(soon, ca.intermediate))
    result = _client_result(path)
    (expiring,) = [p for p in result.problems if p.code is Code.EXPIRING_SOON]
    assert "the client certificate CN=wcp-client expires on" in expiring.message, expiring.message
    assert "root" not in expiring.message
    late = _client_result(path, now=ca.intermediate.cert.not_valid_after_utc + dt.timedelta(days=1))
    inter_subject = ca.intermediate.cert.subject.rfc4514_string()
    (inter_expired,) = [p for p in late.problems if p.code is Code.EXPIRED and p.certificate == inter_subject]
    assert f"its intermediate CA certificate {inter_subject} expired" in inter_expired.message


def test_client_cert_key_must_belong_to_the_client_certificate(tmp_path):
    """A keycertchain whose key is not the client certificate's is client_cert_invalid (an error); the
    matching key passes; a key no decoder reads is reported too; no byte of either key is in a message."""
    ca = pkigen.three_tier(HOST, label="Client CA keys")
    client = pkigen.make_leaf(["client"], ca.intermediate, kind="ec", client_auth=True, server_auth=False)
    stranger = pkigen.new_key("ec")
    stranger_pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = pkigen.pem_bundle(client, ca.intermediate, ca.root)
    good, wrong, broken = tmp_path / "good.kcc", tmp_path / "wrong.kcc", tmp_path / "broken.kcc"
    good.write_bytes(client.key_pem() + chain)
    wrong.write_bytes(stranger_pem + chain)
    lines = client.key_pem().decode().splitlines(keepends=True)
    lines[1] = "A" * (len(lines[1]) - 1) + "\n"  # valid base64, not a key
    broken.write_bytes("".join(lines).encode() + chain)
    assert _client_result(good).verdict is Verdict.OK
    for path, needle in ((wrong, "does not belong to the client certificate"), (broken, "cannot be decoded")):
        result = _client_result(path)
        (problem,) = [p for p in result.problems if p.code is Code.CLIENT_CERT_INVALID]
        assert problem.severity is Severity.ERROR and needle in problem.message, problem
        rendered = _rendered(result)
        for pem in (stranger_pem, client.key_pem()):
            for line in pem.decode().splitlines()[1:-1]:
                assert line not in rendered


def test_an_inconsistent_rsa_key_or_a_key_without_end_line_is_reported(tmp_path):
    """An RSA key whose private exponent does not go with its modulus would sign wrongly; a key block
    that never ends cannot be read: both are client_cert_invalid, though the public half may match."""
    ca = pkigen.three_tier(HOST, label="Client CA rsa")
    client = pkigen.make_leaf(["client"], ca.intermediate, kind="rsa", client_auth=True, server_auth=False)
    chain = pkigen.pem_bundle(client, ca.intermediate, ca.root)
    numbers = client.key.private_numbers()
    bad = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d + 2, numbers.dmp1, numbers.dmq1, numbers.iqmp, numbers.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    bad_pem = bad.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    unended = client.key_pem().replace(b"-----END PRIVATE KEY-----\n", b"")
    for name, material in (("bad-d.kcc", bad_pem + chain), ("no-end.kcc", unended + chain)):
        (tmp_path / name).write_bytes(material)
        result = _client_result(tmp_path / name)
        assert any(
            p.code is Code.CLIENT_CERT_INVALID and "not a consistent key" in p.message for p in result.problems
        ), name
    (tmp_path / "good.kcc").write_bytes(client.key_pem() + chain)
    assert _client_result(tmp_path / "good.kcc").verdict is Verdict.OK


def test_a_certificate_the_jvm_cannot_parse_fails_the_whole_bundle(pki):
    """An extra certificate with an empty subject and a non-critical SAN: the JVM refuses the file."""
    san = x509.SubjectAlternativeName([x509.DNSName("x.test")])
    extra = pkigen.custom_cert(x509.Name([]), pki.root, [(san, False)])
    result = run(pkigen.pem_bundle(pki.intermediate, pki.root, extra), probe(pki.leaf)).result
    assert not result.complete
    assert any("the JVM would not load the file" in p.message for p in result.problems)
