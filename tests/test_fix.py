"""`chainwarden fix`: completing bundles from AIA, offline folders and the root store; the resubmission JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
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
            '{\n  "blob_sas_url": "sas",\n  "apply_at": "2026-01-01T09:30+5:30",\n'
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
    """Two connections share a bundle; only the broken one moves, and the other's chain stays in the new bundle."""
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
    # B's root is not "unrelated" for A while B's issuer is unknown: nothing but B is wrong, and B is fixed.
    assert code == 0, out
    plan = out["files"][0]
    assert set(plan["connections"]) == {"b"}
    new = json.loads(Path(plan["output"]).read_text())["external_connections"]
    assert new["a"]["server_cert"] == str(shared) and new["b"]["server_cert"] == plan["bundles"][0]["file"]
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
    assert all(origin.startswith(("intermediates_dir:", "store:")) for _, origin in bundle.added)


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
