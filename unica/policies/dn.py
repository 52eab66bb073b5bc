"""Distinguished names as text: the one parser for ``--subject``, and the one order unica encodes.

Accepted text (what ``--subject`` of ``ca create-root``, ``ca create-sub`` (also with
``--csr-out``), ``token csr|renew|enroll`` take):

* RFC 4514: ``CN=Root,O=示例,C=CN``; spaces around ``,`` ``+`` ``=`` are ignored
  (``C=CN, O=示例, CN=Root``), as are unescaped spaces at either end of a value;
* escapes: ``\\,`` ``\\+`` ``\\"`` ``\\\\`` ``\\<`` ``\\>`` ``\\;`` ``\\=`` ``\\#`` ``\\ `` and
  ``\\XX`` hex pairs (UTF-8 bytes, e.g. ``\\E7\\A4\\BA``); a value may also be quoted
  (``O="A, B"``) or given as ``#`` + the hex of its BER encoding (UTF8String, PrintableString,
  IA5String, BMPString);
* multi-valued RDNs with ``+`` (``CN=a+serialNumber=1``; parsed, then refused by the CA's
  subject rules: the CA/B Forum and ETSI profiles do not use them);
* OpenSSL's ``/C=CN/O=示例/CN=Root`` form;
* attribute names, case-insensitive: C, ST, L, STREET, postalCode, O, OU, CN, serialNumber,
  SN (surname), GN (givenName), title, pseudonym, E / emailAddress, DC,
  organizationIdentifier (also OrgId, USCC), the long names of RFC 4519, or a dotted OID.

THE ORDER RULE. Whatever order the text is written in, the encoded Name (the DER
RDNSequence) is in X.500 hierarchy order, most general first::

    DC, C, ST, L, STREET, postalCode, O, OU, organizationIdentifier, title, SN, GN,
    pseudonym, serialNumber, CN, emailAddress

so ``openssl x509 -subject -nameopt RFC2253`` prints it most specific first
(``CN=Root,O=示例,C=CN``) and ``openssl``'s default one-line form prints ``C=CN, O=示例, CN=Root``.
Repeated attributes (OU, DC) keep the order they were written in, read from the general
end: a string that starts with its most specific attribute (RFC 4514, ``CN=…,…,C=CN``) is
read right to left, one that starts with its most general attribute (``C=CN,…,CN=…`` and
the ``/C=…/`` form) left to right. The CA applies the same rule to the subject of a request
(:func:`unica.ca.names.apply_subject_rules`; a CSR whose Name is encoded most specific first
is read backwards), so a name reads the same in a root, a subordinate (internal or via
``--csr-out``), an end-entity certificate and a token's CSR.
"""

from __future__ import annotations

import re
import warnings

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from unica.errors import InputError

#: the encoded order (most general first); :data:`RANK` gives each attribute's place
ORDER = ("domainComponent", "countryName", "stateOrProvinceName", "localityName", "streetAddress", "postalCode",
         "organizationName", "organizationalUnitName", "organizationIdentifier", "title", "surname", "givenName",
         "pseudonym", "serialNumber", "commonName", "emailAddress")

_OIDS = {
    "domainComponent": NameOID.DOMAIN_COMPONENT, "countryName": NameOID.COUNTRY_NAME,
    "stateOrProvinceName": NameOID.STATE_OR_PROVINCE_NAME, "localityName": NameOID.LOCALITY_NAME,
    "streetAddress": NameOID.STREET_ADDRESS, "postalCode": NameOID.POSTAL_CODE,
    "organizationName": NameOID.ORGANIZATION_NAME, "organizationalUnitName": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER, "title": NameOID.TITLE, "surname": NameOID.SURNAME,
    "givenName": NameOID.GIVEN_NAME, "pseudonym": NameOID.PSEUDONYM, "serialNumber": NameOID.SERIAL_NUMBER,
    "commonName": NameOID.COMMON_NAME, "emailAddress": NameOID.EMAIL_ADDRESS,
}
#: dotted OID -> place in :data:`ORDER` (attributes not listed go after all of them)
RANK = {_OIDS[n].dotted_string: i for i, n in enumerate(ORDER)}

#: attribute names accepted in text (matched case-insensitively) -> OID
NAMES = {
    **{n: oid for n, oid in _OIDS.items()},
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME, "STREET": NameOID.STREET_ADDRESS, "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME, "SN": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME, "E": NameOID.EMAIL_ADDRESS, "email": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT, "OrgId": NameOID.ORGANIZATION_IDENTIFIER,
    "USCC": NameOID.ORGANIZATION_IDENTIFIER, "UID": NameOID.USER_ID, "userId": NameOID.USER_ID,
}
_BY_LOWER = {k.lower(): v for k, v in NAMES.items()}

#: longest text accepted (room for every attribute at its bound, escaped)
MAX_DN_TEXT = 2048

_FORGOTTEN = re.compile(r"\s([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)\s*\Z")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_HEX = re.compile(r"[0-9A-Fa-f]{2}")
_SPECIAL = set('"+,;<>\\=# ')
#: BER string tags accepted in a #hex value -> codec
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


