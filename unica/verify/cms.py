"""CMS / CAdES signature verification (RFC 5652, ETSI EN 319 122): attached and detached,
B-B (signed attributes with message-digest, content-type, signing-certificate(-v2)) and B-T
(an RFC 3161 signature-time-stamp unsigned attribute whose token is itself verified and whose
TSA certificate is validated; its genTime is then a proof of existence for the signature).

The structure is read by the CMS layer :mod:`unica.verify._der` over unica's one strict DER
reader (:mod:`unica.der`); BER input is normalised to DER by asn1crypto first.

Time (one rule for CMS, CAdES and PAdES, :func:`time_basis`): a proof of existence (POE) comes
only from a validated time-stamp (the signature-time-stamp; for a PDF signature also a later
document time-stamp covering it) or from ``at=`` given by the caller; the earliest POE is the
validation time. Without one the signature is validated now, and the claimed signing time
(the signing-time attribute, else a PDF's /M) is passed to certificate validation as
``claimed_time``: a signer revoked after that claimed time is INDETERMINATE/REVOKED_NO_POE.
A time-stamp token's own TSA certificate is validated at the token's earliest proof of
existence not before its genTime (a later validated document time-stamp covering it, or
``at``), else now: the archive time-stamp chain of PAdES B-LTA (EN 319 102-1 5.6.3).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import functools
import hashlib
import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Union

from asn1crypto import cms
from cryptography.hazmat.primitives import hashes

from unica.errors import MalformedInput, VerificationError

from . import _der
from .report import (
    Indication,
    SignatureChecks,
    SignatureReport,
    SigningTimeSource,
    SubIndication,
    TimestampReport,
    ValidationReport,
    indication_for,
)
from .revocation import RevocationPolicy, verify_signature
from .usage import Usage
from ._util import CertLike, as_utc, one_line, read_bytes, utcnow

if TYPE_CHECKING:
    from .verifier import Verifier

#: a CMS signature: DER/BER or PEM bytes, a file path, or an asn1crypto ContentInfo
SignatureInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", cms.ContentInfo]
#: signed content of a detached signature: bytes or a file path
DataInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
#: trust for the one-off functions: a Verifier, or trust anchor certificate(s) / PEM / DER / paths
TrustInput = Union["Verifier", CertLike, Iterable[CertLike]]

_DIGESTS = {  # OID -> (name, cryptography hash class)
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
    "2.16.840.1.101.3.4.2.4": ("sha224", hashes.SHA224),
    "2.16.840.1.101.3.4.2.8": ("sha3_256", hashes.SHA3_256),
    "2.16.840.1.101.3.4.2.9": ("sha3_384", hashes.SHA3_384),
    "2.16.840.1.101.3.4.2.10": ("sha3_512", hashes.SHA3_512),
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
    "1.2.156.10197.1.401": ("sm3", hashes.SM3),
}
_NAME_TO_OID = {v[0]: k for k, v in _DIGESTS.items()}
#: digest algorithms accepted for signatures (SHA-1 is refused: CRYPTO_CONSTRAINTS_FAILURE)
_WEAK = frozenset({"sha1"})
_RSASSA_PSS = "1.2.840.113549.1.1.10"
#: SM2 signature algorithms of a SignerInfo: SM2-with-SM3 (GM/T 0006; what unica, GmSSL and XiPKI
#: write) and the bare SM2-1 signature OID some GM/T 0010 implementations put there instead
_SM2_SIGNATURES = {"1.2.156.10197.1.501": "sm2-with-sm3", "1.2.156.10197.1.301.1": "sm2-with-sm3"}
_DATA = "1.2.840.113549.1.7.1"
_GM_DATA = "1.2.156.10197.6.1.4.2.1"  # GM/T 0010-2012 data
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
A_CONTENT_TYPE = "1.2.840.113549.1.9.3"
A_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
A_SIGNING_TIME = "1.2.840.113549.1.9.5"
A_SIGNING_CERT = "1.2.840.113549.1.9.16.2.12"
A_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
A_SIG_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
A_REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
A_ADBE_REVOCATION = "1.2.840.113583.1.1.8"
_OID_NAMES = {_DATA: "data", _TST_INFO: "tst_info", _GM_DATA: "data (GM/T 0010)"}


@dataclasses.dataclass(frozen=True)
class CertOptions:
    """Certificate-validation inputs applied to a signer's certificate; None = the Verifier's own
    setting. Passed on to :meth:`Verifier.validate_certificate` (only those given)."""

    usage: str | Usage | None = None
    revocation: RevocationPolicy | None = None
    policies: Iterable[str] | None = None
    require_explicit_policy: bool | None = None
    inhibit_policy_mapping: bool | None = None
    inhibit_any_policy: bool | None = None
    strict: bool | None = None

    def __post_init__(self) -> None:
        if self.revocation is not None and not isinstance(self.revocation, RevocationPolicy):
            raise TypeError("revocation must be a RevocationPolicy")
        if isinstance(self.policies, (str, bytes)):
            raise TypeError("policies must be an iterable of dotted OIDs, not a single string")
        if self.policies is not None:
            object.__setattr__(self, "policies", tuple(self.policies))
        for name in ("require_explicit_policy", "inhibit_policy_mapping", "inhibit_any_policy", "strict"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                raise TypeError(f"{name} must be True, False or None")

    def validate_kwargs(self) -> dict[str, Any]:
        """Keywords for validate_certificate: those set (not None), usage excluded."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "usage" and getattr(self, f.name) is not None}

    def for_timestamp(self) -> "CertOptions":
        """For a time-stamp token's TSA certificate: the revocation policy and strictness carry
        over; the user policy inputs concern the signer, not the TSA."""
        return CertOptions(usage="timestamping", revocation=self.revocation, strict=self.strict)


