"""Parse and validate a Windchill+ connection JSON into frozen values (pure, plus one reader)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from chainwarden.regularfile import NotARegularFile, read_regular
from chainwarden.report import Code, Problem, Severity

MAX_CONNECTION_JSON_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_DEFAULT_PORT = 443
_MAX_OFFSET = timedelta(hours=18)
_SHOWN_CHARS = 80
_APPLY_AT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<offset>Z|[+-]\d{1,2}:\d{2})?",
    re.ASCII,
)
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")
# https://host[:port][/path] with an ASCII host name and nothing urlsplit could read another way.
_PLAIN_BASEURL = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]://(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]*))?"
    r"(?:/[!-\"$-/0-9:;<=>A-Z\[\]^_`a-z{|}~]*)?"  # a path of printable ASCII, no ? # @ or backslash
)
# Control characters and lone surrogates: a name holding one breaks log lines and metric labels.
_UNSAFE_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CERT_KEYS = frozenset({"baseurl", "server_cert"})
# Values that are credentials: no key path below them is ever named (compared case-insensitively).
_SECRETS_KEYS = frozenset({"secrets"})
_SENSITIVE_TOP_KEYS = frozenset({"blob_sas_url"})
_HIDDEN = "nothing under secrets is printed"
_REPEATED_INSIDE = (
    "a duplicate key inside it (not named: nothing below it is printed); "
    "a JSON reader silently keeps only one of the repeated values"
)

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Connection:
    """One usable connection; never holds secrets values other than the client_cert path."""

    file: str
    name: str
    baseurl: str
    host: str
    port: int
    server_cert: str
    server_cert_path: str
    client_cert_path: str | None
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class ConnectionFile:
    """A parsed connection JSON: its usable connections, file-level problems and apply_at."""

    path: str
    connections: tuple[Connection, ...]
    problems: tuple[Problem, ...]
    apply_at: datetime | None
    apply_at_raw: str | None
    apply_at_key: str | None
    # Every name in external_connections, usable or not; None when the file could not be read that far
    # (so whether it holds a given connection is unknown).
    names: frozenset[str] | None = None


class _Object(dict[str, Any]):
    """A decoded JSON object that repeated keys in the source, and remembers which (others stay dicts)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        repeated = Counter(key for key, _ in pairs)
        self.duplicates = tuple((key, n) for key, n in repeated.items() if n > 1)


class _Fault(NamedTuple):
    """One thing wrong with a connection; fatal faults make the connection unusable."""

    key: str | None  # formatted key path inside the connection, None for the whole value
    text: str
    fatal: bool


class _Unusable(Exception):
    """The file as a whole could not be read or decoded; carries a located sentence."""


class _ConstantError(ValueError):
    """NaN/Infinity: accepted by Python's json module, but not JSON."""


def read_connection_file(
    path: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    max_bytes: int = MAX_CONNECTION_JSON_BYTES,
) -> ConnectionFile:
    """Read and parse one connection JSON; OS errors and oversize become located problems."""
    shown = os.fspath(path)
    try:
        data, _ = read_regular(shown, max_bytes + 1)  # a FIFO or a device is refused, never waited on
    except NotARegularFile:
        return _unusable(shown, f"connection file {shown}: cannot read: not a regular file (a device, FIFO or socket)")
    except OSError as error:
        return _unusable(shown, f"connection file {shown}: cannot read: {error.strerror or error}")
    except ValueError:  # a NUL in the path
        return _unusable(shown, f"connection file {shown!r}: cannot read: the path is not valid")
    if len(data) > max_bytes:
        return _unusable(shown, _too_big(shown, max_bytes))
    return parse_connection_file(data, shown, now=now)


