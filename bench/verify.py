"""Figure 1 workers, each run in a fresh process: `python -m bench.verify product|floor CORPUS_DIR [--warm]`.

* product: chainwarden's own full pass, offline, exactly as the daemon runs it with
  `[verify] probe = false` (read every connection JSON and bundle, take each endpoint's cached
  chain from `[state] dir`, evaluate every connection, publish the metrics snapshot):
  `Daemon(config).full_pass(probe=False)`, with the default `[verify] workers` (the first pass
  is spread over one process per usable CPU; their CPU time is reported too).
* floor: a bare loop that only loads the same certificates (every bundle once, every cached
  chain) and checks each signature on each connection's path once (leaf, intermediates, the
  root's self-signature), with cryptography's `verify_directly_issued_by`.

Each prints one JSON line: seconds of the pass (imports and interpreter start excluded, for both),
the process's peak resident memory (VmHWM) and a few counts to show the work was done.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def product(directory: Path, warm: bool) -> dict[str, Any]:
    import logging

    from chainwarden.config import Config
    from chainwarden.service import Daemon, prepare_process

    logging.disable(logging.CRITICAL)  # the product logs one line per connection state; not measured here
    config = Config(
        watch_connections=(str(directory / "site"),),
        verify_probe=False,
        state_dir=str(directory / "state"),
    )
    daemon = Daemon(config)
    prepare_process()  # as `chainwarden run` does before its first pass
    started, cpu = time.perf_counter(), time.process_time()
    results = daemon.full_pass(probe=False)
    seconds = time.perf_counter() - started
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the first pass's worker processes, all reaped
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "workers_cpu_seconds": workers.ru_utime + workers.ru_stime,
        "workers_peak_rss_kib": workers.ru_maxrss,  # the largest worker's, pages shared with this process included
        "peak_rss_kib": peak_rss_kib(),
        "results": len(results),
        "verdicts": dict(Counter(r.verdict.value for r in results)),
        "cached_leaves": sum(1 for r in results if r.chain and r.chain[0].source.value == "endpoint"),
    }
    if warm:
        # The next pass learns the facts the workers learnt and lost; the ones after it find them all.
        for key in ("warm", "steady"):
            started, cpu = time.perf_counter(), time.process_time()
            daemon.full_pass(probe=False)
            out[f"{key}_seconds"] = time.perf_counter() - started
            out[f"{key}_cpu_seconds"] = time.process_time() - cpu
        out["peak_rss_kib_after_warm"] = peak_rss_kib()
    return out


def floor(directory: Path) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    manifest = json.loads((directory / "manifest.json").read_text())
    started, cpu = time.perf_counter(), time.process_time()
    bundles: dict[str, list[x509.Certificate]] = {}
    verified: set[x509.Certificate] = set()  # CA certificates whose own signature was checked (by content)
    counts = Counter[str]()

    def load(path: Path) -> list[x509.Certificate]:
        try:
            data = path.read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                certs = x509.load_pem_x509_certificates(data)
        except (OSError, ValueError):
            return []
        counts["certificates_loaded"] += len(certs)
        return certs

    def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
        """Name match and signature, both in cryptography's Rust code (a mismatched name fails fast)."""
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
        counts["signatures_checked"] += 1
        return True

    for entry in manifest["connections"]:
        certs = bundles.get(entry["bundle"])
        if certs is None:
            certs = bundles[entry["bundle"]] = load(directory / entry["bundle"])
        if not entry["cache"]:
            continue
        child = load(directory / entry["cache"])[0]
        for depth in range(10):
            if depth and child in verified:
                counts["complete"] += 1
                break
            if depth and issued_by(child, child):  # a self-signed root: its signature, once
                verified.add(child)
                counts["complete"] += 1
                break
            issuer = next((c for c in certs if c is not child and issued_by(child, c)), None)
            if issuer is None:
                break
            if depth:
                verified.add(child)
            child = issuer
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_kib": peak_rss_kib(),
        **counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify")
    parser.add_argument("mode", choices=("product", "floor"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--warm", action="store_true", help="product: time a second full pass too")
    args = parser.parse_args(argv)
    out = product(args.directory, args.warm) if args.mode == "product" else floor(args.directory)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
