"""Validity rules for one candidate path, as lenient as the JVM's PKIX validator and no more."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .certinfo import ANY_POLICY, CertInfo, is_ip_literal, loose_name_key, name_key
from .report import Code, Problem, Severity

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string
# OpenSSL's TLS server purpose takes serverAuth or a Server Gated Crypto purpose in the EKU of every
# certificate on the path (anyExtendedKeyUsage alone does not do).
SERVER_PURPOSES = frozenset({SERVER_AUTH, "1.3.6.1.4.1.311.10.3.3", "2.16.840.1.113730.4.1"})
NS_SSL_SERVER = 0x40  # the Netscape certificate type bit for TLS servers
WEAK_HASHES = frozenset({"md2", "md5"})


def validity_problems(
    path: Sequence[CertInfo], now: datetime, *, hostname: str | None, leaf_is_endpoint: bool
) -> list[Problem]:
    """Errors that make this path unusable at `now` (empty list: the path validates)."""
    problems: list[Problem] = []
    for position, cert in enumerate(path):
        problems.extend(_time_problems(cert, now, _role_word(position, len(path), leaf_is_endpoint)))
        problems.extend(_algorithm_problems(cert, is_anchor=position == len(path) - 1))
        if cert.extension_error:
            problems.append(_invalid(cert, f"certificate {cert.subject}: unreadable extension: {cert.extension_error}"))
        if cert.name_error:
            problems.append(_invalid(cert, f"certificate {cert.subject}: {cert.name_error}"))
        if cert.jvm_unparsable:
            problems.append(
                _invalid(
                    cert,
                    f"certificate {cert.sha256[:16]} has an empty subject and a non-critical "
                    "subjectAltName, which the JVM refuses to parse (RFC 5280 makes it critical then)",
                )
            )
        if cert.unknown_critical:  # the root's too: the JVM skips a trust anchor's, OpenSSL does not
            oids = ", ".join(cert.unknown_critical)
            problems.append(_invalid(cert, f"certificate {cert.subject}: unrecognised critical extension {oids}"))
    problems.extend(_ca_problems(path))
    problems.extend(_ca_purpose_problems(path))
    problems.extend(_policy_problems(path))
    problems.extend(_name_constraint_problems(path))
    if leaf_is_endpoint:
        problems.extend(_leaf_usage_problems(path[0]))
    if hostname and leaf_is_endpoint:
        problems.extend(hostname_problems(path[0], hostname))
    return problems


def _role_word(position: int, length: int, has_leaf: bool = True) -> str:
    if position == 0 and length > 1 and has_leaf:
        return "leaf"
    return "root" if position == length - 1 else "intermediate"


def _time_problems(cert: CertInfo, now: datetime, role: str) -> list[Problem]:
    if now >= cert.not_after:  # the JVM still accepts notAfter itself, OpenSSL does not
        return [
            Problem(
                Code.EXPIRED,
                Severity.ERROR,
                f"{role} {cert.subject} expired on {_day(cert.not_after)}",
                cert.subject,
            )
        ]
    if now < cert.not_before:
        return [
            Problem(
                Code.NOT_YET_VALID,
                Severity.ERROR,
                f"{role} {cert.subject} is not valid before {_day(cert.not_before)}",
                cert.subject,
            )
        ]
    return []


def expiring_soon(path: Sequence[CertInfo], now: datetime, warn_days: int, *, has_leaf: bool = True) -> list[Problem]:
    horizon = now + timedelta(days=warn_days)
    out = []
    for position, cert in enumerate(path):
        if now <= cert.not_after <= horizon:
            days = (cert.not_after - now).days
            role = _role_word(position, len(path), has_leaf)
            out.append(
                Problem(
                    Code.EXPIRING_SOON,
                    Severity.WARNING,
                    f"{role} {cert.subject} expires on {_day(cert.not_after)} (in {days} days)",
                    cert.subject,
                )
            )
    return out


def _algorithm_problems(cert: CertInfo, *, is_anchor: bool) -> list[Problem]:
    if is_anchor:
        return []  # a trust anchor's own signature is never checked by PKIX validators
    out = []
    hash_name = cert.signature_hash
    if hash_name in WEAK_HASHES:
        out.append(
            Problem(
                Code.WEAK_ALGORITHM,
                Severity.ERROR,
                f"certificate {cert.subject} is signed with {hash_name.upper()}, which the JVM rejects",
                cert.subject,
            )
        )
    elif hash_name == "sha1":
        out.append(
            Problem(
                Code.WEAK_ALGORITHM,
                Severity.WARNING,
                f"certificate {cert.subject} is signed with SHA-1; the JVM rejects it under publicly trusted roots",
                cert.subject,
            )
        )
    bits = cert.rsa_bits
    if bits is not None and bits < 1024:
        out.append(
            Problem(
                Code.WEAK_ALGORITHM,
                Severity.ERROR,
                f"certificate {cert.subject} has a {bits}-bit RSA key, which the JVM rejects",
                cert.subject,
            )
        )
    return out


def _ca_problems(path: Sequence[CertInfo]) -> list[Problem]:
    """basicConstraints, keyUsage and pathLenConstraint of every issuing certificate."""
    out = []
    for position in range(1, len(path)):
        issuer = path[position]
        is_anchor = position == len(path) - 1
        if issuer.basic_ca is False or (issuer.basic_ca is None and not is_anchor):
            out.append(
                _invalid(
                    issuer,
                    f"{issuer.subject} issued {path[position - 1].subject} "
                    "but is not a CA (basicConstraints CA:TRUE missing)",
                )
            )
        if issuer.key_cert_sign is False:
            out.append(
                _invalid(issuer, f"{issuer.subject} is not allowed to sign certificates (keyUsage lacks keyCertSign)")
            )
        if issuer.path_length is not None:
            # Intermediates below this issuer, not counting self-issued ones (RFC 5280 6.1.4).
            below = sum(1 for c in path[1:position] if not c.self_issued)
            if below > issuer.path_length:
                out.append(
                    _invalid(
                        issuer,
                        f"{issuer.subject} allows {issuer.path_length} intermediate(s) below it "
                        f"(pathLenConstraint) but the path has {below}",
                    )
                )
    return out


def _policy_problems(path: Sequence[CertInfo]) -> list[Problem]:
    """RFC 5280 6.1 certificate policy processing, as the JVM's PKIX validator does it (any policy
    acceptable, no explicit policy asked for by the caller): only a certificate's own policy
    constraints can require one. The policy tree is kept as the set of valid policies, which is all a
    caller accepting any policy needs of it; the root, the trust anchor, is not processed."""
    if not any(cert.policies for cert in path):
        return []  # no certificate policy extension at all: nothing can fail
    chain = list(reversed(path[:-1]))  # from below the root down to the leaf
    for cert in chain:
        if cert.policies and cert.policies.critical_qualifiers:
            # The JVM's validator rejects policy qualifiers in a critical extension by default.
            return [_invalid(cert, f"{cert.subject} has policy qualifiers in a critical certificatePolicies")]
    n = len(chain)
    explicit = inhibit_any = mapping = n + 1
    valid: set[str] | None = {ANY_POLICY}
    for position, cert in enumerate(chain, start=1):
        last = position == n
        policies = cert.policies
        oids = policies.oids if policies else None
        if oids is None or valid is None:
            valid = None
        else:
            allow_any = inhibit_any > 0 or (not last and cert.self_issued)
            matched = {oid for oid in oids if oid != ANY_POLICY and (oid in valid or ANY_POLICY in valid)}
            if ANY_POLICY in oids and allow_any:
                matched |= valid
            valid = matched or None
        if not last:
            if policies and policies.mappings:
                if any(ANY_POLICY in pair for pair in policies.mappings):
                    return [_invalid(cert, f"{cert.subject} maps anyPolicy, which no validator accepts")]
                valid = _mapped(valid, policies.mappings, mapping > 0)
            if not cert.self_issued:
                explicit, mapping, inhibit_any = max(explicit - 1, 0), max(mapping - 1, 0), max(inhibit_any - 1, 0)
            if policies and policies.require_explicit is not None:
                explicit = min(explicit, policies.require_explicit)
            if policies and policies.inhibit_mapping is not None:
                mapping = min(mapping, policies.inhibit_mapping)
            if policies and policies.inhibit_any is not None:
                inhibit_any = min(inhibit_any, policies.inhibit_any)
        else:
            explicit = max(explicit - 1, 0)
            if policies and policies.require_explicit == 0:
                explicit = 0
        if explicit == 0 and valid is None:
            return [
                _invalid(
                    cert,
                    f"{cert.subject}: a certificate policy is required here (policyConstraints "
                    "requireExplicitPolicy) but the path has none in common",
                )
            ]
    return []


def _mapped(valid: set[str] | None, mappings: Sequence[tuple[str, str]], allowed: bool) -> set[str] | None:
    """The valid policies after a CA's policyMappings: each issuer-domain policy becomes its
    subject-domain policies, or is dropped where mapping is inhibited."""
    if valid is None:
        return None
    issuer_domains = {issuer for issuer, _ in mappings}
    out = {oid for oid in valid if oid not in issuer_domains}
    if allowed:
        out |= {subject for issuer, subject in mappings if issuer in valid or ANY_POLICY in valid}
    return out or None


def _ca_purpose_problems(path: Sequence[CertInfo]) -> list[Problem]:
    """The extendedKeyUsage of the CAs (the root's included) must allow TLS servers, as OpenSSL checks."""
    return [
        _invalid(ca, f"{ca.subject} limits its extendedKeyUsage to purposes other than TLS servers (serverAuth)")
        for ca in path[1:]
        if ca.eku is not None and not ca.eku & SERVER_PURPOSES
    ]


def _leaf_usage_problems(leaf: CertInfo) -> list[Problem]:
    out = []
    if leaf.eku is not None and not leaf.eku & SERVER_PURPOSES:
        out.append(
            _invalid(leaf, f"leaf {leaf.subject} is not valid for TLS servers (extendedKeyUsage lacks serverAuth)")
        )
    if leaf.ns_cert_type is not None and not leaf.ns_cert_type & NS_SSL_SERVER:
        out.append(
            _invalid(
                leaf,
                f"leaf {leaf.subject} is not valid for TLS servers (its Netscape certificate type excludes SSL server)",
            )
        )
    if leaf.digital_signature is False:
        # TLS 1.3 and every (EC)DHE handshake have the server sign with this key; the JVM refuses a
        # keyUsage without digitalSignature (OpenSSL too, unless keyEncipherment allows RSA key exchange).
        out.append(_invalid(leaf, f"leaf {leaf.subject} may not sign TLS handshakes (keyUsage lacks digitalSignature)"))
    return out


def hostname_problems(leaf: CertInfo, hostname: str) -> list[Problem]:
    if matches_hostname(leaf, hostname):
        return []
    names = list(leaf.dns_names) + list(leaf.ip_addresses)
    if not leaf.dns_names and leaf.common_names:
        names.append(f"CN {leaf.common_names[-1]}")  # what a host name is matched against then
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if not names:
        shown = "no names"
    return [
        Problem(
            Code.HOSTNAME_MISMATCH,
            Severity.ERROR,
            f"leaf {leaf.subject} is not valid for {hostname} (it names {shown})",
            leaf.subject,
        )
    ]


def matches_hostname(leaf: CertInfo, hostname: str) -> bool:
    host = hostname.rstrip(".").lower()
    if is_ip_literal(host):
        wanted = ipaddress.ip_address(host)
        return any(ipaddress.ip_address(ip) == wanted for ip in leaf.ip_addresses)
    # As the JVM's HostnameChecker: without any DNS name in the SAN (IP addresses do not count),
    # the subject's most specific common name, the last one, and that one only.
    names = leaf.dns_names if leaf.dns_names else leaf.common_names[-1:]
    return any(_dns_match(pattern, host) for pattern in names)


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.lower()  # a trailing dot is kept: neither OpenSSL nor the JVM match "name." with "name"
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]
    if suffix.count(".") < 2:  # "*.com" style wildcards never match
        return False
    head, _, rest = host.partition(".")
    return bool(head) and "." + rest == suffix


