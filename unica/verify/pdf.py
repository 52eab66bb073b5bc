"""PAdES: every signature (and document time-stamp) of a PDF.

pyHanko reads the PDF and judges what a signature covers (byte range / revision coverage)
and what changed after it (incremental-update difference analysis); the CMS itself and the
signer's certificate are verified by unica (:mod:`unica.verify.cms`).

Time follows the same rule as CMS (:func:`unica.verify.cms.time_basis`): a signature's proof of
existence is its own validated signature-time-stamp, a validated later document time-stamp that
covers it, or ``at=``; its claimed time is the signing-time attribute, else /M.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import os
from typing import TYPE_CHECKING, Any, Iterable, Union

from asn1crypto import cms

from unica.errors import MalformedInput

from .cms import CertOptions, TrustInput, _digest, _one_off, timestamp_entry, verify_cms_with
from .report import (
    Indication,
    PdfReport,
    SignatureChecks,
    SignatureReport,
    SigningTimeSource,
    SubIndication,
    TimestampReport,
    indication_for,
)
from .revocation import RevocationPolicy
from .usage import Usage
from ._util import CertLike, one_line, read_bytes

if TYPE_CHECKING:
    from .verifier import Verifier

#: a PDF: its bytes or a file path
PdfInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]

_ALLOWED_MODIFICATIONS = {"NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS"}


def verify_pdf_with(verifier: Verifier, pdf: PdfInput, *, at: _dt.datetime | None = None,
                    options: CertOptions = CertOptions()) -> PdfReport:
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
    reports: dict[int, SignatureReport] = {}

    def one(i: int, doc_ts: tuple[_dt.datetime, str] | None = None) -> None:
        emb = sigs[i]
        try:
            reports[i] = _verify_one(verifier, emb, data, at, options, dss, doc_ts)
        except MalformedInput as e:
            reports[i] = _broken(emb.field_name, f"signature cannot be read: {e}")
        except Exception as e:  # pyHanko on a damaged signature dictionary / CMS
            reports[i] = _broken(emb.field_name, f"signature cannot be read: {type(e).__name__}: {one_line(e)}")

    # document time-stamps first, the newest first: a validated one is a proof of existence for
    # what it covers -- the signatures and the earlier document time-stamps (archive time-stamp
    # chain, EN 319 102-1 5.6.3): each earlier one is validated at the earliest such proof
    is_doc_ts = [_is_doc_ts(emb) for emb in sigs]
    proofs = []  # (hole start of the doc time-stamp = end of what it covers, genTime, field name)

    def covering(i: int):
        br = _byte_range(sigs[i])
        end = br[2] + br[3] if br is not None else None
        c = [(t, name) for hole, t, name in proofs if end is not None and end <= hole]
        return min(c, key=lambda p: p[0]) if c else None

    def end_of(i: int) -> int:
        br = _byte_range(sigs[i])
        return br[2] + br[3] if br is not None else -1

    for i in sorted((i for i in range(len(sigs)) if is_doc_ts[i]), key=end_of, reverse=True):
        one(i, covering(i))
        if reports[i].passed and reports[i].signing_time is not None:
            br = _byte_range(sigs[i])
            if br is not None:
                proofs.append((br[0] + br[1], reports[i].signing_time, str(sigs[i].field_name)))
    for i in range(len(sigs)):
        if not is_doc_ts[i]:
            one(i, covering(i))
    msgs = () if sigs else ("the PDF has no signature",)
    return PdfReport(signatures=tuple(reports[i] for i in range(len(sigs))), messages=msgs,
                     timestamps=_timestamps(sigs, is_doc_ts, reports, covering))


def _timestamps(sigs, is_doc_ts, reports, covering) -> tuple[TimestampReport, ...]:
    """Every time-stamp of the document with the proof of existence it gave to what: a
    signature time-stamp to its signature; a validated document time-stamp to everything
    validated with it as a proof (the signatures, their signature time-stamps and the older
    document time-stamps it covers)."""
    proves: dict[str, list[str]] = {}
    out = []
    for i, emb in enumerate(sigs):
        rep, name = reports[i], str(emb.field_name)
        c = covering(i)
        if c is not None:
            what = proves.setdefault(c[1], [])
            if is_doc_ts[i]:
                what.append(f"document time-stamp '{name}'")
            else:
                what.append(f"signature '{name}'")
                if rep.timestamp is not None:
                    what.append(f"signature time-stamp of '{name}'")
        if not is_doc_ts[i]:
            out += [dataclasses.replace(t, field_name=name, proof_of_existence_for=tuple(
                        f"signature '{name}'" if w == "signature" else w for w in t.proof_of_existence_for))
                    for t in rep.timestamps]
    for i, emb in enumerate(sigs):
        if is_doc_ts[i]:
            rep, name = reports[i], str(emb.field_name)
            gen = rep.signing_time if rep.signing_time_source is SigningTimeSource.TIMESTAMP else None
            out.append(timestamp_entry("document time-stamp", rep, gen, ok=rep.passed,
                                       proves=tuple(proves.get(name, ())), field_name=name))
    far = _dt.datetime.max.replace(tzinfo=_dt.timezone.utc)
    return tuple(sorted(out, key=lambda t: t.gen_time or far))


def _is_doc_ts(emb) -> bool:
    try:
        return emb.sig_object_type == "/DocTimeStamp"
    except Exception:  # a damaged signature dictionary: treated as a signature (and reported broken)
        return False


def _byte_range(emb) -> list[int] | None:
    try:
        br = [int(x) for x in emb.byte_range]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return br if len(br) == 4 and all(x >= 0 for x in br) else None


def _claimed_m(emb) -> _dt.datetime | None:
    """The signature dictionary's /M (claimed signing time); a time without zone is taken as UTC."""
    try:
        t = emb.self_reported_timestamp
    except Exception:  # a malformed /M
        return None
    if not isinstance(t, _dt.datetime):
        return None
    return t.replace(tzinfo=_dt.timezone.utc) if t.tzinfo is None else t.astimezone(_dt.timezone.utc)


