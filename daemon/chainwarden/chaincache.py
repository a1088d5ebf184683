"""On-disk cache of the last chain each endpoint presented, so an outage still gets its bundle checked."""

from __future__ import annotations

import binascii
import hashlib
import logging
import os
import re
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .atomicio import write_atomic
from .certinfo import canonical, described_from_der, parsed_once
from .regularfile import read_regular

log = logging.getLogger("chainwarden.state")


_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=\n]+)-----END CERTIFICATE-----\n")
_SAFE_HOST = re.compile(r"[A-Za-z0-9.-]*")
_AS_STORED = re.compile(rb"(?:-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n)+")


_MAX_CHAIN_BYTES = 64 * 1024 * 1024  # far more than any chain; the cache holds only what store() wrote


def _read(path: str) -> bytes:
    return read_regular(path, _MAX_CHAIN_BYTES + 1)[0]


def _load_pem(block: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificate(block)


def _load_leaf(block: re.Match[bytes]) -> x509.Certificate:
    """The leaf of a stored chain: new to this process, so decoded here and described from its DER."""
    compact = block[1].replace(b"\n", b"")
    try:
        der = binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error:
        der = b""
    if not der or binascii.b2a_base64(der, newline=False) != compact:
        # Not the canonical base64 that store() writes (stray bits in the last symbol, say): the PEM
        # reader decides, as it does for every other cached chain.
        return canonical(_load_pem(block[0]))
    return described_from_der(der)


def _load_pems(data: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(data)


class ChainCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._warned: set[str] = set()  # cached chains already said to be unreadable (said once)

    def _file(self, host: str, port: int) -> Path:
        return Path(self._name(host, port))

    def _name(self, host: str, port: int) -> str:
        digest = hashlib.sha256(f"{host}:{port}".encode()).hexdigest()[:24]
        if _SAFE_HOST.fullmatch(host):  # every host name as urlsplit and IDNA leave it
            safe = host[:64]
        else:
            safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in host)[:64]
        return os.path.join(self.directory, f"{safe}_{port}_{digest}.pem")

    def load(self, host: str, port: int) -> tuple[x509.Certificate, ...]:
        path = self._name(host, port)  # a str, not a Path: this runs once per endpoint and pass
        try:
            data = _read(path)
        except FileNotFoundError:
            return ()  # never probed from here: the usual case for a new endpoint
        except OSError as exc:
            return self._unreadable(path, exc.strerror or type(exc).__name__)
        if len(data) > _MAX_CHAIN_BYTES:
            return self._unreadable(path, "larger than any chain")
        try:
            if _AS_STORED.fullmatch(data):
                # The layout store() writes. The leaf is new to this process; the CAs after it recur
                # in every file, so each is parsed once.
                blocks = list(_BLOCK.finditer(data))
                leaf = _load_leaf(blocks[0])
                chain = (leaf, *(parsed_once(block[0], _load_pem) for block in blocks[1:]))
            else:
                chain = tuple(canonical(cert) for cert in _load_pems(data))
        except Exception:  # noqa: BLE001 - whatever a hostile peer's certificate does, it is only absent
            return self._unreadable(path, "not a chain of readable certificates")
        self._warned.discard(path)
        return chain

    def _unreadable(self, path: str, why: str) -> tuple[x509.Certificate, ...]:
        if path not in self._warned:
            self._warned.add(path)
            log.warning("ignoring the cached chain %s: %s", path, why)
        return ()

    def store(self, host: str, port: int, chain: tuple[x509.Certificate, ...]) -> bool:
        """Remember `chain`; returns False (and logs) when the state folder is not writable."""
        if not chain:
            return True
        data = b"".join(c.public_bytes(Encoding.PEM) for c in chain)
        path = self._file(host, port)
        try:
            if path.exists() and path.read_bytes() == data:
                return True
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=0o600)
        except OSError as exc:
            log.warning("cannot cache the chain of %s:%s in %s: %s", host, port, self.directory, exc.strerror or exc)
            return False
        return True
