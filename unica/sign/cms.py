"""CMS / CAdES-BES signatures (and CAdES-T with a TSA) over arbitrary data.

The SignedData is written at the DER level from parts computed once per signer (the
certificates, the issuer-and-serial, the algorithm identifiers, the ESS
signing-certificate-v2 attribute): per signature only the message digest, the signing
time and the signature itself are new. Declarations are signed in bulk, and building the
same structure through asn1crypto objects each time costs ~10 ms, far more than the token
signature. The output is the structure pyHanko would build (RFC 5652, CAdES-BES: signed
content-type, message-digest, signing-time, signing-certificate-v2), checked in the tests
with ``openssl cms -verify`` and asn1crypto. For CAdES-T the signature-time-stamp comes
from pyHanko's RFC 3161 client.

CAdES B-LT (ETSI EN 319 122-1, 5.5 and 6.3): the validation material of the signer's and the
TSA's certificates goes into the SignedData's own ``certificates`` (the CA certificates of both
paths) and ``crls`` fields (CRLs as CertificateList; OCSP responses as RFC 5940
OtherRevocationInfoFormat id-ri-ocsp-response) -- the place EN 319 122-1 prefers to the older
certificate-values / revocation-values unsigned attributes. Those fields are outside the signed
attributes, so adding them after the signature and its time-stamp changes nothing signed.

SM2 (GM/T 0010-2012, the SM2 profile of PKCS#7): an SM2 signer signs with SM3 only -- digestAlgorithm
SM3 (1.2.156.10197.1.401, parameters absent), signatureAlgorithm SM2-with-SM3 (1.2.156.10197.1.501,
parameters absent; the OID X.509 uses, and what GmSSL's CMS code writes there), the
signature over the DER signed attributes with the GM/T 0009 default signer ID (the one every
national-algorithm tool assumes: a CMS has no place to carry another). The signed attributes are the
ECDSA ones; the ESS signing-certificate-v2 hashes the certificate with SM3 (ESSCertIDv2
hashAlgorithm SM3, written out since SHA-256 is the default), so that an SM2 signature uses no
algorithm outside the national set. The content types are either the PKCS#7 ones
(signedData 1.2.840.113549.1.7.2, data .7.1; ``cms_oids="pkcs7"``, the default, which RFC 5652
readers take) or the GM/T 0010 ones (signedData 1.2.156.10197.6.1.4.2.2, data .2.1;
``cms_oids="gmt0010"``, for relying parties that expect GM/T 0010; OpenSSL does not read them).
The GM/T 0010 OIDs are for SM2 only. An SM2 signature is B-B only for now (no SM3 time-stamp
imprint, no SM2 TSA).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from typing import IO

from asn1crypto import algos, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from unica.der import oid
from unica.errors import FetchError, InputError, UnsupportedKeyType
from unica.hsm import signature_params
from unica.hsm.keytypes import is_sm2
from unica.sign.signer import SigningIdentity

_CHUNK = 1 << 20


OID_DATA = oid("1.2.840.113549.1.7.1")
OID_SIGNED_DATA = oid("1.2.840.113549.1.7.2")
OID_CONTENT_TYPE = oid("1.2.840.113549.1.9.3")
OID_MESSAGE_DIGEST = oid("1.2.840.113549.1.9.4")
OID_SIGNING_TIME = oid("1.2.840.113549.1.9.5")
OID_SIGNING_CERT_V2 = oid("1.2.840.113549.1.9.16.2.47")
OID_TIMESTAMP_TOKEN = oid("1.2.840.113549.1.9.16.2.14")
OID_RI_OCSP_RESPONSE = oid("1.3.6.1.5.5.7.16.2")

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sm3": hashes.SM3}

# GM/T 0010-2012 (SM2 cryptographic message syntax) and GM/T 0006 algorithm OIDs
OID_GM_DATA = oid("1.2.156.10197.6.1.4.2.1")
OID_GM_SIGNED_DATA = oid("1.2.156.10197.6.1.4.2.2")
OID_SM3 = oid("1.2.156.10197.1.401")
OID_SM2_WITH_SM3 = oid("1.2.156.10197.1.501")
#: the content-type OID sets an SM2 SignedData may carry: name -> (signedData, data)
CMS_OIDS = {"pkcs7": (OID_SIGNED_DATA, OID_DATA), "gmt0010": (OID_GM_SIGNED_DATA, OID_GM_DATA)}


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    if n < 0x100:
        return bytes((tag, 0x81, n)) + body
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF)) + body
    return bytes([tag]) + _len(n) + body


def _set_of(items: list[bytes], tag: int = 0x31) -> bytes:
    return tlv(tag, *sorted(items))  # DER: SET OF elements in ascending order of their encodings


def _attribute(oid: bytes, value: bytes) -> bytes:
    return tlv(0x30, oid, tlv(0x31, value))


# signingTime attribute header for a 13-byte UTCTime (for GeneralizedTime the sizes differ)
_SIGNING_TIME_PREFIX_UTC = tlv(0x30, OID_SIGNING_TIME, tlv(0x31, b"\x17\x0d" + bytes(13)))[:-15]
_SIGNING_TIME_PREFIX_GEN = tlv(0x30, OID_SIGNING_TIME, tlv(0x31, b"\x18\x0f" + bytes(15)))[:-17]


def _signing_time_attr(t: datetime) -> bytes:
    v = _time(t)
    return (_SIGNING_TIME_PREFIX_UTC if v[0] == 0x17 else _SIGNING_TIME_PREFIX_GEN) + v


_now_cache: tuple[int, bytes] = (-1, b"")


def _now_attr() -> bytes:
    """The signingTime attribute for now; re-encoded once per second (bulk signing)."""
    global _now_cache
    sec = int(time.time())
    cached = _now_cache
    if cached[0] != sec:
        cached = (sec, _signing_time_attr(datetime.fromtimestamp(sec, timezone.utc)))
        _now_cache = cached
    return cached[1]


def _time(t: datetime) -> bytes:
    """UTCTime (1950-2049) or GeneralizedTime, seconds precision (no strftime: it costs ~25 us)."""
    if t.tzinfo is None:
        raise InputError("signing time must be timezone-aware")
    t = t.astimezone(timezone.utc)
    hms = f"{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}Z"
    if 1950 <= t.year < 2050:
        return b"\x17\x0d" + f"{t.year % 100:02d}{hms}".encode()
    return b"\x18\x0f" + f"{t.year:04d}{hms}".encode()


@dataclass(frozen=True)
class _Template:
    """The DER parts of a SignedData that do not change from one signature to the next."""

    digest_name: str
    signed_data_oid: bytes
    data_oid: bytes
    digest_alg: bytes
    sig_alg: bytes
    certificates: bytes
    sid: bytes
    content_type_attr: bytes
    signing_cert_attr: bytes
    md_attr_prefix: bytes  # messageDigest attribute up to the digest bytes
    si_head: bytes  # SignerInfo version, sid, digestAlgorithm
    sd_head: bytes  # SignedData version, digestAlgorithms
    detached_encap: bytes


def _template(identity: SigningIdentity, digest_name: str, cms_oids: str = "pkcs7") -> _Template:
    signed_data_oid, data_oid = CMS_OIDS[cms_oids]
    cert = identity.cert
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    chain_der = [c.public_bytes(serialization.Encoding.DER) for c in identity.chain]
    a_cert = asn1_x509.Certificate.load(cert_der)
    sid = tlv(0x30, a_cert["tbs_certificate"]["issuer"].dump(), core.Integer(cert.serial_number).dump())
    # SM2 signers hash with SM3 throughout (module docstring); the others with SHA-256 as before
    ess_hash = "sm3" if digest_name == "sm3" else "sha256"
    ess = tsp.SigningCertificateV2({"certs": [{
        "hash_algorithm": {"algorithm": "sha256"} if ess_hash == "sha256" else {"algorithm": "1.2.156.10197.1.401"},
        "cert_hash": hashlib.new(ess_hash, cert_der).digest(),
        "issuer_serial": {"issuer": [asn1_x509.GeneralName(name="directory_name", value=a_cert.issuer)],
                          "serial_number": cert.serial_number},
    }]}).dump()
    certs: list[bytes] = []
    for der in (cert_der, *chain_der):
        if der not in certs:
            certs.append(der)
    digest_alg = (tlv(0x30, OID_SM3) if digest_name == "sm3"
                  else algos.DigestAlgorithm({"algorithm": digest_name}).dump())
    size = _HASHES[digest_name].digest_size
    md_attr = _attribute(OID_MESSAGE_DIGEST, tlv(0x04, bytes(size)))
    return _Template(
        digest_name=digest_name,
        signed_data_oid=signed_data_oid,
        data_oid=data_oid,
        digest_alg=digest_alg,
        sig_alg=_signature_algorithm(identity, digest_name),
        certificates=_set_of(certs, tag=0xA0),
        sid=sid,
        content_type_attr=_attribute(OID_CONTENT_TYPE, data_oid),
        signing_cert_attr=_attribute(OID_SIGNING_CERT_V2, ess),
        md_attr_prefix=md_attr[:-size],
        si_head=b"\x02\x01\x01" + sid + digest_alg,
        sd_head=b"\x02\x01\x01" + tlv(0x31, digest_alg),
        detached_encap=tlv(0x30, data_oid),
    )


def _signature_algorithm(identity: SigningIdentity, digest_name: str) -> bytes:
    key = identity.key
    if is_sm2(key):
        return tlv(0x30, OID_SM2_WITH_SM3)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_ecdsa"}).dump()
    if isinstance(key, rsa.RSAPrivateKey):
        if identity.pss:
            size = _HASHES[digest_name].digest_size
            return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": {
                "hash_algorithm": {"algorithm": digest_name},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest_name}},
                "salt_length": size, "trailer_field": "trailer_field_bc"}}).dump()
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_rsa"}).dump()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return algos.SignedDigestAlgorithm({"algorithm": "ed25519"}).dump()
    raise UnsupportedKeyType(f"cannot sign CMS with a {type(key).__name__}")


class CMSSigner:
    """Signs many documents with one identity; the constant DER is computed once.

    ``cms_oids``: the content-type OIDs, ``"pkcs7"`` (default) or ``"gmt0010"`` (GM/T 0010, SM2
    signers only; see the module docstring).
    """

    def __init__(self, identity: SigningIdentity, digest_algorithm: str | None = None, *,
                 cms_oids: str = "pkcs7"):
        if cms_oids not in CMS_OIDS:
            raise InputError(f"unknown CMS OID set {cms_oids!r} (pkcs7, gmt0010)")
        key = identity.key
        sm2 = is_sm2(key)
        if sm2:  # the SM2 scheme fixes its hash: SM3 (with the signer's Z value)
            if digest_algorithm not in (None, "sm3"):
                raise InputError(f"an SM2 key signs with SM3 only, not {digest_algorithm!r}")
            if identity.pss:
                raise InputError("PSS is for RSA keys, not SM2")
            name = "sm3"
        else:
            if cms_oids != "pkcs7":
                raise InputError("the GM/T 0010 CMS OIDs are for SM2 signers only")
            name = digest_algorithm or identity.digest_algorithm
            if name not in _HASHES or name == "sm3":
                raise InputError(f"unsupported digest algorithm {name!r} (sha256, sha384, sha512)")
        self.identity = identity
        self.digest_name = name
        self.cms_oids = cms_oids
        self._hashlib = (lambda d: hashlib.new("sm3", d)) if name == "sm3" else getattr(hashlib, name)
        if sm2 or isinstance(key, ed25519.Ed25519PrivateKey):
            self._sign_args: tuple = ()
        else:
            # unica.hsm.signature_params once, not per signature
            self._sign_args = signature_params(key, _HASHES[name](), pss=identity.pss)
        self._sign = key.sign

    @cached_property
    def _t(self) -> _Template:
        return _template(self.identity, self.digest_name, self.cms_oids)

    def sign(self, data: bytes | IO[bytes], *, detached: bool = True, tsa_url: str | None = None,
             signing_time: datetime | None = None, level: str | None = None, trust=()) -> bytes:
        """A DER ContentInfo(SignedData) over ``data`` (bytes or a binary file object).

        ``level``: B-B, B-T or B-LT (default: B-T with ``tsa_url``, else B-B; B-T and B-LT
        without ``tsa_url`` use ``UNICA_TSA_URL``). ``trust``: extra trust anchors up to which
        B-LT material is collected (default: the root of the signer's chain).
        """
        if level is not None or tsa_url:
            from unica.sign.ltv import resolve_level

            lvl = resolve_level(level, tsa_url, allowed=("B-B", "B-T", "B-LT"))
            tsa_url, long_term = lvl.tsa_url, lvl.long_term
            if tsa_url and self.digest_name == "sm3":
                # the RFC 3161 client and unica's TSA speak the SHA-2 family; an SM3 imprint and an
                # SM2 TSA are not part of this slice
                raise InputError("an SM2 CMS signature is B-B only for now: no time-stamp (B-T, B-LT)")
        else:
            long_term = False
        t = self._t
        content, digest = self._digest(data, keep=not detached)
        signed_attrs = [
            t.content_type_attr,
            t.md_attr_prefix + digest,
            _signing_time_attr(signing_time) if signing_time is not None else _now_attr(),
            t.signing_cert_attr,
        ]
        to_sign = _set_of(signed_attrs)
        signature = self._sign(to_sign, *self._sign_args)
        unsigned = b""
        certificates, revocation = t.certificates, b""
        if tsa_url:
            token = _timestamp_token(tsa_url, signature, self.digest_name)
            unsigned = _set_of([_attribute(OID_TIMESTAMP_TOKEN, token)], tag=0xA1)
            if long_term:
                certificates, revocation = self._validation_material(token, trust)
        signer_info = tlv(0x30, t.si_head, b"\xa0" + to_sign[1:], t.sig_alg, tlv(0x04, signature), unsigned)
        encap = tlv(0x30, t.data_oid, tlv(0xA0, tlv(0x04, content))) if content is not None else t.detached_encap
        signed_data = tlv(0x30, t.sd_head, encap, certificates, revocation, tlv(0x31, signer_info))
        return tlv(0x30, t.signed_data_oid, tlv(0xA0, signed_data))

    def _validation_material(self, token: bytes, trust=()) -> tuple[bytes, bytes]:
        """(certificates [0], crls [1]) of a CAdES B-LT SignedData: the signer's certificates
        and the CA certificates of the signer's and the TSA's paths; an OCSP response or CRL
        for each certificate below its root, fetched (bounded) from the certificates' URLs."""
        from asn1crypto import cms as acms
        from cryptography import x509

        from unica.sign.ltv import collect, collection_error, validation_context

        ident = self.identity
        tsd = acms.ContentInfo.load(token)["content"]
        tsa_certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in tsd["certificates"]
                     if c.name == "certificate"] if tsd["certificates"].native is not None else []
        vc = validation_context((ident.cert, *ident.chain), (*tuple(trust), *tsa_certs))
        tst_sid = tsd["signer_infos"][0]["sid"]
        tsa_cert = next((c for c in tsa_certs if tst_sid.name == "issuer_and_serial_number"
                         and c.serial_number == tst_sid.chosen["serial_number"].native), None)
        if tsa_cert is None:
            raise InputError("CAdES B-LT: the TSA's token does not carry its certificate (certReq)")

        async def gather():
            paths = [await collect(ident.cert, vc), await collect(tsa_cert, vc)]
            return paths, list(vc.ocsps), list(vc.crls)

        try:
            paths, ocsps, crls = asyncio.run(gather())
        except Exception as e:  # noqa: BLE001 -- mapped to typed unica errors
            from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError

            if isinstance(e, (PathBuildingError, PathValidationError, ValidationError, OSError)):
                raise collection_error(e, "CAdES B-LT") from None
            raise
        certs: list[bytes] = []
        for der in (ident.cert.public_bytes(serialization.Encoding.DER),
                    *(c.public_bytes(serialization.Encoding.DER) for c in ident.chain),
                    *(c.dump() for p in paths for c in p)):
            if der not in certs:
                certs.append(der)
        rev = [c.dump() for c in crls] + [tlv(0xA1, OID_RI_OCSP_RESPONSE, o.dump()) for o in ocsps]
        return _set_of(certs, tag=0xA0), (_set_of(rev, tag=0xA1) if rev else b"")

    def _digest(self, data, keep: bool) -> tuple[bytes | None, bytes]:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            return (data if keep else None), self._hashlib(data).digest()
        h = hashlib.new(self.digest_name)
        kept = [] if keep else None
        while True:
            chunk = data.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            if kept is not None:
                kept.append(chunk)
        return (b"".join(kept) if kept is not None else None), h.digest()


