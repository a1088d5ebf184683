"""The real daemon process on loopback: metrics follow every way files change; reload, stop, polling fallback."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chainwarden import pkigen
from daemonproc import DaemonProcess, free_port
from servers import PythonTLSServer, tls_server

pytestmark = pytest.mark.slow
HOST = "localhost"


class Site:
    """A connection JSON with two connections, their bundles, live endpoints and a config."""

    def __init__(self, root: Path, *, extra_config: str = "") -> None:
        self.root = root
        self.pki = pkigen.three_tier(HOST, label="Daemon")
        self.conns = root / "conns"
        self.bundles = root / "pki"
        self.conns.mkdir()
        self.bundles.mkdir()
        self.servers = [tls_server(self.pki.leaf, self.pki.intermediate) for _ in range(2)]
        self.good = pkigen.pem_bundle(self.pki.intermediate, self.pki.root)
        self.root_only = pkigen.pem_bundle(self.pki.root)
        self.bundle = self.bundles / "erp-chain.pem"
        self.bundle.write_bytes(self.good)
        self.other_bundle = self.bundles / "crm-chain.pem"
        self.other_bundle.write_bytes(self.good)
        self.json = self.conns / "prodConnections.json"
        self.write_connections({"erp": "../pki/erp-chain.pem", "crm": "../pki/crm-chain.pem"})
        self.port = free_port()
        self.config = root / "chainwarden.toml"
        self.write_config(extra_config)

    def write_connections(self, bundles: dict[str, str]) -> None:
        doc = {
            "external_connections": {
                name: {
                    "baseurl": f"https://{HOST}:{server.port}",
                    "secrets": {"bearer_token": "Bearer canary-9f8e7d"},
                    "server_cert": path,
                }
                for (name, path), server in zip(bundles.items(), self.servers, strict=False)
            }
        }
        tmp = self.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.json)

    def write_config(self, extra: str = "", *, port: int | None = None) -> None:
        self.config.write_text(
            f"""
[watch]
connections = ["{self.conns}"]
poll_interval = "0.2s"

[schedule]
interval = "1h"

[verify]
timeout = "5s"

[metrics]
listen = "127.0.0.1:{port or self.port}"

[state]
dir = "{self.root / "state"}"
{extra}
"""
        )

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def complete(daemon: DaemonProcess, site: Site, name: str = "erp") -> float | None:
    return daemon.value("chainwarden_chain_complete", file=str(site.json), connection=name)


def wait_complete(daemon, site, expected, name="erp", timeout=20.0):
    daemon.wait_for(lambda: complete(daemon, site, name) == expected, f"{name} complete == {expected}", timeout)


def test_starts_probes_and_exports(site):
    """A fresh daemon verifies both connections through live probes and exports the pinned metrics."""
    with DaemonProcess(site.config) as daemon:
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.json), connection="erp")
        wait_complete(daemon, site, 1.0)
        text = daemon.scrape()
        for name in (
            "chainwarden_chain_problem",
            "chainwarden_certificate_not_after_timestamp_seconds",
            "chainwarden_chain_expiry_timestamp_seconds",
            "chainwarden_last_check_timestamp_seconds",
            "chainwarden_endpoint_probe_duration_seconds",
            "chainwarden_source_errors_total",
            "chainwarden_watch_mode",
            "chainwarden_config_last_reload_successful",
            "chainwarden_build_info",
        ):
            assert name in text, name
        assert 'role="leaf"' in text and 'role="root"' in text
        assert daemon.value("chainwarden_watch_mode", mode="inotify") == 1.0
        assert "canary-9f8e7d" not in text and "canary-9f8e7d" not in daemon.log


def test_atomic_replace_breaks_and_restores(site):
    """A bundle replaced by rename (editors, sed -i) flips complete to 0, and back to 1 on restore."""
    with DaemonProcess(site.config) as daemon:
        # Wait for the live probe: before it, only the bundle's own structure is known.
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.json), connection="erp")
        wait_complete(daemon, site, 1.0)
        tmp = site.bundles / ".erp-chain.pem.swp"
        tmp.write_bytes(site.root_only)
        os.replace(tmp, site.bundle)
        wait_complete(daemon, site, 0.0)
        daemon.wait_value(
            "chainwarden_chain_problem",
            1.0,
            file=str(site.json),
            connection="erp",
            code="missing_intermediate",
            severity="error",
        )
        assert complete(daemon, site, "crm") == 1.0  # the other connection is untouched
        # Certificate expiry keeps being exported while the chain is broken (leaf and the bundle's root).
        for role in ("leaf", "root"):
            value = daemon.value(
                "chainwarden_certificate_not_after_timestamp_seconds", file=str(site.json), connection="erp", role=role
            )
            assert value is not None and value > time.time(), role
        subprocess.run(["sed", "-i", "s/^$//", str(site.bundle)], check=True)  # a no-op sed -i rewrite
        site.bundle.write_bytes(site.good)  # in-place rewrite
        wait_complete(daemon, site, 1.0)
        assert "erp: ok -> error (missing_intermediate)" in daemon.log


def test_vim_style_backup_rename(site):
    """vim's backup-rename save (rename away, write new, delete backup) is followed."""
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0)
        backup = site.bundles / "erp-chain.pem~"
        os.rename(site.bundle, backup)
        site.bundle.write_bytes(site.root_only)
        backup.unlink()
        wait_complete(daemon, site, 0.0)


