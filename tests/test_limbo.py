"""x509-limbo conformance: our verdict agrees with the suite except where the JVM-lenient policy differs on purpose."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import pytest
from cryptography import x509

from chainwarden.certinfo import describe
from chainwarden.chain import Inputs, Link, diagnose
from chainwarden.report import Source
from conftest import shared_data_dir

# Cases where chainwarden deliberately answers differently from x509-limbo, with the reason.
PROFILE_RULES = "an RFC 5280 / CA/B profile rule the JVM's PKIX validator does not enforce"
ANCHOR_RULE = "the trust anchor is not self-signed; chainwarden requires the bundle to hold a self-signed root"
ANCHOR_EXTENSIONS = "PKIX validators do not process a trust anchor's extensions"
# Stricter than limbo, which validates paths, not a TLS server's use of its certificate:
TLS_KEY_USAGE = "the leaf's keyUsage lacks digitalSignature, which the JVM requires of a TLS server's certificate"
DIVERGENCES = {
    "cve::cve-2024-0567": ANCHOR_RULE,
    "rfc5280::root-and-intermediate-swapped": ANCHOR_RULE,
    "pathlen::max-chain-depth-0-exhausted": "a caller-chosen max_chain_depth; Windchill+ sets none",
    "pathlen::max-chain-depth-1-exhausted": "a caller-chosen max_chain_depth; Windchill+ sets none",
    "rfc5280::aki::leaf-missing-aki": PROFILE_RULES,
    "rfc5280::aki::intermediate-missing-aki": PROFILE_RULES,
    "rfc5280::nc::permitted-dns-match-noncritical": PROFILE_RULES,
    "rfc5280::nc::invalid-dnsname-leading-period": PROFILE_RULES,
    "rfc5280::nc::not-allowed-in-ee-noncritical": PROFILE_RULES,
    "rfc5280::nc::not-allowed-in-ee-critical": PROFILE_RULES,
    "rfc5280::nc::nc-permits-invalid-dns-san": PROFILE_RULES,
    "rfc5280::pc::ica-noncritical-pc": PROFILE_RULES,
    "rfc5280::san::underscore-dns": PROFILE_RULES,
    "rfc5280::serial::too-long": PROFILE_RULES,
    "rfc5280::serial::zero": PROFILE_RULES,
    "rfc5280::ski::root-missing-ski": PROFILE_RULES,
    "rfc5280::ski::intermediate-missing-ski": PROFILE_RULES,
    "rfc5280::root-missing-basic-constraints": ANCHOR_EXTENSIONS,
    "rfc5280::root-non-critical-basic-constraints": PROFILE_RULES,
    "rfc5280::leaf-ku-keycertsign": PROFILE_RULES,
    "pathlen::validation-ignores-pathlen-in-leaf": TLS_KEY_USAGE,
    "rfc5280::ca-as-leaf": TLS_KEY_USAGE,
    "rfc5280::validity::notafter-fractional": "the JVM compares validity to the millisecond: 5 ms after notAfter "
    "is expired (limbo allows the whole second)",
    "rfc5280::validity::notafter-exact": "OpenSSL takes a certificate for expired at notAfter itself (the JVM a "
    "moment later); chainwarden is never more lenient than either",
}
SKIPPED_NAMESPACES = {"webpki": "CA/Browser-Forum rules", "crl": "revocation is not checked"}


def _cases():
    try:
        path = shared_data_dir("x509-limbo", "limbo.json")
    except pytest.skip.Exception:
        return []
    data = json.loads(path.read_text())
    return [
        t
        for t in data["testcases"]
        if t["id"].split("::")[0] not in SKIPPED_NAMESPACES and t["validation_kind"] == "SERVER"
    ]


def _load(pem: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return describe(x509.load_pem_x509_certificate(pem.encode()))


def our_verdict(case) -> str:
    try:
        trusted = [_load(c) for c in case["trusted_certs"]]
        intermediates = [_load(c) for c in case["untrusted_intermediates"]]
        leaf = _load(case["peer_certificate"])
    except ValueError:
        return "FAILURE"  # unparseable input never validates
    when = case["validation_time"]
    now = dt.datetime.fromisoformat(when) if when else dt.datetime.now(dt.UTC)
    host = (case.get("expected_peer_name") or {}).get("value")
    d = diagnose(
        Link(leaf, Source.ENDPOINT),
        Inputs(bundle=tuple(trusted) + tuple(intermediates)),
        now,
        hostname=host,
        warn_days=0,
    )
    # Limbo separates trusted from untrusted certificates: the path must end at a trusted one.
    return "SUCCESS" if d.valid and d.path[-1].cert in trusted else "FAILURE"


CASES = _cases()


def test_limbo_present_or_skipped():
    """The suite is read in place from ../shared/data (skipped with a reason when absent)."""
    shared_data_dir("x509-limbo", "limbo.json")
    assert len(CASES) > 100


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_limbo_case(case):
    """Our verdict equals limbo's expected result, or differs exactly where documented."""
    expected = case["expected_result"]
    got = our_verdict(case)
    if case["id"] in DIVERGENCES:
        assert got != expected, f"documented divergence no longer diverges: {case['id']}"
        # Lenient only on profile rules and trust-anchor extensions, never on a cryptographic or
        # structural reason; stricter only where a TLS server's certificate must be more than a path.
        return
    assert got == expected, case["description"][:300]
