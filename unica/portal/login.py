"""Card login, the portal's side: hand out one-time challenges, check a signed one.

:func:`issue_challenge` makes a challenge for the portal's own origin
(:mod:`unica.portal.challenge`) and keeps only its nonce's SHA-256 (``login_challenges``).
:func:`verify_login` takes what the browser brings back from the local signing agent -- the
challenge text, the card's signature over exactly those bytes, the card's certificate -- and
returns the :class:`~unica.portal.facts.LoginFacts` of the login, or raises
:class:`~unica.errors.LoginRefused` with a slug. The checks, in order:

1. the text parses (``bad-format``) and names this portal's origin (``wrong-origin``);
2. the certificate is DER X.509 (``bad-format``) fit for authentication: keyUsage
   digitalSignature, and clientAuth if it has an extendedKeyUsage (``not-for-login``);
3. the signature over the text's bytes verifies with the certificate's key (``bad-signature``):
   ECDSA with SHA-256 on P-256 and SHA-384 on P-384, RSA (2048 bits or more) PKCS#1 v1.5 or
   PSS with SHA-256;
4. the certificate passes :func:`unica.service.identity.check_certificate` -- issued by a CA of
   this service and recorded there, valid, not revoked or on hold, its path valid for client
   authentication (``certificate-refused``);
5. the challenge was handed out by this portal (``unknown-challenge``), has not expired
   (``expired``) and was not used (``replayed``): it is marked used by a conditional UPDATE in
   the same transaction that writes ``login.succeeded``, so of two concurrent uses one wins.

A signature is checked before the challenge is touched, so whoever does not hold the card cannot
use up someone's challenge. Every outcome is audited (``login.succeeded`` / ``login.refused``
with the reason, the source address and the certificate's serial when known -- never the
signature).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from unica.errors import ChallengeFormatError, LoginRefused
from unica.portal.challenge import DEFAULT_TTL, make_challenge, nonce_sha256, parse_challenge
from unica.portal.facts import LoginFacts

log = logging.getLogger("unica.portal")

#: challenges that expired longer ago than this are deleted by :func:`issue_challenge`
PURGE_AFTER = dt.timedelta(hours=1)

#: the longest certificate and signature taken (bytes)
MAX_CERT_BYTES = 16384
MAX_SIGNATURE_BYTES = 1024

#: the portal's roles of a card login that is not an operator's (an operator's card: the operator's
#: roles, see :func:`unica.portal.views.operator_roles`)
ROLES = ("enterprise",)


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now


def issue_challenge(store, origin: str, *, source: str | None, ttl: dt.timedelta | float = DEFAULT_TTL,
                    now: dt.datetime | None = None) -> str:
    """A new challenge text for ``origin`` (the portal's own origin), valid for ``ttl``; its
    nonce's SHA-256 is recorded with ``source`` (the client's address). Challenges that expired
    more than :data:`PURGE_AFTER` ago are deleted in the same transaction."""
    from sqlalchemy import delete

    from unica.store import models as m

    now = _now(now)
    text, nonce = make_challenge(origin, now, ttl)
    ch = parse_challenge(text)
    with store.write() as s:
        s.execute(delete(m.LoginChallenge).where(m.LoginChallenge.expires_at < now - PURGE_AFTER))
        s.add(m.LoginChallenge(nonce_sha256=nonce_sha256(nonce), origin=ch.origin, source=_source(source),
                               created_at=ch.issued, expires_at=ch.expires))
    return text


def _source(source: str | None) -> str | None:
    return None if source is None else str(source)[:128]


def _load_certificate(cert_der: bytes):
    from cryptography import x509

    if not isinstance(cert_der, (bytes, bytearray)) or not cert_der or len(cert_der) > MAX_CERT_BYTES:
        raise LoginRefused("bad-format", f"the certificate is missing or larger than {MAX_CERT_BYTES} bytes")
    try:
        return x509.load_der_x509_certificate(bytes(cert_der))
    except ValueError:
        raise LoginRefused("bad-format", "the certificate is not DER X.509") from None


def _check_usage(cert) -> None:
    """keyUsage digitalSignature (required: a login certificate must say what it is for), and
    clientAuth if the certificate limits its purposes with an extendedKeyUsage."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise LoginRefused("not-for-login", "the certificate has no keyUsage (digitalSignature needed)") from None
    except ValueError:
        raise LoginRefused("bad-format", "the certificate's extensions cannot be read") from None
    if not ku.digital_signature:
        raise LoginRefused("not-for-login", "the certificate's keyUsage lacks digitalSignature")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    except ValueError:
        raise LoginRefused("bad-format", "the certificate's extensions cannot be read") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise LoginRefused("not-for-login", "the certificate's extendedKeyUsage lacks clientAuth")


