"""CMS / CAdES signature verification (RFC 5652, ETSI EN 319 122): attached and detached,
B-B (signed attributes with message-digest, content-type, signing-certificate(-v2)) and B-T
(an RFC 3161 signature-time-stamp unsigned attribute whose token is itself verified and whose
TSA certificate is validated; its genTime is then a proof of existence for the signature).

The structure is read with a small DER reader (:mod:`unica.verify._der`); BER input is
normalised to DER by asn1crypto first.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import re
from typing import Any

from asn1crypto import cms
from cryptography.hazmat.primitives import hashes

from unica.errors import MalformedInput, VerificationError

from . import _der
from .report import Indication, SignatureReport, SubIndication, ValidationReport, indication_for
from .revocation import verify_signature
from ._util import as_utc, one_line, read_bytes, utcnow

_DIGESTS = {  # OID -> (name, cryptography hash class)
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
    "2.16.840.1.101.3.4.2.4": ("sha224", hashes.SHA224),
    "2.16.840.1.101.3.4.2.8": ("sha3_256", hashes.SHA3_256),
    "2.16.840.1.101.3.4.2.9": ("sha3_384", hashes.SHA3_384),
    "2.16.840.1.101.3.4.2.10": ("sha3_512", hashes.SHA3_512),
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
}
_NAME_TO_OID = {v[0]: k for k, v in _DIGESTS.items()}
#: digest algorithms accepted for signatures (SHA-1 is refused: CRYPTO_CONSTRAINTS_FAILURE)
_WEAK = frozenset({"sha1"})
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_DATA = "1.2.840.113549.1.7.1"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
A_CONTENT_TYPE = "1.2.840.113549.1.9.3"
A_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
A_SIGNING_TIME = "1.2.840.113549.1.9.5"
A_SIGNING_CERT = "1.2.840.113549.1.9.16.2.12"
A_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
A_SIG_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
A_REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
A_ADBE_REVOCATION = "1.2.840.113583.1.1.8"
_OID_NAMES = {_DATA: "data", _TST_INFO: "tst_info"}


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


def verify_cms_all(verifier, signature, data: bytes | None = None, *, at: _dt.datetime | None = None,
                   usage=None) -> tuple[SignatureReport, ...]:
    """One report per SignerInfo (a CMS may carry several signers over the same content)."""
    sd = parse_signed_data(signature)
    if not sd.signers:
        raise VerificationError("CMS signature has no SignerInfo")
    return tuple(verify_cms_with(verifier, sd, data, at=at, usage=usage, signer_index=i)
                 for i in range(len(sd.signers)))


def verify_cms_with(verifier, signature, data: bytes | None = None, *, at: _dt.datetime | None = None,
                    usage=None, signer_index: int = 0, _is_timestamp: bool = False,
                    extra_revocation: tuple[list[bytes], list[bytes]] | None = None) -> SignatureReport:
    """Verify one signer of a CMS. ``extra_revocation``: (CRLs, OCSP responses) as DER, found
    beside the signature (e.g. a PDF's document security store)."""
    sd = signature if isinstance(signature, _der.SignedDataRaw) else parse_signed_data(signature)
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        data, _ = read_bytes(data, "signed data")
    checks: dict[str, str] = {}
    messages: list[str] = []
    if not sd.signers:
        raise VerificationError("CMS signature has no SignerInfo")
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

    def finish(sub, cert_report=None, signing_time=None, st_source="none", ts_report=None):
        return SignatureReport(
            indication=indication_for(sub), sub_indication=sub, format=fmt, signer=signer_ident,
            signing_time=signing_time, signing_time_source=st_source, checks=checks,
            certificate=cert_report, timestamp=ts_report, messages=tuple(messages),
        )

    if econtent is None:
        messages.append("detached signature: the signed data was not given")
        return finish(SubIndication.SIGNED_DATA_NOT_FOUND)
    signer_der, signer_cert, key, signer_ident = _find_signer(si, verifier, sd.certs)
    if signer_cert is None:
        checks["signer-certificate"] = "not found"
        messages.append("the signer's certificate is not in the signature")
        return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    dig = _DIGESTS.get(si.digest_oid)
    if dig is None or dig[0] in _WEAK:
        messages.append(f"digest algorithm {dig[0] if dig else si.digest_oid} is not accepted")
        return finish(SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    digest_alg, hash_cls = dig
    claimed: _dt.datetime | None = None
    try:
        if si.signed_attrs is not None:
            attrs = si.attrs
            if A_SIGNING_CERT_V2 in attrs or A_SIGNING_CERT in attrs:
                fmt = "CAdES-B-B"
            md = attrs.get(A_MESSAGE_DIGEST)
            if md is None or len(md) != 1:
                checks["message-digest"] = "missing"
                messages.append("signed attributes lack a single message-digest")
                return finish(SubIndication.FORMAT_FAILURE)
            if _der.octet_string(md[0]) != _digest(digest_alg, econtent):
                checks["message-digest"] = "mismatch"
                messages.append("the content does not match the signed message digest (content altered?)")
                return finish(SubIndication.HASH_FAILURE)
            checks["message-digest"] = "ok"
            ct = attrs.get(A_CONTENT_TYPE)
            if ct is None or len(ct) != 1 or _der.object_identifier(ct[0]) != sd.econtent_type:
                checks["content-type"] = "mismatch"
                messages.append("content-type attribute missing or different from the encapsulated type")
                return finish(SubIndication.FORMAT_FAILURE)
            checks["content-type"] = "ok"
            signed_bytes = b"\x31" + si.signed_attrs[1:]
            v2, v1 = attrs.get(A_SIGNING_CERT_V2), attrs.get(A_SIGNING_CERT)
            if v2 or v1:
                h_oid, expected = _der.ess_cert_id((v2 or v1)[0], v2=bool(v2))
                h = _DIGESTS.get(h_oid)
                if h is None or _digest(h[0], signer_der) != expected:
                    checks["signing-certificate"] = "mismatch"
                    messages.append("the signing-certificate attribute does not match the signer's certificate")
                    return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
                checks["signing-certificate"] = "ok (v2)" if v2 else "ok (v1)"
                fmt = "CAdES-B-B"
            else:
                checks["signing-certificate"] = "absent"
            st = attrs.get(A_SIGNING_TIME)
            if st:
                claimed = _der.time(st[0])
        else:
            signed_bytes = econtent
            checks["signed-attributes"] = "absent"
        pss = si.sig_oid == _RSASSA_PSS
        halg = hash_cls()
        if pss:
            from asn1crypto import algos

            params = algos.RSASSAPSSParams.load(si.sig_params)
            halg = _DIGESTS[_NAME_TO_OID[params["hash_algorithm"]["algorithm"].native]][1]()
    except (_der.DERError, IndexError, KeyError, ValueError) as e:
        messages.append(f"malformed signed attributes: {e}")
        return finish(SubIndication.FORMAT_FAILURE)
    if key is None or not verify_signature(key, si.signature, signed_bytes, halg, pss):
        checks["signature"] = "invalid"
        messages.append("the signature value does not verify with the signer's public key")
        return finish(SubIndication.SIG_CRYPTO_FAILURE)
    checks["signature"] = "ok"

    # B-T: signature time-stamp (unsigned attribute)
    poe: _dt.datetime | None = None
    ts_report = None
    tokens = si.unsigned.get(A_SIG_TIMESTAMP) if not _is_timestamp else None
    if tokens:
        ts_report, gen_time, problem = _verify_timestamp(verifier, tokens[0], si.signature)
        if problem:
            checks["signature-timestamp"] = "invalid"
            messages.append(f"signature time-stamp not usable: {problem}")
        else:
            checks["signature-timestamp"] = "ok"
            poe = gen_time
            fmt = "CAdES-B-T" if fmt == "CAdES-B-B" else "CMS+timestamp"

    inter_entries = []
    for d in sd.certs:
        if d != signer_der:
            try:
                inter_entries.append(verifier.cert_entry(d))
            except ValueError:
                messages.append("a certificate in the signature cannot be parsed; it is ignored")
    intermediates = [e[0] for e in inter_entries]
    fps = (verifier.cert_entry(signer_der)[3], tuple(sorted(e[3] for e in inter_entries)))
    if poe is not None:
        when, proven, st_src, signing_time = poe, True, "timestamp", poe
    elif at is not None:
        when, proven, st_src, signing_time = as_utc(at), True, "given validation time", as_utc(at)
    else:
        when, proven = utcnow(), False
        signing_time, st_src = (claimed, "signing-time attribute (claimed)") if claimed else (None, "none")
    embedded = _embedded_revocation(verifier, sd, si, extra_revocation)
    if embedded is not None and (embedded.crls or embedded.ocsp):
        checks["embedded-revocation-data"] = f"{len(embedded.crls)} CRL(s), {len(embedded.ocsp)} OCSP response(s)"
    cert_report: ValidationReport = verifier.validate_certificate(
        signer_cert, intermediates=intermediates, at=when, usage="timestamping" if _is_timestamp else usage,
        time_is_proven=proven, claimed_time=claimed if poe is None else None, _fingerprints=fps,
        embedded=embedded)
    if cert_report.indication is not Indication.TOTAL_PASSED:
        messages.extend(cert_report.messages)
    if _is_timestamp:
        fmt = "RFC 3161 time-stamp token"
    return finish(cert_report.sub_indication, cert_report, signing_time, st_src, ts_report)


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
    return verifier.source.parse_embedded(crls[:32], ocsps[:32])


def _verify_timestamp(verifier, token: bytes, signature_value: bytes):
    """-> (report, genTime, problem or None)."""
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
    rep = verify_cms_with(verifier, token, None, _is_timestamp=True)
    if not rep.passed:
        return rep, None, (f"time-stamp token: {rep.indication.value}/{rep.sub_indication.value}: "
                           + "; ".join(rep.messages))
    return rep, gen_time, None


def verify_cms(signature, data=None, *, trust, intermediates=(), at=None, usage="document-signing",
               revocation=None, crls=(), ocsp_responses=(), fetcher=None) -> SignatureReport:
    """Verify a CMS/CAdES signature (bytes, path, PEM or asn1crypto ContentInfo).

    ``data``: the signed content for a detached signature (bytes or a path). ``trust`` may be a
    :class:`~unica.verify.Verifier` (recommended for many signatures: it caches).
    """
    from .revocation import SOFT_FAIL
    from .verifier import Verifier

    if isinstance(trust, Verifier):
        return trust.verify_cms(signature, data, at=at, usage=usage)
    v = Verifier(trust, intermediates=intermediates, revocation=revocation or SOFT_FAIL, crls=crls,
                 ocsp_responses=ocsp_responses, fetcher=fetcher, usage=usage, cache_size=64)
    return v.verify_cms(signature, data, at=at)
