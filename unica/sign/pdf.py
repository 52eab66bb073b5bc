"""PAdES baseline signatures on PDF files (B-B; B-T with a TSA), through pyHanko."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

from unica.errors import FetchError, InputError, MalformedInput, UnicaError
from unica.sign.cms import timestamper
from unica.sign.signer import SigningIdentity


def sign_pdf(src: str | Path | IO[bytes], out: str | Path | IO[bytes], identity: SigningIdentity, *,
             field: str = "Signature1", reason: str | None = None, location: str | None = None,
             tsa_url: str | None = None) -> None:
    """Sign the PDF ``src`` into ``out`` (an incremental update) in field ``field``.

    The field is created (invisible) when the document has none by that name.
    """
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import TimestampRequestError

    if not field or "." in field:
        raise InputError(f"bad signature field name {field!r}")
    meta = signers.PdfSignatureMetadata(
        field_name=field, reason=reason, location=location, md_algorithm=identity.digest_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES, use_pades_lta=False)
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
            pdf_signer.sign_pdf(writer, output=out_f)
        except TimestampRequestError as e:
            raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
        except SigningError as e:
            raise UnicaError(f"PDF signing failed: {e}") from None
        except PdfError as e:
            raise MalformedInput(f"cannot sign {src}: {e}") from None
        finally:
            if out_f is not out:
                out_f.close()
    finally:
        if in_f is not src:
            in_f.close()
