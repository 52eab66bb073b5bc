"""PAdES B-T / B-LT / B-LTA made with a SoftHSM2 token key (`unica sign pdf --level`), and
`unica timestamp refresh`, against an independent TSA (`openssl ts -reply` over HTTP, its
certificate issued by unica under a timestamping profile). The validation material comes from
the CA's real OCSP responder (`unica ocsp serve`) and its CRL URL, both on 127.0.0.1.

Checked by peers unica does not contain: pyHanko's PAdES validation (the DSS, the document
time-stamps), poppler's pdfsig, and by `unica verify pdf`.
"""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from tests.conftest import assert_one_line_error
from tests.token.pki import minimal_pdf


@pytest.fixture(scope="module")
def signer(lt):
    return lt.signer()


@pytest.fixture
def pdf(tmp_path):
    p = tmp_path / "in.pdf"
    p.write_bytes(minimal_pdf("long-term declaration"))
    return p


def _reader(path):
    from pyhanko.pdf_utils.reader import PdfFileReader

    return PdfFileReader(io.BytesIO(path.read_bytes()))


def _pyhanko_offline(lt, path):
    """pyHanko's validation of every signature and document time-stamp, offline, hard-fail, from
    the document's DSS alone: [(type, status)]."""
    from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    r = _reader(path)
    vc = lambda: DocumentSecurityStore.read_dss(r).as_validation_context(  # noqa: E731
        {"trust_roots": [_root_asn1(lt)], "allow_fetching": False, "revocation_mode": "hard-fail"})
    out = []
    for emb in r.embedded_signatures:
        if emb.sig_object_type == "/DocTimeStamp":
            out.append(("ts", validate_pdf_timestamp(emb, validation_context=vc())))
        else:
            out.append(("sig", validate_pdf_signature(emb, vc(), ts_validation_context=vc())))
    return out


def _dss(path):
    dss = _reader(path).root["/DSS"]
    return {k: len(dss.get(k, ())) for k in ("/Certs", "/OCSPs", "/CRLs")}


def _verify(lt, path, *args):
    p = lt.run("verify", "pdf", str(path), "--trust", str(lt.root_pem), "--json", *args)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip().startswith("{") else p.stdout + p.stderr)


@pytest.mark.parametrize("tsa_kind", ["unica", "openssl"])
def test_b_lta_valid_in_pyhanko_pdfsig_and_unica(lt, signer, pdf, tmp_path, tsa_kind):
    """B-LTA with unica's own TSA (by default: UNICA_TSA_URL, no --tsa) and with an independent one."""
    out = tmp_path / "lta.pdf"
    if tsa_kind == "unica":
        p = lt.run("sign", "pdf", str(pdf), str(out), "--key", signer.key_uri, "--level", "B-LTA",
                   env={"UNICA_TSA_URL": lt.unica_tsa().url})
    else:
        p = lt.run("sign", "pdf", str(pdf), str(out), "--key", signer.key_uri, "--level", "B-LTA",
                   "--tsa", lt.tsa("long").url)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes().startswith(pdf.read_bytes())  # incremental updates only
    r = _reader(out)
    kinds = [s.sig_object_type for s in r.embedded_signatures]
    assert kinds == ["/Sig", "/DocTimeStamp"], kinds
    dss = _dss(out)
    assert dss["/Certs"] >= 2 and dss["/OCSPs"] + dss["/CRLs"] >= 2, dss  # signer's and TSA's material
    # pyHanko, offline and hard-fail: the DSS alone carries what the signature and both
    # time-stamps need
    (_, sig_status), (_, ts_status) = _pyhanko_offline(lt, out)
    assert sig_status.bottom_line, sig_status.pretty_print_details()
    assert sig_status.timestamp_validity is not None and sig_status.timestamp_validity.valid
    assert ts_status.valid and ts_status.trusted, ts_status
    # pdfsig (poppler/NSS, the root trusted) sees the signature, valid and trusted, and the
    # document time-stamp as a second signature by the TSA
    r2 = subprocess.run(["pdfsig", "-nssdir", f"sql:{_nss_db(lt, tmp_path)}", str(out)], capture_output=True,
                        text=True)
    first, second = r2.stdout.split("Signature #2:")
    assert "Signature Validation: Signature is Valid." in first, r2.stdout + r2.stderr
    assert "Certificate Validation: Certificate is Trusted." in first, r2.stdout
    assert "Signature Type: ETSI.CAdES.detached" in first, r2.stdout
    tsa_cn = "TSA tsa1" if tsa_kind == "unica" else "Test TSA long"
    assert f"Signer Certificate Common Name: {tsa_cn}" in second, r2.stdout
    code, rep = _verify(lt, out, "--offline")
    assert code == 0, rep
    sig, ts = rep["signatures"]
    assert sig["indication"] == "TOTAL-PASSED" and sig["format"].startswith("PAdES-B-T"), sig
    assert sig["signing_time_source"] == "timestamp"
    assert ts["format"] == "PAdES document time-stamp" and ts["indication"] == "TOTAL-PASSED", ts


