"""A small test PKI built with `cryptography` directly (root -> intermediate -> leaves), plus
CRLs, OCSP responses, and signing helpers (openssl cms, pyHanko)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import subprocess
from pathlib import Path

from asn1crypto import keys as akeys, x509 as ax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)
OID_ORG_ID = x509.ObjectIdentifier("2.5.4.97")
USCC = "91110000600037341L"


def _name(cn, org=None, org_id=None):
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if org_id:
        attrs.append(x509.NameAttribute(OID_ORG_ID, org_id))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclasses.dataclass
class Ident:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def asn1_cert(self):
        return ax.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def asn1_key(self):
        return akeys.PrivateKeyInfo.load(self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_cert(subject, issuer: Ident | None, *, ca=False, pathlen=None, ku=None, eku=None,
              not_before=None, not_after=None, key=None, eku_critical=False, cdp=None, ocsp_url=None, extra=()) -> Ident:
    key = key or ec.generate_private_key(ec.SECP256R1())
    nb = not_before or NOW - 30 * DAY
    na = not_after or NOW + 365 * DAY
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(secrets.randbits(127) | 1)
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             (issuer.key if issuer else key).public_key()), False))
    if ca:
        b = b.add_extension(x509.BasicConstraints(True, pathlen), True)
        ku = ku or dict(key_cert_sign=True, crl_sign=True, digital_signature=True)
    if ku:
        full = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False)
        full.update(ku)
        b = b.add_extension(x509.KeyUsage(**full), True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), eku_critical)
    if cdp:
        b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(cdp)], None, None, None)]), False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical)
    if ocsp_url:
        b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]), False)
    cert = b.sign((issuer.key if issuer else key), hashes.SHA256())
    return Ident(cert, key)


def make_crl(issuer: Ident, revoked=(), *, number=1, this_update=None, next_update=None, delta_of=None) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
         .last_update(this_update or NOW - dt.timedelta(hours=1))
         .next_update(next_update or NOW + 7 * DAY)
         .add_extension(x509.CRLNumber(number), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False))
    if delta_of is not None:
        b = b.add_extension(x509.DeltaCRLIndicator(delta_of), True)
    for serial, when, *reason in revoked:
        rb = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason:
            rb = rb.add_extension(x509.CRLReason(reason[0]), False)
        b = b.add_revoked_certificate(rb.build())
    return b.sign(issuer.key, hashes.SHA256())


def make_ocsp(cert: x509.Certificate, issuer: Ident, responder: Ident | None = None, *, status="good",
              revoked_at=None, this_update=None, next_update=None) -> bytes:
    responder = responder or issuer
    st = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
          "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer.cert, algorithm=hashes.SHA256(), cert_status=st,
        this_update=this_update or NOW - dt.timedelta(minutes=10),
        next_update=next_update or NOW + DAY,
        revocation_time=revoked_at, revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, responder.cert)
    if responder is not issuer:
        b = b.certificates([responder.cert])
    return b.sign(responder.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class PKI:
    """root -> inter -> {signer, tsa, ocsp responder, ...}"""

    def __init__(self):
        self.root = make_cert(_name("Unica Test Root"), None, ca=True)
        self.inter = make_cert(_name("Unica Test Issuing CA"), self.root, ca=True, pathlen=0)
        self.signer = self.leaf("Zhang San Trading", ku=dict(digital_signature=True, content_commitment=True))
        from cryptography.hazmat.primitives.asymmetric import rsa

        # pyHanko's DummyTimeStamper signs with RSA only
        self.tsa = make_cert(_name("Unica Test TSA"), self.inter, ku=dict(digital_signature=True),
                             key=rsa.generate_private_key(65537, 2048),
                             eku=[ExtendedKeyUsageOID.TIME_STAMPING], eku_critical=True)
        # a delegated responder carries id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1), as unica's do
        self.responder = make_cert(_name("Unica Test OCSP"), self.inter, ku=dict(digital_signature=True),
                                   eku=[ExtendedKeyUsageOID.OCSP_SIGNING], extra=[(x509.OCSPNoCheck(), False)])

    def leaf(self, org, **kw) -> Ident:
        return make_cert(_name(f"{org} seal", org=org, org_id=f"NTRCN-{USCC}"), self.inter, **kw)

    @property
    def chain_pem(self) -> bytes:
        return self.inter.pem

    def write(self, d: Path, ident: Ident, name: str) -> tuple[Path, Path]:
        c, k = d / f"{name}.pem", d / f"{name}.key"
        c.write_bytes(ident.pem)
        k.write_bytes(ident.key_pem)
        return c, k


def openssl_cms_sign(d: Path, pki: PKI, ident: Ident, data: bytes, *, detached: bool, cades: bool = False,
                     stream: bool = False) -> bytes:
    cert, key = pki.write(d, ident, "s" + secrets.token_hex(4))
    chain = d / "chain.pem"
    chain.write_bytes(pki.inter.pem)
    inp = d / "data.bin"
    inp.write_bytes(data)
    out = d / "sig.p7s"
    cmd = ["openssl", "cms", "-sign", "-binary", "-md", "sha256", "-in", str(inp), "-signer", str(cert),
           "-inkey", str(key), "-certfile", str(chain), "-outform", "DER", "-out", str(out)]
    if not detached:
        cmd.append("-nodetach")
    if cades:
        cmd.append("-cades")
    if stream:
        cmd.append("-stream")  # BER, indefinite lengths
    subprocess.run(cmd, check=True, capture_output=True)
    return out.read_bytes()


def pyhanko_sign(pki: PKI, ident: Ident, data: bytes, *, detached=True, timestamp_at=None, tsa=True) -> bytes:
    from pyhanko.sign import signers
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signer = signers.SimpleSigner(
        signing_cert=ident.asn1_cert, signing_key=ident.asn1_key,
        cert_registry=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]))
    ts = None
    if tsa:
        ts = DummyTimeStamper(tsa_cert=pki.tsa.asn1_cert, tsa_key=pki.tsa.asn1_key,
                              certs_to_embed=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]),
                              fixed_dt=timestamp_at)
    ci = asyncio.run(signer.async_sign_general_data(data, "sha256", detached=detached, use_cades=True,
                                                    timestamper=ts))
    return ci.dump()


def blank_pdf() -> bytes:
    import io

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    page = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(x) for x in (0, 0, 595, 842)]),
        generic.NameObject("/Resources"): generic.DictionaryObject(),
    })
    w.insert_page(page)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def pyhanko_sign_pdf(pki: PKI, ident: Ident, pdf: bytes, *, field="Signature1", tsa=True, timestamp_at=None,
                     embed_crls=None, subfilter=None) -> bytes:
    """``embed_crls``: cryptography CRLs pyHanko embeds as validation info (/DSS for PAdES,
    the Adobe revocationInfoArchival attribute for adbe.pkcs7.detached)."""
    import io

    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signer = signers.SimpleSigner(
        signing_cert=ident.asn1_cert, signing_key=ident.asn1_key,
        cert_registry=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]))
    ts = DummyTimeStamper(tsa_cert=pki.tsa.asn1_cert, tsa_key=pki.tsa.asn1_key,
                          certs_to_embed=SimpleCertificateStore.from_certs([pki.inter.asn1_cert]),
                          fixed_dt=timestamp_at) if tsa else None
    w = IncrementalPdfFileWriter(io.BytesIO(pdf))
    from pyhanko.sign.fields import SigSeedSubFilter

    kw = {}
    if embed_crls is not None:
        from asn1crypto import crl as acrl
        from pyhanko_certvalidator import ValidationContext

        kw = dict(embed_validation_info=True, validation_context=ValidationContext(
            trust_roots=[pki.root.asn1_cert], other_certs=[pki.inter.asn1_cert], allow_fetching=False,
            crls=[acrl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)) for c in embed_crls],
            revocation_mode="hard-fail"))
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=subfilter or SigSeedSubFilter.PADES, **kw)
    out = signers.sign_pdf(w, meta, signer=signer, timestamper=ts)
    return out.getvalue()
