"""The bad input corpus: each case says how to build its input and what the report must say.

Three kinds of case:

- BundleCase: a bundle file (or something at its path) referenced by one connection, named after
  the case, in the shared connection JSON; the report is that connection's result.
- EntryCase: one or more entries of `external_connections` in the shared connection JSON; the
  report is the connection's result when it stays usable, else the shared file's own result.
- FileCase: a connection JSON of its own; the report is that file's result (`connection: null`),
  and the connections it names in `Expect.ok` must still be checked and ok.

`Expect.where` holds substrings that locate the problem, with {bundle}, {file}, {shared}, {pki},
{root} and {name} filled in: the file path, block number and line, connection name or key name.
Every input is generated at test time (build.py); nothing here is a certificate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from .build import (
    CANARY,
    HOST,
    Kit,
    ber,
    connection,
    connection_file,
    dumps,
    flatten,
    junk,
    odd_name,
    pem_of,
    relabel,
    symlink_loop,
    with_subject,
    write_sparse,
    write_streamed,
)

E, W = "error", "warning"
GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Expect:
    """The expected report: every problem at warning or error (code -> severity), where, verdict."""

    codes: Mapping[str, str]
    verdict: Literal["ok", "warning", "error"]
    where: tuple[str, ...]  # substrings of the message of a problem with the first code in `codes`
    complete: bool | None = None  # connection reports only
    ok: tuple[str, ...] = ()  # FileCase: connections in the file that must still be ok
    absent: tuple[str, ...] = ()  # substrings no message of the report may hold (wrong or repeated)


@dataclass(frozen=True)
class BundleCase:
    name: str
    what: str
    make: Callable[[Kit, Path], None]
    expect: Expect
    unprivileged: bool = False  # only meaningful where file permissions apply (not as root)
    daemon: bool = True  # also run through the daemon
    report: str = field(default="connection", init=False)


@dataclass(frozen=True)
class EntryCase:
    name: str
    what: str
    make: Callable[[Kit, str], list[tuple[str, str]]]
    expect: Expect
    report: Literal["connection", "shared_file"] = "shared_file"
    unprivileged: bool = False
    daemon: bool = True


@dataclass(frozen=True)
class FileCase:
    name: str
    what: str
    make: Callable[[Kit, Path], None]
    expect: Expect
    watched: bool = True  # False: kept out of the watched folder (given to the daemon by name, if a file)
    unprivileged: bool = False
    daemon: bool = True
    filename: str | None = None  # instead of <name>.json
    report: str = field(default="own_file", init=False)


Case = BundleCase | EntryCase | FileCase


# --- small builders ---------------------------------------------------------------------------


def odd_leaf(kit: Kit, tag: int, value: bytes) -> bytes:
    """The endpoint's certificate, its subject a common name of that tag and value, as PEM."""
    return pem_of(with_subject(kit.pki.leaf, kit.pki.intermediate, odd_name(tag, value)))


def content(make: Callable[[Kit], bytes]) -> Callable[[Kit, Path], None]:
    """A bundle given by its bytes."""

    def write(kit: Kit, path: Path) -> None:
        path.write_bytes(make(kit))

    return write


def text_file(make: Callable[[Kit], str | bytes]) -> Callable[[Kit, Path], None]:
    def write(kit: Kit, path: Path) -> None:
        data = make(kit)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return write


def entry(make: Callable[[Kit], dict[str, object] | str]) -> Callable[[Kit, str], list[tuple[str, str]]]:
    """One entry of external_connections (a value, or raw JSON text), under the case's name."""

    def build(kit: Kit, case_name: str) -> list[tuple[str, str]]:
        value = make(kit)
        return [(case_name, value if isinstance(value, str) else dumps(value))]

    return build


class Raw(str):
    """JSON text to be placed as is."""


def raw_object(*pairs: tuple[str, str]) -> Raw:
    """A JSON object written from (key, value) pairs, so that a key may repeat."""
    body = ", ".join(
        f"{json.dumps(key)}: {value if isinstance(value, Raw) else json.dumps(value)}" for key, value in pairs
    )
    return Raw("{" + body + "}")


