"""SM2-with-SM3 signatures in pyhanko-certvalidator's path validation.

pyhanko-certvalidator checks every signature of a path -- certificates, CRLs, OCSP responses
-- through one pluggable ``SignatureValidator``; its default knows the algorithms
pyca/cryptography knows, which has no SM2. This validator hands SM2-with-SM3 (GM/T 0006 OID
1.2.156.10197.1.501) to :mod:`unica.sm2` (the system OpenSSL 3) with the GM/T 0009
default signer ID, as unica and the national-algorithm tools sign, and everything else to the
default. The RFC 5280 rules themselves stay pyhanko-certvalidator's.
"""

from __future__ import annotations

from pyhanko_certvalidator.sig_validate import DEFAULT_VALIDATION_CONTEXT, DefaultSignatureValidator

from unica.verify._sm2 import SM2_WITH_SM3


class SM2AwareSignatureValidator(DefaultSignatureValidator):
    """pyhanko-certvalidator's default validator, plus SM2-with-SM3 (default signer ID)."""

    def validate_signature(self, signature, signed_data, public_key_info, signature_algorithm,
                           context=DEFAULT_VALIDATION_CONTEXT):
        if signature_algorithm["algorithm"].dotted != SM2_WITH_SM3:
            return super().validate_signature(signature, signed_data, public_key_info, signature_algorithm, context)
        from cryptography.exceptions import InvalidSignature

        from unica.errors import UnicaError
        from unica.sm2 import SM2PublicKey

        if context.prehashed:  # SM2 signs SM3(Z || M): there is no signing a hash made elsewhere
            raise InvalidSignature("an SM2 signature cannot be checked over a prehashed digest")
        try:
            SM2PublicKey.from_spki_der(public_key_info.dump()).verify(signature, signed_data)
        except UnicaError as e:  # not an SM2 key, a malformed key or signature, or it does not verify
            raise InvalidSignature(str(e)) from None


SIGNATURE_VALIDATOR = SM2AwareSignatureValidator()



def install_as_default() -> None:
    """Make this validator pyhanko-certvalidator's default as well.

    pyhanko-certvalidator 0.33 builds an inner ``ValidationContext`` to check a delegated OCSP
    responder's certificate (``revinfo/validate_ocsp.py``, ``_validate_delegated_ocsp_provenance``)
    without passing the outer context's signature validator on, so an SM2 responder certificate
    would meet the default one there. The default it falls back to is looked up in
    ``pyhanko_certvalidator.context`` when a context is made: pointing that name at this class
    covers the inner context too. Everything but SM2 still goes to the default's own code."""
    import pyhanko_certvalidator.context as ctx

    if ctx.DefaultSignatureValidator is not SM2AwareSignatureValidator:
        ctx.DefaultSignatureValidator = SM2AwareSignatureValidator


install_as_default()


#: SM3 (GM/T 0004) as an OCSP CertID hash algorithm
SM3 = "1.2.156.10197.1.401"


def _teach_asn1crypto_sm3() -> None:
    """Let pyhanko-certvalidator match OCSP responses whose CertID hash is SM3.

    It matches a CertID with ``getattr(issuer_name, alg)`` and ``getattr(issuer_public_key, alg)``
    where ``alg`` is asn1crypto's name of the hash algorithm -- for SM3, which asn1crypto does
    not name, the dotted OID. asn1crypto's ``Name`` and ``PublicKeyInfo`` offer ``sha1`` and
    ``sha256`` (the DER of the name; the subjectPublicKey BIT STRING's value); the SM3 digests of
    the same bytes are added under the name pyhanko-certvalidator looks up."""
    import hashlib

    from asn1crypto import keys, x509 as ax

    if not hasattr(ax.Name, SM3):
        setattr(ax.Name, SM3, property(lambda self: hashlib.new("sm3", self.dump()).digest()))
    if not hasattr(keys.PublicKeyInfo, SM3):
        setattr(keys.PublicKeyInfo, SM3,
                property(lambda self: hashlib.new("sm3", bytes(self["public_key"])).digest()))


_teach_asn1crypto_sm3()
