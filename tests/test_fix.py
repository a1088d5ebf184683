"""`chainwarden fix`: completing bundles from AIA, offline folders and the root store; the resubmission JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from chainwarden import pkigen
from chainwarden.bundle import read_bundle_bytes
from chainwarden.chaincache import ChainCache
from chainwarden.cli import main as cli_main
from chainwarden.config import ConfigError, config_from_mapping
from chainwarden.connections import parse_connection_file
from chainwarden.engine import Presented
from chainwarden.fixer import plan_file
from chainwarden.roots import RootStore, load_root_store
from conftest import load_case, real_chain_cases, shared_data_dir
from servers import AIAServer, Oversized, PythonTLSServer, Redirect, Slow

HOST = "localhost"
# An Azure SAS URL is a credential: its sig= query is a token. Never shown, logged or reported.
SAS_TOKEN = "cw-sas-canary-5f3d9a1b7c"
SAS_URL = f"https://cwacct.blob.core.windows.net/windchill?sv=2022-11-02&sp=rw&sig={SAS_TOKEN}"


class FixSite:
    """A connection JSON whose endpoint presents only its leaf; the intermediate is reachable only by AIA."""

    def __init__(self, tmp: Path, aia_route=None, *, aia_path="/issuing.der", root_in_store=True, allow_private=True):
        self.tmp = tmp
        self.aia = AIAServer()
        self.root = pkigen.make_root("Fix Root CA")
        self.inter = pkigen.make_intermediate("Fix Issuing CA", self.root, aia_url=self.aia.url("/root.der"))
        self.leaf = pkigen.make_leaf([HOST], self.inter, aia_url=self.aia.url(aia_path))
        self.aia.set(aia_path, aia_route if aia_route is not None else (self.inter.der, "application/pkix-cert"))
        self.server = PythonTLSServer.from_issued(self.leaf)  # presents the leaf only
        (tmp / "pki").mkdir()
        (tmp / "roots").mkdir()
        if root_in_store:
            (tmp / "roots" / "root.pem").write_bytes(self.root.pem)
        self.bundle = tmp / "pki" / "erp.pem"
        self.bundle.write_bytes(pkigen.pem_bundle(self.root))
        self.json = tmp / "prod.json"
        self.source_text = (
            f'{{\n  "blob_sas_url": "{SAS_URL}",\n  "apply_at": "2026-01-01T09:30+5:30",\n'
            '  "weird": [1.0, 1e3, -0, null, true],\n'
            '  "external_connections": {\n    "erp": {\n'
            f'      "baseurl": "https://{HOST}:{self.server.port}",\n'
            '      "secrets": {"bearer_token": "Bearer canary-5150", "secret.age": "5"},\n'
            '      "server_cert": "pki/erp.pem"\n    }\n  }\n}'
        )
        self.json.write_text(self.source_text)
        os.chmod(self.json, 0o600)
        self.outbox = tmp / "outbox"
        self.config = tmp / "cw.toml"
        self.config.write_text(
            f'[verify]\ntrusted_roots = "{tmp / "roots"}"\ntimeout = "5s"\n'
            f'[state]\ndir = "{tmp / "state"}"\n'
            f'[regenerate]\ntrusted_roots = "{tmp / "roots"}"\noutbox = "{self.outbox}"\n'
            f'allow_private_aia = {"true" if allow_private else "false"}\naia_timeout = "1s"\n'
        )

    def fix(self, capsys, *extra):
        code = cli_main(["fix", str(self.json), "--config", str(self.config), "--format", "json", *extra])
        return code, json.loads(capsys.readouterr().out)

    def close(self):
        self.server.stop()
        self.aia.stop()


@pytest.fixture
def make_site(tmp_path):
    sites = []

    def make(*args, **kwargs):
        site = FixSite(tmp_path, *args, **kwargs)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


def _p7(inter, encoding):
    return pkcs7.serialize_certificates([inter.cert], encoding)


@pytest.mark.parametrize(
    "route_factory",
    [
        lambda inter: (inter.der, "application/pkix-cert"),
        lambda inter: (inter.pem, "application/x-pem-file"),
        lambda inter: (_p7(inter, Encoding.DER), "application/pkcs7-mime"),
        lambda inter: (_p7(inter, Encoding.PEM), "application/x-pkcs7-certificates"),
    ],
    ids=["der", "pem", "pkcs7-der", "pkcs7-pem"],
)
def test_fix_completes_from_aia_in_every_format(make_site, capsys, route_factory):
    """The missing intermediate is fetched by AIA (DER, PEM, PKCS#7 DER/PEM) and the planned bundle is complete."""
    site = make_site()
    site.aia.set("/issuing.der", route_factory(site.inter))
    code, out = site.fix(capsys)
    assert code == 0, out
    plan = out["files"][0]
    assert plan["written"] is False and not site.outbox.exists()  # a plan only, without --write
    subjects = [c["subject"] for c in plan["bundles"][0]["certificates"]]
    assert subjects == [site.inter.cert.subject.rfc4514_string(), site.root.cert.subject.rfc4514_string()]
    assert plan["bundles"][0]["added"][0]["origin"].startswith(("aia:", "cache:"))


def test_resubmission_keeps_relative_paths_of_untouched_connections_working(make_site, capsys):
    """The resubmission lives in the outbox: a relative server_cert it does not change must still name the
    same bundle from there (relative paths are read from the JSON's own folder)."""
    site = make_site()
    (site.tmp / "pki" / "crm.pem").write_bytes(pkigen.pem_bundle(site.inter, site.root))
    two = site.source_text.replace(
        '\n  }\n}',
        ',\n    "crm": {"baseurl": "https://crm.invalid", "server_cert": "pki/crm.pem"},\n'
        '    "hr": {"baseurl": "https://hr.invalid", "server_cert": "%s"},\n'
        '    "plain_http": {"baseurl": "http://old.invalid", "server_cert": "pki/crm.pem"},\n'
        '    "twice": {"baseurl": "https://t.invalid", "server_cert": "pki/a.pem", "server_cert": "pki/b.pem"}\n'
        "  }\n}" % (site.tmp / "pki" / "crm.pem"),
    )
    site.json.write_text(two)
    _, out = site.fix(capsys, "--write")  # exit 2: crm and hr have no reachable endpoint
    assert out["files"][0]["written"] is True, out
    output = Path(out["files"][0]["output"])
    written = json.loads(output.read_text())["external_connections"]
    assert written["crm"]["server_cert"] == os.path.relpath(site.tmp / "pki" / "crm.pem", output.parent)
    assert written["hr"]["server_cert"] == str(site.tmp / "pki" / "crm.pem")  # absolute: left alone
    # A connection too broken to check still names its bundle from the outbox once it is repaired ...
    assert written["plain_http"]["server_cert"] == written["crm"]["server_cert"]
    # ... and one whose server_cert is ambiguous is left exactly as it was.
    assert '"server_cert": "pki/a.pem", "server_cert": "pki/b.pem"' in output.read_text()
    assert set(out["files"][0]["connections"]) == {"erp"}  # only erp is reported as fixed
    cli_main(["check", str(output), "--offline", "--config", str(site.config), "--format", "json"])
    checked = json.loads(capsys.readouterr().out)
    assert not [p for r in checked["results"] for p in r["problems"] if p["code"] == "bundle_unreadable"]


def test_write_then_rerun_writes_nothing(make_site, capsys):
    """--write writes a content-named bundle and the JSON; a re-run writes nothing and the source is untouched."""
    site = make_site()
    before = hashlib.sha256(site.json.read_bytes()).hexdigest()
    code, out = site.fix(capsys, "--write")
    assert code == 0 and out["files"][0]["written"] is True
    plan = out["files"][0]
    bundle_file = Path(plan["bundles"][0]["file"])
    assert bundle_file.name == f"erp-{hashlib.sha256(bundle_file.read_bytes()).hexdigest()[:12]}.pem"
    reading = read_bundle_bytes(bundle_file.read_bytes(), str(bundle_file))
    assert reading.problems == () and len(reading.certificates()) == 2
    assert bundle_file.read_bytes().count(b"\n-----END CERTIFICATE-----\n") == 2  # normalized PEM
    output = Path(plan["output"])
    stamps = {p: p.stat().st_mtime_ns for p in site.outbox.iterdir()}
    code, out = site.fix(capsys, "--write")
    assert code == 0 and out["files"][0]["written"] is False
    assert {p: p.stat().st_mtime_ns for p in site.outbox.iterdir()} == stamps
    assert hashlib.sha256(site.json.read_bytes()).hexdigest() == before
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # the source's mode: it holds secrets


def test_resubmission_json_differs_only_in_server_cert_and_apply_at(make_site, capsys):
    """Byte-level: the output is the source with exactly two spans replaced, offset style kept."""
    site = make_site()
    code, out = site.fix(capsys, "--write")
    plan = out["files"][0]
    new = Path(plan["output"]).read_text()
    new_server_cert = plan["connections"]["erp"]
    expected = site.source_text.replace('"pki/erp.pem"', json.dumps(new_server_cert)).replace(
        '"2026-01-01T09:30+5:30"', json.dumps(plan["apply_at"])
    )
    assert new == expected
    assert plan["apply_at"].endswith("+05:30") and len(plan["apply_at"]) == len("2026-01-01T09:30:00+05:30")
    apply_at = dt.datetime.fromisoformat(plan["apply_at"])
    lead = apply_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=1, minutes=55) < lead <= dt.timedelta(hours=2, seconds=5)
    # The new server_cert is relative like the source's, and resolves to the new bundle.
    assert (Path(plan["output"]).parent / new_server_cert).resolve() == Path(plan["bundles"][0]["file"]).resolve()
    assert "canary-5150" not in json.dumps(out)


