"""PAdES: every signature (and document time-stamp) of a PDF.

pyHanko reads the PDF and judges what a signature covers (byte range / revision coverage)
and what changed after it (incremental-update difference analysis); the CMS itself and the
signer's certificate are verified by unica (:mod:`unica.verify.cms`).
"""

from __future__ import annotations

import io

from asn1crypto import cms

from unica.errors import MalformedInput

from .cms import _digest, verify_cms_with
from .report import Indication, PdfReport, SignatureReport, SubIndication, indication_for
from ._util import one_line, read_bytes

_ALLOWED_MODIFICATIONS = {"NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS"}


def verify_pdf_with(verifier, pdf, *, at=None, usage=None) -> PdfReport:
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader

    data, name = read_bytes(pdf, "PDF")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = list(reader.embedded_signatures)
    except (PdfError, ValueError, KeyError, TypeError) as e:
        raise MalformedInput(f"{name}: cannot be read: {one_line(e)}") from None
    except Exception as e:  # the PDF reader meets arbitrary bytes: any failure is bad input
        raise MalformedInput(f"{name}: cannot be read: {type(e).__name__}: {one_line(e)}") from None
    dss = _dss_revocation(reader)
    reports = []
    for emb in sigs:
        try:
            reports.append(_verify_one(verifier, emb, data, at, usage, dss))
        except MalformedInput as e:
            reports.append(_broken(emb.field_name, f"signature cannot be read: {e}"))
        except Exception as e:  # pyHanko on a damaged signature dictionary / CMS
            reports.append(_broken(emb.field_name, f"signature cannot be read: {type(e).__name__}: {one_line(e)}"))
    msgs = () if sigs else ("the PDF has no signature",)
    return PdfReport(signatures=tuple(reports), messages=msgs)


def _dss_revocation(reader) -> tuple[list[bytes], list[bytes]] | None:
    """CRLs and OCSP responses of the document security store (/DSS, PAdES B-LT)."""
    try:
        dss = reader.root.get("/DSS")
        if dss is None:
            return None
        dss = dss.get_object()
        out: tuple[list[bytes], list[bytes]] = ([], [])
        for key, lst in (("/CRLs", out[0]), ("/OCSPs", out[1])):
            for ref in list(dss.get(key, ()))[:32]:
                lst.append(ref.get_object().data)
        return out
    except Exception:  # a damaged DSS is ignored: signatures are then judged without it
        return None


