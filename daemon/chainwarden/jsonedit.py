"""Byte-preserving rewrite of server_cert and apply_at values in a connection JSON (pure)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chainwarden.connections import parse_apply_at

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The rest of a string token after its opening quote (the unrolled-loop form is linear).
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r"[^ \t\n\r,\]}]+")


@dataclass(frozen=True, slots=True)
class Span:
    """Character offsets [start, end) of one JSON string token, quotes included."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Member:
    key: str
    key_span: Span
    value_span: Span


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the rewriter's targets sit in the text."""

    top_open: int  # offset of the top-level "{"
    top_members: tuple[_Member, ...]
    apply_at: Span | None
    server_certs: dict[str, Span]
    connections: frozenset[str]
    ambiguous: dict[str, str]  # connection -> why its server_cert cannot be told apart (a repeated key)


@dataclass(frozen=True, slots=True)
class _Number:
    """A JSON number kept as written, so 1.0 -> 1 counts as a change in the safety check."""

    text: str


@dataclass(frozen=True, slots=True)
class _Edit:
    span: Span
    text: str


def locate_values(text: str) -> tuple[Span | None, dict[str, Span]]:
    """(span of the top-level apply_at string or None, {connection name: span of its server_cert}).

    Only server_cert values that are strings are listed. Raises ValueError when the text is
    not valid JSON, its top level is not an object, or apply_at, external_connections, a
    connection name or a server_cert appears twice (a rewrite would be ambiguous).
    """
    _load_exact(text.removeprefix("\ufeff"))
    layout = _locate(text)
    return layout.apply_at, dict(layout.server_certs)


# Top-level keys whose values are credentials (an Azure SAS URL's sig= query is a token).
SENSITIVE_TOP_LEVEL_KEYS = frozenset({"blob_sas_url"})
MASK = '"<redacted>"'
# A URL scheme followed by "://" (RFC 3986), at the start of a decoded baseurl.
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A URL with nothing but scheme, host, port and path before its query or fragment.
_PLAIN_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://[A-Za-z0-9.\-\[\]:]+(?:/[A-Za-z0-9._~%!$&'()*+,=:/\-]*)?(?:[?#].*)?", re.DOTALL
)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def sensitive_spans(text: str) -> list[Span]:
    """Every sensitive piece of the document, in document order: each scalar token (string, number,
    true, false, null) of a value under any connection's "secrets" object (the secrets' own key names
    stay visible; a "secrets" that is not an object is masked whole), of the top-level "blob_sas_url"
    value, and, inside the string token of every connection's "baseurl", its user information (before
    the host's "@") and everything from its "?" or "#" on (a query may carry sig=, code=, token=...):
    those spans lie inside the token, so its quotes, scheme, host, port and path stay. Keys match
    case-insensitively and repeated keys all count, so no spelling of a key lets its value through.
    Only tokens (or parts of one) are listed, never the whitespace between them: masking keeps every
    line break.

    Raises ValueError when the text is not a JSON object the tokenizer can walk.
    """
    return [span for span, _ in _sensitive_pieces(text)]


def mask_sensitive(text: str, mask: str = MASK) -> str:
    """The text with every span of `sensitive_spans` replaced by `mask` (a whole token), or by `mask`
    without its quotes (a piece inside a string token), everything else as it was (so two versions of
    a document masked alike differ only where they really differ)."""
    inner = mask[1:-1] if len(mask) >= 2 and mask.startswith('"') and mask.endswith('"') else mask
    return _splice(text, [_Edit(span, inner if part else mask) for span, part in _sensitive_pieces(text)])


def _sensitive_pieces(text: str) -> list[tuple[Span, bool]]:
    """(span, whether it is a piece inside a string token) for every sensitive span, in document order."""
    start = _skip_whitespace(text, 1 if text.startswith("\ufeff") else 0)
    if _char(text, start) != "{":
        raise ValueError("the top level of the connection JSON is not an object")
    pieces: list[tuple[Span, bool]] = []
    for member in _members(text, start):
        key = member.key.casefold()
        if key in SENSITIVE_TOP_LEVEL_KEYS:
            pieces += [(span, False) for span in _scalar_tokens(text, member.value_span)]
        elif key == "external_connections":
            for connection in _objects_members(text, member.value_span):
                for field in _objects_members(text, connection.value_span):
                    name = field.key.casefold()
                    if name == "baseurl" and _char(text, field.value_span.start) == '"':
                        pieces += [(span, True) for span in _url_credential_spans(text, field.value_span)]
                    if name != "secrets":
                        continue
                    if _char(text, field.value_span.start) == "{":
                        for secret in _members(text, field.value_span.start):
                            pieces += [(span, False) for span in _scalar_tokens(text, secret.value_span)]
                    else:
                        pieces += [(span, False) for span in _scalar_tokens(text, field.value_span)]
    return pieces


