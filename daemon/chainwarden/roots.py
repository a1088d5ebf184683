"""The trusted root store: Mozilla's (certifi), the OS bundle, or an operator's directory of roots."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509

from .certinfo import CertInfo, describe

OS_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/cert.pem",  # Alpine, macOS
)


@dataclass(frozen=True, slots=True)
class RootStore:
    name: str
    roots: tuple[CertInfo, ...]
    errors: tuple[str, ...] = ()

    def find(self, subject_key: tuple[tuple[str, str], ...]) -> list[CertInfo]:
        return [r for r in self.roots if r.subject_key == subject_key]


def load_root_store(spec: str = "certifi") -> RootStore:
    """`certifi`, `system`, or a path to a PEM file or a directory of PEM/DER files."""
    return _load(spec)


def forget_loaded_stores() -> None:
    """Read root stores afresh on next use (SIGHUP: a changed trusted_roots file or folder counts)."""
    _load.cache_clear()


@lru_cache(maxsize=8)
def _load(spec: str) -> RootStore:
    if spec == "certifi":
        import certifi

        return _from_files("Mozilla's root store (certifi)", [Path(certifi.where())])
    if spec == "system":
        for candidate in OS_BUNDLES:
            if os.path.exists(candidate):
                return _from_files(f"the OS root store ({candidate})", [Path(candidate)])
        return RootStore("the OS root store", (), ("no OS root bundle found",))
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return _from_files(f"the root directory {path}", files)
    return _from_files(f"the root bundle {path}", [path])


def _from_files(name: str, files: list[Path]) -> RootStore:
    roots: list[CertInfo] = []
    errors: list[str] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            errors.append(f"{file}: {exc.strerror or exc}")
            continue
        for cert in _certificates(data, file, errors):
            info = describe(cert)
            # Only self-signed CA certificates count as roots; anything else is ignored.
            if info.self_issued and not info.is_end_entity:
                roots.append(info)
    return RootStore(name, tuple(roots), tuple(errors))


def _certificates(data: bytes, file: Path, errors: list[str]) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some Mozilla roots have serial number 0
        try:
            if b"-----BEGIN" in data:
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            errors.append(f"{file}: not a certificate file: {exc}")
            return []
