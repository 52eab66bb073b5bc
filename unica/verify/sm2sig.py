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

#: SM2 signature with SM3 (GM/T 0006), the only SM2 signature algorithm of X.509
SM2_WITH_SM3 = "1.2.156.10197.1.501"


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
