"""AIA fetching and issuer finding against a real loopback HTTP server (tests/servers.py)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID

from chainwarden import aia as aia_module
from chainwarden.aia import (
    Candidate,
    FetchPolicy,
    FetchResult,
    IntermediateFinder,
    fetch_url,
    parse_certificates,
)
from chainwarden.pkigen import Issued, make_intermediate, make_leaf, make_root, pem_bundle
from servers import AIAServer, Body, Oversized, PythonTLSServer, Redirect, Slow, Status

MARGIN = 2.0  # seconds of slack on timing assertions (slow CI machines)
HINT = "(set [regenerate] allow_private_aia = true for internal CAs)"


@dataclasses.dataclass(frozen=True)
class CA:
    root: Issued
    intermediate: Issued


@pytest.fixture(scope="module")
def ca() -> CA:
    root = make_root("AIA Test Root CA", kind="ec")
    return CA(root, make_intermediate("AIA Test Issuing CA", root, kind="ec"))


@pytest.fixture
def server() -> Iterator[AIAServer]:
    with AIAServer() as aia:
        yield aia


@pytest.fixture
def policy() -> FetchPolicy:
    """Loopback must be allowed for the test server; everything else is the default."""
    return FetchPolicy(timeout=5.0, allow_private=True)


def _p7(encoding: Encoding, *items: Issued) -> bytes:
    return pkcs7.serialize_certificates([item.cert for item in items], encoding)


def _leaf(ca: CA, aia_url: str | None) -> x509.Certificate:
    return make_leaf(["erp.example.test"], ca.intermediate, kind="ec", aia_url=aia_url).cert


# --------------------------------------------------------------------------------------------
# Response formats


def test_der_response(server: AIAServer, policy: FetchPolicy, ca: CA) -> None:
    """A DER certificate body is returned as that one certificate."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    result = fetch_url(server.url("/issuing.der"), policy)
    assert result.error is None
    assert result.certificates == (ca.intermediate.cert,)
    assert result.from_cache is False


def test_pem_response_with_several_certificates(
    server: AIAServer, policy: FetchPolicy, ca: CA
) -> None:
    """A PEM body yields every CERTIFICATE block in order."""
    server.set("/chain.pem", Body(pem_bundle(ca.intermediate, ca.root), "application/x-pem-file"))
    result = fetch_url(server.url("/chain.pem"), policy)
    assert result.error is None
    assert result.certificates == (ca.intermediate.cert, ca.root.cert)


def test_pkcs7_der_response(server: AIAServer, policy: FetchPolicy, ca: CA) -> None:
    """A DER PKCS#7 certs-only body yields its certificates."""
    server.set("/issuing.p7c", Body(_p7(Encoding.DER, ca.intermediate), "application/pkcs7-mime"))
    result = fetch_url(server.url("/issuing.p7c"), policy)
    assert result.error is None
    assert result.certificates == (ca.intermediate.cert,)


def test_pkcs7_pem_response(server: AIAServer, policy: FetchPolicy, ca: CA) -> None:
    """A PEM PKCS7 block yields its certificates."""
    body = _p7(Encoding.PEM, ca.intermediate, ca.root)
    server.set("/issuing.p7b", Body(body, "application/x-pkcs7-certificates"))
    result = fetch_url(server.url("/issuing.p7b"), policy)
    assert result.error is None
    assert set(result.certificates) == {ca.intermediate.cert, ca.root.cert}


def test_garbage_body_is_an_error_that_does_not_quote_it(
    server: AIAServer, policy: FetchPolicy
) -> None:
    """A body that is no certificate fails with a sentence naming the URL, not the body."""
    server.set("/junk", Body(b"<html>SECRET-MARKER internal error page</html>", "text/html"))
    url = server.url("/junk")
    result = fetch_url(url, policy)
    assert result.certificates == ()
    assert result.error is not None
    assert result.error.startswith(f"AIA {url}: response is not a certificate")
    assert "SECRET-MARKER" not in result.error


def test_not_found_is_an_error(server: AIAServer, policy: FetchPolicy) -> None:
    """A 404 answer is an error naming the URL and the status."""
    url = server.url("/missing.der")
    result = fetch_url(url, policy)
    assert result.error == f"AIA {url}: HTTP 404 Not Found"
    assert result.certificates == ()


def test_server_error_status_is_an_error(server: AIAServer, policy: FetchPolicy) -> None:
    """A 500 answer is an error naming the status."""
    server.set("/broken", Status(500))
    result = fetch_url(server.url("/broken"), policy)
    assert result.error is not None and "HTTP 500" in result.error


# --------------------------------------------------------------------------------------------
# Redirects