def _verify_one(verifier, emb, data: bytes, at, usage, dss=None) -> SignatureReport:
    from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, SuspiciousModification

    try:
        br = [int(x) for x in emb.byte_range]
        covered = b"".join(data[br[i]:br[i] + br[i + 1]] for i in range(0, len(br), 2))
    except (ValueError, TypeError, IndexError) as e:
        return _broken(emb.field_name, f"bad /ByteRange: {e}")
    ci = cms.ContentInfo({"content_type": "signed_data", "content": emb.signed_data})
    is_doc_ts = emb.sig_object_type == "/DocTimeStamp"
    if is_doc_ts:
        rep = _verify_doc_timestamp(verifier, ci, covered, emb)
    else:
        rep = verify_cms_with(verifier, ci, covered, at=at, usage=usage, extra_revocation=dss)
    # coverage and modifications after signing
    extra_msgs = list(rep.messages)
    coverage = modlevel = None
    sub = rep.sub_indication
    try:
        cov = emb.evaluate_signature_coverage()
        emb.coverage = cov  # evaluate_modifications reads it
        coverage = cov.name
        if coverage not in ("ENTIRE_FILE", "ENTIRE_REVISION"):
            extra_msgs.append(f"the signature covers only {coverage} of its revision")
            sub = sub if sub in (SubIndication.HASH_FAILURE, SubIndication.SIG_CRYPTO_FAILURE) else SubIndication.FORMAT_FAILURE
        if coverage == "ENTIRE_REVISION":
            diff = emb.evaluate_modifications(DEFAULT_DIFF_POLICY)
            if isinstance(diff, SuspiciousModification):
                modlevel = "SUSPICIOUS"
                extra_msgs.append(f"suspicious modification after signing: {diff}")
            else:
                modlevel = diff.modification_level.name
            if modlevel not in _ALLOWED_MODIFICATIONS and modlevel is not None:
                extra_msgs.append(f"document modified after signing ({modlevel})")
                if sub is None or indication_for(sub) is not Indication.TOTAL_FAILED:
                    sub = SubIndication.FORMAT_FAILURE
        elif coverage == "ENTIRE_FILE":
            modlevel = "NONE"
    except Exception as e:  # pyHanko's analysis of odd files
        extra_msgs.append(f"modification analysis failed: {type(e).__name__}: {one_line(e)}")
        if sub is None:
            sub = SubIndication.GENERIC
    fmt = rep.format.replace("CAdES", "PAdES") if not is_doc_ts else "PAdES document time-stamp"
    signing_time, st_source = rep.signing_time, rep.signing_time_source
    if signing_time is None:
        try:
            signing_time = emb.self_reported_timestamp
        except Exception:  # a malformed /M
            signing_time = None
        if signing_time is not None:
            st_source = "signature dictionary /M (claimed)"
    return SignatureReport(
        indication=indication_for(sub), sub_indication=sub, format=fmt, signer=rep.signer,
        signing_time=signing_time, signing_time_source=st_source, checks=rep.checks,
        certificate=rep.certificate, timestamp=rep.timestamp, messages=tuple(extra_msgs),
        field_name=emb.field_name, coverage=coverage, modification_level=modlevel,
    )


def _broken(field, msg) -> SignatureReport:
    return SignatureReport(indication=Indication.TOTAL_FAILED, sub_indication=SubIndication.FORMAT_FAILURE,
                           format="PAdES", signer=None, signing_time=None, signing_time_source="none",
                           checks={}, certificate=None, messages=(msg,), field_name=field)


def _verify_doc_timestamp(verifier, ci, covered: bytes, emb) -> SignatureReport:
    tst = ci["content"]["encap_content_info"]["content"].parsed
    imprint = tst["message_imprint"]
    alg = imprint["hash_algorithm"]["algorithm"].native
    raw = bytes(ci["content"]["encap_content_info"]["content"])
    rep = verify_cms_with(verifier, ci, raw, _is_timestamp=True)
    if _digest(alg, covered) != imprint["hashed_message"].native:
        return SignatureReport(
            indication=Indication.TOTAL_FAILED, sub_indication=SubIndication.HASH_FAILURE, format=rep.format,
            signer=rep.signer, signing_time=tst["gen_time"].native, signing_time_source="timestamp",
            checks={**rep.checks, "message-imprint": "mismatch"}, certificate=rep.certificate,
            messages=("the document time-stamp's message imprint does not match the covered bytes",))
    return SignatureReport(
        indication=rep.indication, sub_indication=rep.sub_indication, format=rep.format, signer=rep.signer,
        signing_time=tst["gen_time"].native, signing_time_source="timestamp",
        checks={**rep.checks, "message-imprint": "ok"}, certificate=rep.certificate, messages=rep.messages)


def verify_pdf(pdf, *, trust, intermediates=(), at=None, usage="document-signing", revocation=None,
               crls=(), ocsp_responses=(), fetcher=None) -> PdfReport:
    """Verify every signature of a PDF (path or bytes). ``trust`` may be a Verifier."""
    from .revocation import SOFT_FAIL
    from .verifier import Verifier

    if isinstance(trust, Verifier):
        return trust.verify_pdf(pdf, at=at, usage=usage)
    v = Verifier(trust, intermediates=intermediates, revocation=revocation or SOFT_FAIL, crls=crls,
                 ocsp_responses=ocsp_responses, fetcher=fetcher, usage=usage, cache_size=64)
    return v.verify_pdf(pdf, at=at)
