"""RFC 5280 v2 CRLs (full, delta, partitioned), encoded directly as DER.

``cryptography``'s ``CertificateRevocationListBuilder`` builds one Python object per entry
and copies its list on every ``add_revoked_certificate``; that is fine for a few thousand
entries and hopeless for millions. :func:`build_crl` streams entries from any iterable
(a database cursor, a generator), encodes each straight into one ``bytearray``, signs the
TBSCertList once and writes the result. Memory is about three times the DER size.

Entries are :class:`RevokedEntry` named tuples; plain 4-tuples
``(serial, revoked_at, reason, invalidity_date)`` are accepted as well, which is what a
database cursor yields.

Partitioned ("sharded") CRLs follow Let's Encrypt's design: a certificate belongs to shard
``serial % shards``; its CRL distribution point is the shard URL, and that shard's CRL
carries the same URL in a critical Issuing Distribution Point. See :class:`ShardScheme`.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterable, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from unica import der
from unica.der import SignatureScheme, ctx, enc_len, extension, integer, oid, seq, tlv
from unica.revinfo import REASON_CODES

__all__ = [
    "RevokedEntry", "IssuingDistributionPoint", "ShardScheme", "CRLIssuer",
    "build_crl", "REASON_CODES",
]


_OID_AKI = oid("2.5.29.35")
_OID_CRL_NUMBER = oid("2.5.29.20")
_OID_DELTA = oid("2.5.29.27")
_OID_IDP = oid("2.5.29.28")
_OID_FRESHEST = oid("2.5.29.46")
_OID_REASON = oid("2.5.29.21")
_OID_INVALIDITY = oid("2.5.29.24")

#: largest CRL number RFC 5280 allows (20 octets)
MAX_CRL_NUMBER = (1 << 159) - 1


class RevokedEntry(NamedTuple):
    """One revoked certificate. ``reason`` None or ``unspecified`` omits the reasonCode
    extension (RFC 5280 5.3.1: SHOULD be absent rather than unspecified). ``revoked_at`` is
    an aware datetime or whole seconds since the epoch (UTC, an ``int``)."""

    serial: int
    revoked_at: _dt.datetime
    reason: x509.ReasonFlags | None = None
    invalidity_date: _dt.datetime | None = None


@dataclass(frozen=True)
class IssuingDistributionPoint:
    """The CRL's scope (RFC 5280 5.2.5), emitted as a critical extension."""

    full_name_url: str | None = None
    only_contains_user_certs: bool = False
    only_contains_ca_certs: bool = False

    def __post_init__(self) -> None:
        if self.only_contains_user_certs and self.only_contains_ca_certs:
            raise ValueError("an issuing distribution point cannot be limited to both user and CA certificates")
        if self.full_name_url is not None and not _is_url(self.full_name_url):
            raise ValueError(f"issuing distribution point URL {self.full_name_url!r} is not an http(s)/ldap URL")
        if not (self.full_name_url or self.only_contains_user_certs or self.only_contains_ca_certs):
            raise ValueError("an issuing distribution point needs a URL or a scope flag")

    def der_value(self) -> bytes:
        parts = []
        if self.full_name_url:
            parts.append(tlv(ctx(0), tlv(ctx(0), _uri(self.full_name_url))))
        if self.only_contains_user_certs:
            parts.append(b"\x81\x01\xff")
        if self.only_contains_ca_certs:
            parts.append(b"\x82\x01\xff")
        return seq(*parts)


@dataclass(frozen=True)
class ShardScheme:
    """Partitioned CRLs: serial ``s`` is in shard ``s % shards``; the shard's URL is
    ``url_template.format(shard=i)`` (e.g. ``http://crl.example/ca1/{shard}.crl``)."""

    shards: int
    url_template: str

    def __post_init__(self) -> None:
        if not isinstance(self.shards, int) or not 1 <= self.shards <= 1 << 16:
            raise ValueError(f"shard count {self.shards!r} must be an integer from 1 to 65536")
        if "{shard}" not in self.url_template:
            raise ValueError(f"CRL URL template {self.url_template!r} has no {{shard}} placeholder")
        if not _is_url(self.url(0)):
            raise ValueError(f"CRL URL template {self.url_template!r} is not an http(s)/ldap URL")

    def shard_of(self, serial: int) -> int:
        return serial % self.shards

    def url(self, shard: int) -> str:
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} is out of range 0..{self.shards - 1}")
        return self.url_template.format(shard=shard)

    def url_for_serial(self, serial: int) -> str:
        """The CRL distribution point URL to put in the certificate with this serial."""
        return self.url(self.shard_of(serial))

    def idp(self, shard: int, *, only_contains_user_certs: bool = False,
            only_contains_ca_certs: bool = False) -> IssuingDistributionPoint:
        return IssuingDistributionPoint(self.url(shard), only_contains_user_certs, only_contains_ca_certs)

    def filter(self, entries: Iterable, shard: int):
        """The entries of one shard (a database would rather filter in SQL)."""
        n = self.shards
        return (e for e in entries if e[0] % n == shard)


