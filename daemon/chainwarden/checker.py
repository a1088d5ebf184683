"""Shell around the engine for one pass: read connection files and bundles, probe, evaluate."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509

from .bundle import BundleReading, read_bundle_file
from .chaincache import ChainCache
from .config import Config
from .connections import Connection, ConnectionFile, read_connection_file
from .engine import Evaluation, Presented, Target, evaluate, finish_shared_bundles
from .probe import ProbeResult, probe_many
from .report import Result
from .roots import RootStore, load_root_store

ProbeKey = tuple[str, int, str | None]
Prober = Callable[..., Mapping[ProbeKey, ProbeResult]]


@dataclass
class PassInputs:
    """Everything one verification pass read from disk, kept so a daemon can reuse unchanged parts."""

    files: list[ConnectionFile] = field(default_factory=list)
    bundles: dict[str, BundleReading] = field(default_factory=dict)


def read_inputs(paths: Iterable[str], *, now: datetime | None = None) -> PassInputs:
    inputs = PassInputs()
    for path in paths:
        connection_file = read_connection_file(path, now=now)
        inputs.files.append(connection_file)
        for conn in connection_file.connections:
            for bundle_path in (conn.server_cert_path, conn.client_cert_path):
                if bundle_path and bundle_path not in inputs.bundles:
                    inputs.bundles[bundle_path] = read_bundle_file(bundle_path)
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


def cached_chains(connections: Iterable[Connection], config: Config) -> dict[ProbeKey, Presented]:
    """Offline: the chains the daemon last saw (under [state] dir), where it has run on this host."""
    cache = ChainCache(Path(config.state_dir) / "chains")
    out: dict[ProbeKey, Presented] = {}
    for conn in connections:
        chain = cache.load(conn.host, conn.port)
        if chain:
            out[(conn.host, conn.port, None)] = Presented(chain, "cache")
    return out


def presented_chains(connections: list[Connection], config: Config, *, offline: bool) -> dict[ProbeKey, Presented]:
    """What `check` and `fix` verify against: live probes, else the daemon's cached chains."""
    if offline or not config.verify_probe:
        return cached_chains(connections, config)
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
) -> list[Result]:
    """One Result per selected connection, plus one per file that has file-level problems.

    `only` limits evaluation to these (file, connection) keys; callers include every
    connection sharing a bundle with a changed one, so `unrelated_certificate` stays right.
    """
    store = store if store is not None else load_root_store(config.verify_trusted_roots)
    results: list[Result] = []
    evaluations: list[Evaluation] = []
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
            evaluations.append(
                evaluate(
                    Target(
                        file=conn.file,
                        connection=conn.name,
                        endpoint=f"{conn.host}:{conn.port}",
                        hostname=conn.host,
                        bundle_path=conn.server_cert_path,
                        connection_problems=conn.problems,
                    ),
                    inputs.bundles[conn.server_cert_path],
                    presented.get((conn.host, conn.port, None)),
                    moment,
                    store=store,
                    warn_days=config.verify_warn_days,
                    client_chain=inputs.bundles.get(conn.client_cert_path) if conn.client_cert_path else None,
                )
            )
    return results + finish_shared_bundles(evaluations)


def file_result(connection_file: ConnectionFile) -> Result:
    return Result(
        file=connection_file.path,
        connection=None,
        endpoint=None,
        bundle=None,
        problems=connection_file.problems,
    )
