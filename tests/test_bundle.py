"""Tests for chainwarden.bundle: reading trust bundles in every encoding found in the wild."""

from __future__ import annotations

import base64
import os
import re
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from chainwarden import pkigen
from chainwarden.bundle import (
    MAX_BUNDLE_BYTES,
    Block,
    BundleReading,
    read_bundle_bytes,
    read_bundle_file,
)
from chainwarden.report import Code, Problem, Severity

LETSENCRYPT = Path("/work/shared/data/letsencrypt")
PATH = "/etc/pki/test-bundle.pem"


@pytest.fixture(scope="module")
def pki() -> pkigen.ThreeTier:
    return pkigen.three_tier()


@pytest.fixture(scope="module")
def inter(pki: pkigen.ThreeTier) -> bytes:
    return pki.intermediate.pem


@pytest.fixture(scope="module")
def root(pki: pkigen.ThreeTier) -> bytes:
    return pki.root.pem


def read(data: bytes) -> BundleReading:
    return read_bundle_bytes(data, PATH)


def problems(reading: BundleReading, code: Code) -> list[Problem]:
    return [p for p in reading.problems if p.code is code]


def only(reading: BundleReading, code: Code) -> Problem:
    found = problems(reading, code)
    assert len(found) == 1, reading.problems
    return found[0]


def subjects(reading: BundleReading, *, consumer_only: bool = False) -> list[str]:
    return [c.subject.rfc4514_string() for c in reading.certificates(consumer_only=consumer_only)]


def name_of(issued: pkigen.Issued) -> str:
    return issued.cert.subject.rfc4514_string()


def base64_lines(pem: bytes) -> list[bytes]:
    return [line for line in pem.splitlines() if line and not line.startswith(b"-----")]


def one_line(pem: bytes, joiner: bytes) -> bytes:
    """The PEM with every line break replaced by `joiner`."""
    return joiner.join(pem.rstrip(b"\n").split(b"\n"))


def relabel(pem: bytes, label: bytes) -> bytes:
    return pem.replace(b"CERTIFICATE-----", label + b"-----")


def pem_of(der: bytes, label: bytes = b"CERTIFICATE") -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN " + label + b"-----\n" + lines + b"\n-----END " + label + b"-----\n"


def assert_clean(reading: BundleReading) -> None:
    assert reading.problems == (), reading.problems
    assert all(block.consumer_readable for block in reading.blocks)


# --- PEM variants ------------------------------------------------------------------------------


def test_plain_pem_reads_every_certificate_in_order(pki: pkigen.ThreeTier) -> None:
    """A plain PEM bundle yields its certificates in file order with no problem at all."""
    reading = read(pkigen.pem_bundle(pki.intermediate, pki.root, pki.leaf))
    assert_clean(reading)
    assert reading.encoding == "pem"
    assert reading.readable
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.root), name_of(pki.leaf)]
    assert [(b.index, b.kind, b.label, b.line) for b in reading.blocks] == [
        (1, "certificate", "CERTIFICATE", 1),
        (2, "certificate", "CERTIFICATE", reading.blocks[1].line),
        (3, "certificate", "CERTIFICATE", reading.blocks[2].line),
    ]
    assert reading.blocks[1].line == len(pki.intermediate.pem.splitlines()) + 1


def test_crlf_line_endings_are_info_and_stay_consumer_readable(inter: bytes, root: bytes) -> None:
    """CRLF line endings give one info note and every certificate stays consumer-readable."""
    reading = read((inter + root).replace(b"\n", b"\r\n"))
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.INFO  # read identically by OpenSSL and the JVM
    assert "CRLF" in problem.message
    assert len(reading.certificates(consumer_only=True)) == 2


def test_bom_before_first_begin_hides_that_block_from_strict_consumers(
    pki: pkigen.ThreeTier, inter: bytes, root: bytes
) -> None:
    """A UTF-8 BOM glued to the first BEGIN line makes block 1 consumer-unreadable (error)."""
    reading = read(b"\xef\xbb\xbf" + inter + root)
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.root)]
    assert [b.consumer_readable for b in reading.blocks] == [False, True]
    assert subjects(reading, consumer_only=True) == [name_of(pki.root)]
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert problem.message.startswith(f"bundle {PATH}, block 1 (line 1): ")
    assert "would not read this certificate" in problem.message
    assert "BOM" in problem.message
    assert problem.certificate == name_of(pki.intermediate)


