"""Distinguished names: parsing ``--subject`` and rebuilding a requested subject under a profile.

The CA never copies a requested name as it is: each attribute is checked against the
profile (allowed, required, at most once), its value against the X.520 bounds, the
Unified Social Credit Code against its check character, and the name is re-encoded in a
fixed attribute order with the standard string types (PrintableString for countryName and
serialNumber, IA5String for emailAddress / domainComponent, UTF8String for the rest -- so
Chinese organisation names are UTF8String).
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from unica.errors import InputError, PolicyViolation
from unica.policies.model import ATTRIBUTE_NAME_BY_OID, SUBJECT_ATTRIBUTES, Profile
from unica.policies.uscc import USCCError, validate_uscc

#: the order the CA writes attributes in (most general first)
ORDER = ("domainComponent", "countryName", "stateOrProvinceName", "localityName", "streetAddress", "postalCode",
         "organizationName", "organizationalUnitName", "organizationIdentifier", "title", "surname", "givenName",
         "pseudonym", "serialNumber", "commonName", "emailAddress")
_RANK = {n: i for i, n in enumerate(ORDER)}

#: X.520 / RFC 5280 upper bounds (characters)
UPPER_BOUNDS = {"countryName": 2, "stateOrProvinceName": 128, "localityName": 128, "streetAddress": 128,
                "postalCode": 40, "organizationName": 64, "organizationalUnitName": 64,
                "organizationIdentifier": 128, "commonName": 64, "serialNumber": 64, "title": 64,
                "givenName": 64, "surname": 64, "pseudonym": 128, "emailAddress": 255, "domainComponent": 63}
#: longest --subject text accepted (room for every attribute at its bound, escaped)
MAX_DN_TEXT = 2048
MULTI = frozenset({"organizationalUnitName", "domainComponent"})
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_CONTROL = re.compile("[\x00-\x1f\x7f]")

#: names accepted in --subject besides the RFC 4514 short names (CN, O, OU, C, ST, L, DC...)
_DN_NAMES = {**{n: oid for n, oid in SUBJECT_ATTRIBUTES.items()}, "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
             "OrgId": NameOID.ORGANIZATION_IDENTIFIER, "serialNumber": NameOID.SERIAL_NUMBER,
             "SN": NameOID.SURNAME, "GN": NameOID.GIVEN_NAME, "E": NameOID.EMAIL_ADDRESS,
             "emailAddress": NameOID.EMAIL_ADDRESS, "postalCode": NameOID.POSTAL_CODE, "title": NameOID.TITLE}


def parse_dn(text: str) -> x509.Name:
    """``"C=CN, O=示例公司, CN=Root"`` (RFC 4514) or ``"/C=CN/O=示例公司/CN=Root"`` (OpenSSL style)."""
    t = text.strip()
    if not t:
        raise InputError("subject DN is empty")
    if len(t) > MAX_DN_TEXT:  # refused before cryptography sees it (it would warn, then fail per attribute)
        raise InputError(f"subject DN is {len(t)} characters long (at most {MAX_DN_TEXT}; "
                         f"commonName at most {UPPER_BOUNDS['commonName']})")
    if t.startswith("/"):
        parts = [p for p in re.split(r"(?<!\\)/", t[1:]) if p]
        t = ",".join(p.replace(",", "\\,").replace("\\/", "/") for p in reversed(parts))
    try:
        return x509.Name.from_rfc4514_string(t, _DN_NAMES)
    except ValueError as e:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InputError(f"bad subject DN {shown!r}: {e}") from None


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
    for rdn in requested.rdns:
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
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(SUBJECT_ATTRIBUTES[n], v)])
                      for n, v in attrs])


def name_text(name: x509.Name) -> str:
    """A readable one-line form (RFC 4514, most specific first), keeping non-ASCII as it is."""
    return name.rfc4514_string({NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier"})
