"""Run a real `chainwarden run` process on loopback, scrape it, and wait on its metrics and log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class DaemonProcess:
    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = _listen_port(config)
        self.log_lines: list[str] = []
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainwarden", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log_lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.scrape())

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample whose labels include `labels` (None when absent)."""
        found = [v for (n, ls), v in self.metrics().items() if n == name and set(labels.items()) <= set(ls)]
        return found[0] if len(found) == 1 else None

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n{self.log}")
            try:
                if predicate():
                    return
            except (OSError, ValueError) as exc:  # not listening yet
                last_error = exc
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} (last error: {last_error})\n--- log ---\n{self.log}")

    def wait_value(self, name: str, expected: float, timeout: float = 20.0, **labels: str) -> None:
        self.wait_for(lambda: self.value(name, **labels) == expected, f"{name}{labels} == {expected}", timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen_port(config: Path) -> int:
    import tomllib

    data = tomllib.loads(config.read_text())
    return int(data["metrics"]["listen"].rsplit(":", 1)[1])