def one_good(kit: Kit, *, head: str = "", name: str = "good") -> str:
    return connection_file([(name, dumps(connection(kit.healthy_bundle)))], head=head)


def glued(kit: Kit) -> bytes:
    return kit.inter.rstrip(b"\n") + kit.ca_root + kit.leaf


def blank_line_inside(kit: Kit) -> bytes:
    lines = kit.inter.split(b"\n")
    return b"\n".join(lines[:3] + [b""] + lines[3:]) + kit.ca_root + kit.leaf


def bad_base64_char(kit: Kit) -> bytes:
    lines = kit.inter.split(b"\n")
    lines[4] = lines[4][:10] + b"*" + lines[4][11:]
    return kit.ca_root + b"\n".join(lines) + kit.leaf


def trusted_with_aux(kit: Kit) -> bytes:
    server_auth_trust = bytes.fromhex("300c300a06082b06010505070301")
    return kit.inter + pem_of(kit.pki.root.der + server_auth_trust, "TRUSTED CERTIFICATE") + kit.leaf


def pkcs12_file(kit: Kit) -> bytes:
    leaf = kit.pki.leaf
    return pkcs12.serialize_key_and_certificates(b"leaf", leaf.key, leaf.cert, None, NoEncryption())


def permission_denied(kit: Kit, path: Path) -> None:
    path.write_bytes(kit.good)
    path.chmod(0)


def json_permission_denied(kit: Kit, path: Path) -> None:
    path.write_text(one_good(kit))
    path.chmod(0)


def directory_with_bundle(kit: Kit, path: Path) -> None:
    path.mkdir()
    (path / "chain.pem").write_bytes(kit.good)


def locked_folder(kit: Kit, path: Path) -> None:
    """The bundle at `path` is a symlink into a folder no reader may search (mode 000: not even its
    owner, so that root without its permission-bypassing capabilities is denied too)."""
    locked = path.with_name(path.stem + ".locked")
    locked.mkdir()
    (locked / "chain.pem").write_bytes(kit.good)
    locked.chmod(0)
    path.symlink_to(locked.name + "/chain.pem")


def huge_json(kit: Kit, path: Path) -> None:
    """50 MB of valid connection JSON, most of it one padding string in an unknown key."""
    head = one_good(kit).removesuffix("}\n") + ',  "padding": "'
    pad = b"x" * MIB
    write_streamed(path, [head.encode(), *(pad for _ in range(50)), b'"\n}\n'])


def deeply_nested(kit: Kit) -> str:
    return '{"external_connections": {}, "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"


