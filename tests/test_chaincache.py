"""The daemon's cache of presented chains: read back exactly as stored, hostile content only absent."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from chainwarden import certinfo, pkigen
from chainwarden.chaincache import ChainCache
from corpus.build import odd_name, pem_of, with_subject

HOST, PORT = "erp.example.test", 8443


@pytest.fixture
def pki() -> pkigen.ThreeTier:
    return pkigen.three_tier(HOST, kind="ec")


def _stored_file(cache: ChainCache, pki: pkigen.ThreeTier) -> Path:
    assert cache.store(HOST, PORT, (pki.leaf.cert, pki.intermediate.cert))
    (stored,) = Path(cache.directory).iterdir()
    return stored


def test_a_stored_chain_is_read_back_with_its_facts(tmp_path: Path, pki: pkigen.ThreeTier) -> None:
    """The leaf comes back as the same certificate, its facts read from the DER that was stored."""
    cache = ChainCache(tmp_path)
    _stored_file(cache, pki)
    leaf, intermediate = cache.load(HOST, PORT)
    assert leaf == pki.leaf.cert and intermediate == pki.intermediate.cert
    assert certinfo.describe(leaf).dns_names == (HOST,)


def test_base64_the_pem_reader_refuses_is_refused_here_too(
    tmp_path: Path, pki: pkigen.ThreeTier, caplog: pytest.LogCaptureFixture
) -> None:
    """Stray bits in the last base64 symbol: lenient base64 decoders accept them, the PEM reader
    does not, and neither does the cache's shortcut (it falls back to that reader)."""
    while len(pki.leaf.cert.public_bytes(Encoding.DER)) % 3 == 0:
        pki = pkigen.three_tier(HOST, kind="ec")  # ECDSA signatures vary in length: find one with padding
    cache = ChainCache(tmp_path)
    stored = _stored_file(cache, pki)
    lines = stored.read_bytes().split(b"\n")
    end = lines.index(b"-----END CERTIFICATE-----")
    last = lines[end - 1]
    assert last.endswith(b"=")  # the DER length is not a multiple of 3: the last symbol has spare bits
    symbol = last.rstrip(b"=")[-1:]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stray = alphabet[alphabet.index(symbol) | 1 : (alphabet.index(symbol) | 1) + 1]
    lines[end - 1] = last.rstrip(b"=")[:-1] + stray + b"=" * (len(last) - len(last.rstrip(b"=")))
    assert base64.b64decode(b"".join(lines[1:end])) == pki.leaf.cert.public_bytes(Encoding.DER)
    stored.write_bytes(b"\n".join(lines))
    caplog.set_level(logging.WARNING, logger="chainwarden.state")
    assert cache.load(HOST, PORT) == ()
    assert cache.load(HOST, PORT) == ()
    said = [r.getMessage() for r in caplog.records if "ignoring the cached chain" in r.getMessage()]
    assert len(said) == 1 and str(stored) in said[0]  # once, not at every lookup


@pytest.mark.parametrize(("tag", "value"), [(0x03, b"\x00\x01"), (0x02, b"\x05"), (0x0C, b"\xff")])
def test_a_hostile_leaf_is_kept_and_judged_never_a_crash(
    tmp_path: Path, pki: pkigen.ThreeTier, tag: int, value: bytes
) -> None:
    """An endpoint presenting a certificate whose name no Name holds: the chain is read back (not
    dropped as if never seen) and its leaf is marked unusable, in the stored layout and with CRLF."""
    odd = with_subject(pki.leaf, pki.intermediate, odd_name(tag, value))
    for joiner in (b"\n", b"\r\n"):
        cache = ChainCache(tmp_path / repr(joiner))
        stored = _stored_file(cache, pki)
        stored.write_bytes((pem_of(odd) + pki.intermediate.pem).replace(b"\n", joiner))
        leaf, _ = cache.load(HOST, PORT)
        facts = certinfo.describe(leaf)
        assert facts.name_error and "subject name cannot be read" in facts.name_error


def test_unreadable_cached_chains_are_said_once_and_absent(
    tmp_path: Path, pki: pkigen.ThreeTier, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory or a FIFO where a cached chain should be: absent, said once; never a wait."""
    caplog.set_level(logging.WARNING, logger="chainwarden.state")
    cache = ChainCache(tmp_path)
    stored = _stored_file(cache, pki)
    stored.unlink()
    os.mkfifo(stored)
    assert cache.load(HOST, PORT) == () and cache.load(HOST, PORT) == ()
    assert len([r for r in caplog.records if "ignoring the cached chain" in r.getMessage()]) == 1
    assert ChainCache(tmp_path / "never-probed").load(HOST, PORT) == ()
