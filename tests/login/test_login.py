"""The portal's side of card login (unica.portal.login) against a real CA database: challenges
issued and consumed, signatures checked with the certificate's key, certificates checked with
unica.service.identity.check_certificate, LoginFacts built, every outcome audited.

The signatures here are made in this process with software keys whose certificates the CA issued
(the card itself signs in tests/login/test_agent.py, through the agent): what is under test is
the check, and a software key lets one test revoke its own certificate without touching the card.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.login.conftest import ORG, PORTAL, USCC
from unica.errors import LoginRefused, PolicyViolation
from unica.portal.challenge import make_challenge, nonce_sha256, parse_challenge
from unica.portal.facts import ACR_CARD, LoginFacts
from unica.portal.login import issue_challenge, verify_login

SOURCE = "192.0.2.7"


def _key(path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


def _sign(key, text: str, *, pss: bool = False) -> bytes:
    data = text.encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
        return key.sign(data, ec.ECDSA(h))
    if pss:
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256())
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@pytest.fixture(scope="module")
def store(login_ca):
    return login_ca.store()


@pytest.fixture(scope="module")
def holder(login_ca):
    """(private key, certificate DER) of an enterprise-auth certificate with a software key."""
    keyf, _, der = login_ca.software_cert("李四")
    return _key(keyf), der


def _audits(store, event: str, after: int = 0) -> list:
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        return list(s.scalars(select(m.AuditEntry).where(m.AuditEntry.event == event, m.AuditEntry.id > after)
                              .order_by(m.AuditEntry.id)))


def _last_audit_id(store) -> int:
    from sqlalchemy import func, select

    from unica.store import models as m

    with store.read() as s:
        return s.scalar(select(func.max(m.AuditEntry.id))) or 0


def _refused(store, slug: str, **kw) -> LoginRefused:
    before = _last_audit_id(store)
    with pytest.raises(LoginRefused) as e:
        verify_login(store, **{"origin": PORTAL, "source": SOURCE, **kw})
    assert e.value.slug == slug, (e.value.slug, str(e.value))
    assert isinstance(e.value, PolicyViolation) and e.value.exit_code == 3
    rows = _audits(store, "login.refused", before)
    assert [r.details["reason"] for r in rows] == [slug]
    assert rows[0].details["source"] == SOURCE
    sig = kw.get("signature") or b""
    if sig:
        assert base64.b64encode(sig).decode() not in str(rows[0].details) and sig.hex() not in str(rows[0].details)
    return e.value


def test_login_gives_the_facts_and_is_audited(store, holder):
    key, der = holder
    text = issue_challenge(store, PORTAL, source=SOURCE)
    ch = parse_challenge(text)
    sig = _sign(key, text)
    before = _last_audit_id(store)
    facts = verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der, source=SOURCE)
    cert = x509.load_der_x509_certificate(der)
    assert isinstance(facts, LoginFacts)
    assert (facts.uscc, facts.enterprise, facts.person) == (USCC, ORG, "李四")
    assert facts.cert_serial == format(cert.serial_number, "x")
    assert facts.cert_issuer == cert.issuer.rfc4514_string() == "CN=Port Root,O=Port Joint CA,C=CN"
    assert facts.cert_sha256 == hashlib.sha256(der).hexdigest()
    assert (facts.ca, facts.office, facts.roles, facts.method) == ("root", None, ("enterprise",), "card-agent")
    assert facts.acr == ACR_CARD and facts.auth_time.tzinfo is not None
    assert abs((facts.auth_time - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60
    [entry] = _audits(store, "login.succeeded", before)
    assert entry.target == facts.cert_serial and entry.ca_name == "root"
    assert entry.details["source"] == SOURCE and entry.details["serial"] == facts.cert_serial
    assert entry.details["algorithm"] == "ecdsa-sha256"
    assert entry.details["nonce_sha256"] == nonce_sha256(ch.nonce)
    assert base64.b64encode(sig).decode() not in str(entry.details) and sig.hex() not in str(entry.details)
    assert ch.nonce not in str(entry.details)
    # the database keeps the nonce's hash only, and the row is used
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        row = s.scalars(select(m.LoginChallenge).where(m.LoginChallenge.nonce_sha256 == nonce_sha256(ch.nonce))).one()
        assert (row.origin, row.source, row.expires_at, row.created_at) == (PORTAL, SOURCE, ch.expires, ch.issued)
        assert row.used_at is not None


@pytest.mark.parametrize("kind,pss,algorithm", [("ec384", False, "ecdsa-sha384"), ("rsa", False, "rsa-pkcs1v15-sha256"),
                                                ("rsa", True, "rsa-pss-sha256")])
def test_other_key_types(login_ca, store, kind, pss, algorithm):
    keyf, _, der = login_ca.software_cert(f"王五-{kind}", key=kind)
    text = issue_challenge(store, PORTAL, source=SOURCE)
    before = _last_audit_id(store)
    facts = verify_login(store, origin=PORTAL, challenge_text=text, signature=_sign(_key(keyf), text, pss=pss),
                         cert_der=der, source=SOURCE)
    assert facts.person == f"王五-{kind}"
    assert _audits(store, "login.succeeded", before)[0].details["algorithm"] == algorithm


def test_replay_is_refused(store, holder):
    key, der = holder
    text = issue_challenge(store, PORTAL, source=SOURCE)
    sig = _sign(key, text)
    verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der, source=SOURCE)
    _refused(store, "replayed", challenge_text=text, signature=sig, cert_der=der)
    # a fresh signature over the same text is the same replay
    _refused(store, "replayed", challenge_text=text, signature=_sign(key, text), cert_der=der)


def test_concurrent_uses_one_wins(login_ca, holder):
    key, der = holder
    stores = [login_ca.store() for _ in range(6)]
    text = issue_challenge(stores[0], PORTAL, source=SOURCE)
    sig = _sign(key, text)
    results, go = [], threading.Barrier(len(stores))

    def use(st):
        go.wait()
        try:
            results.append(verify_login(st, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der,
                                        source=SOURCE))
        except LoginRefused as e:
            results.append(e.slug)

    threads = [threading.Thread(target=use, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r if isinstance(r, str) else "ok" for r in results) == ["ok"] + ["replayed"] * 5


def test_expired_challenge_is_refused(store, holder):
    key, der = holder
    now = dt.datetime.now(dt.timezone.utc)
    text = issue_challenge(store, PORTAL, source=SOURCE, ttl=60, now=now)
    _refused(store, "expired", challenge_text=text, signature=_sign(key, text), cert_der=der,
             now=now + dt.timedelta(minutes=5))
    # the same challenge within its time is good (the refusal did not use it up)
    facts = verify_login(store, origin=PORTAL, challenge_text=text, signature=_sign(key, text), cert_der=der,
                         source=SOURCE, now=now + dt.timedelta(seconds=30))
    assert facts.auth_time == now + dt.timedelta(seconds=30)


def test_challenge_for_another_origin_is_refused(store, holder):
    key, der = holder
    text = issue_challenge(store, "https://other-portal.example.cn", source=SOURCE)
    _refused(store, "wrong-origin", challenge_text=text, signature=_sign(key, text), cert_der=der)
    # nor does this portal take a text that names it but was handed out for another
    mine = text.replace("https://other-portal.example.cn", PORTAL)
    _refused(store, "unknown-challenge", challenge_text=mine, signature=_sign(key, mine), cert_der=der)


def test_challenge_never_issued_is_refused(store, holder):
    key, der = holder
    text, _ = make_challenge(PORTAL, dt.datetime.now(dt.timezone.utc), 120)
    _refused(store, "unknown-challenge", challenge_text=text, signature=_sign(key, text), cert_der=der)
    # an issued nonce with altered times (re-signed by the holder) is not what was handed out
    text = issue_challenge(store, PORTAL, source=SOURCE)
    longer = text.rsplit("\n", 1)[0] + "\nexpires: " + \
        (parse_challenge(text).issued + dt.timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _refused(store, "unknown-challenge", challenge_text=longer, signature=_sign(key, longer), cert_der=der)


def test_tampered_text_is_refused(store, holder):
    key, der = holder
    text = issue_challenge(store, PORTAL, source=SOURCE)
    sig = _sign(key, text)
    ch = parse_challenge(text)
    other_nonce = ch.nonce[:-2] + ("AA" if ch.nonce[-2:] != "AA" else "BA")
    for altered in (text.replace(ch.nonce, other_nonce),
                    text.replace(ch.expires.strftime("%H:%M:%S"), (ch.expires + dt.timedelta(seconds=60))
                                 .strftime("%H:%M:%S"))):
        _refused(store, "bad-signature", challenge_text=altered, signature=sig, cert_der=der)
    bad = bytearray(sig)
    bad[-1] ^= 1
    _refused(store, "bad-signature", challenge_text=text, signature=bytes(bad), cert_der=der)
    # none of that used the challenge up
    verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der, source=SOURCE)


def test_signature_by_another_key_is_refused(login_ca, store, holder):
    _, der = holder
    text = issue_challenge(store, PORTAL, source=SOURCE)
    stranger = ec.generate_private_key(ec.SECP256R1())
    _refused(store, "bad-signature", challenge_text=text, signature=_sign(stranger, text), cert_der=der)
    # another enterprise's key, with its own valid certificate, signing for this one's certificate
    other_key, _, other_der = login_ca.software_cert("赵六")
    _refused(store, "bad-signature", challenge_text=text, signature=_sign(_key(other_key), text), cert_der=der)
    # an RSA signature presented with an EC certificate
    _refused(store, "bad-signature", challenge_text=text,
             signature=_sign(rsa.generate_private_key(65537, 2048), text), cert_der=der)
    verify_login(store, origin=PORTAL, challenge_text=text, signature=_sign(_key(other_key), text),
                 cert_der=other_der, source=SOURCE)


def test_revoked_certificate_is_refused(login_ca, store):
    keyf, _, der = login_ca.software_cert("钱七")
    key = _key(keyf)
    text = issue_challenge(store, PORTAL, source=SOURCE)
    verify_login(store, origin=PORTAL, challenge_text=text, signature=_sign(key, text), cert_der=der, source=SOURCE)
    serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
    login_ca.ok("cert", "revoke", serial, "--ca", "root", "--reason", "keyCompromise")
    text = issue_challenge(store, PORTAL, source=SOURCE)
    e = _refused(store, "certificate-refused", challenge_text=text, signature=_sign(key, text), cert_der=der)
    assert "revoked" in str(e)
    [entry] = _audits(store, "login.refused")[-1:]
    assert entry.details["serial"] == serial and entry.target == serial


def test_certificate_of_another_ca_is_refused(login_ca, store, tmp_path):
    import subprocess

    key = tmp_path / "self.key"
    pem = tmp_path / "self.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(pem), "-days", "30", "-utf8", "-subj",
                    f"/C=CN/O={ORG}/organizationIdentifier={USCC}/CN=张三", "-addext",
                    "keyUsage=critical,digitalSignature", "-addext", "extendedKeyUsage=clientAuth"],
                   check=True, capture_output=True)
    der = x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)
    text = issue_challenge(store, PORTAL, source=SOURCE)
    e = _refused(store, "certificate-refused", challenge_text=text, signature=_sign(_key(key), text), cert_der=der)
    assert "not issued by a CA of this service" in str(e)


def test_certificate_not_for_login_is_refused(login_ca, store):
    keyf, _, der = login_ca.software_cert("web", profile="tls-server", subject="/O=Port Joint CA/CN=web service",
                                          extra=("-addext", "subjectAltName=IP:127.0.0.1"))
    text = issue_challenge(store, PORTAL, source=SOURCE)
    e = _refused(store, "not-for-login", challenge_text=text, signature=_sign(_key(keyf), text), cert_der=der)
    assert "clientAuth" in str(e)


@pytest.mark.parametrize("what", ["garbage text", "not unica", "oversize text", "bad cert", "no cert", "huge sig",
                                  "no sig"])
def test_bad_format(store, holder, what):
    key, der = holder
    text = issue_challenge(store, PORTAL, source=SOURCE)
    sig = _sign(key, text)
    kw = {"challenge_text": text, "signature": sig, "cert_der": der}
    kw.update({"garbage text": {"challenge_text": "\x00\xff" * 10}, "not unica": {"challenge_text": "hello"},
               "oversize text": {"challenge_text": text + "x" * 4096}, "bad cert": {"cert_der": b"\x30\x03abc"},
               "no cert": {"cert_der": b""}, "huge sig": {"signature": b"\x30" * 5000},
               "no sig": {"signature": b""}}[what])
    _refused(store, "bad-format", **kw)


def test_expired_challenges_are_purged(store):
    from sqlalchemy import select

    from unica.store import models as m

    now = dt.datetime.now(dt.timezone.utc)
    recent = parse_challenge(issue_challenge(store, PORTAL, source=SOURCE, ttl=60, now=now - dt.timedelta(minutes=30)))
    old = parse_challenge(issue_challenge(store, PORTAL, source=SOURCE, ttl=60, now=now - dt.timedelta(hours=2)))

    def present(ch):
        with store.read() as s:
            return s.scalars(select(m.LoginChallenge.id)
                             .where(m.LoginChallenge.nonce_sha256 == nonce_sha256(ch.nonce))).first() is not None

    assert present(old) and present(recent)
    issue_challenge(store, PORTAL, source=SOURCE)
    assert not present(old) and present(recent)


def test_library_arguments(store):
    with pytest.raises(ValueError):
        issue_challenge(store, PORTAL, source=SOURCE, now=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        issue_challenge(store, PORTAL, source=SOURCE, ttl=3600)
    from unica.errors import ChallengeFormatError

    with pytest.raises(ChallengeFormatError):
        issue_challenge(store, "http://portal.example.cn", source=SOURCE)
