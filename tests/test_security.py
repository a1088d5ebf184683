"""Security checks of issue 7, against the real CLI and the real `chainwarden run` process.

| check | test |
|---|---|
| canary `secrets` values and `client_cert` keys never in `check`/`fix`/`inspect` output | |
|   (CLI, text and JSON) | `test_canaries_never_in_cli_output` |
| ... never in the daemon's log (debug level), `/metrics` or state | `test_canaries_never_in_daemon_log_or_metrics` |
| a root offered by the endpoint never enters a bundle: CLI | `test_root_offered_by_endpoint_never_bundled_by_fix` |
| ... by the endpoint or by AIA: daemon | `test_untrusted_roots_never_bundled_by_daemon` |
| ... by AIA: CLI | `test_fix.py::test_root_offered_by_aia_is_never_trusted` |
| `/metrics` on loopback unless configured otherwise | `test_metrics_listens_on_loopback_only` |
| optional TLS for `/metrics` | `test_metrics_tls` |
| optional basic auth for `/metrics` | `test_metrics_basic_auth` |
| `systemd-analyze security --offline=true` exposure <= 2.0 | `test_systemd_unit.py` (where systemd-analyze exists) |
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from chainwarden import pkigen
from chainwarden.config import DEFAULT_LISTEN, Config, load_config
from chainwarden.pkigen import PrivateKey
from daemonproc import REPO, DaemonProcess, free_port, parse_metrics
from servers import AIAServer, PythonTLSServer

pytestmark = pytest.mark.slow
HOST = "localhost"


# --------------------------------------------------------------------------------------------
# Canaries


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _key_needles(key: PrivateKey, pem: bytes) -> list[bytes]:
    """What would betray a private key: each line of its PEM body as written, stretches of the joined
    base64 (any re-wrapping), decoded DER bytes raw and as hex, and its private number."""
    lines = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    body = "".join(lines)
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    middle = der[len(der) // 2 : len(der) // 2 + 16]
    needles = [line.encode() for line in lines if len(line) >= 24]
    needles += [body[60:84].encode(), body[len(body) // 2 : len(body) // 2 + 24].encode()]
    needles += [middle, middle.hex().encode(), middle.hex().upper().encode(), middle.hex(":").encode()]
    number = key.private_numbers().d if isinstance(key, rsa.RSAPrivateKey) else key.private_numbers().private_value
    needles += [str(number)[:40].encode(), format(number, "x")[:40].encode()]
    return needles


class CanarySite:
    """A connection JSON full of canaries: bearer and dotted-key secrets, a client_cert keycertchain,
    a trust bundle with a private key pasted into it, and a keycertchain with two keys, one mangled.
    erp and crm need a fix (their bundles lack the intermediate), so `fix` really plans and writes."""

    def __init__(self, root: Path, *, extra_config: str = "") -> None:
        self.root = root
        self.pki = pkigen.three_tier(HOST, label="Canary")
        self.server = PythonTLSServer.from_issued(self.pki.leaf)  # the leaf only
        for name in ("roots", "inter", "pki", "conns", "keys"):
            (root / name).mkdir()
        (root / "roots" / "root.pem").write_bytes(self.pki.root.pem)
        (root / "inter" / "issuing.pem").write_bytes(self.pki.intermediate.pem)
        client_ca = pkigen.make_root("Canary Client CA")
        # EC leaf keys are always fresh (RSA ones may come from pkigen's pool, shared with other certificates).
        client = pkigen.make_leaf(["client-one"], client_ca, kind="ec", server_auth=False, client_auth=True)
        mangled = pkigen.make_leaf(["client-two"], client_ca, kind="ec", server_auth=False, client_auth=True)
        pasted = pkigen.new_key(fresh=True)  # an RSA key pasted into a trust bundle by mistake
        client_key_pem = client.key_pem()
        self.client_cert = root / "keys" / "client.pem"
        self.client_cert.write_bytes(client_key_pem + client.pem + client_ca.pem)
        lines = mangled.key_pem().decode().splitlines(keepends=True)
        lines[2] = lines[2][:10] + "*?" + lines[2][12:]  # a body line no decoder accepts
        mangled_key_pem = "".join(lines).encode()
        self.mangled_cert = root / "keys" / "partner.pem"
        # Two keys (one of them mangled): an inconsistent keycertchain, so its error path is taken too.
        self.mangled_cert.write_bytes(mangled_key_pem + client_key_pem + mangled.pem + client_ca.pem)
        self.erp_bundle = root / "pki" / "erp-chain.pem"
        self.erp_bundle.write_bytes(self.pki.root.pem)
        self.crm_bundle = root / "pki" / "crm-chain.pem"
        pasted_pem = _pem_key(pasted)
        self.crm_bundle.write_bytes(self.pki.root.pem + pasted_pem)
        self.partner_bundle = root / "pki" / "partner-chain.pem"
        self.partner_bundle.write_bytes(pkigen.pem_bundle(self.pki.intermediate, self.pki.root))
        self.strings = {
            "bearer": f"Bearer cw-canary-{secrets.token_hex(12)}",
            "dotted": f"cw-canary-{secrets.token_hex(12)}",
            "password": f"cw-canary-{secrets.token_hex(12)}",
            "api": f"cw-canary-{secrets.token_hex(12)}",
        }
        baseurl = f"https://{HOST}:{self.server.port}"
        document = {
            "apply_at": "2026-01-01T00:00:00Z",
            "external_connections": {
                "erp": {
                    "baseurl": baseurl,
                    "secrets": {
                        "bearer_token": self.strings["bearer"],
                        "oauth.client.secret": self.strings["dotted"],
                        "client_cert": str(self.client_cert),
                    },
                    "server_cert": str(self.erp_bundle),
                },
                "crm": {
                    "baseurl": baseurl,
                    "secrets": {"password": self.strings["password"]},
                    "server_cert": str(self.crm_bundle),
                },
                "partner": {
                    "baseurl": baseurl,
                    "secrets": {"api.key.v2": self.strings["api"], "client_cert": str(self.mangled_cert)},
                    "server_cert": str(self.partner_bundle),
                },
            },
        }
        self.json = root / "conns" / "prod.json"
        self.json.write_text(json.dumps(document, indent=2))
        os.chmod(self.json, 0o600)
        self.outbox = root / "outbox"
        self.port = free_port()
        self.config = root / "cw.toml"
        self.config.write_text(
            f'[watch]\nconnections = ["{root / "conns"}"]\n'
            f'[verify]\ntimeout = "2s"\ntrusted_roots = "{root / "roots"}"\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.port}"\n[state]\ndir = "{root / "state"}"\n'
            f'[regenerate]\ntrusted_roots = "{root / "roots"}"\nintermediates_dir = "{root / "inter"}"\n'
            f'outbox = "{self.outbox}"\n{extra_config}'
        )
        self.needles: dict[str, bytes] = {name: value.encode() for name, value in self.strings.items()}
        keys = (("client_key", client.key, client_key_pem), ("pasted_key", pasted, pasted_pem),
                ("mangled_key", mangled.key, mangled_key_pem))
        for label, key, pem in keys:
            for index, needle in enumerate(_key_needles(key, pem)):
                self.needles[f"{label}#{index}"] = needle

    def leaks(self, haystack: bytes) -> list[str]:
        return [name for name, needle in self.needles.items() if needle in haystack]

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def canary_site(tmp_path):
    sites: list[CanarySite] = []

    def make(**kwargs: str) -> CanarySite:
        site = CanarySite(tmp_path, **kwargs)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chainwarden", *args], capture_output=True, timeout=120, cwd=REPO, check=False
    )


def _outbox_files_except_resubmissions(outbox: Path) -> dict[str, bytes]:
    """Every outbox file but the resubmission JSON itself (it IS the connection file, secrets and all)."""
    return {p.name: p.read_bytes() for p in outbox.iterdir() if not p.name.endswith(".resubmit.json")}


def test_canaries_never_in_cli_output(canary_site):
    """check, fix (dry run and --write) and inspect, as text and JSON, on stdout and stderr: no secret
    value, no byte of a client or pasted private key; the written bundles carry no key."""
    site = canary_site()
    config = ["--config", str(site.config)]
    runs = {}
    for fmt in ("text", "json"):
        runs[f"check {fmt}"] = _cli("check", str(site.json), *config, "--format", fmt)
        runs[f"check offline {fmt}"] = _cli("check", str(site.json), *config, "--offline", "--format", fmt)
        runs[f"fix {fmt}"] = _cli("fix", str(site.json), *config, "--format", fmt)
        runs[f"fix --write {fmt}"] = _cli("fix", str(site.json), *config, "--write", "--format", fmt)
        for path in (site.client_cert, site.mangled_cert, site.crm_bundle):
            runs[f"inspect {path.name} {fmt}"] = _cli("inspect", str(path), "--format", fmt)
        runs[f"check --bundle {fmt}"] = _cli("check", "--bundle", str(site.crm_bundle), "--format", fmt)
    for name, proc in runs.items():
        assert proc.returncode in (0, 1, 2), (name, proc.stderr.decode(errors="replace"))
        assert not site.leaks(proc.stdout + proc.stderr), (name, site.leaks(proc.stdout + proc.stderr))
    # The runs did see what they must not show: a key was found and counted, the fix was planned and written.
    check = json.loads(runs["check json"].stdout)
    codes = {(r["connection"], p["code"]) for r in check["results"] for p in r["problems"]}
    assert ("crm", "private_key_in_bundle") in codes and ("partner", "client_cert_invalid") in codes, codes
    plan = json.loads(runs["fix json"].stdout)["files"][0]
    # The first dry run showed the diff, masked (by the JSON run the outbox holds the plan: no diff then).
    assert set(plan["connections"]) == {"erp", "crm"} and "<redacted>" in runs["fix text"].stdout.decode()
    assert "written" in runs["fix --write text"].stdout.decode()
    written = _outbox_files_except_resubmissions(site.outbox)
    assert [n for n in written if n.endswith(".pem")], written
    for name, data in written.items():
        assert b"PRIVATE KEY" not in data and not site.leaks(data), name
    # Positive controls: the needles do find the keys where they are, and the resubmission JSON is
    # the connection file, so the secrets are in it.
    inputs = site.client_cert.read_bytes() + site.crm_bundle.read_bytes() + site.mangled_cert.read_bytes()
    assert {n.split("#")[0] for n in site.leaks(inputs)} == {"client_key", "pasted_key", "mangled_key"}
    (resubmission,) = site.outbox.glob("*.resubmit.json")
    assert set(site.leaks(resubmission.read_bytes())) >= {"bearer", "dotted", "password", "api"}


def test_canaries_never_in_daemon_log_or_metrics(canary_site):
    """The daemon at debug level, regenerating, reloading and re-reading: no canary in any log line,
    in /metrics, in its state folder or in the outbox (the resubmission JSON aside)."""
    site = canary_site(extra_config='enabled = true\n[log]\nlevel = "debug"\n')
    with DaemonProcess(site.config) as daemon:
        for name in ("erp", "crm"):
            daemon.wait_value(
                "chainwarden_bundle_regenerations_total", 1.0, file=str(site.json), connection=name, outcome="written"
            )
        daemon.wait_value(
            "chainwarden_chain_problem", 1.0, file=str(site.json), connection="partner",
            code="client_cert_invalid", severity="error",
        )
        scrapes = [daemon.scrape()]
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda: "configuration reloaded" in daemon.log, "the reload")
        # A content change of the connection JSON and of the keycertchain: both re-read and re-logged.
        site.json.write_text(site.json.read_text() + "\n")
        site.client_cert.write_bytes(site.client_cert.read_bytes() + b"\n")
        site.crm_bundle.write_bytes(site.pki.intermediate.pem + site.crm_bundle.read_bytes())
        daemon.wait_for(
            lambda: daemon.value(
                "chainwarden_chain_problem", file=str(site.json), connection="crm", code="missing_intermediate"
            )
            is None,
            "crm re-read",
        )
        scrapes.append(daemon.scrape())
    log = daemon.log.encode()
    assert "DEBUG" in daemon.log and "private_key_in_bundle" in daemon.log  # debug level, and it saw the key
    assert not site.leaks(log), site.leaks(log)
    for text in scrapes:
        assert "chainwarden_chain_complete" in text
        assert not site.leaks(text.encode()), site.leaks(text.encode())
    for path in sorted((site.root / "state").rglob("*")):
        if path.is_file():
            assert not site.leaks(path.read_bytes()), path
    for name, data in _outbox_files_except_resubmissions(site.outbox).items():
        assert b"PRIVATE KEY" not in data and not site.leaks(data), name


# --------------------------------------------------------------------------------------------
# Roots offered by the endpoint or by AIA


def _root_in(data: bytes, root: pkigen.Issued) -> bool:
    return root.pem in data or root.der in data or root.pem.replace(b"\n", b"\r\n") in data


def test_root_offered_by_endpoint_never_bundled_by_fix(tmp_path):
    """The endpoint presents leaf, intermediate and root; neither the bundle nor the trusted store has
    the root: `fix --write` fails and writes nothing, though the root was right there."""
    pki = pkigen.three_tier(HOST, label="Offered")
    unrelated = pkigen.make_root("Unrelated Trusted Root")
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "other.pem").write_bytes(unrelated.pem)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.intermediate.pem)
    with PythonTLSServer.from_issued(pki.leaf, pki.intermediate, pki.root) as server:
        source = tmp_path / "prod.json"
        connection = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
        source.write_text(json.dumps({"external_connections": {"erp": connection}}))
        config = tmp_path / "cw.toml"
        config.write_text(
            f'[state]\ndir = "{tmp_path / "state"}"\n[verify]\ntimeout = "2s"\n'
            f'[regenerate]\ntrusted_roots = "{tmp_path / "roots"}"\noutbox = "{tmp_path / "outbox"}"\n'
        )
        fetched = _cli("fetch-chain", f"127.0.0.1:{server.port}", "--servername", HOST)
        assert fetched.returncode == 0 and _root_in(fetched.stdout, pki.root)  # it is really offered
        proc = _cli("fix", str(source), "--config", str(config), "--write", "--format", "json")
    assert proc.returncode == 2, proc.stderr
    failures = json.loads(proc.stdout)["files"][0]["failures"]
    assert failures and failures[0]["code"] == "fix_failed"
    outbox = tmp_path / "outbox"
    assert not outbox.exists() or not any(_root_in(p.read_bytes(), pki.root) for p in outbox.iterdir())
    assert not outbox.exists() or not list(outbox.glob("*.pem"))


def test_untrusted_roots_never_bundled_by_daemon(tmp_path):
    """Through the daemon's regeneration: a root presented by the endpoint (endpoint_root) and one offered
    by AIA (aia_root) are never trusted: fix_failed, nothing written. Control: once the root is put in
    the trusted store and the daemon reloaded, the same fix succeeds, with the root from the store."""
    with AIAServer() as aia:
        root = pkigen.make_root("Untrusted Offered Root")
        # Two issuing CAs: only the second names the root's AIA URL, so each case stands alone.
        plain = pkigen.make_intermediate("Untrusted Offered Issuing 1", root)
        with_aia = pkigen.make_intermediate("Untrusted Offered Issuing 2", root, aia_url=aia.url("/root.der"))
        inters = {"endpoint_root": plain, "aia_root": with_aia}
        aia.set("/root.der", (root.der, "application/pkix-cert"))
        (tmp_path / "roots").mkdir()
        (tmp_path / "roots" / "other.pem").write_bytes(pkigen.make_root("Some Other Trusted Root").pem)
        (tmp_path / "conns").mkdir()
        (tmp_path / "pki").mkdir()
        with (
            PythonTLSServer.from_issued(pkigen.make_leaf([HOST], plain), plain, root) as offers_root,
            PythonTLSServer.from_issued(pkigen.make_leaf([HOST], with_aia)) as leaf_only,
        ):
            connections = {}
            for name, server in (("endpoint_root", offers_root), ("aia_root", leaf_only)):
                bundle = tmp_path / "pki" / f"{name}.pem"
                bundle.write_bytes(inters[name].pem)  # the intermediate, but no root
                connections[name] = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
            source = tmp_path / "conns" / "prod.json"
            source.write_text(json.dumps({"external_connections": connections}, indent=2))
            outbox = tmp_path / "outbox"
            config = tmp_path / "cw.toml"
            config.write_text(
                f'[watch]\nconnections = ["{tmp_path / "conns"}"]\n[verify]\ntimeout = "2s"\n'
                f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n[state]\ndir = "{tmp_path / "state"}"\n'
                f'[regenerate]\nenabled = true\nallow_private_aia = true\naia_timeout = "2s"\n'
                f'trusted_roots = "{tmp_path / "roots"}"\noutbox = "{outbox}"\n'
            )
            with DaemonProcess(config) as daemon:
                for name in connections:
                    labels = {"file": str(source), "connection": name}
                    daemon.wait_value("chainwarden_chain_problem", 1.0, code="fix_failed", severity="error", **labels)
                    failed = daemon.value("chainwarden_bundle_regenerations_total", outcome="failed", **labels)
                    assert failed is not None and failed >= 1
                daemon.wait_for(
                    lambda: "a root was offered by AIA but is not trusted" in daemon.log, "the AIA root refused"
                )
                assert aia.hits["/root.der"] >= 1
                assert not outbox.exists() or not any(outbox.iterdir())
                # Control: the very same root, now from the trusted store, completes both.
                (tmp_path / "roots" / "trusted.pem").write_bytes(root.pem)
                daemon.signal(signal.SIGHUP)
                for name in connections:
                    daemon.wait_value(
                        "chainwarden_bundle_regenerations_total", 1.0, file=str(source), connection=name,
                        outcome="written",
                    )
            contents = sorted(b.read_bytes() for b in outbox.glob("*.pem"))
            assert contents == sorted(i.pem + root.pem for i in inters.values())


# --------------------------------------------------------------------------------------------
# The metrics endpoint


def _listening(port: int) -> list[tuple[str, str]]:
    """(address, socket inode) of every listening TCP socket on `port` in this network namespace."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            family = socket.AF_INET if width == 4 else socket.AF_INET6
            found.append((socket.inet_ntop(family, raw), fields[9]))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the one a packet out would leave from)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a route lookup only, nothing is sent
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.mark.parametrize("listen", ["default", "host_omitted"])
def test_metrics_listens_on_loopback_only(tmp_path, listen):
    """With no `[metrics] listen` (127.0.0.1:9847), or with only a port (":PORT"), the daemon's one
    listening socket is bound to 127.0.0.1, and a non-loopback address of this machine is refused."""
    assert Config().metrics_listen == DEFAULT_LISTEN == "127.0.0.1:9847"
    assert load_config(str(REPO / "config.example.toml")).listen_host_port == ("127.0.0.1", 9847)
    if listen == "default":
        port = 9847
        if _listening(port):
            pytest.skip("port 9847 (the default) is in use on this machine")
        metrics = ""
    else:
        port = free_port()
        metrics = f'[metrics]\nlisten = ":{port}"\n'
    config = tmp_path / "cw.toml"
    config.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n{metrics}')
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with open(tmp_path / "daemon.log", "wb") as log:
        argv = [sys.executable, "-m", "chainwarden", "run", "--config", str(config)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        mine: list[tuple[str, str]] = []
        while time.monotonic() < deadline and proc.poll() is None and not mine:
            mine = [s for s in _listening(port) if s[1] in _socket_inodes(proc.pid)]
            time.sleep(0.05)  # polling with a deadline
        log_text = (tmp_path / "daemon.log").read_text()
        if not mine and listen == "default" and "Address already in use" in log_text:
            pytest.skip("port 9847 (the default) was taken while the daemon started")
        assert mine, log_text
        assert [address for address, _ in mine] == ["127.0.0.1"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"chainwarden_build_info" in response.read()
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outside, port), timeout=5).close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0