def test_configmap_symlink_swap(tmp_path):
    """A Kubernetes-style ..data symlink swap (no event on the file itself) is seen by content."""
    s = Site(tmp_path)
    try:
        mount = tmp_path / "mount"
        first = mount / "..2026_12_03_a"
        first.mkdir(parents=True)
        (first / "chain.pem").write_bytes(s.good)
        (mount / "..data").symlink_to(first.name)
        (mount / "chain.pem").symlink_to("..data/chain.pem")
        s.write_connections({"erp": "../mount/chain.pem", "crm": "../pki/crm-chain.pem"})
        with DaemonProcess(s.config) as daemon:
            wait_complete(daemon, s, 1.0)
            second = mount / "..2026_12_03_b"
            second.mkdir()
            (second / "chain.pem").write_bytes(s.root_only)
            (mount / "..data_tmp").symlink_to(second.name)
            os.replace(mount / "..data_tmp", mount / "..data")
            shutil.rmtree(first)
            wait_complete(daemon, s, 0.0)
    finally:
        s.close()


def test_directory_deleted_and_recreated(site):
    """The bundle folder removed and recreated with a broken bundle: noticed, and watched again after."""
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0)
        shutil.rmtree(site.bundles)
        daemon.wait_value(
            "chainwarden_chain_problem",
            1.0,
            file=str(site.json),
            connection="erp",
            code="bundle_unreadable",
            severity="error",
        )
        site.bundles.mkdir()
        site.other_bundle.write_bytes(site.good)
        site.bundle.write_bytes(site.root_only)
        wait_complete(daemon, site, 0.0)
        daemon.wait_for(lambda: complete(daemon, site, "crm") == 1.0, "crm back")
        site.bundle.write_bytes(site.good)  # the re-armed watch sees later changes too
        wait_complete(daemon, site, 1.0)


def test_half_written_bundle_is_not_acted_on(site):
    """A PEM caught half-written is retried, and only the finished content is judged."""
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0)
        half = site.root_only[: len(site.root_only) // 2]
        with open(site.bundle, "wb") as handle:
            handle.write(half)
            handle.flush()
            os.fsync(handle.fileno())
            # Finish the write later than the daemon's debounce, so it does see the half file.
            time.sleep(0.4)  # the delay *is* the scenario (a slow writer), not synchronisation
            handle.write(site.root_only[len(half) :])
        wait_complete(daemon, site, 0.0)
        assert "block_unreadable" not in daemon.log and "bundle_unreadable" not in daemon.log


def test_connection_removed_drops_series(site):
    """A connection taken out of the JSON disappears from /metrics."""
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0, "crm")
        site.write_connections({"erp": "../pki/erp-chain.pem"})
        daemon.wait_for(lambda: complete(daemon, site, "crm") is None, "crm series gone")
        assert complete(daemon, site, "erp") == 1.0