def test_bom_before_text_is_never_an_error(inter: bytes) -> None:
    """A BOM in front of leading text (not a BEGIN line) is a warning; the block stays readable."""
    reading = read(b"\xef\xbb\xbfsubject=CN = Demo\n" + inter)
    assert all(p.severity in (Severity.WARNING, Severity.INFO) for p in reading.problems)
    assert any("byte order mark" in p.message for p in reading.problems)
    assert reading.blocks[0].consumer_readable


def test_bag_attributes_and_openssl_text_are_text_outside_blocks(
    pki: pkigen.ThreeTier, inter: bytes, root: bytes
) -> None:
    """Bag Attributes / subject= / issuer= lines from openssl output give one warning with lines."""
    bag = (
        b"Bag Attributes\n    friendlyName: issuing\n    localKeyID: 01 00 00 00\n"
        b"subject=C = US, O = Chainwarden Demo, CN = Demo Issuing CA 1\n"
        b"issuer=C = US, O = Chainwarden Demo, CN = Demo Root CA\n"
    )
    reading = read(bag + inter + b"\n" + b"Certificate:\n    Data:\n        Version: 3 (0x2)\n" + root)
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.INFO  # skipped identically by OpenSSL and the JVM
    assert "text outside the PEM blocks (lines 1-5, " in problem.message
    assert subjects(reading, consumer_only=True) == [name_of(pki.intermediate), name_of(pki.root)]
    assert reading.blocks[0].line == 6


def test_missing_final_newline_warns(inter: bytes, root: bytes) -> None:
    """A bundle not ending in a newline gets a warning; its last block is still readable."""
    reading = read((inter + root).rstrip(b"\n"))
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.WARNING
    assert "newline" in problem.message
    assert len(reading.certificates(consumer_only=True)) == 2


def test_x509_certificate_label_is_a_warning(pki: pkigen.ThreeTier, inter: bytes) -> None:
    """The old 'X509 CERTIFICATE' label is read, kept as written, and warned about."""
    reading = read(relabel(inter, b"X509 CERTIFICATE"))
    assert reading.blocks[0].label == "X509 CERTIFICATE"
    assert subjects(reading, consumer_only=True) == [name_of(pki.intermediate)]
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.WARNING
    assert "'X509 CERTIFICATE'" in problem.message


def test_trusted_certificate_with_trust_data_reads_the_leading_certificate(
    pki: pkigen.ThreeTier,
) -> None:
    """A TRUSTED CERTIFICATE (DER + OpenSSL trust data) is parsed; the JVM would not read it."""
    server_auth_trust = bytes.fromhex("300c300a06082b06010505070301")
    reading = read(pem_of(pki.root.der + server_auth_trust, b"TRUSTED CERTIFICATE"))
    block = reading.blocks[0]
    assert block.label == "TRUSTED CERTIFICATE"
    assert block.cert is not None and block.cert.public_bytes(serialization.Encoding.DER) == (pki.root.der)
    assert not block.consumer_readable
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert "JVM" in problem.message and "TRUSTED CERTIFICATE" in problem.message


def test_trusted_certificate_without_trust_data_is_only_a_warning(pki: pkigen.ThreeTier) -> None:
    """A TRUSTED CERTIFICATE block holding just the certificate is read by everyone: a warning."""
    reading = read(relabel(pki.root.pem, b"TRUSTED CERTIFICATE"))
    assert reading.blocks[0].consumer_readable
    assert only(reading, Code.FORMAT_NONSTANDARD).severity is Severity.WARNING


def test_glued_blocks_are_both_recovered_and_both_flagged(pki: pkigen.ThreeTier, inter: bytes, root: bytes) -> None:
    """'-----END CERTIFICATE----------BEGIN CERTIFICATE-----' gives one error naming both blocks."""
    data = inter.rstrip(b"\n") + root
    assert b"-----END CERTIFICATE----------BEGIN CERTIFICATE-----" in data
    reading = read(data)
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.root)]
    assert reading.certificates(consumer_only=True) == ()
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert f"bundle {PATH}, blocks 1 (line 1), 2 (line " in problem.message
    assert "glued" in problem.message
    assert problem.certificate is None