def _nss_db(lt, tmp_path):
    from tests.sign.ltpki import run

    db = tmp_path / "nss"
    db.mkdir()
    assert run("certutil", "-N", "-d", f"sql:{db}", "--empty-password").returncode == 0
    assert run("certutil", "-A", "-d", f"sql:{db}", "-n", "root", "-t", "CT,C,C", "-a", "-i",
               lt.root_pem).returncode == 0
    return db


def _root_asn1(lt):
    from asn1crypto import x509 as ax
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return ax.Certificate.load(x509.load_pem_x509_certificate(lt.root_pem.read_bytes()).public_bytes(Encoding.DER))


def _later(days: int) -> str:
    import datetime as dt

    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _revoke(lt, signer):
    import time

    time.sleep(1.1)  # the revocation time is after the signature time-stamp's genTime (1 s accuracy)
    lt.ok("cert", "revoke", signer.serial_hex, "--ca", "root", "--reason", "keyCompromise")
    lt.publish_crl()  # served at the CRL URL the certificates name


def test_b_lta_revoked_signer_verifies_after_both_certificates_expired(lt, pdf, tmp_path):
    """EN 319 102-1 proof of existence: a B-LTA document signed on a token, the signer revoked
    afterwards, the archive time-stamp renewed by another TSA: verified 30 days on (--at), when
    the signer's (1 day) and the first TSA's (2 days) certificates have expired, it is
    TOTAL-PASSED; without the renewal it is not; a B-B signature (no proof of existence before
    the revocation) fails."""
    signer = lt.signer()
    short = lt.tsa("short", "ts-short")  # openssl: a TSA certificate of 2 days
    lta, bb = tmp_path / "lta.pdf", tmp_path / "bb.pdf"
    lt.ok("sign", "pdf", str(pdf), str(lta), "--key", signer.key_uri, "--level", "B-LTA", "--tsa", short.url)
    lt.ok("sign", "pdf", str(pdf), str(bb), "--key", signer.key_uri)
    _revoke(lt, signer)
    not_refreshed = tmp_path / "lta-not-refreshed.pdf"
    not_refreshed.write_bytes(lta.read_bytes())
    before = _dss(lta)
    p = lt.run("timestamp", "refresh", str(lta), env={"UNICA_TSA_URL": lt.unica_tsa().url})  # unica's TSA
    assert p.returncode == 0, p.stderr
    assert [s.sig_object_type for s in _reader(lta).embedded_signatures] == ["/Sig", "/DocTimeStamp", "/DocTimeStamp"]
    after = _dss(lta)
    assert after["/OCSPs"] + after["/CRLs"] > before["/OCSPs"] + before["/CRLs"], (before, after)
    # the newest time-stamp's own material came after it, in a DSS-only update (LTA_UPDATES):
    # its TSA's OCSP response and, current for much longer, the root's CRL
    assert after["/CRLs"] >= 1, after
    newest = _reader(lta).embedded_signatures[-1]
    assert newest.sig_object_type == "/DocTimeStamp"
    assert int(newest.byte_range[2]) + int(newest.byte_range[3]) < lta.stat().st_size
    for kind, status in _pyhanko_offline(lt, lta):  # pyHanko, offline, hard-fail, today
        assert (status.bottom_line if kind == "sig" else status.valid and status.trusted), status

    # today: the signature time-stamp proves the signature before the revocation
    code, rep = _verify(lt, lta)
    assert code == 0, rep
    # 30 days on: the signer's and the short TSA's certificates have expired
    later = _later(30)
    assert signer.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ") < later
    # offline, from the embedded material alone: the refresh put the newest time-stamp's own
    # material (its TSA's path, the root's CRL current for 60 days) in a DSS update after it
    code, rep = _verify(lt, lta, "--at", later, "--offline")
    assert code == 0, rep
    sig, ts1, ts2 = rep["signatures"]
    assert sig["indication"] == "TOTAL-PASSED" and sig["signing_time_source"] == "timestamp", sig
    assert sig["certificate"]["validation_time"] < later  # validated at the signature time-stamp's time
    assert [e for e in sig["certificate"]["revocation"] if e.get("revocation_time")], sig["certificate"]
    assert ts1["indication"] == ts2["indication"] == "TOTAL-PASSED", (ts1, ts2)
    assert ts2["certificate"]["validation_time"].startswith(later[:10])  # the newest: at --at
    assert ts1["certificate"]["validation_time"] < later  # the older: at the newer one's genTime
    assert ts1["checks"]["document_timestamp"].startswith(f"ok ({ts2['field_name']}, "), ts1["checks"]
    assert "document_timestamp" not in ts2["checks"]
    assert ts2["modification_level"] == "LTA_UPDATES"  # only the DSS was added after it
    # the report lists each time-stamp, oldest first, with the proof of existence it gave to what
    sts, d1, d2 = rep["timestamps"]
    name, f1, f2 = sig["field_name"], ts1["field_name"], ts2["field_name"]
    assert [t["kind"] for t in rep["timestamps"]] == ["signature time-stamp", "document time-stamp",
                                                     "document time-stamp"], rep["timestamps"]
    assert all(t["indication"] == "TOTAL-PASSED" for t in rep["timestamps"]), rep["timestamps"]
    assert sts["field_name"] == name and "Test TSA short" in sts["tsa"], sts
    assert sts["proof_of_existence"] == sts["gen_time"] == sig["signing_time"], (sts, sig)
    assert sts["proof_of_existence_for"] == [f"signature '{name}'"], sts
    assert sts["validated_at"] == d1["gen_time"]  # its 2-day TSA certificate: at the first archive time-stamp
    assert d1["field_name"] == f1 and "Test TSA short" in d1["tsa"], d1
    assert d1["proof_of_existence"] == d1["gen_time"] == ts1["signing_time"], d1
    assert d1["proof_of_existence_for"] == [f"signature '{name}'", f"signature time-stamp of '{name}'"], d1
    assert d1["validated_at"] == d2["gen_time"]  # at the newer archive time-stamp's time
    assert d2["field_name"] == f2 and "TSA tsa1" in d2["tsa"], d2
    # the newest covers everything too, but the signature already has an earlier proof (d1)
    assert d2["proof_of_existence_for"] == [f"document time-stamp '{f1}'"], d2
    assert d2["validated_at"].startswith(later[:10])  # the newest: at --at
    p = lt.run("verify", "pdf", str(lta), "--trust", str(lt.root_pem), "--at", later, "--offline")
    assert p.returncode == 0, p.stdout + p.stderr
    listing = p.stdout.split("Time-stamps (proofs of existence):")[1]
    assert f"- document time-stamp '{f2}': genTime {d2['gen_time']}, TSA {d2['tsa']}: TOTAL-PASSED" in listing
    assert f"proof of existence at {d1['gen_time']} for: signature '{name}', signature time-stamp of '{name}'" \
        in listing, listing
    # its TSA certificate shown good by an embedded CRL (the OCSP response is stale by then)
    assert any(e["source"] == "CRL" and e["status"] == "good" for e in ts2["certificate"]["revocation"]), ts2

    # without the renewal, the only archive time-stamp's TSA certificate has expired by then
    code, rep = _verify(lt, not_refreshed, "--at", later, "--offline")
    assert code != 0, rep
    code, rep = _verify(lt, not_refreshed, "--at", later)  # online the same
    assert code != 0, rep
    # a B-B signature has no proof of existence before the revocation: it fails, now and later
    code, rep = _verify(lt, bb)
    assert code != 0 and rep["signatures"][0]["sub_indication"] in ("REVOKED_NO_POE", "REVOKED"), rep
    # (offline, given the root's current CRL: the revocation is known, nothing proves the
    # signature existed before it)
    code, rep = _verify(lt, bb, "--at", later, "--offline", "--crl", str(lt.crl_dir / "root.crl"))
    assert code == 10, rep


