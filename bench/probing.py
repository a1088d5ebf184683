"""Figure 5: chainwarden's probe of K loopback TLS endpoints vs a loop of `openssl s_client -showcerts`."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corpus import probe_corpus


@dataclass
class ProbeFigures:
    k: int
    probe_seconds: list[float]
    probe_ok: int
    chain_lengths: set[int]
    openssl_sample: int
    openssl_seconds: float  # for the sample
    openssl_ok: int

    @property
    def openssl_extrapolated(self) -> float:
        return self.openssl_seconds / self.openssl_sample * self.k

    def summary(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "probe_seconds": self.probe_seconds,
            "probe_median_s": statistics.median(self.probe_seconds),
            "probe_ok": self.probe_ok,
            "openssl_sample": self.openssl_sample,
            "openssl_sample_s": self.openssl_seconds,
            "openssl_ok": self.openssl_ok,
            "openssl_for_k_s": self.openssl_extrapolated,
        }


def run(k: int, *, openssl_sample: int, cycles: int = 3, log: Any = print) -> ProbeFigures:
    from chainwarden.config import Config
    from chainwarden.probe import probe_many

    identities = probe_corpus(k, log=log)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.tlsserver", str(identities.directory), str(k)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    work = Path(tempfile.mkdtemp(prefix="chainwarden-bench-probe-"))
    try:
        assert server.stdout is not None
        ports: list[int] = json.loads(server.stdout.readline())
        log(f"probe: {k} TLS endpoints listening on 127.0.0.1 (one server process)")
        default = Config().verify_concurrency
        targets = [("127.0.0.1", port, "localhost") for port in ports]
        seconds: list[float] = []
        for _ in range(cycles):
            began = time.perf_counter()
            results = probe_many(targets, concurrency=default, timeout=Config().verify_timeout)
            seconds.append(time.perf_counter() - began)
        ok = sum(1 for r in results.values() if r.ok)
        lengths = {len(r.chain) for r in results.values() if r.ok}
        log(
            f"probe: probe_many (concurrency {default}): median {statistics.median(seconds):.2f} s "
            f"over {cycles} cycles, {ok}/{k} chains"
        )

        sample = ports[:: max(1, k // openssl_sample)][:openssl_sample]
        script = work / "s_client-loop.sh"
        script.write_text(
            "".join(
                f"openssl s_client -connect 127.0.0.1:{port} -servername localhost -showcerts "
                f"</dev/null >{work}/out-{port}.txt 2>/dev/null\n"
                for port in sample
            )
        )
        began = time.perf_counter()
        subprocess.run(["bash", str(script)], check=False, timeout=60 + 2 * len(sample))
        openssl_seconds = time.perf_counter() - began
        openssl_ok = sum(
            1
            for port in sample
            if (work / f"out-{port}.txt").read_text(errors="replace").count("-----BEGIN CERTIFICATE-----") == 2
        )
        log(f"probe: openssl s_client loop over {len(sample)} endpoints: {openssl_seconds:.2f} s, {openssl_ok} chains")
        return ProbeFigures(k, seconds, ok, lengths, len(sample), openssl_seconds, openssl_ok)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
