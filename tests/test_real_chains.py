"""Real captured public chains (read in place from ../shared/data): ok at capture time, broken when cut or aged."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from chainwarden.cli import main as cli_main
from chainwarden.report import Code
from conftest import load_case, real_chain_cases

SITES = real_chain_cases()


def _load(site):
    case = load_case(site)
    base = case["dir"]
    from cryptography import x509

    presented = x509.load_pem_x509_certificates((base / "presented-chain.pem").read_bytes())
    root = (base / "root.pem").read_bytes()
    return case, base, presented, root


def _check(tmp_path, capsys, bundle: bytes, chain_file, host, at) -> tuple[int, dict]:
    bundle_file = tmp_path / "bundle.pem"
    bundle_file.write_bytes(bundle)
    args = ["check", "--bundle", str(bundle_file), "--chain", str(chain_file), "--host", host, "--at", at]
    code = cli_main([*args, "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    return code, out["results"][0]


def _path_pem(result_chain, presented, root_pem):
    """PEM of the intermediates on the path the engine chose plus the root: what an admin would bundle."""
    by_sha = {}
    import hashlib

    for cert in presented[1:]:
        by_sha[hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()] = cert.public_bytes(Encoding.PEM)
    return b"".join(by_sha[e["sha256"]] for e in result_chain if e["sha256"] in by_sha) + root_pem


def _codes(result):
    return {p["code"] for p in result["problems"]}


@pytest.mark.parametrize("site", SITES)
def test_presented_intermediates_plus_root_is_ok(site, tmp_path, capsys):
    """Bundle = the path's intermediates + root.pem: verdict ok at the capture's validation_time."""
    case, base, presented, root = _load(site)
    bundle = b"".join(c.public_bytes(Encoding.PEM) for c in presented[1:]) + root
    chain_file = base / "presented-chain.pem"
    code, result = _check(tmp_path, capsys, bundle, chain_file, case["host"], case["validation_time"])
    assert result["complete"], result["problems"]
    assert not [p for p in result["problems"] if p["severity"] == "error"], result["problems"]
    # The minimal bundle (only what the chosen path uses) is fully ok, exit 0.
    minimal = _path_pem(result["chain"], presented, root)
    code, result = _check(tmp_path, capsys, minimal, chain_file, case["host"], case["validation_time"])
    assert code == 0 and result["verdict"] == "ok", result["problems"]
    assert result["chain"][0]["role"] == "leaf" and result["chain"][-1]["role"] == "root"
    assert result["chain"][-1]["source"] == "bundle"


@pytest.mark.parametrize("site", SITES)
def test_root_only_bundle_misses_intermediate(site, tmp_path, capsys):
    """Bundle = root only: missing_intermediate, exit 2."""
    case, base, presented, root = _load(site)
    code, result = _check(tmp_path, capsys, root, base / "presented-chain.pem", case["host"], case["validation_time"])
    assert code == 2 and Code.MISSING_INTERMEDIATE.value in _codes(result)
    assert not result["complete"]


@pytest.mark.parametrize("site", SITES)
def test_intermediates_only_bundle_misses_root(site, tmp_path, capsys):
    """Bundle = presented intermediates only: missing_root, exit 2."""
    case, base, presented, root = _load(site)
    bundle = b"".join(c.public_bytes(Encoding.PEM) for c in presented[1:])
    code, result = _check(tmp_path, capsys, bundle, base / "presented-chain.pem", case["host"], case["validation_time"])
    assert code == 2 and Code.MISSING_ROOT.value in _codes(result), result["problems"]


@pytest.mark.parametrize("site", SITES)
def test_clock_after_leaf_expiry_is_expired(site, tmp_path, capsys):
    """The same complete bundle a day after the leaf's notAfter: expired, exit 2."""
    case, base, presented, root = _load(site)
    bundle = b"".join(c.public_bytes(Encoding.PEM) for c in presented[1:]) + root
    later = (presented[0].not_valid_after_utc + dt.timedelta(days=1)).isoformat()
    code, result = _check(tmp_path, capsys, bundle, base / "presented-chain.pem", case["host"], later)
    assert code == 2 and Code.EXPIRED.value in _codes(result)