def test_spaces_instead_of_line_breaks_are_recovered_but_not_consumer_readable(
    pki: pkigen.ThreeTier, inter: bytes, root: bytes
) -> None:
    """A block flattened onto one line with spaces is still analysed, but flagged as an error."""
    reading = read(one_line(inter, b" ") + b"\n" + root)
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.root)]
    assert [b.consumer_readable for b in reading.blocks] == [False, True]
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert "block 1 (line 1)" in problem.message and "recovered" in problem.message


def test_spaces_inside_base64_lines_only_warn(pki: pkigen.ThreeTier, inter: bytes) -> None:
    """Base64 joined by spaces between proper BEGIN/END lines is still read: only a warning."""
    body = b" ".join(base64_lines(inter))
    reading = read(b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n")
    assert subjects(reading, consumer_only=True) == [name_of(pki.intermediate)]
    found = problems(reading, Code.FORMAT_NONSTANDARD)
    assert {p.severity for p in found} == {Severity.WARNING}
    assert any("spaces" in p.message for p in found)


def test_literal_backslash_n_is_recovered_but_not_consumer_readable(
    pki: pkigen.ThreeTier, inter: bytes, root: bytes
) -> None:
    """A PEM whose line breaks became the two characters \\n (escaped string) is recovered."""
    escaped = one_line(inter, b"\\n") + b"\\n" + one_line(root, b"\\n") + b"\\n\n"
    reading = read(escaped)
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.root)]
    assert reading.certificates(consumer_only=True) == ()
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert "\\n" in problem.message and "blocks 1 (line 1), 2 (line 1)" in problem.message


