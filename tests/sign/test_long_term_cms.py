"""CAdES B-T / B-LT made with a SoftHSM2 token key (`unica sign cms --level`), with unica's own
TSA (`unica tsa serve`, found through UNICA_TSA_URL) and an independent one (`openssl ts
-reply`). B-LT's validation material (EN 319 122-1: SignedData.certificates and .crls, OCSP
responses as RFC 5940 id-ri-ocsp-response) comes from the CA's real OCSP responder and CRL URL.
Checked with `openssl cms -verify`, `openssl ts -verify` and `unica verify cms --offline`."""

from __future__ import annotations

import json

import pytest
from asn1crypto import cms, tsp

from tests.conftest import assert_one_line_error
from tests.token.pki import run

CONTENT = "报关单 2026 — long-term declaration\n".encode() * 40


@pytest.fixture(scope="module")
def signer(lt):
    return lt.signer()


@pytest.fixture
def doc(tmp_path):
    p = tmp_path / "declaration.txt"
    p.write_bytes(CONTENT)
    return p


def _sd(path):
    ci = cms.ContentInfo.load(path.read_bytes())
    return ci["content"]


def _token(sd) -> cms.ContentInfo:
    (si,) = sd["signer_infos"]
    (attr,) = [a for a in si["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    return attr["values"][0]


def _openssl_cms(lt, p7s, data):
    # no -purpose any: the enterprise-sign profile is what OpenSSL's S/MIME signing purpose accepts
    return run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", p7s, "-content", data,
               "-CAfile", lt.root_pem, "-out", "/dev/null", check=False)


def _unica_verify(lt, p7s, data, *args):
    p = lt.run("verify", "cms", str(p7s), "--data", str(data), "--trust", str(lt.root_pem), "--json", *args)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip().startswith("{") else p.stdout + p.stderr)


@pytest.mark.parametrize("tsa_kind", ["unica", "openssl"])
def test_cades_b_t(lt, signer, doc, tmp_path, tsa_kind):
    out = tmp_path / "bt.p7s"
    if tsa_kind == "unica":  # the default TSA: UNICA_TSA_URL
        p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T", "--out", str(out),
                   env={"UNICA_TSA_URL": lt.unica_tsa().url})
    else:
        p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T", "--out", str(out),
                   "--tsa", lt.tsa("long").url)
    assert p.returncode == 0, p.stderr
    v = _openssl_cms(lt, out, doc)
    assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
    sd = _sd(out)
    token = _token(sd)
    eci = token["content"]["encap_content_info"]
    assert eci["content_type"].dotted == "1.2.840.113549.1.9.16.1.4"
    tst = tsp.TSTInfo.load(bytes(eci["content"]))
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    # openssl ts -verify: the token is over the signature value
    import hashlib

    (si,) = sd["signer_infos"]
    digest = hashlib.sha256(si["signature"].native).hexdigest()
    tok = tmp_path / "token.der"
    tok.write_bytes(token.dump())
    v = run("openssl", "ts", "-verify", "-token_in", "-in", tok, "-digest", digest, "-CAfile", lt.root_pem,
            check=False)
    assert v.returncode == 0 and "Verification: OK" in v.stdout, v.stdout + v.stderr
    code, rep = _unica_verify(lt, out, doc)
    assert code == 0, rep
    assert rep["format"] == "CAdES-B-T" and rep["signing_time_source"] == "timestamp", rep


