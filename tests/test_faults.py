"""Fault scenarios of issue 7, against the real `chainwarden run` process.

Where each scenario of the issue is proved:

| scenario | test |
|---|---|
| inotify unavailable | `test_daemon.py::test_inotify_unavailable_falls_back_to_polling` |
| watched directory deleted and recreated | `test_daemon.py::test_directory_deleted_and_recreated` |
| symlink-swap update | `test_daemon.py::test_configmap_symlink_swap` |
| SIGHUP with a broken config | `test_daemon.py::test_sighup_good_and_bad_config` |
| outbox disk full / read-only | `test_outbox_write_failure_leaves_nothing_and_is_retried` (here) |
| SIGKILL during a regeneration, 50 times | `test_sigkill_during_regeneration` (here) |
| endpoint that never answers / resets / sends garbage | `test_misbehaving_endpoints` (here) |
| AIA slow / huge / redirect loop | `test_aia_faults_during_regeneration` (here) |
| AIA pointing at a private address | `test_aia_private_address_refused` (here) |

The disk-full and read-only outboxes are real file systems: a 64 KiB tmpfs filled up, and a
tmpfs remounted read-only (a 0555 folder does not stop root). Mounting needs root with
CAP_SYS_ADMIN. Run as a non-root user, the read-only case uses a 0555 folder instead (which does
stop that user) and the disk-full case is skipped; run as root without CAP_SYS_ADMIN, both are
skipped, each with that reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from chainwarden import pkigen
from chainwarden.bundle import read_bundle_bytes
from chainwarden.outbox import output_json_path
from daemonproc import DaemonProcess, free_port
from servers import (
    AIAServer,
    BlackholeServer,
    GarbageServer,
    Oversized,
    PythonTLSServer,
    ResetServer,
    Slow,
    tls_server,
)

pytestmark = pytest.mark.slow
HOST = "localhost"
# atomicio's temp files (".<name>.<random>.tmp"): never outputs.
TEMP = re.compile(r"^\..+\.tmp$")
SOURCE_APPLY_AT = "2026-01-01T09:30:00+01:00"


def _toml_list(paths: list[Path]) -> str:
    return json.dumps([str(p) for p in paths])


class RegenSite:
    """A connection whose fix writes a bundle and a JSON: the endpoint presents only its leaf,
    the bundle holds only the root, the intermediate waits in `intermediates_dir`."""

    def __init__(self, root: Path, *, outbox: Path | None = None, extra: str = "", label: str = "Fault") -> None:
        self.root = root
        self.pki = pkigen.three_tier(HOST, label=label)
        self.server = PythonTLSServer.from_issued(self.pki.leaf)
        for name in ("roots", "inter", "pki", "conns"):
            (root / name).mkdir()
        (root / "roots" / "root.pem").write_bytes(self.pki.root.pem)
        (root / "inter" / "issuing.pem").write_bytes(self.pki.intermediate.pem)
        self.bundle = root / "pki" / "erp-chain.pem"
        self.bundle.write_bytes(self.pki.root.pem)
        self.json = root / "conns" / "prod.json"
        # Hand-formatted on purpose: the rewrite must keep every byte but the two values.
        self.source_text = (
            f'{{\n  "apply_at": "{SOURCE_APPLY_AT}",\n  "external_connections": {{\n'
            f'    "erp": {{"baseurl": "https://{HOST}:{self.server.port}",  '
            '"secrets": {"bearer_token": "Bearer canary-f4u17"},\n'
            f'            "server_cert": {json.dumps(str(self.bundle))}}}\n  }},\n  "extra": [1.50, 2e3, null]\n}}\n'
        )
        self.json.write_text(self.source_text)
        self.outbox = outbox or root / "outbox"
        self.port = free_port()
        self.config = root / "cw.toml"
        self.config.write_text(
            f'[watch]\nconnections = {_toml_list([root / "conns"])}\n'
            f'[verify]\ntimeout = "2s"\ntrusted_roots = "{root / "roots"}"\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.port}"\n'
            f'[state]\ndir = "{root / "state"}"\n'
            f'[regenerate]\nenabled = true\ntrusted_roots = "{root / "roots"}"\n'
            f'intermediates_dir = "{root / "inter"}"\noutbox = "{self.outbox}"\nretry_interval = "1s"\n{extra}'
        )
        self.expected_bundle = self.pki.intermediate.pem + self.pki.root.pem
        self.bundle_name = f"erp-chain-{hashlib.sha256(self.expected_bundle).hexdigest()[:12]}.pem"
        self.json_out = Path(output_json_path(str(self.outbox), str(self.json)))
        self.labels = {"file": str(self.json), "connection": "erp"}
        self.inputs = {p: p.read_bytes() for p in (self.json, self.bundle, root / "roots" / "root.pem")}

    def close(self) -> None:
        self.server.stop()

    def assert_sources_untouched(self) -> None:
        for path, data in self.inputs.items():
            assert path.read_bytes() == data, f"{path} was modified"

    def outputs(self) -> tuple[dict[str, bytes], list[str]]:
        """(name -> bytes of every output file, names of temp leftovers) in the outbox."""
        outputs: dict[str, bytes] = {}
        leftovers: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.outbox):
                if TEMP.match(name):
                    leftovers.append(name)
                elif name != "filler":
                    outputs[name] = (self.outbox / name).read_bytes()
        return outputs, leftovers

    def assert_outputs_complete(self, not_before: datetime) -> dict[str, bytes]:
        """Every output is whole: the bundle matches its content-hash name and parses fully, the JSON
        is exactly the expected rewrite and points at a bundle that exists."""
        outputs, _ = self.outputs()
        for name, data in outputs.items():
            if name.endswith(".pem"):
                match = re.fullmatch(r"erp-chain-([0-9a-f]{12})\.pem", name)
                assert match and hashlib.sha256(data).hexdigest()[:12] == match.group(1), name
                assert data == self.expected_bundle, f"{name}: not the expected bundle"
                reading = read_bundle_bytes(data, name)
                assert reading.problems == () and len(reading.certificates()) == 2, name
            elif name == self.json_out.name:
                self.assert_expected_rewrite(data, not_before)
                assert self.bundle_name in outputs, "the JSON names a bundle that is not in the outbox"
            elif name == self.json_out.name + ".source":
                assert data == (str(self.json) + "\n").encode(), name
            else:
                raise AssertionError(f"unexpected file in the outbox: {name}")
        return outputs

    def assert_expected_rewrite(self, data: bytes, not_before: datetime) -> None:
        document = json.loads(data)
        apply_at = document["apply_at"]
        moment = datetime.fromisoformat(apply_at)
        assert apply_at.endswith("+01:00") and len(apply_at) == len(SOURCE_APPLY_AT), apply_at
        now = datetime.now(moment.tzinfo)
        assert not_before + timedelta(hours=2) - timedelta(seconds=2) <= moment <= now + timedelta(hours=2, seconds=2)
        new_bundle = json.dumps(str(self.outbox / self.bundle_name))
        expected = self.source_text.replace(json.dumps(str(self.bundle)), new_bundle)
        expected = expected.replace(json.dumps(SOURCE_APPLY_AT), json.dumps(apply_at))
        assert data.decode() == expected


@pytest.fixture
def regen_site(tmp_path):
    sites: list[RegenSite] = []

    def make(**kwargs: object) -> RegenSite:
        site = RegenSite(tmp_path, **kwargs)  # type: ignore[arg-type]
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


# --------------------------------------------------------------------------------------------
# The outbox cannot be written: disk full, read-only


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[bool]:
    """A small tmpfs mounted on `path` (yields True), or yields False when mounting is not allowed here."""
    path.mkdir(exist_ok=True)
    mount = ("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    mounted = os.geteuid() == 0 and _run(*mount).returncode == 0
    try:
        yield mounted
    finally:
        if mounted and _run("umount", str(path)).returncode != 0:
            _run("umount", "-l", str(path))


class OutboxFault:
    """Make the outbox unwritable for real, then writable again."""

    def __init__(self, kind: str, outbox: Path, mounted: bool) -> None:
        self.kind = kind
        self.outbox = outbox
        self.mounted = mounted

    def apply(self) -> None:
        if self.kind == "disk_full":
            with open(self.outbox / "filler", "wb", buffering=0) as handle:
                block = b"\0" * 4096
                with pytest.raises(OSError) as info:
                    while True:
                        handle.write(block)
                assert info.value.errno == errno.ENOSPC
        elif self.mounted:
            assert _run("mount", "-o", "remount,ro", str(self.outbox)).returncode == 0
        else:
            os.chmod(self.outbox, 0o555)
        with pytest.raises(OSError):  # really unwritable now, even for this (maybe root) test process
            (self.outbox / "probe-write").write_bytes(b"x" * 8192)
        if self.kind == "disk_full":
            (self.outbox / "probe-write").unlink()  # a full disk still had room for its name

    def restore(self) -> None:
        if self.kind == "disk_full":
            (self.outbox / "filler").unlink()
        elif self.mounted:
            assert _run("mount", "-o", "remount,rw", str(self.outbox)).returncode == 0
        else:
            os.chmod(self.outbox, 0o755)


@pytest.mark.parametrize("kind", ["disk_full", "read_only"])
def test_outbox_write_failure_leaves_nothing_and_is_retried(regen_site, tmp_path, kind):
    """Disk full / read-only outbox: no partial or temp file, outbox errors and failed regenerations
    counted, fix_failed shown, retried while broken; once writable again the retry writes it all."""
    outbox = tmp_path / "outbox"
    with _tmpfs(outbox, "64k") as mounted:
        if not mounted and (kind == "disk_full" or os.geteuid() == 0):
            pytest.skip(
                "mounting a tmpfs needs root with CAP_SYS_ADMIN: a full disk cannot be made otherwise, "
                "and root ignores a 0555 folder"
            )
        site = regen_site(outbox=outbox)
        fault = OutboxFault(kind, outbox, mounted)
        fault.apply()
        restored = False
        started = datetime.now().astimezone()
        try:
            with DaemonProcess(site.config) as daemon:
                daemon.wait_for(
                    lambda: (daemon.value("chainwarden_source_errors_total", reason="outbox") or 0) >= 1,
                    "an outbox error counted",
                )
                daemon.wait_value(
                    "chainwarden_chain_problem", 1.0, code="fix_failed", severity="error", **site.labels
                )
                failed = daemon.value("chainwarden_bundle_regenerations_total", outcome="failed", **site.labels)
                assert failed is not None and failed >= 1
                # Retried while still broken (retry_interval = 1s), and never a partial or temp file.
                daemon.wait_for(
                    lambda: (daemon.value("chainwarden_bundle_regenerations_total", outcome="failed", **site.labels)
                             or 0) > failed,
                    "a retry while the outbox is still unwritable",
                )
                daemon.wait_for(lambda: site.outputs() == ({}, []), "an outbox without any output or temp file")
                reason = {"disk_full": "No space left on device", "read_only": "Read-only file system"}[kind]
                assert f"cannot write: {reason if mounted else 'Permission denied'}; will retry" in daemon.log
                fault.restore()
                restored = True
                daemon.wait_value("chainwarden_bundle_regenerations_total", 1.0, outcome="written", **site.labels)
                outputs = site.assert_outputs_complete(started)
                assert {site.bundle_name, site.json_out.name} <= set(outputs)
                daemon.wait_for(
                    lambda: daemon.value("chainwarden_chain_problem", code="fix_failed", **site.labels) is None,
                    "fix_failed cleared once written",
                )
                assert site.outputs()[1] == []
                assert "Traceback" not in daemon.log
            site.assert_sources_untouched()
        finally:
            if not restored:
                with contextlib.suppress(OSError, AssertionError):
                    fault.restore()


# --------------------------------------------------------------------------------------------
# SIGKILL during a regeneration


KILLS = 50


def _kill_when_writing(daemon: DaemonProcess, outbox: Path, deadline: float, extra: float) -> bool:
    """SIGKILL the daemon `extra` seconds after a temp file shows up in the outbox (or at `deadline`).

    Polls the folder in a tight loop: the write being interrupted lasts only milliseconds."""
    seen = False
    while time.monotonic() < deadline and daemon.proc.poll() is None:
        try:
            names = os.listdir(outbox)
        except FileNotFoundError:
            names = []
        if any(TEMP.match(name) for name in names):
            seen = True
            until = time.monotonic() + extra
            while time.monotonic() < until:
                pass
            break
    daemon.proc.kill()
    return seen


def test_sigkill_during_regeneration(regen_site):
    """50 SIGKILLs at varied moments of regenerations: the outbox only ever holds whole bundles and
    whole, exact JSON (temp files aside), the sources never change; stale temp files go at start-up."""
    site = regen_site()
    site.outbox.mkdir()
    rng = random.Random(20261203)
    stats = {"nothing": 0, "bundle_only": 0, "complete": 0, "temp_seen": 0, "leftovers": 0}
    write_time = 1.5  # seconds from start to the first write; learnt from the runs that watch for it
    for run in range(KILLS):
        started = datetime.now().astimezone()
        launched = time.monotonic()
        daemon = DaemonProcess(site.config)
        try:
            if run == 0:  # no cached chain yet: wait for the probe and the first write, then kill
                daemon.wait_for(site.json_out.exists, "the first resubmission JSON")
                daemon.proc.kill()
            elif run % 2:
                if _kill_when_writing(daemon, site.outbox, launched + 10, rng.uniform(0, 0.003)):
                    stats["temp_seen"] += 1
                    write_time = max(write_time, time.monotonic() - launched)
            else:
                time.sleep(rng.uniform(0.05, write_time * 1.2))  # the delay *is* the scenario
                daemon.proc.kill()
            daemon.proc.wait(timeout=10)
        finally:
            daemon.stop()
        outputs = site.assert_outputs_complete(started)
        site.assert_sources_untouched()
        leftovers = site.outputs()[1]
        stats["leftovers"] = len(leftovers)
        if site.json_out.name in outputs:
            stats["complete"] += 1
            # Make the next run write again: the JSON always, the bundle every other time.
            site.json_out.unlink()
            Path(str(site.json_out) + ".source").unlink(missing_ok=True)
            if rng.random() < 0.5:
                (site.outbox / site.bundle_name).unlink()
        elif outputs:
            stats["bundle_only"] += 1
        else:
            stats["nothing"] += 1
    print(f"{KILLS} kills: {stats}")
    assert stats["complete"] >= 1 and stats["nothing"] + stats["bundle_only"] >= 1, stats

    # Start-up removes temp files an interrupted write left (old ones only: a young one may be a
    # `fix --write` in progress).
    old = site.outbox / f".{site.bundle_name}.abcd1234.tmp"
    old.write_bytes(site.expected_bundle[:100])
    young = site.outbox / f".{site.json_out.name}.efgh5678.tmp"
    young.write_bytes(b'{"half')
    hour_ago = time.time() - 3600
    for name in site.outputs()[1]:
        if name != young.name:
            os.utime(site.outbox / name, (hour_ago, hour_ago))
    with DaemonProcess(site.config) as daemon:
        daemon.wait_for(
            lambda: daemon.value("chainwarden_bundle_regenerations_total", outcome="written", **site.labels) == 1.0
            or daemon.value("chainwarden_bundle_regenerations_total", outcome="unchanged", **site.labels),
            "a regeneration after the restart",
        )
        assert site.outputs()[1] == [young.name], stats
        assert "temp file(s) left by an interrupted write" in daemon.log
    site.assert_outputs_complete(datetime.now().astimezone() - timedelta(minutes=5))
    site.assert_sources_untouched()


# --------------------------------------------------------------------------------------------
# Misbehaving endpoints


def test_misbehaving_endpoints(tmp_path):
    """Endpoints that never answer, reset, or answer garbage: probe_success 0 and endpoint_unreachable
    for each, within the probe timeout; the healthy connection is still verified and followed."""
    pki = pkigen.three_tier(HOST, label="Faulty Endpoints")
    good_bundle = pkigen.pem_bundle(pki.intermediate, pki.root)
    servers = {
        "good": tls_server(pki.leaf, pki.intermediate),
        "blackhole": BlackholeServer(),
        "reset": ResetServer(),
        "garbage": GarbageServer(),
    }
    try:
        (tmp_path / "conns").mkdir()
        (tmp_path / "pki").mkdir()
        connections = {}
        for name, server in servers.items():
            bundle = tmp_path / "pki" / f"{name}.pem"
            bundle.write_bytes(good_bundle)
            connections[name] = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
        source = tmp_path / "conns" / "prod.json"
        source.write_text(json.dumps({"external_connections": connections}, indent=2))
        config = tmp_path / "cw.toml"
        port = free_port()
        config.write_text(
            f'[watch]\nconnections = ["{tmp_path / "conns"}"]\n[verify]\ntimeout = "1s"\n'
            f'[metrics]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{tmp_path / "state"}"\n'
        )
        with DaemonProcess(config) as daemon:
            for name in ("blackhole", "reset", "garbage"):
                labels = {"file": str(source), "connection": name}
                daemon.wait_value("chainwarden_endpoint_probe_success", 0.0, **labels)
                daemon.wait_value("chainwarden_chain_problem", 1.0, code="endpoint_unreachable", **labels)
                duration = daemon.value("chainwarden_endpoint_probe_duration_seconds", **labels)
                assert duration is not None and duration < 3.0, (name, duration)  # bounded by the 1s timeout
            good = {"file": str(source), "connection": "good"}
            daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, **good)
            daemon.wait_value("chainwarden_chain_complete", 1.0, **good)
            assert servers["blackhole"].connections >= 1 and servers["reset"].connections >= 1
            assert servers["garbage"].connections >= 1
            # Still verifying: a change to the healthy connection's bundle is followed.
            (tmp_path / "pki" / "good.pem").write_bytes(pki.root.pem)
            daemon.wait_value("chainwarden_chain_complete", 0.0, **good)
            assert daemon.proc.poll() is None
            assert "Traceback" not in daemon.log
    finally:
        for server in servers.values():
            server.stop()


# --------------------------------------------------------------------------------------------
# AIA faults through the daemon's regeneration


class AIAFaultSite:
    """One connection per AIA URL; each endpoint presents only its leaf, each bundle only the root."""

    def __init__(self, root: Path, urls: dict[str, str], *, allow_private: bool) -> None:
        self.root_ca = pkigen.make_root("AIA Fault Root")
        self.inter = pkigen.make_intermediate("AIA Fault Issuing", self.root_ca)
        self.servers: list[PythonTLSServer] = []
        (root / "conns").mkdir()
        (root / "pki").mkdir()
        (root / "roots").mkdir()
        (root / "roots" / "root.pem").write_bytes(self.root_ca.pem)
        connections = {}
        try:
            for name, url in urls.items():
                leaf = pkigen.make_leaf([HOST], self.inter, aia_url=url)
                server = PythonTLSServer.from_issued(leaf)
                self.servers.append(server)
                bundle = root / "pki" / f"{name}.pem"
                bundle.write_bytes(self.root_ca.pem)
                connections[name] = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
        except BaseException:
            self.close()
            raise
        self.json = root / "conns" / "prod.json"
        self.json.write_text(json.dumps({"external_connections": connections}, indent=2))
        self.outbox = root / "outbox"
        self.config = root / "cw.toml"
        self.config.write_text(
            f'[watch]\nconnections = ["{root / "conns"}"]\n'
            f'[verify]\ntimeout = "2s"\ntrusted_roots = "{root / "roots"}"\n'
            f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n[state]\ndir = "{root / "state"}"\n'
            f'[regenerate]\nenabled = true\ntrusted_roots = "{root / "roots"}"\noutbox = "{self.outbox}"\n'
            f'allow_private_aia = {"true" if allow_private else "false"}\naia_timeout = "1s"\naia_max_bytes = 65536\n'
        )

    def labels(self, name: str) -> dict[str, str]:
        return {"file": str(self.json), "connection": name}

    def wait_failed(self, daemon: DaemonProcess, name: str) -> None:
        labels = self.labels(name)
        daemon.wait_value("chainwarden_chain_problem", 1.0, code="fix_failed", severity="error", **labels)
        failed = daemon.value("chainwarden_bundle_regenerations_total", outcome="failed", **labels)
        assert failed is not None and failed >= 1

    def assert_nothing_written(self) -> None:
        assert not self.outbox.exists() or not any(self.outbox.iterdir()), list(self.outbox.iterdir())

    def close(self) -> None:
        for server in self.servers:
            server.stop()


def test_aia_faults_during_regeneration(tmp_path):
    """A slow AIA server, a huge answer and a redirect loop: fix_failed with the reason logged, failed
    regenerations counted, nothing written, and the daemon still follows changes."""
    with AIAServer() as aia:
        routes = {"slow": "/slow.der", "huge": "/huge.der", "loop": "/loop-a.der"}
        site = AIAFaultSite(tmp_path, {n: aia.url(p) for n, p in routes.items()}, allow_private=True)
        try:
            aia.set("/slow.der", Slow(site.inter.der, seconds=20))
            aia.set("/huge.der", Oversized(8 * 1024 * 1024, declare_length=False))
            aia.redirect_loop("/loop-a.der", "/loop-b.der")
            with DaemonProcess(site.config) as daemon:
                for name in routes:
                    site.wait_failed(daemon, name)
                daemon.wait_for(lambda: "redirect loop" in daemon.log, "the redirect loop logged")
                assert "timed out after 1 s" in daemon.log
                assert "larger than 65536 bytes" in daemon.log
                hits = aia.hits
                assert hits["/slow.der"] >= 1 and hits["/huge.der"] >= 1
                assert hits["/loop-a.der"] >= 1 and hits["/loop-b.der"] >= 1
                site.assert_nothing_written()
                # Alive and not stuck: a repaired bundle is noticed.
                (tmp_path / "pki" / "huge.pem").write_bytes(pkigen.pem_bundle(site.inter, site.root_ca))
                daemon.wait_value("chainwarden_chain_complete", 1.0, **site.labels("huge"))
                assert "Traceback" not in daemon.log
            site.assert_nothing_written()
        finally:
            site.close()


def test_aia_private_address_refused(tmp_path):
    """With allow_private_aia = false, AIA URLs naming loopback (by host name), private and link-local
    addresses are refused before any connection: fix_failed, nothing written, the AIA server never hit."""
    with AIAServer() as aia:
        urls = {
            "loopback": f"http://localhost:{aia.port}/issuing.der",  # would serve the real intermediate
            "private": "http://10.255.255.1/issuing.der",
            "metadata": "http://169.254.169.254/latest/meta-data/issuing.der",
        }
        site = AIAFaultSite(tmp_path, urls, allow_private=False)
        try:
            aia.set("/issuing.der", (site.inter.der, "application/pkix-cert"))
            with DaemonProcess(site.config) as daemon:
                for name in urls:
                    site.wait_failed(daemon, name)
                daemon.wait_for(lambda: daemon.log.count("allow_private_aia") >= 3, "each refusal logged")
                assert "a loopback address" in daemon.log and "a private address" in daemon.log
                assert "a link-local address" in daemon.log
                assert aia.hits["/issuing.der"] == 0
                site.assert_nothing_written()
                assert daemon.proc.poll() is None
        finally:
            site.close()


def test_regenerate_retry_interval_is_configurable():
    """`[regenerate] retry_interval` (the outbox retry above) defaults to 60 s and is bounded."""
    from chainwarden.config import Config, ConfigError, config_from_mapping

    assert Config().regenerate_retry_interval == 60.0
    assert config_from_mapping({"regenerate": {"retry_interval": "5m"}}, "t.toml").regenerate_retry_interval == 300.0
    with pytest.raises(ConfigError, match="regenerate.retry_interval"):
        config_from_mapping({"regenerate": {"retry_interval": "100ms"}}, "t.toml")


@pytest.fixture(autouse=True)
def _no_leaked_mounts(tmp_path):
    yield
    if shutil.which("findmnt"):
        leaked = _run("findmnt", "-rn", "-o", "TARGET").stdout
        assert str(tmp_path) not in leaked, "a test mount was left behind"
