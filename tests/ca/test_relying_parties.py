"""Issue #11 items 5 and 8: what the built-in enterprise profiles issue is accepted by the relying
parties an e-port meets -- NSS (``certutil -V -u S``, poppler's ``pdfsig``), OpenSSL (``openssl cms
-verify`` with its default S/MIME-signing purpose, no ``-purpose any``), pyHanko and ``unica verify``
under its default hard-fail revocation policy -- for a hierarchy set up as the README's quickstart
does: a root with a CRL URL (so the issuing CA's certificate is checkable) and an issuing CA with a
CRL and a delegated OCSP signer served by ``unica ocsp serve``.

Everything is the real binary and the real peers; the OCSP responder is the real one on 127.0.0.1
(pdfsig asks it through NSS); the CRLs are handed to the verifiers as files (``--crl``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.ca.conftest import openssl_csr
from tests.conftest import run_unica
from tests.token.pki import minimal_pdf

PASSPHRASE = "relying-party-passphrase-5"
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
USCC_SUBJ = "/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN={cn}"


@dataclass
class Hierarchy:
    dir: Path
    env: dict
    root_pem: Path
    issuing_pem: Path
    crls: list  # root.crl, issuing.crl
    port: int

    def run(self, *args):
        return run_unica(*args, env=self.env)

    def ok(self, *args):
        p = self.run(*args)
        assert p.returncode == 0, p.stdout + p.stderr
        return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory):
    d = tmp_path_factory.mktemp("relying-parties")
    port = _free_port()
    h = Hierarchy(dir=d, env={"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None},
                  root_pem=d / "root.pem", issuing_pem=d / "issuing.pem", crls=[d / "root.crl", d / "issuing.crl"],
                  port=port)
    h.ok("init")
    h.ok("ca", "create-root", "root", "--subject", "C=CN,O=示例电子口岸认证中心,CN=RP Test Root", "--key-type", "ec-p384",
         "--crl-url", "http://crl.unica.test/root.crl")
    p = h.ok("ca", "create-sub", "issuing", "--parent", "root", "--subject",
             "C=CN,O=示例电子口岸认证中心,CN=RP Test Issuing CA", "--key-type", "ec-p256",
             "--crl-url", "http://crl.unica.test/issuing.crl", "--ocsp-url", f"http://127.0.0.1:{port}/")
    assert "warning" not in p.stderr, p.stderr  # the root publishes a CRL: nothing to warn about
    h.ok("ca", "export", "root", "--out", str(h.root_pem))
    h.ok("ca", "export", "issuing", "--out", str(h.issuing_pem))
    issuing = x509.load_pem_x509_certificate(h.issuing_pem.read_bytes())
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://crl.unica.test/root.crl"
    h.ok("crl", "generate", "--ca", "root", "--out", str(h.crls[0]))
    h.ok("crl", "generate", "--ca", "issuing", "--out", str(h.crls[1]))
    h.ok("ocsp", "signer", "--ca", "issuing")
    return h


@pytest.fixture(scope="module")
def responder(hierarchy):
    """``unica ocsp serve`` for the issuing CA on 127.0.0.1 (what pdfsig's NSS asks)."""
    env = {k: v for k, v in os.environ.items() if k not in hierarchy.env}
    env.update({k: v for k, v in hierarchy.env.items() if v is not None})
    proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(hierarchy.port),
                             "--ca", "issuing"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{hierarchy.port}/healthz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"unica ocsp serve exited: {proc.stderr.read().decode()}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _nss_db(directory: Path, root_pem: Path) -> Path:
    if not shutil.which("certutil"):
        pytest.fail("certutil (Debian package libnss3-tools) is needed")
    db = directory / f"nss-{uuid.uuid4().hex[:6]}"
    db.mkdir()
    assert _run("certutil", "-N", "-d", f"sql:{db}", "--empty-password").returncode == 0
    assert _run("certutil", "-A", "-d", f"sql:{db}", "-n", "root", "-t", "CT,C,C", "-a", "-i", root_pem).returncode == 0
    return db


def _issue(h: Hierarchy, profile: str, tmp_path: Path):
    """A key and CSR from ``openssl req``, the certificate from ``unica issue``, the key re-written
    as an encrypted PKCS#8 file for ``unica sign --key file:``."""
    csr = openssl_csr(tmp_path, USCC_SUBJ.format(cn="张三"), san="email:zhangsan@example.cn", name="ent")
    cert = tmp_path / "ent.pem"
    h.ok("issue", "--ca", "issuing", "--profile", profile, "--csr", str(csr), "--out", str(cert))
    key = tmp_path / "ent.p8"
    p = _run("openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", tmp_path / "ent.key", "-out", key,
             "-passout", f"pass:{PASSPHRASE}")
    assert p.returncode == 0, p.stderr
    return cert, key


@pytest.mark.parametrize("profile", ["enterprise-sign", "enterprise-auth"])
def test_enterprise_certificate_accepted_by_nss_openssl_pyhanko_and_unica(hierarchy, responder, profile, tmp_path):
    h = hierarchy
    cert_pem, key = _issue(h, profile, tmp_path)
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    # what a real e-port operator certificate carries: client authentication and e-mail protection
    assert {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION} <= eku
    assert ku.digital_signature
    if profile == "enterprise-sign":
        assert eku == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING}
        assert ku.content_commitment

    # NSS: the certificate is approved for signing (certUsageEmailSigner)
    db = _nss_db(tmp_path, h.root_pem)
    for nick, pem in (("issuing", h.issuing_pem), ("ent", cert_pem)):
        assert _run("certutil", "-A", "-d", f"sql:{db}", "-n", nick, "-t", ",,", "-a", "-i", pem).returncode == 0
    v = _run("certutil", "-V", "-u", "S", "-d", f"sql:{db}", "-n", "ent")
    assert v.returncode == 0 and "certificate is valid" in v.stdout + v.stderr, v.stdout + v.stderr

    # pdfsig: a fresh NSS database that trusts only the root; the chain comes from the PDF and
    # NSS asks the OCSP responder the certificate names (unica ocsp serve)
    src, pdf = tmp_path / "in.pdf", tmp_path / "signed.pdf"
    src.write_bytes(minimal_pdf())
    h.ok("sign", "pdf", str(src), str(pdf), "--key", f"file:{key}", "--cert", str(cert_pem),
         "--chain", str(h.issuing_pem), "--reason", "申报 declaration")
    r = _run("pdfsig", "-nssdir", f"sql:{_nss_db(tmp_path, h.root_pem)}", pdf)
    assert "Signature Validation: Signature is Valid." in r.stdout, r.stdout + r.stderr
    assert "Certificate Validation: Certificate is Trusted." in r.stdout, r.stdout + r.stderr

    # OpenSSL: default purpose (smimesign), no -purpose any
    doc = tmp_path / "doc.txt"
    doc.write_bytes("报关单 declaration 2026\n".encode())
    h.ok("sign", "cms", str(doc), "--key", f"file:{key}", "--cert", str(cert_pem), "--chain", str(h.issuing_pem))
    p7s = tmp_path / "doc.txt.p7s"
    o = _run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", p7s, "-content", doc,
             "-CAfile", h.root_pem, "-out", "/dev/null")
    assert o.returncode == 0 and "Verification successful" in o.stderr, o.stderr

    # unica verify: hard-fail is the default; the root's and the issuing CA's CRLs as files
    crl_args = [a for c in h.crls for a in ("--crl", str(c))]
    for args in (["pdf", str(pdf)], ["cms", str(p7s), "--data", str(doc)]):
        p = h.run("verify", *args, "--trust", str(h.root_pem), *crl_args, "--offline")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "TOTAL-PASSED" in p.stdout and "hard-fail" in p.stdout, p.stdout

    # pyHanko, hard-fail with the same CRLs. Its default PAdES key-usage policy asks for
    # nonRepudiation, which the signing profile has and the authentication profile deliberately
    # does not (a login certificate is no non-repudiation signing certificate): that one is
    # checked for digitalSignature
    _pyhanko_hard_fail(pdf, h, None if profile == "enterprise-sign" else {"digital_signature"})


