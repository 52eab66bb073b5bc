"""The CA side under the operator check: CA lifecycle, CA settings and profiles are an admin's.

Real `unica` processes, operators' cards and the CA's HSM on SoftHSM2 (tests/auth/conftest.py):
an admin creates and revokes a sub-CA, sets its URLs, imports an external parent's certificate,
adds and removes profiles, and every audit entry names the admin; an ra-officer or an auditor is
refused (exit 3, one line, audited as ``auth.refused``, the database unchanged), and so is anyone
without ``--as``. ``token enroll``/``renew`` issue as the operator of ``--as``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.auth.conftest import JointCA

SUB = ["--subject", "C=CN,O=Port Joint CA,CN=Port Issuing CA", "--key-type", "ec-p256"]


def _details(value) -> dict:
    return json.loads(value) if isinstance(value, str) else value


def counts(j: JointCA) -> dict:
    """What a refused command must leave as it was."""
    out = {t: j.sql(f"SELECT count(*) FROM {t}")[0][0]
           for t in ("cas", "certificates", "approval_requests", "operators", "crls")}
    out["settings"] = j.sql("SELECT name, status, crl_url, ocsp_url, profiles, key_uri FROM cas ORDER BY id")
    out["profiles"] = sorted(p.name for p in (j.home / "profiles").glob("*"))
    return out


def audit(j: JointCA, event: str) -> list[tuple[str, dict]]:
    return [(a, _details(d)) for a, d in
            j.sql("SELECT actor, details FROM audit_log WHERE event = :e ORDER BY id", e=event)]


def assert_refused(j: JointCA, p, *words: str) -> None:
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unica: error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_revoking_the_ca_above_every_admin_is_refused(joint):
    """Revoking a CA ends the authority of the operators whose certificates it issued: when that
    is every admin, ca revoke is refused (like disabling the last admin), nothing changed."""
    j = joint
    j.ok("ca", "create-sub", "ops", "--parent", "root", *SUB, "--token", j.hsm, who="alice")
    j.init_token(f"{j.tag}-frank")  # frank's card: j.card("frank")
    p = j.ok("token", "enroll", "--token", f"{j.tag}-frank", "--label", "operator", "--key-type", "ec-p256",
             "--subject", "C=CN,O=Port Joint CA,CN=Frank", "--ca", "ops", "--profile", "operator", "--json",
             who="alice")
    pem = j.dir / "frank.pem"
    j.ok("cert", "export", json.loads(p.stdout)["serial"], "--ca", "ops", "--out", str(pem))
    j.ok("operator", "add", "frank", "--role", "admin", "--cert", str(pem), who="alice")
    j.ok("operator", "disable", "alice", who="frank")
    before = counts(j)
    assert_refused(j, j.run("ca", "revoke", "ops", "--reason", "superseded", who="frank"), "every admin", "frank")
    assert counts(j) == before
    assert j.sql("SELECT status FROM cas WHERE name = 'ops'") == [("active",)]


def profile_file(j: JointCA, name: str, description: str = "Customs signing") -> tuple:
    """An operator profile file NAME.toml: the enterprise-sign template with another description."""
    text = j.ok("profile", "show", "enterprise-sign").stdout
    text = "\n".join(line if not line.startswith("description = ") else f'description = "{description}"'
                     for line in text.splitlines()) + "\n"
    path = j.dir / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path, text


def add_admin(j: JointCA, who: str, role: str = "admin") -> None:
    j.ok("operator", "add", who, "--role", role, "--cert", str(j.certs[who]), who="alice")


def test_admin_creates_sets_and_revokes_a_sub_ca(joint):
    j = joint
    p = j.ok("ca", "create-sub", "issuing", "--parent", "root", *SUB, "--token", j.hsm, "--backup-allowed",
             "--json", who="alice")
    assert json.loads(p.stdout)["status"] == "active"
    [(actor, d)] = [(a, d) for a, d in audit(j, "ca.created") if d.get("kind") == "subordinate"]
    assert actor.startswith("alice (operator ") and d["operator"]["name"] == "alice"
    # the sub-CA's certificate, issued inside the same operation, names alice too (no second signature)
    serial = j.sql("SELECT serial FROM certificates WHERE profile = 'sub-ca'")[0][0]
    issued = j.sql("SELECT actor FROM audit_log WHERE event = 'certificate.issued' AND target = :s", s=serial)
    assert issued and all(a.startswith("alice (operator ") for (a,) in issued)

    j.ok("ca", "set", "issuing", "--crl-url", "http://crl.example.cn/issuing.crl", "--ocsp-url",
         "http://ocsp.example.cn/", who="alice")
    assert j.sql("SELECT crl_url, ocsp_url FROM cas WHERE name = 'issuing'") == [
        ("http://crl.example.cn/issuing.crl", "http://ocsp.example.cn/")]
    actor, d = audit(j, "ca.settings_changed")[-1]
    assert actor.startswith("alice (operator ") and d["crl_url"] == "http://crl.example.cn/issuing.crl"

    # a root has no parent to revoke it: refused, nothing changed
    before = counts(j)
    assert_refused(j, j.run("ca", "revoke", "root", "--reason", "keyCompromise", who="alice"), "root")
    assert counts(j) == before

    p = j.ok("ca", "revoke", "issuing", "--reason", "cessationOfOperation", who="alice")
    assert "revoked" in p.stdout
    assert j.sql("SELECT status FROM cas WHERE name = 'issuing'") == [("revoked",)]
    assert j.sql("SELECT status, revocation_reason FROM certificates WHERE serial = :s", s=serial) == [
        ("revoked", "cessationOfOperation")]
    actor, d = audit(j, "certificate.revoked")[-1]
    assert actor.startswith("alice (operator ") and d["subordinate_ca"] == "issuing"
    # revoked once: a second revocation is refused, and the revoked CA issues nothing more
    assert j.run("ca", "revoke", "issuing", who="alice").returncode != 0
    p = j.run("cert", "issue", "--ca", "issuing", "--profile", "enterprise-sign", "--csr", str(j.csr("Late")),
              who="alice")
    assert p.returncode != 0


@pytest.mark.parametrize("role", ["ra-officer", pytest.param("auditor", marks=pytest.mark.slow), None])
def test_others_are_refused_the_ca_side(joint, role):
    """An ra-officer (bob), an auditor (dave) and anyone without --as: every CA-side command is
    refused, exit 3, one line, audited (auth.refused naming the card's operator), nothing changed."""
    j = joint
    j.ok("ca", "create-sub", "issuing", "--parent", "root", *SUB, "--token", j.hsm, who="alice")
    if role == "auditor":
        add_admin(j, "dave", "auditor")
    who = {"ra-officer": "bob", "auditor": "dave", None: None}[role]
    path, _ = profile_file(j, "customs-sign")
    j.ok("profile", "add", str(path), who="alice")
    other, _ = profile_file(j, "agency-extra")
    commands = [
        ("ca", "create-sub", "second", "--parent", "root", *SUB, "--token", j.hsm),
        ("ca", "create-root", "root2", "--subject", "C=CN,O=X,CN=Root 2", "--key-type", "ec-p256", "--token", j.hsm),
        ("ca", "create-sub", "ext", "--csr-out", str(j.dir / "ext.csr"), *SUB, "--token", j.hsm),
        ("ca", "set", "root", "--crl-url", "http://crl.example.cn/root.crl"),
        ("ca", "set", "issuing", "--key", f"pkcs11:token={j.hsm};object=ca-root"),
        ("ca", "revoke", "issuing", "--reason", "keyCompromise"),
        ("profile", "add", str(other)),
        ("profile", "add", str(path), "--replace"),
        ("profile", "remove", "customs-sign"),
    ]
    for args in commands:
        before = counts(j)
        refusals = len(audit(j, "auth.refused"))
        p = j.run(*args, who=who)
        assert_refused(j, p, *(("--as",) if who is None else (who,)))
        assert counts(j) == before, args
        assert not (j.dir / "ext.csr").exists()
        got = audit(j, "auth.refused")
        assert len(got) == refusals + 1, args
        if who is not None:
            assert got[-1][1]["operator"]["name"] == who
    assert (j.home / "profiles" / "customs-sign.toml").read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_admin_adds_replaces_and_removes_profiles(joint):
    j = joint
    path, text = profile_file(j, "customs-sign")
    p = j.ok("profile", "add", str(path), "--json", who="alice")
    assert json.loads(p.stdout)["action"] == "added"
    installed = j.home / "profiles" / "customs-sign.toml"
    assert installed.read_text(encoding="utf-8") == text
    assert "customs-sign" in j.ok("profile", "list").stdout
    actor, d = audit(j, "profile.added")[-1]
    assert actor.startswith("alice (operator ") and d["profile"] == "customs-sign" and d["kind"] == "end-entity"
    assert d["operator"]["name"] == "alice"

    # a second add is refused (exit 2) unless --replace; --replace of a missing one too
    p = j.run("profile", "add", str(path), who="alice")
    assert p.returncode == 2 and "--replace" in p.stderr
    path2, text2 = profile_file(j, "customs-sign", "Customs signing, 2027")
    j.ok("profile", "add", str(path2), "--replace", who="alice")
    assert installed.read_text(encoding="utf-8") == text2
    assert audit(j, "profile.replaced")[-1][0].startswith("alice (operator ")
    missing, _ = profile_file(j, "nothing-here")
    assert j.run("profile", "add", str(missing), "--replace", who="alice").returncode == 2

    # what the strict loader refuses is never installed (exit 2), nor a built-in's name
    bad = j.dir / "bad-profile.toml"
    bad.write_text(text + "\nunknown_key = 1\n", encoding="utf-8")
    before = counts(j)
    p = j.run("profile", "add", str(bad), who="alice")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    builtin = j.dir / "enterprise-sign.toml"
    builtin.write_text(text, encoding="utf-8")
    assert j.run("profile", "add", str(builtin), who="alice").returncode == 2
    assert counts(j) == before

    # in use by a CA or by an office: refused (exit 3); once out of their lists, removed
    j.ok("ca", "set", "root", "--profiles", "enterprise-sign,customs-sign", who="alice")
    p = j.run("profile", "remove", "customs-sign", who="alice")
    assert_refused(j, p, "CA root")
    j.ok("ca", "set", "root", "--profiles", "", who="alice")
    j.ok("office", "set", "customs", "--profile", "enterprise-sign", "--profile", "customs-sign", who="alice")
    assert_refused(j, j.run("profile", "remove", "customs-sign", who="alice"), "office customs")
    assert installed.exists()
    j.ok("office", "set", "customs", "--profile", "enterprise-sign", who="alice")
    j.ok("profile", "remove", "customs-sign", who="alice")
    assert not installed.exists()
    actor, d = audit(j, "profile.removed")[-1]
    assert actor.startswith("alice (operator ") and d["profile"] == "customs-sign"
    assert j.run("profile", "remove", "customs-sign", who="alice").returncode == 2  # gone


def _external_ca(j: JointCA) -> tuple:
    key, cert = j.dir / "ext-root.key", j.dir / "ext-root.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", "/C=CN/O=Ministry/CN=Ministry Root",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return key, cert


def test_admin_imports_an_external_parents_certificate(joint):
    j = joint
    csr = j.dir / "agency.csr"
    j.ok("ca", "create-sub", "agency", "--csr-out", str(csr), *SUB, "--token", j.hsm, who="alice")
    actor, d = audit(j, "ca.csr_created")[-1]
    assert actor.startswith("alice (operator ")
    key, root = _external_ca(j)
    ext = j.dir / "ca.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    issued = j.dir / "agency.pem"
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(root), "-CAkey", str(key),
                    "-CAcreateserial", "-out", str(issued), "-days", "365", "-extfile", str(ext)],
                   check=True, capture_output=True)
    chain = j.dir / "agency-chain.pem"
    chain.write_bytes(issued.read_bytes() + root.read_bytes())
    before = counts(j)
    assert_refused(j, j.run("ca", "import-cert", "agency", str(chain), who="bob"), "bob")
    assert_refused(j, j.run("ca", "import-cert", "agency", str(chain)), "--as")
    assert counts(j) == before
    j.ok("ca", "import-cert", "agency", str(chain), who="alice")
    assert j.sql("SELECT status FROM cas WHERE name = 'agency'") == [("active",)]
    assert audit(j, "ca.certificate_imported")[-1][0].startswith("alice (operator ")
    # a CA certified outside is revoked outside
    assert_refused(j, j.run("ca", "revoke", "agency", who="alice"), "external")


