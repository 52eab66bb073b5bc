"""CMS / CAdES-BES signatures (and CAdES-T with a TSA) over arbitrary data."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import IO

from unica.errors import FetchError, UnicaError
from unica.sign.signer import SigningIdentity


def timestamper(tsa_url: str | None, timeout: float = 10):
    """A pyHanko RFC 3161 client for ``tsa_url`` (None for no timestamp)."""
    if not tsa_url:
        return None
    if not tsa_url.startswith(("http://", "https://")):
        from unica.errors import InputError

        raise InputError(f"TSA URL {tsa_url!r} must be http:// or https://")
    from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

    return RequestsHTTPTimeStamper(tsa_url, timeout=timeout)


def sign_cms(data: bytes | IO[bytes], identity: SigningIdentity, *, detached: bool = True,
             tsa_url: str | None = None, digest_algorithm: str | None = None,
             signing_time: datetime | None = None) -> bytes:
    """A DER CMS SignedData (CAdES-BES; CAdES-T with ``tsa_url``) over ``data``.

    Signed attributes: content-type, message-digest, signing-time, signing-certificate-v2.
    The signer's certificate and CA chain are embedded. ``detached=False`` encapsulates
    the content.
    """
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
    from pyhanko.sign.timestamps import TimestampRequestError

    signer = identity.pyhanko_signer()
    settings = PdfCMSSignedAttributes(signing_time=signing_time or datetime.now(timezone.utc))
    coro = signer.async_sign_general_data(
        data, digest_algorithm or identity.digest_algorithm, detached=detached, use_cades=True,
        timestamper=timestamper(tsa_url), signed_attr_settings=settings)
    try:
        return asyncio.run(coro).dump()
    except TimestampRequestError as e:
        raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
    except SigningError as e:
        raise UnicaError(f"CMS signing failed: {e}") from None
    except OSError as e:
        if tsa_url:
            raise FetchError(f"timestamp from {tsa_url} failed: {e}") from None
        raise
