"""Shell around the engine for one pass: read connection files and bundles, probe, evaluate."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from . import gcpolicy
from .bundle import BundleReading, read_bundle_file
from .chaincache import ChainCache
from .config import Config
from .connections import Connection, ConnectionFile, read_connection_file
from .engine import Evaluation, Presented, Target, evaluate, finish_shared_bundles
from .parallel import map_chunks, worker_count
from .probe import ProbeResult, probe_many
from .report import Result
from .roots import RootStore, load_root_store

log = logging.getLogger("chainwarden")

ProbeKey = tuple[str, int, str | None]
Prober = Callable[..., Mapping[ProbeKey, ProbeResult]]


@dataclass
class PassInputs:
    """Everything one verification pass read from disk, kept so a daemon can reuse unchanged parts."""

    files: list[ConnectionFile] = field(default_factory=list)
    bundles: dict[str, BundleReading] = field(default_factory=dict)


class LazyBundles(dict[str, BundleReading]):
    """Bundle readings by path, each read when first needed, by whichever process evaluates it.

    A worker process sends back `export(path)` for each bundle it read; the parent passes that to
    `adopt`. By default a record is (path, reading).
    """

    def __init__(
        self,
        read: Callable[[str], BundleReading],
        *,
        export: Callable[[str], Any] | None = None,
        adopt: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        self._read = read
        # Not lambdas over self: a reference cycle that only the collector would free.
        self._export = export
        self._adopt = adopt
        self._fresh: list[str] = []

    def __missing__(self, path: str) -> BundleReading:
        reading = self._read(path)
        self[path] = reading
        self._fresh.append(path)
        return reading

    def take_fresh(self) -> tuple[Any, ...]:
        """Records of the bundles read since the last call."""
        export = self._export
        records = tuple(export(path) if export else (path, self[path]) for path in self._fresh)
        self._fresh.clear()
        return records

    def adopt(self, records: Iterable[Any]) -> None:
        for record in records:
            if self._adopt is not None:
                self._adopt(record)
            else:
                self.setdefault(record[0], record[1])


def read_inputs(paths: Iterable[str], *, now: datetime | None = None) -> PassInputs:
    """Every connection file now; each bundle when the evaluation first needs it."""
    inputs = PassInputs(bundles=LazyBundles(read_bundle_file))
    for path in paths:
        inputs.files.append(read_connection_file(path, now=now))
    return inputs


def selected(inputs: PassInputs, name: str | None) -> list[Connection]:
    return [c for f in inputs.files for c in f.connections if name is None or c.name == name]


def probe_connections(
    connections: Iterable[Connection], config: Config, prober: Prober = probe_many
) -> dict[ProbeKey, Presented]:
    """Probe every endpoint; where a probe fails, fall back to the chain the daemon last cached."""
    targets = {(c.host, c.port, None) for c in connections}
    if not targets:
        return {}
    results = prober(sorted(targets, key=str), concurrency=config.verify_concurrency, timeout=config.verify_timeout)
    cache = ChainCache(Path(config.state_dir) / "chains")
    out = {}
    for key, result in results.items():
        presented = presented_from_probe(result)
        if presented.probe_error is not None:
            cached = cache.load(key[0], key[1])
            if cached:
                presented = Presented(cached, "cache", presented.probe_error)
        out[key] = presented
    return out


class ChainLookup(Mapping[Any, Presented]):
    """Known chains by endpoint, completed on demand from the chain cache.

    Keys are (host, port) or (host, port, sni); only host and port count. Loading on demand lets a
    worker process read just the cached chains of its own share, and lets a change re-read only the
    chains of the connections it affects.
    """

    def __init__(self, known: dict[tuple[str, int], Presented], cache: ChainCache) -> None:
        self.known = known
        self.cache = cache

    def __getitem__(self, key: tuple[Any, ...]) -> Presented:
        endpoint = (key[0], key[1])
        found = self.known.get(endpoint)
        if found is None:
            chain = self.cache.load(*endpoint)
            if not chain:
                raise KeyError(key)
            found = self.known[endpoint] = Presented(chain, "cache")
        return found

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)


def cached_chains(config: Config) -> ChainLookup:
    """Offline: the chains the daemon last saw (under [state] dir), where it has run on this host;
    each is loaded when first needed (in a worker process, for that worker's share)."""
    return ChainLookup({}, ChainCache(Path(config.state_dir) / "chains"))


def presented_chains(
    connections: list[Connection], config: Config, *, offline: bool
) -> Mapping[ProbeKey, Presented]:
    """What `check` and `fix` verify against: live probes, else the daemon's cached chains."""
    if offline or not config.verify_probe:
        return cached_chains(config)
    return probe_connections(connections, config)


def presented_from_probe(result: ProbeResult) -> Presented:
    if not result.ok:
        return Presented((), "probe", result.error or "probe failed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chain = tuple(x509.load_der_x509_certificate(der) for der in result.chain)
    except ValueError as exc:
        endpoint = f"{result.host}:{result.port}"
        return Presented((), "probe", f"{endpoint}: the endpoint presented an unreadable certificate: {exc}")
    return Presented(chain, "probe")


def evaluate_pass(
    inputs: PassInputs,
    presented: Mapping[ProbeKey, Presented],
    now: datetime,
    config: Config,
    *,
    connection_name: str | None = None,
    store: RootStore | None = None,
    at_apply: bool = False,
    only: set[tuple[str, str]] | None = None,
    parallel: bool = True,
    cancelled: Callable[[], bool] | None = None,
) -> list[Result]:
    """One Result per selected connection, plus one per file that has file-level problems.

    `only` limits evaluation to these (file, connection) keys; callers include every
    connection sharing a bundle with a changed one, so `unrelated_certificate` stays right.
    With `parallel`, a large pass is spread over worker processes (`[verify] workers`); the
    results are the same, but the facts the workers learn die with them.
    """
    store = store if store is not None else load_root_store(config.verify_trusted_roots)
    results: list[Result] = []
    jobs: list[tuple[Connection, datetime]] = []
    for connection_file in inputs.files:
        if connection_file.problems and connection_name is None and only is None:
            results.append(file_result(connection_file))
        moment = now
        if at_apply and connection_file.apply_at is not None:
            moment = connection_file.apply_at
        for conn in connection_file.connections:
            if connection_name is not None and conn.name != connection_name:
                continue
            if only is not None and (conn.file, conn.name) not in only:
                continue
            jobs.append((conn, moment))

    bundles = inputs.bundles
    lazy = bundles if isinstance(bundles, LazyBundles) else None

    def work(share: Sequence[tuple[Connection, datetime]]) -> list[tuple[Evaluation, tuple[Any, ...]]]:
        out = []
        for conn, moment in share:
            evaluation = evaluate(
                Target(
                    file=conn.file,
                    connection=conn.name,
                    endpoint=f"{conn.host}:{conn.port}",
                    hostname=conn.host,
                    bundle_path=conn.server_cert_path,
                    connection_problems=conn.problems,
                ),
                bundles[conn.server_cert_path],
                presented.get((conn.host, conn.port, None)),
                moment,
                store=store,
                warn_days=config.verify_warn_days,
                client_chain=bundles[conn.client_cert_path] if conn.client_cert_path else None,
            )
            out.append((evaluation, lazy.take_fresh() if lazy is not None else ()))
        return out

    workers = worker_count(config.verify_workers, len(jobs)) if parallel else 1
    if workers > 1:
        log.info("verifying %d connections in %d processes", len(jobs), workers)
    # A first pass (spread over workers) fills caches that live as long as the process: frozen, not collected.
    with gcpolicy.frozen_after() if parallel else contextlib.nullcontext():
        evaluated = map_chunks(jobs, work, workers, cancelled=cancelled)
        if lazy is not None:
            for _, records in evaluated:
                lazy.adopt(records)  # what worker processes read; a no-op for this process's own reads
        return results + finish_shared_bundles([evaluation for evaluation, _ in evaluated])


def file_result(connection_file: ConnectionFile) -> Result:
    return Result(
        file=connection_file.path,
        connection=None,
        endpoint=None,
        bundle=None,
        problems=connection_file.problems,
    )