def _name_constraint_problems(path: Sequence[CertInfo]) -> list[Problem]:
    out = []
    for position in range(1, len(path)):
        constraints = path[position].name_constraints
        if constraints is None:
            continue
        for index, subordinate in enumerate(path[:position]):
            if index > 0 and subordinate.self_issued:
                continue  # RFC 5280 6.1.3: self-issued intermediates are exempt
            reason = _violation(constraints, subordinate)
            if reason:
                out.append(
                    _invalid(
                        subordinate,
                        f"{subordinate.subject} violates the name constraints of {path[position].subject}: {reason}",
                    )
                )
    return out


# Name types chainwarden does not match against constraints: a certificate holding one under a
# constraint of that type is refused, as OpenSSL refuses it ("unsupported name constraint type").
_UNEVALUATED_KINDS = (x509.OtherName, x509.RegisteredID)

# OpenSSL refuses a certificate when its names times the constraints exceed this (a DoS guard).
_OPENSSL_NAME_CHECK_MAX = 1 << 20


def _violation(constraints: x509.NameConstraints, cert: CertInfo) -> str | None:
    subtrees = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
    names = sum(1 for kind, _ in cert.subject_key if kind != "+") + cert.san_count
    if subtrees and names > _OPENSSL_NAME_CHECK_MAX // len(subtrees):
        return f"{names} names against {len(subtrees)} constraints: more pairs than OpenSSL checks (it refuses them)"
    for kind in _UNEVALUATED_KINDS:
        if kind.__name__ in cert.san_kinds and any(isinstance(g, kind) for g in subtrees):
            kind_name = kind.__name__
            return f"its {kind_name} names cannot be checked against {kind_name} constraints (OpenSSL refuses them)"
    if cert.san_bad_ips and any(isinstance(g, x509.IPAddress) for g in subtrees):
        return "an IP address in its subjectAltName is malformed, so the IP constraints cannot be checked"
    if cert.email_not_ia5:
        return "an emailAddress in its subject is not an IA5String, which OpenSSL refuses under any name constraint"
    dns_names = list(cert.dns_names)
    if not dns_names and cert.is_end_entity:
        # Without a DNS name in the SAN (IP addresses do not count), OpenSSL checks the common name too.
        dns_names = [cn for cn in cert.common_names if "." in cn and " " not in cn]
    for dns in dns_names:
        if _dns_excluded(constraints, dns):
            return f"DNS name {dns} is excluded"
        if not _dns_permitted(constraints, dns):
            return f"DNS name {dns} is not within the permitted names"
    for ip in cert.ip_addresses:
        address = ipaddress.ip_address(ip)
        excluded = _ip_subtrees(constraints.excluded_subtrees) or []
        permitted = _ip_subtrees(constraints.permitted_subtrees)
        if any(address in net for net in excluded):
            return f"IP address {ip} is excluded"
        if permitted is not None and not any(address in net for net in permitted):
            return f"IP address {ip} is not within the permitted ranges"
    return (
        _directory_violation(constraints, cert)
        or _email_violation(constraints, cert)
        or _uri_violation(constraints, cert)
    )