def test_long_base64_lines_warn(pki: pkigen.ThreeTier, inter: bytes) -> None:
    """Base64 on one long line between BEGIN and END lines is a warning, not an error."""
    body = b"".join(base64_lines(inter))
    reading = read(b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n")
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.WARNING and "longer than 64" in problem.message
    assert subjects(reading, consumer_only=True) == [name_of(pki.intermediate)]


def test_blank_line_inside_base64_is_an_error(inter: bytes) -> None:
    """A blank line inside the base64 (OpenSSL stops there) makes the block consumer-unreadable."""
    lines = inter.split(b"\n")
    data = b"\n".join([*lines[:3], b"", *lines[3:]])
    reading = read(data)
    assert reading.blocks[0].cert is not None and not reading.blocks[0].consumer_readable
    assert "blank line" in only(reading, Code.FORMAT_NONSTANDARD).message


def test_text_or_spaces_before_begin_on_the_same_line_is_an_error(inter: bytes) -> None:
    """A BEGIN marker that does not start its line is missed by OpenSSL and breaks the JVM."""
    reading = read(b"  " + inter)
    assert not reading.blocks[0].consumer_readable
    assert only(reading, Code.FORMAT_NONSTANDARD).severity is Severity.ERROR


def test_end_line_with_another_label_is_an_error(inter: bytes) -> None:
    """A block whose END line names another label is recovered but flagged."""
    reading = read(inter.replace(b"END CERTIFICATE", b"END X509 CERTIFICATE"))
    assert reading.blocks[0].cert is not None and not reading.blocks[0].consumer_readable
    assert "END line names another label" in only(reading, Code.FORMAT_NONSTANDARD).message


def test_orphan_end_line_breaks_the_next_block_for_the_jvm(inter: bytes, root: bytes) -> None:
    """An END line with no BEGIN line (a lost BEGIN line) flags the block after it for the JVM."""
    reading = read(inter + b"-----END CERTIFICATE-----\n" + root)
    assert [b.consumer_readable for b in reading.blocks] == [True, False]
    errors = [p for p in reading.problems if p.severity is Severity.ERROR]
    assert len(errors) == 1
    orphan_line = len(inter.splitlines()) + 1
    assert f"line {orphan_line} is an END CERTIFICATE line without a BEGIN" in errors[0].message


def test_text_starting_with_zero_after_a_block_breaks_the_jvm(inter: bytes, root: bytes) -> None:
    """The JVM reads a '0' right after an END line as binary DER; the next block is flagged."""
    reading = read(inter + b"0 s:CN = Demo Root CA\n" + root)
    assert [b.consumer_readable for b in reading.blocks] == [True, False]
    assert any("'0'" in p.message and p.severity is Severity.ERROR for p in reading.problems)


def test_trouble_after_the_last_block_is_reported_for_the_file(pki: pkigen.ThreeTier) -> None:
    """A lone END PRIVATE KEY line or '0' text after the last block gives file-level errors."""
    # A tail line starting with '0' would add the JVM's DER error: keep that to the last line.
    tail_lines = [b"A" + line[1:] for line in base64_lines(pki.leaf.key_pem())[-2:]]
    key_tail = b"\n".join(tail_lines) + b"\n-----END PRIVATE KEY-----\n"
    reading = read(pki.root.pem + key_tail + b"0 s:CN = x\n")
    assert reading.blocks[0].consumer_readable
    errors = [p.message for p in reading.problems if p.severity is Severity.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"bundle {PATH}: line ")
    assert "END PRIVATE KEY line without a BEGIN line (a private key may have lost" in errors[0]
    assert tail_lines[0].decode() not in everything_said(reading)
    zero = read(pki.root.pem + b"0 s:CN = x\n")
    assert any("after the last block starts with '0'" in p.message for p in zero.problems)


def test_block_without_end_line_is_unreadable_and_the_next_block_still_read(
    pki: pkigen.ThreeTier, inter: bytes, root: bytes
) -> None:
    """A block cut off before its END line is reported; the following block is still read."""
    truncated = inter.split(b"-----END")[0]
    reading = read(truncated + root)
    assert reading.blocks[0].cert is None and reading.blocks[0].error == "the block has no END line"
    assert subjects(reading) == [name_of(pki.root)]
    assert only(reading, Code.BLOCK_UNREADABLE).message == (
        f"bundle {PATH}, block 1 (line 1): the block has no END line"
    )


# --- unreadable blocks -------------------------------------------------------------------------


def test_corrupted_block_between_two_good_ones(pki: pkigen.ThreeTier) -> None:
    """A block with broken base64 is reported by number and line; both neighbours are read."""
    bad = pki.root.pem.replace(b"M", b"*", 2)
    data = pki.intermediate.pem + bad + pki.leaf.pem
    reading = read(data)
    assert subjects(reading) == [name_of(pki.intermediate), name_of(pki.leaf)]
    assert [b.cert is not None for b in reading.blocks] == [True, False, True]
    problem = only(reading, Code.BLOCK_UNREADABLE)
    line = reading.blocks[1].line
    assert problem.message.startswith(f"bundle {PATH}, block 2 (line {line}): ")
    assert "not base64" in problem.message
    assert reading.readable


def test_non_strict_der_certificate_is_block_unreadable(pki: pkigen.ThreeTier) -> None:
    """A certificate in BER (non-minimal length) is refused by cryptography and named as BER."""
    der = pki.intermediate.der
    assert der[:2] == b"\x30\x82"
    ber = b"\x30\x83\x00" + der[2:]
    reading = read(pki.root.pem + pem_of(ber) + pki.leaf.pem)
    assert subjects(reading) == [name_of(pki.root), name_of(pki.leaf)]
    problem = only(reading, Code.BLOCK_UNREADABLE)
    assert re.match(rf"bundle {PATH}, block 2 \(line \d+\): not a valid certificate: ", problem.message)
    assert "BER" in problem.message
    assert reading.blocks[1].error is not None and reading.blocks[1].kind == "certificate"


def test_certificate_with_trailing_bytes_is_block_unreadable(pki: pkigen.ThreeTier) -> None:
    """A CERTIFICATE block whose DER has bytes after the certificate is refused (not strict DER)."""
    reading = read(pem_of(pki.root.der + b"\x00\x00"))
    assert only(reading, Code.BLOCK_UNREADABLE).message.startswith(
        f"bundle {PATH}, block 1 (line 1): not a valid certificate: "
    )
    assert only(reading, Code.BUNDLE_UNREADABLE).message == (f"bundle {PATH}: holds no readable certificate")
    assert not reading.readable


# --- DER and PKCS#7 ----------------------------------------------------------------------------


def test_der_certificate_is_read_and_flagged_as_not_pem(pki: pkigen.ThreeTier) -> None:
    """A DER file yields its certificate, label and line None, and an error for PEM readers."""
    reading = read(pki.root.der)
    assert reading.encoding == "der"
    assert reading.blocks == (Block(1, "certificate", None, None, pki.root.cert, None, False),)
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR
    assert problem.message.startswith(f"bundle {PATH}, block 1: ") and "DER" in problem.message


def test_pkcs7_pem_yields_every_certificate(pki: pkigen.ThreeTier) -> None:
    """A PEM PKCS#7 (.p7b) file yields one block per certificate, flagged for PEM readers."""
    certs = [pki.intermediate.cert, pki.root.cert]
    reading = read(pkcs7.serialize_certificates(certs, serialization.Encoding.PEM))
    assert reading.encoding == "pkcs7-pem"
    assert set(subjects(reading)) == {name_of(pki.intermediate), name_of(pki.root)}
    assert [(b.index, b.label, b.line) for b in reading.blocks] == [
        (1, "PKCS7", 1),
        (2, "PKCS7", 1),
    ]
    assert only(reading, Code.FORMAT_NONSTANDARD).severity is Severity.ERROR


def test_pkcs7_der_yields_every_certificate(pki: pkigen.ThreeTier) -> None:
    """A DER PKCS#7 (.p7c) file yields one block per certificate."""
    certs = [pki.intermediate.cert, pki.root.cert, pki.leaf.cert]
    reading = read(pkcs7.serialize_certificates(certs, serialization.Encoding.DER))
    assert reading.encoding == "pkcs7-der"
    assert len(reading.certificates()) == 3
    assert [b.label for b in reading.blocks] == [None, None, None]
    assert "PKCS#7" in only(reading, Code.FORMAT_NONSTANDARD).message


def test_pkcs7_block_inside_a_pem_bundle_is_expanded(pki: pkigen.ThreeTier) -> None:
    """A PKCS7 block among CERTIFICATE blocks is read; its certificates are flagged for OpenSSL."""
    p7 = pkcs7.serialize_certificates([pki.root.cert], serialization.Encoding.PEM)
    reading = read(pki.leaf.pem + p7)
    assert reading.encoding == "pem"
    assert subjects(reading) == [name_of(pki.leaf), name_of(pki.root)]
    assert [b.consumer_readable for b in reading.blocks] == [True, False]


def test_detection_is_by_content_not_by_file_name(pki: pkigen.ThreeTier, tmp_path: Path) -> None:
    """A DER certificate named .pem and a PEM bundle named .der are each read correctly."""
    (tmp_path / "root.pem").write_bytes(pki.root.der)
    (tmp_path / "root.der").write_bytes(pki.root.pem)
    assert read_bundle_file(tmp_path / "root.pem").encoding == "der"
    assert read_bundle_file(tmp_path / "root.der").encoding == "pem"


# --- private keys ------------------------------------------------------------------------------


def key_blocks() -> list[bytes]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    password = serialization.BestAvailableEncryption(b"secret")
    return [
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, password),
        rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, password),
    ]


