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


def oid_content(dotted: str) -> bytes:
    """The DER content octets of an OBJECT IDENTIFIER (X.690 8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        septets = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            septets.append(0x80 | (arc & 0x7F))
        out.extend(reversed(septets))
    return bytes(out)


# The attribute types RFC 4514 writes by a short name (as cryptography's rfc4514_string does).
SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_KNOWN_TYPES = {oid_content(dotted): dotted for dotted in SHORT_NAMES}
_OID, _SET = 0x06, 0x31
PRINTABLE_STRING, _UTF8_STRING, _IA5_STRING = 0x13, 0x0C, 0x16


def simple_name(raw: bytes) -> list[tuple[str, bytes, int]] | None:
    """The attributes of the Name encoded as `raw`, as (dotted type, value bytes, string tag), when it
    is the simple kind: one attribute per RDN, each of a type in SHORT_NAMES, each value a
    PrintableString, UTF8String or IA5String. None for any other Name (or any surprise)."""
    try:
        tag, at, end = _header(raw, 0)
        if tag != _SEQUENCE or end != len(raw) or at == end:
            return None
        attributes = []
        while at < end:
            tag, rdn_start, rdn_end = _header(raw, at)
            if tag != _SET:
                return None
            tag, attr_start, attr_end = _header(raw, rdn_start)
            if tag != _SEQUENCE or attr_end != rdn_end:
                return None  # more than one attribute in the RDN
            tag, oid_start, oid_end = _header(raw, attr_start)
            dotted = _KNOWN_TYPES.get(raw[oid_start:oid_end]) if tag == _OID else None
            if dotted is None:
                return None
            tag, value_start, value_end = _header(raw, oid_end)
            if tag not in (PRINTABLE_STRING, _UTF8_STRING, _IA5_STRING) or value_end != attr_end:
                return None
            attributes.append((dotted, raw[value_start:value_end], tag))
            at = rdn_end
        return attributes
    except ValueError:
        return None


def name_value_tags(raw: bytes) -> frozenset[int] | None:
    """The tags of every attribute value in the Name encoded as `raw`; None when it is not shaped
    as a Name (a SEQUENCE of SETs of SEQUENCEs of an OID and a value)."""
    try:
        tag, at, end = _header(raw, 0)
        if tag != _SEQUENCE:
            return None
        tags = set()
        while at < end:
            tag, member, rdn_end = _header(raw, at)
            if tag != _SET:
                return None
            while member < rdn_end:
                tag, attr_start, attr_end = _header(raw, member)
                if tag != _SEQUENCE:
                    return None
                tag, _, value_start = _header(raw, attr_start)
                if tag != _OID or value_start >= attr_end:
                    return None
                tags.add(_header(raw, value_start)[0])
                member = attr_end
            at = rdn_end
        return frozenset(tags)
    except ValueError:
        return None


def _oid_text(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets (X.690 8.19)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or value:
        raise ValueError("truncated OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def oid_pairs(der: bytes) -> list[tuple[str, str]]:
    """The pairs of a SEQUENCE OF SEQUENCE { OID, OID } (policyMappings); ValueError when it is not one."""
    tag, at, end = _header(der, 0)
    if tag != _SEQUENCE or end != len(der):
        raise ValueError("not a SEQUENCE")
    pairs = []
    while at < end:
        tag, inner, stop = _header(der, at)
        if tag != _SEQUENCE:
            raise ValueError("not a SEQUENCE")
        oids = []
        while inner < stop:
            tag, start, inner = _header(der, inner)
            if tag != _OID:
                raise ValueError("not an OBJECT IDENTIFIER")
            oids.append(_oid_text(der[start:inner]))
        if len(oids) != 2:
            raise ValueError("not a pair")
        pairs.append((oids[0], oids[1]))
        at = stop
    return pairs
