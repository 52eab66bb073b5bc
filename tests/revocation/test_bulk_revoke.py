"""``unica revoke --serials-file`` and ``--spki-sha256``: revocation at scale from the CLI, on a
real database and CA (file keys), checked in the database, the audit log and the signed CRL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess

from tests.conftest import assert_one_line_error
from tests.revocation.test_revocation import _counts, openssl_crl_verify


def _status(home, serial: str) -> tuple:
    db = sqlite3.connect(home / "unica.db")
    try:
        return db.execute("select status, revocation_reason from certificates where serial = ?", (serial,)).fetchone()
    finally:
        db.close()


def _audit(home, event: str) -> list[dict]:
    db = sqlite3.connect(home / "unica.db")
    try:
        return [json.loads(d) for (d,) in db.execute("select details from audit_log where event = ? order by id",
                                                    (event,))]
    finally:
        db.close()


def _crl_serials(pki, ca: str) -> tuple[set[str], str]:
    crl = json.loads(pki.run("crl", "generate", "--ca", ca, "--json").stdout)[0]
    text = openssl_crl_verify(crl["path"], pki.export(ca))
    listed = {line.split(":", 1)[1].strip().lower().lstrip("0") for line in text.splitlines()
              if line.strip().startswith("Serial Number:")}
    return listed, text


def test_serials_file_revokes_the_good_and_reports_the_refused(pki):
    good = [pki.issue("sub")["serial"] for _ in range(3)]
    done_before = pki.issue("sub")["serial"]
    pki.run("revoke", done_before, "--reason", "superseded")
    sub_ca_serial = json.loads(pki.run("cert", "list", "--ca", "root", "--json").stdout)[0]["serial"]
    unknown = "7a7a7a7a7a7a7a7a"
    listing = pki.tmp / "serials.txt"
    listing.write_text("# compromised batch, ticket 4711\n"
                       f"{good[0]}\n\n  {good[1].upper()}   # upper case, padded\n"
                       f"{unknown}\n{good[0]}\n{done_before}\n0x{good[2]}\n")
    audit_before = _counts(pki.home)[1]
    r = pki.unica("revoke", "--serials-file", str(listing), "--ca", "sub", "--reason", "keyCompromise", "--json",
                  "--batch-size", "2", env=pki.env)
    assert r.returncode == 1, r.stderr
    assert_one_line_error(r, "3 of 6 refused")  # progress lines only for runs longer than a few seconds
    report = json.loads(r.stdout)
    assert [x["serial"] for x in report["revoked"]] == good
    assert {x["serial"]: x["code"] for x in report["refused"]} == {
        unknown: "unknown", good[0]: "duplicate", done_before: "already-revoked"}
    assert report["revoked_count"] == 3 and report["refused_count"] == 3 and report["reason"] == "keyCompromise"
    for s in good:
        assert _status(pki.home, s) == ("revoked", "keyCompromise")
    assert _status(pki.home, done_before) == ("revoked", "superseded")  # untouched
    # one audit entry per transaction that revoked something, listing its serials
    batches = _audit(pki.home, "certificate.revoked_batch")
    assert [b["serials"] for b in batches] == [good[:2], good[2:]]
    assert all(b["reason"] == "keyCompromise" for b in batches)
    assert _counts(pki.home)[1] == audit_before + 2

    # a CA certificate and a serial of another CA are refused, by name, in plain output
    listing.write_text(f"{sub_ca_serial}\n")
    r = pki.unica("revoke", "--serials-file", str(listing), "--ca", "root", env=pki.env)
    assert r.returncode == 1 and "ca-certificate" in r.stdout and "revoked 0 of 1" in r.stdout, r.stdout
    assert pki.ca_info("sub")["status"] == "active"
    wrong = pki.issue("sub")["serial"]
    listing.write_text(f"{wrong}\n")
    r = pki.unica("revoke", "--serials-file", str(listing), "--ca", "root", env=pki.env)
    assert r.returncode == 1 and "wrong-ca" in r.stdout and "'sub'" in r.stdout, r.stdout
    assert _status(pki.home, wrong) == ("valid", None)

    # standard input, all good: exit 0, a one-line summary
    r = pki.unica("revoke", "--serials-file", "-", "--reason", "superseded", input=f"{wrong}\n", env=pki.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("revoked 1 of 1 certificate(s) (superseded) in 1 transaction(s); refused 0")

    # the CRL lists what the file revoked, with the reason, and not the refused ones
    listed, text = _crl_serials(pki, "sub")
    assert listed == {s.lstrip("0") for s in good + [done_before, wrong]}
    assert text.count("Key Compromise") == 3


def test_spki_revokes_every_certificate_of_a_key(pki):
    key = pki.tmp / "shared.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(key)], check=True, capture_output=True)
    spki = hashlib.sha256(subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                                         check=True, capture_output=True).stdout).hexdigest()
    serials = []
    for cn in ("Declarant A", "Declarant B"):
        csr = pki.tmp / f"{cn[-1]}.csr"
        subprocess.run(["openssl", "req", "-new", "-key", str(key), "-utf8", "-out", str(csr), "-subj",
                        f"/C=CN/O=示例贸易有限公司/organizationIdentifier=91350100M000100Y43/CN={cn}"],
                       check=True, capture_output=True)
        r = pki.run("issue", "--ca", "sub", "--profile", "enterprise-auth", "--csr", str(csr), "--json")
        serials.append(json.loads(r.stdout)["serial"])
    bystander = pki.issue("sub")["serial"]
    assert json.loads(pki.run("cert", "show", serials[0], "--json").stdout)["spki_sha256"] == spki

    r = pki.run("revoke", "--spki-sha256", spki.upper(), "--reason", "keyCompromise", "--json")
    report = json.loads(r.stdout)
    assert sorted(x["serial"] for x in report["revoked"]) == sorted(serials) and report["refused"] == []
    assert _status(pki.home, bystander) == ("valid", None)
    batch = _audit(pki.home, "certificate.revoked_batch")[-1]
    assert batch["spki_sha256"] == spki and sorted(batch["serials"]) == sorted(serials)
    listed, text = _crl_serials(pki, "sub")
    assert listed == {s.lstrip("0") for s in serials} and text.count("Key Compromise") == 2

    # again: nothing left to revoke, both reported as revoked already, exit 0
    r = pki.run("revoke", "--spki-sha256", spki)
    assert "revoked 0 of 2" in r.stdout and "2 revoked already" in r.stdout, r.stdout
    # a key no certificate has
    assert_one_line_error(pki.unica("revoke", "--spki-sha256", "ab" * 32, env=pki.env), "no certificate",
                          "spki sha-256")
    assert pki.unica("revoke", "--spki-sha256", "ab" * 32, env=pki.env).returncode == 1


def test_bulk_input_errors_exit_2_and_change_nothing(pki):
    s = pki.issue("sub")["serial"]
    bad = pki.tmp / "bad.txt"
    bad.write_text(f"{s}\nnot-a-serial\n")
    empty = pki.tmp / "empty.txt"
    empty.write_text("# nothing\n\n")
    binary = pki.tmp / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc\n")
    before = _counts(pki.home)
    for args, needles in [
        (["--serials-file", str(bad)], ["line 2", "bad serial", "not-a-serial"]),
        (["--serials-file", str(empty)], ["no serial numbers"]),
        (["--serials-file", str(binary)], ["not UTF-8"]),
        (["--serials-file", str(pki.tmp / "missing.txt")], ["cannot read"]),
        (["--spki-sha256", "abc"], ["bad SPKI SHA-256", "64 hexadecimal"]),
        (["--spki-sha256", "g" * 64], ["bad SPKI SHA-256"]),
        (["--serials-file", str(bad), "--spki-sha256", "ab" * 32], ["give one of", "not --serials-file and"]),
        ([s, "--spki-sha256", "ab" * 32], ["give one of"]),
        ([], ["give one of SERIAL"]),
        (["--spki-sha256", "ab" * 32, "--reason", "bored"], ["unknown revocation reason"]),
        (["--serials-file", str(bad), "--invalidity-date", "2026-13-01"], ["bad --invalidity-date"]),
    ]:
        r = pki.unica("revoke", *args, env=pki.env)
        assert_one_line_error(r, *needles)
        assert r.returncode == 2, (args, r.stderr)
    assert _counts(pki.home) == before
    assert _status(pki.home, s) == ("valid", None)
