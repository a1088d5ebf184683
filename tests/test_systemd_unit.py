"""The shipped systemd unit: hardening score, syntax and the settings the daemon relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "chainwarden.service"
DROPINS = SYSTEMD / "chainwarden.service.d"
MAX_EXPOSURE = 2.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)",
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> every value it is given, in order (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def last(settings: dict[str, list[str]], key: str) -> str | None:
    values = settings.get(key)
    return values[-1] if values else None


def exposure(unit: Path) -> float:
    """Run `systemd-analyze security --offline=true` and return the overall exposure level."""
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in proc.stderr and "unrecognized option" in proc.stderr:
        pytest.skip("systemd-analyze is older than systemd 250 and has no --offline")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, f"no exposure level in output (rc={proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return float(match.group(1))


def install_with_dropins(dest: Path, exec_start: str | None = None) -> Path:
    """Copy the unit to `dest` with every example drop-in next to it, all options uncommented."""
    text = UNIT.read_text()
    if exec_start:
        text = text.replace("/opt/chainwarden/venv/bin/chainwarden", exec_start)
    (dest / UNIT.name).write_text(text)
    dropin_dir = dest / f"{UNIT.name}.d"
    dropin_dir.mkdir()
    examples = sorted(DROPINS.glob("*.conf.example"))
    assert examples, "no example drop-ins shipped"
    for example in examples:
        body = re.sub(r"(?m)^#(?=[A-Z][A-Za-z]+=)", "", example.read_text())
        (dropin_dir / example.name.removesuffix(".example")).write_text(body)
    return dest / UNIT.name


@pytest.fixture(scope="module")
def settings() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())


@needs_analyze
def test_security_exposure_is_at_most_2() -> None:
    """`systemd-analyze security --offline=true` rates the shipped unit 2.0 or lower."""
    level = exposure(UNIT)
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}"


@needs_analyze
def test_security_exposure_with_all_example_dropins(tmp_path: Path) -> None:
    """Every example drop-in applied at once, all options uncommented, still rates 2.0 or lower."""
    level = exposure(install_with_dropins(tmp_path))
    assert level <= MAX_EXPOSURE, f"exposure with drop-ins {level} > {MAX_EXPOSURE}"


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts unit and drop-ins; ExecStart is a stub (no /opt here)."""
    stub = tmp_path / "chainwarden"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit_dir = tmp_path / "unit"
    unit_dir.mkdir()
    unit = install_with_dropins(unit_dir, exec_start=str(stub))
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_type_notify_with_watchdog(settings: dict[str, list[str]]) -> None:
    """Type=notify, only the main process may notify, and a watchdog interval is set."""
    assert last(settings, "Service.Type") == "notify"
    assert last(settings, "Service.NotifyAccess") == "main"
    assert last(settings, "Service.WatchdogSec")


def test_runs_as_unprivileged_user(settings: dict[str, list[str]]) -> None:
    """The unit sets User= (created by the shipped sysusers file) or DynamicUser=yes."""
    user = last(settings, "Service.User")
    assert user or last(settings, "Service.DynamicUser") == "yes"
    if user:
        sysusers = (SYSTEMD / "chainwarden.sysusers.conf").read_text()
        assert re.search(rf"(?m)^u\s+{re.escape(user)}\s", sysusers), "user missing in sysusers"


def test_state_directory(settings: dict[str, list[str]]) -> None:
    """StateDirectory=chainwarden, matching the config's default state dir /var/lib/chainwarden."""
    assert last(settings, "Service.StateDirectory") == "chainwarden"


def test_execstart_runs_daemon(settings: dict[str, list[str]]) -> None:
    """ExecStart runs `chainwarden run --config /etc/chainwarden/config.toml` from the venv."""
    argv = (last(settings, "Service.ExecStart") or "").split()
    assert argv[:2] == ["/opt/chainwarden/venv/bin/chainwarden", "run"]
    assert argv[2:] == ["--config", "/etc/chainwarden/config.toml"]


def test_reload_sends_sighup(settings: dict[str, list[str]]) -> None:
    """`systemctl reload` sends SIGHUP to the main process."""
    assert last(settings, "Service.ExecReload") == "/bin/kill -HUP $MAINPID"
