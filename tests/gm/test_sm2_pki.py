"""SM2 end to end on the CLI, as an operator runs it, checked by peers unica does not contain.

An SM2 root on an encrypted file key, an SM2 issuing CA with CRL and OCSP URLs, enterprise
certificates from ``openssl req -sm3 -sigopt distid:1234567812345678`` CSRs, revocation, full,
delta and partitioned CRLs, OCSP (pre-signed and live, SHA-1 and SM3 CertIDs) and ``unica
verify`` of it all. The peers: ``gmssl`` (an independent pure-Python SM2) checks every signature
over its TBS bytes with the GM/T 0009 default signer ID; the ``openssl`` 3.0 CLI reads and, where
it can be given the signer ID, verifies; pkilint lints.

What OpenSSL 3.0 does with the signer ID is pinned here (docs/sm2.md says the same): it verifies
SM2 signatures with an *empty* ID unless given ``-vfyopt distid:`` (``openssl verify`` only for the
target certificate), and ``openssl crl`` / ``openssl ocsp`` cannot be given one.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_unica

PASSPHRASE = "gm-sm2-test-passphrase"
DISTID = "distid:1234567812345678"
ORG = "电子口岸联合认证中心"
GOOD_SUBJ = "/C=CN/O=测试科技有限公司/organizationIdentifier=91350100M000100Y43/CN=张三"

PROFILE = """\
description = "test: enterprise signing with an SM2 key"
kind = "end-entity"
validity = "2y"

[key_usage]
usages = ["digitalSignature", "nonRepudiation"]

[extended_key_usage]
usages = ["clientAuth", "emailProtection"]

[keys]
allowed = ["sm2"]

[subject]
required = ["countryName", "organizationName", "organizationIdentifier", "commonName"]
uscc = "required"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class GM:
    dir: Path
    env: dict
    ocsp_port: int

    def run(self, *args, env: dict | None = None, **kw):
        return run_unica(*args, env={**self.env, **(env or {})}, **kw)

    def ok(self, *args, **kw) -> str:
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def path(self, name: str) -> Path:
        return self.dir / name

    def sm2_csr(self, name: str, subj: str = GOOD_SUBJ, *, distid: bool = True) -> Path:
        key, csr = self.path(f"{name}.key"), self.path(f"{name}.csr")
        subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-aes256", "-pass", f"pass:{PASSPHRASE}",
                        "-out", str(key)], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", str(key), "-passin", f"pass:{PASSPHRASE}", "-sm3",
                        *(["-sigopt", DISTID] if distid else []), "-utf8", "-subj", subj, "-out", str(csr)],
                       check=True, capture_output=True)
        return csr

    def issue(self, name: str, ca: str = "gmsub", profile: str = "gm-test") -> Path:
        out = self.path(f"{name}.pem")
        self.ok("issue", "--ca", ca, "--profile", profile, "--csr", str(self.sm2_csr(name)), "--out", str(out))
        return out

    def serial(self, pem: Path) -> str:
        return openssl("x509", "-in", str(pem), "-noout", "-serial").stdout.strip().split("=")[1].lower()


