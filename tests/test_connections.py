"""Tests for chainwarden.connections: parsing and validating the connection JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from chainwarden.connections import (
    MAX_CONNECTION_JSON_BYTES,
    ConnectionFile,
    format_apply_at,
    parse_apply_at,
    parse_connection_file,
    read_connection_file,
)
from chainwarden.report import Code, Severity

FILE = "/x/prod.json"
WHERE = f"connection file {FILE}"

DOCUMENTED_SAMPLE = b"""{
  "blob_sas_url": "<string from PTC>",
  "public_key_for_encrypting_custom_secrets": "<path to the PTC public key file>",
  "apply_at": "2026-12-04T09:30:00+00:00",
  "external_connections": {
    "material_api": {
      "baseurl": "https://erp.example.test:8443",
      "url_fragments": { "get_material_number": "/api/material" },
      "secrets": {
        "client_cert": "/secure/material-api.keycertchain",
        "bearer_token": "Bearer <token>"
      },
      "server_cert": "/etc/pki/windchill/material-api-chain.pem"
    }
  }
}
"""

CANARIES = ("CANARY-token-7f3a91", "CANARY-age-55e1", "CANARY-password-0c2d")


def document(connections: dict[str, object], **top: object) -> bytes:
    return json.dumps({**top, "external_connections": connections}).encode()


def good(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"baseurl": "https://api.example.test", "server_cert": "/b.pem"}
    return {**base, **overrides}


def parse(data: bytes, path: str = FILE) -> ConnectionFile:
    return parse_connection_file(data, path)


def only_problem(parsed: ConnectionFile) -> str:
    assert len(parsed.problems) == 1, parsed.problems
    return parsed.problems[0].message


def everything_said(parsed: ConnectionFile) -> str:
    parts = [repr(parsed)]
    parts += [p.message for p in parsed.problems]
    parts += [p.message for c in parsed.connections for p in c.problems]
    return "\n".join(parts)


def test_documented_sample() -> None:
    """The sample from connection-json.md parses into one clean connection with every field."""
    parsed = parse(DOCUMENTED_SAMPLE)
    assert parsed.problems == ()
    (conn,) = parsed.connections
    assert conn.file == FILE
    assert conn.name == "material_api"
    assert conn.baseurl == "https://erp.example.test:8443"
    assert (conn.host, conn.port) == ("erp.example.test", 8443)
    assert conn.server_cert == conn.server_cert_path == "/etc/pki/windchill/material-api-chain.pem"
    assert conn.client_cert_path == "/secure/material-api.keycertchain"
    assert conn.problems == ()
    assert parsed.apply_at == datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    assert parsed.apply_at_raw == "2026-12-04T09:30:00+00:00"
    assert parsed.apply_at_key == "apply_at"


def test_connections_keep_file_order() -> None:
    """Several connections come back in the order the file lists them."""
    parsed = parse(document({"zeta": good(), "alpha": good(), "mid": good()}))
    assert [c.name for c in parsed.connections] == ["zeta", "alpha", "mid"]


def test_single_digit_offset_without_seconds() -> None:
    """apply_at "+5:30" with no seconds (a published sample) is accepted."""
    parsed = parse(document({}, apply_at="2026-12-04T09:30+5:30"))
    assert parsed.problems == ()
    assert parsed.apply_at == datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
    assert parsed.apply_at is not None and parsed.apply_at.utcoffset() == timedelta(hours=5.5)
    assert parsed.apply_at_raw == "2026-12-04T09:30+5:30"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T09:30:00Z", datetime(2026, 12, 4, 9, 30, tzinfo=UTC)),
        ("2026-12-04T09:30:00-08:00", datetime(2026, 12, 4, 17, 30, tzinfo=UTC)),
        ("2026-12-04T09:30:15.250+01:00", datetime(2026, 12, 4, 8, 30, 15, 250000, tzinfo=UTC)),
        ("2026-12-04T09:30+05:30", datetime(2026, 12, 4, 4, 0, tzinfo=UTC)),
    ],
)
def test_parse_apply_at_spellings(text: str, expected: datetime) -> None:
    """parse_apply_at accepts Z, negative offsets, fractions and missing seconds."""
    assert parse_apply_at(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2026-12-04T09:30:00", "has no UTC offset"),
        ("next tuesday", "is not an ISO 8601 date-time"),
        ("2026-13-04T09:30:00Z", "is not a valid date-time: month must be in 1..12"),
        ("2026-12-04T09:30:00+19:00", "impossible UTC offset +19:00"),
        ("", "is not an ISO 8601 date-time"),
    ],
)
def test_parse_apply_at_rejects(text: str, fragment: str) -> None:
    """parse_apply_at raises a ValueError sentence naming the text and the fault."""
    with pytest.raises(ValueError, match=r".") as caught:
        parse_apply_at(text)
    assert fragment in str(caught.value)
    assert json.dumps(text) in str(caught.value)


def test_naive_apply_at_is_invalid() -> None:
    """An apply_at without an offset is an APPLY_AT_INVALID error located at the key."""
    parsed = parse(document({"a": good()}, apply_at="2026-12-04T09:30:00"))
    (problem,) = parsed.problems
    assert (problem.code, problem.severity) == (Code.APPLY_AT_INVALID, Severity.ERROR)
    assert problem.message.startswith(f'{WHERE}, key "apply_at": "2026-12-04T09:30:00" has no')
    assert parsed.apply_at is None
    assert parsed.apply_at_raw == "2026-12-04T09:30:00"
    assert parsed.apply_at_key == "apply_at"
    assert [c.name for c in parsed.connections] == ["a"]


def test_garbage_apply_at_is_invalid() -> None:
    """Unparseable apply_at text is an APPLY_AT_INVALID error."""
    parsed = parse(document({}, apply_at="soon"))
    (problem,) = parsed.problems
    assert problem.code is Code.APPLY_AT_INVALID
    assert problem.message == (
        f'{WHERE}, key "apply_at": "soon" is not an ISO 8601 date-time like '
        "2026-12-04T09:30:00+00:00"
    )


def test_apply_at_not_a_string() -> None:
    """A non-string apply_at is APPLY_AT_INVALID and its raw text stays None."""
    parsed = parse(document({}, apply_at=20261204))
    (problem,) = parsed.problems
    assert problem.code is Code.APPLY_AT_INVALID
    assert problem.message == f'{WHERE}, key "apply_at": is a number, not a date-time string'
    assert (parsed.apply_at, parsed.apply_at_raw, parsed.apply_at_key) == (None, None, "apply_at")


def test_past_apply_at_is_fine() -> None:
    """An existing file's apply_at in the past (already rolled out) is not a problem."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    data = document({}, apply_at="2026-12-04T09:30:00+00:00")
    parsed = parse_connection_file(data, FILE, now=now)
    assert parsed.problems == ()
    assert parsed.apply_at is not None and parsed.apply_at < now