def _cases() -> list[Case]:
    bundle = "bundle {bundle}"
    return [
        # --- bundles: the whole file cannot be used --------------------------------------------
        BundleCase(
            "bundle_empty",
            "an empty file",
            content(lambda kit: b""),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "empty"), complete=False),
        ),
        BundleCase(
            "bundle_whitespace",
            "a file of blank lines and tabs only",
            content(lambda kit: b"\n \t\r\n\n"),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "only whitespace"), complete=False),
        ),
        BundleCase(
            "bundle_binary_junk",
            "random bytes",
            content(lambda kit: junk(4096, seed=7)),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "binary data"), complete=False),
        ),
        BundleCase(
            "bundle_huge",
            "a 64 GiB file (sparse) that starts with a good bundle: only the limit is read",
            lambda kit, path: write_sparse(path, kit.good, 64 * GIB),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "larger than", "8 MiB"), complete=False),
        ),
        BundleCase(
            "bundle_utf16le",
            "the good bundle saved as UTF-16 with a byte order mark",
            content(lambda kit: kit.good.decode().encode("utf-16")),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "UTF-16 text holding PEM"), complete=False),
        ),
        BundleCase(
            "bundle_utf16be",
            "the good bundle saved as UTF-16 big-endian without a byte order mark",
            content(lambda kit: kit.good.decode().encode("utf-16-be")),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "UTF-16"), complete=False),
        ),
        BundleCase(
            "bundle_bare_base64",
            "base64 without BEGIN and END lines",
            content(lambda kit: b"\n".join(kit.inter.split(b"\n")[1:-2]) + b"\n"),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "without -----BEGIN"), complete=False),
        ),
        BundleCase(
            "bundle_java_keystore",
            "a JKS keystore where a PEM bundle is expected",
            content(lambda kit: b"\xfe\xed\xfe\xed\x00\x00\x00\x02" + junk(512, seed=3)),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "Java keystore"), complete=False),
        ),
        BundleCase(
            "bundle_pkcs12",
            "a PKCS#12 keystore (key and certificate) where a PEM bundle is expected",
            content(pkcs12_file),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "PKCS#12"), complete=False),
        ),
        BundleCase(
            "bundle_only_key",
            "a private key and nothing else",
            content(lambda kit: kit.key()),
            Expect(
                {"bundle_unreadable": E, "private_key_in_bundle": E},
                "error",
                (bundle + ": ", "holds no certificate"),
                complete=False,
            ),
        ),
        # --- bundles: not a readable file at that path -----------------------------------------
        BundleCase(
            "bundle_missing",
            "server_cert names a file that does not exist",
            lambda kit, path: None,
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "does not exist"), complete=False),
        ),
        BundleCase(
            "bundle_dangling_symlink",
            "a symbolic link to nowhere",
            lambda kit, path: path.symlink_to("nowhere/at/all.pem"),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "does not exist"), complete=False),
        ),
        BundleCase(
            "bundle_symlink_loop",
            "two symbolic links pointing at each other",
            lambda kit, path: symlink_loop(path),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "symbolic link loop"), complete=False),
        ),
        BundleCase(
            "bundle_directory",
            "a directory (holding a good bundle) where the bundle file is expected",
            directory_with_bundle,
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "is a directory"), complete=False),
        ),
        BundleCase(
            "bundle_fifo",
            "a named pipe nobody writes to: a file whose content is a stream (never blocks the reader)",
            lambda kit, path: os.mkfifo(path),
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "not a regular file"), complete=False),
        ),
        *(
            BundleCase(
                f"bundle_leaf_name_{kind}",
                f"the endpoint's certificate (in the bundle) with {what}: cryptography loads it, but its "
                "name is no Name; the certificate is judged unusable, never a crash",
                content(lambda kit, tag=tag, value=value: kit.inter + kit.ca_root + odd_leaf(kit, tag, value)),
                Expect(
                    {"path_invalid": E, **extra},
                    "error",
                    ("<unreadable subject name, DER sha256 ", "its subject name cannot be read"),
                    # The path is there and the leaf on it is what no client accepts; unless OpenSSL
                    # cannot even load the bundle holding that leaf (an INTEGER is no name value to it).
                    complete=not extra,
                ),
            )
            for kind, what, tag, value, extra in (
                ("bitstring", "a BIT STRING common name", 0x03, b"\x00\x01", {}),
                ("integer", "an INTEGER common name", 0x02, b"\x05", {"format_nonstandard": E}),
                ("bad_utf8", "a UTF8String common name that is not UTF-8", 0x0C, b"erp\xff\xfe", {}),
            )
        ),
        BundleCase(
            "bundle_permission_denied",
            "a good bundle with mode 000",
            permission_denied,
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "permission denied"), complete=False),
            unprivileged=True,
        ),
        BundleCase(
            "bundle_locked_folder",
            "a good bundle reached through a folder the reader may not search",
            locked_folder,
            Expect({"bundle_unreadable": E}, "error", (bundle + ": ", "permission denied"), complete=False),
            unprivileged=True,
        ),
        # --- bundles: one block is bad, the others are still read ------------------------------
        BundleCase(
            "bundle_ber_block",
            "one certificate in BER (not strict DER) between good ones",
            content(lambda kit: kit.inter + pem_of(ber(kit.other.der)) + kit.ca_root + kit.leaf),
            Expect(
                {"block_unreadable": E},
                "error",
                (bundle + ", block 2 (line 2", "BER"),
                complete=True,
            ),
        ),
        BundleCase(
            "bundle_trailing_der_bytes",
            "a certificate block with bytes after the certificate",
            content(lambda kit: kit.good + pem_of(kit.other.der + b"\x00\x00")),
            Expect(
                {"block_unreadable": E},
                "error",
                (bundle + ", block 4 (line ", "not a valid certificate"),
                complete=False,  # the JVM refuses the whole file (OpenSSL reads it)
            ),
        ),
        BundleCase(
            "bundle_bad_base64_char",
            "a character that is not base64 inside the intermediate's block",
            content(bad_base64_char),
            Expect(
                {"block_unreadable": E, "missing_intermediate": E},
                "error",
                (bundle + ", block 2 (line 21): ", "not base64 (0x2a) on line 25"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_no_end_line",
            "a block cut off before its END line, followed by good blocks",
            content(lambda kit: kit.inter + kit.ca_root[:400] + b"\n" + kit.leaf),
            Expect(
                {"block_unreadable": E, "missing_root": E},
                "error",
                (bundle + ", block 2 (line ", "no END line"),
                complete=False,
            ),
        ),
        # --- bundles: read, but not the way strict readers (OpenSSL, the JVM) read them --------
        BundleCase(
            "bundle_spaces_for_newlines",
            "the whole bundle on one line, its line breaks turned into spaces",
            content(lambda kit: flatten(kit.good, b" ")),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", blocks 1 (line 1), 2 (line 1), 3 (line 1): ", "replaced by spaces"),
                complete=False,
                absent=("other text follows the END line",),
            ),
        ),
        BundleCase(
            "bundle_literal_backslash_n",
            "the whole bundle on one line, its line breaks turned into the two characters \\n",
            content(lambda kit: flatten(kit.good, b"\\n")),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", blocks 1 (line 1), 2 (line 1), 3 (line 1): ", "the two characters \\n"),
                complete=False,
                absent=("2 (line 1), 2 (line 1)",),
            ),
        ),
        BundleCase(
            "bundle_glued",
            "the intermediate's END line glued to the root's BEGIN line",
            content(glued),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", blocks 1 (line 1), 2 (line 21): ", "glued"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_blank_line_inside",
            "a blank line inside the intermediate's base64",
            content(blank_line_inside),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", block 1 (line 1)", "blank line"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_bom",
            "a UTF-8 byte order mark before the first BEGIN line",
            content(lambda kit: b"\xef\xbb\xbf" + kit.good),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", block 1 (line 1)", "BOM"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_trusted_certificate_aux",
            "the root as TRUSTED CERTIFICATE carrying OpenSSL trust settings",
            content(trusted_with_aux),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", block 2 (line 22): ", "TRUSTED CERTIFICATE carrying OpenSSL trust settings"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_trusted_certificate_label",
            "the root labelled TRUSTED CERTIFICATE, without trust settings",
            content(lambda kit: kit.inter + relabel(kit.ca_root, "TRUSTED CERTIFICATE") + kit.leaf),
            Expect(
                {"format_nonstandard": W},
                "warning",
                (bundle + ", block 2 (line ", "'TRUSTED CERTIFICATE'"),
                complete=True,
            ),
        ),
        BundleCase(
            "bundle_x509_certificate_label",
            "the intermediate labelled X509 CERTIFICATE",
            content(lambda kit: relabel(kit.inter, "X509 CERTIFICATE") + kit.ca_root + kit.leaf),
            Expect(
                {"format_nonstandard": W},
                "warning",
                (bundle + ", block 1 (line 1)", "'X509 CERTIFICATE'"),
                complete=True,
            ),
        ),
        BundleCase(
            "bundle_end_label_mismatch",
            "a BEGIN CERTIFICATE line closed by END X509 CERTIFICATE",
            content(
                lambda kit: kit.inter.replace(b"END CERTIFICATE", b"END X509 CERTIFICATE") + kit.ca_root + kit.leaf
            ),
            Expect(
                {"format_nonstandard": E},
                "error",
                (bundle + ", block 1 (line 1)", "END line names another label"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_crlf",
            "Windows line endings",
            content(lambda kit: kit.good.replace(b"\n", b"\r\n")),
            # Read identically by OpenSSL and the JVM: an info note, the verdict stays ok.
            Expect({}, "ok", (bundle + ": ", "CRLF"), complete=True),
        ),
        BundleCase(
            "bundle_text_around_blocks",
            "openssl x509 -text output around the blocks",
            content(lambda kit: b"Certificate:\n    Data: ...\n" + kit.good + b"# end of bundle\n"),
            Expect(
                {},
                "ok",
                (bundle + ": ", "text outside the PEM blocks (lines 1-2, "),
                complete=True,
            ),
        ),
        BundleCase(
            "bundle_der",
            "the root as a binary DER file",
            content(lambda kit: kit.pki.root.der),
            Expect(
                {"format_nonstandard": E, "endpoint_not_verified": W},
                "error",
                (bundle + ", block 1: ", "the file is DER (binary)"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_crl_block",
            "a CRL block after the certificates",
            content(lambda kit: kit.good + pem_of(b"\x30\x03\x02\x01\x00", "X509 CRL")),
            Expect({"format_nonstandard": E}, "error", (bundle + ", block 4 (line ", "X509 CRL"), complete=False),
        ),
        # --- bundles: secrets and repeats ------------------------------------------------------
        BundleCase(
            "bundle_private_key",
            "the leaf's private key (PKCS#8) after the certificates",
            content(lambda kit: kit.good + kit.key()),
            Expect(
                {"private_key_in_bundle": E},
                "error",
                (bundle + ", block 4 (line ", "a private key (PRIVATE KEY)"),
                complete=False,  # the JVM rejects a bundle holding a key
            ),
        ),
        BundleCase(
            "bundle_encrypted_key",
            "an encrypted PKCS#8 key between the certificates",
            content(lambda kit: kit.inter + kit.key("pkcs8") + kit.ca_root + kit.leaf),
            Expect(
                {"private_key_in_bundle": E},
                "error",
                (bundle + ", block 2 (line ", "(ENCRYPTED PRIVATE KEY)"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_legacy_encrypted_key",
            "a traditional OpenSSL key encrypted with Proc-Type/DEK-Info headers",
            content(lambda kit: kit.key("legacy") + kit.good),
            Expect(
                {"private_key_in_bundle": E},
                "error",
                (bundle + ", block 1 (line 1)", "RSA PRIVATE KEY"),
                complete=False,
            ),
        ),
        BundleCase(
            "bundle_duplicate",
            "the intermediate twice",
            content(lambda kit: kit.inter + kit.inter + kit.ca_root + kit.leaf),
            Expect(
                {"duplicate_certificate": W},
                "warning",
                (bundle + ", blocks 1 (line 1), 2 (line ", "2 times"),
                complete=True,
            ),
        ),
        # --- connection entries: unusable, reported on the file with the connection's name ----
        EntryCase(
            "conn_not_object",
            "a connection that is a string",
            entry(lambda kit: '"erp.example.test"'),
            Expect({"connection_invalid": E}, "error", ('connection file {shared}, connection "{name}": is a string',)),
        ),
        EntryCase(
            "conn_baseurl_number",
            "baseurl is a number",
            entry(lambda kit: connection(kit.healthy_bundle, baseurl=8443)),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": is a number',)),
        ),
        EntryCase(
            "conn_server_cert_array",
            "server_cert is an array of paths",
            entry(lambda kit: connection(None, server_cert=[str(kit.healthy_bundle)])),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "server_cert": is an array',)),
        ),
        EntryCase(
            "conn_server_cert_empty",
            "server_cert is an empty string",
            entry(lambda kit: connection(None, server_cert="")),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "server_cert": is empty',)),
        ),
        EntryCase(
            "conn_missing_server_cert",
            "no server_cert",
            entry(lambda kit: connection(None)),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "server_cert": missing',)),
        ),
        EntryCase(
            "conn_missing_baseurl",
            "no baseurl",
            entry(lambda kit: {"server_cert": str(kit.healthy_bundle)}),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": missing',)),
        ),
        EntryCase(
            "conn_baseurl_no_host",
            "a baseurl with a port but no host",
            entry(lambda kit: connection(kit.healthy_bundle, baseurl="https://:8443/api")),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": has no host',)),
        ),
        EntryCase(
            "conn_baseurl_only_scheme",
            "a baseurl that is only https://",
            entry(lambda kit: connection(kit.healthy_bundle, baseurl="https://")),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": has no host',)),
        ),
        EntryCase(
            "conn_baseurl_http",
            "a plain http:// baseurl",
            entry(lambda kit: connection(kit.healthy_bundle, baseurl=f"http://{HOST}")),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": uses http://',)),
        ),
        EntryCase(
            "conn_baseurl_bad_port",
            "a baseurl whose port is out of range",
            entry(lambda kit: connection(kit.healthy_bundle, baseurl=f"https://{HOST}:70000")),
            Expect(
                {"connection_invalid": E}, "error", ('connection "{name}", key "baseurl": port 70000 is out of range',)
            ),
        ),
        EntryCase(
            "conn_server_cert_nul",
            "a server_cert path holding a NUL character",
            entry(lambda kit: connection(None, server_cert=str(kit.healthy_bundle) + "\u0000.pem")),
            Expect({"connection_invalid": E}, "error", ('connection "{name}", key "server_cert": contains a NUL',)),
        ),
        EntryCase(
            "conn_duplicate_server_cert",
            "server_cert given twice in one connection",
            entry(
                lambda kit: raw_object(
                    ("baseurl", f"https://{HOST}"),
                    ("server_cert", str(kit.healthy_bundle)),
                    ("server_cert", "/etc/x.pem"),
                )
            ),
            Expect(
                {"connection_invalid": E}, "error", ('connection "{name}", key "server_cert": duplicate key', "2 times")
            ),
        ),
        EntryCase(
            "conn_duplicate_name",
            "the same connection name twice in external_connections",
            lambda kit, name: [(name, dumps(connection(kit.healthy_bundle)))] * 2,
            Expect({"connection_invalid": E}, "error", ('connection "{name}": the name appears 2 times',)),
        ),
        EntryCase(
            "conn_name_control_chars",
            "a connection name holding a line break and a lone UTF-16 surrogate escape",
            lambda kit, name: [(name + "\n\ud800", dumps(connection(kit.healthy_bundle)))],
            Expect({"connection_invalid": E}, "error", ('connection "{name}\\n\\ud800": ',)),
        ),
        # --- connection entries: still usable, the problem is on the connection itself ---------
        EntryCase(
            "conn_secret_not_string",
            "a secrets value that is a number (the connection is still checked)",
            entry(lambda kit: connection(kit.healthy_bundle, secrets={"bearer_token": CANARY, "retries": 5})),
            Expect(
                {"connection_invalid": E},
                "error",
                ('connection "{name}", key "secrets": a value in it is a number',),
                absent=('"retries"',),
                complete=True,
            ),
            report="connection",
        ),
        EntryCase(
            "conn_duplicate_secret",
            "a secrets key given twice (the connection is still checked)",
            entry(
                lambda kit: raw_object(
                    ("baseurl", f"https://{HOST}"),
                    ("secrets", raw_object(("bearer_token", CANARY), ("bearer_token", CANARY))),
                    ("server_cert", str(kit.healthy_bundle)),
                )
            ),
            Expect(
                {"connection_invalid": E},
                "error",
                ('connection "{name}", key "secrets": a duplicate key inside it',),
                absent=('"bearer_token"',),
                complete=True,
            ),
            report="connection",
        ),
        EntryCase(
            "conn_url_fragments_array",
            "url_fragments is an array (the connection is still checked)",
            entry(lambda kit: connection(kit.healthy_bundle, url_fragments=["/api"])),
            Expect(
                {"connection_invalid": E},
                "error",
                ('connection "{name}", key "url_fragments": is an array',),
                complete=True,
            ),
            report="connection",
        ),
        EntryCase(
            "conn_client_cert_nowhere",
            "secrets.client_cert names a file that does not exist",
            entry(
                lambda kit: connection(
                    kit.healthy_bundle, secrets={"client_cert": str(kit.root / "nowhere.keycertchain")}
                )
            ),
            Expect(
                {"client_cert_invalid": E},
                "error",
                ("the client certificate file (secrets.client_cert)", "does not exist"),
                absent=("nowhere.keycertchain",),
                complete=True,
            ),
            report="connection",
        ),
        EntryCase(
            "conn_client_cert_without_key",
            "secrets.client_cert is a chain without its private key",
            entry(lambda kit: connection(kit.healthy_bundle, secrets={"client_cert": str(kit.healthy_bundle)})),
            Expect(
                {"client_cert_invalid": E},
                "error",
                ("the client certificate file (secrets.client_cert)", "0 private keys"),
                complete=True,
            ),
            report="connection",
        ),
        # --- connection JSON files -------------------------------------------------------------
        FileCase(
            "file_invalid_json",
            "a trailing comma",
            text_file(lambda kit: one_good(kit).replace("}\n  }\n}", "},\n  }\n}")),
            Expect({"connection_invalid": E}, "error", ("connection file {file}: line ", ", column ", "invalid JSON")),
        ),
        FileCase(
            "file_truncated_json",
            "a JSON file cut off half-way",
            text_file(lambda kit: one_good(kit)[:60]),
            Expect({"connection_invalid": E}, "error", ("connection file {file}: line ", "invalid JSON")),
        ),
        FileCase(
            "file_empty",
            "an empty connection JSON",
            text_file(lambda kit: ""),
            Expect({"connection_invalid": E}, "error", ("connection file {file}: the file is empty",)),
        ),
        FileCase(
            "file_top_level_array",
            "a JSON array instead of an object",
            text_file(lambda kit: "[" + one_good(kit) + "]"),
            Expect({"connection_invalid": E}, "error", ("connection file {file}: the top level is an array",)),
        ),
        FileCase(
            "file_missing_external_connections",
            "no external_connections key",
            text_file(lambda kit: dumps({"apply_at": "2026-12-04T09:30:00+00:00", "connections": {}})),
            Expect(
                {"connection_invalid": E}, "error", ('connection file {file}: key "external_connections" is missing',)
            ),
        ),
        FileCase(
            "file_external_connections_array",
            "external_connections is an array of connections",
            text_file(lambda kit: dumps({"external_connections": [connection(kit.healthy_bundle)]})),
            Expect(
                {"connection_invalid": E}, "error", ('connection file {file}, key "external_connections": is an array',)
            ),
        ),
        FileCase(
            "file_non_utf8",
            "a Latin-1 byte inside a secrets value (its bytes must not be echoed)",
            text_file(lambda kit: one_good(kit).encode().replace(CANARY.encode(), CANARY.encode() + b"\xe9t\xe9")),
            Expect(
                {"connection_invalid": E}, "error", ("connection file {file}: line 9, byte offset ", "not valid UTF-8")
            ),
        ),
        FileCase(
            "file_utf16",
            "a connection JSON saved as UTF-16",
            text_file(lambda kit: one_good(kit).encode("utf-16")),
            Expect(
                {"connection_invalid": E}, "error", ("connection file {file}: line 1, byte offset 0", "not valid UTF-8")
            ),
        ),
        FileCase(
            "file_50mb",
            "a 50 MB connection JSON (written at test time; the reader stops at its limit)",
            huge_json,
            Expect(
                {"connection_invalid": E}, "error", ("connection file {file}: larger than the 16777216-byte limit",)
            ),
        ),
        FileCase(
            "file_nan",
            "NaN, which Python's json module accepts but JSON does not",
            text_file(lambda kit: one_good(kit, head='  "retries": NaN,\n')),
            Expect(
                {"connection_invalid": E}, "error", ("connection file {file}: invalid JSON: NaN is not a JSON value",)
            ),
        ),
        FileCase(
            "file_deeply_nested",
            "arrays nested 100 000 deep",
            text_file(deeply_nested),
            Expect(
                {"connection_invalid": E},
                "error",
                ("connection file {file}: invalid JSON: values are nested too deeply",),
            ),
        ),
        FileCase(
            "file_duplicate_top_key",
            "external_connections given twice (the last one is what a reader keeps)",
            text_file(lambda kit: one_good(kit, head='  "external_connections": {},\n')),
            Expect(
                {"connection_invalid": E},
                "error",
                ('connection file {file}, key "external_connections": duplicate key',),
                ok=("good",),
            ),
        ),
        FileCase(
            "file_apply_at_invalid",
            "apply_at that is not a date-time (the connections are still checked)",
            text_file(lambda kit: one_good(kit, head='  "apply_at": "next Tuesday",\n')),
            Expect(
                {"apply_at_invalid": E},
                "error",
                ('connection file {file}, key "apply_at": "next Tuesday" is not an ISO 8601',),
                ok=("good",),
            ),
        ),
        FileCase(
            "file_apply_at_no_offset",
            "apply_at without a UTC offset",
            text_file(lambda kit: one_good(kit, head='  "apply_at": "2026-12-04T09:30:00",\n')),
            Expect(
                {"apply_at_invalid": E},
                "error",
                ('connection file {file}, key "apply_at": ', "has no UTC offset"),
                ok=("good",),
            ),
        ),
        FileCase(
            "file_apply_at_number",
            "apply_at that is a number (a Unix time)",
            text_file(lambda kit: one_good(kit, head='  "apply_at": 1796376600,\n')),
            Expect(
                {"apply_at_invalid": E}, "error", ('connection file {file}, key "apply_at": is a number',), ok=("good",)
            ),
        ),
        FileCase(
            "file_schedule_at",
            "schedule_at instead of apply_at",
            text_file(lambda kit: one_good(kit, head='  "schedule_at": "2026-12-04T09:30+5:30",\n')),
            Expect({"schedule_at_used": W}, "warning", ("connection file {file}: key schedule_at",), ok=("good",)),
        ),
        FileCase(
            "file_nowhere",
            "a connection JSON path that does not exist",
            lambda kit, path: None,
            Expect({"connection_invalid": E}, "error", ("connection file {file}: cannot read", "No such file")),
            watched=False,
        ),
        FileCase(
            "file_directory",
            "a directory where the connection JSON is expected",
            lambda kit, path: path.mkdir(),
            Expect({"connection_invalid": E}, "error", ("connection file {file}: cannot read", "Is a directory")),
            watched=False,
            daemon=False,  # by design, a folder named in [watch] connections is a folder of connection JSONs
        ),
        FileCase(
            "file_name_not_utf8",
            "a connection JSON whose file name is not UTF-8 (its connections are still checked)",
            text_file(lambda kit: one_good(kit)),
            Expect({}, "ok", (), ok=("good",)),
            filename=os.fsdecode(b"file_name_not_utf8-\xff\xfe.json"),
        ),
        FileCase(
            "file_permission_denied",
            "a connection JSON with mode 000",
            json_permission_denied,
            Expect({"connection_invalid": E}, "error", ("connection file {file}: cannot read", "Permission denied")),
            unprivileged=True,
        ),
    ]


CASES: tuple[Case, ...] = tuple(_cases())
BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"
