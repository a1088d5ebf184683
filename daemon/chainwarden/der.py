"""Just enough DER walking to find the raw TBSCertificate, issuer and subject inside a parsed certificate."""

from __future__ import annotations


def _header(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at `at`; ValueError when it does not fit."""
    if at + 2 > len(data):
        raise ValueError("truncated DER header")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or at + size > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    if at + length > len(data):
        raise ValueError("DER element longer than its container")
    return tag, at, at + length


_SEQUENCE = 0x30
_EXPLICIT_VERSION = 0xA0


def certificate_names(der: bytes) -> tuple[bytes, bytes]:
    """The DER of a certificate's issuer and subject Names (RFC 5280 4.1), exactly as they are encoded."""
    _, issuer, subject = certificate_parts(der)
    return issuer, subject


def certificate_parts(der: bytes) -> tuple[bytes, bytes, bytes]:
    """The DER of a certificate's TBSCertificate (what its signature covers), issuer and subject.

    Only called on certificates cryptography has already parsed, so the structure is known to be
    valid; any surprise still raises ValueError rather than returning a wrong slice.
    """
    tag, tbs_start, _ = _header(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("Certificate is not a SEQUENCE")
    tag, at, end = _header(der, tbs_start)
    if tag != _SEQUENCE:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    tag, _, stop = _header(der, at)
    if tag == _EXPLICIT_VERSION:
        at = stop
        tag, _, stop = _header(der, at)
    at = stop  # serialNumber
    tag, _, at = _header(der, at)  # signature AlgorithmIdentifier
    if tag != _SEQUENCE:
        raise ValueError("TBSCertificate signature algorithm is not a SEQUENCE")
    issuer_start = at
    tag, _, at = _header(der, at)
    if tag != _SEQUENCE:
        raise ValueError("issuer is not a SEQUENCE")
    issuer = der[issuer_start:at]
    tag, _, at = _header(der, at)  # validity
    subject_start = at
    tag, _, stop = _header(der, at)
    if tag != _SEQUENCE or stop > end:
        raise ValueError("subject is not a SEQUENCE")
    return der[tbs_start:end], issuer, der[subject_start:stop]
