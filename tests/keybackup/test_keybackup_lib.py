"""The key backup library (unica.ca.keybackup, unica.ca.envelope, unica.hsm.wrap) called directly:
SoftHSM2 tokens as the HSM, custodians with software keys and with card keys, openssl as the
peer of the CMS envelopes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from tests.conftest import TEST_PIN
from tests.keybackup.conftest import card_uri, make_cert
from unica.errors import (InputError, KeyBackupRefused, KeyNotExtractable, MalformedInput, PolicyViolation,
                          SharesMissing)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'unica.db'}"
    import uuid

    from sqlalchemy import create_engine, text

    base = request.getfixturevalue("pg_url")
    dbname = "unica_kb_" + uuid.uuid4().hex[:10]
    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f"CREATE DATABASE {dbname}"))
    eng.dispose()
    return base.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture
def lib(ceremony, db_url, tmp_path, monkeypatch):
    """A store (SQLite, PostgreSQL) with a backup-allowed root on a fresh token, and three
    software custodians."""
    from unica.ca.authority import KeySpec, create_root
    from unica.store import open_store

    monkeypatch.setenv("UNICA_HOME", str(tmp_path / "home"))
    store = open_store(db_url, create=True)
    hsm = ceremony.new_token("kbl")
    create_root(store, "r", "C=CN,O=Lib,CN=Lib Root", KeySpec(key_type="ec-p256", token=hsm, backup_allowed=True,
                                                               pin=TEST_PIN))
    keys = [ec.generate_private_key(ec.SECP384R1() if i == 1 else ec.SECP256R1()) for i in range(3)]
    certs = [make_cert(k.public_key(), f"Lib Custodian {i}", ceremony.issuer_key) for i, k in enumerate(keys)]
    yield store, hsm, keys, certs
    store.dispose()


def _events(store, event):
    from unica.store import models as m

    with store.read() as s:
        return [r for r in s.execute(select(m.AuditEntry).where(m.AuditEntry.event == event)).scalars()]


def test_backup_restore_set_key(ceremony, lib):
    from unica.ca.authority import ca_info
    from unica.ca.keybackup import backup_ca_key, load_backup, restore_ca_key, set_ca_key
    from unica.hsm import list_keys

    store, hsm, keys, certs = lib
    assert ca_info(store, "r")["backup_allowed"] is True
    written = []
    data = backup_ca_key(store, "r", certs, 2, pin=TEST_PIN, write=written.append)
    assert written == [data]
    b = load_backup(data)
    assert (b.ca_name, b.threshold, b.total, b.key_type) == ("r", 2, 3, "ec-p256")
    new = ceremony.new_token("kblr")
    # two software custodians (P-384 and P-256), bare token label as the target
    r = restore_ca_key(data, new, [keys[1], keys[2]], store=store, pin=TEST_PIN)
    assert r["ca"] == "r" and r["key_uri"].startswith(f"pkcs11:token={new};object=ca-r;id=")
    assert [k.label for k in list_keys(new, pin=TEST_PIN)] == ["ca-r"]
    info = set_ca_key(store, "r", r["key_uri"], pin=TEST_PIN)
    assert info["key_uri"] == r["key_uri"]
    for ev in ("key.backup", "key.restore", "ca.key_changed"):
        (e,) = _events(store, ev)
        assert e.details and "envelope" not in json.dumps(e.details) and "wrapped" not in json.dumps(e.details)
    (e,) = _events(store, "key.backup")
    assert e.details["threshold"] == 2 and len(e.details["custodians"]) == 3
    # the key restored a second time onto the same token under another label: refused (same id)
    from unica.errors import KeyExists

    with pytest.raises(KeyExists):
        restore_ca_key(data, new, [keys[0], keys[1]], pin=TEST_PIN, label="again")


def test_card_and_software_custodians_mix(ceremony, lib):
    """One share opened on a SoftHSM2 card (ECDH on the token), one by a software key."""
    from unica.ca.keybackup import backup_ca_key, restore_ca_key
    from unica.hsm import load_key

    store, hsm, keys, certs = lib
    card_cert = x509.load_pem_x509_certificate(ceremony.cert_files[1].read_bytes())
    data = backup_ca_key(store, "r", [certs[0], card_cert], 2, pin=TEST_PIN)
    new = ceremony.new_token("kblm")
    card = load_key(card_uri(ceremony.cards[1]), pin=TEST_PIN)
    r = restore_ca_key(data, f"pkcs11:token={new}", [card, keys[0]], pin=TEST_PIN, label="mixed")
    assert "object=mixed" in r["key_uri"]


def test_fewer_shares_wrong_key_and_a_foreign_certificate(ceremony, lib):
    from unica.ca.keybackup import backup_ca_key, restore_ca_key
    from unica.hsm import list_keys

    store, hsm, keys, certs = lib
    data = backup_ca_key(store, "r", certs, 3, pin=TEST_PIN)
    new = ceremony.new_token("kblf")
    with pytest.raises(SharesMissing) as e:
        restore_ca_key(data, new, [keys[0], keys[1]], pin=TEST_PIN)
    assert (e.value.threshold, e.value.given, e.value.missing, e.value.exit_code) == (3, 2, 1, 3)
    assert "1 missing" in str(e.value)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KeyBackupRefused, match="wrong card"):
        restore_ca_key(data, new, [keys[0], keys[1], stranger], pin=TEST_PIN)
    # a file whose CA certificate was swapped for another CA's: the key unwraps but is not that
    # certificate's key -- removed from the token and refused
    from unica.ca.authority import KeySpec, create_root, export_ca

    create_root(store, "other", "C=CN,O=Lib,CN=Other Root", KeySpec(key_type="ec-p256", token=hsm, pin=TEST_PIN))
    doc = json.loads(data)
    doc["ca"]["certificate_pem"] = export_ca(store, "other")
    forged = json.dumps(doc).encode()
    with pytest.raises(KeyBackupRefused, match="not CA 'r'"):
        restore_ca_key(forged, new, keys, pin=TEST_PIN)
    assert list_keys(new, pin=TEST_PIN) == []
    # with the store, the same file is refused before any card is used: not this CA's certificate
    with pytest.raises(KeyBackupRefused, match="another CA"):
        restore_ca_key(forged, new, keys, store=store, pin=TEST_PIN)
    # a damaged wrapped key does not unwrap
    doc = json.loads(data)
    import base64

    w = bytearray(base64.b64decode(doc["wrap"]["wrapped_key"]))
    w[5] ^= 1
    doc["wrap"]["wrapped_key"] = base64.b64encode(bytes(w)).decode()
    with pytest.raises(PolicyViolation):
        restore_ca_key(json.dumps(doc).encode(), new, keys, pin=TEST_PIN)
    assert list_keys(new, pin=TEST_PIN) == []


def test_refusals_before_the_token(ceremony, lib):
    from unica.ca.authority import KeySpec, create_root
    from unica.ca.keybackup import backup_ca_key, check_custodian

    store, hsm, keys, certs = lib
    with pytest.raises(InputError, match="--threshold 4"):
        backup_ca_key(store, "r", certs, 4, pin=TEST_PIN)
    with pytest.raises(InputError, match="at least 2"):
        backup_ca_key(store, "r", certs[:1], 1, pin=TEST_PIN)
    expired = make_cert(keys[0].public_key(), "Old", ceremony.issuer_key, days=1)
    with pytest.raises(KeyBackupRefused, match="expired"):
        check_custodian(expired, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))
    create_root(store, "fixed", "C=CN,O=Lib,CN=Fixed", KeySpec(key_type="ec-p256", token=hsm, pin=TEST_PIN))
    with pytest.raises(KeyNotExtractable, match="CKR_KEY_UNEXTRACTABLE"):
        backup_ca_key(store, "fixed", certs, 2, pin=TEST_PIN)
    assert _events(store, "key.backup") == []


def test_load_backup_refuses_what_it_does_not_know(lib):
    from unica.ca.keybackup import backup_ca_key, load_backup

    store, hsm, keys, certs = lib
    good = json.loads(backup_ca_key(store, "r", certs, 2, pin=TEST_PIN))
    for doc, needle in ((None, "not JSON"), ({"format": "x"}, "format"),
                        ({**good, "version": 2}, "version 2"), ({**good, "threshold": 4}, "threshold"),
                        ({**good, "custodians": good["custodians"][:1]}, "threshold"),
                        ({**good, "wrap": {**good["wrap"], "mechanism": "CKM_DES3_ECB"}}, "wrap mechanism")):
        raw = b"\xff not json" if doc is None else json.dumps(doc).encode()
        with pytest.raises(MalformedInput, match=needle):
            load_backup(raw)


def test_envelopes_interoperate_with_openssl_both_ways(ceremony, tmp_path):
    """openssl cms -encrypt to custodian 1's certificate opens on custodian 1's card; what unica
    seals opens with openssl cms -decrypt (the CLI test checks the backup's own envelopes too)."""
    from unica.ca.envelope import open_envelope, seal_envelope
    from unica.hsm import load_key

    msg = tmp_path / "msg"
    msg.write_bytes(b"share for the card \x00\x01\x02")
    env = tmp_path / "env.der"
    subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(msg), "-binary", "-recip",
                    str(ceremony.cert_files[0]), "-keyopt", "ecdh_kdf_md:sha256", "-outform", "DER", "-out", str(env)],
                   check=True, capture_output=True)
    card = load_key(card_uri(ceremony.cards[0]), pin=TEST_PIN)
    assert open_envelope(env.read_bytes(), card) == msg.read_bytes()
    with pytest.raises(KeyBackupRefused, match="does not open"):
        open_envelope(env.read_bytes(), load_key(card_uri(ceremony.cards[1]), pin=TEST_PIN), who="card 2")
    cert = x509.load_pem_x509_certificate(ceremony.cert_files[0].read_bytes())
    env.write_bytes(seal_envelope(b"\x00back to openssl", cert))
    p = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(env), "-inkey",
                        str(ceremony.soft_key_pem), "-recip", str(ceremony.cert_files[0])], capture_output=True)
    assert p.returncode == 0 and p.stdout == b"\x00back to openssl", p.stderr
    with pytest.raises(MalformedInput):
        open_envelope(b"\x30\x03\x02\x01\x00", card)


def test_token_ecdh_needs_derive(ceremony):
    """A signing-only token key (unica's own, CKA_DERIVE false) is no custodian card."""
    from unica.errors import UnsupportedKeyType
    from unica.hsm import generate_key

    k = generate_key(f"pkcs11:token={ceremony.hsm};object=kb-sign-only", "ec-p256", pin=TEST_PIN)
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(UnsupportedKeyType, match="CKA_DERIVE"):
        k.exchange(ec.ECDH(), peer)