def test_redirect_is_followed(make_site, capsys):
    """An AIA URL that redirects once still yields the intermediate."""
    site = make_site(aia_path="/old/issuing.der")
    site.aia.set("/old/issuing.der", Redirect("/new/issuing.der"))
    site.aia.set("/new/issuing.der", (site.inter.der, "application/pkix-cert"))
    code, out = site.fix(capsys)
    assert code == 0 and out["files"][0]["bundles"]


@pytest.mark.parametrize(
    "route,needle",
    [(lambda s: Slow(s.inter.der, seconds=5), "timed out"), (lambda s: Oversized(4 * 1024 * 1024), "larger than")],
    ids=["slow", "oversized"],
)
def test_slow_or_oversized_aia_fails_and_writes_nothing(make_site, capsys, route, needle):
    """A slow or oversized AIA answer: fix_failed naming why, exit 2, nothing written."""
    site = make_site()
    site.aia.set("/issuing.der", route(site))
    code, out = site.fix(capsys, "--write")
    assert code == 2
    failure = out["files"][0]["failures"][0]
    assert failure["code"] == "fix_failed" and needle in failure["message"], failure
    assert not site.outbox.exists() or not any(site.outbox.iterdir())


def test_root_offered_by_aia_is_never_trusted(make_site, capsys):
    """The root is not in the trusted store; AIA offers it: nothing written, the root appears in no bundle."""
    site = make_site(root_in_store=False)
    site.bundle.write_bytes(b"")  # not even the operator's bundle holds the root
    site.aia.set("/root.der", (site.root.der, "application/pkix-cert"))
    code, out = site.fix(capsys, "--write")
    assert code == 2
    message = out["files"][0]["failures"][0]["message"]
    assert "not trusted" in message and "Fix Root CA" in message
    assert not site.outbox.exists() or not list(site.outbox.glob("*.pem"))


def test_private_aia_refused_unless_allowed(make_site, capsys):
    """AIA on a loopback address is refused by default, with the setting to change named."""
    site = make_site(allow_private=False)
    code, out = site.fix(capsys)
    assert code == 2
    assert "allow_private_aia" in out["files"][0]["failures"][0]["message"]


