"""`check`, `fetch-chain` and `inspect` end to end, probing real `openssl s_server` endpoints on loopback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from chainwarden import pkigen
from chainwarden.cli import main
from servers import OPENSSL, OpenSSLServer

HOST = "localhost"
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (scripts/bootstrap.sh installs it)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two s_server endpoints for one PKI: one presents leaf + intermediate, one the leaf alone."""
    tmp = tmp_path_factory.mktemp("check")
    pki = pkigen.three_tier(HOST, label="CLI")
    with OpenSSLServer.from_issued(pki.leaf, pki.intermediate) as full, OpenSSLServer.from_issued(pki.leaf) as bare:
        (tmp / "pki").mkdir()
        (tmp / "pki" / "complete.pem").write_bytes(pkigen.pem_bundle(pki.intermediate, pki.root))
        (tmp / "pki" / "root-only.pem").write_bytes(pkigen.pem_bundle(pki.root))
        doc = {
            "apply_at": "2099-01-01T10:00+5:30",
            "external_connections": {
                "full_ok": {
                    "baseurl": f"https://{HOST}:{full.port}",
                    "server_cert": "pki/complete.pem",
                    "secrets": {"bearer_token": "Bearer canary-c0ffee"},
                },
                "bare_ok": {"baseurl": f"https://{HOST}:{bare.port}", "server_cert": "pki/complete.pem"},
                "full_missing": {"baseurl": f"https://{HOST}:{full.port}", "server_cert": "pki/root-only.pem"},
                "bare_missing": {"baseurl": f"https://{HOST}:{bare.port}", "server_cert": "pki/root-only.pem"},
            },
        }
        (tmp / "prod.json").write_text(json.dumps(doc, indent=2))
        yield {"tmp": tmp, "pki": pki, "full": full, "bare": bare, "json": tmp / "prod.json"}


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def by_name(out):
    return {r["connection"]: r for r in json.loads(out)["results"]}


def test_live_probe_verdicts(world, capsys):
    """A complete bundle is ok whether or not the server sends its intermediate; a root-only bundle is not."""
    code, out, _ = run(capsys, "check", str(world["json"]), "--format", "json")
    results = by_name(out)
    assert code == 2
    assert results["full_ok"]["verdict"] == "ok" and results["bare_ok"]["verdict"] == "ok"
    assert results["full_ok"]["endpoint_verified"] and results["full_ok"]["chain"][0]["source"] == "endpoint"
    full_missing = {p["code"]: p for p in results["full_missing"]["problems"]}
    bare_missing = {p["code"]: p for p in results["bare_missing"]["problems"]}
    assert "endpoint presents it" in full_missing["missing_intermediate"]["message"]
    # It says where it looked: the bundle, the endpoint's chain and the trusted root store by name.
    message = bare_missing["missing_intermediate"]["message"]
    assert "found neither in the bundle nor in the chain the endpoint presents nor in " in message
    assert "root store" in message.split("nor in ")[-1]
    assert results["full_missing"]["complete"] is False
    assert "canary-c0ffee" not in out


def test_json_fields_are_the_contract(world, capsys):
    """Every pinned field is present with ISO 8601 UTC times."""
    _, out, _ = run(capsys, "check", str(world["json"]), "--connection", "full_ok", "--format", "json")
    (result,) = json.loads(out)["results"]
    for key in ("file", "connection", "endpoint", "bundle", "verdict", "problems", "chain", "chain_expires_at"):
        assert key in result
    for entry in result["chain"]:
        assert set(entry) >= {"role", "subject", "issuer", "not_before", "not_after", "sha256", "source"}
        assert entry["not_after"].endswith("Z")
    assert result["endpoint"] == f"{HOST}:{world['full'].port}"
    assert Path(result["bundle"]) == world["tmp"] / "pki" / "complete.pem"


def test_text_output_is_for_people(world, capsys):
    """Text output: one block per connection, problems first, then the chain as a tree, then a summary."""
    code, out, _ = run(capsys, "check", str(world["json"]), "--connection", "full_missing")
    assert code == 2
    block = out.split("\n\n")[0]
    assert block.startswith("ERROR ") and "full_missing" in block
    assert block.index("problems:") < block.index("chain:")
    assert "`- " in block and out.rstrip().endswith("0 ok, 0 warnings, 1 error")


def test_offline_uses_no_network(world, capsys):
    """--offline: no probe; without a leaf in the bundle the structure is checked and that is said."""
    code, out, _ = run(capsys, "check", str(world["json"]), "--offline", "--connection", "full_ok", "--format", "json")
    (result,) = json.loads(out)["results"]
    assert code == 1 and not result["endpoint_verified"]
    assert [p["code"] for p in result["problems"]] == ["endpoint_not_verified"]