def openssl(*args, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def gm(tmp_path_factory) -> GM:
    d = tmp_path_factory.mktemp("gm")
    env = {"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None, "UNICA_OPERATOR": None}
    g = GM(d, env, _free_port())
    g.ok("init")
    for name in ("root", "sub"):
        g.ok("key", "generate", f"file:{d}/{name}.sm2.pem", "--key-type", "sm2")
    g.ok("ca", "create-root", "gmroot", "--subject", f"C=CN,O={ORG},CN=SM2 Root CA", "--key", f"file:{d}/root.sm2.pem")
    g.ok("ca", "set", "gmroot", "--crl-url", "http://127.0.0.1:9/gmroot.crl")
    g.ok("ca", "create-sub", "gmsub", "--parent", "gmroot", "--subject", f"C=CN,O={ORG},CN=SM2 Issuing CA",
         "--key", f"file:{d}/sub.sm2.pem")
    g.ok("ca", "set", "gmsub", "--crl-url", "http://127.0.0.1:9/gmsub.crl",
         "--delta-crl-url", "http://127.0.0.1:9/gmsub-delta.crl",
         "--ocsp-url", f"http://127.0.0.1:{g.ocsp_port}/")
    (d / "gm-test.toml").write_text(PROFILE)
    g.ok("profile", "add", str(d / "gm-test.toml"))
    for ca in ("gmroot", "gmsub"):
        g.path(f"{ca}.pem").write_text(g.ok("ca", "export", ca))
    g.ok("crl", "generate", "--ca", "gmroot", "--out", str(g.path("gmroot.crl")))
    return g


# --- the independent SM2 ------------------------------------------------------------------


def gmssl_verifies(signer_spki_der: bytes, tbs: bytes, signature_der: bytes) -> bool:
    """gmssl (pure Python, test-only) checks an SM2-with-SM3 signature with its default ID (the
    openssl command line where gmssl itself fails: tests/sm2/peers.py)."""
    from asn1crypto import keys

    from tests.sm2 import peers

    point = keys.PublicKeyInfo.load(signer_spki_der)["public_key"].native
    return peers.gm_verify_default_id(point[1:], signature_der, tbs)


def _cert(pem: Path):
    from asn1crypto import pem as apem, x509

    return x509.Certificate.load(apem.unarmor(pem.read_bytes())[2])


def _spki(pem: Path) -> bytes:
    return _cert(pem)["tbs_certificate"]["subject_public_key_info"].dump()


# --- certificates -------------------------------------------------------------------------


def test_sm2_hierarchy_signatures_and_algorithms(gm):
    ee = gm.issue("ee-plain")
    root, sub = gm.path("gmroot.pem"), gm.path("gmsub.pem")
    for cert, issuer in ((root, root), (sub, root), (ee, sub)):
        c = _cert(cert)
        assert c["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
        assert c["signature_algorithm"]["parameters"].native is None  # absent, as OpenSSL writes it
        spki = c["tbs_certificate"]["subject_public_key_info"]
        assert spki["algorithm"]["parameters"].chosen.dotted == "1.2.156.10197.1.301"
        assert gmssl_verifies(_spki(issuer), c["tbs_certificate"].dump(), c["signature_value"].native), cert
    text = openssl("x509", "-in", str(ee), "-noout", "-text").stdout
    assert "SM2-with-SM3" in text
    # the subject's identity came through from the openssl CSR (UTF-8), USCC checked
    assert "91350100M000100Y43" in text


def test_openssl_verifies_each_link_with_the_signer_id(gm):
    ee = gm.issue("ee-openssl")
    root, sub = gm.path("gmroot.pem"), gm.path("gmsub.pem")
    for cert, issuer in ((sub, root), (ee, sub)):
        p = openssl("verify", "-partial_chain", "-vfyopt", DISTID, "-CAfile", str(issuer), str(cert))
        assert p.stdout.strip().endswith(": OK")
        # without the ID OpenSSL 3.0 checks with an empty one, and refuses unica's GM/T signature
        bad = openssl("verify", "-partial_chain", "-CAfile", str(issuer), str(cert), check=False)
        assert bad.returncode != 0 and "signature failure" in bad.stdout + bad.stderr
    # the whole chain in one run: -vfyopt reaches only the target certificate, so the link
    # sub <- root is checked with the empty ID and fails (OpenSSL 3.0.x behaviour, not unica's)
    whole = openssl("verify", "-vfyopt", DISTID, "-CAfile", str(root), "-untrusted", str(sub), str(ee), check=False)
    assert whole.returncode != 0 and "error 7 at 1 depth" in whole.stdout + whole.stderr


def test_pkilint_lints_the_sm2_certificates(gm):
    ee = gm.issue("ee-lint")
    for cert in (gm.path("gmroot.pem"), gm.path("gmsub.pem"), ee):
        p = subprocess.run(["lint_pkix_cert", "lint", "-s", "WARNING", str(cert)], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.strip() == "", (cert, p.stdout + p.stderr)


def test_unica_verify_passes_and_reports_the_algorithms(gm):
    import json

    ee = gm.issue("ee-verify")
    crl, delta = gm.path("gmsub-v.crl"), gm.path("gmsub-v-delta.crl")
    gm.ok("crl", "generate", "--ca", "gmsub", "--out", str(crl))
    gm.ok("crl", "generate", "--ca", "gmsub", "--delta", "--out", str(delta))  # the certificate names one
    p = gm.run("verify", "cert", str(ee), "--trust", str(gm.path("gmroot.pem")), "--untrusted",
               str(gm.path("gmsub.pem")), "--crl", str(crl), "--crl", str(delta), "--crl", str(gm.path("gmroot.crl")),
               "--revocation", "hard-fail", "--usage", "client-auth", "--offline", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["indication"] == "TOTAL-PASSED", report
    assert [e.get("signature_algorithm") for e in report["path"]] == ["sm2-with-sm3"] * 3


def test_a_tampered_sm2_certificate_fails(gm):
    ee = gm.issue("ee-tamper")
    der = bytearray(subprocess.run(["openssl", "x509", "-in", str(ee), "-outform", "DER"], capture_output=True,
                                   check=True).stdout)
    # inside the TBS: the last byte of the subject public key (the holder's key is replaced)
    spki = _spki(ee)
    at = bytes(der).find(spki) + len(spki) - 1
    der[at] ^= 0x01
    bad = gm.path("ee-tampered.der")
    bad.write_bytes(bytes(der))
    p = gm.run("verify", "cert", str(bad), "--trust", str(gm.path("gmroot.pem")), "--untrusted",
               str(gm.path("gmsub.pem")), "--revocation", "off", "--offline")
    assert p.returncode in (10, 20), p.stdout + p.stderr
    assert "TOTAL-PASSED" not in p.stdout


def test_a_certificate_openssl_signed_with_the_id_verifies_and_without_it_does_not(gm):
    """The other direction: SM2 certificates OpenSSL makes with the sub CA's key are accepted by
    ``unica verify`` when signed with the GM/T 0009 ID, and refused when OpenSSL's empty default
    ID was used -- the signer ID is part of what is signed."""
    csr = gm.sm2_csr("ext")
    key = f"{gm.dir}/sub.sm2.pem"
    results = {}
    for name, extra in (("with-id", ["-sigopt", DISTID, "-vfyopt", DISTID]), ("empty-id", ["-vfyopt", DISTID])):
        out = gm.path(f"openssl-{name}.pem")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(gm.path("gmsub.pem")), "-CAkey", key, "-passin",
                f"pass:{PASSPHRASE}", "-sm3", *extra, "-days", "30", "-set_serial", "0x5a5a5a5a5a5a5a5a5a",
                "-extfile", "/dev/null", "-out", str(out))
        p = gm.run("verify", "cert", str(out), "--trust", str(gm.path("gmroot.pem")), "--untrusted",
                   str(gm.path("gmsub.pem")), "--revocation", "off", "--offline", "--usage", "any")
        results[name] = p.returncode
    assert results == {"with-id": 0, "empty-id": results["empty-id"]} and results["empty-id"] != 0, results


# --- requests -----------------------------------------------------------------------------


def test_a_csr_signed_without_the_signer_id_is_refused_with_the_fix(gm):
    csr = gm.sm2_csr("noid", distid=False)
    p = gm.run("issue", "--ca", "gmsub", "--profile", "gm-test", "--csr", str(csr))
    assert_one_line_error(p, "does not verify", "empty ID", "-sigopt distid:1234567812345678")
    assert p.returncode == 3


def test_an_sm2_key_cannot_be_made_on_a_token(gm, token_label):
    p = gm.run("key", "generate", f"pkcs11:token={token_label};object=gm-sm2", "--key-type", "sm2")
    assert_one_line_error(p, "SM2", "PKCS#11", "file:")


# --- revocation: CRLs ---------------------------------------------------------------------


def _crl(path: Path):
    from asn1crypto import crl as acrl

    return acrl.CertificateList.load(path.read_bytes())


def test_revocation_full_and_delta_crls(gm):
    base_pem, gone = gm.issue("ee-revoked-base"), None
    base = gm.path("gmsub-base.crl")
    gm.ok("crl", "generate", "--ca", "gmsub", "--out", str(base))
    gone = gm.issue("ee-revoked-delta")
    gm.ok("revoke", "--ca", "gmsub", gm.serial(gone), "--reason", "keyCompromise")
    delta = gm.path("gmsub-delta.crl")
    gm.ok("crl", "generate", "--ca", "gmsub", "--delta", "--out", str(delta))
    sub_spki = _spki(gm.path("gmsub.pem"))
    for f in (base, delta):
        c = _crl(f)
        assert c["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
        assert gmssl_verifies(sub_spki, c["tbs_cert_list"].dump(), c["signature"].native), f
        lint = subprocess.run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", str(f)],
                              capture_output=True, text=True)
        assert lint.stdout.strip() == "", (f, lint.stdout + lint.stderr)
    text = openssl("crl", "-inform", "DER", "-in", str(delta), "-noout", "-text").stdout
    assert "Delta CRL Indicator" in text and gm.serial(gone).upper() in text.replace(":", "").upper()
    p = gm.run("verify", "cert", str(gone), "--trust", str(gm.path("gmroot.pem")), "--untrusted",
               str(gm.path("gmsub.pem")), "--crl", str(delta), "--crl", str(base), "--crl",
               str(gm.path("gmroot.crl")), "--revocation", "hard-fail", "--usage", "client-auth", "--offline")
    assert p.returncode == 10 and "REVOKED" in p.stdout, p.stdout + p.stderr
    assert base_pem.exists()


def test_openssl_crl_checks_sm2_with_an_empty_id(gm):
    """``openssl crl -CAfile`` (3.0) cannot be given the signer ID: unica's CRL (GM/T 0009 ID)
    fails there (it prints "verify failure" and still exits 0), and the same TBS signed with an
    empty ID passes -- so it is the ID, not the CRL."""
    from unica import der
    from unica.hsm.software import load_file_key

    crl = gm.path("gmsub-openssl.crl")
    gm.ok("crl", "generate", "--ca", "gmsub", "--out", str(crl))
    p = openssl("crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(gm.path("gmsub.pem")), "-noout",
                check=False)
    assert "verify failure" in p.stdout + p.stderr
    key = load_file_key(gm.dir / "sub.sm2.pem", PASSPHRASE)
    tbs = _crl(crl)["tbs_cert_list"].dump()
    empty = gm.path("gmsub-empty-id.crl")
    empty.write_bytes(der.seq(tbs, der.seq(der.oid("1.2.156.10197.1.501")), der.bit_string(key.sign(tbs, signer_id=b""))))
    p = openssl("crl", "-inform", "DER", "-in", str(empty), "-CAfile", str(gm.path("gmsub.pem")), "-noout")
    assert "verify OK" in p.stdout + p.stderr


def test_partitioned_crls_of_an_sm2_ca(gm):
    gm.ok("key", "generate", f"file:{gm.dir}/part.sm2.pem", "--key-type", "sm2")
    gm.ok("ca", "create-sub", "gmpart", "--parent", "gmroot", "--subject", f"C=CN,O={ORG},CN=SM2 Partitioned CA",
          "--key", f"file:{gm.dir}/part.sm2.pem")
    gm.ok("ca", "set", "gmpart", "--crl-shards", "4", "--crl-url", "http://127.0.0.1:9/gmpart-{shard}.crl")
    part = gm.path("gmpart.pem")
    part.write_text(gm.ok("ca", "export", "gmpart"))
    out = gm.dir / "gmpart-crls"
    out.mkdir()
    gm.ok("crl", "generate", "--ca", "gmpart", "--out-dir", str(out))
    files = sorted(out.glob("*.crl"))
    assert len(files) == 4, files
    for f in files:
        c = _crl(f)
        assert gmssl_verifies(_spki(part), c["tbs_cert_list"].dump(), c["signature"].native), f
        idp = [e for e in c["tbs_cert_list"]["crl_extensions"] if e["extn_id"].native == "issuing_distribution_point"]
        assert idp and idp[0]["critical"].native, f


# --- revocation: OCSP ---------------------------------------------------------------------


class _Responder:
    def __init__(self, gm: GM):
        self.gm = gm

    def __enter__(self):
        self.proc = subprocess.Popen(["python3", "-m", "unica", "ocsp", "serve", "--port", str(self.gm.ocsp_port)],
                                     env={**__import__("os").environ, **{k: v for k, v in self.gm.env.items()
                                                                         if v is not None}},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.gm.ocsp_port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.proc.stdout.read()
                time.sleep(0.1)
        raise AssertionError("the OCSP responder did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def _ocsp_query(gm: GM, cert: Path, out: Path, *digest: str, nonce: bool = False) -> str:
    p = openssl("ocsp", *digest, "-issuer", str(gm.path("gmsub.pem")), "-cert", str(cert), "-url",
                f"http://127.0.0.1:{gm.ocsp_port}/", "-noverify", "-respout", str(out),
                *([] if nonce else ["-no_nonce"]), "-resp_text")
    return p.stdout


@pytest.mark.parametrize("mode", ["presigned", "live"])
def test_ocsp_answers_for_sm2_certificates(gm, mode):
    from asn1crypto import ocsp as aocsp

    good, bad = gm.issue(f"ee-ocsp-good-{mode}"), gm.issue(f"ee-ocsp-bad-{mode}")
    gm.ok("revoke", "--ca", "gmsub", gm.serial(bad), "--reason", "keyCompromise")
    gm.ok("ocsp", "signer", "--ca", "gmsub", "--key-type", "sm2", "--renew-if-due")
    gm.ok("ocsp", "configure", "--ca", "gmsub", "--mode", mode, "--validity", "4d")
    if mode == "presigned":
        gm.ok("ocsp", "presign", "--ca", "gmsub")
    with _Responder(gm):
        for digest in ((), ("-sm3",)):
            tag = f"{mode}-{'sm3' if digest else 'sha1'}"
            text = _ocsp_query(gm, good, gm.path(f"good-{tag}.ocsp"), *digest, nonce=(mode == "live"))
            assert "Cert Status: good" in text, text
            assert ("Hash Algorithm: sm3" if digest else "Hash Algorithm: sha1") in text
            text = _ocsp_query(gm, bad, gm.path(f"bad-{tag}.ocsp"), *digest)
            assert "Cert Status: revoked" in text and "keyCompromise" in text, text
    for f in gm.dir.glob(f"*-{mode}-*.ocsp"):
        basic = aocsp.OCSPResponse.load(f.read_bytes()).basic_ocsp_response
        assert basic["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
        signer = basic["certs"][0]
        assert gmssl_verifies(signer["tbs_certificate"]["subject_public_key_info"].dump(),
                              basic["tbs_response_data"].dump(), basic["signature"].native), f
        lint = subprocess.run(["lint_ocsp_response", "lint", "-s", "WARNING", str(f)], capture_output=True, text=True)
        assert lint.stdout.strip() == "", (f, lint.stdout + lint.stderr)
    for name, want in (("good", 0), ("bad", 10)):
        for cid in ("sha1", "sm3"):
            p = gm.run("verify", "cert", str(good if name == "good" else bad), "--trust", str(gm.path("gmroot.pem")),
                       "--untrusted", str(gm.path("gmsub.pem")), "--ocsp-response",
                       str(gm.path(f"{name}-{mode}-{cid}.ocsp")), "--crl", str(gm.path("gmroot.crl")),
                       "--revocation", "hard-fail", "--usage", "client-auth", "--offline")
            assert p.returncode == want, (name, cid, p.stdout + p.stderr)


def test_openssl_ocsp_checks_sm2_with_an_empty_id(gm):
    """``openssl ocsp`` (3.0) verifies the response signature with an empty ID and cannot be given
    another: unica's response (GM/T 0009 ID) fails its signature check."""
    responses = sorted(gm.dir.glob("good-presigned-sha1.ocsp")) or sorted(gm.dir.glob("good-*.ocsp"))
    if not responses:
        pytest.skip("runs after test_ocsp_answers_for_sm2_certificates in this module")
    chain = gm.path("chain.pem")
    chain.write_text(gm.path("gmsub.pem").read_text() + gm.path("gmroot.pem").read_text())
    p = openssl("ocsp", "-respin", str(responses[0]), "-CAfile", str(chain), check=False)
    assert "signature failure" in p.stdout + p.stderr, p.stdout + p.stderr


# --- a mixed hierarchy --------------------------------------------------------------------


def test_ecdsa_sub_ca_under_the_sm2_root(gm):
    """The rule: a CA signs with its own key's algorithm, and its profiles decide its subjects'
    key types. An ECDSA sub CA under the SM2 root is SM2-signed and signs ECDSA itself."""
    gm.ok("ca", "create-sub", "ecsub", "--parent", "gmroot", "--subject", f"C=CN,O={ORG},CN=ECDSA Issuing CA",
          "--key-type", "ec-p256")
    ecsub = gm.path("ecsub.pem")
    ecsub.write_text(gm.ok("ca", "export", "ecsub"))
    c = _cert(ecsub)
    assert c["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert c["tbs_certificate"]["subject_public_key_info"]["algorithm"]["parameters"].chosen.dotted == \
        "1.2.840.10045.3.1.7"
    key, csr, leaf = gm.path("ec-leaf.key"), gm.path("ec-leaf.csr"), gm.path("ec-leaf.pem")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-utf8", "-subj", GOOD_SUBJ, "-out", str(csr))
    gm.ok("issue", "--ca", "ecsub", "--profile", "enterprise-sign", "--csr", str(csr), "--out", str(leaf))
    assert _cert(leaf)["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    p = gm.run("verify", "cert", str(leaf), "--trust", str(gm.path("gmroot.pem")), "--untrusted", str(ecsub),
               "--revocation", "off", "--offline")
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"TOTAL-PASSED", p.stdout)


# --- keys from elsewhere, and what SM2 cannot sign ----------------------------------------


def test_an_openssl_encrypted_sm2_key_is_read(gm):
    """An SM2 key OpenSSL wrote encrypted (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) is read with
    the passphrase, and refused with a wrong one."""
    key = gm.path("openssl-enc.sm2.pem")
    openssl("genpkey", "-algorithm", "SM2", "-aes256", "-pass", f"pass:{PASSPHRASE}", "-out", str(key))
    pub = openssl("pkey", "-in", str(key), "-passin", f"pass:{PASSPHRASE}", "-pubout").stdout
    import json

    shown = json.loads(gm.ok("key", "show", f"file:{key}", "--json"))
    assert shown["type"] == "sm2" and shown["public_key_pem"] == pub
    p = gm.run("key", "show", f"file:{key}", env={"UNICA_PASSPHRASE": "not-the-passphrase"})
    assert_one_line_error(p, "wrong passphrase")


def test_a_pdf_signature_with_an_sm2_key_is_refused_plainly(gm, tmp_path):
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    w.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 200, 200)])}))
    src, dst = tmp_path / "in.pdf", tmp_path / "out.pdf"
    with open(src, "wb") as f:
        w.write(f)
    ee = gm.issue("ee-pdf")
    p = gm.run("sign", "pdf", str(src), str(dst), "--key", f"file:{gm.path('ee-pdf.key')}", "--cert", str(ee))
    assert_one_line_error(p, "SM2", "not supported", "unica sign cms")
    assert not dst.exists()


# --- GM/T 0015-2012 items the enterprise supplies -----------------------------------------


def _gm_items(pem: Path) -> dict:
    from asn1crypto import core

    out = {}
    for e in _cert(pem)["tbs_certificate"]["extensions"]:
        oid = e["extn_id"].dotted
        if oid.startswith("1.2.156.10260."):
            out[oid] = (e["critical"].native, core.load(e["extn_value"].native).native)
    return out


def test_requested_taxation_and_ic_registration_numbers(gm):
    """``enterprise-sign-gm`` honours TaxationNumber / ICRegistrationNumber where the request
    supplies them (PrintableString, non-critical); a profile that does not honour them ignores
    them; a wrong string type is refused as malformed."""
    key = gm.path("taxed.key")
    openssl("genpkey", "-algorithm", "SM2", "-aes256", "-pass", f"pass:{PASSPHRASE}", "-out", str(key))

    def csr(name: str, *addext: str) -> Path:
        out = gm.path(f"{name}.csr")
        args = [a for x in addext for a in ("-addext", x)]
        openssl("req", "-new", "-key", str(key), "-passin", f"pass:{PASSPHRASE}", "-sm3", "-sigopt", DISTID, "-utf8",
                "-subj", GOOD_SUBJ, *args, "-out", str(out))
        return out

    supplied = csr("taxed", "1.2.156.10260.4.1.5=ASN1:PRINTABLESTRING:91350100M000100Y43",
                   "1.2.156.10260.4.1.3=ASN1:PRINTABLESTRING:350100100012345")
    out = gm.path("taxed.pem")
    gm.ok("issue", "--ca", "gmsub", "--profile", "enterprise-sign-gm", "--csr", str(supplied), "--out", str(out))
    assert _gm_items(out) == {
        "1.2.156.10260.4.4": (False, "91350100M000100Y43"),       # 2023 USCC, from the checked subject
        "1.2.156.10260.4.1.4": (False, "M000100Y4"),              # 2012 OrganizationCode, USCC 9-17
        "1.2.156.10260.4.1.5": (False, "91350100M000100Y43"),     # TaxationNumber, as supplied
        "1.2.156.10260.4.1.3": (False, "350100100012345"),        # ICRegistrationNumber, as supplied
    }
    plain = gm.path("taxed-plain.pem")
    gm.ok("issue", "--ca", "gmsub", "--profile", "gm-test", "--csr", str(supplied), "--out", str(plain))
    assert _gm_items(plain) == {}
    p = gm.run("issue", "--ca", "gmsub", "--profile", "enterprise-sign-gm", "--csr",
               str(csr("taxed-utf8", "1.2.156.10260.4.1.5=ASN1:UTF8String:91350100M000100Y43")))
    assert_one_line_error(p, "taxationNumber", "PrintableString")
    assert p.returncode == 2


def test_a_profile_honouring_gm_items_needs_the_2012_edition(gm):
    bad = gm.path("gm-bad.toml")
    bad.write_text(PROFILE + '\n[csr]\nhonour_extensions = ["taxationNumber"]\n')
    p = gm.run("profile", "check", str(bad))
    assert_one_line_error(p, "honour_extensions", "2012")