def _url_credential_spans(text: str, token: Span) -> list[Span]:
    """Inside the JSON string token of a URL: everything after the first "?" or "#" (query and
    fragment), as spans of the raw text (escapes such as \\u0040 or \\/ are read as what they stand
    for); the whole value when it is anything but a plain scheme://host[:port][/path] before that
    (user information, path parameters, spaces, backslashes: whatever a reader might take apart
    otherwise than this one)."""
    decoded, offsets = _decode_with_offsets(text, token)
    if not _PLAIN_URL.fullmatch(decoded):
        return [Span(token.start + 1, token.end - 1)] if decoded else []
    scheme = _URL_SCHEME.match(decoded)
    begin = scheme.end() if scheme else (2 if decoded.startswith("//") else 0)
    authority_end = next((i for i in range(begin, len(decoded)) if decoded[i] in "/?#\\"), len(decoded))
    spans = []
    at = decoded.rfind("@", begin, authority_end)
    if at > begin:
        spans.append(Span(offsets[begin], offsets[at]))
    query = next((i for i in range(begin, len(decoded)) if decoded[i] in "?#"), -1)
    if 0 <= query < len(decoded) - 1:
        spans.append(Span(offsets[query + 1], offsets[len(decoded)]))
    return spans


def _decode_with_offsets(text: str, token: Span) -> tuple[str, list[int]]:
    """The string token's characters and, for each, its offset in text (plus one past the last)."""
    chars: list[str] = []
    offsets: list[int] = []
    pos, end = token.start + 1, token.end - 1
    while pos < end:
        offsets.append(pos)
        if text[pos] != "\\":
            chars.append(text[pos])
            pos += 1
        elif text[pos + 1] == "u":
            chars.append(chr(int(text[pos + 2 : pos + 6], 16)))
            pos += 6
        else:
            chars.append(_SIMPLE_ESCAPES.get(text[pos + 1], text[pos + 1]))
            pos += 2
    offsets.append(end)
    return "".join(chars), offsets


def _objects_members(text: str, span: Span) -> list[_Member]:
    """The members of the value at span when it is an object, else none."""
    return _members(text, span.start) if _char(text, span.start) == "{" else []


def _scalar_tokens(text: str, span: Span) -> list[Span]:
    """The strings, numbers and literals inside span (keys of nested objects included)."""
    tokens: list[Span] = []
    pos = span.start
    while pos < span.end:
        char = text[pos]
        if char in " \t\n\r{}[],:":
            pos += 1
        elif char == '"':
            token = _string(text, pos)
            tokens.append(token)
            pos = token.end
        else:
            match = _SCALAR.match(text, pos)
            end = min(match.end(), span.end) if match is not None else pos + 1
            tokens.append(Span(pos, end))
            pos = end
    return tokens


def rewrite_connection_json(
    source: bytes, *, server_certs: Mapping[str, str], apply_at: str
) -> bytes:
    """Replace the named connections' server_cert values and set apply_at, byte for byte.

    Every other byte stays as it was. A missing apply_at is inserted as the first top-level
    member, copying the layout of the existing first member; schedule_at is left alone.
    Raises ValueError when the source is not valid UTF-8 JSON, a named connection or its
    server_cert string is missing, the target keys are ambiguous, or apply_at is invalid.
    """
    text = _decode(source)
    bom = text.startswith("\ufeff")
    text = text.removeprefix("\ufeff")
    before = _load_exact(text)
    _check_apply_at(apply_at)
    layout = _locate(text)
    edits = [_cert_edit(text, layout, name, path) for name, path in server_certs.items()]
    edits.append(_apply_at_edit(text, layout, apply_at))
    result = _splice(text, [edit for edit in edits if edit is not None])
    if _load_exact(result) != _expected(before, server_certs, apply_at):
        raise ValueError(
            "internal error: the rewritten JSON differs from the source in more than the "
            "intended values; refusing to return it"
        )
    return (_BOM if bom else b"") + result.encode("utf-8")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"the source is not valid UTF-8 at byte offset {error.start}") from None