def test_at_apply_at_and_bad_at(world, capsys):
    """--at apply_at evaluates at the file's apply_at (2099: everything expired); garbage --at exits 3."""
    code, out, _ = run(
        capsys, "check", str(world["json"]), "--connection", "full_ok", "--at", "apply_at", "--format", "json"
    )
    (result,) = json.loads(out)["results"]
    assert code == 2 and "expired" in {p["code"] for p in result["problems"]}
    code, _, err = run(capsys, "check", str(world["json"]), "--at", "next tuesday")
    assert code == 3 and "--at next tuesday" in err


def test_unknown_connection_and_usage_errors(world, capsys):
    """An unknown --connection, no input at all, and a bad --config each exit 3 with a sentence."""
    code, _, err = run(capsys, "check", str(world["json"]), "--connection", "nope")
    assert code == 3 and "no connection named 'nope'" in err
    code, _, err = run(capsys, "check")
    assert code == 3 and "check needs" in err
    code, _, err = run(capsys, "check", str(world["json"]), "--config", "/nonexistent.toml")
    assert code == 3 and "/nonexistent.toml" in err
    code, _, _ = run(capsys, "check", "--bogus-flag")
    assert code == 3


def test_fetch_chain_prints_presented_pem(world, capsys):
    """fetch-chain prints exactly what the endpoint presents, leaf first, as PEM."""
    code, out, err = run(capsys, "fetch-chain", f"127.0.0.1:{world['full'].port}", "--servername", HOST)
    assert code == 0
    assert out.encode() == pkigen.pem_bundle(world["pki"].leaf, world["pki"].intermediate)
    assert "# 0: subject CN=localhost" in err
    code, out, _ = run(capsys, "fetch-chain", f"127.0.0.1:{world['bare'].port}")
    assert out.encode() == world["pki"].leaf.pem


def test_fetch_chain_unreachable(capsys):
    """fetch-chain against a closed port exits 2 with the reason."""
    from servers import refused_port

    with refused_port() as port:
        code, out, err = run(capsys, "fetch-chain", f"127.0.0.1:{port}", "--timeout", "2")
    assert code == 2 and out == "" and "refused" in err


def test_check_bundle_with_presented_chain_file(world, tmp_path, capsys):
    """check --bundle with --chain (as saved by fetch-chain) and --host, fully offline."""
    chain = tmp_path / "presented.pem"
    chain.write_bytes(pkigen.pem_bundle(world["pki"].leaf, world["pki"].intermediate))
    code, out, _ = run(
        capsys,
        "check",
        "--bundle",
        str(world["tmp"] / "pki" / "root-only.pem"),
        "--chain",
        str(chain),
        "--host",
        HOST,
        "--format",
        "json",
    )
    (result,) = json.loads(out)["results"]
    assert code == 2 and result["connection"] is None
    assert "missing_intermediate" in {p["code"] for p in result["problems"]}
    code, _, _ = run(
        capsys, "check", "--bundle", str(world["tmp"] / "pki" / "complete.pem"), "--chain", str(chain), "--host", HOST
    )
    assert code == 0
    code, _, _ = run(
        capsys,
        "check",
        "--bundle",
        str(world["tmp"] / "pki" / "complete.pem"),
        "--chain",
        str(chain),
        "--host",
        "other.example",
    )
    assert code == 2


def test_inspect_lists_every_block(world, tmp_path, capsys):
    """inspect: one line per block with role, subject, issuer, expiry and fingerprint; bad blocks located."""
    bundle = tmp_path / "mixed.pem"
    bad = b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
    bundle.write_bytes(pkigen.pem_bundle(world["pki"].intermediate) + bad + world["pki"].root.pem)
    code, out, _ = run(capsys, "inspect", str(bundle))
    assert code == 2
    assert "block 1 (line 1): intermediate" in out and "block 3" in out and "root" in out
    assert "block 2" in out and "sha256" in out
    code, out, _ = run(capsys, "inspect", str(bundle), "--format", "json")
    blocks = json.loads(out)["blocks"]
    assert [b.get("role") for b in blocks] == ["intermediate", None, "root"]