#: the most CRLs, and the most OCSP responses, read from one document's DSS (a parse-cost bound;
#: the document itself is bounded on reading)
MAX_DSS_ENTRIES = 256


def _dss_revocation(reader) -> tuple[list[bytes], list[bytes]] | None:
    """CRLs and OCSP responses of the document security store (/DSS, PAdES B-LT): the newest
    :data:`MAX_DSS_ENTRIES` of each (every refresh appends the material of its time-stamps, and the
    newest time-stamp's is what an offline validation years on needs)."""
    try:
        dss = reader.root.get("/DSS")
        if dss is None:
            return None
        dss = dss.get_object()
        out: tuple[list[bytes], list[bytes]] = ([], [])
        for key, lst in (("/CRLs", out[0]), ("/OCSPs", out[1])):
            for ref in list(dss.get(key, ()))[-MAX_DSS_ENTRIES:]:
                lst.append(ref.get_object().data)
        return out
    except Exception:  # a damaged DSS is ignored: signatures are then judged without it
        return None


def _verify_one(verifier: Verifier, emb, data: bytes, at: _dt.datetime | None, options: CertOptions,
                dss=None, doc_ts: tuple[_dt.datetime, str] | None = None) -> SignatureReport:
    from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, SuspiciousModification

    try:
        br = [int(x) for x in emb.byte_range]
        covered = b"".join(data[br[i]:br[i] + br[i + 1]] for i in range(0, len(br), 2))
    except (ValueError, TypeError, IndexError) as e:
        return _broken(emb.field_name, f"bad /ByteRange: {e}")
    ci = cms.ContentInfo({"content_type": "signed_data", "content": emb.signed_data})
    is_doc_ts = emb.sig_object_type == "/DocTimeStamp"
    if is_doc_ts:
        rep = _verify_doc_timestamp(verifier, ci, covered, options, dss,
                                    poes=(doc_ts[0] if doc_ts is not None else None, at), proof=doc_ts)
    else:
        rep = verify_cms_with(verifier, ci, covered, at=at, options=options, extra_revocation=dss,
                              document_timestamp=doc_ts, pdf_m=_claimed_m(emb))
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
    return SignatureReport(
        indication=indication_for(sub), sub_indication=sub, format=fmt, signer=rep.signer,
        signing_time=rep.signing_time, signing_time_source=rep.signing_time_source, checks=rep.checks,
        certificate=rep.certificate, timestamp=rep.timestamp, messages=tuple(extra_msgs),
        field_name=emb.field_name, coverage=coverage, modification_level=modlevel, timestamps=rep.timestamps,
    )


def _broken(field, msg) -> SignatureReport:
    return SignatureReport(indication=Indication.TOTAL_FAILED, sub_indication=SubIndication.FORMAT_FAILURE,
                           format="PAdES", signer=None, signing_time=None,
                           signing_time_source=SigningTimeSource.NONE, checks=SignatureChecks(),
                           certificate=None, messages=(msg,), field_name=field)