@dataclasses.dataclass(frozen=True)
class TimeBasis:
    """Where one signature stands in time: what :func:`time_basis` decided."""

    #: the time the signer's certificate is validated at
    validation_time: _dt.datetime
    #: True when validation_time is a proof of existence
    time_is_proven: bool
    #: the claimed signing time to pass as ``claimed_time`` (None when the time is proven)
    claimed_time: _dt.datetime | None
    #: for the report: the POE if any, else the claimed time
    signing_time: _dt.datetime | None
    source: SigningTimeSource


def time_basis(*, timestamp: _dt.datetime | None = None, document_timestamp: _dt.datetime | None = None,
               at: _dt.datetime | None = None, signing_time_attribute: _dt.datetime | None = None,
               pdf_m: _dt.datetime | None = None, now: _dt.datetime | None = None) -> TimeBasis:
    """The one rule for claimed time, time-stamps and proof of existence (CMS, CAdES, PAdES).

    Proofs of existence: ``timestamp`` (genTime of the signature's validated
    signature-time-stamp), ``document_timestamp`` (genTime of a validated later PDF document
    time-stamp covering the signature) and ``at`` (given by the caller). The earliest one is the
    validation time and the time is proven; the claimed time then plays no part (a revocation
    before the POE is TOTAL-FAILED/REVOKED).

    Otherwise the signature is validated at ``now`` (default: the current time), unproven, and
    the claimed time -- ``signing_time_attribute`` (CMS signing-time), else ``pdf_m`` (the PDF
    signature dictionary's /M) -- is the ``claimed_time`` for certificate validation.
    """
    proofs = [(as_utc(t), src) for t, src in ((timestamp, SigningTimeSource.TIMESTAMP),
                                              (document_timestamp, SigningTimeSource.DOCUMENT_TIMESTAMP),
                                              (at, SigningTimeSource.VALIDATION_TIME_GIVEN)) if t is not None]
    if proofs:
        when, src = min(proofs, key=lambda p: p[0])  # stable: on a tie the time-stamp is named
        return TimeBasis(when, True, None, when, src)
    claimed, src = None, SigningTimeSource.NONE
    if signing_time_attribute is not None:
        claimed, src = as_utc(signing_time_attribute), SigningTimeSource.SIGNING_TIME_ATTRIBUTE
    elif pdf_m is not None:
        claimed, src = as_utc(pdf_m), SigningTimeSource.PDF_M
    return TimeBasis(as_utc(now) if now is not None else utcnow(), False, claimed, claimed, src)


