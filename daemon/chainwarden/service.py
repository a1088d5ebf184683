"""The daemon: one worker thread of record that verifies on file change, on schedule and on SIGHUP."""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import logging
import os
import queue
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .bundle import MAX_BUNDLE_BYTES, BundleReading, read_bundle_bytes, read_bundle_file
from .chaincache import ChainCache
from .checker import ChainLookup, LazyBundles, PassInputs, evaluate_pass, file_result, presented_from_probe
from .config import Config, ConfigError, load_config
from .connections import ConnectionFile, read_connection_file
from .engine import Presented
from .gcpolicy import tune_collector
from .logsetup import setup_logging
from .metrics import ChainwardenCollector, ConnectionState, FastExposition, MetricsState
from .notify import sd_notify, watchdog_interval
from .parallel import Cancelled
from .probe import ProbeResult, probe_many
from .regularfile import read_regular
from .report import Result, Severity, overall_exit_code
from .roots import RootStore, forget_loaded_stores, load_root_store
from .watcher import Watcher

log = logging.getLogger("chainwarden")

Endpoint = tuple[str, int]
Clock = Callable[[], datetime]
Prober = Callable[..., Mapping[tuple[str, int, str | None], ProbeResult]]

DEBOUNCE_SECONDS = 0.05
DEBOUNCE_MAX_SECONDS = 0.3
TRUNCATION_RETRIES = 6
TRUNCATION_RETRY_SECONDS = 0.25
HEALTH_CHECK_SECONDS = 5.0
# A written resubmission is submitted once no other command waits (a pass about to follow could
# supersede it), but never later than this, should changes keep arriving without a pause.
SUBMIT_DEFER_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Command:
    kind: str  # "full", "folders", "reload", "stop"
    folders: frozenset[str] = frozenset()