def _directory_violation(constraints: x509.NameConstraints, cert: CertInfo) -> str | None:
    """directoryName subtrees: a base matches the subject's first RDNs (an empty subject is exempt)."""
    if not cert.subject_key:
        return None
    excluded = _bases(constraints.excluded_subtrees, x509.DirectoryName) or []
    permitted = _bases(constraints.permitted_subtrees, x509.DirectoryName)
    if excluded:
        # Excluded as soon as either validator's comparison says so: the loosest of them.
        try:
            loose_subject = loose_name_key(cert.cert.subject)
        except Exception:  # noqa: BLE001 - a subject no Name holds is judged excluded, never let through
            return f"subject {cert.subject} cannot be compared with the excluded directory names"
        if any(loose_subject[: len(key)] == key for key in (loose_name_key(base.value) for base in excluded)):
            return f"subject {cert.subject} is within an excluded directory name"
    if permitted is not None and not any(_within_directory(cert, base) for base in permitted):
        return f"subject {cert.subject} is not within the permitted directory names"
    return None


def _within_directory(cert: CertInfo, base: x509.GeneralName) -> bool:
    # Name keys mark multi-valued RDNs, so a prefix of keys is a prefix of whole RDNs.
    key = name_key(base.value)
    return cert.subject_key[: len(key)] == key