def _check_signature(cert, data: bytes, signature: bytes) -> str:
    """Verify ``signature`` over ``data`` with the certificate's key; the algorithm's name."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if not isinstance(signature, (bytes, bytearray)) or not signature or len(signature) > MAX_SIGNATURE_BYTES:
        raise LoginRefused("bad-format", f"the signature is missing or larger than {MAX_SIGNATURE_BYTES} bytes")
    signature = bytes(signature)
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        raise LoginRefused("bad-signature", "the certificate's public key is not one unica can use for login") from None
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            h = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384()}.get(key.curve.name)
            if h is None:
                raise LoginRefused("bad-signature", f"EC curve {key.curve.name} is not taken for login "
                                                    f"(P-256 or P-384)")
            key.verify(signature, data, ec.ECDSA(h))
            return f"ecdsa-{h.name}"
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                raise LoginRefused("bad-signature", f"an RSA key of {key.key_size} bits is too small for login")
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
                return "rsa-pkcs1v15-sha256"
            except InvalidSignature:
                key.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                           hashes.SHA256())
                return "rsa-pss-sha256"
    except InvalidSignature:
        raise LoginRefused("bad-signature", "the signature does not verify with the certificate's key over the "
                                            "challenge") from None
    raise LoginRefused("bad-signature", f"a {type(key).__name__} key is not taken for login (EC P-256/P-384, RSA)")


def _attr(name, oid) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def verify_login(store, *, origin: str, challenge_text: str | bytes, signature: bytes, cert_der: bytes,
                 source: str | None, now: dt.datetime | None = None) -> LoginFacts:
    """Check one card login (see the module's description) and return its facts; refusals raise
    :class:`~unica.errors.LoginRefused` (a PolicyViolation, exit 3) and are audited."""
    now = _now(now)
    source = _source(source)
    serial = None
    try:
        try:
            ch = parse_challenge(challenge_text)
        except ChallengeFormatError as e:
            raise LoginRefused("bad-format", str(e)) from None
        if ch.origin != origin:
            raise LoginRefused("wrong-origin", f"the challenge names the origin {ch.origin}, not this portal's "
                                               f"({origin})")
        cert = _load_certificate(cert_der)
        serial = format(cert.serial_number, "x")
        _check_usage(cert)
        algorithm = _check_signature(cert, ch.data, signature)
        checked = _check_certificate(store, bytes(cert_der), source, now)
        facts = _facts(store, cert, bytes(cert_der), checked, now)
        _consume(store, ch, facts, algorithm, source, now)
    except LoginRefused as e:
        _audit_refusal(store, e, source=source, serial=serial, origin=origin)
        raise
    return facts


def _check_certificate(store, cert_der: bytes, source, now):
    from unica.service.identity import Client, check_certificate
    from unica.service.problems import Problem

    try:
        return check_certificate(store, Client(source, cert_der), now)
    except Problem as p:
        raise LoginRefused("certificate-refused", str(p.detail or p.title)) from None


def verify_tls_login(store, *, cert_der: bytes | None, source: str | None,
                     now: dt.datetime | None = None) -> LoginFacts:
    """Check a login with the TLS client certificate the connection carried (the browser holds
    the card through its PKCS#11 module, or a trusted proxy forwarded the certificate): the TLS
    handshake proved the key; the certificate must be fit for authentication and pass
    :func:`unica.service.identity.check_certificate`. Same facts as :func:`verify_login`, with
    method ``tls-client``; refusals raise :class:`~unica.errors.LoginRefused` (``bad-format`` for
    no certificate) and every outcome is audited."""
    now = _now(now)
    source = _source(source)
    serial = None
    try:
        if not cert_der:
            raise LoginRefused("bad-format", "the connection carries no client certificate")
        cert = _load_certificate(cert_der)
        serial = format(cert.serial_number, "x")
        _check_usage(cert)
        checked = _check_certificate(store, bytes(cert_der), source, now)
        facts = _facts(store, cert, bytes(cert_der), checked, now, method="tls-client")
        with store.write() as s:
            store.audit(s, "login.succeeded", ca=facts.ca, target=facts.cert_serial,
                        details={"source": source, "serial": facts.cert_serial, "issuer": facts.cert_issuer,
                                 "uscc": facts.uscc, "person": facts.person, "office": facts.office,
                                 "method": facts.method})
    except LoginRefused as e:
        _audit_refusal(store, e, source=source, serial=serial, origin=None)
        raise
    return facts


def _facts(store, cert, cert_der: bytes, checked, now, method: str = "card-agent") -> LoginFacts:
    from cryptography.x509.oid import NameOID

    from unica import ra
    from unica.portal.views import operator_roles

    office = checked.office
    enterprise = ra.enterprise_of_certificate(store, cert_der)
    if office is None and enterprise is not None:
        office = enterprise.get("office")
    # an operator's card carries the operator's roles (read again by the role pages at each
    # request); any other card of this service is an enterprise user's
    op_roles = operator_roles(store, cert_der)
    roles = tuple(op_roles) + (ROLES if enterprise is not None or not op_roles else ())
    return LoginFacts(
        uscc=_attr(cert.subject, NameOID.ORGANIZATION_IDENTIFIER),
        enterprise=_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        person=_attr(cert.subject, NameOID.COMMON_NAME),
        cert_serial=checked.serial,
        cert_issuer=cert.issuer.rfc4514_string(),
        cert_sha256=hashlib.sha256(cert_der).hexdigest(),
        ca=checked.ca,
        office=office,
        roles=roles,
        method=method,
        auth_time=now,
    )


def _consume(store, ch, facts: LoginFacts, algorithm: str, source, now) -> None:
    """Mark the challenge used and write ``login.succeeded``, in one transaction; refuse an
    unknown, expired or used one."""
    from sqlalchemy import select, update

    from unica.store import models as m

    digest = nonce_sha256(ch.nonce)
    with store.write() as s:
        row = s.scalars(select(m.LoginChallenge).where(m.LoginChallenge.nonce_sha256 == digest)).first()
        if row is None or row.origin != ch.origin or _second(row.expires_at) != ch.expires \
                or _second(row.created_at) != ch.issued:
            raise LoginRefused("unknown-challenge", "this portal did not hand out that challenge")
        if row.used_at is not None:
            raise LoginRefused("replayed", "the challenge was used already (a challenge is good for one login)")
        if now > row.expires_at:
            raise LoginRefused("expired", f"the challenge expired at {row.expires_at:%Y-%m-%d %H:%M:%S}Z "
                                          f"(ask for a new one)")
        done = s.execute(update(m.LoginChallenge)
                         .where(m.LoginChallenge.id == row.id, m.LoginChallenge.used_at.is_(None))
                         .values(used_at=now))
        if done.rowcount != 1:
            raise LoginRefused("replayed", "the challenge was used already (a challenge is good for one login)")
        store.audit(s, "login.succeeded", ca=facts.ca, target=facts.cert_serial,
                    details={"source": source, "origin": ch.origin, "serial": facts.cert_serial,
                             "issuer": facts.cert_issuer, "uscc": facts.uscc, "person": facts.person,
                             "office": facts.office, "method": facts.method, "algorithm": algorithm,
                             "nonce_sha256": digest})


def _second(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(microsecond=0)


def _audit_refusal(store, e: LoginRefused, *, source, serial, origin) -> None:
    try:
        with store.write() as s:
            store.audit(s, "login.refused", target=serial,
                        details={"reason": e.slug, "detail": str(e)[:400], "source": source, "serial": serial,
                                 "origin": origin})
    except Exception:  # noqa: BLE001 - the refusal stands whether or not the audit could be written
        log.exception("cannot audit a refused card login")