def test_sighup_good_and_bad_config(site):
    """SIGHUP applies a good config; a bad one keeps the old running and sets reload_successful 0."""
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0)
        site.config.write_text(site.config.read_text().replace('timeout = "5s"', 'timeout = "5s"\nwarn_days = 3650'))
        daemon.signal(signal.SIGHUP)
        daemon.wait_value(
            "chainwarden_chain_problem",
            1.0,
            file=str(site.json),
            connection="erp",
            code="expiring_soon",
            severity="warning",
        )
        site.config.write_text(site.config.read_text() + "\n[bogus]\nkey = 1\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_value("chainwarden_config_last_reload_successful", 0.0)
        assert "unknown key bogus.key" in daemon.log
        site.bundle.write_bytes(site.root_only)  # still watching and verifying under the old config
        wait_complete(daemon, site, 0.0)


def test_sigterm_stops_cleanly(site):
    """SIGTERM ends the daemon with status 0 within a few seconds."""
    daemon = DaemonProcess(site.config)
    wait_complete(daemon, site, 1.0)
    started = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - started < 10


def test_bad_config_refuses_to_start(tmp_path):
    """A config with an unknown key and a bad value: exit 3 and both located in the message."""
    config = tmp_path / "bad.toml"
    config.write_text('[verify]\nwarn_days = "soon"\n[metrics]\nlisten = "nowhere"\ncolour = "red"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "chainwarden", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "verify.warn_days" in proc.stderr and "unknown key metrics.colour" in proc.stderr
    check = subprocess.run(
        [sys.executable, "-m", "chainwarden", "run", "--check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 3


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def test_inotify_unavailable_falls_back_to_polling(site):
    """With every inotify instance of this user taken, the daemon polls instead, says so, and still follows changes."""
    libc = _libc()
    held = []
    try:
        for _ in range(100_000):
            fd = libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                assert ctypes.get_errno() in (errno.EMFILE, errno.ENFILE, errno.ENOSPC)
                break
            held.append(fd)
        else:
            pytest.skip("could not exhaust inotify instances")
        daemon = DaemonProcess(site.config)
        try:
            daemon.wait_value("chainwarden_watch_mode", 1.0, mode="polling")
            wait_complete(daemon, site, 1.0)
        finally:
            for fd in held:
                os.close(fd)
            held = []
        assert "inotify unavailable" in daemon.log
        site.bundle.write_bytes(site.root_only)
        wait_complete(daemon, site, 0.0)
        daemon.stop()
    finally:
        for fd in held:
            os.close(fd)


def test_force_polling_config(tmp_path):
    """[watch] force_polling = true (network file systems) polls and follows changes."""
    s = Site(tmp_path)
    try:
        s.config.write_text(
            s.config.read_text().replace('poll_interval = "0.2s"', 'poll_interval = "0.2s"\nforce_polling = true')
        )
        with DaemonProcess(s.config) as daemon:
            daemon.wait_value("chainwarden_watch_mode", 1.0, mode="polling")
            wait_complete(daemon, s, 1.0)
            s.bundle.write_bytes(s.root_only)
            wait_complete(daemon, s, 0.0)
    finally:
        s.close()


def test_unreachable_endpoint_uses_cached_chain(site):
    """An endpoint that goes away: probe_success 0, endpoint_unreachable, bundle still checked on the cached leaf."""
    with DaemonProcess(site.config) as daemon:
        # A live probe, not the start-up pass (which knows no leaf yet), is what writes the cached
        # chain this test needs.
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.json), connection="erp")
        wait_complete(daemon, site, 1.0)
    site.servers[0].stop()
    with DaemonProcess(site.config) as daemon:
        daemon.wait_value("chainwarden_endpoint_probe_success", 0.0, file=str(site.json), connection="erp")
        daemon.wait_value(
            "chainwarden_chain_problem",
            1.0,
            file=str(site.json),
            connection="erp",
            code="endpoint_unreachable",
            severity="warning",
        )
        assert complete(daemon, site, "erp") == 1.0
        site.bundle.write_bytes(site.root_only)
        wait_complete(daemon, site, 0.0)


def test_no_leaf_known_claims_neither_complete_nor_incomplete(site):
    """An endpoint never reached (no probe, no cached chain) with a root-only bundle: only the leaf
    would show the missing intermediate, so chain_complete is absent (never 1), and
    endpoint_not_verified says why."""
    site.bundle.write_bytes(site.root_only)
    down = site.servers[0]
    down.stop()
    with DaemonProcess(site.config) as daemon:
        daemon.wait_value("chainwarden_endpoint_probe_success", 0.0, file=str(site.json), connection="erp")
        daemon.wait_value(
            "chainwarden_chain_problem",
            1.0,
            file=str(site.json),
            connection="erp",
            code="endpoint_not_verified",
            severity="warning",
        )
        assert complete(daemon, site, "erp") is None
        assert complete(daemon, site, "crm") == 1.0


def test_promtool_accepts_exposition(site):
    """`promtool check metrics` finds no error in the exposition."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/bootstrap.sh installs the prometheus package)")
    with DaemonProcess(site.config) as daemon:
        wait_complete(daemon, site, 1.0)
        text = daemon.scrape()
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    # promtool exits 1 for lint warnings too; only real errors (not "lint" lines) fail the test.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and "error" in line.lower()]
    assert not problems, proc.stdout + proc.stderr


def test_python_tls_server_endpoint(tmp_path):
    """Endpoints served by Python's ssl (not openssl) are probed the same way."""
    pki = pkigen.three_tier(HOST, label="PyTLS")
    with PythonTLSServer.from_issued(pki.leaf, pki.intermediate) as server:
        from chainwarden.probe import probe

        result = probe("127.0.0.1", server.port, servername=HOST, timeout=5)
        assert result.ok and len(result.chain) == 2


def test_regeneration_writes_submits_and_exports(tmp_path):
    """[regenerate] enabled: a missing intermediate is fetched by AIA, written, submitted, and counted in metrics."""
    from servers import AIAServer

    with AIAServer() as aia:
        root = pkigen.make_root("Regen Root")
        inter = pkigen.make_intermediate("Regen Issuing", root)
        leaf = pkigen.make_leaf([HOST], inter, aia_url=aia.url("/issuing.der"))
        aia.set("/issuing.der", (inter.der, "application/pkix-cert"))
        (tmp_path / "roots").mkdir()
        (tmp_path / "roots" / "root.pem").write_bytes(root.pem)
        (tmp_path / "conns").mkdir()
        bundle = tmp_path / "pki.pem"
        bundle.write_bytes(root.pem)
        copy = tmp_path / "submitted-copy.json"
        port = free_port()
        with PythonTLSServer.from_issued(leaf) as server:
            source = tmp_path / "conns" / "prod.json"
            source.write_text(
                json.dumps(
                    {
                        "external_connections": {
                            "erp": {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
                        }
                    }
                )
            )
            config = tmp_path / "cw.toml"
            submit = json.dumps(
                [sys.executable, "-c", "import shutil,sys; shutil.copy(sys.argv[1], sys.argv[2])", "{json}", str(copy)]
            )
            config.write_text(
                f'[watch]\nconnections = ["{tmp_path / "conns"}"]\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
                f'[state]\ndir = "{tmp_path / "state"}"\n[verify]\ntrusted_roots = "{tmp_path / "roots"}"\n'
                f'[regenerate]\nenabled = true\nallow_private_aia = true\ntrusted_roots = "{tmp_path / "roots"}"\n'
                f'outbox = "{tmp_path / "outbox"}"\nsubmit_command = {submit}\n'
            )
            with DaemonProcess(config) as daemon:
                labels = {"file": str(source), "connection": "erp"}
                daemon.wait_value("chainwarden_bundle_regenerations_total", 1.0, outcome="written", **labels)
                daemon.wait_value("chainwarden_submit_last_success", 1.0, file=str(source))
                assert daemon.value("chainwarden_chain_complete", **labels) == 0.0  # the source is untouched
                submitted = json.loads(copy.read_text())
                new_bundle = Path(submitted["external_connections"]["erp"]["server_cert"])
                assert new_bundle.read_bytes() == inter.pem + root.pem
                assert len(list((tmp_path / "outbox").glob("*.resubmit.json.submitted"))) == 1
                daemon.wait_for(
                    lambda: daemon.value("chainwarden_pending_apply_at_timestamp_seconds", file=str(source)) is None,
                    "no pending resubmission after a successful submit",
                )


def test_broken_json_keeps_last_valid_connections(site):
    """A connection JSON saved broken mid-edit: an error line with its location, and the connections stay watched."""
    with DaemonProcess(site.config) as daemon:
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.json), connection="erp")
        good = site.json.read_text()
        site.json.write_text(good[:-5])  # truncated: invalid JSON
        daemon.wait_for(
            lambda: (
                daemon.value(
                    "chainwarden_file_problem", file=str(site.json), code="connection_invalid", severity="error"
                )
                == 1.0
            ),
            "file problem exported",
        )
        assert "invalid JSON" in daemon.log and f"{site.json}" in daemon.log
        assert complete(daemon, site, "erp") == 1.0  # still exported, still verified
        site.bundle.write_bytes(site.root_only)
        wait_complete(daemon, site, 0.0)
        site.json.write_text(good)
        daemon.wait_for(
            lambda: (
                daemon.value(
                    "chainwarden_file_problem", file=str(site.json), code="connection_invalid", severity="error"
                )
                is None
            ),
            "file problem cleared",
        )
        assert "readable again" in daemon.log


def test_sd_notify_ready_status_and_watchdog(site, tmp_path):
    """Under a notify unit with WatchdogSec: READY=1 once metrics exist, STATUS lines, and WATCHDOG=1 pings."""
    import socket as socketlib

    address = str(tmp_path / "notify.sock")
    receiver = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(0.5)
    messages: list[str] = []

    def received(predicate) -> bool:
        try:
            messages.append(receiver.recv(4096).decode())
        except TimeoutError:
            pass
        return any(predicate(m) for m in messages)

    try:
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"}
        daemon = DaemonProcess(site.config, env=env)
        try:
            daemon.wait_for(lambda: received(lambda m: "READY=1" in m), "READY=1")
            # metrics are served by the time READY is sent
            assert daemon.value("chainwarden_last_check_timestamp_seconds", file=str(site.json), connection="erp")
            daemon.wait_for(lambda: received(lambda m: m.startswith("WATCHDOG=1")), "WATCHDOG=1")
            assert any("STATUS=" in m and "connections" in m for m in messages), messages
        finally:
            daemon.stop()
        assert received(lambda m: "STOPPING=1" in m) or any("STOPPING=1" in m for m in messages)
    finally:
        receiver.close()


def test_journald_log_format(site):
    """Under journald: syslog priority prefixes and no timestamps of our own; a broken chain logs at warning."""
    with DaemonProcess(site.config, env={"JOURNAL_STREAM": "8:12345"}) as daemon:
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.json), connection="erp")
        site.bundle.write_bytes(site.root_only)
        wait_complete(daemon, site, 0.0)
        daemon.wait_for(lambda: any("missing_intermediate" in line for line in daemon.log_lines), "the change logged")
    lines = [line for line in daemon.log_lines if line]
    assert lines and all(line[0] == "<" and line[2] == ">" for line in lines), lines
    change = next(line for line in lines if "missing_intermediate" in line)
    assert change.startswith("<4>") and not change[3:7].isdigit()  # warning priority, no timestamp


