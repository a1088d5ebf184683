"""Checks of the monitoring assets in monitoring/ against the pinned metric contract.

Runs promtool (check + unit tests) and a throwaway real Prometheus when they are installed
(scripts/bootstrap.sh installs both); the rest is structural and needs only PyYAML.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
GRAFANA_RULES = MONITORING / "grafana-alert-rules.yaml"
README = MONITORING / "README.md"

# The metric contract, as exposed by client_python (counters carry their _total suffix).
CONTRACT_METRICS = frozenset(
    {
        "chainwarden_chain_complete",
        "chainwarden_chain_problem",
        "chainwarden_file_problem",
        "chainwarden_certificate_not_after_timestamp_seconds",
        "chainwarden_chain_expiry_timestamp_seconds",
        "chainwarden_last_check_timestamp_seconds",
        "chainwarden_endpoint_probe_success",
        "chainwarden_endpoint_probe_duration_seconds",
        "chainwarden_source_errors_total",
        "chainwarden_watch_mode",
        "chainwarden_config_last_reload_successful",
        "chainwarden_config_last_reload_success_timestamp_seconds",
        "chainwarden_build_info",
        "chainwarden_bundle_regenerations_total",
        "chainwarden_pending_apply_at_timestamp_seconds",
        "chainwarden_submit_last_success",
        "chainwarden_submissions_total",
        "chainwarden_connections",
    }
)
# Contract metrics that no alert reads, each with the reason; every other one must feed an alert.
DASHBOARD_ONLY_METRICS = {
    "chainwarden_chain_expiry_timestamp_seconds": "the minimum of the per-certificate not_after the expiry alerts read",
    "chainwarden_endpoint_probe_duration_seconds": "latency is context for a failing probe, not a fault of its own",
    "chainwarden_connections": "a count of verdicts; the per-connection alerts name the broken connection",
    "chainwarden_watch_mode": "polling is a supported fallback, said in the log and shown on the dashboard",
    "chainwarden_config_last_reload_success_timestamp_seconds": "the reload alert reads the reload result itself",
    "chainwarden_submissions_total": "the alerts read chainwarden_submit_last_success, the latest outcome",
}
METRIC_NAME = re.compile(r"chainwarden_[a-z_]+")
SEVERITIES = {"critical", "warning", "info"}
GRAFANA_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
DS_PLACEHOLDER = "${DS_PROMETHEUS_UID}"

# Concrete values for Grafana's variables when a dashboard query is run outside Grafana.
DASHBOARD_VARIABLES = {
    "file": ".*",
    "connection": ".*",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.DOTALL)


# --------------------------------------------------------------------------------------------
# helpers (also meant for end-to-end tests that run against a Prometheus scraping chainwarden)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with PyYAML, skipping the calling test when it is not installed."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (test extra 'pyyaml')")
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules() -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for group in load_yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] not in rules, f"duplicate alert {rule['alert']}"
            rules[rule["alert"]] = rule
    return rules


def grafana_rules() -> dict[str, dict[str, Any]]:
    doc = load_yaml(GRAFANA_RULES)
    rules: dict[str, dict[str, Any]] = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert rule["title"] not in rules, f"duplicate Grafana rule {rule['title']}"
            rules[rule["title"]] = rule
    return rules


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def substitute_variables(expr: str, values: dict[str, str] = DASHBOARD_VARIABLES) -> str:
    """Replace Grafana's $var / ${var} / ${var:format} with concrete values; unknown ones raise."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no concrete value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(where, concrete PromQL) for every panel target and every label_values() variable."""
    dashboard = load_dashboard(path)
    queries: list[tuple[str, str]] = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"panel {panel['id']} {panel.get('title', '')!r} {target['refId']}"
                queries.append((where, substitute_variables(target["expr"])))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = _LABEL_VALUES.match(query or "")
        if match:  # label_values(selector, label) -> run the selector itself
            queries.append((f"variable {variable['name']}", substitute_variables(match[1])))
    return queries