def parse_connection_file(data: bytes, path: str, *, now: datetime | None = None) -> ConnectionFile:
    """Parse connection JSON bytes; every fault becomes a located Problem, nothing raises.

    `now` is accepted for symmetry with the other core functions but not compared with
    apply_at: a file that was already rolled out legitimately carries a past apply_at.
    """
    where = f"connection file {path}"
    try:
        top, repeats = _load(_decode(data, where), where)
    except _Unusable as error:
        return _unusable(path, str(error))
    if not isinstance(top, dict):
        return _unusable(path, f"{where}: the top level is {_kind(top)}, not a JSON object")
    apply_at, raw, key, schedule_problems = _schedule(top, where)
    problems = [*(_misplaced_duplicates(top, where) if repeats else ()), *schedule_problems]
    connections: list[Connection] = []
    table = top.get("external_connections")
    names = frozenset(table) if isinstance(table, dict) else None
    if "external_connections" not in top:
        problems.append(_invalid(f'{where}: key "external_connections" is missing{_near("external_connections", top)}'))
    elif not isinstance(table, dict):
        problems.append(_invalid(f'{where}, key "external_connections": is {_kind(table)}, not a JSON object'))
    else:
        _parse_table(table, path, connections, problems, repeats=repeats)
    return ConnectionFile(path, tuple(connections), tuple(problems), apply_at, raw, key, names)


def parse_apply_at(text: str) -> datetime:
    """Parse an ISO 8601 date-time with an explicit offset (`+5:30` and no seconds allowed)."""
    match = _APPLY_AT.fullmatch(text)
    shown = _quote(text, _SHOWN_CHARS)
    if match is None:
        raise ValueError(f"{shown} is not an ISO 8601 date-time like 2026-12-04T09:30:00+00:00")
    if match["offset"] is None:
        raise ValueError(f"{shown} has no UTC offset, so the moment is ambiguous; add one such as +00:00 or Z")
    offset = _parse_offset(match["offset"], shown)
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        return datetime.fromisoformat(
            f"{match['date']}T{match['hour']}:{match['minute']}:{match['second'] or '00'}.{fraction}"
        ).replace(tzinfo=timezone(offset))
    except ValueError as error:
        raise ValueError(f"{shown} is not a valid date-time: {error}") from None


def format_apply_at(moment: datetime, like: str | None) -> str:
    """Format an aware moment as ISO 8601 with seconds, in the offset `like` was written in.

    Without a usable `like` the result is in UTC as "+00:00"; a `like` ending in Z keeps Z.
    Sub-second moments round up to the next second, so "at least an hour ahead" stays true.
    """
    if moment.utcoffset() is None:
        raise ValueError("apply_at needs a timezone-aware moment; got a naive datetime")
    offset, zulu = _offset_of(like)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    local = moment.astimezone(timezone(offset)).replace(tzinfo=None)
    return local.isoformat(timespec="seconds") + ("Z" if zulu else _format_offset(offset))


def _parse_offset(text: str, shown: str) -> timedelta:
    if text == "Z":
        return timedelta(0)
    hours, minutes = (int(part) for part in text[1:].split(":"))
    offset = timedelta(hours=hours, minutes=minutes)
    if minutes >= 60 or offset > _MAX_OFFSET:
        raise ValueError(f"{shown} has an impossible UTC offset {text} (limit is ±18:00)")
    return -offset if text.startswith("-") else offset


def _offset_of(like: str | None) -> tuple[timedelta, bool]:
    if like is None:
        return timedelta(0), False
    try:
        parsed = parse_apply_at(like)
    except ValueError:
        return timedelta(0), False
    return parsed.utcoffset() or timedelta(0), like.endswith("Z")


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _decode(data: bytes, where: str) -> str:
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        # Position only: even one byte of a secrets value must not reach a message.
        offset = error.start + len(data) - len(body)
        line = data.count(b"\n", 0, offset) + 1
        raise _Unusable(
            f"{where}: line {line}, byte offset {offset}: not valid UTF-8 (connection JSON must be UTF-8 encoded)"
        ) from None


