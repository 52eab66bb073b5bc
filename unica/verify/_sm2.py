"""SM2-with-SM3 signatures where unica.verify checks signatures itself (path candidates, CRL
scope): through :mod:`unica.sm2` with the GM/T 0009 default signer ID. (Inside
pyhanko-certvalidator the same is done by :mod:`unica.verify.sm2sig`.)"""

from __future__ import annotations

from unica.sm2 import SM2_WITH_SM3_OID as SM2_WITH_SM3


def is_sm2_signed(signature_algorithm_oid) -> bool:
    """Whether a cryptography object's ``signature_algorithm_oid`` is SM2-with-SM3."""
    return signature_algorithm_oid.dotted_string == SM2_WITH_SM3


def subject_spki(cert) -> bytes:
    """The SubjectPublicKeyInfo DER of a cryptography certificate (whatever its key type)."""
    from asn1crypto import x509 as ax
    from cryptography.hazmat.primitives.serialization import Encoding

    return ax.Certificate.load(cert.public_bytes(Encoding.DER))["tbs_certificate"]["subject_public_key_info"].dump()


def sm2_signed_by(issuer, signature: bytes, tbs: bytes) -> bool:
    """Whether ``signature`` is ``issuer``'s (a cryptography certificate) SM2-with-SM3 signature
    of ``tbs`` under the default signer ID; False for any failure (not SM2, malformed...)."""
    from unica.errors import UnicaError
    from unica.sm2 import SM2PublicKey

    try:
        SM2PublicKey.from_spki_der(subject_spki(issuer)).verify(signature, tbs)
        return True
    except (UnicaError, ValueError, TypeError):
        return False
