"""Enrollment from a token: a key generated on it, a PKCS#10 request signed on it, renewal.

The request is built by ``cryptography``'s ``CertificateSigningRequestBuilder`` and signed
with the token key object (a ``cryptography`` private-key subclass), so the signature --
the proof of possession -- is made on the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cryptography.x509.oid import NameOID

from unica.errors import InputError, KeyNotFound
from unica.hsm import generate_key, load_key
from unica.hsm.keytypes import KeyType, default_hash_for, is_sm2, spki_der
from unica.hsm.uri import Pkcs11URI, parse_key_uri


def with_org_identifier(name: x509.Name, value: str) -> x509.Name:
    """``name`` with organizationIdentifier (2.5.4.97) = ``value`` (e.g. a checked USCC),
    replacing any there, placed after C/ST/L/O (the CA re-orders names by profile anyway)."""
    rdns = [r for r in name.rdns if not any(a.oid == NameOID.ORGANIZATION_IDENTIFIER for a in r)]
    pos = 0
    for i, rdn in enumerate(rdns):
        if any(a.oid in (NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
                         NameOID.ORGANIZATION_NAME) for a in rdn):
            pos = i + 1
    rdns.insert(pos, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, value)]))
    return x509.Name(rdns)


def make_csr(key, subject: x509.Name, *, ca: bool = False) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for ``key``'s public key, signed by ``key`` (on the token, for token keys);
    ``ca``: it asks for basicConstraints cA (critical), as a CA's request to an external parent does.

    An SM2 key (which cryptography's builder cannot sign with) gets the same request assembled
    with asn1crypto and signed SM2-with-SM3 under the default signer ID (GM/T 0009)."""
    if not isinstance(subject, x509.Name):
        raise TypeError("subject must be an x509.Name (parse text with unica.ca.names.parse_dn)")
    bc = x509.BasicConstraints(ca=True, path_length=None)
    if is_sm2(key):
        return _sm2_csr(key, subject, [(bc, True)] if ca else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if ca:
        builder = builder.add_extension(bc, critical=True)
    return builder.sign(key, default_hash_for(key))


def _sm2_csr(key, subject: x509.Name, extensions: list) -> x509.CertificateSigningRequest:
    from asn1crypto import core, csr as acsr, keys, x509 as ax509

    from unica import der

    attributes = []
    if extensions:
        exts = ax509.Extensions([ax509.Extension.load(der.extension(der.oid(v.oid.dotted_string), v.public_bytes(),
                                                                    critical)) for v, critical in extensions])
        attributes.append(acsr.CRIAttribute({"type": "extension_request", "values": [exts]}))
    info = acsr.CertificationRequestInfo({
        "version": "v1", "subject": ax509.Name.load(subject.public_bytes()),
        "subject_pk_info": keys.PublicKeyInfo.load(spki_der(key)), "attributes": attributes})
    tbs = info.dump()
    request = der.seq(tbs, der.seq(der.oid(der.SM2_WITH_SM3)), der.bit_string(key.sign(tbs)))
    core.Sequence.load(request)  # well-formed before anyone sees it
    return x509.load_der_x509_csr(request)


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def keygen(token: str, label: str, key_type: str | KeyType, pin: str, *, key_id: bytes | None = None,
           module_path: str | None = None, key_agreement: bool = False):
    """Generate a key pair on ``token``: sensitive, never extractable, CKA_ID = key identifier;
    ``key_agreement``: also ECDH on the card (a certificate with keyAgreement, e.g. an operator's)."""
    if not label:
        raise InputError("a token key needs a label")
    uri = Pkcs11URI(token=token, object=label, id=key_id, module_path=module_path)
    return generate_key(uri, key_type, pin=pin, key_agreement=key_agreement)


@dataclass(frozen=True)
class Renewal:
    """What ``unica token renew`` made: the key (old or new) and its request."""

    key: object
    csr: x509.CertificateSigningRequest
    rekeyed: bool
    old_key_uri: str

    @property
    def key_uri(self) -> str:
        return str(self.key.uri)


def renew(key_uri: str, pin: str, *, rekey: bool = False, new_label: str | None = None,
          subject: x509.Name | None = None, org_identifier: str | None = None,
          key_type: str | None = None) -> Renewal:
    """A new request for the key's certificate: same key (renewal) or a new one (re-key).

    The subject is the one of the key's current certificate on the token unless given.
    A re-key generates the new key on the same token, with ``new_label`` (default: the
    old label and today's date) and the old key's type unless ``key_type`` is given.
    """
    from unica.hsm.keytypes import key_type_of
    from unica.hsm.objects import certificate_for_key

    u = parse_key_uri(key_uri)
    if not isinstance(u, Pkcs11URI):
        raise InputError(f"renew works on token keys (pkcs11:...), not {key_uri!r}")
    if rekey:
        # open the read-write session first, so load + generate share one login (one C_Login)
        from unica.hsm.pkcs11 import get_module

        get_module(u.module).session(u, pin, rw=True)
    old = load_key(u, pin=pin)
    if subject is None:
        try:
            cert, _ = certificate_for_key(old)
        except KeyNotFound:
            raise KeyNotFound(f"the key {old.uri} has no certificate on the token; give --subject") from None
        name = cert.subject
    else:
        name = subject
    if org_identifier:
        name = with_org_identifier(name, org_identifier)
    key = old
    if rekey:
        label = new_label or f"{u.object or 'key'}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
        key = generate_key(Pkcs11URI(token=old.uri.token, object=label, module_path=u.module_path,
                                     pin_source=u.pin_source),
                           key_type or key_type_of(old.public_key()), pin=pin)
    return Renewal(key=key, csr=make_csr(key, name), rekeyed=rekey, old_key_uri=str(old.uri))

