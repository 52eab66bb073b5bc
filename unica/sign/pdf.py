"""PAdES baseline signatures on PDF files (B-B, B-T, B-LT, B-LTA), through pyHanko, and the
archive time-stamp renewal of a PAdES B-LTA document (:func:`refresh_timestamp`).

B-LT puts the validation material (CA certificates, OCSP responses / CRLs of the signer's and
the TSA's certificates) in the document security store (/DSS); B-LTA adds a document
time-stamp over it. See :mod:`unica.sign.ltv`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

from unica.errors import FetchError, InputError, MalformedInput, UnicaError, UnsupportedKeyType
from unica.hsm.keytypes import is_sm2
from unica.sign.cms import timestamper
from unica.sign.signer import SigningIdentity


def sign_pdf(src: str | Path | IO[bytes], out: str | Path | IO[bytes], identity: SigningIdentity, *,
             field: str = "Signature1", reason: str | None = None, location: str | None = None,
             tsa_url: str | None = None, level: str | None = None, trust=()) -> None:
    """Sign the PDF ``src`` into ``out`` (an incremental update) in field ``field``.

    The field is created (invisible) when the document has none by that name. ``level``:
    B-B, B-T, B-LT or B-LTA (default: B-T with ``tsa_url``, else B-B); B-T and above without
    ``tsa_url`` use ``UNICA_TSA_URL``. B-LTA ends with the document time-stamp's own material in
    a DSS update after it (:func:`add_newest_timestamp_material`). ``trust``: extra trust anchors (certificates) up to which
    B-LT material is collected (default: the root of the signer's chain).
    """
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import TimestampRequestError

    from unica.sign.ltv import collection_error, resolve_level, validation_context

    if not field or "." in field:
        raise InputError(f"bad signature field name {field!r}")
    if is_sm2(identity.key):
        raise UnsupportedKeyType("PDF signatures with an SM2 key are not supported: pyHanko (unica's PDF engine) has "
                                 "no SM2 signature mechanism, nor has NSS (what pdfsig and many PDF readers check with); "
                                 "sign the declaration as CMS ('unica sign cms') instead (see docs/sm2.md)")
    lvl = resolve_level(level, tsa_url)
    tsa_url = lvl.tsa_url
    vc = validation_context((identity.cert, *identity.chain), tuple(trust)) if lvl.long_term else None
    meta = signers.PdfSignatureMetadata(
        field_name=field, reason=reason, location=location, md_algorithm=identity.digest_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES, embed_validation_info=lvl.long_term, validation_context=vc,
        use_pades_lta=lvl.archival, signer_key_usage={"digital_signature"})
    pdf_signer = signers.PdfSigner(meta, signer=identity.pyhanko_signer(), timestamper=timestamper(tsa_url))
    if isinstance(src, (str, Path)):
        from unica.boundedio import MAX_PDF, read_limited

        in_f = io.BytesIO(read_limited(src, MAX_PDF, "PDF"))  # bounded: never more than MAX_PDF in memory
    else:
        in_f = src
    try:
        try:
            writer = IncrementalPdfFileWriter(in_f, strict=False)
        except (PdfError, ValueError) as e:
            raise MalformedInput(f"{src} is not a readable PDF: {e}") from None
        out_f = open(out, "wb") if isinstance(out, (str, Path)) else out
        try:
            if lvl.archival:
                buf = io.BytesIO()
                pdf_signer.sign_pdf(writer, output=buf)
                add_newest_timestamp_material(buf.getvalue(), out_f, (*_self_signed_of(identity), *trust))
            else:
                pdf_signer.sign_pdf(writer, output=out_f)
        except TimestampRequestError as e:
            raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
        except SigningError as e:
            cause = e.__cause__ or e.__context__
            if lvl.long_term and cause is not None and _is_validation_error(cause):
                raise collection_error(cause, f"PAdES {lvl.name}") from None
            raise UnicaError(f"PDF signing failed: {e}") from None
        except _validation_errors() as e:
            raise collection_error(e, f"PAdES {lvl.name}") from None
        except PdfError as e:
            raise MalformedInput(f"cannot sign {src}: {e}") from None
        finally:
            if out_f is not out:
                out_f.close()
    finally:
        if in_f is not src:
            in_f.close()


def _validation_errors() -> tuple[type[Exception], ...]:
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError

    return (PathBuildingError, PathValidationError, ValidationError)


def _is_validation_error(e: BaseException) -> bool:
    return isinstance(e, _validation_errors())


def refresh_timestamp(src: str | Path | IO[bytes], out: str | Path | IO[bytes], *, tsa_url: str | None = None,
                      trust=(), md_algorithm: str = "sha256") -> int:
    """A new document time-stamp (archive time-stamp) on the PDF ``src``, written to ``out``.

    The validation material of the newest existing document time-stamp (its TSA's
    certificates, OCSP responses / CRLs) goes into the DSS first, then the new time-stamp covers
    the whole document (PAdES B-LTA renewal, ETSI EN 319 142-1 5.5), then the new time-stamp's
    own material goes into the DSS after it (:func:`add_newest_timestamp_material`). A document without a
    document time-stamp gets its first (it becomes B-LTA when its signatures are B-LT).
    ``trust``: trust anchors up to which the material is collected (default: the self-signed
    certificates embedded in the document). Returns how many document time-stamps the result has.
    """
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign import signers
    from pyhanko.sign.timestamps import TimestampRequestError

    from unica.sign.ltv import collection_error, resolve_level, validation_context

    lvl = resolve_level("B-LTA", tsa_url)
    if isinstance(src, (str, Path)):
        from unica.boundedio import MAX_PDF, read_limited

        in_f: IO[bytes] = io.BytesIO(read_limited(src, MAX_PDF, "PDF"))
    else:
        in_f = src
    try:
        reader = PdfFileReader(in_f, strict=False)
        sigs = list(reader.embedded_signatures)
    except (PdfError, ValueError, KeyError, TypeError) as e:
        raise MalformedInput(f"{src} is not a readable PDF: {e}") from None
    if not sigs:
        raise InputError(f"{src} has no signature to keep valid (sign it first: unica sign pdf --level B-LTA)")
    anchors = list(trust) or _embedded_roots(reader, sigs)
    vc = validation_context((), anchors)
    stamper = signers.PdfTimeStamper(timestamper(lvl.tsa_url))
    out_f = open(out, "wb") if isinstance(out, (str, Path)) else out
    buf = io.BytesIO()
    try:
        if any(_is_doc_ts(s) for s in sigs):
            stamper.update_archival_timestamp_chain(reader, vc, in_place=False, output=buf,
                                                    default_md_algorithm=md_algorithm)
        else:
            in_f.seek(0)
            w = IncrementalPdfFileWriter(in_f, strict=False)
            stamper.timestamp_pdf(w, md_algorithm, validation_context=vc, output=buf)
        # the new time-stamp's own material, in a DSS-only update after it
        add_newest_timestamp_material(buf.getvalue(), out_f, trust)
    except TimestampRequestError as e:
        raise FetchError(f"timestamp from {lvl.tsa_url} failed: {e}") from None
    except _validation_errors() as e:
        raise collection_error(e, "archive time-stamp") from None
    except PdfError as e:
        raise MalformedInput(f"cannot time-stamp {src}: {e}") from None
    finally:
        if out_f is not out:
            out_f.close()
        if in_f is not src:
            in_f.close()
    return sum(1 for s in sigs if _is_doc_ts(s)) + 1


def add_newest_timestamp_material(data: bytes, out_f: IO[bytes], trust) -> None:
    """Write the PDF ``data`` to ``out_f`` with the validation material of its newest document
    time-stamp in a DSS-only incremental update after it (EN 319 142-1 allows one after the
    last document time-stamp): its TSA's CA certificates, an OCSP response or CRL for each
    certificate below the root (collected hard-fail, as for B-LT), and also the CRL of each
    certificate that names a CRL distribution point. The CRLs matter: an OCSP response is
    current for minutes or hours, a CRL usually for days or weeks, and the newest time-stamp is
    validated offline only with revocation data current at the validation time.

    ``trust``: the trust anchors up to which the material is collected (default: the
    self-signed certificates the document carries). Collection errors propagate
    (pyhanko-certvalidator's); nothing is written to ``out_f`` before the result is ready.
    """
    import asyncio

    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info

    from unica.sign.ltv import _self_signed, validation_context, x509_of
    from unica.verify.fetch import FetchLimits, make_fetchers

    reader = PdfFileReader(io.BytesIO(data), strict=False)
    sigs = list(reader.embedded_signatures)
    stamps = [s for s in sigs if _is_doc_ts(s)]
    if not stamps:
        out_f.write(data)
        return
    newest = max(stamps, key=lambda s: int(s.byte_range[2]) + int(s.byte_range[3]))
    fetchers = make_fetchers(FetchLimits(timeout=10))
    vc = validation_context((), list(trust) or _embedded_roots(reader, sigs), fetchers=fetchers)

    async def collect():
        paths = await collect_validation_info(newest, vc, skip_timestamp=True)
        crls = []
        for path in paths:
            for cert in path:
                if _self_signed(x509_of(cert)) or not cert.crl_distribution_points_value:
                    continue
                try:
                    crls += await fetchers.crl_fetcher.fetch(cert, use_deltas=False)
                except Exception:  # noqa: BLE001 -- the OCSP response above already satisfies hard-fail
                    pass
        return paths, crls

    paths, crls = asyncio.run(collect())
    known = {c.dump() for c in vc.crls}
    w = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    DocumentSecurityStore.supply_dss_in_writer(
        w, newest.pkcs7_content.hex().encode("ascii"), paths=paths, validation_context=vc,
        crls=[c for c in crls if c.dump() not in known], embed_roots=True)
    w.write(out_f)


def _self_signed_of(identity: SigningIdentity) -> list:
    """The self-signed certificates of the signer's chain (the B-LT collection's anchors)."""
    from unica.sign.ltv import _self_signed

    return [c for c in (identity.cert, *identity.chain) if _self_signed(c)]


def _is_doc_ts(emb) -> bool:
    try:
        return emb.sig_object_type == "/DocTimeStamp"
    except Exception:  # noqa: BLE001 -- a damaged dictionary: not a document time-stamp
        return False


def _embedded_roots(reader, sigs) -> list:
    """Self-signed certificates carried by the document (signatures' CMS, time-stamp tokens, DSS)."""
    from cryptography import x509

    ders: list[bytes] = []
    for emb in sigs:
        sd = emb.signed_data
        ders += [c.chosen.dump() for c in sd["certificates"] if c.name == "certificate"]
        for si in sd["signer_infos"]:
            for attr in si["unsigned_attrs"] if si["unsigned_attrs"].native is not None else ():
                if attr["type"].native == "signature_time_stamp_token":
                    for tok in attr["values"]:
                        tsd = tok["content"]
                        ders += [c.chosen.dump() for c in tsd["certificates"] if c.name == "certificate"]
    try:
        dss = reader.root.get("/DSS")
        if dss is not None:
            for ref in list(dss.get_object().get("/Certs", ()))[:64]:
                ders.append(ref.get_object().data)
    except Exception:  # noqa: BLE001 -- a damaged DSS adds nothing
        pass
    out, seen = [], set()
    for d in ders:
        if d in seen:
            continue
        seen.add(d)
        try:
            c = x509.load_der_x509_certificate(d)
        except ValueError:
            continue
        if c.subject == c.issuer:
            out.append(c)
    return out