def test_no_apply_at() -> None:
    """Without apply_at or schedule_at the schedule fields are all None and nothing is flagged."""
    parsed = parse(document({"a": good()}))
    assert parsed.problems == ()
    assert (parsed.apply_at, parsed.apply_at_raw, parsed.apply_at_key) == (None, None, None)


def test_schedule_at_alone_is_reported_not_used() -> None:
    """schedule_at without apply_at warns SCHEDULE_AT_USED and is not used as the schedule."""
    parsed = parse(document({}, schedule_at="2026-12-04T09:30:00+00:00"))
    (problem,) = parsed.problems
    assert (problem.code, problem.severity) == (Code.SCHEDULE_AT_USED, Severity.WARNING)
    assert problem.message == (
        f"{WHERE}: key schedule_at is not the documented apply_at; it is not used"
    )
    assert parsed.apply_at is None
    assert parsed.apply_at_key == "schedule_at"
    assert parsed.apply_at_raw == "2026-12-04T09:30:00+00:00"


def test_apply_at_wins_over_schedule_at() -> None:
    """With both keys apply_at is used and schedule_at still draws the warning."""
    parsed = parse(
        document({}, schedule_at="2027-01-01T00:00:00Z", apply_at="2026-12-04T09:30:00Z")
    )
    assert [p.code for p in parsed.problems] == [Code.SCHEDULE_AT_USED]
    assert parsed.apply_at == datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    assert (parsed.apply_at_key, parsed.apply_at_raw) == ("apply_at", "2026-12-04T09:30:00Z")


def test_relative_paths_resolve_against_the_json_folder() -> None:
    """Relative server_cert and client_cert paths resolve against the JSON's folder."""
    conn_json = good(server_cert="pki/chain.pem", secrets={"client_cert": "../mtls.kcc"})
    (conn,) = parse(document({"a": conn_json}), "/etc/wc/prod.json").connections
    assert conn.server_cert == "pki/chain.pem"
    assert conn.server_cert_path == "/etc/wc/pki/chain.pem"
    assert conn.client_cert_path == "/etc/wc/../mtls.kcc"