def test_b_t_after_revocation_is_revoked(lt, pdf, tmp_path):
    """A signature time-stamp after the revocation proves nothing good: TOTAL-FAILED/REVOKED."""
    signer = lt.signer()
    _revoke(lt, signer)
    out = tmp_path / "late.pdf"
    lt.ok("sign", "pdf", str(pdf), str(out), "--key", signer.key_uri, "--level", "B-T", "--tsa", lt.unica_tsa().url)
    code, rep = _verify(lt, out)
    assert code == 10, rep
    assert rep["signatures"][0]["sub_indication"] == "REVOKED", rep


def test_b_lt_dss_then_refresh_adds_the_first_document_time_stamp(lt, signer, pdf, tmp_path):
    """B-LT: the DSS holds the signer's and the TSA's certificates and revocation data, no document
    time-stamp; `timestamp refresh --out` makes it B-LTA and leaves the input as it was."""
    from asn1crypto import crl as acrl, ocsp as aocsp
    from asn1crypto import x509 as ax

    blt = tmp_path / "blt.pdf"
    lt.ok("sign", "pdf", str(pdf), str(blt), "--key", signer.key_uri, "--level", "B-LT", "--tsa", lt.unica_tsa().url)
    r = _reader(blt)
    assert [s.sig_object_type for s in r.embedded_signatures] == ["/Sig"]
    dss = r.root["/DSS"]
    subjects = {ax.Certificate.load(c.get_object().data).subject.native["common_name"] for c in dss["/Certs"]}
    assert {"张三", "LT Test Root", "TSA tsa1"} <= subjects, subjects
    about = set()
    for o in dss.get("/OCSPs", ()):
        resp = aocsp.OCSPResponse.load(o.get_object().data)
        assert resp["response_status"].native == "successful"
        about |= {s["cert_id"]["serial_number"].native for s in resp.basic_ocsp_response["tbs_response_data"]["responses"]}
    for c in dss.get("/CRLs", ()):
        acrl.CertificateList.load(c.get_object().data)
    assert signer.cert.serial_number in about  # from the real unica OCSP responder
    ((_, status),) = _pyhanko_offline(lt, blt)
    assert status.bottom_line, status.pretty_print_details()
    code, rep = _verify(lt, blt, "--offline")
    assert code == 0, rep
    original = blt.read_bytes()
    lta = tmp_path / "lta.pdf"
    p = lt.run("timestamp", "refresh", str(blt), "--out", str(lta), "--tsa", lt.unica_tsa().url, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"file": str(lta), "document_timestamps": 1, "tsa": lt.unica_tsa().url}
    assert blt.read_bytes() == original
    assert lta.read_bytes().startswith(original)
    assert [s.sig_object_type for s in _reader(lta).embedded_signatures] == ["/Sig", "/DocTimeStamp"]
    code, rep = _verify(lt, lta, "--offline")
    assert code == 0, rep
    assert rep["signatures"][1]["format"] == "PAdES document time-stamp"
    (_, sig_status), (_, ts_status) = _pyhanko_offline(lt, lta)  # pyHanko agrees, offline, hard-fail
    assert sig_status.bottom_line, sig_status.pretty_print_details()
    assert ts_status.valid and ts_status.trusted and ts_status.intact, ts_status