def _load(text: str, where: str) -> tuple[Any, bool]:
    """The decoded document, and whether any of its objects repeats a key."""
    if not text.strip():
        raise _Unusable(f"{where}: the file is empty; expected a JSON object")
    repeats: list[_Object] = []

    def read_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        decoded = dict(pairs)
        if len(decoded) == len(pairs):
            return decoded
        repeated = _Object(pairs)
        repeats.append(repeated)
        return repeated

    try:
        return json.loads(text, object_pairs_hook=read_object, parse_constant=_reject_constant), bool(repeats)
    except json.JSONDecodeError as error:
        if error.pos >= len(text.rstrip()):
            reason = "the file ends in the middle of the document (cut short, or a closing } or ] missing)"
        else:
            reason = _json_reason(error.msg, text, error.pos)
        raise _Unusable(f"{where}: line {error.lineno}, column {error.colno}: invalid JSON: {reason}") from None
    except _ConstantError as error:
        raise _Unusable(f"{where}: invalid JSON: {error}") from None
    except RecursionError:
        raise _Unusable(f"{where}: invalid JSON: values are nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not a JSON value")


def _schedule(top: dict[str, Any], where: str) -> tuple[datetime | None, str | None, str | None, list[Problem]]:
    """Read apply_at (or notice schedule_at): (moment, raw text, key used, problems)."""
    problems: list[Problem] = []
    if "schedule_at" in top:
        problems.append(
            Problem(
                Code.SCHEDULE_AT_USED,
                Severity.WARNING,
                f"{where}: key schedule_at is not the documented apply_at; it is not used",
            )
        )
    if "apply_at" not in top:
        if "schedule_at" not in top:
            return None, None, None, problems
        raw = top["schedule_at"]
        return None, raw if isinstance(raw, str) else None, "schedule_at", problems
    value = top["apply_at"]
    if not isinstance(value, str):
        problems.append(_bad_apply_at(f'{where}, key "apply_at": is {_kind(value)}, not a date-time string'))
        return None, None, "apply_at", problems
    try:
        moment = parse_apply_at(value)
    except ValueError as error:
        problems.append(_bad_apply_at(f'{where}, key "apply_at": {error}'))
        return None, value, "apply_at", problems
    return moment, value, "apply_at", problems


def _parse_table(
    table: dict[str, Any], path: str, connections: list[Connection], problems: list[Problem], *, repeats: bool
) -> None:
    """Check every connection; usable ones go to `connections`, broken ones to `problems`.

    `repeats`: whether the file repeats a key anywhere (when not, no connection is searched for one).
    """
    where = f"connection file {path}"
    repeated = dict(table.duplicates) if isinstance(table, _Object) else {}
    for name, value in table.items():
        if name in repeated:
            problems.append(
                _invalid(
                    f"{where}, connection {_quote(name)}: the name appears {repeated[name]} times "
                    "in external_connections; a JSON reader keeps only one, so it is ambiguous"
                )
            )
            continue
        connection, broken = _check_connection(path, name, value, repeats=repeats)
        if connection is not None and _UNSAFE_NAME.search(name):
            connection, broken = (
                None,
                _invalid(
                    f"{where}, connection {_quote(name)}: the name holds a control character or a lone "
                    "surrogate escape, which no log line or metric label can carry; rename the connection"
                ),
            )
        if connection is not None:
            connections.append(connection)
        if broken is not None:
            problems.append(broken)


def _check_connection(path: str, name: str, value: Any, *, repeats: bool) -> tuple[Connection | None, Problem | None]:
    if not isinstance(value, dict):
        return None, _invalid(f"{_where(path, name)}: is {_kind(value)}, not a JSON object")
    faults = _duplicate_faults(value) if repeats else []
    endpoint = _endpoint(value, faults)
    server_cert = _server_cert(value, faults)
    client_cert = _client_cert(value, faults)
    faults.extend(_url_fragment_faults(value))
    where = _where(path, name) if faults else ""
    if endpoint is None or server_cert is None or any(fault.fatal for fault in faults):
        return None, _invalid(_sentence(where, faults))
    connection = Connection(
        file=path,
        name=name,
        baseurl=value["baseurl"],
        host=endpoint[0],
        port=endpoint[1],
        server_cert=server_cert,
        server_cert_path=_resolve(path, server_cert),
        client_cert_path=_resolve(path, client_cert) if client_cert is not None else None,
        problems=tuple(_invalid(_sentence(where, [fault])) for fault in faults),
    )
    return connection, None