def test_relative_paths_next_to_a_bare_file_name() -> None:
    """A JSON path without a folder leaves relative bundle paths relative to the same place."""
    (conn,) = parse(document({"a": good(server_cert="chain.pem")}), "prod.json").connections
    assert conn.server_cert_path == "chain.pem"


def test_absolute_paths_are_kept() -> None:
    """Absolute paths are kept exactly; no client_cert gives None."""
    (conn,) = parse(document({"a": good(server_cert="/abs/chain.pem")}), "/etc/p.json").connections
    assert conn.server_cert_path == "/abs/chain.pem"
    assert conn.client_cert_path is None


def test_port_defaults_to_443() -> None:
    """A baseurl without a port (or with an empty one) means port 443."""
    parsed = parse(
        document(
            {
                "a": good(baseurl="https://api.example.test"),
                "b": good(baseurl="https://api.example.test:/base/path"),
            }
        )
    )
    assert [c.port for c in parsed.connections] == [443, 443]
    assert parsed.problems == ()


def test_ipv6_baseurl() -> None:
    """An IPv6 baseurl yields the address without brackets, compressed, and the port."""
    parsed = parse(document({"a": good(baseurl="https://[2001:DB8:0::1]:9443")}))
    (conn,) = parsed.connections
    assert (conn.host, conn.port) == ("2001:db8::1", 9443)


def test_host_is_lowercased_and_idna_encoded() -> None:
    """Host names are lowercased and internationalized names IDNA-encoded."""
    parsed = parse(
        document(
            {
                "upper": good(baseurl="HTTPS://ERP.Example.TEST"),
                "idn": good(baseurl="https://bücher.example:8443/api"),
            }
        )
    )
    assert [(c.host, c.port) for c in parsed.connections] == [
        ("erp.example.test", 443),
        ("xn--bcher-kva.example", 8443),
    ]


def test_dotted_and_unknown_keys_are_fine() -> None:
    """Dotted secrets keys and unknown keys of any type raise no problem."""
    conn_json = good(
        secrets={"secret.age": "5", "client_cert": "/c.kcc"},
        url_fragments={"a.b": "/x"},
        extra_thing=[1, {"n": None}],
        timeout=1.5,
    )
    parsed = parse(document({"a": conn_json}, custom_top={"k": True}))
    assert parsed.problems == ()
    assert parsed.connections[0].problems == ()


def test_invalid_json_is_located() -> None:
    """Invalid JSON is one error naming the file, line and column and the decoder's reason."""
    data = b'{\n  "apply_at": "x",\n  "external_connections": {\n    "a": {"baseurl" "x"}\n}}'
    parsed = parse(data)
    assert only_problem(parsed) == (
        f"{WHERE}: line 4, column 21: invalid JSON: Expecting ':' delimiter"
    )
    assert parsed.problems[0].code is Code.CONNECTION_INVALID
    assert parsed.connections == ()


def test_missing_comma_message_as_documented() -> None:
    """The classic missing comma reads "line L, column C: invalid JSON: Expecting ',' delimiter"."""
    data = b'{\n  "apply_at": "2026-12-04T09:30:00Z"\n  "external_connections": {}\n}'
    assert only_problem(parse(data)) == (
        f"{WHERE}: line 3, column 3: invalid JSON: Expecting ',' delimiter"
    )


@pytest.mark.parametrize(
    "data", [b'{"external_connections": {', b'{"external_connections": {"a": {}}\n\n', b'{"a": [1,']
)
def test_a_file_cut_short_is_said_to_end_early(data: bytes) -> None:
    """A truncated file (a copy interrupted, a closing brace lost) is named as such, not as a stray comma."""
    message = only_problem(parse(data))
    assert "invalid JSON: the file ends in the middle of the document" in message
    assert "trailing comma" not in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", f"{WHERE}: the file is empty; expected a JSON object"),
        (b'{"a": NaN}', f"{WHERE}: invalid JSON: NaN is not a JSON value"),
        (b"[" * 100_000, f"{WHERE}: invalid JSON: values are nested too deeply"),
    ],
)
def test_unusable_json(data: bytes, message: str) -> None:
    """Empty files, NaN and absurd nesting are one located error each, never an exception."""
    assert only_problem(parse(data)) == message


