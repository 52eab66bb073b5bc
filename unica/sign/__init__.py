"""Signing documents with a unica key (a token key, typically): CMS/CAdES and PDF/PAdES.

>>> from unica.sign import load_signer, sign_cms, sign_pdf
>>> ident = load_signer("pkcs11:token=acme;object=seal")        # cert + chain from the token
>>> p7s = sign_cms(b"declaration", ident, detached=True, tsa_url="http://tsa.example/")
>>> sign_pdf("in.pdf", "out.pdf", ident, field="Seal", reason="申报")

One pyHanko :class:`~pyhanko.sign.signers.pdf_cms.Signer` (:class:`UnicaSigner`) serves
both: pyHanko builds the CMS, unica makes the raw signature through its key backend.
"""

from unica.sign.cms import sign_cms
from unica.sign.pdf import sign_pdf
from unica.sign.signer import SigningIdentity, UnicaSigner, load_signer

__all__ = ["SigningIdentity", "UnicaSigner", "load_signer", "sign_cms", "sign_pdf"]
