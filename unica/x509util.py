"""Small X.509 helpers shared by several areas: distinguished names and the Chinese USCC.

``parse_dn`` reads an RFC 4514 string (most specific first: ``CN=张三,O=某某有限公司,C=CN``)
or an OpenSSL-style slash string (least specific first: ``/C=CN/O=某某有限公司/CN=张三``)
into an :class:`x509.Name`. Values are UTF-8; ``countryName`` must be two letters.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from unica.errors import InputError

#: attribute names accepted on top of cryptography's RFC 4514 set (CN, O, OU, C, L, ST, ...)
NAME_OIDS: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "ORGANIZATIONIDENTIFIER": NameOID.ORGANIZATION_IDENTIFIER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "TITLE": NameOID.TITLE,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "GN": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "SURNAME": NameOID.SURNAME,
    "POSTALCODE": NameOID.POSTAL_CODE,
}

_MAX_DN = 4096


def parse_dn(text: str) -> x509.Name:
    """An :class:`x509.Name` from RFC 4514 or ``/A=v/B=w`` text; :class:`InputError` if malformed."""
    if not isinstance(text, str):
        raise TypeError("a distinguished name must be a string")
    text = text.strip()
    if not text:
        raise InputError("empty distinguished name")
    if len(text) > _MAX_DN:
        raise InputError(f"distinguished name is too long ({len(text)} characters)")
    if text.startswith("/"):
        name = _parse_slash(text)
    else:
        overrides = {k: v for k, v in NAME_OIDS.items()}
        overrides.update({k.lower(): v for k, v in NAME_OIDS.items()})
        overrides.update({"organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
                          "serialNumber": NameOID.SERIAL_NUMBER, "emailAddress": NameOID.EMAIL_ADDRESS,
                          "givenName": NameOID.GIVEN_NAME})
        try:
            name = x509.Name.from_rfc4514_string(text, attr_name_overrides=overrides)
        except ValueError as e:
            raise InputError(f"bad distinguished name {text!r}: {e}") from None
    _check_name(name, text)
    return name


def _parse_slash(text: str) -> x509.Name:
    rdns = []
    for part in _split_unescaped(text[1:], "/"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise InputError(f"bad distinguished name {text!r}: {part!r} has no '='")
        oid = _oid_for(key.strip(), text)
        value = value.replace("\\/", "/")
        rdns.append(x509.RelativeDistinguishedName([_attribute(oid, value, text)]))
    return x509.Name(rdns)


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _oid_for(key: str, text: str) -> ObjectIdentifier:
    if key and key[0].isdigit():
        try:
            return ObjectIdentifier(key)
        except ValueError:
            raise InputError(f"bad distinguished name {text!r}: {key!r} is not an OID") from None
    oid = NAME_OIDS.get(key.upper())
    if oid is None:
        raise InputError(f"bad distinguished name {text!r}: unknown attribute {key!r}")
    return oid


def _attribute(oid: ObjectIdentifier, value: str, text: str) -> x509.NameAttribute:
    try:
        return x509.NameAttribute(oid, value)
    except ValueError as e:
        raise InputError(f"bad distinguished name {text!r}: {e}") from None


def _check_name(name: x509.Name, text: str) -> None:
    if not len(name):
        raise InputError(f"bad distinguished name {text!r}: no attributes")
    for attr in name:
        if not isinstance(attr.value, str) or not attr.value:
            raise InputError(f"bad distinguished name {text!r}: empty value for {attr.oid.dotted_string}")
        if attr.oid == NameOID.COUNTRY_NAME and not (len(attr.value) == 2 and attr.value.isascii()
                                                     and attr.value.isalpha()):
            raise InputError(f"bad distinguished name {text!r}: C must be a two-letter country code")


# --- USCC (统一社会信用代码, GB 32100-2015) ------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_uscc(code: str) -> str:
    """The Unified Social Credit Code ``code`` (upper-cased) if its check character is right."""
    c = code.strip().upper()
    if len(c) != 18 or any(ch not in _USCC_CHARS for ch in c):
        raise InputError(f"bad USCC {code!r}: expected 18 characters from {_USCC_CHARS}")
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(c[:17], _USCC_WEIGHTS))
    check = (31 - total % 31) % 31
    if _USCC_CHARS[check] != c[17]:
        raise InputError(f"bad USCC {code!r}: check character should be {_USCC_CHARS[check]!r}")
    return c


def with_uscc(name: x509.Name, code: str) -> x509.Name:
    """``name`` with organizationIdentifier (2.5.4.97) set to the checked USCC."""
    uscc = check_uscc(code)
    if name.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        raise InputError("the subject already has an organizationIdentifier; drop it or --uscc")
    rdns = list(name.rdns)
    # after C / ST / L / O (least specific first), before OU / CN
    pos = 0
    for i, rdn in enumerate(rdns):
        if any(a.oid in (NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
                         NameOID.ORGANIZATION_NAME) for a in rdn):
            pos = i + 1
    rdns.insert(pos, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, uscc)]))
    return x509.Name(rdns)