def test_cades_b_lt_carries_validation_material_and_verifies_offline(lt, signer, doc, tmp_path):
    out = tmp_path / "blt.p7s"
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-LT", "--out", str(out),
               env={"UNICA_TSA_URL": lt.unica_tsa().url})
    assert p.returncode == 0, p.stderr
    sd = _sd(out)
    certs = {c.chosen.subject.native["common_name"] for c in sd["certificates"]}
    assert {"张三", "LT Test Root", "TSA tsa1"} <= certs, certs  # signer's and TSA's paths
    kinds = [c.name for c in sd["crls"]]
    ocsp = [c.chosen for c in sd["crls"] if c.name == "other"]
    assert ocsp and all(o["other_rev_info_format"].dotted == "1.3.6.1.5.5.7.16.2" for o in ocsp), kinds
    assert len(ocsp) + kinds.count("crl") >= 2, kinds  # the signer's and the TSA's certificate
    v = _openssl_cms(lt, out, doc)
    assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
    code, rep = _unica_verify(lt, out, doc, "--offline")  # hard-fail, from the embedded material alone
    assert code == 0, rep
    assert rep["checks"]["embedded_revocation_data"], rep
    assert rep["timestamp"]["indication"] == "TOTAL-PASSED", rep["timestamp"]
    # one byte of the content changed: openssl and unica refuse it
    doc.write_bytes(CONTENT[:-2] + b"X\n")
    assert _openssl_cms(lt, out, doc).returncode != 0
    code, rep = _unica_verify(lt, out, doc, "--offline")
    assert code == 10 and rep["sub_indication"] == "HASH_FAILURE", rep


def test_levels_need_a_tsa_and_cms_has_no_lta(lt, signer, doc, tmp_path):
    before = set(tmp_path.iterdir())
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T")
    assert_one_line_error(p, "UNICA_TSA_URL", "--tsa")
    assert p.returncode == 2
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-LTA", "--tsa", "http://127.0.0.1:1/")
    assert_one_line_error(p, "B-LTA")
    assert p.returncode == 2
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-B", "--tsa", "http://127.0.0.1:1/")
    assert_one_line_error(p, "B-B")
    assert p.returncode == 2
    assert set(tmp_path.iterdir()) == before  # nothing written
    # no --level: B-B as before, even with UNICA_TSA_URL set (existing invocations keep their meaning)
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--out", str(tmp_path / "bb.p7s"),
               env={"UNICA_TSA_URL": "http://127.0.0.1:1/"})
    assert p.returncode == 0, p.stderr
    (si,) = _sd(tmp_path / "bb.p7s")["signer_infos"]
    assert si["unsigned_attrs"].native is None


def _revoke(lt, signer):
    import time

    time.sleep(1.1)  # after the time-stamp's genTime (1 s accuracy)
    lt.ok("cert", "revoke", signer.serial_hex, "--ca", "root", "--reason", "keyCompromise")
    lt.publish_crl()


def test_signer_revoked_after_the_signature_time_stamp(lt, doc, tmp_path):
    """CAdES B-T: the signature time-stamp is a proof of existence before the revocation
    (TOTAL-PASSED); the same signer's B-B signature has none (INDETERMINATE/REVOKED_NO_POE)."""
    signer = lt.signer()
    bt, bb = tmp_path / "bt.p7s", tmp_path / "bb.p7s"
    lt.ok("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T", "--out", str(bt),
          env={"UNICA_TSA_URL": lt.unica_tsa().url})
    lt.ok("sign", "cms", str(doc), "--key", signer.key_uri, "--out", str(bb))
    _revoke(lt, signer)
    code, rep = _unica_verify(lt, bt, doc)
    assert code == 0, rep
    assert rep["signing_time_source"] == "timestamp"
    # the report lists the time-stamp: its genTime, its TSA, validated, and the proof of
    # existence it gave to the signature (the time the signer was validated at)
    (ts,) = rep["timestamps"]
    assert ts["kind"] == "signature time-stamp" and ts["indication"] == "TOTAL-PASSED", ts
    assert "CN=TSA tsa1" in ts["tsa"], ts
    assert ts["proof_of_existence"] == ts["gen_time"] == rep["signing_time"], (ts, rep["signing_time"])
    assert ts["proof_of_existence_for"] == ["signature"], ts
    assert ts["validated_at"] >= ts["gen_time"]  # its TSA certificate: now (no later proof)
    p = lt.run("verify", "cms", str(bt), "--data", str(doc), "--trust", str(lt.root_pem))  # the human form
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Time-stamps (proofs of existence):" in p.stdout, p.stdout
    assert f"- signature time-stamp: genTime {ts['gen_time']}, TSA {ts['tsa']}: TOTAL-PASSED" in p.stdout, p.stdout
    assert f"proof of existence at {ts['gen_time']} for: signature" in p.stdout, p.stdout
    code, rep = _unica_verify(lt, bb, doc)
    assert code == 20 and rep["sub_indication"] == "REVOKED_NO_POE", rep
    assert rep["timestamps"] == [], rep