def test_redirect_is_followed(server: AIAServer, policy: FetchPolicy, ca: CA) -> None:
    """A redirect to another path is followed and the target's certificate returned."""
    server.set("/old.der", Redirect("/new.der", status=301))
    server.set("/new.der", Body(ca.intermediate.der))
    result = fetch_url(server.url("/old.der"), policy)
    assert result.error is None
    assert result.certificates == (ca.intermediate.cert,)
    assert result.url == server.url("/old.der")
    assert server.hits == {"/old.der": 1, "/new.der": 1}


def test_redirect_loop_is_an_error(server: AIAServer, policy: FetchPolicy) -> None:
    """Two paths redirecting to each other end in a 'redirect loop' error, each hit once."""
    server.redirect_loop("/a", "/b")
    result = fetch_url(server.url("/a"), policy)
    assert result.error is not None
    assert result.error.startswith(f"AIA {server.url('/a')}: redirect loop")
    assert server.hits == {"/a": 1, "/b": 1}


def test_max_redirects_are_followed_but_not_one_more(
    server: AIAServer, policy: FetchPolicy, ca: CA
) -> None:
    """Exactly max_redirects hops succeed; one more is an error and the target is never asked."""
    for hop in range(4):
        server.set(f"/r{hop}", Redirect(f"/r{hop + 1}"))
    server.set("/r4", Body(ca.intermediate.der))
    limited = dataclasses.replace(policy, max_redirects=3)
    ok = fetch_url(server.url("/r1"), limited)
    assert ok.error is None and ok.certificates == (ca.intermediate.cert,)
    too_many = fetch_url(server.url("/r0"), limited)
    assert too_many.error is not None
    assert "more than 3 redirects" in too_many.error
    assert server.hits["/r4"] == 1  # only from the first fetch


def test_redirect_to_file_url_is_refused(server: AIAServer, policy: FetchPolicy) -> None:
    """A redirect to file:///etc/passwd is refused: only http and https are fetched."""
    server.set("/evil", Redirect("file:///etc/passwd"))
    result = fetch_url(server.url("/evil"), policy)
    assert result.error is not None
    assert "file:///etc/passwd" in result.error
    assert "only http:// and https:// URLs are fetched" in result.error
    assert result.certificates == ()


# --------------------------------------------------------------------------------------------
# Bounds


def test_slow_drip_is_cut_at_the_overall_deadline(server: AIAServer, ca: CA) -> None:
    """A body dripped every 0.2 s (never idle for the timeout) is cut at the 1 s deadline."""
    server.set("/slow.der", Slow(ca.intermediate.der, seconds=30.0, chunks=150))
    policy = FetchPolicy(timeout=1.0, allow_private=True)
    started = time.monotonic()
    result = fetch_url(server.url("/slow.der"), policy)
    elapsed = time.monotonic() - started
    assert result.error == f"AIA {server.url('/slow.der')}: timed out after 1 s"
    assert 0.9 <= elapsed < 1.0 + MARGIN


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "streamed"])
def test_oversized_body_is_an_error(server: AIAServer, declare_length: bool) -> None:
    """A body over max_bytes fails 'larger than N bytes', with or without Content-Length."""
    server.set("/big", Oversized(64 * 1024 * 1024, declare_length=declare_length))
    policy = FetchPolicy(timeout=10.0, max_bytes=4096, allow_private=True)
    started = time.monotonic()
    result = fetch_url(server.url("/big"), policy)
    assert result.error is not None
    assert "larger than 4096 bytes" in result.error
    assert time.monotonic() - started < MARGIN


# --------------------------------------------------------------------------------------------
# Scheme and address guard


@pytest.mark.parametrize(
    "url",
    [
        "ldap:///CN=Issuing%20CA,CN=AIA,DC=corp,DC=example?cACertificate",
        "file:///etc/passwd",
        "ftp://ftp.example.test/ca.der",
    ],
)
def test_non_http_scheme_is_refused(url: str, policy: FetchPolicy) -> None:
    """ldap:, file: and ftp: URLs are refused with a sentence naming the URL."""
    result = fetch_url(url, policy)
    assert result.error == f"AIA {url}: refused: only http:// and https:// URLs are fetched"