def test_non_utf8_bytes_report_byte_offset() -> None:
    """Bytes that are not UTF-8 are one error naming the line and byte offset, not the bytes."""
    data = b'{\n  "external_connections": {"a\xff": {}}}'
    parsed = parse(data)
    assert only_problem(parsed) == (
        f"{WHERE}: line 2, byte offset 31: not valid UTF-8 (connection JSON must be UTF-8 encoded)"
    )
    assert parsed.problems[0].code is Code.CONNECTION_INVALID


def test_non_utf8_offset_counts_the_bom() -> None:
    """The byte offset of a decoding error counts from the file's first byte, BOM included."""
    message = only_problem(parse(b'\xef\xbb\xbf{"\xc3"}'))
    assert "line 1, byte offset 5:" in message


def test_utf8_bom_is_accepted() -> None:
    """A UTF-8 byte-order mark is skipped silently."""
    parsed = parse(b"\xef\xbb\xbf" + DOCUMENTED_SAMPLE)
    assert parsed.problems == ()
    assert [c.name for c in parsed.connections] == ["material_api"]


@pytest.mark.parametrize(
    ("data", "kind"), [(b"[]", "an array"), (b'"x"', "a string"), (b"null", "null")]
)
def test_top_level_not_an_object(data: bytes, kind: str) -> None:
    """A top level that is not an object is one located error."""
    assert only_problem(parse(data)) == f"{WHERE}: the top level is {kind}, not a JSON object"


def test_missing_external_connections() -> None:
    """A file without external_connections is a file-level error; apply_at is still read."""
    parsed = parse(b'{"apply_at": "2026-12-04T09:30:00Z"}')
    assert only_problem(parsed) == f'{WHERE}: key "external_connections" is missing'
    assert parsed.apply_at is not None


def test_external_connections_not_an_object() -> None:
    """external_connections of the wrong type is a located file-level error."""
    parsed = parse(b'{"external_connections": ["a"]}')
    assert only_problem(parsed) == (
        f'{WHERE}, key "external_connections": is an array, not a JSON object'
    )


BROKEN = [
    ({"server_cert": "/b.pem"}, 'key "baseurl": missing'),
    (good(baseurl=42), 'key "baseurl": is a number, not a string'),
    (good(baseurl="http://api.example.test"), 'key "baseurl": uses http://, but Windchill+'),
    (good(baseurl="ftp://api.example.test"), 'key "baseurl": is not an https:// URL'),
    (good(baseurl="api.example.test:443"), 'key "baseurl": is not an https:// URL'),
    (good(baseurl="https:///path"), 'key "baseurl": has no host'),
    (good(baseurl="https://"), 'key "baseurl": has no host'),
    (good(baseurl=""), 'key "baseurl": is empty'),
    (good(baseurl="https://h.test:0"), 'key "baseurl": port 0 is out of range 1-65535'),
    (good(baseurl="https://h.test:65536"), 'key "baseurl": port 65536 is out of range'),
    (good(baseurl="https://h.test:https"), 'key "baseurl": port "https" is not a number'),
    (good(baseurl="https://h .test"), 'key "baseurl": contains whitespace'),
    (good(baseurl="https://h_-.test!"), 'key "baseurl": host "h_-.test!" is not a valid'),
    (good(baseurl="https://[::1"), 'key "baseurl": is not a valid URL: the bracketed IPv6'),
    (good(baseurl="https://[fe80::zz]"), 'key "baseurl": is not a valid URL: the bracketed'),
    (good(baseurl="https://[v1.fe80]"), 'key "baseurl": host [v1.fe80] is not a valid IPv6'),
    (good(baseurl="https://::1:443"), 'key "baseurl": has an IPv6 host without brackets'),
    (good(baseurl="https://h.test/x?q=1"), 'key "baseurl": has a query or fragment'),
    (good(baseurl="https://u:pw@h.test"), 'key "baseurl": has user information'),
    ({"baseurl": "https://h.test"}, 'key "server_cert": missing'),
    (good(server_cert=["/a.pem"]), 'key "server_cert": is an array, not a path string'),
    (good(server_cert=""), 'key "server_cert": is empty'),
    (good(server_cert="/a\0.pem"), 'key "server_cert": contains a NUL character'),
    ("https://h.test", ": is a string, not a JSON object"),
    (None, ": is null, not a JSON object"),
]


