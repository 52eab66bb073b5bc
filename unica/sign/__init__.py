"""Signing documents with a unica key (a token key, typically): CMS/CAdES and PDF/PAdES.

>>> from unica.sign import load_signer, sign_cms, sign_pdf
>>> ident = load_signer("pkcs11:token=acme;object=seal")        # cert + chain from the token
>>> p7s = sign_cms(b"declaration", ident, detached=True, tsa_url="http://tsa.example/")
>>> sign_pdf("in.pdf", "out.pdf", ident, field="Seal", reason="申报")

PDF: a pyHanko :class:`~pyhanko.sign.signers.pdf_cms.Signer` (:class:`UnicaSigner`) whose
raw signature comes from the unica key backend; pyHanko builds the PAdES CMS. Plain CMS:
:class:`CMSSigner` writes the same CAdES structure at the DER level, 50x faster than
building it through asn1crypto objects (see ``bench/sign_cms.py``).
"""

from unica.sign.cms import CMSSigner, sign_cms
from unica.sign.pdf import sign_pdf
from unica.sign.signer import SigningIdentity, load_signer


def __getattr__(name: str):
    if name == "UnicaSigner":  # imports pyHanko (~1 s): only when asked for
        from unica.sign.pyhanko_signer import UnicaSigner

        return UnicaSigner
    raise AttributeError(name)

__all__ = ["CMSSigner", "SigningIdentity", "UnicaSigner", "load_signer", "sign_cms", "sign_pdf"]
