"""``unica verify``: exit codes, human output and --json, one-line errors."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import assert_one_line_error
from tests.verify.pki import DAY, NOW, PKI, blank_pdf, make_crl, make_ocsp, pyhanko_sign, pyhanko_sign_pdf


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify-cli")
    pki = PKI()
    (d / "root.pem").write_bytes(pki.root.pem)
    (d / "inter.pem").write_bytes(pki.inter.pem)
    (d / "leaf.pem").write_bytes(pki.signer.pem)
    (d / "other-root.pem").write_bytes(PKI().root.pem)
    crl = make_crl(pki.inter, [])
    (d / "inter.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    (d / "root.crl").write_bytes(make_crl(pki.root).public_bytes(serialization.Encoding.PEM))
    victim = pki.leaf("Revoked Ltd", ku=dict(digital_signature=True))
    (d / "revoked.pem").write_bytes(victim.pem)
    (d / "revoked.crl").write_bytes(make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY)], number=2)
                                    .public_bytes(serialization.Encoding.DER))
    # an OCSP answer is used for a certificate that names an OCSP responder (AIA)
    ocsp_leaf = pki.leaf("Ocsp Cli Ltd", ku=dict(digital_signature=True), ocsp_url="http://127.0.0.1:9/ocsp")
    (d / "ocsp-leaf.pem").write_bytes(ocsp_leaf.pem)
    (d / "leaf.ocsp").write_bytes(make_ocsp(ocsp_leaf.cert, pki.inter, pki.responder))
    data = b"customs declaration 42"
    (d / "data.bin").write_bytes(data)
    (d / "sig.p7s").write_bytes(pyhanko_sign(pki, pki.signer, data))
    (d / "signed.pdf").write_bytes(pyhanko_sign_pdf(pki, pki.signer, blank_pdf()))
    (d / "garbage.p7s").write_bytes(b"\x30\x03garbage")
    return d


def _args(d, *extra):
    return [*extra, "--trust", str(d / "root.pem"), "--untrusted", str(d / "inter.pem"), "--offline"]


def _crls(d):
    """CRLs for every certificate below the root: what the default (hard-fail) needs offline."""
    return ["--crl", str(d / "inter.crl"), "--crl", str(d / "root.crl")]


def test_cert_passes_json(unica, files):
    p = unica("verify", "cert", str(files / "leaf.pem"), *_args(files), "--crl", str(files / "inter.crl"),
              "--crl", str(files / "root.crl"), "--revocation", "hard-fail", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["indication"] == "TOTAL-PASSED" and rep.get("sub_indication") is None  # left out, never null
    assert rep["signer"]["uscc"] == "91110000600037341L"
    assert len(rep["path"]) == 3 and rep["revocation"][0]["source"] == "CRL"


def test_cert_with_ocsp_response_file(unica, files):
    p = unica("verify", "cert", str(files / "ocsp-leaf.pem"), *_args(files), "--ocsp-response", str(files / "leaf.ocsp"),
              "--crl", str(files / "root.crl"), "--revocation", "hard-fail", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    assert [e["source"] for e in rep["revocation"]] == ["OCSP", "CRL"]
    assert rep["revocation"][0]["issuer"].startswith("keyHash:")


def test_cert_revoked_exit_10(unica, files):
    p = unica("verify", "cert", str(files / "revoked.pem"), *_args(files), "--crl", str(files / "revoked.crl"),
              "--crl", str(files / "root.crl"))
    assert p.returncode == 10, p.stdout + p.stderr
    assert "TOTAL-FAILED / REVOKED" in p.stdout


def test_cert_wrong_trust_exit_20(unica, files):
    p = unica("verify", "cert", str(files / "leaf.pem"), "--trust", str(files / "other-root.pem"),
              "--untrusted", str(files / "inter.pem"), "--offline")
    assert p.returncode == 20
    assert "NO_CERTIFICATE_CHAIN_FOUND" in p.stdout


def test_cert_hard_fail_without_data_exit_20(unica, files):
    p = unica("verify", "cert", str(files / "leaf.pem"), *_args(files), "--revocation", "hard-fail", "--json")
    assert p.returncode == 20
    assert json.loads(p.stdout)["sub_indication"] == "TRY_LATER"


def test_cert_point_in_time(unica, files):
    p = unica("verify", "cert", str(files / "leaf.pem"), *_args(files), "--revocation", "off",
              "--at", "2001-01-01T00:00:00Z", "--json")
    assert p.returncode == 10
    assert json.loads(p.stdout)["sub_indication"] == "NOT_YET_VALID"


def test_cms_detached(unica, files):
    p = unica("verify", "cms", str(files / "sig.p7s"), "--data", str(files / "data.bin"), *_args(files),
              *_crls(files))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "TOTAL-PASSED" in p.stdout and "timestamp" in p.stdout
    tampered = files / "data2.bin"
    tampered.write_bytes(b"customs declaration 43")
    p = unica("verify", "cms", str(files / "sig.p7s"), "--data", str(tampered), *_args(files), *_crls(files),
              "--json")
    assert p.returncode == 10
    assert json.loads(p.stdout)["sub_indication"] == "HASH_FAILURE"


def test_pdf(unica, files):
    p = unica("verify", "pdf", str(files / "signed.pdf"), *_args(files), *_crls(files), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    assert rep["indication"] == "TOTAL-PASSED" and rep["signatures"][0]["field_name"] == "Signature1"


def test_unparsable_input_is_one_line_error(unica, files):
    p = unica("verify", "cms", str(files / "garbage.p7s"), *_args(files))
    assert_one_line_error(p, "garbage.p7s")
    p = unica("verify", "cert", str(files / "data.bin"), *_args(files))
    assert_one_line_error(p, "data.bin")
    p = unica("verify", "cert", str(files / "missing.pem"), *_args(files))
    assert_one_line_error(p, "missing.pem")
    p = unica("verify", "cert", str(files / "leaf.pem"), "--offline")
    assert_one_line_error(p, "--trust")