def _digest(alg: str, data: bytes) -> bytes:
    return hashlib.new(alg, data).digest()


def _signature_der(signature: Any) -> tuple[bytes, str]:
    if isinstance(signature, cms.ContentInfo):
        return signature.dump(), "signature"
    data, name = read_bytes(signature, "signature")
    if data.lstrip()[:10] == b"-----BEGIN":
        m = re.search(rb"-----BEGIN [A-Z0-9 ]+-----(.+?)-----END", data, re.S)
        if not m:
            raise MalformedInput(f"{name}: bad PEM")
        try:
            data = base64.b64decode(b"".join(m.group(1).split()), validate=True)
        except ValueError:
            raise MalformedInput(f"{name}: bad base64 in PEM") from None
    return data, name


def parse_signed_data(signature: Any) -> _der.SignedDataRaw:
    data, name = _signature_der(signature)
    try:
        return _der.parse_signed_data_der(data)
    except (_der.DERError, IndexError):
        pass
    try:  # BER (indefinite lengths, constructed strings): normalise to DER
        ci = cms.ContentInfo.load(data)
        if ci["content_type"].native != "signed_data":
            raise MalformedInput(f"{name}: CMS content type is {ci['content_type'].native}, not signed-data")
        return _der.parse_signed_data_der(ci.dump(force=True))
    except _der.DERError as e:
        raise MalformedInput(f"{name}: not a DER/PEM CMS SignedData ({one_line(e)})") from None
    except MalformedInput:
        raise
    except Exception as e:  # asn1crypto raises many kinds on garbage
        raise MalformedInput(f"{name}: not a DER/PEM CMS SignedData ({type(e).__name__}: {one_line(e)})") from None


def _find_signer(si: _der.SignerInfoRaw, verifier, certs: list[bytes]):
    for der in certs:
        try:
            cert, pub, ident, _, issuer_der = verifier.cert_entry(der)
        except ValueError:
            continue
        if si.sid_kind == "issuer_serial":
            if issuer_der == si.sid_issuer and cert.serial_number == si.sid_serial:
                return der, cert, pub, ident
        else:
            from cryptography import x509

            try:
                if cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == si.sid_ski:
                    return der, cert, pub, ident
            except x509.ExtensionNotFound:
                continue
    return None, None, None, None


def verify_cms_all(verifier: Verifier, signature: SignatureInput, data: DataInput | None = None, *,
                   at: _dt.datetime | None = None, options: CertOptions = CertOptions()) -> tuple[SignatureReport, ...]:
    """One report per SignerInfo (a CMS may carry several signers over the same content)."""
    sd = parse_signed_data(signature)
    if not sd.signers:
        raise VerificationError("CMS signature has no SignerInfo")
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        data, _ = read_bytes(data, "signed data")
    return tuple(verify_cms_with(verifier, sd, data, at=at, options=options, signer_index=i)
                 for i in range(len(sd.signers)))


