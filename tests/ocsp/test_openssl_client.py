"""The running responder, queried by the real `openssl ocsp` client and plain HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import REVOKED_AT
from ocsppki import NOW, openssl_ocsp

MALFORMED = bytes.fromhex("3003 0a01 01")
UNAUTHORIZED = bytes.fromhex("3003 0a01 06")


def query(world, ca: str, leaf: str, *extra: str) -> subprocess.CompletedProcess:
    lf = world.leaves[leaf]
    return openssl_ocsp("-issuer", str(world.cas[ca].path), "-cert", str(lf.path), "-url", world.url + "/",
                        "-CAfile", str(world.cas[ca].path), "-resp_text", *extra)


def make_request(world, ca: str, leaf: str, hash_alg=hashes.SHA1(), nonce: bytes | None = None) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(world.leaves[leaf].cert, world.cas[ca].cert, hash_alg)
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


def post(world, body: bytes, path: str = "/", method: str = "POST") -> tuple:
    req = urllib.request.Request(world.url + path, data=body, method=method,
                                 headers={"Content-Type": "application/ocsp-request"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def get(world, path: str) -> tuple:
    try:
        with urllib.request.urlopen(world.url + path, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def assert_still_serving(world):
    assert get(world, "/healthz")[0] == 200
    p = query(world, "live", "live-good", "-nonce")
    assert p.returncode == 0 and ": good" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("ca", ["live", "pre", "cakey"])
def test_good_revoked_unknown(world, ca):
    nonce = "-no_nonce" if ca == "pre" else "-nonce"
    good = query(world, ca, f"{ca}-good", nonce)
    assert good.returncode == 0, good.stderr
    assert "Response verify OK" in good.stderr, good.stderr
    assert f"{world.leaves[f'{ca}-good'].path}: good" in good.stdout
    revoked = query(world, ca, f"{ca}-revoked", nonce)
    assert "Response verify OK" in revoked.stderr, revoked.stderr
    assert ": revoked" in revoked.stdout
    assert "Reason: keyCompromise" in revoked.stdout
    assert f"Revocation Time: {REVOKED_AT.strftime('%b %e %H:%M:%S %Y GMT')}" in revoked.stdout, revoked.stdout
    unknown = query(world, ca, f"{ca}-unknown", nonce)
    assert "Response verify OK" in unknown.stderr, unknown.stderr
    assert ": unknown" in unknown.stdout


@pytest.mark.parametrize("ca", ["live", "pre"])
def test_delegated_signer_is_included_and_accepted_with_vafile(world, ca):
    p = openssl_ocsp("-issuer", str(world.cas[ca].path), "-cert", str(world.leaves[f"{ca}-good"].path),
                     "-url", world.url + "/", "-VAfile", str(world.signers[ca].path), "-no_nonce", "-resp_text")
    assert p.returncode == 0 and "Response verify OK" in p.stderr, p.stderr
    assert "Responder Id: " in p.stdout  # by key hash
    assert f"OCSP signer {ca}" in p.stdout  # the signer certificate is in `certs`
    assert ": good" in p.stdout


def test_ca_key_signed_response_has_no_certs(world):
    resp = ocsp.load_der_ocsp_response(post(world, make_request(world, "cakey", "cakey-good"))[1])
    assert resp.certificates == []
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        world.cas["cakey"].key.public_key()).digest
    world.cas["cakey"].key.public_key().verify(resp.signature, resp.tbs_response_bytes,
                                               __import__("cryptography.hazmat.primitives.asymmetric.ec",
                                                          fromlist=["ECDSA"]).ECDSA(hashes.SHA256()))


def test_unknown_issuer_is_unauthorized(world):
    p = openssl_ocsp("-issuer", str(world.cas["stranger"].path), "-cert", str(world.leaves["stranger-good"].path),
                     "-url", world.url + "/", "-no_nonce")
    assert "unauthorized (6)" in p.stdout + p.stderr, p.stdout + p.stderr
    # wrong issuer cert for a served serial (name hash matches nothing): also unauthorized
    assert post(world, make_request(world, "stranger", "stranger-good"))[1] == UNAUTHORIZED


def test_nonce_echoed_in_live_mode(world):
    p = query(world, "live", "live-good", "-nonce")
    assert p.returncode == 0 and "WARNING: no nonce" not in p.stderr, p.stderr
    assert "OCSP Nonce" in p.stdout
    nonce = bytes(range(32))
    resp = ocsp.load_der_ocsp_response(post(world, make_request(world, "live", "live-good", nonce=nonce))[1])
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


def test_presigned_mode_does_not_echo_nonce(world):
    p = query(world, "pre", "pre-good", "-nonce")
    assert "WARNING: no nonce in response" in p.stderr, p.stderr
    assert ": good" in p.stdout


@pytest.mark.parametrize("size", [0, 33])
def test_nonce_length_outside_rfc8954_is_malformed(world, size):
    assert post(world, make_request(world, "live", "live-good", nonce=b"\x01" * size))[1] == MALFORMED


def test_sha256_cert_id(world):
    for ca in ("live", "pre"):
        resp = ocsp.load_der_ocsp_response(post(world, make_request(world, ca, f"{ca}-revoked",
                                                                    hash_alg=hashes.SHA256()))[1])
        assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert isinstance(resp.hash_algorithm, hashes.SHA256)


@pytest.mark.parametrize("ca", ["live", "pre"])
def test_get_with_caching_headers(world, ca, tmp_path):
    req = make_request(world, ca, f"{ca}-good")
    b64 = base64.b64encode(req).decode()
    for path in ("/" + urllib.parse.quote(b64, safe=""), "/" + b64.rstrip("="),
                 "/" + base64.urlsafe_b64encode(req).decode().rstrip("=")):
        status, body, headers = get(world, path)
        assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(body)
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        cc = headers["Cache-Control"]
        assert "public" in cc and "no-transform" in cc
        max_age = int(cc.split("max-age=")[1].split(",")[0])
        expected = (resp.next_update_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert abs(max_age - expected) < 5
        assert headers["ETag"].startswith('"')
        assert "GMT" in headers["Last-Modified"] and "GMT" in headers["Expires"]
    out = tmp_path / "resp.der"
    out.write_bytes(body)
    p = openssl_ocsp("-respin", str(out), "-issuer", str(world.cas[ca].path),
                     "-cert", str(world.leaves[f"{ca}-good"].path), "-CAfile", str(world.cas[ca].path), "-no_nonce")
    assert p.returncode == 0 and "Response verify OK" in p.stderr and ": good" in p.stdout, p.stderr
    if ca == "pre":  # the pre-signed bytes are served as stored: same ETag each time
        assert get(world, "/" + b64)[2]["ETag"] == headers["ETag"]


def test_post_is_not_cacheable(world):
    status, body, headers = post(world, make_request(world, "pre", "pre-good"))
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize("ca", ["live", "pre"])
def test_revocation_while_running_shows_at_once(world, ca):
    before = query(world, ca, f"{ca}-later", "-no_nonce")
    assert ": good" in before.stdout, before.stdout + before.stderr
    at = NOW - dt.timedelta(minutes=1)
    world.source.revoke(ca, world.leaves[f"{ca}-later"].cert.serial_number, at, x509.ReasonFlags.superseded)
    after = query(world, ca, f"{ca}-later", "-no_nonce")
    assert ": revoked" in after.stdout and "Reason: superseded" in after.stdout, after.stdout
    assert "Response verify OK" in after.stderr


def test_garbage_truncated_and_random_bytes(world):
    good = make_request(world, "live", "live-good")
    for body in (b"", b"\x00", good[:-3], good[:10], b"\x30\x80\x00\x00", bytes(range(256)) * 4,
                 b"\x30\x84\xff\xff\xff\xff", good + b"\x00"):
        status, resp, _ = post(world, body)
        assert status == 200 and resp == MALFORMED, body[:20]
    for path in ("/!!!not-base64***", "/%ZZ", "/" + base64.b64encode(b"not der").decode(), "/====", "/a"):
        status, resp, _ = get(world, path)
        assert status == 200 and resp == MALFORMED, path
    assert_still_serving(world)


def test_a_request_for_many_certificates(world, tmp_path):
    serials = [str(1000 + i) for i in range(1000)]
    args = ["-issuer", str(world.cas["live"].path)]
    for s in serials:
        args += ["-serial", s]
    big = tmp_path / "big.der"
    p = openssl_ocsp(*args, "-no_nonce", "-reqout", str(big))
    assert p.returncode == 0, p.stderr
    status, _, _ = post(world, big.read_bytes())
    assert status == 413  # 1,000 CertIDs are far over the body limit
    two = tmp_path / "two.der"
    openssl_ocsp(*args[:6], "-no_nonce", "-reqout", str(two))
    status, body, _ = post(world, two.read_bytes())
    assert status == 200 and body == MALFORMED  # RFC 5019: one certificate per request
    status, body, _ = get(world, "/" + base64.b64encode(big.read_bytes()).decode())
    assert 400 <= status < 500 or body == MALFORMED
    assert_still_serving(world)


def test_oversized_body_wrong_method_and_path(world):
    assert post(world, b"\x30" * 100_000)[0] == 413
    assert post(world, b"", method="PUT")[0] == 405
    assert post(world, b"", method="DELETE")[0] == 405
    assert get(world, "/elsewhere/x")[0] == 200  # a path under "/" is a GET request: malformed
    assert post(world, b"\x30\x03\x02\x01\x01", path="/")[1] == MALFORMED
    assert_still_serving(world)


def test_healthz(world):
    status, body, _ = get(world, "/healthz")
    assert status == 200 and body == b"ok\n"