def test_token_enroll_and_renew_issue_as_the_operator(joint):
    """enroll/renew --ca issue through the local CA as the operator of --as: the officer's
    certificate records the office; without --as the issuance is refused and the new key removed."""
    j = joint
    card = f"{j.tag}-zhang"
    j.init_token(card)  # the enterprise's card, in the joint CA's token directory
    enroll = ("token", "enroll", "--token", card, "--label", "sign", "--key-type", "ec-p256", "--subject",
              "C=CN,O=示例科技有限公司,CN=张三", "--uscc", "91350100M000100Y43", "--ca", "root", "--profile",
              "enterprise-sign")
    before = counts(j)
    p = j.run(*enroll)
    assert_refused(j, p, "--as")
    assert counts(j) == before
    objects = json.loads(j.ok("token", "objects", "--token", card, "--json").stdout)
    assert not [o for o in objects if o["label"] == "sign"], objects  # the new key was removed

    p = j.ok(*enroll, "--json", who="bob")
    serial = json.loads(p.stdout)["serial"]
    assert j.sql("SELECT office, profile FROM certificates WHERE serial = :s", s=serial) == [
        ("customs", "enterprise-sign")]
    assert audit(j, "certificate.issued")[-1][0].startswith("bob (operator ")

    renew = ("token", "renew", "--key", f"pkcs11:token={card};object=sign", "--ca", "root", "--profile",
             "enterprise-sign", "--json")
    assert_refused(j, j.run(*renew, who="alice"), "alice")  # an admin is not an RA officer
    p = j.ok(*renew, who="bob")
    new = json.loads(p.stdout)["serial"]
    assert new != serial
    assert j.sql("SELECT office FROM certificates WHERE serial = :s", s=new) == [("customs",)]
