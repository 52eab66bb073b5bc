"""A small software PKI for the token and signing tests (root -> sub CA -> token certificates),
a real RFC 3161 TSA on 127.0.0.1, a minimal PDF, and fresh SoftHSM2 tokens."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PKCS11_SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def new_token_label(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def softhsm_init_token(label: str, pin: str | None = None, so_pin: str | None = None) -> None:
    """A fresh token via softhsm2-util (visible to new processes, e.g. the CLI)."""
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin or os.environ["UNICA_PIN"],
         "--so-pin", so_pin or os.environ["UNICA_SO_PIN"]],
        check=True, capture_output=True,
    )


def init_token_in_process(label: str) -> None:
    """A fresh token via C_InitToken in this process: visible here at once and to new processes.

    (SoftHSM2 does not rescan its token directory: a token softhsm2-util makes after this
    process loaded the module stays invisible to this process.)
    """
    from unica.hsm.tokens import init_token

    init_token(label=label, so_pin=os.environ["UNICA_SO_PIN"], user_pin=os.environ["UNICA_PIN"], free=True)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unica 测试"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class SoftCA:
    """Root and sub CA with software keys; issues end-entity certificates from CSRs."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    sub_key: ec.EllipticCurvePrivateKey
    sub: x509.Certificate
    files: dict = field(default_factory=dict)

    def _cert(self, subject, public_key, issuer_cert, issuer_key, *, ca: bool, path_len=None, days=365,
              ku: x509.KeyUsage, eku=None) -> x509.Certificate:
        issuer_name = subject if issuer_cert is None else issuer_cert.subject
        issuer_pub = public_key if issuer_cert is None else issuer_cert.public_key()
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(public_key)
             .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
             .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
             .add_extension(ku, critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub), critical=False))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=True)
        return b.sign(issuer_key, hashes.SHA256())

    @classmethod
    def create(cls, directory: Path) -> "SoftCA":
        ca_ku = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        rk = ec.generate_private_key(ec.SECP256R1())
        self = cls.__new__(cls)
        self.files = {}
        root = cls._cert(self, _name("unica test root"), rk.public_key(), None, rk, ca=True, ku=ca_ku, days=3650)
        sk = ec.generate_private_key(ec.SECP256R1())
        sub = cls._cert(self, _name("unica test sub CA"), sk.public_key(), root, rk, ca=True, path_len=0,
                        ku=ca_ku, days=1825)
        self.__init__(rk, root, sk, sub, {})
        directory.mkdir(parents=True, exist_ok=True)
        for n, c in (("root", root), ("sub", sub)):
            p = directory / f"{n}.pem"
            p.write_bytes(pem(c))
            self.files[n] = p
        (directory / "chain.pem").write_bytes(pem(sub) + pem(root))
        self.files["chain"] = directory / "chain.pem"
        return self

    def issue(self, csr: x509.CertificateSigningRequest, *, days: int = 365, subject: x509.Name | None = None,
              not_before_shift: dt.timedelta = dt.timedelta(0)) -> x509.Certificate:
        assert csr.is_signature_valid
        ku = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        cert = self._cert(subject or csr.subject, csr.public_key(), self.sub, self.sub_key, ca=False, days=days, ku=ku)
        return cert

    def tsa(self):
        from cryptography.hazmat.primitives.asymmetric import rsa

        k = rsa.generate_private_key(65537, 2048)  # pyHanko's DummyTimeStamper signs with RSA only
        ku = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        c = self._cert(_name("unica test TSA"), k.public_key(), self.root, self.root_key, ca=False, ku=ku,
                       eku=[ExtendedKeyUsageOID.TIME_STAMPING])
        return c, k


class TSAServer:
    """pyHanko's DummyTimeStamper behind http.server on 127.0.0.1 (a real RFC 3161 TSA over HTTP)."""

    def __init__(self, ca: SoftCA):
        from asn1crypto import keys, tsp
        from asn1crypto import x509 as ax509
        from pyhanko.sign.timestamps import DummyTimeStamper

        cert, key = ca.tsa()
        self.cert = cert
        stamper = DummyTimeStamper(
            tsa_cert=ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=keys.PrivateKeyInfo.load(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
            certs_to_embed=[ax509.Certificate.load(ca.root.public_bytes(serialization.Encoding.DER))])
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                req = tsp.TimeStampReq.load(body)
                resp = stamper.request_tsa_response(req).dump()
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(resp)))
                self.end_headers()
                self.wfile.write(resp)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def minimal_pdf(text: str = "unica test document") -> bytes:
    """A one-page PDF 1.7 with a text line, classic xref table (no external files)."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def run(*args, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check, **kw)


@dataclass(frozen=True)
class Enrolled:
    token: str
    key_uri: str
    cert: x509.Certificate
    cert_file: Path
    csr_file: Path


def enroll_with_cli(unica, ca: SoftCA, directory: Path, *, key_type: str = "ec-p256",
                    subject: str = "CN=张三,O=某某有限公司,C=CN", uscc: str | None = "91350100M000100Y43",
                    token: str | None = None, label: str = "signer") -> Enrolled:
    """keygen on a fresh token -> CSR signed on the token -> issued by the soft CA -> import-cert."""
    directory.mkdir(parents=True, exist_ok=True)
    if token is None:
        token = new_token_label("enr")
        init_token_in_process(token)
    p = unica("token", "keygen", "--token", token, "--label", label, "--type", key_type)
    assert p.returncode == 0, p.stderr
    key_uri = f"pkcs11:token={token};object={label}"
    csr_file = directory / f"{token}-{label}.csr"
    args = ["token", "csr", "--key", key_uri, "--subject", subject, "--out", str(csr_file)]
    if uscc:
        args += ["--uscc", uscc]
    p = unica(*args)
    assert p.returncode == 0, p.stderr
    cert = ca.issue(x509.load_pem_x509_csr(csr_file.read_bytes()))
    cert_file = directory / f"{token}-{label}.pem"
    cert_file.write_bytes(pem(cert))
    p = unica("token", "import-cert", "--token", token, str(cert_file), "--chain", str(ca.files["chain"]))
    assert p.returncode == 0, p.stderr
    return Enrolled(token, key_uri, cert, cert_file, csr_file)