def _verify_doc_timestamp(verifier: Verifier, ci, covered: bytes, options: CertOptions, dss=None,
                          poes: tuple = (), proof: tuple[_dt.datetime, str] | None = None) -> SignatureReport:
    """A document time-stamp: the token (TSA certificate validated like a signature time-stamp's:
    at the earliest proof of existence in ``poes`` not before its genTime -- a later document
    time-stamp covering it, or ``at`` -- else now, with the DSS's revocation data at hand)
    and its message imprint over the covered bytes. Its signing_time is the genTime."""
    import dataclasses

    from ._util import as_utc

    tst = ci["content"]["encap_content_info"]["content"].parsed
    imprint = tst["message_imprint"]
    alg = imprint["hash_algorithm"]["algorithm"].native
    raw = bytes(ci["content"]["encap_content_info"]["content"])
    gen_time = tst["gen_time"].native
    poe = min((as_utc(p) for p in poes if p is not None and as_utc(p) >= as_utc(gen_time)), default=None)
    rep = verify_cms_with(verifier, ci, raw, at=poe, options=options.for_timestamp(), extra_revocation=dss,
                          _is_timestamp=True)
    if _digest(alg, covered) != imprint["hashed_message"].native:
        return dataclasses.replace(
            rep, indication=Indication.TOTAL_FAILED, sub_indication=SubIndication.HASH_FAILURE,
            signing_time=gen_time, signing_time_source=SigningTimeSource.TIMESTAMP,
            checks=dataclasses.replace(rep.checks, message_imprint="mismatch"), timestamp=None,
            messages=("the document time-stamp's message imprint does not match the covered bytes",))
    # the report names the later archive time-stamp that gave this one its proof of existence
    named = {}
    if proof is not None and poe is not None and poe == as_utc(proof[0]):
        named = {"document_timestamp": f"ok ({proof[1]}, {poe:%Y-%m-%dT%H:%M:%SZ})"}
    return dataclasses.replace(
        rep, signing_time=gen_time, signing_time_source=SigningTimeSource.TIMESTAMP,
        checks=dataclasses.replace(rep.checks, message_imprint="ok", **named), timestamp=None)


def verify_pdf(pdf: PdfInput, *, trust: TrustInput, intermediates: CertLike | Iterable[CertLike] = (),
               at: _dt.datetime | None = None, usage: str | Usage | None = None,
               revocation: RevocationPolicy | None = None, crls: Iterable[Any] = (),
               ocsp_responses: Iterable[bytes] = (), fetcher: Any = None, policies: Iterable[str] | None = None,
               require_explicit_policy: bool | None = None, inhibit_policy_mapping: bool | None = None,
               inhibit_any_policy: bool | None = None, strict: bool | None = None) -> PdfReport:
    """Verify every signature of a PDF once (for many PDFs keep a :class:`Verifier`).

    ``trust``, ``intermediates``, ``revocation``, ``crls``, ``ocsp_responses`` and ``fetcher`` as
    for :func:`unica.verify.verify_cms`; the other keywords are those of :meth:`Verifier.verify_pdf`.
    """
    return _one_off(trust, intermediates, crls, ocsp_responses, fetcher).verify_pdf(
        pdf, at=at, usage=usage, revocation=revocation, policies=policies,
        require_explicit_policy=require_explicit_policy, inhibit_policy_mapping=inhibit_policy_mapping,
        inhibit_any_policy=inhibit_any_policy, strict=strict)


# -- Verifier method (bound in the class body of unica.verify.verifier.Verifier) ----------------


def verifier_verify_pdf(self: Verifier, pdf: PdfInput, *, at: _dt.datetime | None = None,
                        usage: str | Usage | None = None, revocation: RevocationPolicy | None = None,
                        policies: Iterable[str] | None = None, require_explicit_policy: bool | None = None,
                        inhibit_policy_mapping: bool | None = None, inhibit_any_policy: bool | None = None,
                        strict: bool | None = None) -> PdfReport:
    """Verify every signature and document time-stamp of a PDF (bytes or a path): one
    :class:`SignatureReport` each, with coverage and modifications after signing.

    Time: a signature is validated at its earliest proof of existence -- its own validated
    signature-time-stamp, a validated later document time-stamp covering it, or ``at`` -- and
    otherwise now, with its claimed time (signing-time attribute, else /M) as the claim that
    separates REVOKED from REVOKED_NO_POE. The other keywords are those of
    :meth:`Verifier.verify_cms` (applied to each signer; None = the Verifier's setting).
    """
    opts = CertOptions(usage, revocation, policies, require_explicit_policy, inhibit_policy_mapping,
                       inhibit_any_policy, strict)
    return verify_pdf_with(self, pdf, at=at, options=opts)


verifier_verify_pdf.__name__, verifier_verify_pdf.__qualname__ = "verify_pdf", "Verifier.verify_pdf"