def _email_violation(constraints: x509.NameConstraints, cert: CertInfo) -> str | None:
    """rfc822Name subtrees, for the SAN's addresses and the subject's emailAddress values."""
    return _string_violation(constraints, x509.RFC822Name, cert.emails, "email address", _within_mailbox)


def _uri_violation(constraints: x509.NameConstraints, cert: CertInfo) -> str | None:
    return _string_violation(constraints, x509.UniformResourceIdentifier, cert.uris, "URI", _within_uri)


def _string_violation(
    constraints: x509.NameConstraints,
    kind: type[x509.GeneralName],
    names: Sequence[str],
    word: str,
    within: Callable[[str, str, bool], bool | None],
) -> str | None:
    excluded = _bases(constraints.excluded_subtrees, kind) or []
    permitted = _bases(constraints.permitted_subtrees, kind)
    for name in names:
        verdicts = [within(name, str(base.value), True) for base in excluded]
        if any(verdicts):
            return f"{word} {name} is excluded"
        if None in verdicts:  # no host to judge by: OpenSSL refuses it, and so does this check
            return f"{word} {name} cannot be checked against the excluded names"
        if permitted is not None and not any(within(name, str(base.value), False) for base in permitted):
            return f"{word} {name} is not within the permitted names"
    return None


def _bases(subtrees: list[x509.GeneralName] | None, kind: type[x509.GeneralName]) -> list[x509.GeneralName] | None:
    """The subtrees of one name type; None when there are none of that type (it is unconstrained)."""
    found = [g for g in subtrees or () if isinstance(g, kind)]
    return found or None


