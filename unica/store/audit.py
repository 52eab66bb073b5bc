"""Checking and sealing the audit log.

Every entry holds the hash of the one before it, and its own hash covers its id, time,
event, actor, CA, target and details (see :func:`unica.store.db.audit_entry_hash`). So:

- an edited entry no longer matches its hash;
- a deleted, inserted or reordered entry breaks the id sequence or the link to the
  previous hash;
- a truncated tail leaves the chain head row (``audit_head``) pointing past the end.

A *seal* is a signature by an audit key (software or PKCS#11) over ``(upto_id, upto_hash)``.
Sealed entries cannot be rewritten together with their hashes without the key. The chain
head row is not signed: an attacker who deletes the unsealed tail *and* rewrites the head
row is caught only by the next seal (or an exported seal kept elsewhere) -- seal often.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from unica.store import models as m
from unica.store.db import GENESIS_HASH, Store, append_audit, audit_entry_hash


@dataclass(frozen=True)
class AuditProblem:
    entry_id: int | None
    kind: str  # edited | missing | inserted | reordered | broken-link | truncated | bad-seal | ...
    message: str

    def to_dict(self) -> dict:
        return {"entry": self.entry_id, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class AuditReport:
    entries: int
    seals: int
    last_sealed_id: int | None
    problems: tuple[AuditProblem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "seals": self.seals,
                "last_sealed_id": self.last_sealed_id, "problems": [p.to_dict() for p in self.problems]}


def seal_message(upto_id: int, upto_hash: str, at: dt.datetime) -> bytes:
    return f"unica-audit-seal v1\nupto={upto_id}\nhash={upto_hash}\nat={at.astimezone(dt.timezone.utc).isoformat()}\n".encode()


def verify_audit(store: Store, *, public_key=None, batch: int = 5000) -> AuditReport:
    """Walk the whole chain and every seal; name each problem found (it does not stop at the first)."""
    problems: list[AuditProblem] = []
    hashes_by_id: dict[int, str] = {}
    prev_hash = GENESIS_HASH
    expected_id = 1
    count = 0
    with store.read() as s:
        rows = s.execute(select(m.AuditEntry).order_by(m.AuditEntry.id).execution_options(yield_per=batch))
        for (e,) in rows:
            count += 1
            if e.id != expected_id:
                if e.id > expected_id:
                    kind = "missing"
                    msg = (f"entries {expected_id}..{e.id - 1} are missing (deleted)" if e.id - expected_id > 1
                           else f"entry {expected_id} is missing (deleted)")
                    problems.append(AuditProblem(expected_id, kind, msg))
                else:  # pragma: no cover - ids are a primary key, ordered
                    problems.append(AuditProblem(e.id, "reordered", f"entry {e.id} is out of order"))
            recomputed = audit_entry_hash(e.prev_hash, e.id, e.at, e.event, e.actor, e.ca_name, e.target,
                                          e.details or {})
            if recomputed != e.hash:
                problems.append(AuditProblem(e.id, "edited", f"entry {e.id} ({e.event}) was changed: its content "
                                             "no longer matches its hash"))
            if e.prev_hash != prev_hash:
                if e.id == expected_id:
                    problems.append(AuditProblem(e.id, "broken-link", f"entry {e.id} ({e.event}) does not follow "
                                                 f"entry {e.id - 1}: an entry was inserted, removed or reordered "
                                                 "before it"))
                else:
                    problems.append(AuditProblem(e.id, "broken-link", f"entry {e.id} ({e.event}) does not link to "
                                                 "the entry before it"))
            hashes_by_id[e.id] = e.hash
            prev_hash = e.hash
            expected_id = e.id + 1
        last_id = expected_id - 1
        head = s.get(m.AuditHead, 1)
        if head is None:
            problems.append(AuditProblem(None, "head-missing", "the audit chain head row is missing"))
        else:
            if head.last_id > last_id:
                problems.append(AuditProblem(last_id + 1, "truncated",
                                             f"the log ends at entry {last_id} but the chain head says "
                                             f"{head.last_id}: entries {last_id + 1}..{head.last_id} were deleted"))
            elif head.last_id < last_id:
                problems.append(AuditProblem(head.last_id + 1, "inserted",
                                             f"entries after {head.last_id} were appended outside unica"))
            elif head.last_hash != prev_hash:
                problems.append(AuditProblem(last_id, "edited", f"entry {last_id}'s hash does not match the "
                                             "chain head"))
        seals = s.scalars(select(m.AuditSeal).order_by(m.AuditSeal.id)).all()
    pinned = _spki_der(public_key) if public_key is not None else None
    first_key = None
    last_sealed = None
    for seal in seals:
        if first_key is None:
            first_key = seal.public_key_der
        if pinned is not None and seal.public_key_der != pinned:
            problems.append(AuditProblem(seal.upto_id, "bad-seal", f"seal {seal.id} (up to entry {seal.upto_id}) "
                                         "was made by another key than the audit key given"))
            continue
        if seal.public_key_der != first_key:
            problems.append(AuditProblem(seal.upto_id, "bad-seal", f"seal {seal.id} was made by a different key "
                                         "than the first seal"))
        if not _seal_signature_ok(seal):
            problems.append(AuditProblem(seal.upto_id, "bad-seal", f"seal {seal.id}'s signature (up to entry "
                                         f"{seal.upto_id}) does not verify"))
            continue
        h = hashes_by_id.get(seal.upto_id)
        if h is None:
            problems.append(AuditProblem(seal.upto_id, "missing", f"entry {seal.upto_id}, sealed by seal {seal.id}, "
                                         "is missing"))
        elif h != seal.upto_hash:
            problems.append(AuditProblem(seal.upto_id, "edited", f"the log up to entry {seal.upto_id} differs from "
                                         f"what seal {seal.id} signed"))
        last_sealed = seal.upto_id
    problems.sort(key=lambda p: (p.entry_id is None, p.entry_id or 0))
    return AuditReport(count, len(seals), last_sealed, tuple(problems))


def _seal_signature_ok(seal: m.AuditSeal) -> bool:
    try:
        pub = serialization.load_der_public_key(seal.public_key_der)
        msg = seal_message(seal.upto_id, seal.upto_hash, seal.at)
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(seal.signature, msg, ec.ECDSA(hashes.SHA384() if pub.curve.key_size >= 384 else hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(seal.signature, msg, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(seal.signature, msg)
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False


def _spki_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def seal_audit(store: Store, sign, public_key, key_uri: str) -> m.AuditSeal | None:
    """Sign the chain up to its head with the audit key; None if nothing is new since the last seal.

    ``sign(message) -> signature`` is the audit key's raw signature (ECDSA with SHA-256, or
    SHA-384 for P-384; RSA PKCS#1 v1.5 SHA-256; Ed25519), e.g. ``lambda m: sign_raw(key, m)``.
    """
    import hashlib

    der = _spki_der(public_key)
    with store.write() as s:
        conn = s.connection()
        ht = m.AuditHead.__table__
        head = conn.execute(select(ht.c.last_id).where(ht.c.id == 1).with_for_update()).first()
        last = s.scalars(select(m.AuditSeal).order_by(m.AuditSeal.id.desc()).limit(1)).first()
        if head is None or head.last_id == 0 or (last is not None and last.upto_id == head.last_id):
            return None
        # the seal event is itself an entry, and the seal covers the chain including it
        sealed = append_audit(s, "audit.sealed", details={"key": key_uri,
                                                          "key_spki_sha256": hashlib.sha256(der).hexdigest()})
        at = m.utcnow()
        seal = m.AuditSeal(upto_id=sealed.id, upto_hash=sealed.hash, at=at, key_uri=key_uri,
                           public_key_der=der, signature=sign(seal_message(sealed.id, sealed.hash, at)))
        s.add(seal)
        s.flush()
        return seal


def _like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob(text: str) -> str:
    """A LIKE pattern from text where ``*`` matches any text and nothing else is special."""
    return "%".join(_like_escape(part) for part in text.split("*"))


def audit_entries(store: Store, *, since: dt.datetime | None = None, event: str | None = None,
                  ca: str | None = None, actor: str | None = None, limit: int | None = None,
                  tail: int | None = None, newest_first: bool = False) -> list[m.AuditEntry]:
    """Audit entries, filtered in the database, in chain order (or ``newest_first``).

    ``event`` and ``actor`` take ``*`` as "any text"; without a ``*``, ``actor`` also matches
    the user (``alice`` for ``alice@host:pid``) or user and host (``alice@host``) of an entry.
    ``tail``: only the ``tail`` newest entries (after the filters), still in the order asked;
    ``limit``: at most ``limit`` entries from the start of that order.
    """
    e = m.AuditEntry
    q = select(e)
    if since is not None:
        q = q.where(e.at >= since)
    if event is not None:
        q = q.where(e.event.like(_glob(event), escape="\\"))
    if ca is not None:
        q = q.where(e.ca_name == ca)
    if actor is not None:
        if "*" in actor:
            q = q.where(e.actor.like(_glob(actor), escape="\\"))
        else:
            lit = _like_escape(actor)
            q = q.where(or_(e.actor == actor, e.actor.like(lit + "@%", escape="\\"),
                            e.actor.like(lit + ":%", escape="\\")))
    if tail is not None:
        q = q.order_by(e.id.desc()).limit(tail)
        if not newest_first:
            sub = q.subquery()
            q = select(aliased(e, sub)).order_by(sub.c.id)
    else:
        q = q.order_by(e.id.desc() if newest_first else e.id)
    if limit is not None:
        q = q.limit(limit)
    with store.read() as s:
        return list(s.scalars(q))
