"""``unica tsa unit``: add on a token or as an encrypted file key, list / show / disable with their
audit entries; a disabled unit stops its running server (systemFailure, /healthz 503) and no server
starts on it; every refusal is one line with its exit status and leaves the database as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.tsa.conftest import ALT_POLICY, POLICY, Server, wait_for
from tests.tsa.test_responses import ask, query, rejected, tst_info


def _one_line(p, code: int, *needles: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("unica: error:") and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in err.lower(), err


@pytest.mark.parametrize("args, code, needle", [
    (["--policy", "not-an-oid"], 2, "not a dotted object identifier"),
    (["--policy", "1.50.3"], 2, "second arc"),
    (["--policy", POLICY, "--accept-policy", "x.y"], 2, "--accept-policy"),
    (["--policy", POLICY, "--accuracy", "2s"], 2, "between 1ms and 1s"),
    (["--policy", POLICY, "--accuracy", "soon"], 2, "--accuracy"),
    (["--policy", POLICY, "--key-type", "ed25519"], 2, "must be EC or RSA"),
    (["--policy", POLICY, "--key-type", "dsa"], 2, "invalid value for '--key-type'"),
    ([], 2, "missing option '--policy'"),
    (["--policy", POLICY, "--ca", "no-such-ca"], 1, "no CA named 'no-such-ca'"),
])
def test_unit_add_refusals_change_nothing(tsa_home, args, code, needle):
    before = tsa_home.counts()
    base = ["tsa", "unit", "add", "refused", "--token", tsa_home.token]
    if "--ca" not in args:
        base += ["--ca", "root"]
    _one_line(tsa_home.run(*base, *args), code, needle)
    assert tsa_home.counts() == before


def test_unit_add_existing_name_is_refused(tsa_home):
    before = tsa_home.counts()
    _one_line(tsa_home.run("tsa", "unit", "add", "tsa1", "--ca", "root", "--token", tsa_home.token, "--policy", POLICY),
              1, "already exists")
    assert tsa_home.counts() == before


def test_list_and_show(tsa_home):
    p = tsa_home.ok("tsa", "unit", "list")
    assert p.stdout.splitlines()[0].split() == ["NAME", "STATUS", "CA", "POLICY", "ACCURACY", "CERTIFICATE", "KEY"]
    assert any(line.split()[:4] == ["tsa1", "active", "root", POLICY] for line in p.stdout.splitlines()[1:])
    units = json.loads(tsa_home.ok("tsa", "unit", "list", "--json").stdout)
    u = next(u for u in units if u["name"] == "tsa1")
    assert u["accept_policies"] == [ALT_POLICY] and u["accuracy"] == "1s" and u["key_uri"].startswith("pkcs11:")
    shown = json.loads(tsa_home.ok("tsa", "unit", "show", "tsa1", "--json").stdout)
    assert shown["certificate_serial"] == u["certificate_serial"]
    _one_line(tsa_home.run("tsa", "unit", "show", "nope"), 1, "no TSA unit named 'nope'")
    added = tsa_home.sql("SELECT details FROM audit_log WHERE event = 'tsa.unit-added' AND target = 'tsa1'")
    assert len(added) == 1 and POLICY in added[0][0]


def test_file_key_unit_with_finer_accuracy(tsa_home, tmp_path):
    """A unit whose key is an encrypted PKCS#8 file (UNICA_PASSPHRASE), accuracy 500 ms: served,
    its token verified by openssl; the key file is not readable without the passphrase."""
    tsa_home.ok("tsa", "unit", "add", "filetsa", "--ca", "root", "--key-type", "ec-p384", "--policy", POLICY,
                "--accuracy", "500ms")
    info = json.loads(tsa_home.ok("tsa", "unit", "show", "filetsa", "--json", "--cert-out",
                                  str(tmp_path / "filetsa.pem")).stdout)
    assert info["key_uri"].startswith("file:") and info["accuracy"] == "500ms"
    key_text = open(info["key_uri"][5:]).read()
    assert "ENCRYPTED PRIVATE KEY" in key_text
    with Server(tsa_home, "--unit", "filetsa") as s:
        resp = ask(s, query(b"file", "sha512", nonce=99))
        tst = tst_info(resp)
        assert tst["accuracy"]["millis"].native == 500 and tst["accuracy"]["seconds"].native is None
        reply = tmp_path / "r.tsr"
        reply.write_bytes(resp.dump())
        data = tmp_path / "d"
        data.write_bytes(b"file")
        if shutil.which("openssl"):
            v = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(reply), "-CAfile",
                                str(tsa_home.root_pem)], capture_output=True, text=True)
            assert v.returncode == 0, v.stdout + v.stderr
    # without the passphrase the server does not start: one line, exit 1
    p = tsa_home.run("tsa", "serve", "--port", "0", "--unit", "filetsa", env={"UNICA_PASSPHRASE": None})
    assert p.returncode != 0 and p.stderr.startswith("unica: error:") and len(p.stderr.splitlines()) == 1
    tsa_home.ok("tsa", "unit", "disable", "filetsa")


def test_a_unit_key_made_for_a_refused_issuance_is_removed(tsa_home):
    """The unit's new key (here an encrypted SM2 file key) is made before the CA signs; when the
    CA then refuses it (the timestamping profile allows no SM2 key), the key is removed again: no
    orphan key is left, the same command can be run again, and nothing is recorded."""
    keys_dir = tsa_home.home / "keys"
    before = sorted(p.name for p in keys_dir.iterdir()) if keys_dir.exists() else []
    units = tsa_home.sql("SELECT COUNT(*) FROM tsa_units")
    p = tsa_home.run("tsa", "unit", "add", "orphan", "--ca", "root", "--key-type", "sm2", "--policy", POLICY)
    _one_line(p, 3, "sm2", "was removed")
    after = sorted(p.name for p in keys_dir.iterdir()) if keys_dir.exists() else []
    assert after == before
    assert tsa_home.sql("SELECT COUNT(*) FROM tsa_units") == units


def test_serve_chooses_the_only_active_unit_or_asks(tsa_home):
    # tsa1 and other units are active in this home: --unit is required
    tsa_home.add_unit("second")
    try:
        _one_line(tsa_home.run("tsa", "serve", "--port", "0"), 2, "several active TSA units", "--unit")
    finally:
        tsa_home.ok("tsa", "unit", "disable", "second")


def test_disable_stops_the_running_server_and_the_next_start(tsa_home):
    tsa_home.add_unit("doomed")
    with Server(tsa_home, "--unit", "doomed") as s:
        tst_info(ask(s, query(b"before")))
        p = tsa_home.ok("tsa", "unit", "disable", "doomed", "--note", "key retired")
        assert "disabled at" in p.stdout
        assert wait_for(lambda: ask(s, query(b"after"))["status"]["status"].native == "rejection", timeout=10)
        assert "disabled" in rejected(ask(s, query(b"after")), "system_failure")
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/healthz")
        assert c.getresponse().status == 503
        c.close()
    ev = tsa_home.sql("SELECT details FROM audit_log WHERE event = 'tsa.unit-disabled' AND target = 'doomed'")
    assert len(ev) == 1 and "key retired" in ev[0][0]
    before = tsa_home.counts()
    _one_line(tsa_home.run("tsa", "serve", "--port", "0", "--unit", "doomed"), 3, "TSA unit 'doomed' is disabled")
    _one_line(tsa_home.run("tsa", "unit", "disable", "doomed"), 3, "already disabled")
    _one_line(tsa_home.run("tsa", "unit", "disable", "nope"), 1, "no TSA unit named 'nope'")
    assert tsa_home.counts() == before


def test_serve_usage_errors(tsa_home, tmp_path):
    _one_line(tsa_home.run("tsa", "serve", "--unit", "tsa1", "--tls-cert", str(tmp_path / "c.pem")), 2,
              "--tls-cert and --tls-key go together")
    _one_line(tsa_home.run("tsa", "serve", "--unit", "tsa1", "--clock-status", "f", "--clock-check", "chronyc"), 2,
              "not both")
    _one_line(tsa_home.run("tsa", "serve", "--unit", "tsa1", "--port", "70000"), 2, "--port")


def test_only_an_admin_manages_tsa_units(tmp_path):
    """Once operators exist, a TSA unit is an admin's (operation tsa.unit, like the OCSP signer):
    an RA officer is refused before any key is made, nothing is recorded; the admin adds and
    disables it."""
    from tests.auth.conftest import bootstrap, build_joint_ca
    from tests.conftest import assert_one_line_error

    j = bootstrap(build_joint_ca(tmp_path, cards=("alice", "bob")))
    add = ("tsa", "unit", "add", "ts1", "--ca", "root", "--key-type", "ec-p256", "--token", j.hsm, "--policy", POLICY)
    tables = ("tsa_units", "certificates")
    before = {t: j.sql(f"SELECT COUNT(*) FROM {t}") for t in tables}
    p = j.run(*add, who="bob")
    assert p.returncode == 3, p.stderr
    assert_one_line_error(p, "tsa.unit")
    assert {t: j.sql(f"SELECT COUNT(*) FROM {t}") for t in tables} == before
    keys = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", j.hsm,
                           "--list-objects", "--type", "privkey"], env={**os.environ, **{k: v for k, v in j.env.items()
                                                                                        if v is not None}},
                          capture_output=True, text=True)
    assert "tsa-ts1" not in keys.stdout, keys.stdout
    j.ok(*add, who="alice")
    assert j.sql("SELECT status FROM tsa_units WHERE name='ts1'") == [("active",)]
    p = j.run("tsa", "unit", "disable", "ts1", who="bob")
    assert p.returncode == 3
    assert j.sql("SELECT status FROM tsa_units WHERE name='ts1'") == [("active",)]
    j.ok("tsa", "unit", "disable", "ts1", "--note", "retired", who="alice")
    assert j.sql("SELECT status FROM tsa_units WHERE name='ts1'") == [("disabled",)]
