"""Figures 2-4: a real `python -m chainwarden run` on a copy of the corpus, watched over loopback.

The daemon is started with `NOTIFY_SOCKET` pointing at a datagram socket of ours, so its own
sd_notify messages say when the first pass is published (READY=1) and when the full cycle that
follows it is done (the next STATUS=). Everything else is measured from outside: /proc for memory
and CPU, urllib for /metrics, and real atomic replacements (write a temporary file, os.replace)
for changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import Corpus

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); with 200 values, p99 is the 198th smallest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class DaemonFigures:
    n: int
    startup_to_ready: float = 0.0
    full_cycle: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0
    rss_end_kib: int = 0  # after the scrapes and changes too
    idle_seconds: float = 0.0
    idle_cpu_seconds: float = 0.0
    scrape_times: list[float] = field(default_factory=list)
    scrape_bytes: int = 0
    series: int = 0
    change_latencies: list[float] = field(default_factory=list)
    change_timeouts: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "startup_to_ready_s": self.startup_to_ready,
            "full_cycle_s": self.full_cycle,
            "rss_kib": self.rss_kib,
            "hwm_kib": self.hwm_kib,
            "rss_end_kib": self.rss_end_kib,
            "idle_seconds": self.idle_seconds,
            "idle_cpu_seconds": self.idle_cpu_seconds,
            "scrape_median_s": statistics.median(self.scrape_times) if self.scrape_times else None,
            "scrape_p99_s": percentile(self.scrape_times, 99) if self.scrape_times else None,
            "scrape_bytes": self.scrape_bytes,
            "series": self.series,
            "change_median_s": statistics.median(self.change_latencies) if self.change_latencies else None,
            "change_p99_s": percentile(self.change_latencies, 99) if self.change_latencies else None,
            "change_max_s": max(self.change_latencies) if self.change_latencies else None,
            "changes": len(self.change_latencies),
            "change_timeouts": self.change_timeouts,
        }


class Notifications:
    """Our end of NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait_for(self, prefix: str, timeout: float) -> str:
        """The next message with a line starting with `prefix`; TimeoutError past `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {prefix} from the daemon within {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                message = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            if any(line.startswith(prefix) for line in message.splitlines()):
                return message

    def close(self) -> None:
        self.sock.close()


def scrape(port: int, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        body: bytes = response.read()
        return body


def metric_value(body: bytes, needles: tuple[bytes, ...]) -> bytes | None:
    """The value after the first of `needles` (`name{labels} `) found in an exposition, or None."""
    for needle in needles:
        at = body.find(needle)
        if at >= 0:
            start = at + len(needle)
            end = body.find(b"\n", start)
            return body[start : end if end >= 0 else None]
    return None


def run(
    corpus: Corpus,
    *,
    changes: int,
    idle_seconds: float,
    scrapes: int,
    log: Any = print,
) -> DaemonFigures:
    figures = DaemonFigures(corpus.n)
    work = Path(tempfile.mkdtemp(prefix=f"chainwarden-bench-n{corpus.n}-"))
    daemon: subprocess.Popen[bytes] | None = None
    notes: Notifications | None = None
    try:
        # The daemon watches site/ and its parent, so its log and socket live one level up.
        data = work / "data"
        shutil.copytree(corpus.site, data / "site", symlinks=True)
        shutil.copytree(corpus.state_dir, data / "state", symlinks=True)
        port = free_port()
        config = work / "chainwarden.toml"
        config.write_text(
            "[watch]\n"
            f'connections = ["{data / "site"}"]\n\n'
            "[verify]\n"
            "probe = false\n\n"
            "[metrics]\n"
            f'listen = "127.0.0.1:{port}"\n\n'
            "[state]\n"
            f'dir = "{data / "state"}"\n'
        )
        notes = Notifications(work / "notify.sock")
        env = dict(os.environ, NOTIFY_SOCKET=str(notes.path))
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        stderr = open(work / "daemon.log", "wb")  # noqa: SIM115 - closed with the process
        log(f"daemon: N={corpus.n}: starting chainwarden run on a copy of the corpus in {work}")
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "chainwarden", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        stderr.close()
        notes.wait_for("READY=1", 600)
        figures.startup_to_ready = time.monotonic() - started
        notes.wait_for("STATUS=", 600)
        figures.full_cycle = time.monotonic() - started
        time.sleep(1.0)  # let the worker go back to waiting before reading its memory
        figures.rss_kib = proc_status(daemon.pid, "VmRSS")
        figures.hwm_kib = proc_status(daemon.pid, "VmHWM")
        log(
            f"daemon: ready after {figures.startup_to_ready:.1f} s, full cycle done after {figures.full_cycle:.1f} s, "
            f"RSS {figures.rss_kib * 1024 / 1e6:.0f} MB"  # MB, as the target is given
        )

        # Figure 4: idle CPU, nothing touching the daemon.
        cpu_before = cpu_seconds(daemon.pid)
        idle_started = time.monotonic()
        time.sleep(idle_seconds)
        figures.idle_seconds = time.monotonic() - idle_started
        figures.idle_cpu_seconds = cpu_seconds(daemon.pid) - cpu_before
        log(f"daemon: idle {figures.idle_seconds:.0f} s: {figures.idle_cpu_seconds:.2f} CPU seconds")

        # Figure 3: scrapes, one after another with a pause (as a scraper would).
        for _ in range(scrapes):
            began = time.perf_counter()
            body = scrape(port)
            figures.scrape_times.append(time.perf_counter() - began)
            figures.scrape_bytes = len(body)
            time.sleep(0.1)
        figures.series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        log(
            f"daemon: scrape median {statistics.median(figures.scrape_times) * 1000:.0f} ms, "
            f"{figures.scrape_bytes / 1e6:.1f} MB, {figures.series} series"
        )

        # Figure 2: change latency.
        figures.change_latencies, figures.change_timeouts = _changes(corpus, data, port, changes, log)
        time.sleep(1.0)
        figures.rss_end_kib = proc_status(daemon.pid, "VmRSS")
        figures.hwm_kib = proc_status(daemon.pid, "VmHWM")
        log(f"daemon: RSS {figures.rss_end_kib * 1024 / 1e6:.0f} MB after the scrapes and changes")
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
                figures.notes.append("the daemon did not stop within 30 s of SIGTERM")
        if notes is not None:
            notes.close()
        shutil.rmtree(work, ignore_errors=True)
    return figures


def _changes(corpus: Corpus, work: Path, port: int, changes: int, log: Any) -> tuple[list[float], int]:
    """Toggle bundles between complete and root-only; time each until /metrics shows the new value."""
    candidates = [e for e in corpus.manifest["connections"] if e["toggle"]]
    picked = candidates[:: max(1, len(candidates) // max(1, changes // 2))][: max(1, changes // 2)]
    original = {e["bundle"]: (work / e["bundle"]).read_bytes() for e in picked}
    broken = {path: data[data.rindex(b"-----BEGIN CERTIFICATE-----") :] for path, data in original.items()}
    latencies: list[float] = []
    timeouts = 0
    for i in range(changes):
        entry = picked[i % len(picked)]
        breaking = (i // len(picked)) % 2 == 0
        target = work / entry["bundle"]
        file_label, name_label = f'file="{work / entry["file"]}"', f'connection="{entry["name"]}"'
        needles = (  # label order is the exposition library's business
            f"chainwarden_chain_complete{{{name_label},{file_label}}} ".encode(),
            f"chainwarden_chain_complete{{{file_label},{name_label}}} ".encode(),
        )
        want = b"0.0" if breaking else b"1.0"
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_bytes(broken[entry["bundle"]] if breaking else original[entry["bundle"]])
        began = time.perf_counter()
        os.replace(temp, target)
        deadline = began + 10.0
        while True:
            value = metric_value(scrape(port), needles)
            now = time.perf_counter()
            if value == want:
                latencies.append(now - began)
                break
            if now > deadline:
                timeouts += 1
                latencies.append(now - began)
                break
            time.sleep(0.002)
        if timeouts >= 5:
            log(f"daemon: {timeouts} changes were not seen within 10 s; stopping the change figure early")
            break
        time.sleep(0.05)
    log(
        f"daemon: {len(latencies)} changes: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms, {timeouts} timed out"
    )
    return latencies, timeouts
