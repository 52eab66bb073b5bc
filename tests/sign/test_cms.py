"""CMS / CAdES signatures made with a SoftHSM2 token key, checked with openssl and asn1crypto."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms, tsp

from tests.conftest import assert_one_line_error
from tests.token.pki import run

CONTENT = "申报表 2026 — declaration №42\n".encode() * 50


def _openssl_verify(p7s: Path, ca, content: Path | None = None, inform="DER"):
    args = ["openssl", "cms", "-verify", "-binary", "-inform", inform, "-in", p7s, "-CAfile", ca.files["root"],
            "-purpose", "any", "-out", "/dev/null"]
    if content is not None:
        args += ["-content", content]
    return run(*args, check=False)


def _signer_info(der: bytes):
    ci = cms.ContentInfo.load(der)
    assert ci["content_type"].native == "signed_data"
    sd = ci["content"]
    (si,) = sd["signer_infos"]
    return sd, si


def test_detached_cms_verifies_and_fails_after_one_byte(unica, enrolled, soft_ca, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    p = unica("sign", "cms", str(doc), "--key", enrolled.key_uri)
    assert p.returncode == 0, p.stderr
    p7s = tmp_path / "doc.txt.p7s"
    v = _openssl_verify(p7s, soft_ca, doc)
    assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
    tampered = bytearray(CONTENT)
    tampered[100] ^= 0x01
    doc.write_bytes(bytes(tampered))
    v = _openssl_verify(p7s, soft_ca, doc)
    assert v.returncode != 0 and "content verify error" in v.stderr.lower(), v.stderr


def test_cades_bes_attributes_and_embedded_chain(unica, enrolled, soft_ca, tmp_path):
    doc = tmp_path / "doc.bin"
    doc.write_bytes(CONTENT)
    out = tmp_path / "sig.p7s"
    assert unica("sign", "cms", str(doc), "--key", enrolled.key_uri, "--out", str(out)).returncode == 0
    sd, si = _signer_info(out.read_bytes())
    attrs = {a["type"].native: a["values"][0] for a in si["signed_attrs"]}
    assert {"content_type", "message_digest", "signing_time", "signing_certificate_v2"} <= set(attrs)
    assert attrs["content_type"].native == "data"
    import datetime as dt

    assert abs((attrs["signing_time"].native - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 120
    assert attrs["message_digest"].native == hashlib.sha256(CONTENT).digest()
    from cryptography.hazmat.primitives import serialization

    cert_der = enrolled.cert.public_bytes(serialization.Encoding.DER)
    (ess,) = attrs["signing_certificate_v2"]["certs"]
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    embedded = {c.chosen.dump() for c in sd["certificates"]}
    assert cert_der in embedded
    assert soft_ca.sub.public_bytes(serialization.Encoding.DER) in embedded  # chain from the token
    assert sd["encap_content_info"]["content"].native is None  # detached
    assert si["signature_algorithm"]["algorithm"].native in ("sha256_ecdsa", "ecdsa")


def test_attached_cms_verifies_and_fails_after_one_byte(unica, enrolled, soft_ca, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    out = tmp_path / "attached.p7s"
    p = unica("sign", "cms", str(doc), "--key", enrolled.key_uri, "--attached", "--out", str(out))
    assert p.returncode == 0, p.stderr
    v = _openssl_verify(out, soft_ca)
    assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
    der = bytearray(out.read_bytes())
    pos = der.find(CONTENT[:40])
    assert pos > 0
    der[pos + 3] ^= 0x20
    bad = tmp_path / "tampered.p7s"
    bad.write_bytes(bytes(der))
    v = _openssl_verify(bad, soft_ca)
    assert v.returncode != 0, v.stderr


def test_rsa_token_key_pkcs1_and_pss(unica, enrolled_rsa, soft_ca, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    for extra in ([], ["--pss"]):
        out = tmp_path / f"rsa{len(extra)}.p7s"
        p = unica("sign", "cms", str(doc), "--key", enrolled_rsa.key_uri, "--out", str(out), *extra)
        assert p.returncode == 0, p.stderr
        v = _openssl_verify(out, soft_ca, doc)
        assert v.returncode == 0, v.stderr
        _, si = _signer_info(out.read_bytes())
        assert si["signature_algorithm"]["algorithm"].native == ("rsassa_pss" if extra else "sha256_rsa")


def test_cades_t_with_local_tsa(unica, enrolled, soft_ca, tsa, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    out = tmp_path / "t.p7s"
    before = tsa.requests
    p = unica("sign", "cms", str(doc), "--key", enrolled.key_uri, "--tsa", tsa.url, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert tsa.requests > before
    _, si = _signer_info(out.read_bytes())
    unsigned = {a["type"].native: a["values"][0] for a in si["unsigned_attrs"]}
    token = unsigned["signature_time_stamp_token"]
    tst_info = tsp.TSTInfo.load(token["content"]["encap_content_info"]["content"].parsed.dump())
    imprint = tst_info["message_imprint"]
    algo = imprint["hash_algorithm"]["algorithm"].native
    assert imprint["hashed_message"].native == hashlib.new(algo, si["signature"].native).digest()
    v = _openssl_verify(out, soft_ca, doc)
    assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr


def test_tsa_unreachable_is_one_line_error(unica, enrolled, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"x")
    p = unica("sign", "cms", str(doc), "--key", enrolled.key_uri, "--tsa", "http://127.0.0.1:9/tsa")
    assert_one_line_error(p, "timestamp")


class _HugeTSA:
    """A local 'TSA' whose reply is 4 MiB: with a Content-Length, or streamed without one."""

    def __init__(self, declare: bool):
        import http.server
        import threading

        declare_length = declare

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                if declare_length:
                    self.send_header("Content-Length", str(4 * 1024 * 1024))
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(b"\x30" * 65536)
                except OSError:  # the client stopped reading: as it should
                    pass

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "streamed"])
def test_an_oversized_tsa_reply_is_refused_unread(unica, enrolled, tmp_path, declare):
    """The time-stamp reply is read bounded (unica.sign.cms.MAX_TSA_REPLY), not whole as pyHanko's
    own client does: one line, exit 1, nothing written."""
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"x")
    out = tmp_path / "huge.p7s"
    huge = _HugeTSA(declare)
    try:
        p = unica("sign", "cms", str(doc), "--key", enrolled.key_uri, "--tsa", huge.url, "--out", str(out))
    finally:
        huge.close()
    assert_one_line_error(p, "timestamp", "larger than")
    assert p.returncode == 1 and not out.exists()


def test_library_api_sign_cms(enrolled, soft_ca, tmp_path):
    from unica.sign import load_signer, sign_cms

    ident = load_signer(enrolled.key_uri)
    assert ident.cert == enrolled.cert
    assert [c.subject for c in ident.chain][:1] == [soft_ca.sub.subject]
    der = sign_cms(CONTENT, ident, detached=False)
    out = tmp_path / "lib.p7s"
    out.write_bytes(der)
    assert _openssl_verify(out, soft_ca).returncode == 0


def test_key_without_certificate(unica, enrolled, tmp_path):
    p = unica("token", "keygen", "--token", enrolled.token, "--label", "nocert", "--type", "ec-p256")
    assert p.returncode == 0, p.stderr
    doc = tmp_path / "d"
    doc.write_bytes(b"x")
    p = unica("sign", "cms", str(doc), "--key", f"pkcs11:token={enrolled.token};object=nocert")
    assert_one_line_error(p, "no certificate", "import-cert")


def test_unknown_token_and_key(unica, enrolled, tmp_path):
    doc = tmp_path / "d"
    doc.write_bytes(b"x")
    p = unica("sign", "cms", str(doc), "--key", "pkcs11:token=no-such-token;object=x")
    assert_one_line_error(p, "no-such-token")
    p = unica("sign", "cms", str(doc), "--key", f"pkcs11:token={enrolled.token};object=missing")
    assert_one_line_error(p, "no private key", "missing")


@pytest.mark.parametrize("detached", [True, False])
def test_pyhanko_validates_unica_cms(enrolled, soft_ca, detached):
    """The DER-level encoder's output is what pyHanko's CMS validator accepts (and re-encodes identically)."""
    import asyncio

    from asn1crypto import x509 as ax509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign.validation.generic_cms import async_validate_cms_signature, async_validate_detached_cms
    from pyhanko_certvalidator import ValidationContext

    from unica.sign import load_signer, sign_cms

    der = sign_cms(CONTENT, load_signer(enrolled.key_uri), detached=detached)
    ci = cms.ContentInfo.load(der)
    assert ci.dump(force=True) == der  # strict DER (sorted SETs): asn1crypto re-encodes to the same bytes
    root = ax509.Certificate.load(soft_ca.root.public_bytes(serialization.Encoding.DER))
    vc = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
    if detached:
        status = asyncio.run(async_validate_detached_cms(CONTENT, ci["content"], signer_validation_context=vc))
    else:
        status = asyncio.run(async_validate_cms_signature(ci["content"], validation_context=vc))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


@pytest.mark.parametrize("key_type", ["ed25519", "ec-p384"])
def test_software_key_with_cert_file(unica, soft_ca, tmp_path, key_type):
    from cryptography import x509

    from tests.token.pki import pem

    env = {"UNICA_PASSPHRASE": "software-key-passphrase"}
    uri = f"file:{tmp_path / 'k.pem'}"
    assert unica("key", "generate", uri, "--type", key_type, env=env).returncode == 0
    csr_file = tmp_path / "k.csr"
    p = unica("token", "csr", "--key", uri, "--subject", "CN=software signer,C=CN", "--out", str(csr_file), env=env)
    assert p.returncode == 0, p.stderr
    cert_file = tmp_path / "k.crt"
    cert_file.write_bytes(pem(soft_ca.issue(x509.load_pem_x509_csr(csr_file.read_bytes()))))
    doc = tmp_path / "doc.txt"
    doc.write_bytes(CONTENT)
    p = unica("sign", "cms", str(doc), "--key", uri, env=env)
    assert_one_line_error(p, "--cert")
    p = unica("sign", "cms", str(doc), "--key", uri, "--cert", str(cert_file), "--chain", str(soft_ca.files["chain"]),
              env=env)
    assert p.returncode == 0, p.stderr
    der = (tmp_path / "doc.txt.p7s").read_bytes()
    if key_type == "ed25519":
        # OpenSSL 3.0's CMS verify rejects Ed25519 ("eddsa_digest_signverify_init: invalid
        # digest"); pyHanko's validator checks it instead
        _pyhanko_validate_detached(der, soft_ca)
    else:
        v = _openssl_verify(tmp_path / "doc.txt.p7s", soft_ca, doc)
        assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
    sd, si = _signer_info(der)
    assert si["digest_algorithm"]["algorithm"].native == ("sha512" if key_type == "ed25519" else "sha384")


def _pyhanko_validate_detached(der: bytes, soft_ca, content: bytes = CONTENT) -> None:
    import asyncio

    from asn1crypto import x509 as ax509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
    from pyhanko_certvalidator import ValidationContext

    root = ax509.Certificate.load(soft_ca.root.public_bytes(serialization.Encoding.DER))
    vc = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
    status = asyncio.run(async_validate_detached_cms(content, cms.ContentInfo.load(der)["content"],
                                                     signer_validation_context=vc))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


def test_many_files_one_login_and_pem(unica, enrolled, soft_ca, tmp_path):
    docs = []
    for i in range(3):
        d = tmp_path / f"decl-{i}.txt"
        d.write_bytes(CONTENT + bytes([i]))
        docs.append(d)
    p = unica("sign", "cms", *map(str, docs), "--key", enrolled.key_uri, "--pem")
    assert p.returncode == 0, p.stderr
    for d in docs:
        v = _openssl_verify(Path(f"{d}.p7s"), soft_ca, d, inform="PEM")
        assert v.returncode == 0, v.stderr
    p = unica("sign", "cms", *map(str, docs), "--key", enrolled.key_uri, "--out", str(tmp_path / "x.p7s"))
    assert_one_line_error(p, "--out")