def everything_said(reading: BundleReading) -> str:
    parts = [repr(reading), str(reading)]
    parts += [p.message for p in reading.problems]
    parts += [repr(block) for block in reading.blocks]
    parts += [str(block.error) for block in reading.blocks]
    return "\n".join(parts)


def test_private_keys_are_counted_and_never_echoed(pki: pkigen.ThreeTier) -> None:
    """Every kind of private key is counted and reported once, without any of its bytes."""
    keys = key_blocks()
    data = keys[0] + pki.intermediate.pem + keys[1] + keys[2] + pki.root.pem + keys[3]
    reading = read(data)
    assert reading.private_key_count == 4
    assert [b.kind for b in reading.blocks] == [
        "private_key",
        "certificate",
        "private_key",
        "encrypted_private_key",
        "certificate",
        "encrypted_private_key",
    ]
    assert [b.label for b in reading.blocks if b.cert is None] == [
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "RSA PRIVATE KEY",
    ]
    for block in reading.blocks:
        if block.cert is None:
            assert block.error is None and not block.consumer_readable
    problem = only(reading, Code.PRIVATE_KEY_IN_BUNDLE)
    assert problem.severity is Severity.ERROR
    assert "4 private keys" in problem.message and "blocks 1 (line 1), 3 (line" in problem.message
    said = everything_said(reading)
    for key in keys:
        for line in base64_lines(key):
            if b":" not in line:  # skip Proc-Type / DEK-Info headers of the legacy format
                assert line[:24].decode() not in said
    assert len(reading.certificates(consumer_only=True)) == 2