class DNSyntaxError(InputError):
    """Text that is not a distinguished name; the message says where and why."""


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


class _Parser:
    def __init__(self, text: str):
        self.t = text
        self.i = 0

    def fail(self, why: str, at: int | None = None) -> DNSyntaxError:
        at = self.i if at is None else at
        return DNSyntaxError(f"bad subject DN {_shown(self.t)!r}: {why} (at character {at + 1})")

    def spaces(self) -> None:
        while self.i < len(self.t) and self.t[self.i] == " ":
            self.i += 1

    def parse(self) -> list[list[tuple[ObjectIdentifier, str]]]:
        rdns = [self.rdn()]
        while self.i < len(self.t):
            c = self.t[self.i]
            if c not in ",;":
                raise self.fail(f"expected ',' or '+' after a value, found {c!r}")
            self.i += 1
            self.spaces()
            if self.i >= len(self.t):
                raise self.fail("the name ends with a separator", self.i - 1)
            rdns.append(self.rdn())
        return rdns

    def rdn(self) -> list[tuple[ObjectIdentifier, str]]:
        atvs = [self.atv()]
        while self.i < len(self.t) and self.t[self.i] == "+":
            self.i += 1
            self.spaces()
            atvs.append(self.atv())
        return atvs

    def atv(self) -> tuple[ObjectIdentifier, str]:
        self.spaces()
        start = self.i
        if self.i < len(self.t) and self.t[self.i] in ",;+":
            raise self.fail(f"empty RDN (nothing before {self.t[self.i]!r})")
        m = _KEY.match(self.t, self.i)
        if not m:
            raise self.fail("expected an attribute name such as CN, O, OU or C")
        key = m.group(0)
        self.i = m.end()
        self.spaces()
        if self.i >= len(self.t) or self.t[self.i] != "=":
            found = "the end" if self.i >= len(self.t) else repr(self.t[self.i])
            raise self.fail(f"expected '=' after {key!r}, found {found}")
        self.i += 1
        if key[0].isdigit():
            try:
                oid = ObjectIdentifier(key)
            except ValueError:
                raise self.fail(f"{key!r} is not a valid OID", start) from None
        else:
            oid = _BY_LOWER.get(key.lower())
            if oid is None:
                raise self.fail(f"unknown attribute {key!r} (known: C, ST, L, STREET, postalCode, O, OU, CN, "
                                f"serialNumber, SN, GN, title, pseudonym, emailAddress, DC, "
                                f"organizationIdentifier/USCC, or a dotted OID)", start)
        self.spaces()
        value = self.value(key)
        return oid, value

    def value(self, key: str) -> str:
        t = self.t
        if self.i < len(t) and t[self.i] == "#":
            return self.hexvalue(key)
        if self.i < len(t) and t[self.i] == '"':
            return self.quoted(key)
        out = bytearray()
        last_kept = 0  # length of out up to the last escaped or non-space character
        start = self.i
        while self.i < len(t):
            c = t[self.i]
            if c in ",;+":
                break
            if c == "=":  # allowed in a value, but "CN=a O=b" is a forgotten comma
                m = _FORGOTTEN.search(t, start, self.i)
                if m and (m.group(1)[0].isdigit() or m.group(1).lower() in _BY_LOWER):
                    raise self.fail(f"missing ',' before '{m.group(1)}=' (write '\\=' for an '=' in a value)",
                                    m.start(1))
            if c == "\\":
                self.i += 1
                if self.i >= len(t):
                    raise self.fail(f"a '\\' ends the value of {key} (escape it as '\\\\')", self.i - 1)
                if _HEX.match(t, self.i):
                    out.append(int(t[self.i:self.i + 2], 16))
                    self.i += 2
                elif t[self.i] in _SPECIAL:
                    out += t[self.i].encode()
                    self.i += 1
                else:
                    raise self.fail(f"'\\{t[self.i]}' in the value of {key} is not an escape (use '\\' before "
                                    f"one of , + \" \\ < > ; = # space, or two hex digits)", self.i - 1)
                last_kept = len(out)
                continue
            out += c.encode()
            self.i += 1
            if c != " ":
                last_kept = len(out)
        del out[last_kept:]
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"the \\XX escapes in the value of {key} are not UTF-8") from None

    def quoted(self, key: str) -> str:
        t, start = self.t, self.i
        self.i += 1
        out = []
        while self.i < len(t) and t[self.i] != '"':
            if t[self.i] == "\\" and self.i + 1 < len(t):
                self.i += 1
            out.append(t[self.i])
            self.i += 1
        if self.i >= len(t):
            raise self.fail(f"the quoted value of {key} has no closing '\"'", start)
        self.i += 1
        self.spaces()
        return "".join(out)

    def hexvalue(self, key: str) -> str:
        t, start = self.t, self.i
        self.i += 1
        m = re.compile(r"(?:[0-9A-Fa-f]{2})+").match(t, self.i)
        if not m:
            raise self.fail(f"'#' in the value of {key} must be followed by the hex of a BER string "
                            f"(escape a leading '#' as '\\#')", start)
        self.i = m.end()
        self.spaces()
        raw = bytes.fromhex(m.group(0))
        value = _ber_string(raw)
        if value is None:
            raise self.fail(f"#{m.group(0)[:16]}... is not a BER UTF8String, PrintableString, IA5String or "
                            f"BMPString", start)
        return value


