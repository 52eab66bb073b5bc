"""CMS / CAdES signature verification (RFC 5652, ETSI EN 319 122): attached and detached,
B-B (signed attributes with message-digest, content-type, signing-certificate(-v2)) and B-T
(an RFC 3161 signature-time-stamp unsigned attribute whose token is itself verified and whose
TSA certificate is validated; its genTime is then a proof of existence for the signature).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from unica.errors import MalformedInput, VerificationError

from .report import Indication, SignatureReport, SubIndication, ValidationReport, indication_for
from .revocation import verify_signature
from ._util import as_utc, read_bytes, signer_identity, utcnow

_HASHES = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512, "sha3_256": hashes.SHA3_256, "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}
_HASHLIB = {"sha1": "sha1", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
            "sha3_256": "sha3_256", "sha3_384": "sha3_384", "sha3_512": "sha3_512"}
#: digest algorithms accepted for signatures (SHA-1 is refused: CRYPTO_CONSTRAINTS_FAILURE)
_ACCEPTED_DIGESTS = frozenset(_HASHES) - {"sha1"}


def _digest(alg: str, data: bytes) -> bytes:
    return hashlib.new(_HASHLIB[alg], data).digest()


def load_content_info(signature: Any) -> cms.ContentInfo:
    data, name = read_bytes(signature, "signature") if not isinstance(signature, cms.ContentInfo) else (None, "")
    if data is None:
        return signature
    if data.lstrip().startswith(b"-----BEGIN"):
        import base64
        import re

        m = re.search(rb"-----BEGIN [A-Z0-9 ]+-----(.+?)-----END", data, re.S)
        if not m:
            raise MalformedInput(f"signature {name}: bad PEM")
        try:
            data = base64.b64decode(b"".join(m.group(1).split()))
        except ValueError:
            raise MalformedInput(f"signature {name}: bad base64 in PEM") from None
    try:
        ci = cms.ContentInfo.load(data)
        ctype = ci["content_type"].native
        if ctype != "signed_data":
            raise MalformedInput(f"signature {name}: CMS content type is {ctype}, not signed-data")
        ci["content"]["signer_infos"]  # force a parse of the outer structure
        return ci
    except (ValueError, TypeError, KeyError) as e:
        raise MalformedInput(f"signature {name}: not a DER/PEM CMS SignedData: {e}") from None


def _find_signer(sid: cms.SignerIdentifier, certs: list[tuple[bytes, x509.Certificate]]):
    if sid.name == "issuer_and_serial_number":
        iss = sid.chosen["issuer"].dump()
        serial = sid.chosen["serial_number"].native
        for der, c in certs:
            if c.serial_number == serial and c.issuer.public_bytes() == iss:
                return der, c
    else:
        ski = sid.chosen.native
        for der, c in certs:
            try:
                if c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == ski:
                    return der, c
            except x509.ExtensionNotFound:
                continue
    return None, None


def _sig_params(signer_info: cms.SignerInfo, digest_alg: str):
    algo = signer_info["signature_algorithm"]
    name = algo["algorithm"].native
    if name == "rsassa_pss":
        params = algo["parameters"]
        return _HASHES[params["hash_algorithm"]["algorithm"].native](), True
    return _HASHES[digest_alg](), False


def verify_cms_with(verifier, signature, data: bytes | None = None, *, at: _dt.datetime | None = None,
                    usage=None, _is_timestamp: bool = False) -> SignatureReport:
    ci = load_content_info(signature)
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        data, _ = read_bytes(data, "signed data")
    sd = ci["content"]
    checks: dict[str, str] = {}
    messages: list[str] = []
    sis = sd["signer_infos"]
    if len(sis) == 0:
        raise VerificationError("CMS signature has no SignerInfo")
    if len(sis) > 1:
        messages.append(f"the CMS has {len(sis)} signers; this report covers the first")
    si = sis[0]
    eci = sd["encap_content_info"]
    attached = eci["content"]
    econtent: bytes | None
    if not isinstance(attached, core.Void) and attached.contents is not None:
        econtent = bytes(attached)
        if data is not None and bytes(data) != econtent:
            messages.append("data given beside an attached signature differs from the attached content")
            econtent = bytes(data)
    else:
        econtent = bytes(data) if data is not None else None

    certs: list[tuple[bytes, x509.Certificate]] = []
    for c in sd["certificates"] or ():
        if c.name == "certificate":
            der = c.chosen.dump()
            try:
                certs.append((der, verifier.certificate_from_der(der)))
            except ValueError:
                messages.append("an embedded certificate cannot be parsed; ignored")
    fmt = "CMS"

    def finish(sub, signer_cert=None, cert_report=None, signing_time=None, st_source="validation time",
               ts_report=None):
        return SignatureReport(
            indication=indication_for(sub), sub_indication=sub, format=fmt,
            signer=signer_identity(signer_cert) if signer_cert is not None else None,
            signing_time=signing_time, signing_time_source=st_source, checks=dict(checks),
            certificate=cert_report, timestamp=ts_report, messages=tuple(messages),
        )

    if econtent is None:
        messages.append("detached signature: the signed data was not given")
        return finish(SubIndication.SIGNED_DATA_NOT_FOUND)
    signer_der, signer_cert = _find_signer(si["sid"], certs)
    if signer_cert is None:
        checks["signer-certificate"] = "not found"
        messages.append("the signer's certificate is not in the signature")
        return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND)
    digest_alg = si["digest_algorithm"]["algorithm"].native
    if digest_alg not in _HASHES:
        messages.append(f"digest algorithm {digest_alg} is not supported")
        return finish(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, signer_cert)
    if digest_alg not in _ACCEPTED_DIGESTS:
        messages.append(f"digest algorithm {digest_alg} is too weak")
        return finish(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, signer_cert)

    content_digest = _digest(digest_alg, econtent)
    sa = si["signed_attrs"]
    claimed: _dt.datetime | None = None
    if sa.native is not None and len(sa):
        attrs = {a["type"].native: a["values"] for a in sa}
        md = attrs.get("message_digest")
        if md is None or len(md) != 1:
            checks["message-digest"] = "missing"
            messages.append("signed attributes lack a single message-digest")
            return finish(SubIndication.FORMAT_FAILURE, signer_cert)
        if md[0].native != content_digest:
            checks["message-digest"] = "mismatch"
            messages.append("the content does not match the signed message digest (content altered?)")
            return finish(SubIndication.HASH_FAILURE, signer_cert)
        checks["message-digest"] = "ok"
        ct = attrs.get("content_type")
        if ct is None or ct[0].native != eci["content_type"].native:
            checks["content-type"] = "mismatch"
            messages.append("content-type attribute missing or different from the encapsulated type")
            return finish(SubIndication.FORMAT_FAILURE, signer_cert)
        checks["content-type"] = "ok"
        signed_bytes = b"\x31" + sa.dump()[1:]
        scv2 = attrs.get("signing_certificate_v2")
        scv1 = attrs.get("signing_certificate")
        if scv2 is not None or scv1 is not None:
            if scv2 is not None:
                ids = scv2[0]["certs"]
                first = ids[0]
                halg = first["hash_algorithm"]["algorithm"].native
                expected = first["cert_hash"].native
            else:
                first = scv1[0]["certs"][0]
                halg, expected = "sha1", first["cert_hash"].native
            if halg not in _HASHLIB or _digest(halg, signer_der) != expected:
                checks["signing-certificate"] = "mismatch"
                messages.append("the signing-certificate attribute does not match the signer's certificate")
                return finish(SubIndication.NO_SIGNING_CERTIFICATE_FOUND, signer_cert)
            checks["signing-certificate"] = "ok (v2)" if scv2 is not None else "ok (v1)"
            fmt = "CAdES-B-B"
        else:
            checks["signing-certificate"] = "absent"
        st = attrs.get("signing_time")
        if st is not None:
            claimed = st[0].native
            if claimed.tzinfo is None:
                claimed = claimed.replace(tzinfo=_dt.timezone.utc)
    else:
        signed_bytes = econtent
        checks["signed-attributes"] = "absent"
    halg, pss = _sig_params(si, digest_alg)
    sig_value = si["signature"].native
    key = signer_cert.public_key()
    if not verify_signature(key, sig_value, signed_bytes, halg, pss):
        checks["signature"] = "invalid"
        messages.append("the signature value does not verify with the signer's public key")
        return finish(SubIndication.SIG_CRYPTO_FAILURE, signer_cert)
    checks["signature"] = "ok"

    # B-T: signature time-stamp (unsigned attribute)
    poe: _dt.datetime | None = None
    ts_report = None
    ua = si["unsigned_attrs"]
    if not _is_timestamp and ua.native is not None:
        for a in ua:
            if a["type"].native != "signature_time_stamp_token":
                continue
            token = a["values"][0]
            ts_report, gen_time, problem = _verify_timestamp(verifier, token, sig_value)
            if problem:
                checks["signature-timestamp"] = "invalid"
                messages.append(f"signature time-stamp not usable: {problem}")
            else:
                checks["signature-timestamp"] = "ok"
                poe = gen_time
                fmt = "CAdES-B-T" if fmt == "CAdES-B-B" else "CMS+timestamp"
            break

    intermediates = [c for d, c in certs if d != signer_der]
    if poe is not None:
        when, proven, st_src, signing_time = poe, True, "timestamp", poe
    elif at is not None:
        when, proven, st_src, signing_time = as_utc(at), True, "given validation time", as_utc(at)
    else:
        when, proven = utcnow(), False
        signing_time, st_src = (claimed, "signing-time attribute (claimed)") if claimed else (None, "none")
    if _is_timestamp:
        u = "timestamping"
    else:
        u = usage
    cert_report: ValidationReport = verifier.validate_certificate(
        signer_cert, intermediates=intermediates, at=when, usage=u, time_is_proven=proven,
        claimed_time=claimed if poe is None else None)
    sub = cert_report.sub_indication
    if cert_report.indication is not Indication.TOTAL_PASSED:
        messages.extend(cert_report.messages)
    return finish(sub, signer_cert, cert_report, signing_time, st_src, ts_report)


def _verify_timestamp(verifier, token: cms.ContentInfo, signature_value: bytes):
    """-> (report, genTime, problem or None)."""
    try:
        sd = token["content"]
        if sd["encap_content_info"]["content_type"].native != "tst_info":
            return None, None, "time-stamp token does not hold a TSTInfo"
        tst: tsp.TSTInfo = sd["encap_content_info"]["content"].parsed
        imprint = tst["message_imprint"]
        halg = imprint["hash_algorithm"]["algorithm"].native
        if halg not in _HASHLIB:
            return None, None, f"time-stamp imprint algorithm {halg} unsupported"
        if _digest(halg, signature_value) != imprint["hashed_message"].native:
            return None, None, "time-stamp message imprint does not match the signature value"
        gen_time = tst["gen_time"].native
        raw = bytes(sd["encap_content_info"]["content"])
    except (ValueError, KeyError, TypeError) as e:
        return None, None, f"malformed time-stamp token: {e}"
    rep = verify_cms_with(verifier, token, raw, _is_timestamp=True)
    if not rep.passed:
        return rep, None, f"time-stamp token: {rep.indication.value}/{rep.sub_indication.value}: " + "; ".join(rep.messages)
    return rep, gen_time, None


def verify_cms(signature, data=None, *, trust, intermediates=(), at=None, usage="document-signing",
               revocation=None, crls=(), ocsp_responses=(), fetcher=None) -> SignatureReport:
    """Verify a CMS/CAdES signature (bytes, path or asn1crypto ContentInfo).

    ``data``: the signed content for a detached signature (bytes or a path). ``trust`` may be a
    :class:`~unica.verify.Verifier` (recommended for many signatures: it caches).
    """
    from .verifier import Verifier
    from .revocation import SOFT_FAIL

    if isinstance(trust, Verifier):
        return trust.verify_cms(signature, data, at=at, usage=usage)
    v = Verifier(trust, intermediates=intermediates, revocation=revocation or SOFT_FAIL, crls=crls,
                 ocsp_responses=ocsp_responses, fetcher=fetcher, usage=usage, cache_size=64)
    return v.verify_cms(signature, data, at=at)
