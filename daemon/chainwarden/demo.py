"""A self-contained demo: builds generated CAs, live loopback endpoints and a connection JSON, then checks them."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import pkigen
from .pkigen import Issued


class LoopbackTLSEndpoint:
    """A TLS server on 127.0.0.1 that presents `chain` (leaf first) and closes after the handshake."""

    def __init__(self, leaf: Issued, chain: list[Issued], workdir: Path, name: str) -> None:
        cert_file = workdir / f"{name}-served-chain.pem"
        key_file = workdir / f"{name}-served-key.pem"
        cert_file.write_bytes(pkigen.pem_bundle(leaf, *chain))
        key_file.write_bytes(leaf.key_pem())
        key_file.chmod(0o600)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        key_file.unlink()  # loaded; the demo leaves no private key on disk
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"demo-tls-{name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self._context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)


@dataclass
class DemoSite:
    directory: Path
    connections_json: Path
    config: Path
    story: dict[str, str]


def build_demo(directory: Path, stack: ExitStack, *, now: datetime | None = None) -> DemoSite:
    """Write the example into `directory` and start its endpoints (closed when `stack` closes)."""
    now = now or datetime.now(UTC)
    bundles = directory / "pki"
    roots = directory / "trusted-roots"
    served = directory / ".served"
    for d in (bundles, roots, served):
        d.mkdir(parents=True, exist_ok=True)

    start = now - timedelta(days=400)
    root = pkigen.make_root(
        "Acme Corp Root CA G2", org="Acme Corp", not_before=start, not_after=now + timedelta(days=3650)
    )
    issuing = pkigen.make_intermediate(
        "Acme Corp TLS Issuing CA 1", root, org="Acme Corp", not_before=start, not_after=now + timedelta(days=1000)
    )
    old_issuing = pkigen.make_intermediate(
        "Acme Corp TLS Issuing CA 1",
        root,
        key=issuing.key,
        org="Acme Corp",
        not_before=start - timedelta(days=900),
        not_after=now - timedelta(days=20),
    )
    ec_root = pkigen.make_root("Partner Trust ECC Root", kind="ec", org="Partner Trust", not_before=start)
    ec_issuing = pkigen.make_intermediate(
        "Partner Trust ECC DV CA", ec_root, kind="ec", org="Partner Trust", not_before=start
    )
    (roots / "acme-root.pem").write_bytes(root.pem)
    (roots / "partner-root.pem").write_bytes(ec_root.pem)

    def leaf(issuer: Issued, days_left: int = 300, kind: pkigen.KeyKind = "rsa") -> Issued:
        return pkigen.make_leaf(
            ["localhost", "127.0.0.1"],
            issuer,
            kind=kind,
            not_before=now - timedelta(days=30),
            not_after=now + timedelta(days=days_left),
        )

    # name -> (leaf, chain the endpoint presents, bundle bytes, what the demo expects to find)
    scenarios: dict[str, tuple[Issued, list[Issued], bytes, str]] = {
        "material_api": (
            leaf(issuing),
            [issuing],
            pkigen.pem_bundle(issuing, root),
            "healthy: intermediate + root, in the documented order",
        ),
        "pricing_api": (
            leaf(issuing),
            [issuing],
            pkigen.pem_bundle(root),
            "the bundle has only the root: the intermediate the endpoint sends is missing",
        ),
        "supplier_portal": (
            leaf(ec_issuing, kind="ec"),
            [ec_issuing],
            pkigen.pem_bundle(ec_issuing),
            "the bundle has only the intermediate: the root is missing (it is in the trusted root store)",
        ),
        "shipping_api": (
            leaf(issuing, days_left=12),
            [issuing],
            pkigen.pem_bundle(root, old_issuing, issuing),
            "complete, but the leaf expires within two weeks, an expired copy of the intermediate lingers "
            "and the order is not the documented one",
        ),
        "hr_api": (
            leaf(issuing),
            [issuing],
            b"\xef\xbb\xbf" + pkigen.pem_bundle(issuing, root).replace(b"\n", b"\r\n"),
            "a Windows editor saved it with a BOM and CRLF: OpenSSL would not see the first certificate",
        ),
        "vault_api": (
            leaf(issuing),
            [issuing],
            pkigen.pem_bundle(issuing, root) + issuing.key_pem(),
            "someone pasted a private key into the trust bundle",
        ),
    }

    connections: dict[str, object] = {}
    for name, (leaf_cert, presented, bundle_bytes, _) in scenarios.items():
        endpoint = LoopbackTLSEndpoint(leaf_cert, presented, served, name)
        stack.callback(endpoint.close)
        bundle_file = bundles / f"{name.replace('_', '-')}-chain.pem"
        bundle_file.write_bytes(bundle_bytes)
        connections[name] = {
            "baseurl": f"https://localhost:{endpoint.port}",
            "url_fragments": {"status": "/api/status"},
            "secrets": {"bearer_token": "Bearer demo-not-a-real-token"},
            "server_cert": f"pki/{bundle_file.name}",
        }
    document = {
        "blob_sas_url": "https://example.invalid/sas-placeholder",
        "public_key_for_encrypting_custom_secrets": "keys/ptc-public.pem",
        "apply_at": (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "external_connections": connections,
    }
    connections_json = directory / "prodConnections.json"
    connections_json.write_text(json.dumps(document, indent=2) + "\n")
    config = directory / "chainwarden.toml"
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        metrics_port = probe_port.getsockname()[1]
    config.write_text(
        "[watch]\n"
        f'connections = ["{connections_json}"]\n\n'
        "[verify]\n"
        f'trusted_roots = "{roots}"\n'
        'timeout = "5s"\n\n'
        "[metrics]\n"
        f'listen = "127.0.0.1:{metrics_port}"\n\n'
        "[state]\n"
        f'dir = "{directory / "state"}"\n\n'
        "[regenerate]\n"
        f'trusted_roots = "{roots}"\n'
        f'outbox = "{directory / "outbox"}"\n'
        "allow_private_aia = true\n"
    )
    return DemoSite(directory, connections_json, config, {n: s[3] for n, s in scenarios.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chainwarden.demo", description=__doc__)
    parser.add_argument("--dir", help="build the example here and keep it (default: a temporary folder)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--no-daemon", action="store_true", help="only run check, not the daemon")
    args = parser.parse_args(argv)
    from .cli import main as cli_main

    with ExitStack() as stack:
        if args.dir:
            directory = Path(args.dir).resolve()
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chainwarden-demo-")))
        site = build_demo(directory, stack)
        print(f"demo: built {site.connections_json} with {len(site.story)} connections, each with a live")
        print("      TLS endpoint on 127.0.0.1; bundles under pki/. What each one is meant to show:")
        for name, story in site.story.items():
            print(f"        {name:<16} {story}")
        print(f"\n$ chainwarden check {site.connections_json.name} --config {site.config.name}\n")
        sys.stdout.flush()
        code = cli_main(["check", str(site.connections_json), "--config", str(site.config), "--format", args.format])
        print(f"\ndemo: check exited {code} (0 ok, 1 warnings only, 2 errors, 3 could not run).")
        print("      Every problem above is named by a stable code; `--format json` gives the same for tools.")
        if not args.no_daemon:
            return run_daemon_demo(site, kept=bool(args.dir))
    return 0


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _complete(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["connection"]: value
        for (name, labels), value in metrics.items()
        if name == "chainwarden_chain_complete"
    }


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll `predicate` until true or the deadline (the demo watches a real daemon over HTTP)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def run_daemon_demo(site: DemoSite, *, kept: bool = False) -> int:
    """Run `chainwarden run` on the example, show its metrics, break a bundle, watch it notice, stop."""
    import tomllib

    port = int(tomllib.loads(site.config.read_text())["metrics"]["listen"].rsplit(":", 1)[1])
    print(f"\n$ chainwarden run --config {site.config.name}    # the daemon, for a few seconds\n")
    sys.stdout.flush()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "chainwarden", "run", "--config", str(site.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    noticed = False
    try:

        def all_probed() -> bool:
            values = [v for (n, _), v in _scrape(port).items() if n == "chainwarden_endpoint_probe_success"]
            return len(values) >= len(site.story) and all(v == 1 for v in values)

        if not _wait(all_probed, 30):
            print("demo: the daemon did not finish its first probe in time")
            return 1
        metrics = _scrape(port)
        print(f"demo: http://127.0.0.1:{port}/metrics says, per connection:")
        for name, value in sorted(_complete(metrics).items()):
            codes = sorted(
                {
                    dict(labels)["code"]
                    for (metric, labels), v in metrics.items()
                    if metric == "chainwarden_chain_problem" and dict(labels)["connection"] == name and v == 1
                }
            )
            label = f'chainwarden_chain_complete{{connection="{name}"}}'
            print(f"      {label:<56} {value:g}   problems: {', '.join(codes) or '-'}")
        bundle = site.directory / "pki" / "material-api-chain.pem"
        print(f"\ndemo: now someone 'tidies' {bundle.name}, keeping only the root (an atomic save)...")
        pem = bundle.read_bytes()
        temp = bundle.with_name(bundle.name + ".tmp")
        temp.write_bytes(pem[pem.rindex(b"-----BEGIN CERTIFICATE-----") :])
        started = time.monotonic()
        os.replace(temp, bundle)
        noticed = _wait(lambda: _complete(_scrape(port)).get("material_api") == 0.0, 10)
        if noticed:
            took = time.monotonic() - started
            print(f'demo: chainwarden_chain_complete{{connection="material_api"}} went 1 -> 0 in {took:.2f} s;')
            print("      the ChainwardenChainIncomplete rule in monitoring/alerts.yml would page now.")
            temp.write_bytes(pem)
            os.replace(temp, bundle)  # put it back, so the kept example is as described
            if _wait(lambda: _complete(_scrape(port)).get("material_api") == 1.0, 10):
                print("demo: restored the bundle: back to 1, and the alert resolves.")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            _, err = daemon.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            _, err = daemon.communicate()
        changes = [line for line in (err or "").splitlines() if "material_api" in line and "->" in line]
        if changes:
            print("\ndemo: the daemon logs one line per change of a connection's state:")
            for line in changes[-2:]:
                print(f"      {line}")
        shown = os.path.relpath(site.directory) if kept else "demo-output"
        print(f"\ndemo: daemon stopped (exit {daemon.returncode}).", end=" ")
        if not kept:
            print("To try the commands yourself, keep the example:")
            print("      .venv/bin/python -m chainwarden.demo --dir demo-output")
        else:
            print("The example is kept; try:")
        print(
            f"      .venv/bin/chainwarden fix {shown}/prodConnections.json --offline --config {shown}/chainwarden.toml"
        )
        print("      (--offline: the demo's endpoints are gone by then; fix uses the chains the daemon cached)")
    return 0 if noticed and daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