def test_private_aia_fetched_earlier_is_not_served_from_the_cache_once_refused(make_site, capsys):
    """An intermediate fetched from a loopback AIA URL while that was allowed is not taken from the
    cache after allow_private_aia is turned off: the refusal stands."""
    site = make_site()
    code, _ = site.fix(capsys)
    assert code == 0  # fetched, and cached
    site.config.write_text(site.config.read_text().replace("allow_private_aia = true", "allow_private_aia = false"))
    code, out = site.fix(capsys)
    assert code == 2
    assert "allow_private_aia" in out["files"][0]["failures"][0]["message"]


def test_a_file_no_rewrite_can_read_is_reported_not_a_crash(make_site, capsys):
    """A repeated top-level apply_at makes any rewrite ambiguous: fix says so (fix_failed, exit 2) and
    writes nothing; a file with only its own errors is listed with them, not left out."""
    site = make_site()
    site.json.write_text(site.source_text.replace('"apply_at":', '"apply_at": "2026-01-01T00:00Z",\n  "apply_at":'))
    code, out = site.fix(capsys, "--write")
    assert code == 2
    (failure,) = out["files"][0]["failures"]
    assert failure["code"] == "fix_failed" and 'top-level key "apply_at" appears 2 times' in failure["message"]
    assert not site.outbox.exists() or not list(site.outbox.iterdir())
    site.json.write_text(site.source_text[:40])  # cut short
    code, out = site.fix(capsys)
    assert code == 2
    (reason,) = out["files"][0]["unfixable"]
    assert reason["connection"] == "(file)" and "invalid JSON" in reason["reason"]


def test_shared_bundle_keeps_the_other_connections_certificates(tmp_path, capsys):
    """Two connections share a bundle; the new bundle keeps the other's chain and replaces the shared one
    for both (left on the old one, each would carry certificates the other alone uses)."""
    healthy = pkigen.three_tier(HOST, label="Shared A")
    broken = pkigen.three_tier(HOST, label="Shared B")
    (tmp_path / "roots").mkdir()
    (tmp_path / "inter").mkdir()
    (tmp_path / "inter" / "b.pem").write_bytes(broken.intermediate.pem)
    shared = tmp_path / "shared.pem"
    shared.write_bytes(pkigen.pem_bundle(healthy.intermediate, healthy.root, broken.root))
    with (
        PythonTLSServer.from_issued(healthy.leaf, healthy.intermediate) as a,
        PythonTLSServer.from_issued(broken.leaf) as b,
    ):
        doc = {
            "external_connections": {
                "a": {"baseurl": f"https://{HOST}:{a.port}", "server_cert": str(shared)},
                "b": {"baseurl": f"https://{HOST}:{b.port}", "server_cert": str(shared)},
            }
        }
        source = tmp_path / "prod.json"
        source.write_text(json.dumps(doc, indent=4))
        config = tmp_path / "cw.toml"
        config.write_text(
            f'[state]\ndir = "{tmp_path / "state"}"\n[regenerate]\ntrusted_roots = "{tmp_path / "roots"}"\n'
            f'intermediates_dir = "{tmp_path / "inter"}"\noutbox = "{tmp_path / "out"}"\n'
        )
        code = cli_main(["fix", str(source), "--config", str(config), "--format", "json", "--write"])
        out = json.loads(capsys.readouterr().out)
    # B's root is not "unrelated" for A while B's issuer is unknown: nothing but B is wrong, and B is fixed;
    # with both on the new bundle, every certificate in it is on a path of a connection using it.
    assert code == 0, out
    plan = out["files"][0]
    assert not plan["remaining"] and not plan["failures"] and not plan["unfixable"]
    assert set(plan["connections"]) == {"a", "b"}
    new = json.loads(Path(plan["output"]).read_text())["external_connections"]
    assert new["a"]["server_cert"] == new["b"]["server_cert"] == plan["bundles"][0]["file"]
    subjects = [c["subject"] for c in plan["bundles"][0]["certificates"]]
    assert healthy.intermediate.cert.subject.rfc4514_string() in subjects
    assert healthy.root.cert.subject.rfc4514_string() in subjects
    assert subjects.index(broken.intermediate.cert.subject.rfc4514_string()) < subjects.index(
        broken.root.cert.subject.rfc4514_string()
    )
    assert plan["bundles"][0]["added"] == [
        {
            "subject": broken.intermediate.cert.subject.rfc4514_string(),
            "origin": f"intermediates_dir:{tmp_path / 'inter' / 'b.pem'}",
        }
    ]


def test_apply_at_lead_below_one_hour_rejected():
    """[regenerate] apply_at_lead under one hour is a configuration error."""
    with pytest.raises(ConfigError, match="regenerate.apply_at_lead"):
        config_from_mapping({"regenerate": {"apply_at_lead": "30m"}}, "t.toml")


SITES = real_chain_cases()


def _real_plan(site_name, tmp_path, intermediates_dir):
    """Plan a fix for a real captured leaf with only the root in the bundle, at the capture's time."""
    case = load_case(site_name)
    base = case["dir"]
    presented = x509.load_pem_x509_certificates((base / "presented-chain.pem").read_bytes())
    root_pem = (base / "root.pem").read_bytes()
    bundle_path = str(tmp_path / "bundle.pem")
    source = json.dumps(
        {
            "apply_at": "2020-01-01T00:00:00Z",
            "external_connections": {"site": {"baseurl": f"https://{case['host']}", "server_cert": bundle_path}},
        }
    ).encode()
    connection_file = parse_connection_file(source, str(tmp_path / "prod.json"))
    now = dt.datetime.fromisoformat(case["validation_time"])
    from chainwarden.checker import PassInputs, evaluate_pass
    from chainwarden.config import Config

    bundle = read_bundle_bytes(root_pem, bundle_path)
    presented_map = {(case["host"], 443): Presented((presented[0],), "file")}
    results = evaluate_pass(
        PassInputs([connection_file], {bundle_path: bundle}),
        {(h, p, None): v for (h, p), v in presented_map.items()},
        now,
        Config(),
        store=RootStore("test", ()),
    )
    from chainwarden.aia import FetchPolicy, IntermediateFinder

    finder = IntermediateFinder(FetchPolicy(intermediates_dir=str(intermediates_dir), timeout=0.5))

    def find(cert):
        candidates, errors = finder.issuers_for(cert)
        return [(c.cert, c.origin) for c in candidates], errors

    return (
        presented,
        root_pem,
        plan_file(
            connection_file,
            source,
            results,
            {bundle_path: bundle},
            presented_map,
            load_root_store("certifi"),
            find,
            now,
            lead=dt.timedelta(hours=2),
            include_leaf=False,
            outbox=str(tmp_path / "out"),
            output_json=str(tmp_path / "out" / "x.json"),
        ),
    )


