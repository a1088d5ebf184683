"""Prometheus exposition: a collector that renders the latest verification snapshot, never doing work itself."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .report import Result, Verdict

ConnectionKey = tuple[str, str]  # (file, connection)
WATCH_MODES = ("inotify", "polling")
REGENERATION_OUTCOMES = ("written", "unchanged", "failed")
SOURCE_ERROR_REASONS = ("connection_json", "bundle", "config", "watch", "probe", "state", "outbox", "internal")


@dataclass(frozen=True, slots=True)
class ConnectionState:
    result: Result
    checked_at: float
    probe_success: bool | None = None
    probe_duration: float | None = None


class MetricsState:
    """What the daemon knows now. Writers replace whole immutable maps under a short lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: Mapping[ConnectionKey, ConnectionState] = {}
        self._file_results: Mapping[str, Result] = {}
        self._source_errors: dict[str, float] = dict.fromkeys(SOURCE_ERROR_REASONS, 0.0)
        self._regenerations: dict[tuple[str, str, str], float] = {}
        self._submissions: dict[tuple[str, str], float] = {}
        self._submit_last: dict[str, bool] = {}
        self._pending_apply_at: Mapping[str, float] = {}
        self._watch_mode = "inotify"
        self._reload_ok = True
        self._reload_ts = 0.0

    # Writers -----------------------------------------------------------------
    def replace_connections(
        self,
        states: Mapping[ConnectionKey, ConnectionState],
        file_results: Mapping[str, Result] | None = None,
        *,
        partial: bool = False,
    ) -> None:
        """Publish results; with `partial`, only the given keys change (others are kept)."""
        with self._lock:
            if partial:
                merged = dict(self._connections)
                merged.update(states)
                self._connections = merged
            else:
                self._connections = dict(states)
                # Series of connections and files that are gone disappear with them.
                files = {file for file, _ in states}
                self._regenerations = {k: v for k, v in self._regenerations.items() if (k[0], k[1]) in states}
                self._submissions = {k: v for k, v in self._submissions.items() if k[0] in files}
                self._submit_last = {k: v for k, v in self._submit_last.items() if k in files}
            if file_results is not None:
                self._file_results = dict(file_results)

    def connection_states(self) -> Mapping[ConnectionKey, ConnectionState]:
        with self._lock:
            return self._connections

    def count_source_error(self, reason: str) -> None:
        with self._lock:
            self._source_errors[reason] = self._source_errors.get(reason, 0.0) + 1

    def touch_regeneration_series(self, keys: Iterable[ConnectionKey], files: Iterable[str], *, submit: bool) -> None:
        """Create the counters at 0 before their first event, so increase() sees that first event."""
        with self._lock:
            for file, connection in keys:
                for outcome in REGENERATION_OUTCOMES:
                    self._regenerations.setdefault((file, connection, outcome), 0.0)
            if submit:
                for file in files:
                    for outcome in ("success", "failure"):
                        self._submissions.setdefault((file, outcome), 0.0)

    def count_regeneration(self, file: str, connection: str, outcome: str) -> None:
        with self._lock:
            key = (file, connection, outcome)
            self._regenerations[key] = self._regenerations.get(key, 0.0) + 1

    def record_submission(self, file: str, success: bool) -> None:
        with self._lock:
            key = (file, "success" if success else "failure")
            self._submissions[key] = self._submissions.get(key, 0.0) + 1
            self._submit_last[file] = success

    def set_pending_apply_at(self, pending: Mapping[str, float]) -> None:
        with self._lock:
            self._pending_apply_at = dict(pending)

    def set_watch_mode(self, mode: str) -> None:
        with self._lock:
            self._watch_mode = mode

    def set_reload(self, ok: bool, when: float) -> None:
        with self._lock:
            self._reload_ok = ok
            if ok:
                self._reload_ts = when

    # Reader ------------------------------------------------------------------
    def snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(
                connections=self._connections,
                file_results=self._file_results,
                source_errors=dict(self._source_errors),
                regenerations=dict(self._regenerations),
                submissions=dict(self._submissions),
                submit_last=dict(self._submit_last),
                pending_apply_at=self._pending_apply_at,
                watch_mode=self._watch_mode,
                reload_ok=self._reload_ok,
                reload_ts=self._reload_ts,
            )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    connections: Mapping[ConnectionKey, ConnectionState]
    file_results: Mapping[str, Result]
    source_errors: Mapping[str, float]
    regenerations: Mapping[tuple[str, str, str], float]
    submissions: Mapping[tuple[str, str], float]
    submit_last: Mapping[str, bool]
    pending_apply_at: Mapping[str, float]
    watch_mode: str
    reload_ok: bool
    reload_ts: float


