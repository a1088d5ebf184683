"""Figure 1 (offline full re-verification), the machine description, and the results table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .corpus import Corpus


def _worker(mode: str, directory: Path, *extra: str) -> dict[str, Any]:
    """Run a bench.verify worker in a fresh interpreter and return its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.verify", mode, str(directory), *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def openssl_verify_loop(corpus: Corpus, sample: int) -> dict[str, Any]:
    """What an administrator would script: one `openssl verify` per connection, the bundle as the only
    trust store (no system CA path or store) and the endpoint's cached leaf. Timed on an evenly spread
    sample and extrapolated linearly to every connection."""
    entries = [e for e in corpus.manifest["connections"] if e["cache"]]
    picked = entries[:: max(1, len(entries) // sample)][:sample]
    script = "".join(
        f"openssl verify -no-CApath -no-CAstore -CAfile '{e['bundle']}' '{e['cache']}' >/dev/null 2>&1\n"
        for e in picked
    )
    began = time.perf_counter()
    subprocess.run(["bash", "-c", script], cwd=corpus.directory, check=False, timeout=900)
    seconds = time.perf_counter() - began
    return {"sample": len(picked), "seconds": seconds, "for_n": seconds / len(picked) * corpus.n}


@dataclass
class OfflineFigures:
    n: int
    product: dict[str, Any]
    floor: dict[str, Any]
    openssl: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "product": self.product, "floor": self.floor, "openssl": self.openssl}


def offline(corpus: Corpus, *, openssl_sample: int, repeats: int, log: Any = print) -> OfflineFigures:
    """Product and floor each `repeats` times in fresh processes (the median run is kept), alternating."""
    products, floors = [], []
    for _ in range(repeats):
        products.append(_worker("product", corpus.directory, "--warm"))
        floors.append(_worker("floor", corpus.directory))
    product = sorted(products, key=lambda r: r["seconds"])[len(products) // 2]
    floor = sorted(floors, key=lambda r: r["seconds"])[len(floors) // 2]
    product["all_seconds"] = [r["seconds"] for r in products]
    floor["all_seconds"] = [r["seconds"] for r in floors]
    log(
        f"offline: N={corpus.n}: chainwarden full pass {product['seconds']:.2f} s "
        f"(next {product['warm_seconds']:.2f} s, then {product['steady_seconds']:.2f} s), "
        f"floor {floor['seconds']:.2f} s"
    )
    openssl = openssl_verify_loop(corpus, openssl_sample)
    log(
        f"offline: N={corpus.n}: openssl verify loop {openssl['seconds']:.2f} s for {openssl['sample']} "
        f"connections -> {openssl['for_n']:.1f} s for {corpus.n}"
    )
    return OfflineFigures(corpus.n, product, floor, openssl)


# ------------------------------------------------------------------------------------------------
# The machine


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False).stdout.strip()
    packages = ", ".join(
        f"{name} {_version(name)}" for name in ("chainwarden", "cryptography", "pyOpenSSL", "prometheus-client",
                                                "watchdog", "APScheduler")
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu model": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": openssl,
        "packages": packages,
        "load average at start": load,
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# ------------------------------------------------------------------------------------------------
# The table

Row = tuple[str, str, str, str, str]  # figure, measured, target, ratio, met


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def _mb(kib: float) -> str:
    return f"{kib * 1024 / 1e6:.0f} MB"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def offline_rows(fig: OfflineFigures, *, targets: bool) -> list[Row]:
    n = f"{fig.n:,}"
    p, f, o = fig.product, fig.floor, fig.openssl
    vs_floor = p["seconds"] / f["seconds"]
    vs_openssl = o["for_n"] / p["seconds"]
    return [
        (
            f"1. full re-verification, N={n}: chainwarden (fresh process) vs floor",
            f"{_s(p['seconds'])} vs {_s(f['seconds'])} (CPU {_s(p['cpu_seconds'] + p['workers_cpu_seconds'])} "
            f"in {_workers(p)} vs {_s(f['cpu_seconds'])} in one)",
            "≤ 1.5x floor" if targets else "–",
            f"{vs_floor:.2f}x floor",
            _met(vs_floor <= 1.5) if targets else "–",
        ),
        (
            f"1. full re-verification, N={n}: vs `openssl verify` loop",
            f"openssl {_s(o['for_n'])} (timed on {o['sample']}, extrapolated ×{fig.n / o['sample']:.1f})",
            "≥ 20x faster" if targets else "–",
            f"{vs_openssl:.1f}x faster",
            _met(vs_openssl >= 20) if targets else "–",
        ),
        (
            f"1. full re-verification, N={n}: the daemon's next (hourly) passes, same process: "
            "the first (learns what the workers learnt) / later ones",
            f"{_s(p['warm_seconds'])} / {_s(p['steady_seconds'])}",
            "–",
            f"{p['warm_seconds'] / f['seconds']:.2f}x / {p['steady_seconds'] / f['seconds']:.2f}x floor",
            "–",
        ),
        (
            f"1. peak memory, N={n}: chainwarden vs floor",
            f"{_mib(p['peak_rss_kib'])} vs {_mib(f['peak_rss_kib'])}" + _worker_memory(p),
            "–",
            f"{p['peak_rss_kib'] / f['peak_rss_kib']:.1f}x floor",
            "–",
        ),
    ]


def _worker_memory(product: dict[str, Any]) -> str:
    if not product["workers_cpu_seconds"]:
        return ""
    return f" (largest worker {_mib(product['workers_peak_rss_kib'])}, partly shared)"


def _workers(product: dict[str, Any]) -> str:
    return "two or more processes" if product["workers_cpu_seconds"] else "one process"


def daemon_rows(d: dict[str, Any]) -> list[Row]:
    n = f"{d['n']:,}"
    p99 = d["change_p99_s"]
    idle_share = d["idle_cpu_seconds"] / d["idle_seconds"]
    rss = max(d["rss_kib"], d["rss_end_kib"])  # the target is checked against the larger
    rows: list[Row] = [
        (
            f"2. change latency, N={n}: atomic replace -> /metrics, median / p99 ({d['changes']} changes)",
            f"{_s(d['change_median_s'])} / {_s(p99)}"
            + (f" ({d['change_timeouts']} over 10 s)" if d["change_timeouts"] else ""),
            "p99 < 0.5 s",
            f"{15 / p99:.0f}x faster than a 30 s poller's 15 s",
            _met(p99 < 0.5 and not d["change_timeouts"]),
        ),
        (
            f"3. scrape, N={n}: /metrics response time median / p99, size",
            f"{_s(d['scrape_median_s'])} / {_s(d['scrape_p99_s'])}, "
            f"{d['scrape_bytes'] / 1e6:.1f} MB, {d['series']:,} series",
            "median < 100 ms",
            f"{d['scrape_median_s'] / 0.1:.0%} of the target",
            _met(d["scrape_median_s"] < 0.1),
        ),
        (
            f"4. daemon resident memory, N={n}: after a full cycle / after the scrapes and changes too",
            f"{_mb(d['rss_kib'])} / {_mb(d['rss_end_kib'])} (peak during start-up, VmHWM: {_mb(d['hwm_kib'])})",
            "< 150 MB",
            f"{rss * 1024 / 150e6:.0%} of the target",
            _met(rss * 1024 < 150e6),
        ),
        (
            f"4. daemon CPU while idle, N={n}, {d['idle_seconds']:.0f} s",
            f"{idle_share * 100:.2f}% of a core ({d['idle_cpu_seconds']:.2f} CPU s)",
            "< 1% of a core",
            f"{idle_share / 0.01:.0%} of the target",
            _met(idle_share < 0.01),
        ),
    ]
    return rows


def probe_rows(p: dict[str, Any]) -> list[Row]:
    ratio = p["openssl_for_k_s"] / p["probe_median_s"]
    sampled = p["openssl_sample"] != p["k"]
    loop = f"{_s(p['openssl_for_k_s'])}" + (
        f" (timed on {p['openssl_sample']}, extrapolated ×{p['k'] / p['openssl_sample']:.0f})" if sampled else ""
    )
    return [
        (
            f"5. probing K={p['k']} loopback TLS endpoints: probe cycle (concurrency 32) vs `openssl s_client` loop",
            f"{_s(p['probe_median_s'])} vs {loop}",
            "≥ 10x",
            f"{ratio:.1f}x faster",
            _met(ratio >= 10 and p["probe_ok"] == p["k"]),
        )
    ]


def table(rows: list[Row]) -> str:
    lines = ["| figure | measured | target | ratio | met |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)