@pytest.mark.parametrize("site", SITES)
def test_real_chain_completed_through_intermediates_dir(site, tmp_path):
    """A real leaf (Let's Encrypt, DigiCert, ...) and a root-only bundle are completed from an offline folder."""
    shared_data_dir("real-chains")
    case = load_case(site)
    folder = tmp_path / "intermediates"
    folder.mkdir()
    presented = x509.load_pem_x509_certificates((case["dir"] / "presented-chain.pem").read_bytes())
    for index, cert in enumerate(presented[1:]):
        (folder / f"{index}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    presented, root_pem, plan = _real_plan(site, tmp_path, folder)
    assert not plan.failures, [f.problem for f in plan.failures]
    bundle = plan.bundles[0]
    assert bundle.certificates[-1].cert.public_bytes(Encoding.PEM) == root_pem or bundle.certificates[-1].self_issued
    assert all(origin.startswith(("intermediates_dir:", "trusted_roots: ")) for _, origin in bundle.added)


def test_lets_encrypt_chain_completed_from_published_intermediates(tmp_path):
    """stackoverflow.com's Let's Encrypt leaf is completed from the CA's published 2024 intermediates, read in place."""
    folder = shared_data_dir("letsencrypt", "2024")
    if "stackoverflow.com" not in SITES:
        pytest.skip("the stackoverflow.com capture is not in ../shared/data/real-chains")
    presented, root_pem, plan = _real_plan("stackoverflow.com", tmp_path, folder)
    assert not plan.failures, [f.problem for f in plan.failures]
    names = [c.subject for c in plan.bundles[0].certificates]
    assert "ISRG Root X1" in names[-1] and len(names) == 2


def test_unreachable_endpoint_is_explained(make_site, capsys):
    """An endpoint that cannot be probed (and no cached chain): fix explains why nothing is planned."""
    site = make_site()
    site.server.stop()
    code, out = site.fix(capsys)
    assert code == 2
    (item,) = out["files"][0]["unfixable"]
    assert item["connection"] == "erp" and "refused" in item["reason"]


def test_fix_offline_completes_from_the_chain_the_daemon_cached(make_site, capsys):
    """fix --offline (as the demo suggests): the endpoint is down, but the daemon's cached chain of it
    gives the leaf, whose AIA completes the bundle."""
    site = make_site()
    ChainCache(site.tmp / "state" / "chains").store(HOST, site.server.port, (site.leaf.cert,))
    site.server.stop()
    code, out = site.fix(capsys, "--offline")
    assert code == 0, out
    subjects = [c["subject"] for c in out["files"][0]["bundles"][0]["certificates"]]
    assert subjects == [site.inter.cert.subject.rfc4514_string(), site.root.cert.subject.rfc4514_string()]


def test_newer_plan_supersedes_the_unsubmitted_one(make_site, capsys):
    """When the needed bundle changes, the same resubmission JSON is replaced, never a second one added."""
    site = make_site()
    code, out = site.fix(capsys, "--write")
    first = out["files"][0]
    output = Path(first["output"])
    # The CA renews its intermediate (same key, later expiry); AIA now serves the renewal.
    renewed = pkigen.make_intermediate(
        "Fix Issuing CA",
        site.root,
        key=site.inter.key,
        not_after=site.inter.cert.not_valid_after_utc + dt.timedelta(days=400),
    )
    site.aia.set("/issuing.der", (renewed.der, "application/pkix-cert"))
    for cached in (site.tmp / "state" / "aia-cache-private-allowed").glob("*"):
        cached.unlink()  # the renewal is a new certificate at the same URL
    code, out = site.fix(capsys, "--write")
    second = out["files"][0]
    assert code == 0 and second["written"] is True and second["output"] == str(output)
    assert second["connections"]["erp"] != first["connections"]["erp"]
    assert json.loads(output.read_text())["external_connections"]["erp"]["server_cert"] == second["connections"]["erp"]
    assert len(list(site.outbox.glob("*.resubmit.json"))) == 1
    assert len(list(site.outbox.glob("*.pem"))) == 2  # the older bundle stays: a file in use is never removed


# --------------------------------------------------------------------------------------------
# The JSON diff: the real bytes, true line numbers, sensitive values masked in place


def _diff_lines_are_true(diff: str, old_lines: list[str], new_lines: list[str]) -> int:
    """Walk a unified diff: every context and removed line must be the old file's line of that number,
    every context and added line the new file's. Returns the number of hunks."""
    lines = diff.split("\n")
    assert lines[-1] == "", "the diff ends with a line break"
    lines = lines[:-1]
    assert lines[0].startswith("--- ") and lines[1].startswith("+++ "), lines[:2]
    hunks = 0
    old_no = new_no = 0
    for line in lines[2:]:
        header = re.fullmatch(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", line)
        if header:
            old_no, new_no = int(header[1]), int(header[2])
            hunks += 1
            continue
        tag, text = line[:1], line[1:]
        assert tag in (" ", "-", "+"), line
        if tag in (" ", "-"):
            assert old_lines[old_no - 1] == text, (old_no, text)
            old_no += 1
        if tag in (" ", "+"):
            assert new_lines[new_no - 1] == text, (new_no, text)
            new_no += 1
    return hunks


def test_diff_compares_the_real_bytes_with_true_line_numbers_and_masks_in_place(make_site, capsys):
    """The diff is of the source and resubmission bytes as they are (CRLF, one-line objects, number
    spellings, far-apart changes in two hunks): each line is the file's line of that number, with
    every value under `secrets` (nested, non-object, numbers) and `blob_sas_url` masked alike on both
    sides, so only the real changes show; no sensitive value is anywhere in the output."""
    site = make_site()
    sensitive = ['"Bearer cw-canary-1"', '"cw-nested-key"', '"cw-canary-2"', "987654321", '"cw-canary-3"',
                 json.dumps(SAS_URL)]
    filler = "".join(f"    {n},\r\n" for n in range(12))
    source = (
        "{\r\n"
        f'  "blob_sas_url": {json.dumps(SAS_URL)},\r\n'
        '  "apply_at": "2026-01-01T09:30+5:30",\r\n'
        '  "weird": [1.0, 1e3, -0, null, true], "compact": {"a":1,"b":[2,3]},\r\n'
        f'  "filler": [\r\n{filler}    12\r\n  ],\r\n'
        '  "external_connections": {\r\n'
        '    "hr": {"baseurl": "https://hr.invalid", "server_cert": "pki/erp.pem",\r\n'
        '           "secrets": {"nested": {"cw-nested-key": "cw-canary-2"}, "pin": 987654321}},\r\n'
        '    "erp": {\r\n'
        f'      "baseurl": "https://{HOST}:{site.server.port}",\r\n'
        '      "secrets": {"bearer_token": "Bearer cw-canary-1"},\r\n'
        '      "server_cert": "pki/erp.pem"\r\n'
        "    },\r\n"
        '    "crm": {"baseurl": "https://crm.invalid", "secrets": "cw-canary-3", "server_cert": "pki/erp.pem"}\r\n'
        "  }\r\n"
        "}\r\n"
    )
    site.json.write_bytes(source.encode())
    outputs = []
    for extra in ((), ("--write",)):
        code = cli_main(["fix", str(site.json), "--config", str(site.config), *extra])
        outputs.append(capsys.readouterr())
        # The JSON run must write its own file: the text run's, a second older, may hold an earlier apply_at.
        shutil.rmtree(site.outbox, ignore_errors=True)
        _, out = site.fix(capsys, *extra)
        outputs.append(json.dumps(out))
    plan = out["files"][0]
    assert set(plan["connections"]) == {"erp"}, plan
    new = Path(plan["output"]).read_bytes().decode()

    def masked_lines(text):
        for token in sensitive:
            assert token in text
            text = text.replace(token, '"<redacted>"')
        return text.split("\r\n")[:-1]

    assert _diff_lines_are_true(plan["diff"], masked_lines(source), masked_lines(new)) == 2
    assert '  "weird": [1.0, 1e3, -0, null, true], "compact": {"a":1,"b":[2,3]},' in plan["diff"]
    assert "-  \"apply_at\": \"2026-01-01T09:30+5:30\"" in plan["diff"]
    assert '            "secrets": {"nested": {"<redacted>": "<redacted>"}, "pin": "<redacted>"}},' in plan["diff"]
    for output in outputs:
        text = str(output)
        for token in sensitive + [SAS_TOKEN, "cw-canary"]:
            assert token.strip('"') not in text, token
    assert code in (0, 2)


def test_mask_sensitive_masks_every_spelling_and_keeps_every_line():
    """Every token under any connection's secrets (escaped or case-variant key, repeated, nested, not an
    object) and every top-level blob_sas_url is masked; keys of secrets and all layout stay."""
    from chainwarden.jsonedit import mask_sensitive, sensitive_spans

    text = (
        '\ufeff{"blob_sas_url": "sas-1", "BLOB_SAS_URL": "sas-2",\n'
        ' "external_connections": {\n'
        '  "a": {"secr\\u0065ts": {"token": "s-3",\n "list": ["s-4", 55555, {"deep": null}]},\n'
        '        "secrets": {"t": "s-6"}},\n'
        '  "b": {"Secrets": "s-7", "baseurl": "https://keep.example"},\n'
        '  "c": ["not", "a", "connection"]\n'
        ' },\n "other": "keep-me"}\n'
    )
    masked = mask_sensitive(text)
    assert masked.count("\n") == text.count("\n")
    for secret in ("sas-1", "sas-2", "s-3", "s-4", "55555", "deep", "null", "s-6", "s-7"):
        assert secret not in masked.replace("<redacted>", ""), secret
    for kept in ('"token"', '"list"', '"t"', "https://keep.example", '"not"', "keep-me", "secr\\u0065ts"):
        assert kept in masked, kept
    decoded = json.loads(masked.removeprefix("\ufeff"))
    assert decoded["blob_sas_url"] == decoded["BLOB_SAS_URL"] == "<redacted>"
    assert decoded["external_connections"]["a"]["secrets"] == {"t": "<redacted>"}  # the last repeat wins
    assert len(sensitive_spans(text)) == 9
    with pytest.raises(ValueError):
        sensitive_spans("[1, 2]")


def test_sas_url_never_in_check_or_fix_output_or_logs(make_site, capsys, caplog):
    """blob_sas_url's value (repeated, so that key is also reported as a duplicate) never appears in
    check or fix output, text or JSON, dry run or --write, nor in any log record at debug level,
    nor in the daemon's log or metrics (regenerating, at debug level)."""
    import logging

    site = make_site()
    site.json.write_text(site.source_text.replace("{\n", "{\n" + f'  "blob_sas_url": "{SAS_URL}x",\n', 1))
    from daemonproc import DaemonProcess, free_port

    config = site.config.read_text()
    site.config.write_text(
        f'[watch]\nconnections = ["{site.json}"]\n[log]\nlevel = "debug"\n'
        f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
        + config.replace("[regenerate]\n", "[regenerate]\nenabled = true\n")
    )
    with DaemonProcess(site.config) as daemon:
        daemon.wait_value(
            "chainwarden_bundle_regenerations_total", 1.0, file=str(site.json), connection="erp", outcome="written"
        )
        scrape = daemon.scrape()
    assert "DEBUG" in daemon.log and "resubmission" in daemon.log
    daemon_output = daemon.log + scrape
    site.config.write_text(config)
    for stale in site.outbox.iterdir():
        stale.unlink()
    caplog.set_level(logging.DEBUG)
    seen = []
    for command in ("check", "fix"):
        for extra in ((), ("--format", "json"), ("--write",), ("--write", "--format", "json")):
            if command == "check" and "--write" in extra:
                extra = (*[e for e in extra if e != "--write"], "--offline")
            code = cli_main([command, str(site.json), "--config", str(site.config), *extra])
            captured = capsys.readouterr()
            seen.append((command, extra, code, captured.out + captured.err))
    assert any('"blob_sas_url": duplicate key' in text for *_, text in seen)  # the error path was taken
    assert any("<redacted>" in text for command, _, _, text in seen if command == "fix")
    assert any("resubmission" in r.getMessage() and "written" in r.getMessage() for r in caplog.records)
    seen.append(("daemon", (), 0, daemon_output))
    seen.append(("logs", (), 0, "\n".join(r.getMessage() for r in caplog.records)))
    for command, extra, code, text in seen:
        assert code in (0, 1, 2), (command, extra, text)
        assert SAS_TOKEN not in text and "cwacct.blob" not in text, (command, extra)


# --------------------------------------------------------------------------------------------
# Where a root was admitted from, and why none could be


def _presenting_site(tmp_path, *, regenerate_roots: str | None, label="Presented"):
    """The endpoint presents leaf, intermediate and root; the bundle holds only the intermediate;
    [verify] trusted_roots (check's) holds the root."""
    pki = pkigen.three_tier(HOST, label=label)
    (tmp_path / "verify-roots").mkdir()
    (tmp_path / "verify-roots" / "root.pem").write_bytes(pki.root.pem)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.intermediate.pem)
    server = PythonTLSServer.from_issued(pki.leaf, pki.intermediate, pki.root)
    source = tmp_path / "prod.json"
    connection = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
    source.write_text(json.dumps({"external_connections": {"erp": connection}}, indent=2))
    config = tmp_path / "cw.toml"
    regenerate = f'trusted_roots = "{regenerate_roots}"\n' if regenerate_roots else ""
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n[verify]\ntimeout = "5s"\n'
        f'trusted_roots = "{tmp_path / "verify-roots"}"\n'
        f'[regenerate]\n{regenerate}outbox = "{tmp_path / "outbox"}"\n'
    )
    return pki, server, source, config