@pytest.mark.parametrize(("value", "fragment"), BROKEN)
def test_broken_connection(value: object, fragment: str) -> None:
    """A connection with an unusable baseurl or server_cert is dropped with a located error."""
    parsed = parse(document({"before": good(), "bad": value, "after": good()}))
    assert [c.name for c in parsed.connections] == ["before", "after"]
    (problem,) = parsed.problems
    assert (problem.code, problem.severity) == (Code.CONNECTION_INVALID, Severity.ERROR)
    where = f'{WHERE}, connection "bad"'
    assert problem.message.startswith(where + ("" if fragment.startswith(":") else ", ") + fragment)


def test_userinfo_is_never_echoed() -> None:
    """A password written into the baseurl does not reach the message."""
    parsed = parse(document({"a": good(baseurl="https://admin:CANARY-pw@h.test")}))
    assert "CANARY" not in everything_said(parsed)


def test_one_problem_per_broken_connection() -> None:
    """Several faults of one broken connection make a single problem naming each key."""
    parsed = parse(document({"bad": {"baseurl": "http://h.test", "secrets": [1]}}))
    assert only_problem(parsed) == (
        f'{WHERE}, connection "bad", key "baseurl": uses http://, but Windchill+ connections '
        'are HTTPS; write https://host[:port]; key "server_cert": missing; the PEM trust '
        'bundle path is required; key "secrets": is an array, not a JSON object'
    )


SIDE_FAULTS = [
    (good(secrets="x"), 'key "secrets": is a string, not a JSON object'),
    (good(secrets={"token": 5}), 'key "secrets": a value in it is a number, not a string (not named'),
    (good(secrets={"client_cert": ""}), 'key "secrets"."client_cert": is empty'),
    (good(url_fragments=["/a"]), 'key "url_fragments": is an array, not a JSON object'),
    (good(url_fragments={"get": 1}), 'key "url_fragments"."get": is a number, not a path'),
]


@pytest.mark.parametrize(("value", "fragment"), SIDE_FAULTS)
def test_side_fault_keeps_connection(value: object, fragment: str) -> None:
    """Bad secrets or url_fragments leave the connection usable but carry a located error."""
    parsed = parse(document({"a": value}))
    assert parsed.problems == ()
    (conn,) = parsed.connections
    (problem,) = conn.problems
    assert (problem.code, problem.severity) == (Code.CONNECTION_INVALID, Severity.ERROR)
    assert problem.message.startswith(f'{WHERE}, connection "a", {fragment}')
    assert conn.client_cert_path is None


def test_duplicate_top_level_key() -> None:
    """A repeated top-level key is a located file-level error."""
    data = b'{"apply_at": "2026-12-04T09:30:00Z", "apply_at": "2027-01-01T00:00:00Z",'
    data += b' "external_connections": {}}'
    assert only_problem(parse(data)) == (
        f'{WHERE}, key "apply_at": duplicate key: it appears 2 times and a JSON reader '
        "silently keeps only one"
    )


def test_duplicate_key_deep_outside_connections() -> None:
    """A repeated key deep inside an unknown value is reported with its full key path."""
    data = b'{"extra": [0, {"k": {"x": 1, "x": 2}}], "external_connections": {}}'
    assert only_problem(parse(data)).startswith(f'{WHERE}, key "extra"[1]."k"."x": duplicate key')


def test_duplicate_connection_name() -> None:
    """A connection name given twice is ambiguous: dropped with one error, others survive."""
    data = b'{"external_connections": {"a": {"baseurl": "https://h.test", "server_cert": "/1"},'
    data += b' "b": {"baseurl": "https://h.test", "server_cert": "/2"},'
    data += b' "a": {"baseurl": "https://h.test", "server_cert": "/3"}}}'
    parsed = parse(data)
    assert [c.name for c in parsed.connections] == ["b"]
    assert only_problem(parsed) == (
        f'{WHERE}, connection "a": the name appears 2 times in external_connections; '
        "a JSON reader keeps only one, so it is ambiguous"
    )


def test_duplicate_server_cert_breaks_the_connection() -> None:
    """A repeated server_cert (or baseurl) makes the connection unusable."""
    data = b'{"external_connections": {"a": {"baseurl": "https://h.test",'
    data += b' "server_cert": "/1", "server_cert": "/2"}}}'
    parsed = parse(data)
    assert parsed.connections == ()
    assert only_problem(parsed).startswith(f'{WHERE}, connection "a", key "server_cert": duplicate')