def test_loopback_is_refused_unless_allowed(server: AIAServer, ca: CA) -> None:
    """With allow_private=False a loopback URL is refused with the config hint, unasked."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    url = server.url("/issuing.der")
    result = fetch_url(url, FetchPolicy(timeout=5.0))
    assert result.error == f"AIA {url}: refused: 127.0.0.1 is a loopback address {HINT}"
    assert result.certificates == ()
    assert server.hits == {}


def test_loopback_is_fetched_when_allowed(server: AIAServer, ca: CA) -> None:
    """With allow_private=True the same loopback URL is fetched."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    result = fetch_url(server.url("/issuing.der"), FetchPolicy(timeout=5.0, allow_private=True))
    assert result.error is None and result.certificates == (ca.intermediate.cert,)
    assert server.hits == {"/issuing.der": 1}


def test_name_resolving_to_loopback_is_refused(server: AIAServer) -> None:
    """'localhost' is refused because of what it resolves to, and the sentence says so."""
    result = fetch_url(f"http://localhost:{server.port}/x.der", FetchPolicy(timeout=5.0))
    assert result.error is not None
    assert "refused: localhost resolves to " in result.error
    assert "a loopback address" in result.error and HINT in result.error
    assert server.hits == {}


def test_any_private_answer_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with one public and one private address is refused before any connect."""
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80)),
    ]

    def fake_getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
        return answers

    def no_connect(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("must not connect")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(aia_module, "_connect", no_connect)
    url = "http://pki.example.test/ca.der"
    result = fetch_url(url, FetchPolicy(timeout=5.0))
    assert result.error == (
        f"AIA {url}: refused: pki.example.test resolves to 10.1.2.3, a private address {HINT}"
    )


def test_redirect_target_is_checked_by_the_guard(
    server: AIAServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every redirect hop is resolved and judged again: a hop to a refused address stops it."""
    real = aia_module._non_public

    def only_127_0_0_2(address: Any) -> str | None:
        # Pretend the test server's 127.0.0.1 is public so only the redirect target is refused.
        return real(address) if str(address) == "127.0.0.2" else None

    monkeypatch.setattr(aia_module, "_non_public", only_127_0_0_2)
    server.set("/hop", Redirect("http://127.0.0.2/internal.der"))
    result = fetch_url(server.url("/hop"), FetchPolicy(timeout=5.0))
    assert result.error == (
        f"AIA {server.url('/hop')}: after redirect to http://127.0.0.2/internal.der: "
        f"refused: 127.0.0.2 is a loopback address {HINT}"
    )
    assert server.hits == {"/hop": 1}


def test_https_verifies_the_server_certificate(ca: CA) -> None:
    """https uses normal verification: a server with an untrusted certificate fails."""
    leaf = make_leaf(["127.0.0.1"], ca.intermediate, kind="ec")
    with PythonTLSServer.from_issued(leaf, ca.intermediate) as tls:
        url = f"https://127.0.0.1:{tls.port}/issuing.der"
        result = fetch_url(url, FetchPolicy(timeout=5.0, allow_private=True))
    assert result.error is not None
    assert result.error.startswith(f"AIA {url}: TLS certificate verification failed")


# --------------------------------------------------------------------------------------------
# Cache


def test_cache_hit_does_not_touch_the_server(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """A second fetch of a URL comes from the cache and the server is asked once."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    cached = dataclasses.replace(policy, cache_dir=str(tmp_path / "aia-cache"))
    first = fetch_url(server.url("/issuing.der"), cached)
    second = fetch_url(server.url("/issuing.der"), cached)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.certificates == second.certificates == (ca.intermediate.cert,)
    assert second.error is None
    assert server.hits == {"/issuing.der": 1}
    assert [p.suffix for p in (tmp_path / "aia-cache").iterdir()] == [".der"]


def test_cache_keeps_several_certificates(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """A response with several certificates is cached and served back with all of them."""
    server.set("/chain.pem", Body(pem_bundle(ca.intermediate, ca.root)))
    cached = dataclasses.replace(policy, cache_dir=str(tmp_path))
    fetch_url(server.url("/chain.pem"), cached)
    again = fetch_url(server.url("/chain.pem"), cached)
    assert again.from_cache
    assert set(again.certificates) == {ca.intermediate.cert, ca.root.cert}


def test_corrupted_cache_entry_is_refetched(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """A cache entry that no longer parses is ignored, refetched and rewritten."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    cached = dataclasses.replace(policy, cache_dir=str(tmp_path))
    fetch_url(server.url("/issuing.der"), cached)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"\x30\x82 truncated")
    result = fetch_url(server.url("/issuing.der"), cached)
    assert result.error is None and not result.from_cache
    assert result.certificates == (ca.intermediate.cert,)
    assert server.hits == {"/issuing.der": 2}
    assert parse_certificates(entry.read_bytes()) == (ca.intermediate.cert,)