@dataclass(frozen=True)
class CRLIssuer:
    """What the CRL needs of its issuer: the exact DER of its subject Name and its key id."""

    name_der: bytes
    key_id: bytes

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> "CRLIssuer":
        fields = der.cert_fields(cert.public_bytes(Encoding.DER))
        try:
            key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            key_id = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        return cls(fields["subject"], key_id)


def _is_url(u: str) -> bool:
    return isinstance(u, str) and u.split(":", 1)[0].lower() in ("http", "https", "ldap") and "://" in u \
        and u.isascii() and not any(c.isspace() for c in u)


def _uri(u: str) -> bytes:
    return tlv(ctx(6, constructed=False), u.encode("ascii"))


def _entry_ext_table() -> dict:
    """Pre-encoded entry extensions for every reason code (without invalidity date)."""
    table = {None: b""}
    for flag, code in REASON_CODES.items():
        table[flag] = b"" if code == 0 else extension(_OID_REASON, der.enumerated(code))
    return table


_REASON_EXT = _entry_ext_table()
#: the same, wrapped in the entry's Extensions SEQUENCE (b"" when there is none)
_REASON_EXT_WRAPPED = {k: (seq(v) if v else b"") for k, v in _REASON_EXT.items()}


#: "HHMMSSZ" for every second of a day
_HMS = [b"%02d%02d%02dZ" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _encode_entries(entries: Iterable, out: bytearray, delta: bool) -> int:
    """Append DER of each revokedCertificates entry to ``out``; return the count.

    Hot loop (about 1 us per entry): the time is a per-day prefix (cached) plus one of the
    86,400 precomputed ``HHMMSSZ`` suffixes, the entry extensions for a reason without an
    invalidity date are precomputed, and each entry is one bytes %-format.
    """
    reason_ext = _REASON_EXT_WRAPPED
    remove = x509.ReasonFlags.remove_from_crl
    HMS = _HMS
    days: dict[int, bytes] = {}
    count = 0
    append = out.extend
    for serial, revoked_at, reason, invalidity in entries:
        if type(serial) is not int or serial < 0:
            raise ValueError(f"revoked entry serial {serial!r} is not a non-negative integer")
        s = serial.to_bytes((serial.bit_length() + 8) >> 3, "big")
        if type(revoked_at) is int:  # seconds since the epoch (UTC): the database reader's fast form
            day, sec = divmod(revoked_at, 86400)
        else:
            if revoked_at.tzinfo is None:
                raise ValueError(f"revocation time of serial {serial:x} is naive; give a UTC time")
            day, sec = divmod(int(revoked_at.timestamp()), 86400)
        prefix = days.get(day)
        if prefix is None:
            d = _EPOCH + _dt.timedelta(days=day)
            prefix = days[day] = (b"\x17\x0d%02d%02d%02d" % (d.year % 100, d.month, d.day)
                                  if 1950 <= d.year <= 2049 else b"\x18\x0f%04d%02d%02d" % (d.year, d.month, d.day))
        if invalidity is None:
            ext = reason_ext.get(reason)
            if ext is None:
                raise ValueError(f"revocation reason {reason!r} of serial {serial:x} is not an x509.ReasonFlags")
        else:
            ext = _REASON_EXT.get(reason)
            if ext is None:
                raise ValueError(f"revocation reason {reason!r} of serial {serial:x} is not an x509.ReasonFlags")
            ext += extension(_OID_INVALIDITY, der.generalized_time(invalidity))
            ext = b"\x30" + enc_len(len(ext)) + ext
        if reason is remove and not delta:
            raise ValueError(f"serial {serial:x}: removeFromCRL is only allowed in delta CRLs")
        n = 2 + len(s) + len(prefix) + 7 + len(ext)
        if n < 0x80 and len(s) < 0x80:
            append(b"0%c\x02%c%b%b%b%b" % (n, len(s), s, prefix, HMS[sec], ext))
        else:
            append(b"\x30" + enc_len(n) + der.integer(serial) + prefix + HMS[sec] + ext)
        count += 1
    return count


def build_crl(
    *,
    issuer: x509.Certificate | CRLIssuer,
    signing_key,
    hash_alg: hashes.HashAlgorithm | None = None,
    rsa_pss: bool = False,
    crl_number: int,
    this_update: _dt.datetime,
    next_update: _dt.datetime,
    entries: Iterable = (),
    delta_base: int | None = None,
    freshest_crl_urls: Iterable[str] = (),
    idp: IssuingDistributionPoint | None = None,
    out: BinaryIO | None = None,
) -> bytes | int:
    """Build and sign a v2 CRL.

    - ``issuer``: the CA certificate (its subject is the CRL issuer, its subject key id
      the AKI) or a :class:`CRLIssuer`.
    - ``signing_key``: the CA's private key (any ``cryptography`` private key, token keys
      included); ``hash_alg`` defaults to the hash unica pairs with the key for certificates
      too (:func:`unica.hsm.keytypes.default_hash_for`: SHA-384 for P-384, SHA-256 for P-256 and
      RSA, none for Ed25519/Ed448); ``rsa_pss``
      signs with RSASSA-PSS.
    - ``delta_base``: makes this a delta CRL (critical Delta CRL Indicator naming the base
      CRL number); ``freshest_crl_urls``: the Freshest CRL pointer of a base CRL.
    - ``idp``: a critical Issuing Distribution Point (partitioned CRLs).
    - ``entries``: iterable of :class:`RevokedEntry` or 4-tuples; consumed once.
    - ``out``: a binary file: the CRL is written there and its size returned. Without
      it the DER is returned.
    """
    if isinstance(issuer, x509.Certificate):
        issuer = CRLIssuer.from_certificate(issuer)
    elif not isinstance(issuer, CRLIssuer):
        raise TypeError("issuer must be an x509.Certificate or a CRLIssuer")
    if not isinstance(crl_number, int) or not 0 <= crl_number <= MAX_CRL_NUMBER:
        raise ValueError(f"CRL number {crl_number!r} must be an integer from 0 to 2^159-1")
    if delta_base is not None:
        if not isinstance(delta_base, int) or not 0 <= delta_base < crl_number:
            raise ValueError(f"delta base CRL number {delta_base!r} must be below the CRL number {crl_number}")
    if der._utc(next_update) <= der._utc(this_update):
        raise ValueError("nextUpdate must be later than thisUpdate")
    freshest = list(freshest_crl_urls)
    if freshest and delta_base is not None:
        raise ValueError("a delta CRL does not carry a Freshest CRL pointer")
    for u in freshest:
        if not _is_url(u):
            raise ValueError(f"freshest CRL URL {u!r} is not an http(s)/ldap URL")
    if idp is not None and not isinstance(idp, IssuingDistributionPoint):
        raise TypeError("idp must be an IssuingDistributionPoint")

    if hash_alg is None:
        from unica.hsm.keytypes import default_hash_for

        hash_alg = default_hash_for(signing_key)  # the issuance code's choice: one hash per CA key
    scheme = SignatureScheme(signing_key, hash_alg, rsa_pss=rsa_pss)

    exts = [
        extension(_OID_AKI, seq(tlv(ctx(0, constructed=False), issuer.key_id))),
        extension(_OID_CRL_NUMBER, integer(crl_number)),
    ]
    if delta_base is not None:
        exts.append(extension(_OID_DELTA, integer(delta_base), critical=True))
    if idp is not None:
        exts.append(extension(_OID_IDP, idp.der_value(), critical=True))
    if freshest:
        exts.append(extension(_OID_FRESHEST, seq(*(seq(tlv(ctx(0), tlv(ctx(0), _uri(u)))) for u in freshest))))
    ext_block = tlv(ctx(0), seq(*exts))

    revoked = bytearray()
    count = _encode_entries(entries, revoked, delta_base is not None)

    head = (b"\x02\x01\x01" + scheme.algorithm_identifier + issuer.name_der
            + der.x509_time(this_update) + der.x509_time(next_update))
    rev_hdr = (b"\x30" + enc_len(len(revoked))) if count else b""
    if not count:
        revoked = bytearray()
    tbs_len = len(head) + len(rev_hdr) + len(revoked) + len(ext_block)
    tbs = bytearray(b"\x30" + enc_len(tbs_len) + head + rev_hdr)
    tbs += revoked
    del revoked
    tbs += ext_block
    tbs = bytes(tbs)
    sig = der.bit_string(scheme.sign(tbs))
    tail = scheme.algorithm_identifier + sig
    outer = b"\x30" + enc_len(len(tbs) + len(tail))
    if out is None:
        return b"".join((outer, tbs, tail))
    out.write(outer)
    out.write(tbs)
    out.write(tail)
    return len(outer) + len(tbs) + len(tail)


def crl_to_file(path, **kwargs) -> int:
    """:func:`build_crl` written to ``path`` (atomically: a temporary file renamed)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with io.open(tmp, "wb", buffering=1 << 20) as f:
        n = build_crl(out=f, **kwargs)
    os.replace(tmp, path)
    return n
