"""The exposition: the fast path serves exactly what prometheus-client's encoders would, at every change."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from chainwarden.metrics import ChainwardenCollector, ConnectionKey, ConnectionState, FastExposition, MetricsState
from chainwarden.metrics_http import fast_metrics_app
from chainwarden.report import ChainEntry, Code, Problem, Result, Role, Severity, Source

NOW = datetime(2026, 12, 4, tzinfo=UTC)
ENCODERS = [(generate_latest, CONTENT_TYPE_LATEST), (generate_openmetrics, OPENMETRICS)]


def _entry(role: Role, subject: str, days: int) -> ChainEntry:
    return ChainEntry(
        role, subject, "CN=Issuer", NOW - timedelta(days=1), NOW + timedelta(days=days), f"{days:064x}", Source.BUNDLE
    )


def _state(name: str, *, broken: bool = False, days: int = 90) -> ConnectionState:
    problems = (Problem(Code.MISSING_INTERMEDIATE, Severity.ERROR, "missing"),) if broken else ()
    chain = (_entry(Role.LEAF, f"CN={name}", days), _entry(Role.ROOT, "CN=Root", 3650))
    result = Result("f.json", name, "h:443", "b.pem", problems, chain, chain, complete=not broken)
    return ConnectionState(result, checked_at=1_700_000_000.0, probe_success=not broken, probe_duration=0.01)


def _slow(state: MetricsState, encoder: Callable[[CollectorRegistry], bytes]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChainwardenCollector(state))
    return encoder(registry)


def _fast(exposition: FastExposition, encoder: Callable[[Any], bytes], content_type: str) -> bytes:
    return b"".join(exposition.render(encoder, content_type))


# Files with quotes, backslashes, newlines and bytes UTF-8 cannot carry (a surrogate-escaped name).
ODD_FILES = ['plain.json', 'with "quotes".json', "back\\slash\nnewline.json", "latin-\udce9.json"]


def _connections(count: int) -> dict[ConnectionKey, ConnectionState]:
    return {
        (ODD_FILES[i % len(ODD_FILES)], f"conn-{i:03d}"): _state(f"conn-{i:03d}", broken=i % 5 == 0, days=10 + i)
        for i in range(count)
    }


@pytest.mark.parametrize(("encoder", "content_type"), ENCODERS)
def test_fast_exposition_matches_the_encoder_through_every_change(encoder: Any, content_type: str) -> None:
    """Rebuilt, spliced (changed states), grown, shrunk and emptied: always byte for byte the encoder's output."""
    state = MetricsState()
    fast = FastExposition(state)
    assert _fast(fast, encoder, content_type) == _slow(state, encoder)

    connections = _connections(40)
    state.replace_connections(connections)
    assert _fast(fast, encoder, content_type) == _slow(state, encoder)

    for key in list(connections)[::7]:  # same keys, some states replaced: the splice path
        state.replace_connections({key: _state(key[1], broken=True, days=3)}, partial=True)
    first_spliced = _fast(fast, encoder, content_type)
    assert first_spliced == _slow(state, encoder)
    assert b'code="missing_intermediate"' in first_spliced

    state.replace_connections({("added.json", "new"): _state("new")}, partial=True)  # a new key: rebuild
    assert _fast(fast, encoder, content_type) == _slow(state, encoder)

    fewer = dict(list(state.connection_states().items())[5:])
    state.replace_connections(fewer)
    assert _fast(fast, encoder, content_type) == _slow(state, encoder)

    state.replace_connections({})
    assert _fast(fast, encoder, content_type) == _slow(state, encoder)


def test_unchanged_state_is_served_from_what_was_formatted() -> None:
    """A second scrape of the same snapshot formats no connection again (the point of the fast path)."""
    state = MetricsState()
    state.replace_connections(_connections(10))
    fast = FastExposition(state)
    calls = 0

    def counting(registry: Any) -> bytes:
        nonlocal calls
        calls += 1
        return generate_latest(registry)

    first = _fast(fast, counting, CONTENT_TYPE_LATEST)
    after_first = calls
    assert _fast(fast, counting, CONTENT_TYPE_LATEST) == first
    assert calls - after_first == 1  # only the small families, once


def _call(app: Callable[..., Iterable[bytes]], query: str = "", accept_encoding: str = "") -> tuple[str, dict, bytes]:
    environ: dict[str, Any] = {"QUERY_STRING": query, "HTTP_ACCEPT_ENCODING": accept_encoding}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = "/metrics"
    environ["wsgi.input"] = io.BytesIO()
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def _app(state: MetricsState) -> Callable[..., Iterable[bytes]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChainwardenCollector(state))
    return fast_metrics_app(registry, FastExposition(state).render)


def test_name_filter_returns_only_the_named_families() -> None:
    """`/metrics?name[]=...` (prometheus-client's filter) answers the named families, not an empty body."""
    state = MetricsState()
    state.replace_connections(_connections(6))
    status, _, body = _call(_app(state), "name[]=chainwarden_chain_complete&name[]=chainwarden_connections")
    assert status.startswith("200")
    names = {line.split(b"{")[0].split(b" ")[0] for line in body.splitlines() if not line.startswith(b"#")}
    assert names == {b"chainwarden_chain_complete", b"chainwarden_connections"}
    assert body.count(b"chainwarden_chain_complete{") == 6


def test_gzip_answer_is_the_same_exposition() -> None:
    state = MetricsState()
    state.replace_connections(_connections(12))
    app = _app(state)
    _, plain_headers, plain = _call(app)
    _, headers, zipped = _call(app, accept_encoding="gzip")
    assert headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain_headers
    assert int(headers["Content-Length"]) == len(zipped)
    assert gzip.decompress(zipped) == plain == _slow(state, generate_latest)