def _pyhanko_hard_fail(pdf: Path, h: Hierarchy, key_usage: set | None) -> None:
    from asn1crypto import crl as acrl
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.settings import KeyUsageConstraints
    from pyhanko_certvalidator import ValidationContext

    root = ax509.Certificate.load(x509.load_pem_x509_certificate(h.root_pem.read_bytes()).public_bytes(Encoding.DER))
    crls = [acrl.CertificateList.load(c.read_bytes()) for c in h.crls]
    with pdf.open("rb") as f:
        (sig,) = PdfFileReader(f).embedded_signatures
        vc = ValidationContext(trust_roots=[root], crls=crls, allow_fetching=False, revocation_mode="hard-fail")
        kw = {} if key_usage is None else {"key_usage_settings": KeyUsageConstraints(key_usage=key_usage)}
        status = validate_pdf_signature(sig, vc, **kw)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


def test_without_the_root_crl_hard_fail_is_indeterminate(hierarchy, tmp_path):
    """Why the root needs a CRL (item 8): without the root's CRL the issuing CA's certificate cannot
    be checked, and hard-fail says INDETERMINATE (exit 20) even for a good signature."""
    h = hierarchy
    cert_pem, key = _issue(h, "enterprise-sign", tmp_path)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"content")
    h.ok("sign", "cms", str(doc), "--key", f"file:{key}", "--cert", str(cert_pem), "--chain", str(h.issuing_pem))
    p = h.run("verify", "cms", str(tmp_path / "doc.txt.p7s"), "--data", str(doc), "--trust", str(h.root_pem),
              "--crl", str(h.crls[1]), "--offline")
    assert p.returncode == 20 and "INDETERMINATE" in p.stdout, p.stdout + p.stderr