def _where(path: str, name: str) -> str:
    return f"connection file {path}, connection {_quote(name)}"


def _endpoint(connection: dict[str, Any], faults: list[_Fault]) -> tuple[str, int] | None:
    if "baseurl" not in connection:
        faults.append(
            _Fault(
                '"baseurl"',
                "missing; the endpoint https://host[:port] is required" + _near("baseurl", connection),
                True,
            )
        )
        return None
    url = connection["baseurl"]
    if not isinstance(url, str):
        faults.append(_Fault('"baseurl"', f"is {_kind(url)}, not a string", True))
        return None
    try:
        return _split_baseurl(url)
    except ValueError as error:
        faults.append(_Fault('"baseurl"', str(error), True))
        return None


def _split_baseurl(url: str) -> tuple[str, int]:
    """Host and port of an https:// base URL; ValueError says what is wrong without echoing it."""
    plain = _PLAIN_BASEURL.fullmatch(url)
    if plain is not None:  # the common shape, which every check below would pass on to these two
        return _host(plain["host"]), _port(plain["port"] or "")
    if not url:
        raise ValueError("is empty; expected https://host[:port]")
    # Every whitespace character but " " is also unprintable (Unicode "Other" or "Separator").
    if " " in url or not url.isprintable():
        raise ValueError("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit only refuses malformed [IPv6] hosts; its text may quote part of the netloc.
        raise ValueError("is not a valid URL: the bracketed IPv6 host is malformed") from None
    scheme = parts.scheme.lower()
    if scheme == "http":
        raise ValueError("uses http://, but Windchill+ connections are HTTPS; write https://host[:port]")
    if scheme != "https":
        raise ValueError("is not an https:// URL; expected https://host[:port]")
    if "@" in parts.netloc:
        # Never echo the netloc here: it may carry a password.
        raise ValueError("has user information before the host; credentials belong in secrets")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("has a query or fragment; expected https://host[:port] and a path at most")
    return _split_netloc(parts.netloc)


def _split_netloc(netloc: str) -> tuple[str, int]:
    if netloc.startswith("["):
        close = netloc.find("]")
        if close < 0:
            raise ValueError("has an unclosed [ around the host")
        host, rest = _ipv6_host(netloc[1:close]), netloc[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("has unexpected text after the bracketed IPv6 host")
        return host, _port(rest[1:])
    if netloc.count(":") > 1:
        raise ValueError("has an IPv6 host without brackets; write https://[address]:port")
    host_text, _, port_text = netloc.partition(":")
    return _host(host_text), _port(port_text)


def _ipv6_host(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"host [{text}] is not a valid IPv6 address") from None


def _host(text: str) -> str:
    if not text:
        raise ValueError("has no host; expected https://host[:port]")
    try:
        ascii_host = text.lower() if text.isascii() else text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"host {_quote(text)} is not a valid internationalized name") from None
    ascii_host = ascii_host.lower()
    labels = ascii_host.removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"host {_quote(text)} is not a valid host name")
    return ascii_host