def _ber_string(raw: bytes) -> str | None:
    if len(raw) < 2 or raw[0] not in _STRING_TAGS:
        return None
    n, pos = raw[1], 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or len(raw) < 2 + k:
            return None
        n, pos = int.from_bytes(raw[2:2 + k], "big"), 2 + k
    if pos + n != len(raw):
        return None
    try:
        return raw[pos:].decode(_STRING_TAGS[raw[0]])
    except UnicodeDecodeError:
        return None


def _slash_form(t: str) -> str:
    """``/C=CN/O=A\\/B/CN=x`` -> ``C=CN,O=A/B,CN=x`` (most general first, as written)."""
    parts = [p for p in re.split(r"(?<!\\)/", t[1:]) if p.strip()]
    out = []
    for p in parts:
        p = p.replace("\\/", "/")
        # a ',' or ';' inside a /-separated value is data, not a separator
        out.append(re.sub(r"(?<!\\)([,;])", r"\\\1", p))
    return ",".join(out)


def attribute(oid: ObjectIdentifier, value: str) -> x509.NameAttribute:
    """A NameAttribute with cryptography's byte-length check left out (it counts UTF-8 bytes;
    X.520 bounds count characters, and unica checks those itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.NameAttribute(oid, value, _validate=False)


def rank(rdn: x509.RelativeDistinguishedName) -> int:
    return min(RANK.get(a.oid.dotted_string, len(ORDER)) for a in rdn)


def in_order(rdns: list[x509.RelativeDistinguishedName]) -> x509.Name:
    """``rdns`` (most general first where the same attribute repeats) in :data:`ORDER`."""
    return x509.Name(sorted(rdns, key=rank))


def ordered(name: x509.Name) -> x509.Name:
    """``name`` re-encoded in :data:`ORDER`. Repeated attributes (OU, DC) keep their order read from
    the general end: a Name encoded most specific first (``CN, OU=Team, OU=Dept, O, C``, as some
    tools make it) is read backwards, so both encodings give ``C, O, OU=Dept, OU=Team, CN``."""
    rdns = list(name.rdns)
    if len(rdns) > 1 and rank(rdns[0]) > rank(rdns[-1]):
        rdns.reverse()
    return in_order(rdns)


def parse_dn(text: str) -> x509.Name:
    """``"C=CN, O=示例, CN=Root"``, ``"CN=Root,O=示例,C=CN"`` or ``"/C=CN/O=示例/CN=Root"`` -> the same
    :class:`~cryptography.x509.Name`, encoded in :data:`ORDER`; :class:`DNSyntaxError` (an
    :class:`~unica.errors.InputError`) with one precise line otherwise. Values are not judged
    here (bounds, character sets, USCC check digit): that is the profile's subject rules."""
    if not isinstance(text, str):
        raise TypeError("subject must be text")
    t = text.lstrip(" ")  # trailing spaces: the value parser drops them unless escaped
    if not t.strip():
        raise DNSyntaxError("subject DN is empty")
    if len(t) > MAX_DN_TEXT:  # refused before any work on it
        raise DNSyntaxError(f"subject DN is {len(t)} characters long (at most {MAX_DN_TEXT}; "
                            f"commonName at most 64)")
    bad = re.search("[\x00-\x1f\x7f]", t)
    if bad:
        raise DNSyntaxError(f"bad subject DN {_shown(text)!r}: control character {bad.group(0)!r} "
                            f"(at character {bad.start() + 1})")
    general_first = t.startswith("/")
    if general_first:
        t = _slash_form(t)
    p = _Parser(t)
    parsed = p.parse()
    rdns = []
    for atvs in parsed:
        seen = set()
        for oid, value in atvs:
            if oid in seen:
                raise DNSyntaxError(f"bad subject DN {_shown(text)!r}: {_label(oid)} appears twice in one "
                                    f"multi-valued RDN")
            seen.add(oid)
            if value == "":
                raise DNSyntaxError(f"bad subject DN {_shown(text)!r}: {_label(oid)} has an empty value")
        rdns.append(x509.RelativeDistinguishedName([attribute(oid, v) for oid, v in atvs]))
    if not general_first and len(rdns) > 1:
        general_first = rank(rdns[0]) < rank(rdns[-1])
    if not general_first:
        rdns.reverse()  # RFC 4514: the string starts with the last RDN of the sequence
    return in_order(rdns)


def _label(oid: ObjectIdentifier) -> str:
    for n, o in _OIDS.items():
        if o == oid:
            return n
    return oid.dotted_string
