"""End to end: a real `chainwarden run` scraped by a real Prometheus that evaluates the alert rules.

The site (all on loopback, generated PKI, one module-wide daemon and Prometheus):

* prodConnections.json: `erp` and `crm`, complete bundles, an endpoint that presents leaf and
  intermediate. The tests make erp's bundle incomplete on disk and restore it.
* legacyConnections.json: `legacy`, a root-only bundle and an endpoint that presents only its
  leaf, so the chain is incomplete for good. `[regenerate]` is on: the daemon completes the
  bundle from `intermediates_dir` into the outbox and runs a submit command that fails, so
  regeneration, pending-resubmission and submission series all carry data.
* brokenConnections.json: invalid JSON, a file-level problem (`chainwarden_file_problem`).

Prometheus (the Debian package, 127.0.0.1, temporary TSDB) scrapes the daemon as job
`chainwarden` every second and evaluates rules every second.

**The rules are a test copy of monitoring/alerts.yml with every `for` set to 0s** (see
`rules_with_short_for`), so that an alert fires on the first evaluation that sees its condition
instead of after minutes. Everything else in the copy (exprs, labels, annotations) is
alerts.yml's, unchanged. The production `for` durations are covered by the promtool unit tests
in monitoring/alerts.test.yml, not here.

What is proven:

* ChainwardenChainIncomplete fires for exactly the connection whose bundle was atomically
  replaced by a root-only one, and stops firing when the good bundle is put back;
* ChainwardenConnectionFileProblem fires for the invalid connection JSON; the resubmission
  alerts fire for the regenerated, unsubmitted JSON;
* every dashboard query parses and returns data while Prometheus scrapes the real daemon
  (exemptions: DASHBOARD_QUERIES_WITHOUT_DATA, currently none);
* every alert expression of alerts.yml evaluates without error against the live data.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chainwarden import pkigen
from daemonproc import DaemonProcess, free_port
from servers import LoopbackServer, tls_server
from test_monitoring import (
    ALERTS,
    dashboard_queries,
    evaluate_dashboard_queries,
    load_yaml,
    prometheus_query,
    run_prometheus,
)

pytestmark = pytest.mark.slow

HOST = "localhost"
JOB = "chainwarden"  # alerts.yml reads up{job="chainwarden"}
INTERVAL = "1s"  # scrape and rule evaluation interval of the test Prometheus
WAIT = 20.0  # seconds any single condition may take (a few scrape/evaluation rounds suffice)

# Dashboard queries allowed to return no data in this scenario: where -> why. Empty, because
# the site produces data for every query (regeneration, a pending resubmission, a failed
# submission and a file-level problem included). A new entry needs a reason a reviewer accepts.
DASHBOARD_QUERIES_WITHOUT_DATA: dict[str, str] = {}

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# the rules under test


def rules_with_short_for(source: Path, target: Path) -> None:
    """Write `source`'s rule groups to `target` with every rule's `for` set to 0s, else unchanged."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (test extra 'pyyaml')")
    document = load_yaml(source)
    original = copy.deepcopy(document)
    shortened = 0
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
                shortened += 1
    assert shortened, f"no rule in {source} has a `for`"
    target.write_text(yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    # Only `for` differs: the copy, read back, equals the original once `for` is ignored.
    assert _without_for(load_yaml(target)) == _without_for(original)


def _without_for(document: Any) -> list[list[dict[str, Any]]]:
    return [[{k: v for k, v in r.items() if k != "for"} for r in g["rules"]] for g in document["groups"]]


# --------------------------------------------------------------------------------------------
# the site


class Site:
    """Connection JSONs, bundles, endpoints and a daemon config under `root` (see module doc)."""

    def __init__(self, root: Path, resources: contextlib.ExitStack) -> None:
        """Write everything under `root` and start both endpoints, stopped when `resources` closes."""
        self.prod_pki = pkigen.three_tier(HOST, label="Alerting")
        self.legacy_pki = pkigen.three_tier(HOST, label="Legacy")
        for name in ("conns", "pki", "intermediates", "roots"):
            (root / name).mkdir()
        self.good = pkigen.pem_bundle(self.prod_pki.intermediate, self.prod_pki.root)
        self.root_only = pkigen.pem_bundle(self.prod_pki.root)
        self.erp_bundle = root / "pki" / "erp-chain.pem"
        self.erp_bundle.write_bytes(self.good)
        crm_bundle = root / "pki" / "crm-chain.pem"
        crm_bundle.write_bytes(self.good)
        legacy_bundle = root / "pki" / "legacy-chain.pem"
        legacy_bundle.write_bytes(pkigen.pem_bundle(self.legacy_pki.root))
        (root / "intermediates" / "legacy-issuing.pem").write_bytes(self.legacy_pki.intermediate.pem)
        (root / "roots" / "roots.pem").write_bytes(self.prod_pki.root.pem + self.legacy_pki.root.pem)

        prod_server = resources.enter_context(tls_server(self.prod_pki.leaf, self.prod_pki.intermediate))
        legacy_server = resources.enter_context(tls_server(self.legacy_pki.leaf))  # leaf only

        self.prod = root / "conns" / "prodConnections.json"
        self._write_json(self.prod, {"erp": (prod_server, self.erp_bundle), "crm": (prod_server, crm_bundle)})
        self.legacy = root / "conns" / "legacyConnections.json"
        self._write_json(self.legacy, {"legacy": (legacy_server, legacy_bundle)})
        self.broken = root / "conns" / "brokenConnections.json"
        self.broken.write_text('{"external_connections": {\n  "plm": {"baseurl": "https://plm.example.test"\n')

        self.metrics_port = free_port()
        self.config = root / "chainwarden.toml"
        submit = [sys.executable, "-c", "import sys; sys.exit('submission refused by the test')", "{json}"]
        self.config.write_text(
            f"""
[watch]
connections = [{json.dumps(str(root / "conns"))}]
poll_interval = "0.2s"

[schedule]
interval = "1h"

[verify]
timeout = "5s"
trusted_roots = {json.dumps(str(root / "roots"))}

[metrics]
listen = "127.0.0.1:{self.metrics_port}"

[state]
dir = {json.dumps(str(root / "state"))}

[regenerate]
enabled = true
intermediates_dir = {json.dumps(str(root / "intermediates"))}
trusted_roots = {json.dumps(str(root / "roots"))}
outbox = {json.dumps(str(root / "outbox"))}
submit_command = {json.dumps(submit)}
""",
            encoding="utf-8",
        )

    @staticmethod
    def _write_json(path: Path, connections: dict[str, tuple[LoopbackServer, Path]]) -> None:
        doc = {
            "external_connections": {
                name: {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
                for name, (server, bundle) in connections.items()
            }
        }
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")

    def replace_erp_bundle(self, content: bytes) -> None:
        """Atomic replace (write a temporary file in the folder, rename it over the bundle)."""
        tmp = self.erp_bundle.with_name(f".{self.erp_bundle.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, self.erp_bundle)


@dataclass
class Stack:
    site: Site
    daemon: DaemonProcess
    prometheus: str  # base URL

    def diagnostics(self) -> str:
        try:
            alerts = json.dumps(active_alerts(self.prometheus), indent=1)[-4000:]
        except OSError as exc:
            alerts = f"(cannot read alerts: {exc})"
        return f"--- active alerts ---\n{alerts}\n--- daemon log (tail) ---\n" + "\n".join(self.daemon.log_lines[-40:])

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
        """Poll `probe` until it returns something truthy (returned) or fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = probe()
            except OSError as exc:  # Prometheus briefly busy: retry within the deadline
                last_error = exc
            else:
                if value:
                    return value
            time.sleep(0.1)  # pause between polls; the deadline bounds the wait
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n" + self.diagnostics()
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (scripts/bootstrap.sh installs the Debian package)")
    root = tmp_path_factory.mktemp("alerting")
    (root / "site").mkdir()
    with contextlib.ExitStack() as resources:
        site = Site(root / "site", resources)
        daemon = resources.enter_context(DaemonProcess(site.config))
        # Steady state: erp verified against its live endpoint, legacy regenerated and pending.
        daemon.wait_value("chainwarden_endpoint_probe_success", 1.0, file=str(site.prod), connection="erp")
        daemon.wait_value("chainwarden_chain_complete", 1.0, file=str(site.prod), connection="erp")
        daemon.wait_for(
            lambda: daemon.value("chainwarden_pending_apply_at_timestamp_seconds", file=str(site.legacy)) is not None,
            "legacy's regenerated resubmission pending in the outbox",
        )

        rules = root / "alerts-for-0s.yml"
        rules_with_short_for(ALERTS, rules)
        config = root / "prometheus.yml"
        config.write_text(
            f"""
global:
  scrape_interval: {INTERVAL}
  scrape_timeout: {INTERVAL}
  evaluation_interval: {INTERVAL}
rule_files:
  - {json.dumps(str(rules))}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{site.metrics_port}"]
""",
            encoding="utf-8",
        )
        prometheus = resources.enter_context(run_prometheus(config, root))
        result = Stack(site, daemon, prometheus)
        result.wait(lambda: instant_values(prometheus, f'up{{job="{JOB}"}}') == [1.0], f"job {JOB} scraped (up == 1)")
        yield result


# --------------------------------------------------------------------------------------------
# Prometheus HTTP API


def api_get(prometheus: str, path: str) -> Any:
    with urllib.request.urlopen(prometheus + path, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


def active_alerts(prometheus: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api_get(prometheus, "/api/v1/alerts")["alerts"]
    return alerts


def firing(prometheus: str, alertname: str) -> list[dict[str, Any]]:
    """The firing alerts called `alertname` (pending and resolved ones are left out)."""
    return [a for a in active_alerts(prometheus) if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def firing_keys(prometheus: str, alertname: str, *labels: str) -> set[tuple[str, ...]]:
    return {tuple(a["labels"].get(label, "") for label in labels) for a in firing(prometheus, alertname)}


def instant_values(prometheus: str, expr: str) -> list[float]:
    answer = prometheus_query(prometheus, expr)
    assert answer["status"] == "success", (expr, answer.get("error"))
    return [float(sample["value"][1]) for sample in answer["data"]["result"]]


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339(text: str) -> datetime:
    """Prometheus' timestamps (nanosecond fractions) as aware datetimes, to the microsecond."""
    match = _RFC3339.match(text)
    assert match, text
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(f"{match[1]}.{fraction}{zone}")


# --------------------------------------------------------------------------------------------
# tests


def test_chain_incomplete_fires_for_the_broken_connection_and_resolves(stack: Stack) -> None:
    """A root-only bundle swapped in on disk fires ChainwardenChainIncomplete for erp; restoring it resolves it."""
    prom, site = stack.prometheus, stack.site
    erp = (str(site.prod), "erp")
    legacy = (str(site.legacy), "legacy")

    def incomplete() -> set[tuple[str, ...]]:
        return firing_keys(prom, "ChainwardenChainIncomplete", "file", "connection")

    # Before: the rule runs on live data (legacy, incomplete for good, fires), erp is complete in
    # Prometheus and does not fire.
    stack.wait(lambda: legacy in incomplete(), "ChainwardenChainIncomplete firing for legacy")
    stack.wait(
        lambda: instant_values(prom, f'chainwarden_chain_complete{{file="{site.prod}", connection="erp"}}') == [1.0],
        "erp complete in Prometheus",
    )
    assert incomplete() == {legacy}

    site.replace_erp_bundle(site.root_only)
    stack.wait(lambda: erp in incomplete(), "ChainwardenChainIncomplete firing for erp")
    assert incomplete() == {legacy, erp}, "crm (same endpoint, untouched bundle) must not fire"
    (alert,) = [a for a in firing(prom, "ChainwardenChainIncomplete") if a["labels"]["connection"] == "erp"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == JOB
    assert alert["annotations"]["summary"] == "Trust bundle of connection erp is incomplete"
    assert f"chainwarden check {site.prod} --connection erp" in alert["annotations"]["runbook"]
    problems = instant_values(
        prom, f'chainwarden_chain_problem{{file="{site.prod}", connection="erp", code="missing_intermediate"}}'
    )
    assert problems == [1.0], "the daemon says what is missing"

    site.replace_erp_bundle(site.good)
    stack.wait(lambda: erp not in incomplete(), "ChainwardenChainIncomplete for erp to resolve")
    assert incomplete() == {legacy}, "only the restored connection resolves"
    assert instant_values(prom, f'chainwarden_chain_complete{{file="{site.prod}", connection="erp"}}') == [1.0]


def test_file_problem_and_resubmission_alerts_fire(stack: Stack) -> None:
    """The invalid JSON fires ChainwardenConnectionFileProblem; legacy's unsubmitted JSON the resubmission alerts."""
    prom, site = stack.prometheus, stack.site
    file_problem = (str(site.broken), "connection_invalid", "warning")
    stack.wait(
        lambda: file_problem in firing_keys(prom, "ChainwardenConnectionFileProblem", "file", "code", "severity"),
        "ChainwardenConnectionFileProblem firing for the broken JSON",
    )
    assert firing_keys(prom, "ChainwardenConnectionFileProblem", "file") == {(str(site.broken),)}

    def fires_for_legacy(alertname: str) -> Callable[[], bool]:
        return lambda: (str(site.legacy),) in firing_keys(prom, alertname, "file")

    for alertname in ("ChainwardenResubmissionPending", "ChainwardenSubmissionFailed"):
        stack.wait(fires_for_legacy(alertname), f"{alertname} firing for legacyConnections.json")
    assert firing(prom, "ChainwardenBundleRegenerationFailed") == []
    assert firing(prom, "ChainwardenDown") == [] and firing(prom, "ChainwardenMetricsAbsent") == []


def test_every_dashboard_query_parses_and_returns_data(stack: Stack) -> None:
    """Each dashboard query (panels and variables) parses and returns a non-empty result on live data."""
    stale = set(DASHBOARD_QUERIES_WITHOUT_DATA) - {where for where, _expr in dashboard_queries()}
    assert stale == set(), "exemptions for queries the dashboard no longer has"

    def empty_queries() -> list[str]:
        results = evaluate_dashboard_queries(stack.prometheus)
        assert results, "no dashboard queries found"
        errors = [(r["where"], r["expr"], r["error"]) for r in results if r["status"] != "success"]
        assert errors == [], "queries Prometheus rejects"  # parse errors do not go away: fail now
        return [
            f"{r['where']}: {r['expr']}"
            for r in results
            if not r["data"]["result"] and r["where"] not in DASHBOARD_QUERIES_WITHOUT_DATA
        ]

    # increase() needs two samples of a series in its range: allow a few scrapes for that.
    deadline = time.monotonic() + WAIT
    while (empty := empty_queries()) and time.monotonic() < deadline:
        time.sleep(0.2)  # pause between polls; the deadline bounds the wait
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty) + "\n" + stack.diagnostics()


def test_every_alert_expression_evaluates_on_live_data(stack: Stack) -> None:
    """Prometheus evaluates every alerts.yml rule cleanly on the scraped data; each expr also runs as a query."""
    prom = stack.prometheus
    expected = {rule["alert"]: rule["expr"] for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]}
    data_seen_at = datetime.now(UTC)  # the fixture saw up == 1 before this moment
    assert instant_values(prom, 'count({__name__=~"chainwarden_.+", job="chainwarden"})') != []

    def evaluated_after_data() -> list[dict[str, Any]] | None:
        rules = [rule for group in api_get(prom, "/api/v1/rules")["groups"] for rule in group["rules"]]
        fresh = all(parse_rfc3339(rule["lastEvaluation"]) > data_seen_at for rule in rules)
        return rules if rules and fresh else None

    rules = stack.wait(evaluated_after_data, "every rule evaluated again after the data arrived")
    assert {rule["name"] for rule in rules} == set(expected)
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert all(rule["duration"] == 0 for rule in rules), "the test copy of the rules has for: 0s"
    for name, expr in expected.items():
        answer = prometheus_query(prom, expr)
        assert answer["status"] == "success", (name, expr, answer.get("error"))