def test_inspect_marks_certificates_that_are_not_valid_now(tmp_path, capsys):
    """An expired (or not yet valid) certificate stands out in inspect's listing, and says so in JSON."""
    root = pkigen.make_root("Inspect Root CA")
    old = pkigen.make_intermediate(
        "Lapsed Issuing CA", root, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    bundle = tmp_path / "lapsed.pem"
    bundle.write_bytes(pkigen.pem_bundle(old, root))
    code, out, _ = run(capsys, "inspect", str(bundle))
    assert "EXPIRED 2021-01-01" in out and out.count("EXPIRED") == 1
    code, out, _ = run(capsys, "inspect", str(bundle), "--format", "json")
    assert [b["validity"] for b in json.loads(out)["blocks"]] == ["expired", "valid"]


def test_inline_client_cert_is_never_echoed(world, tmp_path, capsys):
    """Key material pasted into secrets.client_cert (instead of a path) is reported but never printed."""
    key_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCanary0123456789"
    doc = json.loads(world["json"].read_text())
    doc["external_connections"]["full_ok"]["secrets"]["client_cert"] = (
        f"-----BEGIN PRIVATE KEY-----\n{key_body}\n-----END PRIVATE KEY-----\n"
    )
    doc["external_connections"]["full_ok"]["server_cert"] = str(world["tmp"] / "pki" / "complete.pem")
    source = tmp_path / "inline.json"
    source.write_text(json.dumps(doc))
    for fmt in ("text", "json"):
        code, out, err = run(capsys, "check", str(source), "--connection", "full_ok", "--format", fmt)
        assert "Canary0123456789" not in out + err and "BEGIN PRIVATE KEY" not in out + err
        assert "inline content (not shown)" in out


def test_fetch_chain_accepts_a_baseurl(world, capsys):
    """A baseurl pasted from the connection JSON works as the target."""
    code, out, _ = run(capsys, "fetch-chain", f"https://{HOST}:{world['full'].port}/api/material")
    assert code == 0 and out.encode() == pkigen.pem_bundle(world["pki"].leaf, world["pki"].intermediate)


def test_connection_filter_on_an_invalid_connection_explains_it(world, tmp_path, capsys):
    """--connection naming a connection that exists but is invalid shows why (exit 2), not 'no such connection'."""
    doc = json.loads(world["json"].read_text())
    entry = doc["external_connections"]["full_ok"]
    entry["server_certs"] = entry.pop("server_cert")
    source = tmp_path / "typo.json"
    source.write_text(json.dumps(doc))
    code, out, err = run(capsys, "check", str(source), "--connection", "full_ok", "--offline")
    assert code == 2 and "no connection named" not in err
    assert 'found "server_certs": a typo?' in out


def test_an_internal_error_exits_3_without_quoting_input(tmp_path, capsys, monkeypatch):
    """A bug reads as 'could not run' (3), never as a verdict, and its message (which may quote input,
    a secret say) is not printed: only where it happened."""
    from chainwarden import inspect as inspect_module

    def broken(*_args, **_kwargs):
        raise TypeError("Bearer canary-0451")

    monkeypatch.setattr(inspect_module, "inspect_bundle", broken)
    monkeypatch.delenv("CHAINWARDEN_DEBUG", raising=False)
    code, out, err = run(capsys, "inspect", str(tmp_path / "any.pem"))
    assert code == 3 and "internal error: TypeError in cli.py:" in err and "(_cmd_inspect)" in err
    assert "canary-0451" not in out + err


def test_summary_counts_use_correct_plurals():
    """"1 warning, 2 errors", "0 warnings", "1 connection file": never "0 warning, 1 error"."""
    from chainwarden.render import results_text
    from chainwarden.report import Code, Problem, Result, Severity

    def result(connection, *severities):
        codes = {Severity.WARNING: Code.EXPIRING_SOON, Severity.ERROR: Code.EXPIRED}
        problems = tuple(Problem(codes[severity], severity, "m") for severity in severities)
        return Result("/x/prod.json", connection, "h:443", "/b.pem", problems)

    error, warning = Severity.ERROR, Severity.WARNING
    last = results_text([result("a", error), result("b", warning), result("c")]).splitlines()[-1]
    assert last == "3 checked: 1 ok, 1 warning, 1 error"
    last = results_text([result("a", error), result("b", error), result("c")]).splitlines()[-1]
    assert last == "3 checked: 1 ok, 0 warnings, 2 errors"
    file_level = Result("/x/other.json", None, None, None, (Problem(Code.CONNECTION_INVALID, error, "m"),))
    last = results_text([result("a", warning), result("b", warning), file_level]).splitlines()[-1]
    assert last == "2 checked: 0 ok, 2 warnings, 0 errors; 1 connection file with problems of its own (above)"
    last = results_text([file_level, file_level]).splitlines()[-1]
    assert last == "0 checked: 0 ok, 0 warnings, 0 errors; 2 connection files with problems of their own (above)"


def test_missing_connection_file_exits_2_while_a_usage_error_exits_3(world, tmp_path, capsys):
    """A connection file that does not exist is a located error in the report (2, like a broken chain);
    a --connection no file has means the command could not run (3). README and --help say both."""
    missing = tmp_path / "nosuch.json"
    code, out, _ = run(capsys, "check", str(missing), "--format", "json")
    (result,) = json.loads(out)["results"]
    assert code == 2 and result["connection"] is None and result["file"] == str(missing)
    assert result["problems"][0]["code"] == "connection_invalid" and "cannot read" in result["problems"][0]["message"]
    code, out, _ = run(capsys, "fix", str(missing), "--format", "json")
    assert code == 2 and json.loads(out)["files"][0]["unfixable"][0]["connection"] == "(file)"
    code, out, err = run(capsys, "check", str(world["json"]), "--connection", "nosuch", "--offline")
    assert code == 3 and "no connection named 'nosuch'" in err and out == ""
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert (
        "A connection file given on the command line that is missing, unreadable or not valid JSON is an error "
        "of the report (a located `connection_invalid` result), so it exits **2**"
    ) in readme
    assert "**3** means the command itself could not run" in readme
    with pytest.raises(SystemExit):
        from chainwarden.cli import build_parser

        build_parser().parse_args(["check", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "a connection file that is missing, unreadable or not valid JSON counts here too" in help_text
    assert "3 the command itself could not run" in help_text


def test_connection_filter_on_an_invalid_json_file_reports_the_syntax_error(world, tmp_path, capsys):
    """--connection NAME on a file that is not valid JSON reports the file's own error (exit 2, as
    without --connection), never "no connection named"; beside a file that holds NAME, too. fix agrees."""
    broken = tmp_path / "broken.json"
    broken.write_text(world["json"].read_text().replace('"full_ok": {', '"full_ok" {', 1))
    for fmt in ("text", "json"):
        code, out, err = run(capsys, "check", str(broken), "--connection", "full_ok", "--offline", "--format", fmt)
        assert code == 2 and "no connection named" not in err, (fmt, out, err)
        assert "invalid JSON" in out and "line " in out, out
    code, out, err = run(capsys, "check", str(world["json"]), str(broken), "--connection", "full_ok",
                         "--offline", "--format", "json")
    results = json.loads(out)["results"]
    assert code == 2 and {(r["file"], r["connection"]) for r in results} == {
        (str(broken), None), (str(world["json"]), "full_ok")
    }
    code, out, err = run(capsys, "fix", str(broken), "--connection", "full_ok", "--offline", "--format", "json",
                         "--outbox", str(tmp_path / "out"))
    assert code == 2 and "no connection named" not in err
    (reason,) = json.loads(out)["files"][0]["unfixable"]
    assert reason["connection"] == "(file)" and "invalid JSON" in reason["reason"]


def test_format_nonstandard_severities_in_the_readme_are_the_codes():
    """README's problem-code table gives format_nonstandard's severities as the code assigns them:
    info for CRLF and text around blocks (OpenSSL and the JVM read them alike), warning for a BOM,
    error where a strict reader misses a certificate."""
    from chainwarden.bundle import read_bundle_bytes

    pki = pkigen.three_tier(HOST, label="Format")
    pem = pki.intermediate.pem + pki.root.pem

    def severities(data):
        problems = read_bundle_bytes(data, "/b.pem").problems
        return {p.severity.value for p in problems if p.code.value == "format_nonstandard"}

    assert severities(pem.replace(b"\n", b"\r\n")) == {"info"}
    assert severities(b"intermediate and root\n" + pem) == {"info"}
    assert severities(pki.intermediate.pem.rstrip(b"\n") + pki.root.pem) == {"error"}  # glued blocks
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `format_nonstandard` [")]
    severity_text = row.split("]", 1)[0]
    assert "info for CRLF line endings and text around blocks" in severity_text, row
    assert "warning for a BOM" in severity_text and "error when a strict reader would miss a certificate" in row


def test_fetch_chain_never_echoes_a_baseurl_with_credentials(capsys):
    """A pasted baseurl that fetch-chain cannot use is refused without repeating it (its user
    information or query may be a credential)."""
    for target in ("http://svc:PW-canary-1@h.example/x?sig=SIG-canary-2", "https://h.example:PW-canary-1/x"):
        code, out, err = run(capsys, "fetch-chain", target)
        assert code == 3 and "expected HOST[:PORT]" in err, err
        assert "canary" not in out + err


def test_chainwarden_config_is_the_default_of_config(tmp_path, capsys, monkeypatch):
    """CHAINWARDEN_CONFIG names the configuration when --config is not given (the runbooks rely on it)."""
    broken = tmp_path / "cw.toml"
    broken.write_text("[verify]\nwarn_days = 'soon'\n")
    monkeypatch.setenv("CHAINWARDEN_CONFIG", str(broken))
    code, _, err = run(capsys, "check", "--bundle", str(tmp_path / "none.pem"))
    assert code == 3 and "verify.warn_days" in err
    monkeypatch.delenv("CHAINWARDEN_CONFIG")
    code, _, err = run(capsys, "check", "--bundle", str(tmp_path / "none.pem"))
    assert code != 3 or "verify.warn_days" not in err