def test_unwritable_cache_still_fetches_and_warns(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When cache_dir cannot be created the fetch succeeds and a warning is logged."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    cached = dataclasses.replace(policy, cache_dir=str(blocker / "aia-cache"))
    with caplog.at_level(logging.WARNING, logger="chainwarden.aia"):
        result = fetch_url(server.url("/issuing.der"), cached)
    assert result.error is None and result.certificates == (ca.intermediate.cert,)
    assert any("cannot store" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------------------------
# IntermediateFinder


def test_intermediates_dir_is_searched_first_without_network(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """A match in intermediates_dir is returned and the AIA URL is never fetched."""
    server.set("/issuing.der", Body(ca.intermediate.der))
    (tmp_path / "issuing.pem").write_bytes(ca.intermediate.pem)
    finder = IntermediateFinder(dataclasses.replace(policy, intermediates_dir=str(tmp_path)))
    candidates, errors = finder.issuers_for(_leaf(ca, server.url("/issuing.der")))
    assert candidates == [
        Candidate(ca.intermediate.cert, f"intermediates_dir:{tmp_path / 'issuing.pem'}")
    ]
    assert errors == []
    assert sum(server.hits.values()) == 0


def test_intermediates_dir_reads_der_and_pkcs7_and_skips_unusable_files(
    policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """DER and PKCS#7 files are indexed; junk and files over 1 MiB are skipped and reported."""
    (tmp_path / "a-root.der").write_bytes(ca.root.der)
    (tmp_path / "b-issuing.p7b").write_bytes(_p7(Encoding.DER, ca.intermediate))
    (tmp_path / "c-readme.txt").write_bytes(b"put intermediates here\n")
    (tmp_path / "d-huge.pem").write_bytes(ca.intermediate.pem + b"#" * (1024 * 1024))
    (tmp_path / "e-subdir").mkdir()
    finder = IntermediateFinder(dataclasses.replace(policy, intermediates_dir=str(tmp_path)))
    candidates, _ = finder.issuers_for(_leaf(ca, None))
    assert [c.origin for c in candidates] == [f"intermediates_dir:{tmp_path / 'b-issuing.p7b'}"]
    root_candidates, _ = finder.issuers_for(ca.intermediate.cert)
    assert [c.cert for c in root_candidates] == [ca.root.cert]
    problems = finder.directory_errors
    assert len(problems) == 2
    assert any("c-readme.txt" in p and "no certificate" in p for p in problems)
    assert any("d-huge.pem" in p and "larger than" in p for p in problems)


def test_intermediates_dir_is_loaded_once(policy: FetchPolicy, ca: CA, tmp_path: Path) -> None:
    """The directory is read on first use only; later files are not seen by the same finder."""
    with_dir = dataclasses.replace(policy, intermediates_dir=str(tmp_path))
    finder = IntermediateFinder(with_dir)
    leaf = _leaf(ca, None)
    assert finder.issuers_for(leaf) == ([], [])
    (tmp_path / "issuing.pem").write_bytes(ca.intermediate.pem)
    assert finder.issuers_for(leaf) == ([], [])
    assert len(IntermediateFinder(with_dir).issuers_for(leaf)[0]) == 1


def test_directory_miss_falls_back_to_aia(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """Without a directory match the child's caIssuers URL is fetched (origin aia:...)."""
    url = server.url("/issuing.der")
    server.set("/issuing.der", Body(ca.intermediate.der))
    (tmp_path / "unrelated.pem").write_bytes(make_root("Unrelated Root", kind="ec").pem)
    finder = IntermediateFinder(dataclasses.replace(policy, intermediates_dir=str(tmp_path)))
    candidates, errors = finder.issuers_for(_leaf(ca, url))
    assert candidates == [Candidate(ca.intermediate.cert, f"aia:{url}")]
    assert errors == []
    assert server.hits == {"/issuing.der": 1}


def test_cached_aia_candidate_has_cache_origin(
    server: AIAServer, policy: FetchPolicy, ca: CA, tmp_path: Path
) -> None:
    """A candidate served from the cache says so in its origin (cache:...)."""
    url = server.url("/issuing.der")
    server.set("/issuing.der", Body(ca.intermediate.der))
    finder = IntermediateFinder(dataclasses.replace(policy, cache_dir=str(tmp_path)))
    leaf = _leaf(ca, url)
    assert finder.issuers_for(leaf)[0][0].origin == f"aia:{url}"
    assert finder.issuers_for(leaf)[0][0].origin == f"cache:{url}"
    assert server.hits == {"/issuing.der": 1}


def test_root_offered_by_aia_is_returned_as_data_only(
    server: AIAServer, policy: FetchPolicy, ca: CA
) -> None:
    """A self-signed root from AIA is a plain candidate: no trust flag, origin aia:..."""
    url = server.url("/root.der")
    server.set("/root.der", Body(ca.root.der))
    intermediate = make_intermediate("AIA Test Issuing CA 2", ca.root, kind="ec", aia_url=url)
    candidates, errors = IntermediateFinder(policy).issuers_for(intermediate.cert)
    assert errors == []
    assert candidates == [Candidate(ca.root.cert, f"aia:{url}")]
    assert candidates[0].cert.subject == candidates[0].cert.issuer  # self-signed
    assert [f.name for f in dataclasses.fields(Candidate)] == ["cert", "origin"]


def test_aia_response_without_the_issuer_is_reported(
    server: AIAServer, policy: FetchPolicy, ca: CA
) -> None:
    """An AIA response holding only unrelated certificates gives no candidate and a sentence."""
    url = server.url("/wrong.der")
    server.set("/wrong.der", Body(ca.root.der))
    candidates, errors = IntermediateFinder(policy).issuers_for(_leaf(ca, url))
    assert candidates == []
    assert len(errors) == 1
    assert errors[0].startswith(f"AIA {url}: 1 certificate(s), none with subject ")


def test_failed_fetch_error_is_returned(server: AIAServer, policy: FetchPolicy, ca: CA) -> None:
    """A failing caIssuers URL gives no candidate and the fetch's own error sentence."""
    url = server.url("/gone.der")
    candidates, errors = IntermediateFinder(policy).issuers_for(_leaf(ca, url))
    assert candidates == []
    assert errors == [f"AIA {url}: HTTP 404 Not Found"]


def test_http_urls_are_tried_before_ldap(ca: CA) -> None:
    """With ldap and http caIssuers URLs, http is tried first and ldap not at all on success."""
    ldap = "ldap:///CN=AIA%20Test%20Issuing%20CA,CN=AIA?cACertificate"
    http = "http://pki.example.test/issuing.der"
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.intermediate.cert.subject)
        .public_key(ca.intermediate.key.public_key())
        .serial_number(1)
        .not_valid_before(ca.intermediate.cert.not_valid_before_utc)
        .not_valid_after(ca.intermediate.cert.not_valid_after_utc)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(u),
                    )
                    for u in (ldap, http)
                ]
            ),
            False,
        )
    )
    child = builder.sign(ca.intermediate.key, hashes.SHA256())
    asked: list[str] = []

    def fake_fetch(url: str, _policy: FetchPolicy) -> FetchResult:
        asked.append(url)
        return FetchResult(url, (ca.intermediate.cert,), None)

    candidates, errors = IntermediateFinder(FetchPolicy(), fetch=fake_fetch).issuers_for(child)
    assert asked == [http]
    assert candidates == [Candidate(ca.intermediate.cert, f"aia:{http}")]
    assert errors == []