def test_bundle_with_only_a_key_is_unreadable_and_counts_the_key(pki: pkigen.ThreeTier) -> None:
    """A file that holds nothing but a private key has no certificate and one key problem."""
    reading = read(pki.leaf.key_pem())
    assert not reading.readable and reading.private_key_count == 1
    assert only(reading, Code.BUNDLE_UNREADABLE).message == f"bundle {PATH}: holds no certificate"
    only(reading, Code.PRIVATE_KEY_IN_BUNDLE)


def test_der_private_keys_are_recognised_without_being_parsed() -> None:
    """DER PKCS#8, PKCS#1 and encrypted PKCS#8 keys count as keys; their bytes never leak."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    forms = [
        (serialization.PrivateFormat.PKCS8, serialization.NoEncryption(), "private_key"),
        (
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
            "private_key",
        ),
        (
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
            "encrypted_private_key",
        ),
    ]
    for form, encryption, kind in forms:
        der = key.private_bytes(serialization.Encoding.DER, form, encryption)
        reading = read(der)
        assert [b.kind for b in reading.blocks] == [kind]
        assert reading.private_key_count == 1 and not reading.readable
        assert base64.b64encode(der)[:24].decode() not in everything_said(reading)
        assert der[40:56].hex() not in everything_said(reading)


# --- duplicates --------------------------------------------------------------------------------


def test_duplicates_are_reported_once_per_certificate(pki: pkigen.ThreeTier, inter: bytes, root: bytes) -> None:
    """Each certificate present several times gives one warning naming it and its blocks."""
    reading = read(root + inter + root + inter + root)
    found = problems(reading, Code.DUPLICATE_CERTIFICATE)
    assert [(p.severity, p.certificate) for p in found] == [
        (Severity.WARNING, name_of(pki.root)),
        (Severity.WARNING, name_of(pki.intermediate)),
    ]
    assert "blocks 1 (line 1), 3 (line" in found[0].message and "3 times" in found[0].message
    assert subjects(reading) == [name_of(pki.root), name_of(pki.intermediate)]
    assert len(reading.blocks) == 5


def test_consumer_only_keeps_the_first_readable_copy(pki: pkigen.ThreeTier, root: bytes) -> None:
    """When the first copy is unreadable for consumers, consumer_only still finds the second one."""
    reading = read(b"\xef\xbb\xbf" + root + root)
    assert subjects(reading, consumer_only=True) == [name_of(pki.root)]
    assert reading.certificates(consumer_only=True)[0] is reading.blocks[1].cert


# --- whole-file failures -----------------------------------------------------------------------


def test_empty_and_blank_files_are_unreadable() -> None:
    """An empty or whitespace-only file is bundle_unreadable with encoding 'empty'."""
    for data, reason in ((b"", "the file is empty"), (b" \n\r\n", "holds only whitespace")):
        reading = read(data)
        assert reading.encoding == "empty" and reading.blocks == ()
        assert not reading.readable
        assert reason in only(reading, Code.BUNDLE_UNREADABLE).message


def test_binary_junk_is_unreadable() -> None:
    """Random binary data is bundle_unreadable and said to be binary."""
    reading = read(bytes(range(256)) * 4)
    assert reading.encoding == "unknown" and not reading.readable
    assert "binary" in only(reading, Code.BUNDLE_UNREADABLE).message


def test_utf16_text_is_unreadable_and_named(inter: bytes) -> None:
    """UTF-16 PEM, with or without a BOM, is bundle_unreadable and said to be UTF-16."""
    text = inter.decode()
    for data in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        reading = read(data)
        assert not reading.readable and reading.blocks == ()
        message = only(reading, Code.BUNDLE_UNREADABLE).message
        assert "UTF-16" in message and "PEM" in message


def test_text_without_pem_blocks_is_unreadable() -> None:
    """A text file with no BEGIN line is bundle_unreadable."""
    reading = read(b'{"not": "a bundle"}\n')
    assert reading.encoding == "unknown"
    assert "no PEM block" in only(reading, Code.BUNDLE_UNREADABLE).message


def test_bare_base64_is_recognised(inter: bytes) -> None:
    """Base64 without BEGIN/END lines is unreadable, and the message says what is missing."""
    reading = read(b"\n".join(base64_lines(inter)) + b"\n")
    assert "without -----BEGIN" in only(reading, Code.BUNDLE_UNREADABLE).message


def test_keystores_are_named(pki: pkigen.ThreeTier) -> None:
    """A PKCS#12 file or a Java keystore is unreadable and named as such."""
    p12 = pkcs12.serialize_key_and_certificates(
        b"leaf", pki.leaf.key, pki.leaf.cert, None, serialization.NoEncryption()
    )
    assert "PKCS#12" in only(read(p12), Code.BUNDLE_UNREADABLE).message
    jks = b"\xfe\xed\xfe\xed\x00\x00\x00\x02" + bytes(64)
    assert "Java keystore" in only(read(jks), Code.BUNDLE_UNREADABLE).message


