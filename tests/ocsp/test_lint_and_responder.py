"""pkilint on the responses, and the responder's decisions without HTTP."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import REVOKED_AT
from ocsppki import NOW, issue, make_ca
from unica.errors import ConfigurationError
from unica.ocsp import (GOOD, CertStatus, InMemoryPresignedStore, InMemoryStatusSource, Presigner, Responder,
                        ResponseSigner, ResponseStatus, ServedCA, parse_request)
from unica.ocsp.request import MalformedRequest, decode_get_path


def req_der(world, ca, leaf, nonce=None, hash_alg=hashes.SHA1()):
    b = ocsp.OCSPRequestBuilder().add_certificate(world.leaves[leaf].cert, world.cas[ca].cert, hash_alg)
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("ca", ["live", "pre", "cakey"])
@pytest.mark.parametrize("kind", ["good", "revoked", "unknown"])
def test_pkilint_finds_nothing(world, ca, kind, tmp_path):
    answer = world.responder.respond(req_der(world, ca, f"{ca}-{kind}", nonce=b"n" * 16))
    assert answer.status == ResponseStatus.successful
    path = tmp_path / "resp.der"
    path.write_bytes(answer.body)
    p = subprocess.run(["lint_ocsp_response", "lint", "-s", "WARNING", str(path)], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def test_response_values(world):
    answer = world.responder.respond(req_der(world, "live", "live-revoked", nonce=b"x" * 20))
    r = ocsp.load_der_ocsp_response(answer.body)
    assert r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert r.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert r.revocation_time_utc == REVOKED_AT
    assert r.revocation_reason == x509.ReasonFlags.key_compromise
    assert r.serial_number == world.leaves["live-revoked"].cert.serial_number
    assert r.next_update_utc - r.this_update_utc == dt.timedelta(minutes=5)
    assert r.certificates == [world.signers["live"].cert]
    assert answer.cacheable is None  # a nonce answer is not cacheable


def test_presigned_without_signer_is_unauthorized_on_miss(world):
    ca = ServedCA("pre", world.cas["pre"].cert, "presigned")  # the server holds no key at all
    responder = Responder([ca], None, world.store)
    hit = responder.respond(req_der(world, "pre", "pre-good"))
    assert hit.status == ResponseStatus.successful
    assert hit.body == world.store.get("pre", world.leaves["pre-good"].cert.serial_number).der
    assert responder.respond(req_der(world, "pre", "pre-unknown")).status == ResponseStatus.unauthorized
    assert responder.respond(req_der(world, "pre", "pre-good", hash_alg=hashes.SHA256())).status == \
        ResponseStatus.unauthorized


def test_presigned_refresh_at_half_life_and_stale_entries(tmp_path):
    ca = make_ca(tmp_path, "Refresh CA")
    signer = issue(tmp_path, ca, "Refresh signer", ocsp_signer=True)
    leaf = issue(tmp_path, ca, "Refresh leaf")
    clock = [NOW]
    source = InMemoryStatusSource()
    source.issue("r", leaf.cert.serial_number)
    store = InMemoryPresignedStore()
    served = ServedCA("r", ca.cert, "presigned", ResponseSigner(ca.cert, signer.cert, signer.key),
                      presigned_validity=dt.timedelta(days=4))
    pres = Presigner([served], source, store, clock=lambda: clock[0])
    assert pres.presign_all() == 1
    first = store.get("r", leaf.cert.serial_number)
    clock[0] = NOW + dt.timedelta(days=1)
    assert pres.refresh_due() == 0
    clock[0] = NOW + dt.timedelta(days=2, seconds=1)
    assert pres.refresh_due() == 1
    assert store.get("r", leaf.cert.serial_number).this_update == clock[0] != first.this_update
    # an expired stored response is never served: the responder signs live (it has the key here)
    responder = Responder([served], source, store, clock=lambda: clock[0])
    clock[0] = NOW + dt.timedelta(days=30)
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf.cert, ca.cert, hashes.SHA1()).build()
    answer = responder.respond(req.public_bytes(serialization.Encoding.DER))
    assert ocsp.load_der_ocsp_response(answer.body).this_update_utc == clock[0]


def test_health_fails_when_signer_expired(world):
    clock = lambda: NOW + dt.timedelta(days=400)  # noqa: E731  (the signer is valid 90 days)
    served = ServedCA("live", world.cas["live"].cert, "live",
                      ResponseSigner(world.cas["live"].cert, world.signers["live"].cert, world.signers["live"].key))
    responder = Responder([served], world.source, clock=clock)
    assert not responder.healthy()
    assert responder.respond(req_der(world, "live", "live-good")).status == ResponseStatus.tryLater


def test_configuration_errors(world, tmp_path):
    with pytest.raises(ConfigurationError, match="no OCSP signing key"):
        ServedCA("x", world.cas["live"].cert, "live")
    with pytest.raises(ConfigurationError, match="not live or presigned"):
        ServedCA("x", world.cas["live"].cert, "cached")
    with pytest.raises(ConfigurationError, match="does not match"):
        ResponseSigner(world.cas["live"].cert, world.signers["live"].cert, world.cas["live"].key)
    with pytest.raises(ConfigurationError, match="OCSPSigning"):
        leaf = world.leaves["live-good"]
        ResponseSigner(world.cas["live"].cert, leaf.cert, leaf.key)
    with pytest.raises(ConfigurationError, match="not issued by"):
        ResponseSigner(world.cas["pre"].cert, world.signers["live"].cert, world.signers["live"].key)
    with pytest.raises(ConfigurationError, match="no response store"):
        Responder([ServedCA("p", world.cas["pre"].cert, "presigned")])
    with pytest.raises(ConfigurationError, match="same name and key"):
        c = world.cas["live"].cert
        Responder([ServedCA("a", c, "presigned"), ServedCA("b", c, "presigned")], store=InMemoryPresignedStore())


def test_parse_request_fields(world):
    der = req_der(world, "live", "live-good", nonce=b"abc")
    info = parse_request(der)
    assert info.cert_id.hash_algorithm == "sha1"
    assert info.cert_id.serial == world.leaves["live-good"].cert.serial_number
    assert info.nonce == b"\x04\x03abc"
    with pytest.raises(MalformedRequest, match="over the limit"):
        parse_request(b"\x30" * 9000)
    with pytest.raises(MalformedRequest, match="not base64"):
        decode_get_path(b"/***")


def test_cert_status_values():
    with pytest.raises(ValueError):
        CertStatus("good", NOW)
    with pytest.raises(ValueError):
        CertStatus("revoked")
    with pytest.raises(ValueError):
        CertStatus("expired")
    assert GOOD.der() == b"\x80\x00"


def test_presigned_with_live_nonce_signs_nonce_requests_live(world):
    pre = world.cas["pre"]
    served = ServedCA("pre", pre.cert, "presigned",
                      ResponseSigner(pre.cert, world.signers["pre"].cert, world.signers["pre"].key), live_nonce=True)
    responder = Responder([served], world.source, world.store)
    stored = world.store.get("pre", world.leaves["pre-good"].cert.serial_number).der
    assert responder.respond(req_der(world, "pre", "pre-good")).body == stored
    answer = responder.respond(req_der(world, "pre", "pre-good", nonce=b"z" * 16))
    r = ocsp.load_der_ocsp_response(answer.body)
    assert answer.body != stored and answer.cacheable is None
    assert r.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"z" * 16
    assert r.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_unspecified_reason_is_omitted_and_remove_from_crl_refused():
    from unica.ocsp.response import CertStatus as CS
    assert CS.revoked(NOW, x509.ReasonFlags.unspecified).der() == CS.revoked(NOW).der()
    with pytest.raises(ValueError, match="usable in OCSP"):
        CS.revoked(NOW, x509.ReasonFlags.remove_from_crl)
