"""Seeds for the fuzz tests: real objects made once per run with ``cryptography`` and unica.

A small PKI (root -> issuing CA -> leaf signer, an OCSP signer), CSRs for each key type,
OCSP requests (SHA-1/SHA-256 CertIDs, with and without nonce), a CRL and an OCSP response,
CMS signatures made by :mod:`unica.sign` (attached, detached, with the CA chain), a PDF signed
by :func:`unica.sign.sign_pdf`, and the built-in profile TOML files.

At the end of the run the number of generated inputs per parser is printed (and
``test_zz_budget`` asserts the CI total).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fuzz import harness

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DER = serialization.Encoding.DER
OCSP_NOCHECK = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class Ident:
    key: object
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(DER)


def _cert(subject: x509.Name, key, issuer: Ident | None, *, ca: bool, eku=None, extra=()) -> Ident:
    ikey = issuer.key if issuer else key
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ikey.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    for ext, crit in extra:
        b = b.add_extension(ext, critical=crit)
    return Ident(key, b.sign(ikey, hashes.SHA256()))


@dataclass
class Seeds:
    root: Ident
    inter: Ident
    signer: Ident
    rsa_leaf: Ident
    ocsp_signer: Ident
    certs: list[bytes] = field(default_factory=list)
    csrs: list[bytes] = field(default_factory=list)
    #: (CSR DER, its key) and (certificate DER, its issuer's key): for re-signed mutants
    signed_csrs: list[tuple[bytes, object]] = field(default_factory=list)
    signed_certs: list[tuple[bytes, object]] = field(default_factory=list)
    ocsp_requests: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    ocsp_responses: list[bytes] = field(default_factory=list)
    cms: list[bytes] = field(default_factory=list)
    cms_data: bytes = b""
    pdf: bytes = b""
    pdf_byte_range: tuple[int, int, int, int] = (0, 0, 0, 0)
    profiles: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "Seeds(...)"


def _csr(key, cn: str, sans=()) -> bytes:
    b = x509.CertificateSigningRequestBuilder().subject_name(_name(cn, "Fuzz Org"))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    h = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key, h).public_bytes(DER)


def blank_pdf() -> bytes:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    w.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(x) for x in (0, 0, 595, 842)]),
        generic.NameObject("/Resources"): generic.DictionaryObject(),
    }))
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


@pytest.fixture(scope="session")
def seeds() -> Seeds:
    from unica.policies import BUILTIN_DIR
    from unica.sign import CMSSigner, SigningIdentity, sign_pdf

    root = _cert(_name("Fuzz Root"), ec.generate_private_key(ec.SECP256R1()), None, ca=True)
    inter = _cert(_name("Fuzz Issuing CA"), ec.generate_private_key(ec.SECP384R1()), root, ca=True)
    aia = x509.AuthorityInformationAccess([x509.AccessDescription(
        x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://127.0.0.1:9/ocsp"))])
    cdp = x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://127.0.0.1:9/inter.crl")], None, None, None)])
    signer = _cert(_name("Fuzz Signer", "Fuzz Org"), ec.generate_private_key(ec.SECP256R1()), inter, ca=False,
                   extra=[(aia, False), (cdp, False),
                          (x509.SubjectAlternativeName([x509.RFC822Name("a@example.com"),
                                                        x509.DNSName("example.com")]), False)])
    rsa_leaf = _cert(_name("Fuzz RSA"), rsa.generate_private_key(65537, 2048), inter, ca=False,
                     eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    ocsp_signer = _cert(_name("Fuzz OCSP"), ec.generate_private_key(ec.SECP256R1()), inter, ca=False,
                        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
                        extra=[(x509.UnrecognizedExtension(OCSP_NOCHECK, b"\x05\x00"), False)])
    s = Seeds(root, inter, signer, rsa_leaf, ocsp_signer)
    s.certs = [c.der for c in (root, inter, signer, rsa_leaf, ocsp_signer)]

    csr_keys = [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048),
                ed25519.Ed25519PrivateKey.generate()]
    s.csrs = [
        _csr(csr_keys[0], "csr ec", ["a.example", "b.example"]),
        _csr(csr_keys[1], "csr rsa"),
        _csr(csr_keys[2], "csr ed25519", ["c.example"]),
    ]
    s.signed_csrs = list(zip(s.csrs, csr_keys))
    s.signed_certs = [(root.der, root.key), (inter.der, root.key), (signer.der, inter.key),
                      (rsa_leaf.der, inter.key)]

    for target, h, nonce in ((signer, hashes.SHA1(), None), (signer, hashes.SHA256(), b"\x04\x10" + b"n" * 16),
                             (rsa_leaf, hashes.SHA1(), b"\x04\x08" + b"x" * 8)):
        b = ocsp.OCSPRequestBuilder().add_certificate(target.cert, inter.cert, h)
        if nonce:
            b = b.add_extension(x509.OCSPNonce(nonce[2:]), critical=False)
        s.ocsp_requests.append(b.build().public_bytes(DER))

    crl = (x509.CertificateRevocationListBuilder().issuer_name(inter.cert.subject)
           .last_update(NOW - dt.timedelta(hours=1)).next_update(NOW + dt.timedelta(days=7))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(rsa_leaf.cert.serial_number)
                                    .revocation_date(NOW - dt.timedelta(hours=2))
                                    .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                                    .build())
           .add_extension(x509.CRLNumber(7), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter.key.public_key()), critical=False)
           .sign(inter.key, hashes.SHA384()))
    s.crls = [crl.public_bytes(DER)]
    resp = (ocsp.OCSPResponseBuilder()
            .add_response(cert=signer.cert, issuer=inter.cert, algorithm=hashes.SHA1(),
                          cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW - dt.timedelta(minutes=5),
                          next_update=NOW + dt.timedelta(days=1), revocation_time=None, revocation_reason=None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, ocsp_signer.cert)
            .certificates([ocsp_signer.cert])
            .sign(ocsp_signer.key, hashes.SHA256()))
    s.ocsp_responses = [resp.public_bytes(DER)]

    ident = SigningIdentity(signer.key, signer.cert, (inter.cert,))
    s.cms_data = b"fuzz: the signed declaration\n"
    cms = CMSSigner(ident)
    s.cms = [cms.sign(s.cms_data, detached=True), cms.sign(s.cms_data, detached=False)]
    rsa_ident = SigningIdentity(rsa_leaf.key, rsa_leaf.cert, (inter.cert,), pss=True)
    s.cms.append(CMSSigner(rsa_ident).sign(s.cms_data, detached=True))

    out = io.BytesIO()
    sign_pdf(io.BytesIO(blank_pdf()), out, ident, field="Seal", reason="fuzz")
    s.pdf = out.getvalue()
    import re

    m = re.search(rb"/ByteRange \[\s*(\d+) (\d+) (\d+) (\d+)\s*\]", s.pdf)
    s.pdf_byte_range = tuple(int(x) for x in m.groups())

    for p in sorted(BUILTIN_DIR.glob("*.toml")):
        s.profiles[p.stem] = p.read_text()
    return s


def _is_fuzz(nodeid: str) -> bool:
    return nodeid.replace("\\", "/").startswith("tests/fuzz/")


def pytest_deselected(items):
    harness.DESELECTED.update(i.nodeid for i in items if _is_fuzz(i.nodeid))


def pytest_runtest_logreport(report):
    if _is_fuzz(report.nodeid):
        harness.WALL[0] += report.duration


def _summary_lines() -> list[str]:
    lines = []
    for name in sorted(harness.COUNTS):
        outcomes = ", ".join(f"{k} {v}" for k, v in harness.OUTCOMES[name].most_common())
        lines.append(f"{name:28s} {harness.COUNTS[name]:7d} inputs  {harness.SECONDS[name]:7.2f} s in parser  "
                     f"({outcomes})")
    lines.append(f"{'total':28s} {harness.total():7d} inputs  {sum(harness.SECONDS.values()):7.2f} s in parsers  "
                 f"(multiplier {harness.MULTIPLIER:g}, {'random' if harness.RANDOM else 'derandomized'}); "
                 f"fuzz tests took {harness.WALL[0]:.1f} s wall")
    for name, msgs in sorted(harness.MULTILINE.items()):
        lines.append(f"note: {name} raised errors whose message spans lines, e.g. {msgs[0][:160]}")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not harness.COUNTS:
        return
    terminalreporter.section("fuzz inputs")
    for line in _summary_lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session):
    """Under pytest-xdist this process is a worker without a terminal: its "fuzz inputs" section
    goes to the controller, which prints it (tests/conftest.py pytest_terminal_summary)."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None and harness.COUNTS:
        out.setdefault("summary_sections", []).append(["fuzz inputs", _summary_lines()])