def test_a_root_also_presented_is_labelled_by_the_store_it_was_admitted_from(tmp_path, capsys):
    """The root is in [regenerate] trusted_roots and the endpoint presents it too: it was admitted from
    the store, and both text and JSON say so; "endpoint" is never a root's origin."""
    roots = tmp_path / "roots"
    roots.mkdir()
    pki, server, source, config = _presenting_site(tmp_path, regenerate_roots=str(roots))
    (roots / "root.pem").write_bytes(pki.root.pem)
    with server:
        code = cli_main(["fix", str(source), "--config", str(config), "--format", "json"])
        out = json.loads(capsys.readouterr().out)
        cli_main(["fix", str(source), "--config", str(config)])
        text = capsys.readouterr().out
    assert code == 0, out
    root_subject = pki.root.cert.subject.rfc4514_string()
    assert out["files"][0]["bundles"][0]["added"] == [
        {"subject": root_subject, "origin": f"trusted_roots: the root directory {roots}"}
    ]
    (root_line,) = [line for line in text.splitlines() if line.strip().startswith(root_subject)]
    assert root_line.endswith(f"+ added from trusted_roots: the root directory {roots}"), root_line
    assert "added from endpoint" not in text


@pytest.mark.parametrize("store", ["certifi", "folder"])
def test_no_root_says_which_store_was_searched_what_was_presented_and_what_to_set(tmp_path, capsys, store):
    """No trusted root: the message names the store fix searched (certifi's by default, else the
    configured folder), the root the endpoint presented that is not in it, and the setting to
    change ([regenerate] trusted_roots, not check's [verify] trusted_roots, which holds the root)."""
    folder = tmp_path / "roots"
    folder.mkdir()
    (folder / "other.pem").write_bytes(pkigen.make_root("Some Other Root").pem)
    configured = str(folder) if store == "folder" else None
    pki, server, source, config = _presenting_site(tmp_path, regenerate_roots=configured)
    with server:
        code = cli_main(["check", str(source), "--config", str(config), "--format", "json"])
        capsys.readouterr()
        assert code == 2  # the bundle lacks its root, whichever store check uses
        code = cli_main(["fix", str(source), "--config", str(config), "--format", "json"])
        out = json.loads(capsys.readouterr().out)
    assert code == 2
    (failure,) = out["files"][0]["failures"]
    message = failure["message"]
    searched = "Mozilla's root store (certifi)" if store == "certifi" else f"the root directory {folder}"
    assert f"the trusted root store searched, {searched}" in message, message
    root_subject = pki.root.cert.subject.rfc4514_string()
    assert f"the endpoint presented the root {root_subject}, which is not in that store" in message, message
    assert f"the chain stops at {pki.intermediate.cert.subject.rfc4514_string()}" in message, message
    assert "set [regenerate] trusted_roots" in message and "[verify] trusted_roots only serves" in message
    assert "no path to a root in the bundle or the trusted root store" not in message


