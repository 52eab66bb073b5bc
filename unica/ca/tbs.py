"""TBSCertificate at the DER level, from per-(issuer, profile) templates.

``cryptography``'s CertificateBuilder only yields a signed certificate: to get the exact
TBSCertificate (to lint, record and then sign once with the CA key) it must sign a copy
with a throwaway key, and it re-encodes every extension object for every certificate.
Here everything a certificate shares with the others of its (issuer, profile) -- the
signature algorithm, the issuer name and the extensions the profile fixes -- is encoded
once into a :class:`Template`; per certificate only the serial, validity, subject, public
key, subject key identifier, SANs, (for partitioned CRLs) the CRL URL and extensions whose
value follows from the subject (an extension object with an ``extension_der(subject_der)``
method, e.g. :class:`unica.ca.gmt0015.SubjectDerived`) are encoded.

The extension decisions are not made here: :func:`unica.ca.engine.extensions_for` is the
one place that decides them, and the template is built from its output. The tests check
that the result is byte-identical to what CertificateBuilder writes for the same inputs.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

from cryptography import x509

from unica import der

_VERSION_3 = b"\xa0\x03\x02\x01\x02"
_OID_SKI = der.oid("2.5.29.14")
_OID_SAN = der.oid("2.5.29.17")

# the per-certificate slots of a template
_SKI, _SAN, _CDP = "ski", "san", "cdp"


def _ext_der(value: x509.ExtensionType, critical: bool) -> bytes:
    return der.extension(der.oid(value.oid.dotted_string), value.public_bytes(), critical)


class Template:
    """The constant DER of the certificates one issuer signs under one profile.

    ``parts`` is the extension list in the order :func:`extensions_for` gives: each item is
    either the DER of a fixed extension or the name of a per-certificate slot."""

    def __init__(self, issuer_der: bytes, sigalg_der: bytes, parts: list, cdp: dict | None = None,
                 hash_name: str | None = None):
        self.head = _VERSION_3  # + serial
        self.issuer_der = issuer_der
        self.sigalg_der = sigalg_der
        self.hash_name = hash_name  # of the signature algorithm (None for EdDSA)
        merged: list = []  # adjacent fixed extensions joined into one chunk
        for part in parts:
            if part.__class__ is bytes and merged and merged[-1].__class__ is bytes:
                merged[-1] += part
            else:
                merged.append(part)
        self.parts = merged
        self._validity: tuple = (None, None, b"")  # the last (not_before, not_after, DER): shared by a batch
        self._cdp = cdp  # serial -> CRL URL (partitioned CRLs), with a per-URL DER cache
        self._cdp_der: dict[str, bytes] = {}

    def _cdp_for(self, serial: int) -> bytes:
        url = self._cdp["url_for"](serial)
        d = self._cdp_der.get(url)
        if d is None:
            d = self._cdp_der[url] = _ext_der(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(url)], None, None, None)]), self._cdp["critical"])
        return d

    def build(self, serial: int, not_before: dt.datetime, not_after: dt.datetime, subject_der: bytes,
              spki_der: bytes, sans, subject_empty: bool, extra: tuple[bytes, ...] = ()) -> bytes:
        """The TBSCertificate of one certificate (``sans``: checked x509.GeneralName values;
        ``subject_empty``: the SAN extension is then critical; ``extra``: Extension DERs of this
        certificate only, after the others -- the requested GM/T 0015 items a profile honours)."""
        exts = []
        for part in self.parts:
            if part.__class__ is bytes:
                exts.append(part)
            elif part == _SKI:
                exts.append(_SKI_PREFIX + key_identifier_of_spki(spki_der))
            elif part == _SAN:
                if sans:
                    exts.append(der.extension(_OID_SAN, san_der(sans), subject_empty))
            elif part == _CDP:
                exts.append(self._cdp_for(serial))
            else:  # an extension whose value follows from the subject (e.g. unica.ca.gmt0015)
                exts.append(part(subject_der))
        nb, na, validity = self._validity
        if nb != not_before or na != not_after:
            validity = der.seq(der.x509_time(not_before), der.x509_time(not_after))
            self._validity = (not_before, not_after, validity)
        body = [self.head, der.integer(serial), self.sigalg_der, self.issuer_der, validity, subject_der, spki_der]
        exts.extend(extra)
        if exts:
            body.append(der.tlv(0xA3, der.seq(*exts)))
        return der.seq(*body)


#: the subjectKeyIdentifier extension up to its 20-octet SHA-1 key identifier
_SKI_PREFIX = der.extension(_OID_SKI, der.octet_string(bytes(20)))[:-20]


_GN_TAGS = {x509.RFC822Name: 0x81, x509.DNSName: 0x82, x509.UniformResourceIdentifier: 0x86}


def san_der(sans) -> bytes:
    """The SubjectAltName extnValue (GeneralNames) of already-checked names."""
    out = []
    for gn in sans:
        tag = _GN_TAGS.get(gn.__class__)
        if tag is not None:
            out.append(der.tlv(tag, gn.value.encode("ascii")))
        elif gn.__class__ is x509.IPAddress:
            out.append(der.tlv(0x87, gn.value.packed))
        else:
            return x509.SubjectAlternativeName(list(sans)).public_bytes()
    return der.seq(*out)


def key_identifier_of_spki(spki_der: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method 1 from DER SubjectPublicKeyInfo: SHA-1 of the subjectPublicKey
    BIT STRING's bits (what ``x509.SubjectKeyIdentifier.from_public_key`` computes)."""
    return hashlib.sha1(_public_key_bits(spki_der)).digest()


@functools.lru_cache(maxsize=4096)
def _public_key_bits(spki_der: bytes) -> bytes:
    s, e = der.expect(spki_der, 0, der.SEQUENCE, what="SubjectPublicKeyInfo")
    parts = list(der.children(spki_der, s, e, limit=2))
    tag, vs, ve, _ = parts[1]
    if tag != der.BIT_STRING or ve - vs < 1:
        raise der.DERError("SubjectPublicKeyInfo has no BIT STRING")
    return spki_der[vs + 1:ve]


def make_template(extensions: list[tuple[x509.ExtensionType, bool]], issuer_der: bytes, sigalg_der: bytes,
                  cdp_url_for=None, hash_name: str | None = None) -> Template:
    """A template from the extension list :func:`extensions_for` gives for a sample certificate
    (one with a SAN). ``cdp_url_for`` (serial -> URL) makes the CRL distribution point a slot."""
    parts: list = []
    cdp = None
    for value, critical in extensions:
        if isinstance(value, x509.SubjectKeyIdentifier):
            parts.append(_SKI)
        elif isinstance(value, x509.SubjectAlternativeName):
            parts.append(_SAN)
        elif isinstance(value, x509.CRLDistributionPoints) and cdp_url_for is not None:
            parts.append(_CDP)
            cdp = {"url_for": cdp_url_for, "critical": critical}
        elif callable(getattr(value, "extension_der", None)):
            parts.append(value.extension_der)  # subject DER -> the Extension DER (non-critical by its own rule)
        else:
            parts.append(_ext_der(value, critical))
    return Template(issuer_der, sigalg_der, parts, cdp, hash_name)