def verify_cms_with(verifier: Verifier, signature: SignatureInput | _der.SignedDataRaw,
                    data: DataInput | None = None, *, at: _dt.datetime | None = None,
                    options: CertOptions = CertOptions(), signer_index: int = 0,
                    extra_revocation: tuple[list[bytes], list[bytes]] | None = None,
                    document_timestamp: tuple[_dt.datetime, str] | None = None,
                    pdf_m: _dt.datetime | None = None, _is_timestamp: bool = False) -> SignatureReport:
    """Verify one signer of a CMS.

    ``extra_revocation``: (CRLs, OCSP responses) as DER, found beside the signature (e.g. a
    PDF's document security store). PDF only: ``document_timestamp`` is (genTime, field name) of
    a validated later document time-stamp covering the signature, ``pdf_m`` the signature
    dictionary's /M; both enter :func:`time_basis`.
    """
    sd = signature if isinstance(signature, _der.SignedDataRaw) else parse_signed_data(signature)
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        data, _ = read_bytes(data, "signed data")
    if isinstance(signer_index, bool) or not isinstance(signer_index, int):
        raise TypeError("signer_index must be an int")
    checks: dict[str, str] = {}
    messages: list[str] = []
    if not sd.signers:
        raise VerificationError("CMS signature has no SignerInfo")
    if not 0 <= signer_index < len(sd.signers):
        raise VerificationError(f"the CMS has {len(sd.signers)} signer(s): no signer #{signer_index + 1}")
    if len(sd.signers) > 1:
        messages.append(f"the CMS has {len(sd.signers)} signers; this report covers signer "
                        f"#{signer_index + 1} (see verify_cms_all)")
    si = sd.signers[signer_index]
    econtent = sd.econtent
    if econtent is not None:
        if data is not None and bytes(data) != econtent:
            messages.append("data given beside an attached signature differs from the attached content")
            econtent = bytes(data)
    elif data is not None:
        econtent = bytes(data)
    fmt = "CMS"
    signer_ident = None
    claimed: _dt.datetime | None = None

    def finish(sub, cert_report=None, basis: TimeBasis | None = None, ts_report=None, timestamps=()):
        if basis is None:  # stopped before validation: report the claimed time, if known
            basis = time_basis(signing_time_attribute=claimed, pdf_m=pdf_m)
        return SignatureReport(
            indication=indication_for(sub), sub_indication=sub, format=fmt, signer=signer_ident,
            signing_time=basis.signing_time, signing_time_source=basis.source,
            checks=SignatureChecks(**checks), certificate=cert_report, timestamp=ts_report,
            messages=tuple(messages), timestamps=timestamps,
        )

    if econtent is None:
        messages.append("detached signature: the signed data was not given")
        return finish(SubIndication.SIGNED_DATA_NOT_FOUND)
    signer_der, signer_cert, key, signer_ident = _find_signer(si, verifier, sd.certs)
    if signer_cert is None:
        checks["signer_certificate"] = "not found"
        messages.append("the signer's certificate is not in the signature")
        return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    dig = _DIGESTS.get(si.digest_oid)
    if dig is None or dig[0] in _WEAK:
        messages.append(f"digest algorithm {dig[0] if dig else si.digest_oid} is not accepted")
        return finish(SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    digest_alg, hash_cls = dig
    sm2 = si.sig_oid in _SM2_SIGNATURES
    if sm2 and digest_alg != "sm3":  # the SM2 scheme fixes its hash: SM3 over Z || M
        messages.append(f"an SM2 signature with digest algorithm {digest_alg}: SM2 signs with SM3 only")
        return finish(SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    if sd.content_type == _der.GM_SIGNED_DATA and not sm2:
        messages.append("a GM/T 0010 signedData whose signature is not SM2: GM/T 0010 is the SM2 profile")
        return finish(SubIndication.FORMAT_FAILURE)
    try:
        if si.signed_attrs is not None:
            attrs = si.attrs
            if A_SIGNING_CERT_V2 in attrs or A_SIGNING_CERT in attrs:
                fmt = "CAdES-B-B"
            md = attrs.get(A_MESSAGE_DIGEST)
            if md is None or len(md) != 1:
                checks["message_digest"] = "missing"
                messages.append("signed attributes lack a single message-digest")
                return finish(SubIndication.FORMAT_FAILURE)
            if _der.octet_string(md[0]) != _digest(digest_alg, econtent):
                checks["message_digest"] = "mismatch"
                messages.append("the content does not match the signed message digest (content altered?)")
                return finish(SubIndication.HASH_FAILURE)
            checks["message_digest"] = "ok (sm3)" if sm2 else "ok"
            ct = attrs.get(A_CONTENT_TYPE)
            if ct is None or len(ct) != 1 or _der.object_identifier(ct[0]) != sd.econtent_type:
                checks["content_type"] = "mismatch"
                messages.append("content-type attribute missing or different from the encapsulated type")
                return finish(SubIndication.FORMAT_FAILURE)
            checks["content_type"] = "ok (GM/T 0010 data)" if sd.econtent_type == _GM_DATA else "ok"
            signed_bytes = b"\x31" + si.signed_attrs[1:]
            v2, v1 = attrs.get(A_SIGNING_CERT_V2), attrs.get(A_SIGNING_CERT)
            if v2 or v1:
                h_oid, expected = _der.ess_cert_id((v2 or v1)[0], v2=bool(v2))
                h = _DIGESTS.get(h_oid)
                if h is None or _digest(h[0], signer_der) != expected:
                    checks["signing_certificate"] = "mismatch"
                    messages.append("the signing-certificate attribute does not match the signer's certificate")
                    return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
                checks["signing_certificate"] = "ok (v2)" if v2 else "ok (v1)"
                fmt = "CAdES-B-B"
            else:
                checks["signing_certificate"] = "absent"
            st = attrs.get(A_SIGNING_TIME)
            if st:
                claimed = as_utc(_der.time(st[0]))
        else:
            signed_bytes = econtent
            checks["signed_attributes"] = "absent"
        pss = si.sig_oid == _RSASSA_PSS
        halg = hash_cls()
        if pss:
            from asn1crypto import algos

            params = algos.RSASSAPSSParams.load(si.sig_params)
            halg = _DIGESTS[_NAME_TO_OID[params["hash_algorithm"]["algorithm"].native]][1]()
    except (_der.DERError, IndexError, KeyError, ValueError) as e:
        messages.append(f"malformed signed attributes: {e}")
        return finish(SubIndication.FORMAT_FAILURE)
    if not (_sm2_verify(signer_der, si.signature, signed_bytes) if sm2
            else key is not None and verify_signature(key, si.signature, signed_bytes, halg, pss)):
        checks["signature"] = "invalid"
        messages.append("the signature value does not verify with the signer's public key"
                        + (" (SM2 with SM3, GM/T 0009 default signer ID)" if sm2 else ""))
        return finish(SubIndication.SIG_CRYPTO_FAILURE)
    checks["signature"] = f"ok ({_SM2_SIGNATURES[si.sig_oid]})" if sm2 else "ok"

    # B-T: signature time-stamp (unsigned attribute)
    poe: _dt.datetime | None = None
    ts_report = None
    timestamps: tuple = ()
    tokens = si.unsigned.get(A_SIG_TIMESTAMP) if not _is_timestamp else None
    if tokens:
        ts_report, gen_time, problem = _verify_timestamp(
            verifier, tokens[0], si.signature, options,
            poes=(document_timestamp[0] if document_timestamp is not None else None, at),
            extra_revocation=(list(extra_revocation[0] if extra_revocation else ()) + list(sd.crls),
                              list(extra_revocation[1] if extra_revocation else ()) + list(sd.ocsps)))
        if problem:
            checks["signature_timestamp"] = "invalid"
            messages.append(f"signature time-stamp not usable: {problem}")
        else:
            checks["signature_timestamp"] = "ok"
            poe = gen_time
            fmt = "CAdES-B-T" if fmt == "CAdES-B-B" else "CMS+timestamp"
        timestamps = (timestamp_entry("signature time-stamp", ts_report, _token_gen_time(tokens[0]),
                                      ok=not problem, proves=("signature",)),)

    inter_entries = []
    for d in sd.certs:
        if d != signer_der:
            try:
                inter_entries.append(verifier.cert_entry(d))
            except ValueError:
                messages.append("a certificate in the signature cannot be parsed; it is ignored")
    intermediates = [e[0] for e in inter_entries]
    fps = (verifier.cert_entry(signer_der)[3], tuple(sorted(e[3] for e in inter_entries)))
    doc_ts = None
    if document_timestamp is not None and not _is_timestamp:
        doc_ts = document_timestamp[0]
        checks["document_timestamp"] = f"ok ({document_timestamp[1]}, {as_utc(doc_ts):%Y-%m-%dT%H:%M:%SZ})"
    basis = time_basis(timestamp=poe, document_timestamp=doc_ts, at=at, signing_time_attribute=claimed,
                       pdf_m=pdf_m)
    embedded = _embedded_revocation(verifier, sd, si, extra_revocation)
    if embedded is not None and (embedded.crls or embedded.ocsp):
        checks["embedded_revocation_data"] = f"{len(embedded.crls)} CRL(s), {len(embedded.ocsp)} OCSP response(s)"
    cert_report: ValidationReport = verifier.validate_certificate(
        signer_cert, intermediates=intermediates, at=basis.validation_time,
        usage="timestamping" if _is_timestamp else options.usage,
        time_is_proven=basis.time_is_proven, claimed_time=basis.claimed_time, _fingerprints=fps,
        embedded=embedded, **options.validate_kwargs())
    if cert_report.indication is not Indication.TOTAL_PASSED:
        messages.extend(cert_report.messages)
    if _is_timestamp:
        fmt = "RFC 3161 time-stamp token"
    return finish(cert_report.sub_indication, cert_report, basis, ts_report, timestamps)


@functools.lru_cache(maxsize=256)
def _sm2_public_key(cert_der: bytes):
    """The SM2 public key of a certificate (DER), or None when its key is not SM2; memoised
    (pyca/cryptography, hence the Verifier's certificate cache, cannot load SM2 keys)."""
    from asn1crypto import x509 as ax509

    from unica.errors import UnicaError
    from unica.sm2 import SM2PublicKey

    try:
        spki = ax509.Certificate.load(cert_der)["tbs_certificate"]["subject_public_key_info"].dump()
        return SM2PublicKey.from_spki_der(spki)
    except (UnicaError, ValueError, TypeError, KeyError):
        return None


def _sm2_verify(cert_der: bytes, signature: bytes, signed: bytes) -> bool:
    """SM2-with-SM3 over ``signed`` with the GM/T 0009 default signer ID: a CMS has no field for
    another ID, and the national-algorithm tools (GmSSL, XiPKI, the card middleware) all sign
    CMS with the default one."""
    from unica.errors import UnicaError

    key = _sm2_public_key(cert_der)
    if key is None:
        return False
    try:
        key.verify(signature, signed)
    except UnicaError:  # SM2SignatureInvalid, or a malformed signature value
        return False
    return True


def _token_gen_time(token: bytes) -> _dt.datetime | None:
    """The genTime of a time-stamp token, or None when it cannot be read."""
    from asn1crypto import tsp

    try:
        tsd = parse_signed_data(token)
        return as_utc(tsp.TSTInfo.load(tsd.econtent)["gen_time"].native) if tsd.econtent is not None else None
    except Exception:  # noqa: BLE001 -- a damaged token: no genTime to report
        return None


def timestamp_entry(kind: str, rep: SignatureReport | None, gen_time: _dt.datetime | None, *, ok: bool,
                    proves: tuple[str, ...] = (), field_name: str | None = None) -> TimestampReport:
    """The report's line for one time-stamp: ``rep`` is the token's validation (None when it
    could not be validated at all: unreadable, or its imprint is not over what it should
    cover); ``ok`` whether it is a proof of existence; ``proves`` what it proves."""
    if rep is None:
        ind, sub = Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE if gen_time is not None else SubIndication.FORMAT_FAILURE
    else:
        ind, sub = rep.indication, rep.sub_indication
    ok = ok and ind is Indication.TOTAL_PASSED and gen_time is not None
    return TimestampReport(
        kind=kind, gen_time=gen_time, tsa=rep.signer.subject if rep is not None and rep.signer is not None else None,
        indication=ind, sub_indication=sub,
        validated_at=rep.certificate.validation_time if rep is not None and rep.certificate is not None else None,
        proof_of_existence=gen_time if ok else None, proof_of_existence_for=tuple(proves) if ok else (),
        field_name=field_name)


def _embedded_revocation(verifier, sd: _der.SignedDataRaw, si: _der.SignerInfoRaw, extra=None):
    """CRLs / OCSP responses carried by the signature: SignedData.crls, the Adobe
    revocationInfoArchival signed attribute (PAdES by pyHanko / Acrobat), CAdES
    revocation-values. None when there are none."""
    crls, ocsps = list(sd.crls), list(sd.ocsps)
    if extra:
        crls += list(extra[0])
        ocsps += list(extra[1])
    try:
        for v in si.attrs.get(A_ADBE_REVOCATION, ()):
            c, o = _der.revocation_archival(v)
            crls += c
            ocsps += o
        for v in si.unsigned.get(A_REVOCATION_VALUES, ()):
            c, o = _der.revocation_values(v)
            crls += c
            ocsps += o
    except (_der.DERError, IndexError):
        pass  # damaged embedded data is ignored; the report then lacks that evidence
    if not crls and not ocsps:
        return None
    return verifier.source.parse_embedded(crls[-256:], ocsps[-256:])  # a parse-cost bound (the CMS is bounded)


def _verify_timestamp(verifier: Verifier, token: bytes, signature_value: bytes, options: CertOptions = CertOptions(),
                      poes: Iterable[_dt.datetime | None] = (), extra_revocation=None):
    """-> (report, genTime, problem or None).

    ``poes``: proofs of existence of the token itself -- the genTime of a validated later
    document time-stamp covering it, ``at`` given by the caller; those not before the token's
    genTime count, and the TSA certificate is validated at the earliest of them (EN 319 102-1
    past certificate validation), else now. ``extra_revocation``: revocation data found beside
    the token (a PDF's DSS, the CAdES SignedData's crls field), offered for the TSA's path as
    for the signer's."""
    from asn1crypto import tsp

    try:
        tsd = parse_signed_data(token)
        if tsd.econtent_type != _TST_INFO or tsd.econtent is None:
            return None, None, "time-stamp token does not hold a TSTInfo"
        tst = tsp.TSTInfo.load(tsd.econtent)
        imprint = tst["message_imprint"]
        halg = imprint["hash_algorithm"]["algorithm"].native
        if halg not in _NAME_TO_OID or halg in _WEAK:
            return None, None, f"time-stamp imprint algorithm {halg} not accepted"
        if _digest(halg, signature_value) != imprint["hashed_message"].native:
            return None, None, "time-stamp message imprint does not match the signature value"
        gen_time = tst["gen_time"].native
    except MalformedInput as e:
        return None, None, f"malformed time-stamp token: {e}"
    except (ValueError, KeyError, TypeError) as e:
        return None, None, f"malformed time-stamp token: {e}"
    gen_time = as_utc(gen_time)
    poe = min((as_utc(p) for p in poes if p is not None and as_utc(p) >= gen_time), default=None)
    rep = verify_cms_with(verifier, token, None, at=poe, options=options.for_timestamp(),
                          extra_revocation=extra_revocation, _is_timestamp=True)
    if not rep.passed:
        return rep, None, (f"time-stamp token: {rep.indication.value}/{rep.sub_indication.value}: "
                           + "; ".join(rep.messages))
    return rep, gen_time, None


def verify_cms(signature: SignatureInput, data: DataInput | None = None, *, trust: TrustInput,
               intermediates: CertLike | Iterable[CertLike] = (), at: _dt.datetime | None = None,
               usage: str | Usage | None = None, revocation: RevocationPolicy | None = None,
               crls: Iterable[Any] = (), ocsp_responses: Iterable[bytes] = (), fetcher: Any = None,
               policies: Iterable[str] | None = None, require_explicit_policy: bool | None = None,
               inhibit_policy_mapping: bool | None = None, inhibit_any_policy: bool | None = None,
               strict: bool | None = None, signer_index: int = 0) -> SignatureReport:
    """Verify a CMS/CAdES signature once (for many signatures keep a :class:`Verifier`).

    ``trust``: a :class:`~unica.verify.Verifier` (its caches, revocation data and defaults are
    used; ``intermediates`` / ``crls`` / ``ocsp_responses`` / ``fetcher`` then belong on it and
    are refused here) or trust anchor certificates (certificate objects, PEM/DER bytes, paths),
    from which a one-off Verifier is built with ``intermediates``, ``revocation`` (None: the
    Verifier's default), ``crls``, ``ocsp_responses`` and ``fetcher``.
    The other keywords are those of :meth:`Verifier.verify_cms`.
    """
    kw = dict(at=at, usage=usage, revocation=revocation, policies=policies,
              require_explicit_policy=require_explicit_policy, inhibit_policy_mapping=inhibit_policy_mapping,
              inhibit_any_policy=inhibit_any_policy, strict=strict, signer_index=signer_index)
    return _one_off(trust, intermediates, crls, ocsp_responses, fetcher).verify_cms(signature, data, **kw)


def _one_off(trust: TrustInput, intermediates, crls, ocsp_responses, fetcher) -> Verifier:
    """The Verifier given as ``trust``, or one built for a single call."""
    from .verifier import Verifier

    if isinstance(trust, Verifier):
        extra = [n for n, v in (("intermediates", intermediates), ("crls", crls),
                                ("ocsp_responses", ocsp_responses), ("fetcher", fetcher)) if v]
        if extra:
            raise TypeError(f"{', '.join(extra)}: set these on the Verifier given as trust, not per call")
        return trust
    return Verifier(trust, intermediates=intermediates, crls=crls, ocsp_responses=ocsp_responses,
                    fetcher=fetcher, cache_size=64)


# -- Verifier methods (bound in the class body of unica.verify.verifier.Verifier) ---------------


def verifier_verify_cms(self: Verifier, signature: SignatureInput, data: DataInput | None = None, *,
                        at: _dt.datetime | None = None, usage: str | Usage | None = None,
                        revocation: RevocationPolicy | None = None, policies: Iterable[str] | None = None,
                        require_explicit_policy: bool | None = None, inhibit_policy_mapping: bool | None = None,
                        inhibit_any_policy: bool | None = None, strict: bool | None = None,
                        signer_index: int = 0) -> SignatureReport:
    """Verify one signer of a CMS / CAdES signature (attached, or detached with ``data``).

    ``signature``: DER/BER/PEM bytes, a file path or an asn1crypto ``ContentInfo``.
    ``data``: the signed content of a detached signature (bytes or a path).
    ``at``: a time the caller vouches for -- taken as a proof of existence (the earliest of it and
    a validated signature-time-stamp is the validation time). Without any, the signature is
    validated now and its signing-time attribute counts only as a claim.
    ``usage``: intended use of the signer's certificate (preset name, :class:`Usage` or
    ``"ku:...;eku:..."``); None: the Verifier's.
    ``revocation``: a :class:`RevocationPolicy` for this call; None: the Verifier's.
    ``policies``: RFC 5280 initial user policy set (dotted OIDs); None: the Verifier's (anyPolicy).
    ``require_explicit_policy`` / ``inhibit_policy_mapping`` / ``inhibit_any_policy``: RFC 5280
    initial-explicit-policy, initial-policy-mapping-inhibit, initial-any-policy-inhibit.
    ``strict``: also apply the RFC 5280 profile rules. For all of these None means the Verifier's
    setting; they are passed to :meth:`Verifier.validate_certificate` for the signer (a time-stamp
    token's TSA certificate gets the revocation policy and ``strict`` only).
    ``signer_index``: which SignerInfo (0-based; see :meth:`Verifier.verify_cms_all` for all).
    """
    opts = CertOptions(usage, revocation, policies, require_explicit_policy, inhibit_policy_mapping,
                       inhibit_any_policy, strict)
    return verify_cms_with(self, signature, data, at=at, options=opts, signer_index=signer_index)


def verifier_verify_cms_all(self: Verifier, signature: SignatureInput, data: DataInput | None = None, *,
                            at: _dt.datetime | None = None, usage: str | Usage | None = None,
                            revocation: RevocationPolicy | None = None, policies: Iterable[str] | None = None,
                            require_explicit_policy: bool | None = None,
                            inhibit_policy_mapping: bool | None = None, inhibit_any_policy: bool | None = None,
                            strict: bool | None = None) -> tuple[SignatureReport, ...]:
    """One :class:`SignatureReport` per signer (SignerInfo) of the CMS; the keywords are those of
    :meth:`Verifier.verify_cms`."""
    opts = CertOptions(usage, revocation, policies, require_explicit_policy, inhibit_policy_mapping,
                       inhibit_any_policy, strict)
    return verify_cms_all(self, signature, data, at=at, options=opts)


verifier_verify_cms.__name__, verifier_verify_cms.__qualname__ = "verify_cms", "Verifier.verify_cms"
verifier_verify_cms_all.__name__, verifier_verify_cms_all.__qualname__ = "verify_cms_all", "Verifier.verify_cms_all"