def test_duplicate_secret_key_is_reported_without_naming_it() -> None:
    """A repeated secrets key is an error on the connection at key "secrets", never naming the repeated
    key (a key below secrets may itself be secret) nor its values."""
    data = b'{"external_connections": {"a": {"baseurl": "https://h.test", "server_cert": "/1",'
    data += b' "secrets": {"CANARY-key": "CANARY-one", "CANARY-key": "CANARY-two"}}}}'
    parsed = parse(data)
    assert parsed.problems == ()
    (problem,) = parsed.connections[0].problems
    assert problem.message.startswith(f'{WHERE}, connection "a", key "secrets": a duplicate key inside it')
    assert "CANARY" not in everything_said(parsed)


def test_names_with_quotes_and_controls_are_quoted() -> None:
    """Connection names are JSON-quoted in messages, so odd characters cannot forge a message."""
    parsed = parse(document({'we"ird\nname': {"server_cert": "/b.pem"}}))
    assert only_problem(parsed).startswith(f'{WHERE}, connection "we\\"ird\\nname", key "baseurl"')


def secrets_everywhere() -> dict[str, object]:
    secrets: dict[str, object] = {
        "client_cert": "/c.kcc",
        "bearer_token": CANARIES[0],
        "secret.age": CANARIES[1],
        "nested": {"password": CANARIES[2]},
        CANARIES[2][:4] + "x": 1,
    }
    return {
        "ok": good(secrets=secrets),
        "no_cert": {"baseurl": "https://h.test", "secrets": secrets},
        "http": good(baseurl="http://h.test", secrets=secrets),
        "weird_secrets": good(secrets=[CANARIES[0]]),
    }


def test_canary_secrets_appear_nowhere() -> None:
    """Secrets values never reach any field, repr or message, for good and broken connections."""
    parsed = parse(document(secrets_everywhere(), apply_at=CANARIES[0][:3]))
    said = everything_said(parsed)
    assert parsed.connections[0].client_cert_path == "/c.kcc"
    for canary in CANARIES:
        assert canary not in said


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[:-10],
        lambda data: data.replace(b'"ok"', b'"ok" "ok"'),
        lambda data: data.replace(CANARIES[1].encode(), CANARIES[1].encode() + b"\xff"),
        lambda data: data.replace(b'"nested": {', b'"nested": {"password": 1, '),
    ],
    ids=["truncated", "syntax", "non-utf8-inside-a-secret", "duplicate-secret-key"],
)
def test_canary_secrets_stay_hidden_in_broken_files(corrupt: Callable[[bytes], bytes]) -> None:
    """Broken files' problem messages never quote secrets values either."""
    parsed = parse(corrupt(document(secrets_everywhere())))
    assert parsed.problems or any(c.problems for c in parsed.connections)
    said = everything_said(parsed)
    for canary in CANARIES:
        assert canary not in said


def test_read_connection_file(tmp_path: Path) -> None:
    """read_connection_file reads the file and keeps the path as given."""
    path = tmp_path / "prod.json"
    path.write_bytes(document({"a": good(server_cert="b.pem")}))
    parsed = read_connection_file(path)
    assert parsed.path == str(path)
    assert parsed.connections[0].server_cert_path == str(tmp_path / "b.pem")


def test_read_a_17_mb_file_is_refused(tmp_path: Path) -> None:
    """A file over the 16 MiB limit is one error naming the limit, and nothing is parsed."""
    path = tmp_path / "huge.json"
    filler = b" " * (17 * 1024 * 1024)
    path.write_bytes(b'{"external_connections": {"a": ' + filler + b"}}")
    parsed = read_connection_file(path)
    assert only_problem(parsed) == (
        f"connection file {path}: larger than the {MAX_CONNECTION_JSON_BYTES}-byte limit; not read"
    )
    assert parsed.connections == ()


def test_read_limit_is_adjustable(tmp_path: Path) -> None:
    """max_bytes lowers the limit; a file exactly at the limit is read."""
    path = tmp_path / "p.json"
    data = document({"a": good()})
    path.write_bytes(data)
    assert read_connection_file(path, max_bytes=len(data)).problems == ()
    message = only_problem(read_connection_file(path, max_bytes=len(data) - 1))
    assert f"larger than the {len(data) - 1}-byte limit" in message