def _with_token(der: bytes, token: cms.ContentInfo) -> bytes:
    # each level re-set from the bottom up: dump(force=True) re-encodes every nested value of
    # the whole tree again at each level (minutes on a CMS with a token inside)
    ci = cms.ContentInfo.load(der)
    sd = ci["content"]
    si = sd["signer_infos"][0]
    si["unsigned_attrs"] = cms.CMSAttributes([{"type": "signature_time_stamp_token", "values": [token]}])
    sd["signer_infos"] = cms.SignerInfos([si])
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


def test_a_foreign_or_tampered_token_gives_no_proof(lt, signer, doc, tmp_path):
    """A token over another signature's value, or one whose TSTInfo was altered, is reported
    invalid and gives no proof of existence (the signature is then judged at the current time)."""
    a, b = tmp_path / "a.p7s", tmp_path / "b.p7s"
    for out in (a, b):
        lt.ok("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T", "--out", str(out),
              env={"UNICA_TSA_URL": lt.unica_tsa().url})
    foreign = tmp_path / "foreign.p7s"
    foreign.write_bytes(_with_token(a.read_bytes(), _token(_sd(b))))
    code, rep = _unica_verify(lt, foreign, doc)
    assert rep["checks"]["signature_timestamp"] == "invalid", rep
    assert any("imprint" in m for m in rep["messages"]), rep["messages"]
    assert rep["signing_time_source"] != "timestamp" and rep["format"] == "CAdES-B-B", rep
    token = _token(_sd(a)).dump()
    eci = cms.ContentInfo.load(token)["content"]["encap_content_info"]
    tst = bytes(eci["content"])
    gen = tsp.TSTInfo.load(tst)["gen_time"].dump()
    i = token.index(gen)
    forged = bytearray(token)
    forged[i + len(gen) - 2] ^= 0x01  # a digit of genTime (the byte before the 'Z')
    tampered = tmp_path / "tampered.p7s"
    tampered.write_bytes(_with_token(a.read_bytes(), cms.ContentInfo.load(bytes(forged))))
    code, rep = _unica_verify(lt, tampered, doc)
    assert rep["checks"]["signature_timestamp"] == "invalid", rep
    assert rep["timestamp"]["indication"] == "TOTAL-FAILED", rep["timestamp"]
    assert rep["timestamp"]["sub_indication"] == "HASH_FAILURE", rep["timestamp"]
    (ts,) = rep["timestamps"]  # listed, and proving nothing
    assert ts["indication"] == "TOTAL-FAILED" and ts["sub_indication"] == "HASH_FAILURE", ts
    assert ts.get("proof_of_existence") is None and ts["proof_of_existence_for"] == [], ts


def test_a_tsa_certificate_without_the_time_stamping_eku_gives_no_proof(lt, signer, doc, tmp_path):
    out = tmp_path / "no-eku.p7s"
    p = lt.run("sign", "cms", str(doc), "--key", signer.key_uri, "--level", "B-T", "--out", str(out),
               "--tsa", lt.tsa_without_eku().url)
    assert p.returncode == 0, p.stderr  # B-T does not judge the TSA; the verifier does
    code, rep = _unica_verify(lt, out, doc)
    assert rep["checks"]["signature_timestamp"] == "invalid", rep
    ts = rep["timestamp"]
    assert ts["sub_indication"] == "CHAIN_CONSTRAINTS_FAILURE", ts
    assert any("timestamping" in m for m in ts["messages"]), ts["messages"]
    assert rep["signing_time_source"] != "timestamp", rep