# --------------------------------------------------------------------------------------------
# Exit codes: the connections as they will be once the planned bundles are in place


def test_exit_code_is_what_remains_once_the_planned_bundles_are_in_place(tmp_path, capsys):
    """A fixable connection whose leaf expires within warn_days: once its new bundle is in place a
    warning remains, so fix exits 1, dry run and --write alike, and says what remains. A write that
    fails leaves it broken: 2."""
    root = pkigen.make_root("Soon Root")
    inter = pkigen.make_intermediate("Soon Issuing CA", root)
    leaf = pkigen.make_leaf([HOST], inter, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    (tmp_path / "inter").mkdir()
    (tmp_path / "inter" / "i.pem").write_bytes(inter.pem)
    (tmp_path / "roots").mkdir()
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(root.pem)
    with PythonTLSServer.from_issued(leaf) as server:
        source = tmp_path / "prod.json"
        connection = {"baseurl": f"https://{HOST}:{server.port}", "server_cert": str(bundle)}
        source.write_text(json.dumps({"external_connections": {"erp": connection}}, indent=2))
        config = tmp_path / "cw.toml"
        config.write_text(
            f'[state]\ndir = "{tmp_path / "state"}"\n[regenerate]\ntrusted_roots = "{tmp_path / "roots"}"\n'
            f'intermediates_dir = "{tmp_path / "inter"}"\noutbox = "{tmp_path / "out"}"\n'
        )
        args = ["fix", str(source), "--config", str(config)]
        codes = {}
        for name, extra in {"dry": (), "dry json": ("--format", "json"), "write": ("--write",)}.items():
            codes[name] = cli_main([*args, *extra])
            captured = capsys.readouterr().out
            if name == "dry json":
                plan = json.loads(captured)["files"][0]
            if name == "dry":
                text = captured
        (tmp_path / "blocked").write_text("a file where the outbox folder should be")
        codes["write fails"] = cli_main([*args, "--write", "--outbox", str(tmp_path / "blocked")])
        failed = capsys.readouterr().out
    assert codes == {"dry": 1, "dry json": 1, "write": 1, "write fails": 2}, codes
    assert set(plan["connections"]) == {"erp"} and not plan["failures"]
    assert [(r["connection"], r["code"]) for r in plan["remaining"]] == [("erp", "expiring_soon")]
    assert "  remains: warning expiring_soon (erp)" in text.splitlines()
    assert text.splitlines()[-1] == "once these bundles are in place: 1 connection: 0 ok, 1 warning, 0 errors"
    assert "writing failed" in failed.splitlines()[-1]


def test_fix_offline_keeps_endpoint_not_verified_as_a_remaining_warning(make_site, capsys):
    """--offline: the fixable connection is fixed from its cached chain; a healthy one without a cached
    or bundled leaf keeps endpoint_not_verified, a warning, so fix exits 1 as check --offline does,
    and says why."""
    site = make_site()
    ChainCache(site.tmp / "state" / "chains").store(HOST, site.server.port, (site.leaf.cert,))
    (site.tmp / "pki" / "crm.pem").write_bytes(pkigen.pem_bundle(site.inter, site.root))
    site.json.write_text(
        site.source_text.replace(
            '\n  }\n}', ',\n    "crm": {"baseurl": "https://crm.invalid", "server_cert": "pki/crm.pem"}\n  }\n}'
        )
    )
    code, out = site.fix(capsys, "--offline")
    plan = out["files"][0]
    assert code == 1, out
    assert set(plan["connections"]) == {"erp"} and not plan["failures"] and not plan["unfixable"]
    assert {(r["connection"], r["code"]) for r in plan["remaining"]} == {("crm", "endpoint_not_verified")}
    check = cli_main(["check", str(site.json), "--offline", "--config", str(site.config), "--connection", "crm"])
    capsys.readouterr()
    assert check == 1


def test_fix_exit_codes_are_documented_as_implemented(capsys):
    """README's fix section and `fix --help` state the rule the code follows, not "as check"."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    fix_section = readme[readme.index("### `fix`") : readme.index("## Running the daemon")]
    assert "Exit codes\n  as `check`" not in fix_section
    assert cli_main(["fix", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    section = " ".join(fix_section.split())
    for phrase in ("once the planned bundles are in place", "with or without --write", "warnings remain",
                   "a fix that failed (fix_failed)", "a write that failed", "endpoint_not_verified"):
        assert phrase in help_text, phrase
        assert phrase in section.replace("**", "").replace("`", ""), phrase


# --------------------------------------------------------------------------------------------
# Secrets below `secrets`, credentials in a baseurl: never in check or fix output, nor in logs


def test_secret_key_paths_and_baseurl_credentials_never_shown(make_site, capsys, caplog):
    """A key repeated inside a secret's value (the key is the token), credentials in a baseurl's user
    information and query: check and fix, text and JSON, dry run and --write, and every log record at
    debug level show none of them; the fix diff masks the baseurl's user information and query in place,
    keeping its host and the line numbers."""
    import logging

    site = make_site()
    site.json.write_text(
        site.source_text.replace(
            "\n    }\n  }\n}",
            "\n    },\n"
            '    "crm": {"baseurl": "https://svc:PW-canary-77@crm.invalid/api", "server_cert": "pki/erp.pem",\n'
            '            "secrets": {"bearer_token": {"Bearer SECRETLEAK2": 1, "Bearer SECRETLEAK2": 2}}},\n'
            '    "hr": {"baseurl": "https://hr.invalid/x?sig=SIG-canary-88&code=CODE-canary-99", '
            '"server_cert": "pki/erp.pem"}\n'
            "  }\n}",
        )
    )
    caplog.set_level(logging.DEBUG)
    seen = {}
    for command in ("check", "fix"):
        for extra in ((), ("--format", "json"), ("--write",), ("--write", "--format", "json")):
            if command == "check" and "--write" in extra:
                continue
            code = cli_main([command, str(site.json), "--config", str(site.config), *extra])
            captured = capsys.readouterr()
            seen[(command, extra)] = (code, captured.out + captured.err)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for (command, extra), (code, text) in [*seen.items(), (("logs", ()), (0, logs))]:
        assert code in (0, 1, 2), (command, extra, text)
        for needle in ("SECRETLEAK2", "PW-canary", "svc:", "SIG-canary", "CODE-canary", "sig=", "code="):
            assert needle not in text, (command, extra, needle)
    check_text = seen[("check", ())][1]
    assert 'connection "crm", key "secrets": a duplicate key inside it' in check_text
    assert 'key "baseurl": has user information before the host' in check_text
    assert 'key "secrets": a duplicate key inside it' in check_text
    diff = json.loads(seen[("fix", ("--format", "json"))][1])["files"][0]["diff"]
    assert ' "crm": {"baseurl": "<redacted>", "server_cert": "pki/erp.pem",' in diff
    assert ' "hr": {"baseurl": "https://hr.invalid/x?<redacted>", "server_cert": "pki/erp.pem"}' in diff


def test_mask_sensitive_masks_baseurl_credentials_inside_the_string():
    """A plain baseurl keeps scheme, host, port and path, and only its query/fragment is masked, inside
    its string token (escapes read as what they stand for); any other (user information, odd
    characters a parser might split otherwise) is masked whole; lines are kept."""
    from chainwarden.jsonedit import mask_sensitive

    text = (
        '{"external_connections": {\n'
        ' "a": {"baseurl": "https://u:p@h.example:8443/p?sig=s1#f"},\n'
        ' "b": {"BaseURL": "https://tok\\u0040h.example/x\\u003ftoken=t2"},\n'
        ' "c": {"baseurl": "https://h.example/api"},\n'
        ' "d": {"baseurl": "user:pw@h.example"}\n'
        "}}\n"
    )
    masked = mask_sensitive(text)
    assert masked.count("\n") == text.count("\n")
    decoded = json.loads(masked)["external_connections"]
    assert decoded["a"]["baseurl"] == "<redacted>"
    assert decoded["b"]["BaseURL"] == "<redacted>"
    assert decoded["c"]["baseurl"] == "https://h.example/api"
    assert decoded["d"]["baseurl"] == "<redacted>"
    plain = json.loads(mask_sensitive('{"external_connections": {"e": {"baseurl": "https://h.example/x?sig=s3"}}}'))
    assert plain["external_connections"]["e"]["baseurl"] == "https://h.example/x?<redacted>"
    for odd in ("https://h.example\\u:p@h/", " https://u:p@h/", "ht\ttps://u:p@h/", "https://h/a;token=t4"):
        document = json.dumps({"external_connections": {"f": {"baseurl": odd}}})
        assert json.loads(mask_sensitive(document))["external_connections"]["f"]["baseurl"] == "<redacted>", odd
    for secret in ("u:p", "s1", "#f", "tok", "t2", "user:pw"):
        assert secret not in masked, secret


# --------------------------------------------------------------------------------------------
# What fix says it does, what remains, and the exit code agree


def _summary_counts(text: str) -> tuple[int, int, int]:
    match = re.search(r": (\d+) connections?: (\d+) ok, (\d+) warnings?, (\d+) errors?", text.splitlines()[-1])
    assert match, text
    return int(match[2]), int(match[3]), int(match[4])


def _worst_remaining(plan) -> dict[str, str]:
    worst: dict[str, str] = {}
    for item in plan["remaining"]:
        if item["connection"] is not None and worst.get(item["connection"]) != "error":
            worst[item["connection"]] = item["severity"]
    return worst


def test_fix_names_only_the_connections_it_moves_and_remains_agree_with_counts_and_exit(make_site, capsys):
    """erp is fixed; x shares erp's bundle but its endpoint is down and its leaf unknown, so it stays on
    the old bundle: "replaces ... for erp" must not name x. x and y are errors once the bundles are in
    place: the remaining list says so (not only their endpoint_not_verified warning), as the summary
    counts and the exit code do."""
    from daemonproc import free_port

    site = make_site()
    (site.tmp / "pki" / "y.pem").write_bytes(site.root.pem)
    dead = free_port()
    site.json.write_text(
        site.source_text.replace(
            "\n    }\n  }\n}",
            "\n    },\n"
            f'    "x": {{"baseurl": "https://{HOST}:{dead}", "server_cert": "pki/erp.pem"}},\n'
            f'    "y": {{"baseurl": "https://{HOST}:{dead}", "server_cert": "pki/y.pem"}}\n'
            "  }\n}",
        )
    )
    code, out = site.fix(capsys)
    text_code = cli_main(["fix", str(site.json), "--config", str(site.config)])
    text = capsys.readouterr().out
    plan = out["files"][0]
    assert set(plan["connections"]) == {"erp"}
    assert [b["connections"] for b in plan["bundles"]] == [["erp"]]
    (line,) = [line for line in text.splitlines() if line.startswith("  new bundle ")]
    assert line.endswith(f"(replaces {site.bundle} for erp):"), line
    worst = _worst_remaining(plan)
    assert worst == {"x": "error", "y": "error"}, plan["remaining"]
    assert "  remains: error endpoint_unreachable (x, y)" in text.splitlines()
    ok, warnings, errors = _summary_counts(text)
    assert (warnings, errors) == (
        sum(1 for s in worst.values() if s == "warning"),
        sum(1 for s in worst.values() if s == "error"),
    )
    assert ok == 1 and code == text_code == 2


def test_fix_with_connection_counts_every_connection_of_the_resubmission(make_site, capsys):
    """--connection erp fixes only erp, but the resubmission JSON carries crm too, still broken (a bundle
    could mend it): fix says crm is left broken, counts it, and exits 2, not 0."""
    site = make_site()
    (site.tmp / "pki" / "crm.pem").write_bytes(site.root.pem)
    site.json.write_text(
        site.source_text.replace(
            "\n    }\n  }\n}",
            "\n    },\n"
            f'    "crm": {{"baseurl": "https://{HOST}:{site.server.port}", "server_cert": "pki/crm.pem"}}\n'
            "  }\n}",
        )
    )
    code, out = site.fix(capsys, "--connection", "erp", "--write")
    plan = out["files"][0]
    assert code == 2, out
    assert set(plan["connections"]) == {"erp"} and plan["written"] is True
    assert plan["not_planned"] == ["crm"]
    assert _worst_remaining(plan) == {"crm": "error"}
    written = json.loads(Path(plan["output"]).read_text())["external_connections"]
    assert written["crm"]["server_cert"] == os.path.relpath(site.tmp / "pki" / "crm.pem", site.outbox)
    text_code = cli_main(["fix", str(site.json), "--config", str(site.config), "--connection", "erp"])
    text = capsys.readouterr().out
    assert text_code == 2
    assert any(line.startswith("  left broken (only erp is fixed with --connection") and line.endswith(": crm")
               for line in text.splitlines()), text
    assert _summary_counts(text) == (1, 0, 1)
    # The healthy case still exits 0: nothing else in the file is broken.
    site.json.write_text(site.source_text)
    code, out = site.fix(capsys, "--connection", "erp")
    assert code == 0 and out["files"][0]["not_planned"] == [], out
