"""CA key backup to M-of-N custodians, and recovery (the emergency plan).

Backup (:func:`backup_ca_key`):

1. a fresh AES-256 key-encryption key (KEK) from ``os.urandom``;
2. the CA private key wrapped with it *on the token* (RFC 5649, recorded as ``"algorithm":
   "rfc5649"``, with the module's mechanism for it: SoftHSM2's ``CKM_AES_KEY_WRAP_PAD``, NSS's
   ``CKM_AES_KEY_WRAP_KWP``, see :mod:`unica.hsm.wrap`; the KEK is a session object there).
   Only a key generated with ``--backup-allowed`` (sensitive, extractable) can be wrapped; the
   token refuses any other (:class:`~unica.errors.KeyNotExtractable`);
3. the KEK split M-of-N with Shamir's scheme (pycryptodome, GF(2^128): the two 16-byte halves
   with the same share indices);
4. each share encrypted to one custodian's card certificate (CMS EnvelopedData, ECDH:
   :mod:`unica.ca.envelope`);
5. one JSON file (:data:`FORMAT` version 1) with the CA certificate, the wrapped key and the
   envelopes. Nothing in it is secret in the clear: the wrapped key needs the KEK, the KEK needs
   M shares, each share needs its custodian's card.

Restore (:func:`restore_ca_key`): each custodian's card opens its envelope (ECDH on the card), the
KEK is rebuilt in memory from M shares, imported as a session key on the target token, and
unwraps the CA key there as a sensitive token object. The restored key must sign what the CA
certificate's public key verifies, else it is deleted and the restore refused.
:func:`set_ca_key` then points the CA at it (``unica ca set NAME --key URI``).

A share, as encrypted to its custodian: ``b"UKS1"`` + backup id (16 bytes) + share index (1
byte) + the two 16-byte Shamir shares of the KEK halves.

Dual control: each state-changing entry point takes ``auth`` and has one marked place at its
start where ``authorize(store, Operation(...), auth)`` goes; :func:`backup_params`,
:func:`restore_params` and :func:`set_key_params` build the operation's parameters.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from unica.ca.envelope import open_envelope, seal_envelope
from unica.errors import (CAUnusable, InputError, KeyBackupRefused, MalformedInput, SharesMissing,
                          UnsupportedKeyType)
from unica.hsm.keytypes import key_type_of, spki_sha256

__all__ = ["FORMAT", "KeyBackup", "Custodian", "check_custodian", "check_backup_request",
           "load_custodian_certificate", "backup_params", "restore_params", "set_key_params", "backup_ca_key",
           "load_backup", "restore_ca_key", "set_ca_key", "MAX_BACKUP_FILE"]

FORMAT = "unica-ca-key-backup"
VERSION = 1
MAX_CUSTODIANS = 255
#: the largest backup file read (255 custodians with their certificates fit in well under this)
MAX_BACKUP_FILE = 4 * 1024 * 1024
_SHARE_MAGIC = b"UKS1"
_CUSTODIAN_CURVES = ("secp256r1", "secp384r1")


# --- custodians ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Custodian:
    """A custodian as the backup file names them (all public)."""

    subject: str
    serial: str  # hex
    spki_sha256: str
    certificate_pem: str
    envelope: bytes

    def to_dict(self) -> dict:
        return {"subject": self.subject, "serial": self.serial, "spki_sha256": self.spki_sha256,
                "certificate_pem": self.certificate_pem,
                "envelope": base64.b64encode(self.envelope).decode("ascii")}

    def describe(self) -> str:
        return f"{self.subject} (serial {self.serial})"


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def check_custodian(cert: x509.Certificate, *, now: dt.datetime | None = None) -> None:
    """A custodian certificate must hold an EC P-256/P-384 key and allow keyAgreement, and be
    valid now; :class:`KeyBackupRefused` (one line naming the certificate) otherwise."""
    if not isinstance(cert, x509.Certificate):
        raise TypeError("a custodian is an x509.Certificate")
    who = f"custodian certificate {_subject(cert)!r} (serial {cert.serial_number:x})"
    try:
        pub = cert.public_key()
    except Exception:
        raise KeyBackupRefused(f"{who}: its public key cannot be read") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in _CUSTODIAN_CURVES:
        raise KeyBackupRefused(f"{who} holds a {key_type_of(pub) if _known(pub) else type(pub).__name__} key: a "
                               f"custodian needs an EC P-256 or P-384 key (ECDH on the card)")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise KeyBackupRefused(f"{who} has no key usage extension: a custodian certificate must allow "
                               f"keyAgreement") from None
    if not ku.key_agreement:
        raise KeyBackupRefused(f"{who} does not allow keyAgreement (its key usage): it cannot receive a share")
    when = now or dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_after_utc <= when:
        raise KeyBackupRefused(f"{who} expired at {cert.not_valid_after_utc.isoformat()}")
    if cert.not_valid_before_utc > when:
        raise KeyBackupRefused(f"{who} is not valid before {cert.not_valid_before_utc.isoformat()}")


def load_custodian_certificate(data: bytes, source: str) -> x509.Certificate:
    """One certificate, PEM or DER, from ``data`` (read from ``source``, named in errors)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certs = x509.load_pem_x509_certificates(data)
            if len(certs) != 1:
                raise ValueError(f"{len(certs)} certificates, one expected")
            return certs[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise MalformedInput(f"custodian certificate {source}: not a PEM or DER certificate ({e})") from None


def _known(pub) -> bool:
    try:
        key_type_of(pub)
        return True
    except Exception:
        return False


def _check_threshold(threshold: int, n: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise TypeError("threshold is an int")
    if n < 2:
        raise InputError(f"a key backup needs at least 2 custodians (got {n})")
    if n > MAX_CUSTODIANS:
        raise InputError(f"at most {MAX_CUSTODIANS} custodians (got {n})")
    if not 2 <= threshold <= n:
        raise InputError(f"--threshold {threshold}: it must be from 2 to the number of custodians ({n})")


def check_backup_request(custodians: list[x509.Certificate], threshold: int, *,
                         now: dt.datetime | None = None) -> None:
    """What :func:`backup_ca_key` checks before the token is asked anything: 2 <= threshold <= N
    (:class:`InputError`), each custodian fit (:func:`check_custodian`), no custodian twice
    (:class:`KeyBackupRefused`). The CLI calls it before asking for the CA token's PIN."""
    _check_threshold(threshold, len(custodians))
    seen: dict[str, x509.Certificate] = {}
    for c in custodians:
        check_custodian(c, now=now)
        fp = spki_sha256(c.public_key())
        if fp in seen:
            raise KeyBackupRefused(f"custodian certificate {_subject(c)!r} is given twice (or shares a key with "
                                   f"{_subject(seen[fp])!r}): each share needs its own card")
        seen[fp] = c


# --- the parameters an operator signs ---------------------------------------------------------


def backup_params(ca_name: str, custodians: list[x509.Certificate], threshold: int,
                  out: str | None = None) -> dict:
    """The parameters of ``Operation("key.backup", ca=ca_name, params=...)``: what the operator
    (and the approvers) sign. JSON-able; the custodians' certificates in the order given, and the
    file to write (``out``: where an approved request writes it)."""
    return {
        "threshold": threshold, "out": out,
        "custodians": [{"subject": _subject(c), "serial": f"{c.serial_number:x}",
                        "spki_sha256": spki_sha256(c.public_key()),
                        "fingerprint_sha256": c.fingerprint(_sha256()).hex(),
                        "certificate": base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii")}
                       for c in custodians],
    }


def restore_params(backup: "KeyBackup", token: str, label: str, source: str | None = None,
                   share_keys: list[str] | None = None) -> dict:
    """The parameters of ``Operation("key.restore", ca=backup.ca_name, params=...)``: the backup
    (its SHA-256), the target, and -- for an approved request to run it again -- the file's path
    and the custodians' card key URIs."""
    return {"backup_id": backup.backup_id, "backup_sha256": backup.sha256, "token": token, "label": label,
            "ca_fingerprint_sha256": backup.ca_certificate.fingerprint(_sha256()).hex(),
            "file": source, "share_keys": list(share_keys) if share_keys is not None else None}


def set_key_params(key_uri: str) -> dict:
    """The parameters of ``Operation("ca.set", ca=NAME, params=...)`` for ``ca set NAME --key URI``."""
    return {"key_uri": key_uri}


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


# --- the file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyBackup:
    """A parsed backup file."""

    backup_id: str
    created_at: dt.datetime
    ca_name: str
    ca_certificate: x509.Certificate
    key_type: str
    wrap_mechanism: str
    wrapped_key: bytes
    threshold: int
    custodians: tuple[Custodian, ...]
    sha256: str  # of the file's bytes
    wrap_algorithm: str = "rfc5649"  # version 1 files before it was recorded: SoftHSM2's _PAD, RFC 5649

    @property
    def total(self) -> int:
        return len(self.custodians)

    def require_shares(self, given: int) -> None:
        """:class:`SharesMissing` if ``given`` distinct shares are fewer than the threshold."""
        if given < self.threshold:
            missing = self.threshold - given
            raise SharesMissing(
                f"backup {self.backup_id} of CA {self.ca_name!r} needs {self.threshold} of its {self.total} custodian "
                f"shares: {given} given, {missing} missing", threshold=self.threshold, given=given)

    def custodian_for(self, public_key) -> Custodian | None:
        fp = spki_sha256(public_key)
        return next((c for c in self.custodians if c.spki_sha256 == fp), None)

    def summary(self) -> dict:
        return {"backup_id": self.backup_id, "created_at": self.created_at.isoformat(), "ca": self.ca_name,
                "key_type": self.key_type, "threshold": self.threshold, "custodians_total": self.total,
                "custodians": [{"subject": c.subject, "serial": c.serial, "spki_sha256": c.spki_sha256}
                               for c in self.custodians]}


def _document(b: dict) -> bytes:
    return (json.dumps(b, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def load_backup(data: bytes) -> KeyBackup:
    """Parse a backup file; :class:`MalformedInput` (one line) when it is not one."""
    def bad(why: str) -> MalformedInput:
        return MalformedInput(f"not a unica CA key backup file: {why}")

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"no \"format\": \"{FORMAT}\"")
    if doc.get("version") != VERSION:
        raise MalformedInput(f"CA key backup file version {doc.get('version')!r} is not one this unica reads "
                             f"({VERSION})")
    try:
        ca = doc["ca"]
        cert = x509.load_pem_x509_certificate(ca["certificate_pem"].encode("ascii"))
        custodians = tuple(Custodian(subject=str(c["subject"]), serial=str(c["serial"]),
                                     spki_sha256=str(c["spki_sha256"]), certificate_pem=str(c["certificate_pem"]),
                                     envelope=base64.b64decode(c["envelope"], validate=True))
                           for c in doc["custodians"])
        threshold = doc["threshold"]
        created = dt.datetime.fromisoformat(doc["created_at"])
        backup = KeyBackup(
            backup_id=str(doc["backup_id"]), created_at=created, ca_name=str(ca["name"]), ca_certificate=cert,
            key_type=str(doc["key_type"]), wrap_mechanism=str(doc["wrap"]["mechanism"]),
            wrapped_key=base64.b64decode(doc["wrap"]["wrapped_key"], validate=True), threshold=threshold,
            custodians=custodians, sha256=hashlib.sha256(data).hexdigest(),
            wrap_algorithm=str(doc["wrap"].get("algorithm", "rfc5649")))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad(f"{type(e).__name__} {e}") from None
    if not isinstance(threshold, int) or not 2 <= threshold <= len(custodians) or doc.get("custodians_total") != \
            len(custodians):
        raise bad("threshold and custodian count do not agree")
    if created.tzinfo is None:
        raise bad("created_at has no time zone")
    # the mechanism is the source module's name for RFC 5649 (SoftHSM2: _PAD, NSS: _KWP)
    if backup.wrap_mechanism not in ("CKM_AES_KEY_WRAP_PAD", "CKM_AES_KEY_WRAP_KWP") or \
            backup.wrap_algorithm != "rfc5649":
        raise MalformedInput(f"CA key backup file: unknown wrap mechanism {backup.wrap_mechanism!r} "
                             f"(algorithm {backup.wrap_algorithm!r}; unica reads rfc5649)")
    try:
        uuid.UUID(hex=backup.backup_id)
    except ValueError:
        raise bad("backup_id is not a UUID") from None
    return backup


# --- shares --------------------------------------------------------------------------------


def _split(kek: bytes, threshold: int, n: int) -> list[tuple[int, bytes]]:
    """(index, 32 share bytes) for each of ``n`` custodians: the KEK's halves split with the same indices."""
    from Crypto.Protocol.SecretSharing import Shamir

    first = Shamir.split(threshold, n, kek[:16], ssss=False)
    second = Shamir.split(threshold, n, kek[16:], ssss=False)
    out = []
    for (i, a), (j, b) in zip(first, second):
        assert i == j
        out.append((i, a + b))
    return out


def _combine(shares: list[tuple[int, bytes]]) -> bytes:
    from Crypto.Protocol.SecretSharing import Shamir

    return (Shamir.combine([(i, s[:16]) for i, s in shares], ssss=False)
            + Shamir.combine([(i, s[16:]) for i, s in shares], ssss=False))


def _share_plaintext(backup_id: uuid.UUID, index: int, share: bytes) -> bytes:
    return _SHARE_MAGIC + backup_id.bytes + bytes([index]) + share


def _parse_share(plain: bytes, backup: KeyBackup, who: str) -> tuple[int, bytes]:
    if len(plain) != 4 + 16 + 1 + 32 or not plain.startswith(_SHARE_MAGIC):
        raise MalformedInput(f"the share {who} decrypted is not a unica KEK share")
    if plain[4:20] != uuid.UUID(hex=backup.backup_id).bytes:
        raise KeyBackupRefused(f"the share {who} decrypted belongs to another backup")
    index = plain[20]
    if not 1 <= index <= backup.total:
        raise MalformedInput(f"the share {who} decrypted has a bad index")
    return index, plain[21:]


# --- checking a key against the CA certificate ------------------------------------------------


def _key_matches(key, public_key) -> bool:
    """``key`` signs a fresh challenge that ``public_key`` verifies (and their public keys agree)."""
    from cryptography.exceptions import InvalidSignature

    from unica.hsm import signature_params, sign_raw

    if spki_sha256(key.public_key()) != spki_sha256(public_key):
        return False
    challenge = b"unica key check " + os.urandom(32)
    sig = sign_raw(key, challenge)
    try:
        public_key.verify(sig, challenge, *signature_params(key))
    except InvalidSignature:
        return False
    return True


# --- backup ----------------------------------------------------------------------------------


def backup_ca_key(store, ca_name: str, custodians: list[x509.Certificate], threshold: int, *,
                  pin: str | None = None, write=None, auth=None, now: dt.datetime | None = None,
                  out: str | None = None) -> bytes:
    """Back up CA ``ca_name``'s token key to ``custodians`` (M = ``threshold`` of N); return the
    backup file's bytes. ``pin``: the CA token's PIN (else the key URI's pin-source, else
    UNICA_PIN). ``write(data)``, when given, writes the file inside the transaction that records
    ``key.backup`` in the audit log (the CLI's atomic writer): no entry for a file not written.

    Refusals: :class:`KeyBackupRefused` (a custodian unfit: not EC P-256/P-384, no keyAgreement,
    expired; the same custodian twice), :class:`KeyNotExtractable` (the key was not generated
    with ``--backup-allowed``), :class:`InputError` (threshold, a key in a file).
    """
    custodians = list(custodians)
    when = now or dt.datetime.now(dt.timezone.utc)
    check_backup_request(custodians, threshold, now=when)
    from unica.auth import Operation, authorized

    op = Operation("key.backup", ca=ca_name, params=backup_params(ca_name, custodians, threshold, out))
    with authorized(store, op, auth) as actor:
        if actor.is_operator:
            _check_custodians_are_operators(store, custodians)
        return _backup_ca_key(store, ca_name, custodians, threshold, pin=pin, write=write, when=when)


def _check_custodians_are_operators(store, custodians: list) -> None:
    """Once operators exist, every custodian is an active operator with the custodian role, and the
    certificate given is that operator's card certificate."""
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        for c in custodians:
            spki = spki_sha256(c.public_key())
            row = s.scalars(select(m.Operator).where(m.Operator.spki_sha256 == spki)).first()
            who = _subject(c)
            if row is None:
                raise KeyBackupRefused(f"custodian {who} is not an operator (add them with --role custodian)")
            if row.status != "active" or "custodian" not in (row.roles or ()):
                raise KeyBackupRefused(f"operator {row.name} ({who}) is not an active custodian")


def _backup_ca_key(store, ca_name: str, custodians: list, threshold: int, *, pin, write, when) -> bytes:

    from unica.hsm.secrets import USER_PIN, resolve_secret
    from unica.hsm.uri import Pkcs11URI, parse_key_uri
    from unica.hsm.wrap import WRAP_ALGORITHM, wrap_private_key_rfc5649
    from unica.store.cas import get_ca_row

    with store.read() as s:
        row = get_ca_row(s, ca_name)
        key_uri, cert_der = row.key_uri, row.cert_der
    if cert_der is None:
        raise CAUnusable(f"CA {ca_name!r} has no certificate yet: nothing to back up against")
    uri = parse_key_uri(key_uri)
    if not isinstance(uri, Pkcs11URI):
        raise InputError(f"CA {ca_name!r} keeps its key in a file ({key_uri}): key backup is for keys on a token "
                         f"(copy the encrypted key file instead)")
    ca_cert = x509.load_der_x509_certificate(cert_der)
    token_pin = resolve_secret(USER_PIN, value=pin, file=uri.pin_source, what="token PIN")

    kek = os.urandom(32)
    wrapped, mechanism = wrap_private_key_rfc5649(uri, token_pin, kek)
    backup_id = uuid.uuid4()
    shares = _split(kek, threshold, len(custodians))
    del kek
    entries = []
    for cert, (index, share) in zip(custodians, shares):
        entries.append(Custodian(
            subject=_subject(cert), serial=f"{cert.serial_number:x}", spki_sha256=spki_sha256(cert.public_key()),
            certificate_pem=cert.public_bytes(Encoding.PEM).decode("ascii"),
            envelope=seal_envelope(_share_plaintext(backup_id, index, share), cert)))
    del shares
    data = _document({
        "format": FORMAT, "version": VERSION, "backup_id": backup_id.hex,
        "created_at": when.astimezone(dt.timezone.utc).isoformat(),
        "ca": {"name": ca_name, "certificate_pem": ca_cert.public_bytes(Encoding.PEM).decode("ascii"),
               "key_uri": str(uri.with_(pin_source=None))},
        "key_type": key_type_of(ca_cert.public_key()),
        "wrap": {"mechanism": mechanism, "algorithm": WRAP_ALGORITHM,
                 "kek_scheme": "AES-256, split M-of-N (Shamir, GF(2^128), two halves)",
                 "wrapped_key": base64.b64encode(wrapped).decode("ascii")},
        "threshold": threshold, "custodians_total": len(entries),
        "custodians": [e.to_dict() for e in entries],
    })
    with store.write() as s:
        store.audit(s, "key.backup", ca=ca_name, target=backup_id.hex, details={
            "backup_id": backup_id.hex, "key_uri": str(uri.with_(pin_source=None)), "threshold": threshold,
            "custodians_total": len(entries),
            "custodians": [{"subject": e.subject, "serial": e.serial, "spki_sha256": e.spki_sha256} for e in entries],
            "file_sha256": hashlib.sha256(data).hexdigest()})
        if write is not None:
            write(data)
    return data


# --- restore ---------------------------------------------------------------------------------


def _as_token_uri(target):
    from unica.hsm.uri import Pkcs11URI, parse_key_uri

    if isinstance(target, Pkcs11URI):
        return target
    if isinstance(target, str):
        u = parse_key_uri(target) if target.startswith("pkcs11:") else Pkcs11URI(token=target)
        if isinstance(u, Pkcs11URI):
            return u
    raise InputError(f"the restore target must be a token (pkcs11:token=LABEL), not {target!r}")


def _load_share_key(k):
    if isinstance(k, str):
        from unica.hsm import load_key

        return load_key(k)
    return k


def _key_name(k) -> str:
    u = getattr(k, "uri", None)
    return f"the key {u}" if u is not None else "a share key"


def restore_ca_key(backup_bytes: bytes, target_token_uri, share_keys: list, *, store=None,
                   label: str | None = None, key_id: bytes | None = None, pin: str | None = None,
                   auth=None, source: str | None = None, share_key_uris: list[str] | None = None) -> dict:
    """Restore the CA key of the backup file ``backup_bytes`` onto the token ``target_token_uri``
    (``pkcs11:token=LABEL...``, a :class:`Pkcs11URI` or a bare label) with the custodians' card keys
    ``share_keys`` (loaded token keys, or key URIs whose PIN is their pin-source or UNICA_PIN).

    The key is unwrapped as a sensitive token object labelled ``label`` (default ``ca-NAME``),
    CKA_ID ``key_id`` (default: the key identifier), and must match the CA certificate (else it is
    deleted and :class:`KeyBackupRefused` raised). ``pin``: the target token's PIN. With ``store``:
    the CA must be in it with the backup's certificate, and ``key.restore`` is audited.

    :class:`SharesMissing` with fewer than M distinct custodians; :class:`KeyBackupRefused` for a
    card that holds no share of this backup. Returns what was restored (no secret).
    """
    backup = load_backup(backup_bytes)
    token = _as_token_uri(target_token_uri)
    label = label or f"ca-{backup.ca_name}"
    if store is None:
        if auth is not None:
            raise InputError("an operator's authority is checked against the CA's database: give store=")
        return _restore_ca_key(backup, token, label, share_keys, store=None, key_id=key_id, pin=pin)
    from unica.auth import Operation, authorized

    op = Operation("key.restore", ca=backup.ca_name,
                   params=restore_params(backup, token.token, label, source, share_key_uris))
    with authorized(store, op, auth):
        return _restore_ca_key(backup, token, label, share_keys, store=store, key_id=key_id, pin=pin)


def _restore_ca_key(backup, token, label: str, share_keys, *, store, key_id, pin) -> dict:
    share_keys = list(share_keys)
    backup.require_shares(len(share_keys))
    if store is not None:
        _check_ca_in_store(store, backup)

    from unica.hsm.secrets import USER_PIN, resolve_secret
    from unica.hsm.wrap import delete_private_key, unwrap_private_key

    used: dict[str, tuple[Custodian, int, bytes]] = {}
    for k in share_keys:
        key = _load_share_key(k)
        name = _key_name(key)
        try:
            pub = key.public_key()
        except Exception:
            raise KeyBackupRefused(f"{name}: its public key cannot be read") from None
        custodian = backup.custodian_for(pub)
        if custodian is None:
            raise KeyBackupRefused(
                f"{name} is not the card key of any custodian of backup {backup.backup_id} (its SPKI SHA-256 "
                f"{spki_sha256(pub)[:16]}...): wrong card")
        if custodian.spki_sha256 in used:
            raise KeyBackupRefused(f"{name} is custodian {custodian.describe()} again: each share counts once")
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise UnsupportedKeyType(f"{name} is not an EC key")
        plain = open_envelope(custodian.envelope, key, who=f"{name} (custodian {custodian.describe()})")
        index, share = _parse_share(plain, backup, f"of custodian {custodian.describe()}")
        used[custodian.spki_sha256] = (custodian, index, share)
    backup.require_shares(len(used))
    if len({i for _, i, _ in used.values()}) != len(used):
        raise MalformedInput(f"backup {backup.backup_id}: two custodians' shares have the same index")

    kek = _combine([(i, s) for _, i, s in used.values()])
    ca_pub = backup.ca_certificate.public_key()
    token_pin = resolve_secret(USER_PIN, value=pin, file=token.pin_source, what="token PIN")
    uri = unwrap_private_key(token, token_pin, kek, backup.wrapped_key, ca_pub, label=label, key_id=key_id,
                             algorithm=backup.wrap_algorithm)
    del kek
    from unica.hsm import load_key

    try:
        restored = load_key(uri, pin=token_pin)
        ok = _key_matches(restored, ca_pub)
    except Exception:
        delete_private_key(uri, token_pin)
        raise
    if not ok:
        delete_private_key(uri, token_pin)
        raise KeyBackupRefused(f"the key unwrapped from backup {backup.backup_id} is not CA {backup.ca_name!r}'s key "
                               f"(its signature does not verify with the CA certificate): removed from the token")
    key_uri = str(uri.with_(pin_source=None))
    result = {"ca": backup.ca_name, "backup_id": backup.backup_id, "key_uri": key_uri, "key_type": backup.key_type,
              "spki_sha256": spki_sha256(ca_pub), "threshold": backup.threshold,
              "custodians_used": [{"subject": c.subject, "serial": c.serial} for c, _, _ in used.values()]}
    if store is not None:
        with store.write() as s:
            store.audit(s, "key.restore", ca=backup.ca_name, target=backup.backup_id, details={
                "backup_id": backup.backup_id, "key_uri": key_uri, "token": token.token,
                "threshold": backup.threshold, "custodians_used": result["custodians_used"],
                "file_sha256": backup.sha256})
    return result


def _check_ca_in_store(store, backup: KeyBackup) -> None:
    from unica.store.cas import get_ca_row

    with store.read() as s:
        row = get_ca_row(s, backup.ca_name)
        cert_der = row.cert_der
    if cert_der != backup.ca_certificate.public_bytes(Encoding.DER):
        raise KeyBackupRefused(f"backup {backup.backup_id} is of another CA {backup.ca_name!r} (its certificate is "
                               f"not the one in this database)")


# --- pointing the CA at a key ------------------------------------------------------------------


def set_ca_key(store, ca_name: str, key_uri: str, *, pin: str | None = None, passphrase: str | None = None,
               auth=None) -> dict:
    """Point CA ``ca_name`` at the key ``key_uri`` (a restored key), after checking that the key
    signs what the CA certificate's public key verifies; audited as ``ca.key_changed``."""
    from unica.auth import Operation, authorized

    with authorized(store, Operation("ca.set", ca=ca_name, params=set_key_params(key_uri)), auth):
        return _set_ca_key(store, ca_name, key_uri, pin=pin, passphrase=passphrase)


def _set_ca_key(store, ca_name: str, key_uri: str, *, pin, passphrase) -> dict:
    from unica.hsm import load_key
    from unica.hsm.uri import parse_key_uri
    from unica.store.cas import get_ca_row

    parse_key_uri(key_uri)  # a malformed URI is said before anything else
    with store.read() as s:
        cert_der = get_ca_row(s, ca_name).cert_der
    if cert_der is None:
        raise CAUnusable(f"CA {ca_name!r} has no certificate yet (awaiting 'unica ca import-cert')")
    ca_pub = x509.load_der_x509_certificate(cert_der).public_key()
    key = load_key(key_uri, pin=pin, passphrase=passphrase)
    if not _key_matches(key, ca_pub):
        raise KeyBackupRefused(f"the key {key_uri} is not CA {ca_name!r}'s key (it does not match the CA certificate)")
    with store.write() as s:
        row = get_ca_row(s, ca_name)
        old = row.key_uri
        row.key_uri = key_uri
        store.audit(s, "ca.key_changed", ca=ca_name, details={"old_key_uri": old, "key_uri": key_uri,
                                                              "spki_sha256": spki_sha256(ca_pub)})
    from unica.ca.authority import ca_info

    return ca_info(store, ca_name)
