"""Run the two oracles on one case: `openssl verify` and the JVM (JvmOracle.java, one process per session)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

JAVA_SOURCE = Path(__file__).with_name("JvmOracle.java")
# HostnameChecker is the JDK's own TLS hostname check; it lives in a package java.base does not export.
ADD_EXPORTS = ["--add-exports", "java.base/sun.security.util=ALL-UNNAMED"]


@dataclass(frozen=True)
class Answer:
    """One oracle's verdict: accepted or not, and what it said."""

    ok: bool
    output: str
    readable: bool = True  # False: it could not even read the bundle (and rejects every case with it)

    def __str__(self) -> str:
        verdict = "accept" if self.ok else "reject" if self.readable else "reject (bundle unreadable)"
        return f"{verdict}: {self.output}"


def missing_tools() -> list[str]:
    return [tool for tool in ("openssl", "java", "javac") if shutil.which(tool) is None]


def write_case(directory: Path, bundle: bytes, leaf_pem: bytes, host: str, at: int) -> Path:
    """The files both oracles read: the bundle, the presented leaf, the host name and the time (epoch seconds)."""
    directory.mkdir(parents=True)
    (directory / "bundle.pem").write_bytes(bundle)
    (directory / "leaf.pem").write_bytes(leaf_pem)
    (directory / "host.txt").write_text(host)
    (directory / "time.txt").write_text(str(at))
    return directory


def openssl_verify(directory: Path) -> Answer:
    """The bundle as the only trust store (no default paths or stores), the leaf alone presented."""
    at = (directory / "time.txt").read_text().strip()
    host = (directory / "host.txt").read_text().strip()
    cmd = ["openssl", "verify", "-no-CApath", "-no-CAstore", "-attime", at, "-purpose", "sslserver"]
    if host:
        cmd += ["-verify_hostname", host]
    cmd += ["-CAfile", str(directory / "bundle.pem"), str(directory / "leaf.pem")]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=30)
    output = " | ".join(line for line in (proc.stdout + proc.stderr).splitlines() if line.strip())
    readable = "Error loading file" not in output
    return Answer(proc.returncode == 0, output.replace(str(directory) + "/", ""), readable)


def _jvm_answer(field: str) -> Answer:
    """ "OK", "FAIL <exception>" or "UNREADABLE <exception>" (the bundle itself could not be read)."""
    return Answer(field == "OK", field, readable=not field.startswith("UNREADABLE"))


class Jvm:
    """JvmOracle compiled into `workdir` and started once; `check` asks it about one case directory."""

    def __init__(self, workdir: Path) -> None:
        classes = workdir / "classes"
        compiled = subprocess.run(
            ["javac", "-nowarn", *ADD_EXPORTS, "-d", str(classes), str(JAVA_SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if compiled.returncode != 0:
            raise RuntimeError(f"javac failed:\n{compiled.stdout}{compiled.stderr}")
        self._proc = subprocess.Popen(
            ["java", "-Xshare:auto", "-XX:+UseSerialGC", *ADD_EXPORTS, "-cp", str(classes), "JvmOracle"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )

    def check(self, directory: Path) -> tuple[Answer, Answer]:
        """(lenient, strict): every bundle certificate trusted, or only the self-signed ones (see the Java)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{directory}\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the JVM oracle exited (status {self._proc.poll()})")
        lenient, strict = line.rstrip("\n").split("\t")
        return _jvm_answer(lenient), _jvm_answer(strict)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
