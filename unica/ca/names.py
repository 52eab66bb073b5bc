"""Distinguished names: parsing ``--subject`` and rebuilding a requested subject under a profile.

The CA never copies a requested name as it is: each attribute is checked against the
profile (allowed, required, at most once), its value against the X.520 bounds, the
Unified Social Credit Code against its check character, and the name is re-encoded in the
one attribute order of :mod:`unica.policies.dn` (X.500 hierarchy: C, ST, L, O, OU, CN...)
with the standard string types (PrintableString for countryName and serialNumber, IA5String
for emailAddress / domainComponent, UTF8String for the rest -- so Chinese organisation names
are UTF8String). Bounds count characters, as X.520 does (a 64-character Chinese commonName is
192 bytes of UTF-8, and is accepted).
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from unica.errors import PolicyViolation
from unica.policies.dn import MAX_DN_TEXT, ORDER, attribute, ordered, parse_dn  # noqa: F401 (parse_dn: the one parser)
from unica.policies.model import ATTRIBUTE_NAME_BY_OID, SUBJECT_ATTRIBUTES, Profile
from unica.policies.uscc import USCCError, validate_uscc

_RANK = {n: i for i, n in enumerate(ORDER)}

#: X.520 / RFC 5280 upper bounds (characters)
UPPER_BOUNDS = {"countryName": 2, "stateOrProvinceName": 128, "localityName": 128, "streetAddress": 128,
                "postalCode": 40, "organizationName": 64, "organizationalUnitName": 64,
                "organizationIdentifier": 128, "commonName": 64, "serialNumber": 64, "title": 64,
                "givenName": 64, "surname": 64, "pseudonym": 128, "emailAddress": 255, "domainComponent": 63}
MULTI = frozenset({"organizationalUnitName", "domainComponent"})
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_uscc(value: str, where: str) -> str:
    try:
        return validate_uscc(value)
    except USCCError as e:
        raise PolicyViolation(f"{where}: {e}") from None


def apply_subject_rules(profile: Profile, requested: x509.Name, where: str = "request") -> x509.Name:
    """The subject the CA will write for ``requested`` under ``profile`` (or PolicyViolation)."""
    seen: dict[str, int] = {}
    attrs: list[tuple[str, str]] = []
    permitted = profile.subject.permitted
    for rdn in ordered(requested).rdns:  # the one order (unica.policies.dn), then the rules
        if len(rdn) != 1:
            raise PolicyViolation(f"{where}: multi-valued RDNs are not accepted ({rdn.rfc4514_string()})")
        atv = next(iter(rdn))
        name = ATTRIBUTE_NAME_BY_OID.get(atv.oid)
        label = name or atv.oid.dotted_string
        if name is None or name not in permitted:
            allowed = ", ".join(sorted(permitted)) or "none"
            raise PolicyViolation(f"{where}: subject attribute {label} is not allowed by profile "
                                  f"{profile.name!r} (allowed: {allowed})")
        value = atv.value if isinstance(atv.value, str) else None
        if value is None:
            raise PolicyViolation(f"{where}: subject attribute {label} has a non-string value")
        value = value.strip()
        if not value:
            raise PolicyViolation(f"{where}: subject attribute {label} is empty")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1 and name not in MULTI:
            raise PolicyViolation(f"{where}: subject attribute {label} appears more than once")
        bound = UPPER_BOUNDS.get(name)
        if bound and len(value) > bound:
            raise PolicyViolation(f"{where}: subject attribute {label} is longer than {bound} characters")
        if _CONTROL.search(value):
            raise PolicyViolation(f"{where}: subject attribute {label} contains control characters")
        if name == "countryName" and not re.fullmatch(r"[A-Z]{2}", value):
            raise PolicyViolation(f"{where}: countryName {value!r} is not a two-letter ISO 3166 code in capitals")
        if name == "serialNumber" and not _PRINTABLE.match(value):
            raise PolicyViolation(f"{where}: serialNumber {value!r} has characters outside PrintableString")
        if name in ("emailAddress", "domainComponent") and not value.isascii():
            raise PolicyViolation(f"{where}: {label} {value!r} must be ASCII")
        if name == "organizationIdentifier":
            check_uscc(value, where)
        attrs.append((name, value))
    for need in profile.subject.required:
        if need not in seen:
            raise PolicyViolation(f"{where}: subject lacks {need}, which profile {profile.name!r} requires")
    attrs.sort(key=lambda a: _RANK[a[0]])
    return x509.Name([x509.RelativeDistinguishedName([attribute(SUBJECT_ATTRIBUTES[n], v)]) for n, v in attrs])


def check_any_subject(requested: x509.Name, where: str = "subject") -> x509.Name:
    """:func:`apply_subject_rules` with every known attribute allowed: the X.520 bounds and the
    string rules a CA applies whatever the profile (for requests made for a CA outside unica)."""
    import datetime as dt

    from unica.policies.model import SubjectRules

    anyprof = Profile(name="(any)", source="", kind="end-entity", validity=dt.timedelta(days=1),
                      subject=SubjectRules(allowed=tuple(SUBJECT_ATTRIBUTES)))
    return apply_subject_rules(anyprof, requested, where)


def name_text(name: x509.Name) -> str:
    """A readable one-line form (RFC 4514, most specific first), keeping non-ASCII as it is."""
    return name.rfc4514_string({NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier"})
