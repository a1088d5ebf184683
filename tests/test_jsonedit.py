"""Tests for chainwarden.jsonedit: byte-preserving rewrites of the connection JSON."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping

import pytest

from chainwarden.jsonedit import Span, locate_values, rewrite_connection_json

NEW_AT = "2027-03-01T10:00:00+05:30"
NEW_CERT = "/etc/pki/windchill/material-api-chain.v2.pem"

SAMPLE = b"""{
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

# Every JSON type as an unknown key, odd number spellings, escapes and a surrogate pair.
ODD = (
    '{"n1": 1.0, "n2": 1e3, "n3": -0, "n4": 1E-7, "t": true, "f": false, "z": null,\r\n'
    ' "s": "tab\\there \\"quoted\\" \\\\ back\\/slash \\u00e9 \\ud83d\\ude00",\r\n'
    ' "arr": [1.0, [], {}, [{"server_cert": "not me"}], "]}\\"{["],\r\n'
    ' "obj": {"apply_at": "not me either", "deep": {"a": [null]}},\r\n'
    ' "apply_at": "2026-12-04T09:30+5:30",\r\n'
    ' "external_connections": {\r\n'
    '  "caf\\u00e9": {"server_cert": "/old/caf\\u00e9.pem", "extra": -0.0e+0},\r\n'
    '  "emoji \\ud83d\\ude00": {"server_cert": "/old/emoji.pem"},\r\n'
    '  "untouched": {"server_cert": "/old/\\u0075ntouched.pem"}\r\n'
    " }\r\n"
    "}"
)


def rewrite(source: bytes, certs: Mapping[str, str] | None = None, apply_at: str = NEW_AT) -> bytes:
    return rewrite_connection_json(source, server_certs=certs or {}, apply_at=apply_at)


def changed_ranges(before: str, after: str) -> list[tuple[int, int]]:
    """The source ranges that difflib finds replaced or deleted, or where text was inserted."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [(i1, i2) for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal"]


def assert_only_inside(before: str, after: str, spans: list[Span]) -> None:
    for start, end in changed_ranges(before, after):
        assert any(s.start <= start and end <= s.end for s in spans), (start, end)


def expected_splice(text: str, replacements: list[tuple[Span, str]]) -> str:
    for span, value in sorted(replacements, key=lambda r: -r[0].start):
        text = text[: span.start] + json.dumps(value, ensure_ascii=False) + text[span.end :]
    return text


def test_locate_values_on_the_sample() -> None:
    """locate_values returns the spans of the apply_at and server_cert string tokens."""
    text = SAMPLE.decode()
    apply_at, certs = locate_values(text)
    assert apply_at is not None
    assert text[apply_at.start : apply_at.end] == '"2026-12-04T09:30:00+00:00"'
    assert list(certs) == ["material_api"]
    span = certs["material_api"]
    assert text[span.start : span.end] == '"/etc/pki/windchill/material-api-chain.pem"'


def test_locate_values_ignores_look_alikes() -> None:
    """Nested apply_at/server_cert keys and escaped brackets inside strings are not targets."""
    apply_at, certs = locate_values(ODD)
    assert apply_at is not None and ODD[apply_at.start : apply_at.end] == '"2026-12-04T09:30+5:30"'
    assert list(certs) == ["café", "emoji \U0001f600", "untouched"]
    assert ODD[certs["café"].start : certs["café"].end] == '"/old/caf\\u00e9.pem"'


def test_locate_values_without_apply_at() -> None:
    """A document without apply_at and without a server_cert string gives None and no entry."""
    assert locate_values('{"external_connections": {"a": {"server_cert": 5}}}') == (None, {})


def test_sample_rewrite_is_exact() -> None:
    """Rewriting the documented sample changes exactly the two values, nothing else."""
    out = rewrite(SAMPLE, {"material_api": NEW_CERT})
    assert out == SAMPLE.replace(b"2026-12-04T09:30:00+00:00", NEW_AT.encode()).replace(
        b"/etc/pki/windchill/material-api-chain.pem", NEW_CERT.encode()
    )


def test_diff_touches_only_the_intended_spans() -> None:
    """difflib finds changes only inside the spans of the rewritten values."""
    certs = {"café": "/new/café.pem", "emoji \U0001f600": '/new/"quoted"\\.pem'}
    out = rewrite(ODD.encode(), certs).decode()
    apply_at, spans = locate_values(ODD)
    assert apply_at is not None
    targets = [apply_at, spans["café"], spans["emoji \U0001f600"]]
    assert_only_inside(ODD, out, targets)
    expected = expected_splice(
        ODD, [(apply_at, NEW_AT)] + [(spans[name], path) for name, path in certs.items()]
    )
    assert out == expected


def test_unchanged_values_keep_their_spelling() -> None:
    """A value that already equals the new one keeps its original escapes byte for byte."""
    source = ODD.encode()
    out = rewrite(source, {"untouched": "/old/untouched.pem"}, "2026-12-04T09:30+5:30")
    assert out == source


def test_numbers_and_unknown_types_survive() -> None:
    """1.0, 1e3, -0, -0.0e+0, literals, arrays and objects come out exactly as written."""
    out = rewrite(ODD.encode(), {"café": "/x.pem"}).decode()
    for token in (
        '"n1": 1.0',
        '"n2": 1e3',
        '"n3": -0,',
        '"n4": 1E-7',
        '"t": true',
        '"f": false',
        '"z": null',
        '"arr": [1.0, [], {}, [{"server_cert": "not me"}], "]}\\"{["]',
        '"obj": {"apply_at": "not me either", "deep": {"a": [null]}}',
        '"extra": -0.0e+0',
    ):
        assert token in out


def test_crlf_bom_and_unicode_escapes_are_preserved() -> None:
    """A BOM, CRLF line ends, \\u escapes and raw non-ASCII text are all kept."""
    source = b"\xef\xbb\xbf" + ODD.replace('"caf\\u00e9": {', '"café": {').encode()
    out = rewrite(source, {"café": "/neu/ä.pem"})
    assert out.startswith(b"\xef\xbb\xbf")
    assert out.count(b"\r\n") == source.count(b"\r\n")
    assert b"\\ud83d\\ude00" in out
    assert '"/neu/ä.pem"'.encode() in out
    text, new_text = source[3:].decode(), out[3:].decode()
    apply_at, spans = locate_values(text)
    assert apply_at is not None
    assert_only_inside(text, new_text, [apply_at, spans["café"]])


def test_bom_in_text_for_locate_values() -> None:
    """locate_values skips a leading U+FEFF and gives offsets into the text as passed."""
    text = "\ufeff" + SAMPLE.decode()
    apply_at, _ = locate_values(text)
    assert apply_at is not None
    assert text[apply_at.start : apply_at.end] == '"2026-12-04T09:30:00+00:00"'


def test_no_trailing_newline_stays_that_way() -> None:
    """A source without a final newline gets none added; one with it keeps it."""
    bare = SAMPLE.rstrip(b"\n")
    assert not rewrite(bare).endswith(b"\n")
    assert rewrite(SAMPLE).endswith(b"}\n")


def test_new_values_are_json_escaped() -> None:
    """New strings are escaped with json.dumps(ensure_ascii=False) and decode back exactly."""
    path = 'C:\\pki\\"odd"\tname\u2028ü.pem'
    out = rewrite(SAMPLE, {"material_api": path})
    assert json.dumps(path, ensure_ascii=False).encode() in out
    assert json.loads(out)["external_connections"]["material_api"]["server_cert"] == path


def test_shared_bundle_across_connections() -> None:
    """Connections sharing one bundle can all be pointed at the same new bundle."""
    source = (
        b'{"apply_at": "2026-12-04T09:30:00Z", "external_connections": {\n'
        b'  "a": {"server_cert": "/shared.pem"},\n'
        b'  "b": {"server_cert": "/shared.pem"},\n'
        b'  "c": {"server_cert": "/shared.pem"}\n}}'
    )
    out = rewrite(source, {"a": "/shared.v2.pem", "c": "/shared.v2.pem"})
    connections = json.loads(out)["external_connections"]
    assert [c["server_cert"] for c in connections.values()] == [
        "/shared.v2.pem",
        "/shared.pem",
        "/shared.v2.pem",
    ]


def test_connection_names_that_look_like_keys() -> None:
    """Connections named apply_at or server_cert are not confused with the real keys."""
    source = (
        b'{"external_connections": {"apply_at": {"server_cert": "/1.pem"},'
        b' "server_cert": {"server_cert": "/2.pem", "apply_at": "x"}}}'
    )
    out = rewrite(source, {"server_cert": "/2b.pem"})
    assert out == (
        b'{"apply_at": "' + NEW_AT.encode() + b'","external_connections": '
        b'{"apply_at": {"server_cert": "/1.pem"},'
        b' "server_cert": {"server_cert": "/2b.pem", "apply_at": "x"}}}'
    )


def test_rewrite_of_own_output_is_a_no_op() -> None:
    """Running the rewrite again on its output with the same values returns identical bytes."""
    odd_certs = {"café": "/new/é.pem", "emoji \U0001f600": "/new/\\x.pem"}
    cases = [
        (SAMPLE, {"material_api": NEW_CERT}),
        (ODD.encode(), odd_certs),
        (b"\xef\xbb\xbf" + ODD.encode(), odd_certs),
        (b'{"a":1}', {}),
    ]
    for source, certs in cases:
        once = rewrite(source, certs)
        assert once != source
        assert rewrite(once, certs) == once


LAYOUTS = [
    (
        b'{\n  "blob": 1,\n  "external_connections": {}\n}\n',
        b'{\n  "apply_at": "' + NEW_AT.encode() + b'",\n  "blob": 1,\n'
        b'  "external_connections": {}\n}\n',
    ),
    (
        b'{\n    "blob": 1,\n    "external_connections": {}\n}',
        b'{\n    "apply_at": "' + NEW_AT.encode() + b'",\n    "blob": 1,\n'
        b'    "external_connections": {}\n}',
    ),
    (
        b'{\r\n\t"blob" : 1,\r\n\t"external_connections" : {}\r\n}\r\n',
        b'{\r\n\t"apply_at" : "' + NEW_AT.encode() + b'",\r\n\t"blob" : 1,\r\n'
        b'\t"external_connections" : {}\r\n}\r\n',
    ),
    (
        b'{"blob":1,"external_connections":{}}',
        b'{"apply_at":"' + NEW_AT.encode() + b'","blob":1,"external_connections":{}}',
    ),
    (b"{}", b'{"apply_at": "' + NEW_AT.encode() + b'"}'),
]


@pytest.mark.parametrize(
    ("source", "expected"), LAYOUTS, ids=["2-space", "4-space", "tab-crlf", "minified", "empty"]
)
def test_missing_apply_at_is_inserted_first(source: bytes, expected: bytes) -> None:
    """A missing apply_at becomes the first member, copying the first member's layout."""
    assert rewrite(source) == expected


def test_schedule_at_is_left_alone() -> None:
    """With only schedule_at, apply_at is inserted and schedule_at stays byte for byte."""
    source = b'{\n  "schedule_at": "2026-12-04T09:30+5:30",\n  "external_connections": {}\n}'
    out = rewrite(source)
    assert out == (
        b'{\n  "apply_at": "' + NEW_AT.encode() + b'",\n'
        b'  "schedule_at": "2026-12-04T09:30+5:30",\n  "external_connections": {}\n}'
    )


def test_an_ambiguous_connection_left_alone_does_not_stop_the_others() -> None:
    """A repeated server_cert in a connection the rewrite does not touch stays byte for byte; only
    rewriting that connection would be ambiguous."""
    source = (
        b'{"external_connections": {"a": {"server_cert": "/1", "server_cert": "/2"},\n'
        b' "b": {"server_cert": "/old.pem"}}}'
    )
    out = rewrite(source, {"b": "/new.pem"})
    assert b'"a": {"server_cert": "/1", "server_cert": "/2"},\n' in out
    assert b'"b": {"server_cert": "/new.pem"}' in out


@pytest.mark.parametrize(
    ("source", "certs", "message"),
    [
        (SAMPLE, {"nope": "/x.pem"}, 'no connection "nope" in external_connections'),
        (b'{"apply_at": "x"}', {"a": "/x.pem"}, 'no connection "a" in external_connections'),
        (
            b'{"external_connections": {"a": {"baseurl": "https://h"}}}',
            {"a": "/x.pem"},
            'connection "a" has no server_cert string to replace',
        ),
        (
            b'{"external_connections": {"a": {"server_cert": null}}}',
            {"a": "/x.pem"},
            'connection "a" has no server_cert string to replace',
        ),
        (
            b'{"external_connections": {"a": "/x.pem"}}',
            {"a": "/x.pem"},
            'connection "a" has no server_cert string to replace',
        ),
        (SAMPLE, {"material_api": ""}, 'the new server_cert for connection "material_api" is'),
        (b'{"a": 1,}', {}, "the source is not valid JSON: line 1, column 9: Expecting"),
        (b'{"a": NaN}', {}, "the source is not valid JSON: NaN is not a JSON value"),
        (b"[]", {}, "the top level of the connection JSON is not an object"),
        (b'{"a": "\xff"}', {}, "the source is not valid UTF-8 at byte offset 7"),
        (b'\xef\xbb\xbf{"a": "\xff"}', {}, "the source is not valid UTF-8 at byte offset 10"),
        (b'{"apply_at": 5}', {}, "the top-level apply_at is not a string"),
        (
            b'{"external_connections": {"a": {"server_cert": "/1"}, "a": {"server_cert": "/2"}}}',
            {"a": "/x.pem"},
            'connection "a" appears 2 times; refusing an ambiguous rewrite',
        ),
        (
            b'{"external_connections": {"a": {"server_cert": "/1", "server_cert": "/2"}}}',
            {"a": "/x.pem"},
            'connection "a": key "server_cert" appears 2 times',
        ),
        (
            b'{"apply_at": "x", "apply_at": "y", "external_connections": {}}',
            {},
            'top-level key "apply_at" appears 2 times',
        ),
    ],
)
def test_refusals(source: bytes, certs: dict[str, str], message: str) -> None:
    """Missing targets, ambiguity and invalid input raise a ValueError sentence."""
    with pytest.raises(ValueError) as caught:
        rewrite(source, certs)
    assert message in str(caught.value)


@pytest.mark.parametrize("apply_at", ["2027-03-01T10:00:00", "tomorrow", ""])
def test_invalid_new_apply_at_is_refused(apply_at: str) -> None:
    """The new apply_at must itself be a valid apply_at with an offset."""
    with pytest.raises(ValueError, match="cannot set apply_at: "):
        rewrite(SAMPLE, apply_at=apply_at)


def test_lone_surrogate_value_is_refused() -> None:
    """A new value that cannot be encoded as UTF-8 is a ValueError, not a UnicodeError."""
    with pytest.raises(ValueError, match="lone surrogate"):
        rewrite(SAMPLE, {"material_api": "/x\ud800.pem"})


def test_other_duplicate_keys_are_kept() -> None:
    """Duplicate keys outside the targets do not block the rewrite and stay as written."""
    source = b'{"x": 1, "x": 2, "external_connections": {"a": {"server_cert": "/1",'
    source += b' "s": {"k": "1", "k": "2"}}}}'
    out = rewrite(source, {"a": "/2"})
    assert out == source.replace(b'{"x"', b'{"apply_at": "' + NEW_AT.encode() + b'", "x"').replace(
        b'"/1"', b'"/2"'
    )


def test_large_document() -> None:
    """A big document (many connections and a long array) is rewritten exactly."""
    connections = {f"c{i}": {"server_cert": f"/b{i}.pem", "v": [i] * 50} for i in range(2000)}
    source = json.dumps(
        {
            "apply_at": "2026-12-04T09:30:00Z",
            "filler": list(range(200_000)),
            "external_connections": connections,
        },
        indent=1,
    ).encode()
    out = rewrite(source, {"c1999": "/new.pem"})
    assert out == source.replace(b"2026-12-04T09:30:00Z", NEW_AT.encode()).replace(
        b'"/b1999.pem"', b'"/new.pem"'
    )