def _metrics_server_pki(tmp_path: Path) -> tuple[pkigen.Issued, Path, Path]:
    ca = pkigen.make_root("Metrics CA")
    leaf = pkigen.make_leaf(["localhost", "127.0.0.1"], ca)
    cert, key = tmp_path / "metrics.crt", tmp_path / "metrics.key"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem())
    os.chmod(key, 0o600)
    return ca, cert, key


def test_metrics_tls(tmp_path):
    """With tls_cert/tls_key, /metrics is served over https (verifiable with the CA); plain http gets
    no metrics; a client that connects and never speaks TLS does not block other scrapes."""
    ca, cert, key = _metrics_server_pki(tmp_path)
    port = free_port()
    config = tmp_path / "cw.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    context = ssl.create_default_context(cadata=ca.pem.decode())

    def scrape_https() -> bytes:
        with urllib.request.urlopen(f"https://localhost:{port}/metrics", timeout=5, context=context) as response:
            return response.read()

    with DaemonProcess(config) as daemon:
        daemon.wait_for(lambda: b"chainwarden_build_info" in scrape_https(), "an https scrape")
        assert f"metrics on https://127.0.0.1:{port}/metrics" in daemon.log
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        # An idle connection (no ClientHello) must not hold up the server for everyone else.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            started = time.monotonic()
            assert b"chainwarden_build_info" in scrape_https()
            assert time.monotonic() - started < 4
        metrics = parse_metrics(scrape_https().decode())
        assert metrics[("chainwarden_config_last_reload_successful", ())] == 1.0
        assert "Traceback" not in daemon.log