def test_read_missing_file_does_not_raise(tmp_path: Path) -> None:
    """A missing file is a located error, not an exception."""
    path = tmp_path / "absent.json"
    assert only_problem(read_connection_file(path)) == (
        f"connection file {path}: cannot read: No such file or directory"
    )


def test_read_directory_does_not_raise(tmp_path: Path) -> None:
    """A directory given as the JSON file is a located error, not an exception."""
    assert only_problem(read_connection_file(tmp_path)) == (
        f"connection file {tmp_path}: cannot read: Is a directory"
    )


def test_values_are_frozen() -> None:
    """Connection and ConnectionFile cannot be modified after parsing."""
    parsed = parse(DOCUMENTED_SAMPLE)
    with pytest.raises(AttributeError):
        parsed.connections[0].host = "evil.test"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        parsed.apply_at = None  # type: ignore[misc]


MOMENT = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("like", "expected"),
    [
        ("2026-01-01T00:00+5:30", "2026-12-04T09:30:00+05:30"),
        ("2026-01-01T00:00:00+05:30", "2026-12-04T09:30:00+05:30"),
        ("2026-01-01T00:00:00-08:00", "2026-12-03T20:00:00-08:00"),
        ("2026-01-01T00:00:00Z", "2026-12-04T04:00:00Z"),
        ("2026-01-01T00:00:00", "2026-12-04T04:00:00+00:00"),
        ("garbage", "2026-12-04T04:00:00+00:00"),
        (None, "2026-12-04T04:00:00+00:00"),
    ],
)
def test_format_apply_at_keeps_the_offset(like: str | None, expected: str) -> None:
    """format_apply_at writes seconds and the offset of `like`, else UTC +00:00."""
    assert format_apply_at(MOMENT, like) == expected
    assert parse_apply_at(expected) == MOMENT


def test_format_apply_at_rounds_up_fractions() -> None:
    """Sub-second moments round up, so a result is never earlier than asked for."""
    moment = datetime(2026, 12, 4, 9, 29, 59, 1, tzinfo=timezone(timedelta(hours=1)))
    assert format_apply_at(moment, None) == "2026-12-04T08:30:00+00:00"


def test_format_apply_at_refuses_naive() -> None:
    """A naive moment cannot be formatted as a schedule."""
    with pytest.raises(ValueError, match="timezone-aware"):
        format_apply_at(datetime(2026, 12, 4, 9, 30), None)


def test_typo_in_required_key_is_pointed_out() -> None:
    """A missing server_cert next to a 'server_certs' key says it looks like a typo."""
    parsed = parse(document({"erp": {"baseurl": "https://h.test", "server_certs": "/b.pem"}}))
    assert 'found "server_certs": a typo?' in only_problem(parsed)


def test_plain_baseurls_read_exactly_as_the_full_parser_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut for plain https://host[:port][/path] URLs gives the host, port or error of the full
    parser for every URL, including the near misses that must fall through to it."""
    import random

    from chainwarden import connections

    def read(url: str) -> tuple[str, int] | str:
        try:
            return connections._split_baseurl(url)
        except ValueError as error:
            return f"error: {error}"

    alphabet = "aZ09.-_:/?#@\\ %\t\x00\u200b\u00e9[]hHtTpPsS"
    rng = random.Random(6)
    urls = [
        "https://a.example:443/x", "HTTPS://Host.Example:8443", "https://h:", "https://h:0", "https://h:99999",
        "https://-a.example", "https://a..b", "https://a_b.c/p?q", "https://a/\u00e9", "https://a/%20",
        "https://a/b c", "https://x/y@z", "https://u@x/", "https://[::1]:4", "https://x/#", "https://x\\y",
        "https://" + "a" * 64 + ".example", "https://x:8443/a/b;c=d/~e",
    ]
    urls += ["https://" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(20_000)]
    assert sum(1 for url in urls if connections._PLAIN_BASEURL.fullmatch(url)) > 1000  # the shortcut is taken
    shortcut = [read(url) for url in urls]
    monkeypatch.setattr(connections, "_PLAIN_BASEURL", connections.re.compile(r"(?!)"))  # never taken
    assert shortcut == [read(url) for url in urls]


def test_a_connection_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A named pipe where the JSON should be would block a plain open() for good: refused, located."""
    import os

    fifo = tmp_path / "prodConnections.json"
    os.mkfifo(fifo)
    parsed = read_connection_file(fifo)
    assert only_problem(parsed) == f"connection file {fifo}: cannot read: not a regular file (a device, FIFO or socket)"


