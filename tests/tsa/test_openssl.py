"""openssl ts as the client of the real ``unica tsa serve``: the query made by ``openssl ts
-query``, sent with curl, the reply printed by ``openssl ts -reply -text`` and verified by ``openssl
ts -verify`` against the root; the unit certificate is pkilint-clean."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.tsa.conftest import POLICY

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None,
                                reason="needs openssl and curl")


def _openssl(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)


def _curl(url, query, out) -> str:
    p = subprocess.run(["curl", "-sS", "-o", str(out), "-w", "%{http_code} %{content_type}",
                        "-H", "Content-Type: application/timestamp-query", "--data-binary", f"@{query}", url],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("nonce", ["nonce", "-no_nonce"])  # a nonce is openssl's default
@pytest.mark.parametrize("digest", ["-sha256", "-sha512"])
def test_openssl_query_reply_verify(tsa_home, server, tmp_path, nonce, digest):
    data = tmp_path / "declaration.xml"
    data.write_bytes("<报关单 号='223320261129000001'/>\n".encode() * 50)
    query, reply = tmp_path / "q.tsq", tmp_path / "r.tsr"
    assert _openssl("ts", "-query", "-data", data, digest, "-cert", *([nonce] if nonce != "nonce" else []),
                    "-out", query).returncode == 0
    assert _curl(server.url, query, reply) == "200 application/timestamp-reply"

    text = _openssl("ts", "-reply", "-in", reply, "-text")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Status: Granted." in out
    assert f"Policy OID: {POLICY}" in out
    assert f"Hash Algorithm: {digest[1:]}" in out
    assert "Accuracy: 0x01 seconds" in out
    assert "Ordering: no" in out
    assert "TSA: DirName:" in out and "CN=TSA tsa1" in out
    serial = re.search(r"Serial number: 0x([0-9A-F]+)", out).group(1)
    assert 64 <= int(serial, 16).bit_length() <= 160
    qtext = _openssl("ts", "-query", "-in", query, "-text").stdout
    if nonce == "nonce":
        qn = re.search(r"Nonce: (0x[0-9A-F]+)", qtext).group(1)
        assert re.search(r"Nonce: (0x[0-9A-F]+)", out).group(1) == qn
    else:
        assert "Nonce: unspecified" in out

    v = _openssl("ts", "-verify", "-data", data, "-in", reply, "-CAfile", tsa_home.root_pem,
                 "-untrusted", tsa_home.unit_pem)
    assert v.returncode == 0 and "Verification: OK" in v.stdout, v.stdout + v.stderr
    # the token names the TSA certificate (certReq): it verifies without -untrusted too
    v = _openssl("ts", "-verify", "-data", data, "-in", reply, "-CAfile", tsa_home.root_pem)
    assert v.returncode == 0, v.stdout + v.stderr
    # another document does not verify against this token
    other = tmp_path / "other.xml"
    other.write_bytes(b"<other/>")
    assert _openssl("ts", "-verify", "-data", other, "-in", reply, "-CAfile", tsa_home.root_pem,
                    "-untrusted", tsa_home.unit_pem).returncode != 0


def test_openssl_without_cert_req_needs_the_unit_certificate(tsa_home, server, tmp_path):
    data = tmp_path / "d.bin"
    data.write_bytes(b"\x00" * 1000)
    query, reply = tmp_path / "q.tsq", tmp_path / "r.tsr"
    assert _openssl("ts", "-query", "-data", data, "-sha384", "-out", query).returncode == 0
    assert _curl(server.url, query, reply).startswith("200")
    assert _openssl("ts", "-verify", "-data", data, "-in", reply, "-CAfile", tsa_home.root_pem).returncode != 0
    v = _openssl("ts", "-verify", "-data", data, "-in", reply, "-CAfile", tsa_home.root_pem,
                 "-untrusted", tsa_home.unit_pem)
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.mark.skipif(shutil.which("lint_pkix_cert") is None, reason="needs pkilint")
def test_unit_certificate_is_pkilint_clean_and_timestamping_only(tsa_home):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    p = subprocess.run(["lint_pkix_cert", "lint", "-s", "WARNING", str(tsa_home.unit_pem)], capture_output=True,
                       text=True)
    assert p.stdout.strip() == "", p.stdout
    cert = x509.load_pem_x509_certificate(tsa_home.unit_pem.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


def test_tls(tsa_home, tmp_path):
    """--tls-cert/--tls-key: the same service over HTTPS (curl trusts the server certificate)."""
    from tests.tsa.conftest import Server

    cert, key = tmp_path / "web.pem", tmp_path / "web.key"
    assert _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key,
                    "-out", cert).returncode == 0
    data, query, reply = tmp_path / "d", tmp_path / "q.tsq", tmp_path / "r.tsr"
    data.write_bytes(b"over tls")
    assert _openssl("ts", "-query", "-data", data, "-sha256", "-cert", "-out", query).returncode == 0
    with Server(tsa_home, "--unit", "tsa1", "--tls-cert", str(cert), "--tls-key", str(key)) as s:
        assert s.url.startswith("https://127.0.0.1:")
        p = subprocess.run(["curl", "-sS", "--cacert", str(cert), "-o", str(reply), "-w", "%{http_code}",
                            "-H", "Content-Type: application/timestamp-query", "--data-binary", f"@{query}", s.url],
                           capture_output=True, text=True, timeout=60)
        assert p.stdout == "200", p.stderr
    v = _openssl("ts", "-verify", "-data", data, "-in", reply, "-CAfile", tsa_home.root_pem)
    assert v.returncode == 0, v.stdout + v.stderr