class StartupRegenSite:
    """Three connections sharing a bundle that holds only their root (fixable only once the leaf is
    known: the endpoint presents the intermediate), and one whose own bundle lacks its root (fixable
    from the bundle alone); an empty state folder, so the first pass knows no leaf; a submit command
    that appends the server_cert values of the JSON it is given to a log, one line per submission."""

    def __init__(self, root: Path, *, probe: bool = True) -> None:
        self.shared_pki = pkigen.three_tier(HOST, label="Startup Shared")
        self.own_pki = pkigen.three_tier(HOST, label="Startup Own")
        self.servers = [
            tls_server(self.shared_pki.leaf, self.shared_pki.intermediate),
            tls_server(self.own_pki.leaf, self.own_pki.intermediate),
        ]
        for name in ("conns", "pki", "roots"):
            (root / name).mkdir()
        (root / "roots" / "roots.pem").write_bytes(pkigen.pem_bundle(self.shared_pki.root, self.own_pki.root))
        (root / "pki" / "shared.pem").write_bytes(self.shared_pki.root.pem)
        (root / "pki" / "own.pem").write_bytes(self.own_pki.intermediate.pem)
        shared_url, own_url = (f"https://{HOST}:{server.port}" for server in self.servers)
        self.json = root / "conns" / "prod.json"
        self.json.write_text(
            json.dumps(
                {
                    "apply_at": "2026-01-01T09:30:00+00:00",
                    "external_connections": {
                        **{
                            name: {"baseurl": shared_url, "server_cert": str(root / "pki" / "shared.pem")}
                            for name in ("erp", "crm", "plm")
                        },
                        "hr": {"baseurl": own_url, "server_cert": str(root / "pki" / "own.pem")},
                    },
                },
                indent=2,
            )
        )
        self.log = root / "submitted.log"
        script = (
            "import json,sys; c=json.load(open(sys.argv[1]))['external_connections']; "
            "open(sys.argv[2],'a').write(json.dumps({n: v['server_cert'] for n, v in sorted(c.items())})+'\\n')"
        )
        submit = json.dumps([sys.executable, "-c", script, "{json}", str(self.log)])
        self.outbox = root / "outbox"
        self.config = root / "cw.toml"
        self.config.write_text(
            f'[watch]\nconnections = ["{root / "conns"}"]\n[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[state]\ndir = "{root / "state"}"\n'
            f'[verify]\ntimeout = "5s"\nprobe = {"true" if probe else "false"}\ntrusted_roots = "{root / "roots"}"\n'
            f'[regenerate]\nenabled = true\ntrusted_roots = "{root / "roots"}"\noutbox = "{self.outbox}"\n'
            f"submit_command = {submit}\n"
        )

    def submissions(self) -> list[dict[str, str]]:
        try:
            return [json.loads(line) for line in self.log.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def close(self) -> None:
        for server in self.servers:
            server.stop()


def test_startup_regenerates_and_submits_once_from_probed_chains(tmp_path):
    """The fast first pass (no leaf known yet: an empty state folder) neither writes nor submits a plan:
    only the probed pass does, once, with every connection the probe showed fixable."""
    site = StartupRegenSite(tmp_path)
    try:
        with DaemonProcess(site.config) as daemon:
            labels = {"file": str(site.json)}
            daemon.wait_value("chainwarden_submit_last_success", 1.0, **labels)
            for name in ("erp", "crm", "plm", "hr"):
                assert daemon.value("chainwarden_endpoint_probe_success", connection=name, **labels) == 1.0
            (submitted,) = site.submissions()  # one submission, not an incomplete one first
            outbox_bundles = {name: path for name, path in submitted.items() if Path(path).parent == site.outbox}
            assert set(outbox_bundles) == {"erp", "crm", "plm", "hr"}, submitted
            for name in ("erp", "crm", "plm", "hr"):
                written = daemon.value("chainwarden_bundle_regenerations_total", connection=name, outcome="written")
                assert written == 1.0, (name, written)
            assert daemon.value("chainwarden_submissions_total", outcome="success", **labels) == 1.0
            (json_out,) = site.outbox.glob("*.resubmit.json")
            assert Path(f"{json_out}.submitted").exists()
            # Later passes (a schedule, a change) find the plan already submitted: nothing more is written.
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(
                lambda: (
                    daemon.value("chainwarden_bundle_regenerations_total", connection="hr", outcome="unchanged") == 1.0
                ),
                "the reload's pass finding the submitted plan unchanged",
            )
            assert len(site.submissions()) == 1 and len(list(site.outbox.glob("*.resubmit.json"))) == 1
    finally:
        site.close()


def test_without_probing_the_first_pass_regenerates(tmp_path):
    """With [verify] probe = false no probe ever comes, so the first pass regenerates and submits:
    the connection fixable from its bundle alone, once."""
    site = StartupRegenSite(tmp_path, probe=False)
    try:
        with DaemonProcess(site.config) as daemon:
            labels = {"file": str(site.json)}
            daemon.wait_value("chainwarden_submit_last_success", 1.0, **labels)
            (submitted,) = site.submissions()
            assert Path(submitted["hr"]).parent == site.outbox
            assert all(Path(submitted[name]) == tmp_path / "pki" / "shared.pem" for name in ("erp", "crm", "plm"))
            assert daemon.value("chainwarden_bundle_regenerations_total", connection="hr", outcome="written") == 1.0
            assert daemon.value("chainwarden_submissions_total", outcome="success", **labels) == 1.0
    finally:
        site.close()


def test_daemon_never_rewrites_a_submitted_resubmission(tmp_path):
    """A newer plan for a source whose resubmission was submitted goes under the next revision's name and
    is submitted in turn; the submitted JSON and its .submitted marker stay as they were."""
    site = StartupRegenSite(tmp_path)
    try:
        with DaemonProcess(site.config) as daemon:
            labels = {"file": str(site.json)}
            daemon.wait_value("chainwarden_submissions_total", 1.0, outcome="success", **labels)
            (first,) = site.outbox.glob("*.resubmit.json")
            submitted = first.read_bytes()
            marker = Path(f"{first}.submitted").read_bytes()
            # A fifth connection breaks (its bundle lacks the root): the plan for the source changes.
            (tmp_path / "pki" / "wiki.pem").write_bytes(site.own_pki.intermediate.pem)
            doc = json.loads(site.json.read_text())
            doc["external_connections"]["wiki"] = {
                **doc["external_connections"]["hr"],
                "server_cert": str(tmp_path / "pki" / "wiki.pem"),
            }
            tmp = site.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, site.json)
            daemon.wait_value("chainwarden_submissions_total", 2.0, outcome="success", **labels)
            second = first.with_name(first.name.replace(".resubmit.json", "-r2.resubmit.json"))
            assert sorted(site.outbox.glob("*.resubmit.json")) == sorted([first, second])
            assert first.read_bytes() == submitted and Path(f"{first}.submitted").read_bytes() == marker
            assert Path(f"{second}.submitted").exists()
            assert [set(s) for s in site.submissions()] == [{"erp", "crm", "plm", "hr"}, {*doc["external_connections"]}]
            assert Path(site.submissions()[1]["wiki"]).parent == site.outbox
            daemon.wait_for(
                lambda: daemon.value("chainwarden_pending_apply_at_timestamp_seconds", **labels) is None,
                "nothing pending once the newer plan was submitted",
            )
    finally:
        site.close()


def test_pending_resubmission_of_the_same_plan_is_submitted_once(tmp_path):
    """A resubmission already waiting unsubmitted with the very plan the daemon makes (written by
    `fix --write`, or by a run stopped before it could submit) is submitted, once, without a rewrite."""
    site = StartupRegenSite(tmp_path)
    try:
        fix = subprocess.run(
            [sys.executable, "-m", "chainwarden", "fix", str(site.json), "--config", str(site.config), "--write"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert fix.returncode == 0, fix.stdout + fix.stderr
        (pending,) = site.outbox.glob("*.resubmit.json")
        written = pending.read_bytes()
        with DaemonProcess(site.config) as daemon:
            labels = {"file": str(site.json)}
            daemon.wait_value("chainwarden_submissions_total", 1.0, outcome="success", **labels)
            assert daemon.value("chainwarden_bundle_regenerations_total", connection="hr", outcome="written") == 0.0
            assert pending.read_bytes() == written and Path(f"{pending}.submitted").exists()
            daemon.signal(signal.SIGHUP)  # a reload's pass: already submitted, nothing more
            daemon.wait_value("chainwarden_bundle_regenerations_total", 2.0, connection="hr", outcome="unchanged")
            assert len(site.submissions()) == 1
    finally:
        site.close()
