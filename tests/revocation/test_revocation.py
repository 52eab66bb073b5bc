"""Revoke / hold / release from the CLI, and the CRLs (base, delta, partitioned) they produce."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess

from cryptography import x509

from tests.conftest import assert_one_line_error


def _crl(path) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(open(path, "rb").read())


def openssl_crl_verify(crl_path, ca_pem) -> str:
    r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl_path), "-CAfile", str(ca_pem),
                        "-noout", "-text"], capture_output=True, text=True)
    assert r.returncode == 0 and "verify OK" in r.stderr + r.stdout, r.stderr
    return r.stdout


def pkilint_crl(crl_path) -> None:
    r = subprocess.run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING",
                        "--document-format", "DER", str(crl_path)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def _counts(home) -> tuple[int, int, int]:
    db = sqlite3.connect(home / "unica.db")
    try:
        return tuple(db.execute(q).fetchone()[0] for q in (
            "select count(*) from certificates where status in ('revoked','hold')",
            "select count(*) from audit_log", "select coalesce(max(crl_number),0) from cas"))
    finally:
        db.close()


def test_revoke_hold_release_base_and_delta_crls(pki):
    a, b, c, d = (pki.issue("sub")["serial"] for _ in range(4))
    r = pki.run("revoke", a, "--ca", "sub", "--reason", "keyCompromise", "--invalidity-date", "2026-11-01T08:00:00Z",
                "--json")
    st = json.loads(r.stdout)
    assert st["status"] == "revoked" and st["reason"] == "keyCompromise"
    assert json.loads(pki.run("revoke", b, "--reason", "certificateHold", "--json").stdout)["status"] == "hold"
    pki.run("revoke", c, "--ca", "sub", "--reason", "cessation-of-operation")

    r = pki.run("crl", "generate", "--ca", "sub", "--json")
    base = json.loads(r.stdout)[0]
    assert base["number"] == 1 and base["entries"] == 3
    sub_pem = pki.export("sub")
    text = openssl_crl_verify(base["path"], sub_pem)
    assert "Key Compromise" in text and "Certificate Hold" in text and "Invalidity Date" in text
    pkilint_crl(base["path"])
    crl = _crl(base["path"])
    got = {format(e.serial_number, "x"): e for e in crl}
    assert set(got) == {a, b, c}
    assert got[a].extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert got[a].extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == \
        dt.datetime(2026, 11, 1, 8, tzinfo=dt.timezone.utc)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1

    # lift the hold, revoke one more: the delta CRL says removeFromCRL and adds the new one
    assert json.loads(pki.run("release", b, "--json").stdout)["status"] == "valid"
    pki.run("revoke", d, "--ca", "sub", "--reason", "superseded")
    delta = json.loads(pki.run("crl", "generate", "--ca", "sub", "--delta", "--json").stdout)[0]
    assert delta["number"] == 2 and delta["base_number"] == 1
    openssl_crl_verify(delta["path"], sub_pem)
    pkilint_crl(delta["path"])
    dcrl = _crl(delta["path"])
    assert dcrl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number == 1
    reasons = {format(e.serial_number, "x"): e.extensions.get_extension_for_class(x509.CRLReason).value.reason
               for e in dcrl}
    assert reasons == {b: x509.ReasonFlags.remove_from_crl, d: x509.ReasonFlags.superseded}

    # the next base CRL: numbers keep increasing, the released certificate is gone
    base2 = json.loads(pki.run("crl", "generate", "--ca", "sub", "--json").stdout)[0]
    assert base2["number"] == 3
    assert {format(e.serial_number, "x") for e in _crl(base2["path"])} == {a, c, d}


def test_delta_omits_what_the_base_already_had_in_the_same_second(pki, monkeypatch):
    """A revocation in the same second as the base CRL (but before its snapshot) is in the base,
    so the next delta must not list it again; one made after the snapshot is in the delta."""
    from unica.ca.revocation import generate_crl
    from unica.store import open_store

    early, late = pki.issue("sub")["serial"], pki.issue("sub")["serial"]
    pki.run("revoke", early, "--reason", "keyCompromise")
    pki.run("revoke", late, "--reason", "superseded")
    second = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=5)
    db = sqlite3.connect(pki.home / "unica.db")
    with db:  # early changed at .2 s, late at .8 s; the base snapshot is taken at .5 s
        for serial, micro in ((early, 200_000), (late, 800_000)):
            db.execute("update certificates set updated_at = ? where serial = ?",
                       ((second + dt.timedelta(microseconds=micro)).strftime("%Y-%m-%d %H:%M:%S.%f"), serial))
    db.close()
    monkeypatch.setenv("UNICA_PASSPHRASE", pki.env["UNICA_PASSPHRASE"])
    monkeypatch.setenv("UNICA_HOME", str(pki.home))
    store = open_store(f"sqlite:///{pki.home / 'unica.db'}")
    base = generate_crl(store, "sub", now=second + dt.timedelta(microseconds=500_000), out_dir=pki.tmp)[0]
    assert base.this_update == second  # the CRL itself says whole seconds
    delta = generate_crl(store, "sub", delta=True, out_dir=pki.tmp)[0]
    assert {format(e.serial_number, "x") for e in _crl(delta.path)} == {late}


def test_revocation_errors_are_one_line_and_change_nothing(pki):
    s = pki.issue("sub")["serial"]
    pki.run("revoke", s, "--reason", "keyCompromise")
    before = _counts(pki.home)
    for args, needles in [
        (["revoke", s], ["already revoked"]),
        (["release", s], ["not on hold"]),
        (["revoke", "abcdef0123", "--ca", "sub"], ["no certificate", "abcdef0123"]),
        (["revoke", "zz-not-hex"], ["bad serial"]),
        (["revoke", s, "--reason", "bored"], ["unknown revocation reason"]),
        (["revoke", s, "--reason", "removeFromCRL"], ["not a revocation reason"]),
        (["revoke", s, "--ca", "nope"], ["no CA named"]),
        (["revoke", pki.issue("sub")["serial"], "--invalidity-date", "2026-11-01T25:00"], ["bad --invalidity-date"]),
        (["crl", "generate", "--ca", "sub", "--shard", "3"], ["shard 3 does not exist"]),
    ]:
        assert_one_line_error(pki.unica(*args, env=pki.env), *needles)
    assert _counts(pki.home)[0] == before[0]  # no revocation applied
    assert _counts(pki.home)[2] == before[2]  # no CRL number used


def test_delta_without_base_is_refused(pki):
    assert_one_line_error(pki.unica("crl", "generate", "--ca", "sub", "--delta", env=pki.env), "no base CRL")


def test_revoking_a_subordinate_ca(pki):
    pki.issue("sub")
    sub_serial = format(x509.load_pem_x509_certificate(pki.export("sub").read_bytes()).serial_number, "x")
    r = pki.run("revoke", sub_serial, "--ca", "root", "--reason", "cACompromise")
    assert "subordinate CA 'sub'" in r.stdout
    root_crl = json.loads(pki.run("crl", "generate", "--ca", "root", "--json").stdout)[0]
    openssl_crl_verify(root_crl["path"], pki.export("root"))
    assert {format(e.serial_number, "x") for e in _crl(root_crl["path"])} == {sub_serial}
    assert pki.ca_info("sub")["status"] == "revoked"
    # a revoked CA issues nothing more
    assert_one_line_error(pki.unica("issue", "--ca", "sub", "--profile", "enterprise-auth", "--csr",
                                    str(pki.csr()), env=pki.env), "sub")


def test_partitioned_crls(pki):
    pki.run("ca", "create-sub", "big", "--parent", "root", "--subject", "C=CN,O=Port Authority,CN=Sharded CA",
            "--key-type", "ec-p256", "--crl-shards", "3", "--crl-url", "http://crl.port.example/big/{shard}.crl")
    issued = [pki.issue("big") for _ in range(9)]
    serials = [i["serial"] for i in issued]
    for s in serials[:7]:
        pki.run("revoke", s, "--ca", "big", "--reason", "superseded")
    out_dir = pki.tmp / "crls"
    out_dir.mkdir()  # unica creates no directories
    results = json.loads(pki.run("crl", "generate", "--ca", "big", "--out-dir", str(out_dir), "--json").stdout)
    assert [r["shard"] for r in results] == [0, 1, 2]
    assert len({r["number"] for r in results}) == 3  # every CRL has its own number
    big_pem = pki.export("big")
    seen = set()
    for r in results:
        openssl_crl_verify(r["path"], big_pem)
        pkilint_crl(r["path"])
        crl = _crl(r["path"])
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical
        assert idp.value.full_name[0].value == f"http://crl.port.example/big/{r['shard']}.crl"
        shard_serials = {format(e.serial_number, "x") for e in crl}
        assert all(int(s, 16) % 3 == r["shard"] for s in shard_serials)
        seen |= shard_serials
    assert seen == set(serials[:7])
    # each certificate points at the CRL of its own shard
    for i in issued:
        cert = x509.load_pem_x509_certificate(pki.run("cert", "export", i["serial"]).stdout.encode())
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert cdp[0].full_name[0].value == f"http://crl.port.example/big/{int(i['serial'], 16) % 3}.crl"