def _within_host(host: str, base: str) -> bool:
    base = base.lower()
    return host.endswith(base) if base.startswith(".") else host == base


def _within_mailbox(address: str, base: str, excluding: bool) -> bool | None:
    """RFC 5280 4.2.1.10: a mailbox, all mailboxes on a host, or (".domain") on hosts within a domain.
    Where the validators differ, excluding reads loosely and permitting strictly: "@host" is every
    mailbox on host to OpenSSL but one mailbox no address is to the JVM; the JVM compares a
    mailbox's local part regardless of case, OpenSSL exactly."""
    local, at, host = address.rpartition("@")
    if not at or not local or not host:
        return None
    if base.startswith("@"):
        return excluding and host.lower() == base[1:].lower()
    if "@" in base:
        base_local, _, base_host = base.rpartition("@")
        same_local = local.lower() == base_local.lower() if excluding else local == base_local
        return same_local and host.lower() == base_host.lower()
    return _within_host(host.lower(), base)


def _within_uri(uri: str, base: str, excluding: bool) -> bool | None:
    """The URI's host as a URI parser (the JVM's) reads it and as OpenSSL does (what follows "://" up
    to the first ":", else the first "/"): permitted only if both are, excluded if either is."""
    try:
        parsed = urlsplit(uri).hostname
    except ValueError:
        parsed = None
    start = uri.find("://")
    hosts = [parsed, _openssl_uri_host(uri[start + 3 :]) if start >= 0 else None]
    if any(not host or is_ip_literal(host) for host in hosts):
        return None
    verdicts = [_within_host(str(host).lower(), base) for host in hosts]
    return any(verdicts) if excluding else all(verdicts)


def _openssl_uri_host(rest: str) -> str:
    end = rest.find(":")
    if end < 0:
        end = rest.find("/")
    return rest if end < 0 else rest[:end]


def _dns_subtrees(subtrees: list[x509.GeneralName] | None) -> list[str] | None:
    bases = _bases(subtrees, x509.DNSName)
    return None if bases is None else [str(g.value).lower() for g in bases]


def _in_dns_subtree(name: str, base: str, *, loose: bool) -> bool:
    """Whether `name` is within the DNS subtree `base`. A base with a leading dot holds only names
    below it for OpenSSL (not the domain itself): so it is read when permitting, while `loose`
    (excluding) also takes the domain itself, as a validator reading the base as a domain would."""
    raw = name.lower().rstrip(".") if loose else name.lower()  # "x.example." is no name within "example"
    bare = raw[2:] if raw.startswith("*.") else raw
    if base.startswith("."):
        return raw.endswith(base) or (loose and (bare == base[1:] or bare.endswith(base)))
    return base == "" or bare == base or bare.endswith("." + base)


def _dns_permitted(constraints: x509.NameConstraints, dns: str) -> bool:
    permitted = _dns_subtrees(constraints.permitted_subtrees)
    return permitted is None or any(_in_dns_subtree(dns, base, loose=False) for base in permitted)


def _dns_excluded(constraints: x509.NameConstraints, dns: str) -> bool:
    excluded = _dns_subtrees(constraints.excluded_subtrees) or []
    if any(_in_dns_subtree(dns, base, loose=True) for base in excluded):
        return True
    if dns.startswith("*."):
        # *.example.com can stand for bar.example.com: an excluded name it may match excludes it.
        parent = dns[2:].lower().rstrip(".")
        bases = [base.lstrip(".") for base in excluded]
        return any(base.count(".") == parent.count(".") + 1 and base.endswith("." + parent) for base in bases)
    return False


def _ip_subtrees(
    subtrees: list[x509.GeneralName] | None,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    bases = _bases(subtrees, x509.IPAddress)
    if bases is None:
        return None
    return [g.value for g in bases if isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network)]


def _invalid(cert: CertInfo, message: str) -> Problem:
    return Problem(Code.PATH_INVALID, Severity.ERROR, message, cert.subject)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
