"""Prometheus exposition: a collector that renders the latest verification snapshot, never doing work itself."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
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
        return []  # describing must not run a scrape at registration time

    def collect(self) -> Iterator[Metric]:
        snap = self._state.snapshot()
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
        "notAfter of every certificate on the chosen path (role leaf/intermediate/root) and in the bundle (role bundle).",
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
    verdicts = GaugeMetricFamily("chainwarden_connections", "Connections per verdict.", labels=["verdict"])
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    for (file, name), state in sorted(connections.items()):
        result = state.result
        key = [file, name]
        counts[result.verdict.value] += 1
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
    for verdict, count in counts.items():
        verdicts.add_metric([verdict], float(count))
    yield from (complete, problem, cert_expiry, chain_expiry, last_check, probe_ok, probe_time, verdicts)


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