def _port(text: str) -> int:
    if not text:
        return _DEFAULT_PORT
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {_quote(text)} is not a number")
    if len(text.lstrip("0")) > 5:  # far too long to be a port (and to be shown whole)
        raise ValueError(f"port {_quote(text, _SHOWN_CHARS)} is out of range 1-65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def _server_cert(connection: dict[str, Any], faults: list[_Fault]) -> str | None:
    if "server_cert" not in connection:
        faults.append(
            _Fault(
                '"server_cert"',
                "missing; the PEM trust bundle path is required" + _near("server_cert", connection),
                True,
            )
        )
        return None
    error = _path_error(connection["server_cert"])
    if error is not None:
        faults.append(_Fault('"server_cert"', error, True))
        return None
    path: str = connection["server_cert"]
    return path


def _client_cert(connection: dict[str, Any], faults: list[_Fault]) -> str | None:
    """The secrets.client_cert path; other secrets values are only type-checked, never kept."""
    if "secrets" not in connection:
        return None
    secrets = connection["secrets"]
    if not isinstance(secrets, dict):
        faults.append(_Fault('"secrets"', f"is {_kind(secrets)}, not a JSON object", False))
        return None
    for key, value in secrets.items():
        if isinstance(value, str):
            continue
        if key == "client_cert":  # the one documented key; any other key name may itself be secret
            faults.append(_Fault('"secrets"."client_cert"', f"the value is {_kind(value)}, not a string", False))
        else:
            text = f"a value in it is {_kind(value)}, not a string (not named: {_HIDDEN})"
            faults.append(_Fault('"secrets"', text, False))
    if "client_cert" not in secrets or not isinstance(secrets["client_cert"], str):
        return None
    error = _path_error(secrets["client_cert"]) or _inline_content_error(secrets["client_cert"])
    if error is not None:
        faults.append(_Fault('"secrets"."client_cert"', error, False))
        return None
    path: str = secrets["client_cert"]
    return path


def _inline_content_error(value: str) -> str | None:
    """client_cert must name a keycertchain file; pasted key material must never be echoed as a 'path'."""
    if "\n" in value or "-----BEGIN" in value or len(value) > 4096:
        return "holds inline content (not shown), not a path to a keycertchain file"
    return None


def _path_error(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is {_kind(value)}, not a path string"
    if not value:
        return "is empty; expected a file path"
    if "\0" in value:
        return "contains a NUL character, which no file path can hold"
    return None


def _url_fragment_faults(connection: dict[str, Any]) -> list[_Fault]:
    fragments = connection.get("url_fragments")
    if "url_fragments" not in connection:
        return []
    if not isinstance(fragments, dict):
        return [_Fault('"url_fragments"', f"is {_kind(fragments)}, not a JSON object", False)]
    return [
        _Fault(f'"url_fragments".{_quote(key)}', f"is {_kind(value)}, not a path string", False)
        for key, value in fragments.items()
        if not isinstance(value, str)
    ]


def _duplicate_faults(connection: dict[str, Any]) -> list[_Fault]:
    """Repeated keys anywhere inside one connection; fatal when baseurl or server_cert repeats.
    Inside "secrets" only that a key repeats is said, never which (a key path there may be secret)."""
    return [
        _Fault(
            _key_path(path if key is None else path + (key,)),
            _repeated(count) if key is not None else _REPEATED_INSIDE,
            fatal=not path and key in _CERT_KEYS,
        )
        for path, key, count in _duplicates(connection, sensitive=_SECRETS_KEYS)
    ]


def _misplaced_duplicates(top: dict[str, Any], where: str) -> list[Problem]:
    """Repeated keys outside external_connections (those are reported per connection); nothing below
    blob_sas_url (a credential) or a "secrets" is named."""
    problems: list[Problem] = []
    for path, key, count in _duplicates(top, sensitive=_SECRETS_KEYS, sensitive_top=_SENSITIVE_TOP_KEYS):
        if path[:1] == ("external_connections",) and isinstance(top["external_connections"], dict):
            continue
        text = _repeated(count) if key is not None else _REPEATED_INSIDE
        problems.append(_invalid(f"{where}, key {_key_path(path if key is None else path + (key,))}: {text}"))
    return problems


def _duplicates(
    root: Any, *, sensitive: frozenset[str] = frozenset(), sensitive_top: frozenset[str] = frozenset()
) -> list[tuple[KeyPath, str | None, int]]:
    """Every repeated key below root, in document order, as (path of its object, key, count).

    The walk never enters the value of a key in `sensitive` (any depth) or `sensitive_top` (root's
    own keys), compared case-insensitively: a repeat anywhere inside one is reported once, as
    (path of that key, None, 0), so no key below it is ever named."""
    found: list[tuple[KeyPath, str | None, int]] = []
    # An explicit stack: json.loads accepts nesting deeper than a recursive walk could.
    stack: list[tuple[KeyPath, Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        children: Iterable[tuple[str | int, Any]] = ()
        if isinstance(node, dict):
            if isinstance(node, _Object):
                found.extend((path, key, count) for key, count in node.duplicates)
            children = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        nested: list[tuple[KeyPath, Any]] = []
        for key, value in children:
            if not isinstance(value, dict | list):
                continue
            if isinstance(key, str) and (
                key.casefold() in sensitive or (not path and key.casefold() in sensitive_top)
            ):
                if _repeats_inside(value):
                    found.append((path + (key,), None, 0))
                continue
            nested.append((path + (key,), value))
        stack.extend(reversed(nested))
    return found


def _repeats_inside(root: Any) -> bool:
    """Whether any object at or below root repeats a key."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, _Object):
            return True
        if isinstance(node, dict):
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return False


def _repeated(count: int) -> str:
    return f"duplicate key: it appears {count} times and a JSON reader silently keeps only one"


def _sentence(where: str, faults: list[_Fault]) -> str:
    """One located sentence for one or more faults of the same connection."""
    parts = [f"key {fault.key}: {fault.text}" if fault.key else fault.text for fault in faults]
    joiner = ", " if faults[0].key else ": "
    return where + joiner + "; ".join(parts)


def _key_path(path: KeyPath) -> str:
    """Key path as written in messages: "secrets"."client_cert", "extra"[2]."name"."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + _quote(part)
    return text


def _resolve(json_path: str, target: str) -> str:
    # Interned: thousands of connections may name one shared bundle, and the daemon keeps each path.
    if os.path.isabs(target):
        return sys.intern(target)
    return sys.intern(os.path.join(os.path.dirname(json_path), target))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _quote(text: str, limit: int | None = None) -> str:
    """JSON-style quoting that is safe to print: no raw control characters or lone surrogates."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    quoted = json.dumps(text, ensure_ascii=False)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)


def _too_big(path: str, limit: int) -> str:
    return f"connection file {path}: larger than the {limit}-byte limit; not read"


def _unusable(path: str, message: str) -> ConnectionFile:
    return ConnectionFile(path, (), (_invalid(message),), None, None, None)


def _invalid(message: str) -> Problem:
    return Problem(Code.CONNECTION_INVALID, Severity.ERROR, message)


def _bad_apply_at(message: str) -> Problem:
    return Problem(Code.APPLY_AT_INVALID, Severity.ERROR, message)


def _json_reason(message: str, text: str, pos: int) -> str:
    """Python's JSON messages, completed where they read oddly without their position. A trailing
    comma is suggested only where there is one: a comma right before the closing bracket."""
    if message.startswith("Unterminated string starting at"):
        return "a string starts here and is never closed"
    before = text[:pos].rstrip(" \t\n\r")[-1:]
    here = text[pos : pos + 1]
    if message == "Expecting property name enclosed in double quotes":
        if before == "," and here == "}":
            return "expecting a key in double quotes (a trailing comma before } ?)"
        return "expecting a key in double quotes"
    if message == "Expecting value":
        if before == "," and here in ("]", "}"):
            return f"expecting a value (a trailing comma before {here} ?)"
        return "expecting a value (a missing value, or text without double quotes?)"
    return message


def _near(wanted: str, mapping: dict[str, Any]) -> str:
    """ "; found "server_certs": a typo?" when a present key is close to a missing required one,
    including one that differs only in case ("baseURL" for "baseurl": keys are case-sensitive)."""
    keys = [k for k in mapping if isinstance(k, str)]
    same_but_case = [k for k in keys if k.casefold() == wanted.casefold()]
    if same_but_case:
        return f"; found {_quote(same_but_case[0])}: keys are case-sensitive, a typo for {_quote(wanted)}?"
    folded = {k.casefold(): k for k in reversed(keys)}
    close = difflib.get_close_matches(wanted.casefold(), list(folded), n=1, cutoff=0.75)
    return f"; found {_quote(folded[close[0]])}: a typo?" if close else ""