class ChainwardenCollector(Collector):
    """Builds every chainwarden_* family from one snapshot per scrape."""

    def __init__(self, state: MetricsState) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        """The families with no samples: names for `/metrics?name[]=` filters, without running a scrape."""
        return list(_families(MetricsState().snapshot()))

    def collect(self) -> Iterator[Metric]:
        return _families(self._state.snapshot())


def _families(snap: _Snapshot) -> Iterator[Metric]:
    for group in (_connection_families(snap.connections), _file_problem_family(snap.file_results)):
        yield from map(_encodable, group)
    yield from map(_encodable, _daemon_families(snap))


def _encodable(family: Metric) -> Metric:
    """Label values that UTF-8 cannot carry (a file name with undecodable bytes) written as escapes:
    one such value must not turn every scrape into an error."""
    for i, sample in enumerate(family.samples):
        if any(not value.isascii() for value in sample.labels.values()):
            labels = {k: v.encode("utf-8", "backslashreplace").decode("utf-8") for k, v in sample.labels.items()}
            family.samples[i] = sample._replace(labels=labels)
    return family


def _connection_families(connections: Mapping[ConnectionKey, ConnectionState]) -> Iterator[Metric]:
    labels = ["file", "connection"]
    complete = GaugeMetricFamily(
        "chainwarden_chain_complete",
        "1 when the bundle alone carries the endpoint's leaf to a self-signed root.",
        labels=labels,
    )
    problem = GaugeMetricFamily(
        "chainwarden_chain_problem", "1 per active problem on a connection.", labels=labels + ["code", "severity"]
    )
    cert_expiry = GaugeMetricFamily(
        "chainwarden_certificate_not_after_timestamp_seconds",
        "notAfter of every certificate on the chosen path (role leaf/intermediate/root)"
        " and in the bundle (role bundle).",
        labels=labels + ["role", "subject", "issuer", "sha256"],
    )
    chain_expiry = GaugeMetricFamily(
        "chainwarden_chain_expiry_timestamp_seconds", "Earliest notAfter on the chosen path.", labels=labels
    )
    last_check = GaugeMetricFamily(
        "chainwarden_last_check_timestamp_seconds", "When the connection was last verified.", labels=labels
    )
    probe_ok = GaugeMetricFamily(
        "chainwarden_endpoint_probe_success", "1 when the last TLS probe of the endpoint succeeded.", labels=labels
    )
    probe_time = GaugeMetricFamily(
        "chainwarden_endpoint_probe_duration_seconds", "Duration of the last TLS probe.", labels=labels
    )
    for (file, name), state in sorted(connections.items()):
        result = state.result
        key = [file, name]
        if result.structure_sound is not True:  # no leaf known and nothing wrong seen: neither 1 nor 0
            complete.add_metric(key, 1.0 if result.complete else 0.0)
        for code, severity in sorted({(p.code.value, p.severity.value) for p in result.problems}):
            problem.add_metric(key + [code, severity], 1.0)
        on_path = set()
        for entry in result.chain:
            on_path.add(entry.sha256)
            cert_expiry.add_metric(
                key + [entry.role.value, entry.subject, entry.issuer, entry.sha256[:16]], entry.not_after.timestamp()
            )
        for entry in result.bundle_certificates:
            if entry.sha256 not in on_path:
                on_path.add(entry.sha256)
                cert_expiry.add_metric(
                    key + ["bundle", entry.subject, entry.issuer, entry.sha256[:16]], entry.not_after.timestamp()
                )
        expires = result.chain_expires_at
        if expires is not None:
            chain_expiry.add_metric(key, expires.timestamp())
        last_check.add_metric(key, state.checked_at)
        if state.probe_success is not None:
            probe_ok.add_metric(key, 1.0 if state.probe_success else 0.0)
        if state.probe_duration is not None:
            probe_time.add_metric(key, state.probe_duration)
    yield from (complete, problem, cert_expiry, chain_expiry, last_check, probe_ok, probe_time)
    yield _verdict_family(connections)


def _verdict_family(connections: Mapping[ConnectionKey, ConnectionState]) -> Metric:
    verdicts = GaugeMetricFamily("chainwarden_connections", "Connections per verdict.", labels=["verdict"])
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    for state in connections.values():
        counts[state.result.verdict.value] += 1
    for verdict, count in counts.items():
        verdicts.add_metric([verdict], float(count))
    return verdicts


Encoder = Callable[[Collector], bytes]


class _Families(Collector):
    """Fixed families (and other collectors) in the shape an exposition encoder reads."""

    def __init__(self, families: Iterable[Metric], others: Sequence[Collector] = ()) -> None:
        self._families = list(families)
        self._others = others

    def collect(self) -> Iterator[Metric]:
        yield from self._families
        for other in self._others:
            yield from other.collect()


