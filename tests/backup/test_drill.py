"""The disaster-recovery drill (issue #12, "Key backup and recovery"), end to end through the CLI,
on SQLite and on PostgreSQL:

1. a root and an issuing CA with --backup-allowed keys on an HSM token (SoftHSM2), an OCSP
   signer on the same token, certificates (one revoked), a CRL, pre-signed OCSP responses;
2. the CA keys backed up 2 of 3 to three custodians' cards (``unica key backup``), the database
   and the home backed up (``unica backup``);
3. a CRL published after the backup (its number the backup never saw);
4. the disaster: the home and the database are gone (``rm -rf``, ``DROP DATABASE``) and the HSM
   token is destroyed (``softhsm2-util --delete-token``);
5. recovery on a fresh home and database (``unica restore``) and a fresh token (``unica key
   restore`` with two custodians' cards, ``unica ca set NAME --key URI``), and a new OCSP
   signer (its key was on the destroyed token);
6. issuance, CRL numbering (strictly above every CRL made before the disaster), OCSP for
   old and new certificates and ``unica audit verify`` continue; openssl checks the new
   certificate and CRL against the CA certificates exported before the disaster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from tests.backup.helpers import Responder, Site, crl_number, drop_pg_database, new_pg_database
from tests.conftest import softhsm_init_token
from tests.keybackup.conftest import card_public_key, card_uri, make_cert, p11tool

CARD_LABEL = "custodian"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    if request.param == "sqlite":
        return "sqlite", None, lambda: None
    base = request.getfixturevalue("pg_url")
    return "postgresql", base, lambda: new_pg_database(base)


def _cards(work, tag: str) -> tuple[list[str], list]:
    """Three custodians' cards (SoftHSM2 tokens with an EC derive key) and their certificates."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer_key = ec.generate_private_key(ec.SECP256R1())
    cards, certs = [], []
    for i in (1, 2, 3):
        card = f"drc{i}-{tag}"
        softhsm_init_token(card)
        p11tool(card, "--keypairgen", "--key-type", "EC:prime256v1", "--usage-derive", "--label", CARD_LABEL,
                "--id", "01")
        pub = card_public_key(card, work / f"{card}.pub.der")
        f = work / f"custodian{i}.pem"
        f.write_bytes(make_cert(pub, f"Custodian {i} {tag}", issuer_key).public_bytes(serialization.Encoding.PEM))
        cards.append(card)
        certs.append(f)
    return cards, certs


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def test_disaster_recovery_drill(backend, tmp_path):
    kind, pg_base, fresh_db = backend
    tag = uuid.uuid4().hex[:6]
    work = tmp_path / "work"
    work.mkdir()
    hsm = f"drh-{tag}"
    softhsm_init_token(hsm)
    cards, custodians = _cards(work, tag)
    custodian_args = [a for f in custodians for a in ("--custodian", str(f))]

    # 1. the CA as it runs before the disaster
    old = Site(tmp_path / "home", work, fresh_db())
    root, sub = f"drroot-{tag}", f"drsub-{tag}"
    old.ok("init")
    old.ok("ca", "create-root", root, "--subject", f"C=CN,O=口岸联合认证,CN=Drill Root {tag}", "--key-type", "ec-p384",
           "--token", hsm, "--backup-allowed", "--crl-url", "http://crl.port.example/root.crl")
    old.ok("ca", "create-sub", sub, "--parent", root, "--subject", f"C=CN,O=口岸联合认证,CN=Drill Issuing {tag}",
           "--key-type", "ec-p256", "--token", hsm, "--backup-allowed",
           "--crl-url", "http://crl.port.example/sub.crl", "--ocsp-url", "http://ocsp.port.example/")
    root_pem, sub_pem = old.export(root), old.export(sub)
    chain = work / "chain.pem"
    chain.write_text(sub_pem.read_text() + root_pem.read_text())
    kept = old.issue(sub, "Kept Declarant")
    revoked = old.issue(sub, "Revoked Declarant")
    old.ok("cert", "revoke", revoked["serial"], "--reason", "keyCompromise")
    before = old.crl(sub, "before.crl")
    old.ok("ocsp", "signer", "--ca", sub, "--token", hsm)
    old.ok("ocsp", "presign")

    # 2. the backups: the CA keys to the custodians (2 of 3), then the database and the home
    key_backups = {}
    for ca in (root, sub):
        key_backups[ca] = work / f"{ca}.keybackup"
        old.ok("key", "backup", "--ca", ca, *custodian_args, "--threshold", "2", "--out", str(key_backups[ca]))
    db_backup = tmp_path / "db-backup"
    manifest = json.loads(old.ok("backup", "--out", str(db_backup), "--json").stdout)

    # 3. life goes on until the disaster: a CRL is published (the backup never sees its number)
    published = old.crl(sub, "published.crl")
    assert published > before

    # 4. the disaster: the home, the database and the HSM token are gone
    shutil.rmtree(old.home)
    if kind == "postgresql":
        drop_pg_database(pg_base, old.db)
    subprocess.run(["softhsm2-util", "--delete-token", "--token", hsm], check=True, capture_output=True)

    # 5. recovery: a fresh home and database, a fresh token, two custodians
    new = Site(tmp_path / "new-home", work, fresh_db())
    restored = json.loads(new.ok("restore", "--from", str(db_backup), "--json").stdout)
    assert restored["crl_numbers"][sub]["backup"] == before
    assert new.run("crl", "generate", "--ca", sub, "--out", str(work / "no-key.crl")).returncode != 0  # no key yet
    new_hsm = f"drn-{tag}"
    softhsm_init_token(new_hsm)
    for ca in (root, sub):
        r = json.loads(new.ok("key", "restore", str(key_backups[ca]), "--token", new_hsm,
                              "--share-key", card_uri(cards[0]), "--share-key", card_uri(cards[2]), "--json").stdout)
        assert r["ca"] == ca and f"token={new_hsm}" in r["key_uri"]
        new.ok("ca", "set", ca, "--key", r["key_uri"])
    # the OCSP signer's key was on the destroyed token: a new signer, then fresh responses
    new.ok("ocsp", "signer", "--ca", sub, "--token", new_hsm)
    new.ok("ocsp", "presign")

    # 6. everything continues
    # CRL numbering: strictly above the CRLs made before the backup and after it
    after = new.crl(sub, "after-restore.crl")
    assert after > published > before
    v = _openssl("crl", "-inform", "DER", "-in", str(work / "after-restore.crl"), "-CAfile", str(chain), "-noout")
    assert v.returncode == 0 and "verify OK" in v.stdout + v.stderr, v.stdout + v.stderr
    root_crl = new.crl(root, "root-after.crl")
    assert root_crl > {c["name"]: c["crl_number"] for c in manifest["cas"]}[root]
    # issuance, checked by openssl against the CA certificates exported before the disaster
    fresh = new.issue(sub, "After The Drill")
    v = _openssl("verify", "-CAfile", str(root_pem), "-untrusted", str(sub_pem), str(fresh["pem"]))
    assert v.returncode == 0, v.stdout + v.stderr
    # OCSP: old (good, revoked: pre-signed by the new signer) and new certificates (none stored for
    # it: signed live with the new signer's key, on the new token)
    with Responder(new, "--ca", sub) as node:
        answers = {k: node.ask(sub_pem, chain, c["pem"]) for k, c in
                   (("kept", kept), ("revoked", revoked), ("fresh", fresh))}
    assert "Response verify OK" in answers["kept"] and ": good" in answers["kept"], answers
    assert ": revoked" in answers["revoked"] and "Reason: keyCompromise" in answers["revoked"], answers
    assert "Response verify OK" in answers["fresh"] and ": good" in answers["fresh"], answers
    # the audit log: one chain across the backup, the restore and the key recovery
    assert new.ok("audit", "verify").returncode == 0
    entries = json.loads(new.ok("audit", "show", "--json").stdout)
    ids = {}
    for e in entries:
        ids.setdefault(e["event"], []).append(e["id"])
    assert len(ids["key.backup"]) == 2 and len(ids["home.restored"]) == 1 and len(ids["key.restore"]) == 2
    assert max(ids["key.backup"]) < ids["home.restored"][0] < min(ids["key.restore"])
    assert ids["home.restored"][0] == manifest["audit_head"]["id"] + 1
    assert crl_number(work / "after-restore.crl") == after