# --------------------------------------------------------------------------------------------
# parse_certificates


def test_parse_certificates_rejects_non_certificates() -> None:
    """Empty data, junk and PEM without certificate blocks raise ValueError."""
    for data in (b"", b"hello", b"\x30\x03\x02\x01\x00", b"-----BEGIN PRIVATE KEY-----\nAA==\n"):
        with pytest.raises(ValueError):
            parse_certificates(data)


def test_parse_certificates_skips_other_pem_blocks(ca: CA) -> None:
    """Certificates are found among other PEM blocks and surrounding text."""
    data = (
        b"subject=...\n" + ca.intermediate.key_pem() + ca.intermediate.pem + b"\n"
        + b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n" + ca.root.pem
    )
    assert parse_certificates(data) == (ca.intermediate.cert, ca.root.cert)


def test_from_config_maps_regenerate_keys() -> None:
    """FetchPolicy.from_config takes the [regenerate] values; what private addresses may have served is
    cached apart, so that turning allow_private_aia off also stops serving it."""
    from chainwarden.config import Config

    config = Config(
        state_dir="/var/lib/cw",
        regenerate_intermediates_dir="/etc/cw/intermediates",
        regenerate_allow_private_aia=True,
        regenerate_aia_timeout=3.0,
        regenerate_aia_max_bytes=2048,
    )
    assert FetchPolicy.from_config(config) == FetchPolicy(
        timeout=3.0,
        max_bytes=2048,
        allow_private=True,
        cache_dir=os.path.join("/var/lib/cw", "aia-cache-private-allowed"),
        intermediates_dir="/etc/cw/intermediates",
    )
    vetted = FetchPolicy.from_config(dataclasses.replace(config, regenerate_allow_private_aia=False))
    assert vetted.cache_dir == os.path.join("/var/lib/cw", "aia-cache")