def prometheus_query(prometheus_url: str, expr: str, timeout: float = 10) -> dict[str, Any]:
    """POST expr to /api/v1/query and return the decoded answer, error answers included."""
    body = urllib.parse.urlencode({"query": expr}).encode()
    request = urllib.request.Request(
        prometheus_url.rstrip("/") + "/api/v1/query", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as err:  # 400/422 carry a JSON error body
        answer = json.loads(err.read() or b"{}")
        answer.setdefault("status", "error")
        answer.setdefault("error", f"HTTP {err.code}")
    return answer


def evaluate_dashboard_queries(prometheus_url: str, path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Run every dashboard query through a real Prometheus; one result dict per query.

    Each dict has where, expr, status ("success" or "error"), error (or None) and data.
    """
    results = []
    for where, expr in dashboard_queries(path):
        answer = prometheus_query(prometheus_url, expr)
        results.append(
            {
                "where": where,
                "expr": expr,
                "status": answer.get("status"),
                "error": answer.get("error"),
                "data": answer.get("data"),
            }
        )
    return results


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[str] = []
    in_string = False
    for ch in expr:
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch in "({[":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and not in_string


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (scripts/bootstrap.sh installs Debian prometheus)")
    return path


# --------------------------------------------------------------------------------------------
# Prometheus rules


def test_promtool_check_rules() -> None:
    """promtool check rules accepts monitoring/alerts.yml."""
    run = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules passes every case in monitoring/alerts.test.yml."""
    run = subprocess.run(
        [_promtool(), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=MONITORING,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    """Each alert in alerts.yml has at least one firing and one not-firing promtool case."""
    alerts = set(alert_rules())
    tests = load_yaml(ALERT_TESTS)
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert (firing | quiet) <= alerts, f"tests for unknown alerts: {(firing | quiet) - alerts}"
    assert alerts - firing == set(), "alerts without a firing case"
    assert alerts - quiet == set(), "alerts without a not-firing case"


def test_alerts_have_severity_summary_description_runbook() -> None:
    """Every alert has a valid severity, summary, description and a multi-line runbook."""
    for name, rule in alert_rules().items():
        assert name.startswith("Chainwarden"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"
        assert "\n" not in annotations["summary"].strip(), f"{name}: summary is one line"
        runbook = annotations["runbook"]
        assert runbook.count("\n") >= 2, f"{name}: runbook is not a step list"
        assert "chainwarden" in runbook or "systemctl" in runbook, name


def test_alert_labels_do_not_churn() -> None:
    """Alert labels are static: no templates or $value in any rule label."""
    for name, rule in alert_rules().items():
        for key, value in rule["labels"].items():
            assert "{{" not in str(value) and "$" not in str(value), f"{name}: label {key}"


def test_alert_exprs_use_only_contract_metrics() -> None:
    """Every alerts.yml expr uses only chainwarden metric names from the contract."""
    for name, rule in alert_rules().items():
        used = metric_names(rule["expr"])
        scrape_health = 'up{job="chainwarden"}' in rule["expr"]
        assert used or scrape_health, f"{name}: no chainwarden metric in {rule['expr']!r}"
        assert used <= CONTRACT_METRICS, f"{name}: unknown metrics {used - CONTRACT_METRICS}"


def test_every_contract_metric_is_alerted_or_dashboard_only() -> None:
    """Each contract metric feeds an alert, unless DASHBOARD_ONLY_METRICS says why it does not."""
    alerted: set[str] = set().union(*(metric_names(rule["expr"]) for rule in alert_rules().values()))
    dashboard_only = set(DASHBOARD_ONLY_METRICS)
    assert dashboard_only <= CONTRACT_METRICS, dashboard_only - CONTRACT_METRICS
    assert alerted & dashboard_only == set(), "alerted metrics listed as dashboard-only"
    assert CONTRACT_METRICS - alerted - dashboard_only == set(), "contract metrics no alert reads"


def test_path_expiry_alerts_exclude_unused_bundle_certificates() -> None:
    """Expiry alerts for the path select role!="bundle"; the unused-cert one role="bundle"."""
    rules = alert_rules()
    for name in (
        "ChainwardenCertificateExpiringSoon",
        "ChainwardenCertificateExpiringCritical",
        "ChainwardenCertificateExpired",
    ):
        assert 'role!="bundle"' in rules[name]["expr"], name
    assert 'role="bundle"' in rules["ChainwardenUnusedBundleCertificateExpiring"]["expr"]


# --------------------------------------------------------------------------------------------
# Grafana-managed rules


def test_grafana_rules_mirror_alerts_yml() -> None:
    """Every alerts.yml alert is a Grafana rule with the same title, expr, for and severity."""
    alerts = alert_rules()
    rules = grafana_rules()
    assert set(rules) == set(alerts)
    for title, rule in rules.items():
        queries = {q["refId"]: q for q in rule["data"]}
        prom = queries["A"]
        assert prom["model"]["expr"].strip() == alerts[title]["expr"].strip(), title
        assert prom["model"].get("instant") is True, title
        assert rule["for"] == alerts[title]["for"], title
        assert rule["labels"]["severity"] == alerts[title]["labels"]["severity"], title


def test_grafana_annotations_match_alerts_yml() -> None:
    """Grafana annotations are the alerts.yml ones with $value read from reduce node B."""
    alerts = alert_rules()
    for title, rule in grafana_rules().items():
        for key, text in alerts[title]["annotations"].items():
            expected = re.sub(r"\$value\b", "$values.B.Value", text)
            assert rule["annotations"][key] == expected, f"{title}: {key}"


def test_grafana_rules_are_well_formed() -> None:
    """Grafana rules: unique uids <= 40 chars, valid states, condition and expression chain."""
    doc = load_yaml(GRAFANA_RULES)
    assert doc["apiVersion"] == 1
    uids: set[str] = set()
    for group in doc["groups"]:
        for key in ("orgId", "name", "folder", "interval", "rules"):
            assert group.get(key), f"group {group.get('name')}: no {key}"
        for rule in group["rules"]:
            title = rule["title"]
            assert GRAFANA_UID.match(rule["uid"]), f"{title}: bad uid {rule['uid']!r}"
            assert rule["uid"] not in uids, f"duplicate uid {rule['uid']}"
            uids.add(rule["uid"])
            assert rule["labels"]["severity"] in SEVERITIES, title
            assert rule["annotations"]["runbook"].strip(), title
            assert rule["annotations"]["summary"].strip(), title
            assert rule["noDataState"] in {"OK", "NoData", "Alerting"}, title
            assert rule["execErrState"] in {"OK", "Error", "Alerting"}, title
            queries = {q["refId"]: q for q in rule["data"]}
            assert rule["condition"] in queries, title
            assert queries["A"]["datasourceUid"] == DS_PLACEHOLDER, title
            for ref, query in queries.items():
                assert query["model"]["refId"] == ref, title
                if ref != "A":
                    assert query["datasourceUid"] == "__expr__", title
                    source = query["model"].get("expression", "")
                    refs = set(re.findall(r"\$?\b([A-Z])\b", source))
                    assert refs and refs <= set(queries) - {ref}, f"{title}: {ref} -> {source}"
            assert queries[rule["condition"]]["model"]["type"] == "threshold", title


def test_grafana_rules_survive_env_interpolation() -> None:
    """Labels hold no '$' and annotations no '${', which Grafana's provisioning would expand."""
    for title, rule in grafana_rules().items():
        for key, value in rule["labels"].items():
            assert "$" not in str(value), f"{title}: label {key}"
        for key, value in rule["annotations"].items():
            assert "${" not in value, f"{title}: annotation {key}"
            assert "$value " not in value and "$value}" not in value, (
                f"{title}: {key} uses Prometheus' $value; Grafana needs $values.B.Value"
            )


def test_grafana_rules_document_the_datasource_placeholder() -> None:
    """The Grafana rule file's header comment explains how to substitute the data-source UID."""
    header = []
    for line in GRAFANA_RULES.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert DS_PLACEHOLDER in text
    assert "DS_PROMETHEUS_UID=" in text and "sed " in text


# --------------------------------------------------------------------------------------------
# dashboard


def test_dashboard_schema_uid_and_datasource_variable() -> None:
    """The dashboard has schemaVersion >= 36, a uid and a Prometheus ${datasource} variable."""
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"


def test_dashboard_file_and_connection_variables() -> None:
    """file and connection are multi-value label_values() variables with an All option."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    for name in ("file", "connection"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["multi"] is True and variable["includeAll"] is True, name
        assert variable["datasource"]["uid"] == "${datasource}", name
        query = variable["query"]
        query = str(query.get("query", "")) if isinstance(query, dict) else str(query)
        assert re.match(rf"label_values\(.*,\s*{name}\)$", query), query
    assert "$file" in variables["connection"]["query"], "connection should follow file"


def test_dashboard_panels_have_unique_ids_and_grid_positions() -> None:
    """Panel ids are unique and every panel has a complete gridPos inside 24 columns."""
    ids = []
    for panel in iter_panels(load_dashboard()["panels"]):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid), panel["title"]
        assert 0 <= grid["x"] and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0, panel["title"]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_dashboard_panels_do_not_overlap() -> None:
    """No two top-level panels share a grid cell."""
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_use_datasource_variable_and_contract_metrics() -> None:
    """Every target uses ${datasource} and only chainwarden metrics from the contract."""
    for panel in iter_panels(load_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no queries"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            used = metric_names(target["expr"])
            assert used, f"{panel['title']}: no chainwarden metric"
            assert used <= CONTRACT_METRICS, f"{panel['title']}: {used - CONTRACT_METRICS}"


def test_dashboard_covers_the_required_views() -> None:
    """The dashboard shows verdicts, expiries, problems, probes, errors, watch mode, reloads."""
    dashboard = load_dashboard()
    exprs = " ".join(
        t["expr"] for p in iter_panels(dashboard["panels"]) for t in p.get("targets", [])
    )
    for metric in CONTRACT_METRICS - {"chainwarden_config_last_reload_success_timestamp_seconds"}:
        assert metric in exprs, f"no panel shows {metric}"
    assert "/ 86400" in exprs and "time()" in exprs, "no days-left computation"
    types = {p["type"] for p in iter_panels(dashboard["panels"])}
    assert {"stat", "table", "timeseries"} <= types


def test_dashboard_query_extraction_yields_concrete_promql() -> None:
    """dashboard_queries() substitutes every variable and yields balanced, non-empty PromQL."""
    dashboard = load_dashboard()
    targets = sum(len(p.get("targets", [])) for p in iter_panels(dashboard["panels"]))
    queries = dashboard_queries()
    assert len(queries) == targets + 2  # plus the file and connection variables
    for where, expr in queries:
        assert expr.strip(), where
        assert "$" not in expr, f"{where}: unsubstituted variable in {expr!r}"
        assert _balanced(expr), f"{where}: unbalanced {expr!r}"
        assert metric_names(expr) <= CONTRACT_METRICS, where
    assert substitute_variables('x{file=~"${file:regex}"}[$__rate_interval]') == (
        'x{file=~".*"}[5m]'
    )
    with pytest.raises(KeyError):
        substitute_variables("rate(x[$unknown])")


# --------------------------------------------------------------------------------------------
# a real Prometheus parses and evaluates every expression


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
        return data


PROMETHEUS_START_TIMEOUT = 30.0


@contextlib.contextmanager
def run_prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Run a real Prometheus with `config` on a free 127.0.0.1 port and yield its base URL.

    TSDB and log live in `workdir`; ready means /-/ready answered 200, polled against a deadline.
    Skips the calling test when prometheus is not installed. Stopped (TERM, then KILL) on exit.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/bootstrap.sh installs the Debian package)")
    log = workdir / "prometheus.log"
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.2)  # pause between polls; the deadline bounds the wait
            else:
                if proc.poll() is None:
                    pytest.fail("prometheus not ready in 30s:\n" + log.read_text()[-3000:])
                continue  # exited: probably the port; try another one
            yield url
            return
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    pytest.fail("prometheus did not start:\n" + log.read_text()[-3000:])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A Prometheus on 127.0.0.1 with no scrape targets that loads alerts.yml (1s evaluation)."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global:\n  evaluation_interval: 1s\nrule_files:\n  - {json.dumps(str(ALERTS))}\n",
        encoding="utf-8",
    )
    with run_prometheus(config, tmp_path) as url:
        yield url


@pytest.mark.slow
def test_real_prometheus_accepts_every_dashboard_query(prometheus: str) -> None:
    """A real Prometheus parses and evaluates every dashboard query without error."""
    results = evaluate_dashboard_queries(prometheus)
    assert results
    failed = [(r["where"], r["expr"], r["error"]) for r in results if r["status"] != "success"]
    assert failed == []


@pytest.mark.slow
def test_real_prometheus_loads_and_evaluates_every_alert(prometheus: str) -> None:
    """A real Prometheus loads alerts.yml, evaluates each rule cleanly and runs each expr."""
    deadline = time.monotonic() + 30
    while True:
        groups = _get_json(prometheus + "/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule["health"] != "unknown" for rule in rules):
            break
        assert time.monotonic() < deadline, f"rules not evaluated in 30s: {rules}"
        time.sleep(0.5)
    assert {rule["name"] for rule in rules} == set(_alert_names_from_text())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    for rule in rules:
        answer = prometheus_query(prometheus, rule["query"])
        assert answer["status"] == "success", (rule["name"], answer.get("error"))


def _alert_names_from_text() -> list[str]:
    """Alert names in alerts.yml without PyYAML, so the Prometheus test needs no extra."""
    return re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", ALERTS.read_text(encoding="utf-8"), re.M)


# --------------------------------------------------------------------------------------------
# README


def test_readme_documents_loading_scrape_config_and_every_alert() -> None:
    """monitoring/README.md shows rule_files, provisioning, the 9847 scrape job, every alert."""
    text = README.read_text(encoding="utf-8")
    for needle in (
        "rule_files",
        "provisioning",
        "127.0.0.1:9847",
        "job_name: chainwarden",
        "grafana-dashboard.json",
        "grafana-alert-rules.yaml",
        "DS_PROMETHEUS_UID",
    ):
        assert needle in text, needle
    for name in _alert_names_from_text():
        assert name in text, f"README does not explain {name}"