def timestamper(tsa_url: str | None, timeout: float = 10):
    """A pyHanko RFC 3161 client for ``tsa_url`` (None for no timestamp)."""
    if not tsa_url:
        return None
    if not tsa_url.startswith(("http://", "https://")):
        raise InputError(f"TSA URL {tsa_url!r} must be http:// or https://")
    return _bounded_timestamper_class()(tsa_url, timeout=timeout)


#: the largest time-stamp reply read from a TSA (a token with its TSA's chain is a few KiB)
MAX_TSA_REPLY = 256 * 1024

_TIMESTAMPER: list = []


def _bounded_timestamper_class():
    """pyHanko's HTTP time-stamp client, with the reply read through :func:`unica.verify.fetch.http_fetch`:
    bounded (Content-Length checked first, then every byte as it arrives: at most
    :data:`MAX_TSA_REPLY`), within the timeout in all, no redirects. pyHanko's own client reads
    the whole reply into memory, however large."""
    if not _TIMESTAMPER:
        from asn1crypto import tsp
        from pyhanko.sign.timestamps.common_utils import TimestampRequestError
        from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

        from unica.verify.fetch import http_fetch

        class BoundedHTTPTimeStamper(RequestsHTTPTimeStamper):
            async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
                def task():
                    try:
                        data = http_fetch(self.url, body=req.dump(), content_type="application/timestamp-query",
                                          accept="application/timestamp-reply", timeout=self.timeout,
                                          max_bytes=MAX_TSA_REPLY, max_redirects=0)
                    except FetchError as e:
                        raise TimestampRequestError(str(e)) from None
                    try:
                        resp = tsp.TimeStampResp.load(data)
                        resp["status"]["status"].native  # parsed now: malformed is a request error
                    except (ValueError, TypeError, KeyError) as e:
                        raise TimestampRequestError(f"the TSA's reply is not a TimeStampResp: {e}") from None
                    return resp

                return await asyncio.to_thread(task)

        _TIMESTAMPER.append(BoundedHTTPTimeStamper)
    return _TIMESTAMPER[0]