class FastExposition:
    """The bytes `encoder(registry)` would give, without re-building every connection's samples per scrape.

    Built and formatted afresh, the ~8 samples of each of N connections cost seconds per scrape at
    N = 10,000. Here each connection's sample lines are formatted once per published state, by the
    same prometheus-client encoder, and kept; a scrape joins them in the usual order and formats
    only the small families (verdict counts, file problems, daemon and process metrics) anew. A
    change re-formats only the connections it re-evaluated.
    """

    def __init__(self, state: MetricsState, others: Sequence[Collector] = ()) -> None:
        self._state = state
        self._others = tuple(others)  # the registry's other collectors (process, platform, GC), in order
        self._lock = threading.Lock()
        self._formats: dict[str, _FormattedConnections] = {}
        self._verdicts: tuple[Mapping[ConnectionKey, ConnectionState], Metric] | None = None

    def render(self, encoder: Encoder, content_type: str) -> list[bytes]:
        """The exposition in pieces (not joined: at N = 10,000 it is ~18 MB, better written piece by piece)."""
        snap = self._state.snapshot()
        with self._lock:
            formatted = self._formats.get(content_type)
            if formatted is None:
                if len(self._formats) >= 4:
                    self._formats.clear()
                formatted = self._formats[content_type] = _FormattedConnections(encoder)
            pieces = formatted.render(snap.connections, encoder)
            if self._verdicts is None or self._verdicts[0] is not snap.connections:
                self._verdicts = (snap.connections, _verdict_family(snap.connections))
            verdicts = self._verdicts[1]
        small = [
            verdicts,
            *_file_problem_family(snap.file_results),
            *_daemon_families(snap),
        ]
        pieces.append(encoder(_Families(map(_encodable, small), self._others)))
        return pieces


class _FormattedConnections:
    """The per-connection families as one encoder writes them, kept as one text per family.

    Each text holds the connections' lines in key order, with the end offset of every
    connection's lines; a new snapshot re-formats only the connections whose state object
    changed (states are immutable) and splices their lines in.
    """

    def __init__(self, encoder: Encoder) -> None:
        self._trailer = encoder(_Families([]))  # "# EOF" for OpenMetrics, nothing for the text format
        empty = list(_connection_families({}))[:-1]  # without the verdict counts, which span connections
        self._headers = [self._strip(encoder(_Families([family]))) for family in empty]
        self._source: Mapping[ConnectionKey, ConnectionState] | None = None
        self._keys: list[ConnectionKey] = []  # sorted, as _connection_families orders them
        self._states: list[ConnectionState] = []
        self._texts: list[bytes] = [b"" for _ in self._headers]
        self._ends: list[array[int]] = [array("Q") for _ in self._headers]

    def render(self, connections: Mapping[ConnectionKey, ConnectionState], encoder: Encoder) -> list[bytes]:
        """The per-connection families, as pieces to join (header, lines, header, lines, ...)."""
        if self._source is not connections:  # published maps are replaced, never changed in place
            if len(connections) == len(self._keys) and all(key in connections for key in self._keys):
                self._splice(connections, encoder)
            else:
                self._rebuild(connections, encoder)
            self._source = connections
        return [piece for pair in zip(self._headers, self._texts, strict=True) for piece in pair]

    def _splice(self, connections: Mapping[ConnectionKey, ConnectionState], encoder: Encoder) -> None:
        changed = [i for i, key in enumerate(self._keys) if connections[key] is not self._states[i]]
        formatted = {i: self._format(self._keys[i], connections[self._keys[i]], encoder) for i in changed}
        for family, (old, ends) in enumerate(zip(self._texts, self._ends, strict=True)):
            view = memoryview(old)
            pieces: list[bytes | memoryview] = []
            new_ends: array[int] = array("Q")
            shift = last = 0
            for i in changed:
                start = ends[i - 1] if i else 0
                lines = formatted[i][family]
                pieces += (view[last:start], lines)
                new_ends.extend(end + shift for end in ends[len(new_ends) : i])
                shift += len(lines) - (ends[i] - start)
                new_ends.append(ends[i] + shift)
                last = ends[i]
            pieces.append(view[last:])
            new_ends.extend(end + shift for end in ends[len(new_ends) :])
            self._texts[family] = b"".join(pieces)
            self._ends[family] = new_ends
            del pieces
            view.release()
        for i in changed:
            self._states[i] = connections[self._keys[i]]

    def _rebuild(self, connections: Mapping[ConnectionKey, ConnectionState], encoder: Encoder) -> None:
        known = {key: i for i, key in enumerate(self._keys)}
        keys = sorted(connections)
        # Lines go straight into one buffer per family: thousands of small objects kept until a final
        # join would leave the allocator's arenas fragmented (resident) long after they are freed.
        buffers = [bytearray() for _ in self._headers]
        all_ends: list[array[int]] = [array("Q") for _ in self._headers]
        for key in keys:
            state = connections[key]
            i = known.get(key)
            if i is not None and self._states[i] is state:
                parts: Sequence[bytes | memoryview] = [
                    memoryview(text)[(ends[i - 1] if i else 0) : ends[i]]
                    for text, ends in zip(self._texts, self._ends, strict=True)
                ]
            else:
                parts = self._format(key, state, encoder)
            for buffer, ends, lines in zip(buffers, all_ends, parts, strict=True):
                buffer += lines
                ends.append(len(buffer))
        self._texts = [bytes(buffer) for buffer in buffers]
        self._ends = all_ends
        self._keys = keys
        self._states = [connections[key] for key in keys]

    def _strip(self, text: bytes) -> bytes:
        return text[: -len(self._trailer)] if self._trailer and text.endswith(self._trailer) else text

    def _format(self, key: ConnectionKey, state: ConnectionState, encoder: Encoder) -> tuple[bytes, ...]:
        families = [_encodable(family) for family in list(_connection_families({key: state}))[:-1]]
        text = self._strip(encoder(_Families(families)))
        parts = []
        position = 0
        for index, header in enumerate(self._headers):
            if not text.startswith(header, position):
                raise ValueError(f"unexpected exposition layout for {key}")
            start = position + len(header)
            if index + 1 < len(self._headers):
                # Label values never hold a raw newline (encoders escape it): a header starts a line.
                found = text.find(b"\n" + self._headers[index + 1], start - 1)
                if found < 0:
                    raise ValueError(f"unexpected exposition layout for {key}")
                end = found + 1
            else:
                end = len(text)
            parts.append(text[start:end])
            position = end
        return tuple(parts)