def test_metrics_basic_auth(tmp_path):
    """With basic_auth_file (plain and sha256 lines, comments), /metrics answers 401 without or with wrong
    credentials and 200 with the right ones; the stored hash itself is not a password."""
    bob_hash = hashlib.sha256(b"bob-pass").hexdigest()
    users = tmp_path / "metrics.users"
    users.write_text(f"# scrapers\nalice:alice-pass\n\nbob:sha256:{bob_hash}\n")
    os.chmod(users, 0o600)
    port = free_port()
    config = tmp_path / "cw.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n[metrics]\nlisten = "127.0.0.1:{port}"\nbasic_auth_file = "{users}"\n'
    )

    def status(authorization: str | None) -> tuple[int, bytes, str | None]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        if authorization is not None:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read(), None
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("WWW-Authenticate")

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    with DaemonProcess(config) as daemon:
        daemon.wait_for(lambda: status(None)[0] == 401, "the metrics endpoint")
        code, body, challenge = status(None)
        assert challenge == 'Basic realm="chainwarden"' and b"chainwarden_" not in body
        for wrong in (
            basic("alice", "wrong"),
            basic("alice", ""),
            basic("mallory", "alice-pass"),
            basic("bob", bob_hash),
            basic("bob", f"sha256:{bob_hash}"),
            "Basic !!!not-base64",
            "Bearer alice-pass",
        ):
            code, body, _ = status(wrong)
            assert code == 401 and b"chainwarden_" not in body, wrong
        for right in (basic("alice", "alice-pass"), basic("bob", "bob-pass")):
            code, body, _ = status(right)
            assert code == 200 and b"chainwarden_build_info" in body, right
        assert "alice-pass" not in daemon.log and bob_hash not in daemon.log