@dataclass
class Inventory:
    """What the daemon has read: connection files, bundles, and their content fingerprints."""

    files: dict[str, ConnectionFile] = field(default_factory=dict)
    bundles: dict[str, BundleReading] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    stats: dict[str, bytes] = field(default_factory=dict)  # path -> its stat key when fingerprinted, packed

    def record(self, path: str) -> bytes | None:
        """Fingerprint `path`, keeping its stat (taken first) so that an unchanged file need not be read again.

        Returns the bytes fingerprinted (None when unreadable), so a caller need not read them again.
        """
        self.fingerprints[path], data, info = _fingerprint_and_data(path)
        key = _key_of(info) if info is not None else None
        # Racily clean (git's term): a file changed within the timestamp granularity of this moment can
        # change again without its stat changing; only a stat older than that is trusted later.
        if key is None or time.time() - key[3] / 1e9 <= RACY_SECONDS:
            self.stats.pop(path, None)
        else:
            self.stats[path] = _STAT.pack(*key)
        return data

    def unchanged(self, path: str) -> bool:
        """`path` still has the content fingerprinted last: by its stat where that can be trusted, else read."""
        if path not in self.fingerprints:
            return False
        known = self.stats.get(path)
        if known is not None:
            key = _stat_key(path)
            if key is not None and _STAT.pack(*key) == known:
                return True
        return fingerprint(path) == self.fingerprints[path]

    _users: tuple[tuple[ConnectionFile, ...], dict[str, tuple[tuple[str, str], ...]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def bundle_users(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Reverse index: bundle or client_cert path -> connections that use it (shared: do not modify).

        Kept until a connection file is read again (ConnectionFile values are immutable), so that
        a change in a folder of N bundles does not rebuild it from N connections several times.
        """
        files = tuple(self.files.values())
        if self._users is not None and len(self._users[0]) == len(files):
            if all(a is b for a, b in zip(self._users[0], files, strict=True)):
                return self._users[1]
        found: dict[str, dict[tuple[str, str], None]] = {}
        for cf in files:
            for conn in cf.connections:
                for path in (conn.server_cert_path, conn.client_cert_path):
                    if path:
                        found.setdefault(path, {})[(conn.file, conn.name)] = None
        # Tuples, not sets: kept for every bundle of a large site, a set costs four times the memory.
        users = {path: tuple(keys) for path, keys in found.items()}
        self._users = (files, users)
        return users

    def endpoints(self) -> set[Endpoint]:
        return {(c.host, c.port) for cf in self.files.values() for c in cf.connections}

    def pass_inputs(self) -> PassInputs:
        bundles = self.bundles if isinstance(self.bundles, LazyBundles) else dict(self.bundles)
        return PassInputs(files=list(self.files.values()), bundles=bundles)


# More than any reader reads (bundles 8 MiB, connection JSON 16 MiB): past that, the size decides.
FINGERPRINT_MAX_BYTES = 16 * 1024 * 1024 + 1


RACY_SECONDS = 2.0  # see Inventory.record
_STAT = struct.Struct("<5q")


def _stat_key(path: str) -> tuple[int, ...] | None:
    """What changes whenever a file is written, replaced or swapped (a symlink is followed)."""
    try:
        return _key_of(os.stat(path))
    except (OSError, ValueError):
        return None


def _key_of(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fingerprint(path: str) -> str:
    """Content identity of a file (or why it cannot be read): events are hints, content decides."""
    return _fingerprint_and_data(path)[0]


def _fingerprint_and_data(path: str) -> tuple[str, bytes | None, os.stat_result | None]:
    """The fingerprint, the bytes it was taken of, and the file's stat from before they were read."""
    try:
        data, info = read_regular(path, FINGERPRINT_MAX_BYTES)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return f"error:{getattr(exc, 'errno', None)}", None, None
    return f"{hashlib.sha256(data).hexdigest()}:{info.st_size}", data, info


def looks_truncated(path: str) -> bool:
    """A PEM caught half-written: more BEGIN lines than END lines."""
    try:
        data, _ = read_regular(path, 8 * 1024 * 1024)
    except (OSError, ValueError):
        return False
    return data.count(b"-----BEGIN ") > data.count(b"-----END ")


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        prober: Prober = probe_many,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.prober = prober
        self.metrics = MetricsState()
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.inventory = Inventory()
        self.presented: dict[Endpoint, Presented] = {}
        self.probe_times: dict[Endpoint, float] = {}
        self.previous_status: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
        self.truncation_attempts: dict[str, int] = {}
        self.heartbeat = time.monotonic()
        self._log_enabled = True
        self._file_problem_log: dict[str, tuple[str, ...]] = {}
        self.regenerator: Any = None
        self._http: Any = None
        self._watcher: Watcher | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()  # set by SIGTERM at once, even in the middle of a pass
        self._timers: list[threading.Timer] = []
        self._store: RootStore | None = None
        self._chain_cache = ChainCache(Path(config.state_dir) / "chains")
        self._evaluated_once = False
        # Regeneration waits for chains the endpoints presented in this run: a plan from cached chains
        # or bundles alone (the fast first pass) misses what only the probe shows, and would be
        # superseded ~100 ms later by the probed pass.
        self._probed = False

    # Lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._ensure_state_dir()
        self._start_http()
        self._watcher = Watcher(
            self._on_folders,
            force_polling=self.config.watch_force_polling,
            poll_interval=self.config.watch_poll_interval,
        )
        self._watcher.start(self._watch_folders(), private=self._private_folders())
        self.metrics.set_watch_mode(self._watcher.mode)
        self.metrics.set_reload(True, time.time())
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(
            lambda: self.commands.put(Command("full")),
            IntervalTrigger(seconds=self.config.schedule_interval, jitter=int(self.config.schedule_jitter) or None),
            id="full-pass",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()
        self._load_regenerator()

    def stop(self) -> None:
        """Stop in reverse order of start; safe to call twice."""
        self._stopping.set()
        for timer in self._timers:
            timer.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None

    def _ensure_state_dir(self) -> None:
        try:
            Path(self.config.state_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning(
                "state folder %s is not usable (%s): cached chains are not kept",
                self.config.state_dir,
                exc.strerror or exc,
            )
            self.metrics.count_source_error("state")

    def _start_http(self) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ChainwardenCollector(self.metrics))
        others = []
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            try:
                others.append(collector(registry=registry))
            except Exception:  # noqa: BLE001 - optional process metrics must never stop the daemon
                pass
        host, port = self.config.listen_host_port
        from .metrics_http import serve_metrics

        fast = FastExposition(self.metrics, others)
        self._http = serve_metrics(self.config, registry, host, port, fast.render)
        log.info("metrics on %s://%s:%d/metrics", "https" if self.config.metrics_tls_cert else "http", host, port)

    def _load_regenerator(self) -> None:
        if not self.config.regenerate_enabled:
            self.regenerator = None
            return
        from .regenerate import Regenerator

        # Resubmissions written but not yet submitted stay due across a reload.
        ready = self.regenerator.ready if self.regenerator is not None else None
        self.regenerator = Regenerator(
            self.config, self.metrics, self.clock, ready=ready, stopping=self._stop_requested.is_set
        )

    # Event intake (other threads) --------------------------------------------
    def _on_folders(self, folders: set[str]) -> None:
        if folders:
            self.commands.put(Command("folders", frozenset(folders)))

    def request_reload(self) -> None:
        self.commands.put(Command("reload"))

    def request_stop(self) -> None:
        self._stop_requested.set()
        self.commands.put(Command("stop"))

    # The worker --------------------------------------------------------------
    def run_forever(self) -> None:
        self._status("starting: first verification")
        # Cached chains first, so metrics exist at once; state changes are logged from the first
        # live pass on, so start-up does not log a transient verdict for every connection.
        self._log_enabled = not self.config.verify_probe
        try:
            self.full_pass(probe=False)
        except Cancelled:
            log.info("stop requested during the first pass; its worker processes were stopped")
            return
        self._log_enabled = True
        sd_notify("READY=1\nSTATUS=" + self._summary())
        self._start_watchdog_pinger()
        self.commands.put(Command("full"))
        next_health = time.monotonic() + HEALTH_CHECK_SECONDS
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                command = self.commands.get(timeout=max(0.05, next_health - time.monotonic()))
            except queue.Empty:
                if self._watcher is not None:
                    self._watcher.health_check()
                next_health = time.monotonic() + HEALTH_CHECK_SECONDS
                continue
            try:
                self._handle(command)
            except Cancelled:
                continue  # a stop request: the stop command is next in the queue
            except Exception:  # noqa: BLE001 - the worker must survive any single failure
                log.exception("verification failed unexpectedly; the daemon keeps running")
                self.metrics.count_source_error("internal")
            self._submit_when_settled()
        waiting = self.regenerator.ready if self.regenerator is not None else {}
        for json_path, _ in waiting.values():
            log.info("stopping before %s was submitted: it stays pending; the next start submits it if due", json_path)

    def _submit_when_settled(self) -> None:
        """Submit the resubmissions the last passes wrote, once no command waits: a pass about to follow
        (the probed pass after start-up, a burst of changes, a reload) could still supersede them."""
        regenerator = self.regenerator
        if regenerator is None or self._stopping.is_set() or self._stop_requested.is_set():
            return
        since = regenerator.ready_since()
        if since is None:
            return
        if not self.commands.empty() and time.monotonic() - since < SUBMIT_DEFER_MAX_SECONDS:
            return
        self.heartbeat = time.monotonic()
        try:
            regenerator.submit_ready()
        except Exception:  # noqa: BLE001 - submitting must never stop verification
            log.exception("submitting a resubmission failed unexpectedly")
            self.metrics.count_source_error("outbox")

    def _handle(self, command: Command) -> None:
        if command.kind == "stop":
            sd_notify("STOPPING=1")
            self._stopping.set()
        elif command.kind == "reload":
            self.reload()
        elif command.kind == "full":
            self.full_pass(probe=True)
            sd_notify("STATUS=" + self._summary())
        elif command.kind == "folders":
            folders = set(command.folders)
            deadline = time.monotonic() + DEBOUNCE_MAX_SECONDS
            # Debounce: gather the burst an editor or kubelet makes, then look once.
            while time.monotonic() < deadline:
                try:
                    more = self.commands.get(timeout=DEBOUNCE_SECONDS)
                except queue.Empty:
                    break
                if more.kind != "folders":
                    self.commands.put(more)
                    break
                folders |= more.folders
            self.changed_folders(folders)

    # Verification ------------------------------------------------------------
    def _watch_folders(self) -> set[str]:
        folders: set[str] = set()
        for entry in self.config.watch_connections:
            path = Path(entry)
            folders.add(str(path if path.is_dir() or not path.suffix else path.parent))
        for entry in self.config.watch_bundles:
            folders.add(entry)
        for bundle_path in self.inventory.bundle_users():
            folders.add(os.path.dirname(bundle_path) or ".")
        return {os.path.abspath(f) for f in folders}

    def _private_folders(self) -> set[str]:
        """Folders named only by a secrets.client_cert path, which no log line may name."""
        connections = [c for cf in self.inventory.files.values() for c in cf.connections]
        public = {os.path.dirname(os.path.abspath(c.server_cert_path)) for c in connections}
        private = {os.path.dirname(os.path.abspath(c.client_cert_path)) for c in connections if c.client_cert_path}
        return private - public

    def connection_file_paths(self) -> list[str]:
        paths: list[str] = []
        for entry in self.config.watch_connections:
            path = Path(entry)
            if path.is_dir():
                paths.extend(sorted(str(p) for p in path.glob("*.json") if p.is_file()))
            else:
                paths.append(str(path))
        return [os.path.abspath(p) for p in paths]

    def full_pass(self, *, probe: bool) -> list[Result]:
        started = time.monotonic()
        inventory = Inventory()
        for path in self.connection_file_paths():
            self._read_connection_file(inventory, path)
        if self._evaluated_once:
            for bundle_path in sorted(inventory.bundle_users()):
                self._read_bundle(inventory, bundle_path)
        else:
            # The first pass reads each bundle when it is first needed, so that worker processes
            # read the bundles of their own share (see _evaluate); nothing is read before, so
            # there is no earlier reading for the truncation guard to keep.
            inventory.bundles = self._lazy_bundles(inventory)
        self.inventory = inventory
        live = inventory.endpoints()
        self.presented = {e: p for e, p in self.presented.items() if e in live}
        self.probe_times = {e: t for e, t in self.probe_times.items() if e in live}
        if probe and self.config.verify_probe:
            self._probe(inventory.endpoints())
            self._probed = True
        results = self._evaluate(None)
        if self._watcher is not None:
            self._rearm_watches()
        log.debug("full pass: %d results in %.2f s", len(results), time.monotonic() - started)
        return results

    def changed_folders(self, folders: set[str]) -> None:
        """Re-read what changed inside `folders` (by content) and re-verify only the affected connections."""
        folders = {os.path.abspath(f) for f in folders}
        users = self.inventory.bundle_users()
        candidates = set(self.connection_file_paths()) | set(self.inventory.files) | set(users)
        changed = [
            p for p in candidates if os.path.dirname(os.path.abspath(p)) in folders or os.path.abspath(p) in folders
        ]
        changed = [p for p in changed if not self.inventory.unchanged(p)]
        if not changed:
            return
        affected: set[tuple[str, str]] = set()
        connection_files = set(self.connection_file_paths())
        new_endpoints: set[Endpoint] = set()
        for path in changed:
            if path in connection_files or path in self.inventory.files:
                before = self.inventory.endpoints()
                old = self.inventory.files.get(path)
                if path in connection_files:
                    self._read_connection_file(self.inventory, path)
                else:
                    self.inventory.files.pop(path, None)
                    self.inventory.fingerprints.pop(path, None)
                new = self.inventory.files.get(path)
                for cf in (old, new):
                    if cf is not None:
                        affected |= {(c.file, c.name) for c in cf.connections}
                new_endpoints |= self.inventory.endpoints() - before
            if path in users or path in self.inventory.bundles:
                self._read_bundle(self.inventory, path)
                affected.update(users.get(path, ()))
        users = self.inventory.bundle_users()
        for bundle_path in list(users):
            if bundle_path not in self.inventory.bundles:
                self._read_bundle(self.inventory, bundle_path)
        # Everything sharing a bundle with an affected connection is re-judged with it.
        by_key = {key: path for path, keys in users.items() for key in keys}
        for key in list(affected):
            shared = by_key.get(key)
            if shared:
                affected.update(users[shared])
        if new_endpoints and self.config.verify_probe:
            self._probe(new_endpoints)
        self._evaluate(affected)
        if self._watcher is not None:
            self._rearm_watches()

    def _rearm_watches(self) -> None:
        """Watch what the inventory now needs; rescan folders armed just now (writes may predate the watch)."""
        if self._watcher is None:
            return
        armed = self._watcher.set_folders(self._watch_folders(), private=self._private_folders())
        if armed:
            self._on_folders(armed)

    def _retry_later(self, folder: str) -> None:
        self._enqueue_later(TRUNCATION_RETRY_SECONDS, Command("folders", frozenset({folder})))

    def _enqueue_later(self, delay: float, command: Command) -> None:
        """Queue `command` for the worker after `delay` seconds (timers are cancelled on stop)."""
        timer = threading.Timer(delay, lambda: self.commands.put(command))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _read_connection_file(self, inventory: Inventory, path: str) -> None:
        inventory.record(path)
        cf = read_connection_file(path, now=self.clock())
        if cf.problems:
            self.metrics.count_source_error("connection_json")
        messages = tuple(p.message for p in cf.problems if p.severity.value == "error")
        if messages != self._file_problem_log.get(path, ()):
            for message in messages:
                log.error("%s", message)
            if not messages and path in self._file_problem_log:
                log.info("connection file %s: readable again", path)
        self._file_problem_log[path] = messages
        previous = self.inventory.files.get(path)
        if not cf.connections and cf.problems and previous is not None and previous.connections:
            # A file broken as a whole (bad JSON mid-edit, wrong shape): keep verifying its last good
            # connections, so their alerts neither resolve nor vanish while it is being fixed.
            log.error(
                "connection file %s is unusable; still checking its last %d valid connections",
                path,
                len(previous.connections),
            )
            cf = replace(cf, connections=previous.connections)
        inventory.files[path] = cf

    def _read_bundle(self, inventory: Inventory, path: str, *, count_errors: bool = True) -> BundleReading:
        """Read a bundle, unless it is caught half-written: then keep the last reading and look again soon."""
        previous = self.inventory.bundles.get(path)
        if previous is not None and looks_truncated(path):
            attempts = self.truncation_attempts.get(path, 0) + 1
            self.truncation_attempts[path] = attempts
            if attempts <= TRUNCATION_RETRIES:
                inventory.bundles[path] = previous
                inventory.fingerprints[path] = self.inventory.fingerprints.get(path, "")
                self._retry_later(os.path.dirname(path))
                return previous
        self.truncation_attempts.pop(path, None)
        data = inventory.record(path)
        if data is not None and len(data) <= MAX_BUNDLE_BYTES:
            reading = read_bundle_bytes(data, path)  # the very bytes fingerprinted, read once
        else:
            reading = read_bundle_file(path)  # words why it cannot be read, or that it is too large
        if count_errors and not reading.readable:
            self.metrics.count_source_error("bundle")
        inventory.bundles[path] = reading
        return reading

    def _lazy_bundles(self, inventory: Inventory) -> LazyBundles:
        """Bundles read on first use; a worker process sends back each reading with its fingerprint."""

        def export(path: str) -> tuple[str, BundleReading, str | None, bytes | None]:
            return path, inventory.bundles[path], inventory.fingerprints.get(path), inventory.stats.get(path)

        def adopt(record: tuple[str, BundleReading, str | None, bytes | None]) -> None:
            path, reading, fingerprint, stat_key = record
            if path in inventory.bundles:
                if fingerprint != inventory.fingerprints.get(path):
                    # Two processes read two versions (it changed during the pass), so its users were
                    # judged inconsistently: forget the fingerprint, and look at its folder again.
                    inventory.fingerprints[path] = "changed during the first pass"
                    inventory.stats.pop(path, None)
                    self._on_folders({os.path.dirname(path)})
                return
            inventory.bundles[path] = reading
            if fingerprint is not None:
                inventory.fingerprints[path] = fingerprint
            if stat_key is not None:
                inventory.stats[path] = stat_key

        # Worker processes must not take the metrics lock (another thread may have held it when they
        # were forked): unreadable bundles are counted once the pass is settled.
        return LazyBundles(
            lambda path: self._read_bundle(inventory, path, count_errors=False), export=export, adopt=adopt
        )

    def _settle_bundles(self) -> None:
        """After a first pass: a plain dict again, holding every bundle in use (read now if no one needed it)."""
        if isinstance(self.inventory.bundles, LazyBundles):
            self.inventory.bundles = dict(self.inventory.bundles)
            for bundle_path in sorted(self.inventory.bundle_users()):
                if bundle_path not in self.inventory.bundles:
                    self._read_bundle(self.inventory, bundle_path, count_errors=False)
            for reading in self.inventory.bundles.values():
                if not reading.readable:
                    self.metrics.count_source_error("bundle")

    def _probe(self, endpoints: Iterable[Endpoint]) -> None:
        targets = sorted({(host, port, None) for host, port in endpoints}, key=str)
        if not targets:
            return
        results = self.prober(targets, concurrency=self.config.verify_concurrency, timeout=self.config.verify_timeout)
        for (host, port, _), result in results.items():
            self.heartbeat = time.monotonic()
            endpoint = (host, port)
            self.probe_times[endpoint] = result.duration
            presented = presented_from_probe(result)
            if presented.probe_error is None:
                self._chain_cache.store(host, port, presented.chain)
                self.presented[endpoint] = presented
                continue
            self.metrics.count_source_error("probe")
            cached = self._chain_cache.load(host, port)
            self.presented[endpoint] = Presented(cached, "cache" if cached else "probe", presented.probe_error)

    def _chains(self) -> ChainLookup:
        """The chains to verify against: the last probe's, else (loaded when first needed) the cached ones."""
        return ChainLookup(self.presented, self._chain_cache)

    def _store_for(self) -> RootStore:
        if self._store is None:
            self._store = load_root_store(self.config.verify_trusted_roots)
        return self._store

    def _evaluate(self, only: set[tuple[str, str]] | None) -> list[Result]:
        now = self.clock()
        # Worker processes only pay off while this process knows no certificate yet (the first pass):
        # later passes find most facts and signature checks in its own caches and are faster here.
        results = evaluate_pass(
            self.inventory.pass_inputs(),
            self._chains(),
            now,
            self.config,
            store=self._store_for(),
            only=only,
            parallel=not self._evaluated_once,
            cancelled=self._stop_requested.is_set,
        )
        self._evaluated_once = True
        self._settle_bundles()
        # Publish the verdicts first: alerting must never wait for AIA fetches or a submit command.
        self._publish(results, only, log_changes=True)
        if self.regenerator is not None and (self._probed or not self.config.verify_probe):
            # Only once the endpoints were probed (with probing off, no probe ever comes: at once).
            with_fixes = self._regenerate(results)
            if with_fixes is not results:
                self._publish(with_fixes, only, log_changes=False)
                results = with_fixes
        return results

    def _publish(self, results: list[Result], only: set[tuple[str, str]] | None, *, log_changes: bool) -> None:
        checked_at = time.time()
        states: dict[tuple[str, str], ConnectionState] = {}
        file_results: dict[str, Result] = {}
        endpoints = {(c.file, c.name): (c.host, c.port) for cf in self.inventory.files.values() for c in cf.connections}
        for result in results:
            if result.connection is None:
                if result.file:
                    file_results[result.file] = result
                continue
            key = (result.file or "", result.connection)
            endpoint = endpoints.get(key)
            states[key] = ConnectionState(
                result=result,
                checked_at=checked_at,
                probe_success=result.probe_ok,
                probe_duration=self.probe_times.get(endpoint) if endpoint else None,
            )
            if log_changes and self._log_enabled:
                self._log_state_change(key, result)
        if only is None:
            self.metrics.replace_connections(states, file_results)
            self._forget_removed(set(states))
        else:
            current = self.metrics.connection_states()
            merged = {k: v for k, v in current.items() if k in endpoints}
            merged.update(states)
            files = {cf.path: file_result(cf) for cf in self.inventory.files.values() if cf.problems}
            self.metrics.replace_connections(merged, files)
            self._forget_removed(set(merged))

    def _regenerate(self, results: list[Result]) -> list[Result]:
        """Complete broken bundles into the outbox; a failure shows as fix_failed on the connection."""
        try:
            extra = self.regenerator.after_evaluation(self.inventory, results, self._chains())
        except Exception:  # noqa: BLE001 - regeneration must never stop verification
            log.exception("bundle regeneration failed unexpectedly")
            self.metrics.count_source_error("outbox")
            return results
        if self.regenerator.needs_retry:
            self._enqueue_later(self.config.regenerate_retry_interval, Command("full"))
        if not extra:
            return results
        return [
            replace(r, problems=r.problems + tuple(extra[(r.file or "", r.connection)]))
            if r.connection is not None and (r.file or "", r.connection) in extra
            else r
            for r in results
        ]

    def _forget_removed(self, keys: set[tuple[str, str]]) -> None:
        for key in set(self.previous_status) - keys:
            log.info("connection %s %s: no longer configured", *key)
            del self.previous_status[key]

    def _log_state_change(self, key: tuple[str, str], result: Result) -> None:
        codes = tuple(sorted({p.code.value for p in result.problems if p.severity is not Severity.INFO}))
        verdict = result.verdict.value
        status = (verdict, codes)
        previous = self.previous_status.get(key)
        if previous == status:
            return
        self.previous_status[key] = status
        level = logging.INFO if verdict == "ok" else logging.WARNING
        was = f"{previous[0]} -> " if previous else ""
        detail = f" ({', '.join(codes)})" if codes else ""
        log.log(level, "connection %s %s: %s%s%s", key[0], key[1], was, verdict, detail)

    # Reload ------------------------------------------------------------------
    def reload(self) -> bool:
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("configuration reload failed, keeping the running one: %s", str(exc).replace("\n", "; "))
            self.metrics.set_reload(False, time.time())
            self.metrics.count_source_error("config")
            return False
        old = self.config
        self.config = new
        self._store = None
        forget_loaded_stores()
        self._chain_cache = ChainCache(Path(new.state_dir) / "chains")
        if new.metrics_listen != old.metrics_listen or new.metrics_tls_cert != old.metrics_tls_cert:
            if self._http is not None:
                server, thread = self._http
                server.shutdown()
                server.server_close()
            self._start_http()
        if self._scheduler is not None and (new.schedule_interval, new.schedule_jitter) != (
            old.schedule_interval,
            old.schedule_jitter,
        ):
            self._scheduler.reschedule_job(
                "full-pass",
                trigger=IntervalTrigger(seconds=new.schedule_interval, jitter=int(new.schedule_jitter) or None),
            )
        self._load_regenerator()
        self.metrics.set_reload(True, time.time())
        log.info("configuration reloaded from %s", self.config_path)
        self.full_pass(probe=True)
        return True

    # systemd -----------------------------------------------------------------
    def _start_watchdog_pinger(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return

        def ping() -> None:
            while not self._stopping.wait(interval):
                # Only vouch for the worker while it makes progress (it updates the heartbeat).
                if time.monotonic() - self.heartbeat < max(interval * 4, self.config.verify_timeout * 3):
                    sd_notify("WATCHDOG=1")

        threading.Thread(target=ping, name="sd-watchdog", daemon=True).start()

    def _status(self, text: str) -> None:
        sd_notify(f"STATUS={text}")

    def _summary(self) -> str:
        states = self.metrics.connection_states()
        bad = sum(1 for s in states.values() if s.result.verdict.value == "error")
        return f"{len(states)} connections, {bad} with errors"


def config_warnings(config: Config) -> list[str]:
    """Valid, but probably not what the operator meant."""
    out = []
    if not config.watch_connections:
        out.append("[watch] connections is empty: the daemon will watch and check nothing")
    for entry in config.watch_connections:
        if not os.path.exists(entry):
            out.append(f"[watch] connections: {entry} does not exist (yet)")
    return out


def return_large_buffers_to_the_os() -> None:
    """Keep allocations of 256 KiB and more out of glibc's heap, so that freeing them gives the memory back.

    glibc raises its mmap threshold each time a large block is freed; from then on the megabyte
    buffers of each scrape and re-verification are carved from the heap, which does not shrink:
    a daemon watching 10,000 connections grew by ~20 MB over a few dozen changes. Fixing the
    threshold keeps it flat. No-op where the C library has no mallopt (musl, macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3  # <malloc.h>
    mallopt(m_mmap_threshold, 256 * 1024)


def prepare_process() -> None:
    """What a long-running verifier sets up for itself before its first pass."""
    return_large_buffers_to_the_os()
    tune_collector()


def run_service(args: argparse.Namespace, config: Config) -> int:
    setup_logging(config.log_level)
    if args.check_config:
        print(f"configuration {args.config or '(defaults)'} is valid")
        for warning in config_warnings(config):
            print(f"warning: {warning}")
        return 0
    for warning in config_warnings(config):
        log.warning("%s", warning)
    daemon = Daemon(config, config_path=args.config)
    prepare_process()
    if args.once:
        results = daemon.full_pass(probe=config.verify_probe)
        from .render import results_text

        print(results_text(results), end="")
        return overall_exit_code(results)
    try:
        daemon.start()
    except OSError as exc:
        log.error("cannot start: metrics.listen %s: %s", config.metrics_listen, exc.strerror or exc)
        daemon.stop()
        return 3
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        daemon.stop()
        return 3
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    try:
        daemon.run_forever()
    finally:
        daemon.stop()
        log.info("stopped")
    return 0