def test_crl_block_is_not_a_certificate(pki: pkigen.ThreeTier, root: bytes) -> None:
    """An X509 CRL block is accounted for as kind 'crl' and flagged; the certificate is read."""
    now = pkigen.EPOCH
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.root.cert.subject)
        .last_update(now)
        .next_update(now + pkigen.DAY)
        .sign(pki.root.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    reading = read(root + crl)
    assert [b.kind for b in reading.blocks] == ["certificate", "crl"]
    problem = only(reading, Code.FORMAT_NONSTANDARD)
    assert problem.severity is Severity.ERROR and "X509 CRL" in problem.message


def test_zero_serial_number_loads_without_warnings() -> None:
    """A certificate with serial number 0 (as some Mozilla roots) loads with warnings as errors."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = pkigen.name("Zero Serial Root")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pkigen.EPOCH)
        .not_valid_after(pkigen.EPOCH + pkigen.DAY)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    version_and_serial = bytes.fromhex("a0030201020201") + b"\x01"
    assert der.count(version_and_serial) == 1
    zero = der.replace(version_and_serial, version_and_serial[:-1] + b"\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reading = read(pem_of(zero))
    assert len(reading.certificates()) == 1


# --- files -------------------------------------------------------------------------------------


def test_read_bundle_file_reads_a_file(pki: pkigen.ThreeTier, tmp_path: Path) -> None:
    """read_bundle_file reads a path (str or PathLike) and names it in the reading."""
    path = tmp_path / "chain.pem"
    path.write_bytes(pkigen.pem_bundle(pki.intermediate, pki.root))
    for given in (path, str(path)):
        reading = read_bundle_file(given)
        assert reading.path == str(path) and len(reading.certificates()) == 2


def unreadable_message(path: Path | str, **kwargs: int) -> str:
    reading = read_bundle_file(path, **kwargs)
    assert not reading.readable and reading.blocks == ()
    return only(reading, Code.BUNDLE_UNREADABLE).message


def test_file_over_max_bytes_is_unreadable_and_names_the_limit(inter: bytes, tmp_path: Path) -> None:
    """A file over max_bytes is refused with the limit in the message; one at the limit is read."""
    path = tmp_path / "big.pem"
    path.write_bytes(inter)
    assert read_bundle_file(path, max_bytes=len(inter)).readable
    message = unreadable_message(path, max_bytes=len(inter) - 1)
    assert f"the limit of {len(inter) - 1} bytes" in message


def test_file_over_the_default_limit_is_unreadable(tmp_path: Path) -> None:
    """The default limit is 8 MiB; a sparse file one byte over it is refused without parsing."""
    path = tmp_path / "huge.pem"
    with path.open("wb") as handle:
        handle.truncate(MAX_BUNDLE_BYTES + 1)
    assert "8 MiB" in unreadable_message(path)


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    """A path that does not exist gives bundle_unreadable naming the path."""
    path = tmp_path / "nope.pem"
    assert unreadable_message(path) == f"bundle {path}: cannot be read: the file does not exist"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory gives bundle_unreadable saying it is a directory."""
    assert "is a directory" in unreadable_message(tmp_path)


def test_symlink_loop_is_unreadable(tmp_path: Path) -> None:
    """A symbolic link loop gives bundle_unreadable saying so."""
    (tmp_path / "a.pem").symlink_to(tmp_path / "b.pem")
    (tmp_path / "b.pem").symlink_to(tmp_path / "a.pem")
    assert "symbolic link loop" in unreadable_message(tmp_path / "a.pem")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO is refused as not a regular file instead of blocking on open."""
    path = tmp_path / "fifo.pem"
    os.mkfifo(path)
    assert "not a regular file" in unreadable_message(path)


def test_invalid_path_is_unreadable() -> None:
    """A path with a NUL byte gives bundle_unreadable instead of raising."""
    assert "not valid" in unreadable_message("/tmp/bad\0name.pem")


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root ignores file permissions (as root, test_corpus checks permission denied as the user nobody)",
)
def test_permission_denied_is_unreadable(inter: bytes, tmp_path: Path) -> None:
    """An unreadable file, or one inside an unsearchable directory, gives 'permission denied'."""
    path = tmp_path / "secret.pem"
    path.write_bytes(inter)
    path.chmod(0)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "inner.pem").write_bytes(inter)
    locked.chmod(0)
    try:
        assert unreadable_message(path).endswith("cannot be read: permission denied")
        assert unreadable_message(locked / "inner.pem").endswith("permission denied")
    finally:
        locked.chmod(0o700)
        path.chmod(0o600)


def test_read_bundle_bytes_is_pure(inter: bytes) -> None:
    """read_bundle_bytes only uses its arguments: the path is a name, never opened."""
    reading = read_bundle_bytes(inter, "/does/not/exist.pem")
    assert reading.readable and reading.path == "/does/not/exist.pem"
    assert read_bundle_bytes(inter, "/does/not/exist.pem") == reading


# --- real files --------------------------------------------------------------------------------


@pytest.mark.skipif(not LETSENCRYPT.is_dir(), reason=f"{LETSENCRYPT} (shared real-certificate data) is absent")
def test_real_letsencrypt_files_load() -> None:
    """Let's Encrypt's published PEM files each load as one consumer-readable certificate."""
    files = sorted(LETSENCRYPT.rglob("*.pem"))
    assert files
    for path in files:
        reading = read_bundle_file(path)
        assert len(reading.certificates(consumer_only=True)) == 1, path
        assert all(p.severity in (Severity.WARNING, Severity.INFO) for p in reading.problems), reading.problems
    crlf = read_bundle_file(LETSENCRYPT / "isrg-root-x1-cross-signed.pem")
    if crlf.problems:
        assert "CRLF" in crlf.problems[0].message


def test_identical_bundles_share_their_reading_but_not_their_name(pki):
    """Copies of one clean bundle are parsed once; a copy with a problem still names its own path."""
    clean = pkigen.pem_bundle(pki.intermediate, pki.root)
    first, second = read_bundle_bytes(clean, "/a.pem"), read_bundle_bytes(clean, "/b.pem")
    assert (first.path, second.path) == ("/a.pem", "/b.pem")
    assert first.blocks is second.blocks and not second.problems
    twice = pkigen.pem_bundle(pki.intermediate, pki.intermediate, pki.root)
    one, other = read_bundle_bytes(twice, "/c.pem"), read_bundle_bytes(twice, "/d.pem")
    assert one.problems and other.problems
    assert all("/d.pem" in p.message for p in other.problems if "/" in p.message)
    assert not any("/c.pem" in p.message for p in other.problems)