def _timestamp_token(tsa_url: str, signature: bytes, digest_name: str) -> bytes:
    """The RFC 3161 token over the signature value (CAdES signature-time-stamp), DER."""
    from pyhanko.sign.timestamps import TimestampRequestError

    stamper = timestamper(tsa_url)
    imprint = hashlib.new(digest_name, signature).digest()
    try:
        token = asyncio.run(stamper.async_timestamp(imprint, digest_name))
    except TimestampRequestError as e:
        raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
    except OSError as e:
        raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
    return token.dump()


def sign_cms(data: bytes | IO[bytes], identity: SigningIdentity, *, detached: bool = True,
             tsa_url: str | None = None, digest_algorithm: str | None = None,
             signing_time: datetime | None = None, level: str | None = None, trust=(),
             cms_oids: str = "pkcs7") -> bytes:
    """A DER CMS SignedData (CAdES-BES; CAdES-T with ``tsa_url``) over ``data``.

    Signed attributes: content-type, message-digest, signing-time, signing-certificate-v2.
    The signer's certificate and CA chain are embedded. ``detached=False`` encapsulates
    the content. For many documents keep a :class:`CMSSigner` and call its ``sign``.
    ``level`` B-T / B-LT: see :meth:`CMSSigner.sign`. ``cms_oids``: see :class:`CMSSigner`.
    """
    return _signer(identity, digest_algorithm, cms_oids).sign(data, detached=detached, tsa_url=tsa_url,
                                                     signing_time=signing_time, level=level, trust=trust)


@lru_cache(maxsize=64)
def _signer(identity: SigningIdentity, digest_algorithm: str | None, cms_oids: str = "pkcs7") -> CMSSigner:
    return CMSSigner(identity, digest_algorithm, cms_oids=cms_oids)