def test_tampered_b_lta_fails(lt, signer, pdf, tmp_path):
    out = tmp_path / "lta.pdf"
    lt.ok("sign", "pdf", str(pdf), str(out), "--key", signer.key_uri, "--level", "B-LTA",
          env={"UNICA_TSA_URL": lt.unica_tsa().url})
    data = bytearray(out.read_bytes())
    pos = data.find(b"long-term declaration")
    data[pos] ^= 0x01
    out.write_bytes(bytes(data))
    code, rep = _verify(lt, out, "--offline")
    assert code == 10, rep
    assert all(s["indication"] == "TOTAL-FAILED" for s in rep["signatures"]), rep
    (_, sig_status), (_, ts_status) = _pyhanko_offline(lt, out)
    assert not sig_status.intact and not ts_status.intact
    r = subprocess.run(["pdfsig", str(out)], capture_output=True, text=True)
    assert "Signature is Valid." not in r.stdout, r.stdout


def test_usage_errors_leave_files_alone(lt, signer, pdf, tmp_path):
    out = tmp_path / "o.pdf"
    p = lt.run("sign", "pdf", str(pdf), str(out), "--key", signer.key_uri, "--level", "B-LTA")
    assert_one_line_error(p, "UNICA_TSA_URL")
    assert p.returncode == 2 and not out.exists()
    p = lt.run("timestamp", "refresh", str(pdf))
    assert_one_line_error(p, "UNICA_TSA_URL")
    assert p.returncode == 2
    original = pdf.read_bytes()
    p = lt.run("timestamp", "refresh", str(pdf), "--tsa", lt.unica_tsa().url)  # nothing signed
    assert_one_line_error(p, "no signature")
    assert p.returncode == 2 and pdf.read_bytes() == original
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf at all")
    p = lt.run("timestamp", "refresh", str(bad), "--tsa", lt.unica_tsa().url)
    assert_one_line_error(p, "bad.pdf")
    assert p.returncode == 2 and bad.read_bytes() == b"not a pdf at all"
    # an unreachable TSA: operational (exit 1), the file unchanged
    blt = tmp_path / "bt.pdf"
    lt.ok("sign", "pdf", str(pdf), str(blt), "--key", signer.key_uri, "--tsa", lt.unica_tsa().url)
    before = blt.read_bytes()
    p = lt.run("timestamp", "refresh", str(blt), "--tsa", "http://127.0.0.1:1/")
    assert_one_line_error(p, "127.0.0.1:1")
    assert p.returncode == 1 and blt.read_bytes() == before
