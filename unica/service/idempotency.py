"""``Idempotency-Key`` on POST: a retry gets the first answer instead of a second action.

The first request with a key records it in the database (table ``idempotency_keys``) before
it runs, with the SHA-256 of its method, path and body; its answer is stored when it ends. A
request with the same key from the same client then gets:

- the stored answer, replayed (``Idempotent-Replayed: true``), when its method, path and body are
  the same;
- 422 ``idempotency-mismatch`` when they are not;
- 409 ``idempotency-in-progress`` (``Retry-After``) while the first is still running -- in this
  process or another one on the same database: the row is the lock.

An answer of 5xx, or a request that failed or timed out, leaves no record: the retry runs
again. Answers can carry a secret shown once (an enrollment code); the database must not hold
it in the clear, so the stored body is encrypted (AES-256-GCM) under a key derived from the
Idempotency-Key, and the key itself is stored only as a hash: whoever can replay the answer
is whoever knows the key. Keys should be random (a UUID). Records older than
:data:`RETENTION` are removed as new ones are made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re

import anyio

from unica.service.identity import client_of
from unica.service.problems import Problem

log = logging.getLogger("unica.service")

#: how long a key is remembered
RETENTION = dt.timedelta(hours=24)

#: the largest answer stored for replay (larger: not stored, the retry runs again)
MAX_STORED = 1024 * 1024

_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def _derive(key: str, client: str) -> tuple[str, bytes]:
    """(the stored form of ``key``, the AES key for its answer)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    stored = hashlib.sha256(b"unica idempotency key\0" + client.encode() + b"\0" + key.encode()).hexdigest()
    aes = HKDF(hashes.SHA256(), 32, salt=client.encode(), info=b"unica idempotency answer").derive(key.encode())
    return stored, aes


def _seal(aes: bytes, stored: str, body: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(aes).encrypt(nonce, body, stored.encode())


def _open(aes: bytes, stored: str, blob: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(aes).decrypt(blob[:12], blob[12:], stored.encode())


def _claim(store, client: str, stored: str, method: str, path: str, digest: str):
    """Record the key (None: recorded, run the request) or return the existing row's facts."""
    from sqlalchemy import delete, select
    from sqlalchemy.exc import IntegrityError

    from unica.store import models as m

    now = m.utcnow()
    try:
        with store.write() as s:
            s.execute(delete(m.IdempotencyKey).where(m.IdempotencyKey.created_at < now - RETENTION))
            s.add(m.IdempotencyKey(client=client, key=stored, method=method, path=path, request_sha256=digest,
                                   status_code=None, content_type=None, body=None, created_at=now))
        return None
    except IntegrityError:
        pass
    with store.read() as s:
        row = s.scalars(select(m.IdempotencyKey).where(m.IdempotencyKey.client == client,
                                                       m.IdempotencyKey.key == stored)).first()
        if row is None:  # removed meanwhile (the first one failed): the caller may try again
            return "gone"
        return (row.method, row.path, row.request_sha256, row.status_code, row.content_type, row.body)


def _finish(store, client: str, stored: str, status: int | None, content_type: str | None, body: bytes | None):
    from sqlalchemy import delete, update

    from unica.store import models as m

    with store.write() as s:
        where = (m.IdempotencyKey.client == client, m.IdempotencyKey.key == stored)
        if status is None:
            s.execute(delete(m.IdempotencyKey).where(*where))
        else:
            s.execute(update(m.IdempotencyKey).where(*where).values(status_code=status, content_type=content_type,
                                                                   body=body))


class Idempotency:
    """ASGI middleware (inside :class:`unica.service.limits.Guard`, so the body is bounded)."""

    def __init__(self, app, settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        raw = [v for k, v in scope.get("headers") or () if k == b"idempotency-key"]
        if not raw:
            return await self.app(scope, receive, send)
        key = raw[0].decode("latin-1").strip()
        if len(raw) > 1 or not _KEY.match(key):
            raise Problem(400, "malformed", detail="Idempotency-Key must be one value of 1 to 200 visible ASCII "
                                                   "characters")
        store = scope["app"].state.store
        client = client_of(scope, self.settings).key
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        path = scope.get("path", "")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        digest = hashlib.sha256(b"%s\0%s\0" % (b"POST", path.encode()) + body).hexdigest()
        stored, aes = _derive(key, client)
        for _ in range(3):
            found = await anyio.to_thread.run_sync(_claim, store, client, stored, "POST", path, digest)
            if found != "gone":
                break
        if found == "gone":
            raise Problem(409, "idempotency-in-progress", detail="this Idempotency-Key is in use; retry",
                          headers={"Retry-After": "1"})
        if found is not None:
            return await self._replay(found, digest, path, aes, stored, send)

        sent = False

        async def replaying():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        answer = {"status": None, "type": None, "body": [], "size": 0}

        async def capturing(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                for k, v in message.get("headers") or ():
                    if k.lower() == b"content-type":
                        answer["type"] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                answer["size"] += len(message.get("body", b""))
                if answer["size"] <= MAX_STORED:
                    answer["body"].append(message.get("body", b""))
            await send(message)

        done = False
        try:
            await self.app(scope, replaying, capturing)
            done = True
        finally:
            status = answer["status"]
            keep = done and status is not None and status < 500 and answer["size"] <= MAX_STORED
            blob = _seal(aes, stored, b"".join(answer["body"])) if keep else None
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(_finish, store, client, stored, status if keep else None,
                                                   answer["type"] if keep else None, blob)
                except Exception:  # noqa: BLE001 - the answer was given; a stale record expires
                    log.exception("cannot record the answer to an Idempotency-Key")

    async def _replay(self, found, digest, path, aes, stored, send) -> None:
        method, first_path, first_digest, status, content_type, blob = found
        if first_digest != digest or first_path != path or method != "POST":
            raise Problem(422, "idempotency-mismatch",
                          detail="this Idempotency-Key was used for another request (method, path or body)")
        if status is None:
            raise Problem(409, "idempotency-in-progress", detail="the first request with this Idempotency-Key is "
                                                                 "still running", headers={"Retry-After": "1"})
        try:
            body = _open(aes, stored, blob or b"")
        except Exception:  # noqa: BLE001 - cannot happen with the same key: the record was tampered with
            raise Problem(422, "idempotency-mismatch", detail="the stored answer for this key cannot be read") from None
        headers = [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true"),
                   (b"cache-control", b"no-store")]
        if content_type:
            headers.append((b"content-type", content_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