def _load_exact(text: str) -> Any:
    """Decode with objects as pair tuples and numbers as written: order, duplicates, spelling."""
    try:
        return json.loads(
            text,
            object_pairs_hook=tuple,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the source is not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise ValueError("the source is not usable JSON: values are nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"the source is not valid JSON: {name} is not a JSON value")


def _check_apply_at(apply_at: str) -> None:
    try:
        parse_apply_at(apply_at)
    except ValueError as error:
        raise ValueError(f"cannot set apply_at: {error}") from None


def _locate(text: str) -> _Layout:
    start = _skip_whitespace(text, 1 if text.startswith("\ufeff") else 0)
    if _char(text, start) != "{":
        raise ValueError("the top level of the connection JSON is not an object")
    top = _members(text, start)
    _refuse_repeats(top, "top-level key", {"apply_at", "external_connections"})
    apply_at = next((m.value_span for m in top if m.key == "apply_at"), None)
    if apply_at is not None and _char(text, apply_at.start) != '"':
        raise ValueError("the top-level apply_at is not a string; fix it by hand first")
    table = next((m.value_span for m in top if m.key == "external_connections"), None)
    names: frozenset[str] = frozenset()
    certs: dict[str, Span] = {}
    ambiguous: dict[str, str] = {}
    if table is not None and _char(text, table.start) == "{":
        names, certs, ambiguous = _connection_spans(text, table)
    return _Layout(start, tuple(top), apply_at, certs, names, ambiguous)


def _connection_spans(text: str, table: Span) -> tuple[frozenset[str], dict[str, Span], dict[str, str]]:
    """Connection names, their server_cert spans, and the connections whose server_cert is ambiguous
    (refused only if the rewrite must change it: the others are left as they are, byte for byte)."""
    connections = _members(text, table.start)
    _refuse_repeats(connections, "connection", None)
    certs = {}
    ambiguous = {}
    for connection in connections:
        if _char(text, connection.value_span.start) != "{":
            continue
        fields = _members(text, connection.value_span.start)
        try:
            _refuse_repeats(fields, f"connection {_quote(connection.key)}: key", {"server_cert"})
        except ValueError as error:
            ambiguous[connection.key] = str(error)
            continue
        cert = next((m.value_span for m in fields if m.key == "server_cert"), None)
        if cert is not None and _char(text, cert.start) == '"':
            certs[connection.key] = cert
    return frozenset(m.key for m in connections), certs, ambiguous


def _refuse_repeats(members: list[_Member], what: str, keys: set[str] | None) -> None:
    counts = Counter(m.key for m in members if keys is None or m.key in keys)
    for key, count in counts.items():
        if count > 1:
            raise ValueError(
                f"{what} {_quote(key)} appears {count} times; refusing an ambiguous rewrite"
            )


def _members(text: str, start: int) -> list[_Member]:
    """The members of the object whose "{" is at start, with key and value spans."""
    members: list[_Member] = []
    pos = _skip_whitespace(text, start + 1)
    if _char(text, pos) == "}":
        return members
    while True:
        key_span = _string(text, pos)
        key = json.loads(text[key_span.start : key_span.end])
        pos = _expect(text, _skip_whitespace(text, key_span.end), ":")
        value_span = _value(text, _skip_whitespace(text, pos))
        members.append(_Member(key, key_span, value_span))
        pos = _skip_whitespace(text, value_span.end)
        if _char(text, pos) == "}":
            return members
        pos = _skip_whitespace(text, _expect(text, pos, ","))


def _value(text: str, start: int) -> Span:
    char = _char(text, start)
    if char == '"':
        return _string(text, start)
    if char in ("{", "["):
        return _container(text, start)
    match = _SCALAR.match(text, start)
    if match is None:
        raise ValueError(f"the source is not valid JSON: no value at offset {start}")
    return Span(start, match.end())


def _container(text: str, start: int) -> Span:
    """Skip a whole object or array without recursion, stepping over strings whole."""
    depth = 0
    pos = start
    while True:
        match = _BRACKET_OR_QUOTE.search(text, pos)
        if match is None:
            raise ValueError(f"the source is not valid JSON: unclosed bracket at offset {start}")
        if match.group() == '"':
            pos = _string(text, match.start()).end
            continue
        depth += 1 if match.group() in "{[" else -1
        pos = match.end()
        if depth == 0:
            return Span(start, pos)


def _string(text: str, start: int) -> Span:
    match = _STRING_REST.match(text, start + 1) if _char(text, start) == '"' else None
    if match is None:
        raise ValueError(f"the source is not valid JSON: expected a string at offset {start}")
    return Span(start, match.end())


def _expect(text: str, pos: int, char: str) -> int:
    if _char(text, pos) != char:
        raise ValueError(f"the source is not valid JSON: expected {char!r} at offset {pos}")
    return pos + 1


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _char(text: str, pos: int) -> str:
    return text[pos] if pos < len(text) else ""


def _cert_edit(text: str, layout: _Layout, name: str, path: str) -> _Edit | None:
    if name in layout.ambiguous:
        raise ValueError(layout.ambiguous[name])
    span = layout.server_certs.get(name)
    if span is None:
        if name not in layout.connections:
            raise ValueError(f"no connection {_quote(name)} in external_connections")
        raise ValueError(f"connection {_quote(name)} has no server_cert string to replace")
    if not path:
        raise ValueError(f"the new server_cert for connection {_quote(name)} is empty")
    return _replace(text, span, path)


def _apply_at_edit(text: str, layout: _Layout, apply_at: str) -> _Edit | None:
    if layout.apply_at is not None:
        return _replace(text, layout.apply_at, apply_at)
    member = f'"apply_at"{{colon}}{_json_string(apply_at)}'
    if not layout.top_members:
        at = layout.top_open + 1
        return _Edit(Span(at, at), member.format(colon=": "))
    first = layout.top_members[0]
    colon = text[first.key_span.end : first.value_span.start]
    at = first.key_span.start
    return _Edit(Span(at, at), member.format(colon=colon) + "," + _member_gap(text, layout))


def _member_gap(text: str, layout: _Layout) -> str:
    """Whitespace to put before the old first member: what follows the first comma, if any."""
    first = layout.top_members[0]
    if len(layout.top_members) > 1:
        between = text[first.value_span.end : layout.top_members[1].key_span.start]
        return between.partition(",")[2]
    return text[layout.top_open + 1 : first.key_span.start]


def _replace(text: str, span: Span, value: str) -> _Edit | None:
    """An edit setting the string at span to value; None when it already holds that value."""
    if json.loads(text[span.start : span.end]) == value:
        return None  # keep the original spelling (escapes and all) of an unchanged value
    return _Edit(span, _json_string(value))


def _json_string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{_quote(value)} holds a lone surrogate; it cannot be UTF-8") from None
    return json.dumps(value, ensure_ascii=False)


def _splice(text: str, edits: list[_Edit]) -> str:
    pieces = []
    pos = 0
    for edit in sorted(edits, key=lambda edit: edit.span.start):
        pieces += [text[pos : edit.span.start], edit.text]
        pos = edit.span.end
    pieces.append(text[pos:])
    return "".join(pieces)


def _expected(before: Any, server_certs: Mapping[str, str], apply_at: str) -> Any:
    """The exact decoded value the rewrite must produce from the decoded source."""
    top = list(before)
    keys = [key for key, _ in top]
    if "apply_at" in keys:
        top[keys.index("apply_at")] = ("apply_at", apply_at)
    else:
        top.insert(0, ("apply_at", apply_at))
        keys.insert(0, "apply_at")
    if server_certs:
        at = keys.index("external_connections")
        top[at] = ("external_connections", _with_certs(top[at][1], server_certs))
    return tuple(top)


def _with_certs(table: Any, server_certs: Mapping[str, str]) -> tuple[Any, ...]:
    return tuple(
        (name, _with_cert(fields, server_certs[name]) if name in server_certs else fields)
        for name, fields in table
    )


def _with_cert(fields: Any, path: str) -> tuple[Any, ...]:
    return tuple((key, path if key == "server_cert" else value) for key, value in fields)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