def _file_problem_family(file_results: Mapping[str, Result]) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "chainwarden_file_problem",
        "1 per active file-level problem of a connection JSON (invalid JSON, bad apply_at...).",
        labels=["file", "code", "severity"],
    )
    for file, result in sorted(file_results.items()):
        for code, severity in sorted({(p.code.value, p.severity.value) for p in result.problems}):
            family.add_metric([file, code, severity], 1.0)
    yield family


def _daemon_families(snap: _Snapshot) -> Iterator[Metric]:
    errors = CounterMetricFamily(
        "chainwarden_source_errors", "Errors reading inputs or writing outputs, by reason.", labels=["reason"]
    )
    for reason, value in sorted(snap.source_errors.items()):
        errors.add_metric([reason], value)
    mode = GaugeMetricFamily("chainwarden_watch_mode", "1 for the active file-watching mode.", labels=["mode"])
    for name in WATCH_MODES:
        mode.add_metric([name], 1.0 if name == snap.watch_mode else 0.0)
    reload_ok = GaugeMetricFamily(
        "chainwarden_config_last_reload_successful", "1 when the last configuration (re)load succeeded."
    )
    reload_ok.add_metric([], 1.0 if snap.reload_ok else 0.0)
    reload_ts = GaugeMetricFamily(
        "chainwarden_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully.",
    )
    reload_ts.add_metric([], snap.reload_ts)
    build = GaugeMetricFamily("chainwarden_build_info", "chainwarden's version.", labels=["version"])
    build.add_metric([__version__], 1.0)
    regen = CounterMetricFamily(
        "chainwarden_bundle_regenerations", "Bundle regenerations by outcome.", labels=["file", "connection", "outcome"]
    )
    for (file, name, outcome), value in sorted(snap.regenerations.items()):
        regen.add_metric([file, name, outcome], value)
    pending = GaugeMetricFamily(
        "chainwarden_pending_apply_at_timestamp_seconds",
        "apply_at of a resubmission JSON waiting in the outbox.",
        labels=["file"],
    )
    for file, when in sorted(snap.pending_apply_at.items()):
        pending.add_metric([file], when)
    submissions = CounterMetricFamily(
        "chainwarden_submissions", "Runs of the submit command by outcome.", labels=["file", "outcome"]
    )
    for (file, outcome), value in sorted(snap.submissions.items()):
        submissions.add_metric([file, outcome], value)
    submit_last = GaugeMetricFamily(
        "chainwarden_submit_last_success", "1 when the last submit command for the file succeeded.", labels=["file"]
    )
    for file, ok in sorted(snap.submit_last.items()):
        submit_last.add_metric([file], 1.0 if ok else 0.0)
    yield from (errors, mode, reload_ok, reload_ts, build, regen, pending, submissions, submit_last)
