"""Certificate signing requests (PKCS#10) as untrusted input.

:func:`parse_csr` accepts PEM or DER, checks the self-signature (proof of possession) and
returns a :class:`CSRRequest`: the public key, the requested subject and what the request
asks for. Nothing here decides what goes into a certificate -- the profile does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from unica import der
from unica.errors import MalformedInput, PolicyViolation
from unica.hsm.keytypes import key_type_of, public_key_of

MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True)
class CSRRequest:
    """What a request asks for. Every field is the requester's claim, not a decision."""

    public_key: object
    key_type: str
    subject: x509.Name
    requested_sans: tuple[x509.GeneralName, ...]
    requested_extensions: tuple[str, ...]  # dotted OIDs of the extensionRequest
    csr: x509.CertificateSigningRequest | None = None
    #: the request's SubjectPublicKeyInfo DER when it is already in canonical form (else None)
    spki_der: bytes | None = None


#: canonical SubjectPublicKeyInfo prefixes (named curve, uncompressed point) and total lengths
_CANONICAL_EC_SPKI = {
    "ec-p256": (bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"), 91),
    "ec-p384": (bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200" + "04"), 120),
}
_ECDSA_SIG_OIDS = {"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"}


def _canonical_spki(info: bytes, key_type: str) -> bytes | None:
    """The SubjectPublicKeyInfo TLV of a CertificationRequestInfo, if it is exactly what
    re-encoding the key would give (EC keys on a named curve, uncompressed point); else None."""
    want = _CANONICAL_EC_SPKI.get(key_type)
    if want is None:
        return None
    try:
        _, s, e = der.read_tlv(info, 0)
        _, _, pos = der.read_tlv(info, s, e)  # version
        _, _, pos = der.read_tlv(info, pos, e)  # subject
        _, _, end = der.read_tlv(info, pos, e)  # subjectPKInfo
    except der.DERError:
        return None
    spki = info[pos:end]
    return spki if len(spki) == want[1] and spki.startswith(want[0]) else None


def _signature_ok(csr: x509.CertificateSigningRequest, public_key, info: bytes) -> bool:
    """The request's self-signature. ECDSA is checked directly (the common case, and the hot
    path of bulk issuance); anything else through ``is_signature_valid``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and \
            csr.signature_algorithm_oid.dotted_string in _ECDSA_SIG_OIDS:
        try:
            public_key.verify(csr.signature, info, ec.ECDSA(csr.signature_hash_algorithm))
            return True
        except InvalidSignature:
            return False
    return csr.is_signature_valid


def _sm2_signature_ok(csr: x509.CertificateSigningRequest, public_key, info: bytes, *,
                      signer_id: bytes | None = None) -> bool:
    """An SM2 request's self-signature: SM2 with SM3 and the default signer ID (GM/T 0009
    ``1234567812345678``, what ``openssl req -sm3 -sigopt distid:1234567812345678`` uses);
    ``signer_id`` another (only to explain a refusal)."""
    from unica.errors import SM2SignatureInvalid

    if csr.signature_algorithm_oid.dotted_string != der.SM2_WITH_SM3:
        return False
    try:
        if signer_id is None:
            public_key.verify(csr.signature, info)
        else:
            public_key.verify(csr.signature, info, signer_id=signer_id)
        return True
    except SM2SignatureInvalid:
        return False


def parse_csr(data: bytes, source: str = "CSR") -> CSRRequest:
    """Parse a PEM or DER PKCS#10 request and verify its signature."""
    return csr_request(load_csr(data, source), source)


def load_csr(data: bytes, source: str = "CSR") -> tuple:
    """The first half of :func:`parse_csr`: load the request, its public key, and verify its
    signature. (Bulk issuance runs this half over a whole batch, then the other.)"""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedInput(f"{source}: expected bytes")
    if len(data) > MAX_CSR_BYTES:
        raise MalformedInput(f"{source}: too large ({len(data)} bytes; at most {MAX_CSR_BYTES})")
    stripped = bytes(data).lstrip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(stripped)
        else:
            csr = x509.load_der_x509_csr(bytes(data))
    except (ValueError, x509.InvalidVersion):
        raise MalformedInput(f"{source}: not a PKCS#10 certificate request (PEM or DER)") from None
    try:
        public_key = public_key_of(csr)
        kt = key_type_of(public_key)
    except Exception:
        raise PolicyViolation(f"{source}: the request's public key type is not supported: "
                              f"{_key_type_named(csr)}") from None
    try:
        info = csr.tbs_certrequest_bytes
        ok = _sm2_signature_ok(csr, public_key, info) if kt == "sm2" else _signature_ok(csr, public_key, info)
    except Exception:
        ok = False
    if not ok:
        hint = ""
        if kt == "sm2" and _sm2_signature_ok(csr, public_key, info, signer_id=b""):
            hint = (" with the GM/T 0009 signer ID 1234567812345678: it was signed with an empty ID "
                    "(openssl's default; make it with 'openssl req -sm3 -sigopt distid:1234567812345678')")
        raise PolicyViolation(f"{source}: the request's signature does not verify"
                              + (hint or " (no proof of possession of the private key)"))
    return csr, public_key, kt, info


#: public key algorithms and EC curves a refusal names (dotted OID -> name)
_KEY_ALGORITHM_NAMES = {
    "1.2.840.10045.2.1": "EC", "1.2.840.113549.1.1.1": "RSA", "1.2.840.10040.4.1": "DSA",
    "1.2.840.10046.2.1": "DH", "1.3.101.110": "X25519", "1.3.101.111": "X448", "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448", "1.2.840.113549.1.1.10": "RSASSA-PSS", "1.2.156.10197.1.301": "SM2",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012 (256)", "1.2.643.7.1.1.1.2": "GOST R 34.10-2012 (512)",
}
_CURVE_NAMES = {
    "1.2.156.10197.1.301": "SM2", "1.3.132.0.10": "secp256k1", "1.3.132.0.35": "P-521",
    "1.2.840.10045.3.1.1": "P-192", "1.3.132.0.33": "P-224", "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
    "1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1", "1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
}


def _key_type_named(csr: x509.CertificateSigningRequest) -> str:
    """The request's public key type in words, for a refusal: ``SM2 (EC curve 1.2.156.10197.1.301)``,
    ``EC, curve secp256k1 (1.3.132.0.10)``, ``Ed448 (1.3.101.113)``, ``unknown algorithm 1.2.3``."""
    from asn1crypto import csr as acsr
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        spki = acsr.CertificationRequest.load(csr.public_bytes(Encoding.DER))["certification_request_info"][
            "subject_pk_info"]
        alg = spki["algorithm"]["algorithm"].dotted
        if alg == "1.2.840.10045.2.1":
            params = spki["algorithm"]["parameters"]
            curve = params.chosen.dotted if params.name == "named" else None
            if curve is None:
                return "EC with explicit curve parameters (only named curves are supported)"
            return f"EC, curve {_CURVE_NAMES.get(curve, 'unknown')} ({curve})"
        return f"{_KEY_ALGORITHM_NAMES.get(alg, 'unknown algorithm')} ({alg})"
    except Exception:  # asn1crypto parses lazily: a malformed key shows only here
        return "unreadable SubjectPublicKeyInfo"


def _beyond_bounds(subject: x509.Name) -> str | None:
    """The attribute cryptography bounds (commonName 1..64, countryName 2) beyond its X.520 bound
    counted in characters, or None."""
    from cryptography.x509.oid import NameOID

    for a in subject:
        if not isinstance(a.value, str):
            continue
        if a.oid == NameOID.COMMON_NAME and not 1 <= len(a.value) <= 64:
            return f"commonName is {len(a.value)} characters long (X.520: 1 to 64)"
        if a.oid in (NameOID.COUNTRY_NAME, NameOID.JURISDICTION_COUNTRY_NAME) and len(a.value.encode()) != 2:
            return f"{a.oid._name} {a.value[:10]!r} is not a two-letter code"
    return None


def csr_request(loaded: tuple, source: str = "CSR") -> CSRRequest:
    """The second half of :func:`parse_csr`: what a loaded, verified request asks for."""
    csr, public_key, kt, info = loaded
    try:
        exts = csr.extensions
    except (ValueError, KeyError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise MalformedInput(f"{source}: malformed requested extensions: {type(e).__name__}: {e}") from None
    sans: tuple = ()
    for ext in exts:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = tuple(ext.value)
    try:
        # cryptography only warns about an attribute beyond its bound when it parses one, and counts
        # UTF-8 bytes: a 10,000-character CN is a malformed subject here (never printed as a warning),
        # a 30-character Chinese CN (90 bytes) is not -- X.520 bounds count characters
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            subject = csr.subject
    except (ValueError, KeyError, TypeError) as e:  # Key/TypeError: an attribute string of an odd ASN.1 type
        raise MalformedInput(f"{source}: malformed subject: {type(e).__name__}: {e}") from None
    bounds = [w for w in caught if w.category is UserWarning]  # not CryptographyDeprecationWarning
    if bounds:
        over = _beyond_bounds(subject)
        if over:
            raise MalformedInput(f"{source}: malformed subject: {over}")
    return CSRRequest(public_key=public_key, key_type=kt, subject=subject, requested_sans=sans,
                      requested_extensions=tuple(e.oid.dotted_string for e in exts), csr=csr,
                      spki_der=_canonical_spki(info, kt))