@pytest.mark.parametrize(
    ("entry", "found"),
    [
        ({"baseURL": "https://h.test", "server_cert": "/b.pem"}, '"baseURL"'),
        ({"BaseUrl": "https://h.test", "server_cert": "/b.pem"}, '"BaseUrl"'),
        ({"baseurl": "https://h.test", "Server_Cert": "/b.pem"}, '"Server_Cert"'),
    ],
)
def test_a_key_that_differs_only_in_case_gets_the_typo_hint(entry: dict[str, object], found: str) -> None:
    """Keys are case-sensitive: "baseURL" for "baseurl" is named as the likely typo."""
    message = only_problem(parse(document({"erp": entry})))
    assert f"found {found}: keys are case-sensitive" in message, message


def test_external_connections_in_another_case_gets_the_hint() -> None:
    """The file-level required key gets the same hint."""
    message = only_problem(parse(b'{"External_Connections": {}}'))
    assert 'key "external_connections" is missing; found "External_Connections": keys are case-sensitive' in message


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{ broken", "expecting a key in double quotes"),
        (b'{ broken: 1 }', "expecting a key in double quotes"),
        (b'{"a": 1,\n  broken: 2}', "expecting a key in double quotes"),
        (b'{"a": }', "expecting a value (a missing value, or text without double quotes?)"),
        (b'{"a": [1, x]}', "expecting a value (a missing value, or text without double quotes?)"),
        (b'{"a": 1,}', "expecting a key in double quotes (a trailing comma before } ?)"),
        (b'{"a": 1 ,\n }', "expecting a key in double quotes (a trailing comma before } ?)"),
        (b'{"a": [1, 2,\n ]}', "expecting a value (a trailing comma before ] ?)"),
    ],
)
def test_a_trailing_comma_is_suggested_only_where_there_is_one(data: bytes, reason: str) -> None:
    """`{ broken` is not a trailing comma: the hint appears only when a comma precedes the closing bracket."""
    message = only_problem(parse(data))
    assert message.endswith(f"invalid JSON: {reason}"), message


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (  # a key repeated in an object that is a secret's value: its key path is the bearer token
            b'{"external_connections": {"a": {"baseurl": "https://h.test", "server_cert": "/1",'
            b' "secrets": {"bearer_token": {"Bearer SECRETLEAK2": 1, "Bearer SECRETLEAK2": 2}}}}}',
            f'{WHERE}, connection "a", key "secrets": a duplicate key inside it',
        ),
        (  # any spelling of the key, and deeper
            b'{"external_connections": {"a": {"baseurl": "https://h.test", "server_cert": "/1",'
            b' "Secrets": {"x": [{"SECRETLEAK2": 1, "SECRETLEAK2": 2}]}}}}',
            f'{WHERE}, connection "a", key "Secrets": a duplicate key inside it',
        ),
        (  # inside blob_sas_url's value
            b'{"blob_sas_url": {"sig": {"SECRETLEAK2": 1, "SECRETLEAK2": 2}},'
            b' "external_connections": {"a": {"baseurl": "https://h.test", "server_cert": "/1"}}}',
            f'{WHERE}, key "blob_sas_url": a duplicate key inside it',
        ),
        (  # secrets of a connection in a malformed table (reported from the top level)
            b'{"external_connections": [{"secrets": {"SECRETLEAK2": 1, "SECRETLEAK2": 2}}]}',
            f'{WHERE}, key "external_connections"[0]."secrets": a duplicate key inside it',
        ),
    ],
    ids=["nested-under-a-secret", "case-variant-deeper", "blob_sas_url", "table-not-an-object"],
)
def test_duplicates_below_secrets_never_name_a_key(data: bytes, where: str) -> None:
    """A repeated key anywhere below `secrets` or `blob_sas_url` is reported there, once, without
    naming any key path below it (the key itself may be the secret)."""
    parsed = parse(data)
    said = everything_said(parsed)
    assert "SECRETLEAK2" not in said, said
    assert where in said, said
    messages = [p.message for p in parsed.problems] + [p.message for c in parsed.connections for p in c.problems]
    assert sum("a duplicate key inside it" in m for m in messages) == 1, messages
