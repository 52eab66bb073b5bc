"""Revocation with the database: revoke, hold, release, and CRLs read from the store.

Each change is one transaction holding the certificate row lock, the status change, the
removal of any pre-signed OCSP response that would now be wrong, and the audit entry. So a
revocation is either wholly applied or not at all, and the OCSP responder never serves a
stale "good" after it commits (until the pre-signer has re-signed, a request is answered
live or with tryLater).

CRL numbers are taken under a row lock on the CA (``SELECT ... FOR UPDATE``): strictly
increasing per CA across processes and nodes. The number is reserved (and audited) before
the CRL is signed; a crash in between only leaves a gap in the sequence, never a reuse.
The file is published (renamed into place) under the same lock when it is recorded, and
only if no higher-numbered CRL went to that file first: the published CRL never goes back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography import x509
from sqlalchemy import and_, delete, or_, select

from unica.ca.crl import CRLIssuer, RevokedEntry, ShardScheme, build_crl
from unica.ca.records import get_ca_row
from unica.errors import CertificateNotFound, ConfigurationError, InputError, RevocationError
from unica.store import models as m

#: RFC 5280 5.3.1 reason names (cryptography's spelling), keyed by a loose form
_REASONS = {r.value.lower(): r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl}

DEFAULT_CRL_VALIDITY = dt.timedelta(days=7)
DEFAULT_DELTA_VALIDITY = dt.timedelta(days=1)


def parse_reason(text: str | x509.ReasonFlags | None) -> x509.ReasonFlags:
    """``keyCompromise``, ``key-compromise`` and ``key_compromise`` all name the same reason."""
    if text is None:
        return x509.ReasonFlags.unspecified
    if isinstance(text, x509.ReasonFlags):
        reason = text
    else:
        key = text.strip().replace("-", "").replace("_", "").lower()
        if key == "removefromcrl":
            reason = x509.ReasonFlags.remove_from_crl
        else:
            reason = _REASONS.get(key)
        if reason is None:
            names = ", ".join(r.value for r in _REASONS.values())
            raise InputError(f"unknown revocation reason {text!r} (one of: {names})")
    if reason is x509.ReasonFlags.remove_from_crl:
        raise InputError("removeFromCRL is not a revocation reason; use 'unica release' to lift a hold")
    return reason


def parse_serial(text: str | int) -> int:
    if isinstance(text, int):
        serial = text
    else:
        try:
            serial = m.serial_int(text)
        except ValueError:
            raise InputError(f"bad serial number {text!r} (hexadecimal expected)") from None
    if serial <= 0:
        raise InputError(f"bad serial number {text!r} (serial numbers are positive)")
    return serial


@dataclass(frozen=True)
class RevocationState:
    ca: str
    serial_hex: str
    status: str
    revoked_at: dt.datetime | None
    reason: str | None
    invalidity_date: dt.datetime | None
    #: for a CA certificate: the name of the subordinate CA it certifies, now marked revoked
    sub_ca: str | None = None

    def to_dict(self) -> dict:
        return {
            "ca": self.ca, "serial": self.serial_hex, "status": self.status,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
            "invalidity_date": self.invalidity_date.isoformat() if self.invalidity_date else None,
            "sub_ca": self.sub_ca,
        }


def _find_cert(session, serial: int, ca_name: str | None, *, lock: bool) -> tuple[m.CA, m.Certificate]:
    q = select(m.Certificate, m.CA).join(m.CA, m.Certificate.ca_id == m.CA.id).where(
        m.Certificate.serial == m.serial_hex(serial))
    if ca_name is not None:
        ca = get_ca_row(session, ca_name)
        q = q.where(m.Certificate.ca_id == ca.id)
    if lock:
        q = q.with_for_update(of=m.Certificate)
    rows = session.execute(q).all()
    where = f" issued by CA {ca_name!r}" if ca_name else ""
    if not rows:
        raise CertificateNotFound(f"no certificate with serial {m.serial_hex(serial)}{where}")
    if len(rows) > 1:
        names = ", ".join(sorted(r[1].name for r in rows))
        raise CertificateNotFound(f"serial {m.serial_hex(serial)} was issued by several CAs ({names}); add --ca")
    cert, ca = rows[0]
    return ca, cert


def _state(ca: m.CA, cert: m.Certificate, sub_ca: str | None = None) -> RevocationState:
    return RevocationState(ca.name, cert.serial, cert.status, cert.revoked_at, cert.revocation_reason,
                           cert.invalidity_date, sub_ca)


def _drop_presigned(session, cert: m.Certificate) -> None:
    session.execute(delete(m.OCSPResponse).where(m.OCSPResponse.cert_id == cert.id))


def _subordinate_of(session, cert: m.Certificate) -> m.CA | None:
    if not cert.is_ca or cert.der is None:
        return None
    return session.execute(select(m.CA).where(m.CA.cert_der == cert.der)).scalar_one_or_none()


def revoke(store, serial: str | int, *, ca: str | None = None, reason: str | x509.ReasonFlags | None = None,
           invalidity_date: dt.datetime | None = None, at: dt.datetime | None = None) -> RevocationState:
    """Revoke (or, with ``certificateHold``, suspend) a certificate."""
    serial = parse_serial(serial)
    reason_flag = parse_reason(reason)
    now = at or m.utcnow()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise InputError("the invalidity date needs a time zone (e.g. 2026-11-20T08:00:00Z)")
        if invalidity_date > now:
            raise InputError("the invalidity date cannot be in the future")
    with store.write() as s:
        ca_row, cert = _find_cert(s, serial, ca, lock=True)
        if cert.status in ("pending", "failed"):
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} was never issued ({cert.status})")
        if cert.status == "revoked":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is already revoked "
                                  f"({cert.revocation_reason}, {cert.revoked_at:%Y-%m-%d %H:%M:%SZ})")
        hold = reason_flag is x509.ReasonFlags.certificate_hold
        if hold and cert.status == "hold":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is already on hold")
        was = cert.status
        cert.status = "hold" if hold else "revoked"
        # a hold made final keeps its original revocation date (RFC 5280 5.3.1)
        if not (was == "hold" and cert.revoked_at is not None):
            cert.revoked_at = now
        cert.revocation_reason = reason_flag.value
        cert.invalidity_date = invalidity_date
        cert.updated_at = now
        _drop_presigned(s, cert)
        sub = _subordinate_of(s, cert)
        if sub is not None and not hold:
            sub.status = "revoked"
        store.audit(s, "certificate.held" if hold else "certificate.revoked", ca=ca_row.name, target=cert.serial,
                    details={"reason": reason_flag.value, "previous_status": was,
                             "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
                             "subject": cert.subject_text,
                             **({"subordinate_ca": sub.name} if sub is not None and not hold else {})})
        return _state(ca_row, cert, sub.name if sub is not None and not hold else None)


def release(store, serial: str | int, *, ca: str | None = None) -> RevocationState:
    """Lift a certificate hold: the certificate is valid again (a delta CRL says removeFromCRL)."""
    serial = parse_serial(serial)
    now = m.utcnow()
    with store.write() as s:
        ca_row, cert = _find_cert(s, serial, ca, lock=True)
        if cert.status != "hold":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is not on hold ({cert.status})")
        cert.status = "valid"
        cert.revoked_at = None
        cert.revocation_reason = None
        cert.invalidity_date = None
        cert.released_at = now
        cert.updated_at = now
        _drop_presigned(s, cert)
        store.audit(s, "certificate.released", ca=ca_row.name, target=cert.serial,
                    details={"subject": cert.subject_text})
        return _state(ca_row, cert)


# --- CRLs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedCRL:
    ca: str
    number: int
    is_delta: bool
    base_number: int | None
    shard: int | None
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    size: int
    sha256: str
    path: str  # "" when not written: a higher-numbered CRL was published there first
    superseded_by: int | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["this_update"] = self.this_update.isoformat()
        d["next_update"] = self.next_update.isoformat()
        return d


_REASON_BY_VALUE = {r.value: r for r in x509.ReasonFlags}


def _epoch(column, dialect: str):
    """A timestamp column as whole seconds since the epoch, computed by the database."""
    from sqlalchemy import BigInteger, Integer, cast, func

    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _revoked_rows(store, ca_id: int, now: dt.datetime, since: dt.datetime | None,
                  shards: int, shard: int | None, batch: int = 50_000) -> Iterator[RevokedEntry]:
    """Stream the CRL entries of one CA (and shard) from the database, in batches.

    The hot path of million-entry CRLs: plain Core rows (no ORM objects), revocation times
    computed as epoch seconds by the database, reasons looked up in a dict."""
    c = m.Certificate
    d = store.dialect
    cols = (c.serial, c.status, _epoch(c.revoked_at, d), c.revocation_reason, c.invalidity_date,
            _epoch(c.released_at, d))
    q = select(*cols).where(c.ca_id == ca_id, c.not_after > now)
    if since is None:
        q = q.where(c.status.in_(("revoked", "hold")))
    else:
        q = q.where(or_(and_(c.status.in_(("revoked", "hold")), c.updated_at > since),
                        and_(c.status == "valid", c.released_at > since)))
    remove = x509.ReasonFlags.remove_from_crl
    reasons = _REASON_BY_VALUE
    with store.read() as s:
        result = s.connection().execution_options(yield_per=batch).execute(q)
        for part in result.partitions(batch):
            for serial_hex, status, revoked_at, reason, inval, released_at in part:
                serial = int(serial_hex, 16)
                if shard is not None and serial % shards != shard:
                    continue
                if status == "valid":  # released from hold since the base CRL
                    yield RevokedEntry(serial, int(released_at), remove, None)
                else:
                    yield RevokedEntry(serial, int(revoked_at), reasons.get(reason) if reason else None, inval)


def crl_path(ca: str, shard: int | None, delta: bool, directory: Path) -> Path:
    name = ca + (f"-{shard}" if shard is not None else "") + ("-delta" if delta else "") + ".crl"
    return directory / name


def generate_crl(store, ca_name: str, *, key=None, delta: bool = False, shard: int | None = None,
                 out: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                 validity: dt.timedelta | None = None, now: dt.datetime | None = None,
                 progress=None) -> list[GeneratedCRL]:
    """Generate the CRL(s) of a CA from the database and write them (DER).

    Partitioned CAs (``crl_shards`` > 1) get one CRL per shard unless ``shard`` is given;
    each carries an Issuing Distribution Point with its shard's URL. ``delta`` makes delta
    CRLs against the latest base CRL of the same shard.
    """
    # ``taken``: when the entries are read (kept to the microsecond in the CRL row, so the next
    # delta lists exactly what changed after this snapshot); the CRL itself says whole seconds
    taken = now or m.utcnow()
    now = taken.replace(microsecond=0)
    with store.read() as s:
        row = get_ca_row(s, ca_name)
        if row.cert_der is None:
            raise RevocationError(f"CA {ca_name!r} has no certificate yet; it cannot sign CRLs")
        ca_cert = x509.load_der_x509_certificate(row.cert_der)
        shards = row.crl_shards or 1
        crl_url, delta_url, key_uri = row.crl_url, row.delta_crl_url, row.key_uri
        settings = dict(row.settings or {})
    if shard is not None and not 0 <= shard < shards:
        raise InputError(f"CA {ca_name!r} has {shards} CRL shard(s); shard {shard} does not exist")
    scheme = None
    if shards > 1:
        if not crl_url or "{shard}" not in crl_url:
            raise ConfigurationError(f"CA {ca_name!r} has {shards} CRL shards but its CRL URL has no {{shard}}")
        scheme = ShardScheme(shards, crl_url)
    wanted = [shard] if shard is not None else (list(range(shards)) if shards > 1 else [None])
    if out is not None and len(wanted) > 1:
        raise InputError(f"CA {ca_name!r} has {shards} CRL shards: use --out-dir, or --shard N with --out")
    if key is None:
        from unica.hsm import load_key

        key = load_key(key_uri)
    validity = validity or _validity(settings, delta)
    next_update = now + validity
    directory = Path(out_dir) if out_dir else Path(out).parent if out else _default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    issuer = CRLIssuer.from_certificate(ca_cert)
    results = []
    for sh in wanted:
        # 1. reserve the number (row lock: strictly increasing across nodes) and find the base
        with store.write() as s:
            ca_row = s.get(m.CA, _ca_id(s, ca_name), with_for_update=True)
            base = None
            if delta:
                base = s.execute(
                    select(m.CRL).where(m.CRL.ca_id == ca_row.id, m.CRL.is_delta.is_(False),
                                        (m.CRL.shard == sh) if sh is not None else m.CRL.shard.is_(None))
                    .order_by(m.CRL.number.desc()).limit(1)).scalar_one_or_none()
                if base is None:
                    raise RevocationError(f"CA {ca_name!r} has no base CRL{_shard_text(sh)} yet; "
                                          "generate one before a delta CRL")
                base_number, base_time = base.number, base.this_update
            else:
                base_number, base_time = None, None
            number = ca_row.crl_number + 1
            ca_row.crl_number = number
            store.audit(s, "crl.number-reserved", ca=ca_name, target=str(number),
                        details={"delta": delta, "shard": sh})
        # 2. build and sign, streaming the entries from the database
        path = Path(out) if out else crl_path(ca_name, sh, delta, directory)
        counted = _Counter(_revoked_rows(store, ca_row.id, now, base_time, shards, sh))
        idp = scheme.idp(sh) if scheme is not None else None
        freshest = [delta_url.format(shard=sh) if sh is not None else delta_url] if (delta_url and not delta) else []
        # unique per generation (pid first: recovery leaves a live process's files alone)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}-{secrets.token_hex(4)}")
        h = _HashingWriter(tmp)
        try:
            size = build_crl(issuer=issuer, signing_key=key, crl_number=number, this_update=now,
                             next_update=next_update, entries=counted, delta_base=base_number,
                             freshest_crl_urls=freshest, idp=idp, out=h)
            h.close()
            # 3. publish and record it, under the CA row lock: a CRL overtaken (while it was being
            #    signed) by a higher-numbered one written to the same file is recorded, not published
            #    over it -- the published file never goes back to a lower number
            with store.write() as s:
                s.get(m.CA, ca_row.id, with_for_update=True)
                newer = s.execute(select(m.CRL.number).where(m.CRL.ca_id == ca_row.id, m.CRL.path == str(path),
                                                             m.CRL.number > number)
                                  .order_by(m.CRL.number.desc()).limit(1)).scalar_one_or_none()
                if newer is None:
                    os.replace(tmp, path)
                s.add(m.CRL(ca_id=ca_row.id, number=number, is_delta=delta, base_number=base_number, shard=sh,
                            this_update=taken, next_update=next_update, entries=counted.n, sha256=h.hexdigest(),
                            path=str(path) if newer is None else None))
                store.audit(s, "crl.generated", ca=ca_name, target=str(number),
                            details={"delta": delta, "base": base_number, "shard": sh, "entries": counted.n,
                                     "sha256": h.hexdigest(), "next_update": next_update.isoformat(),
                                     **({"superseded_by": newer} if newer is not None else {})})
        finally:
            h.close()
            tmp.unlink(missing_ok=True)
        results.append(GeneratedCRL(ca_name, number, delta, base_number, sh, now, next_update, counted.n, size,
                                    h.hexdigest(), str(path) if newer is None else "", newer))
        if progress:
            progress(results[-1])
    return results


def _ca_id(session, name: str) -> int:
    return get_ca_row(session, name).id


def _shard_text(sh: int | None) -> str:
    return f" for shard {sh}" if sh is not None else ""


def _validity(settings: dict, delta: bool) -> dt.timedelta:
    key = "delta_crl_validity_hours" if delta else "crl_validity_hours"
    hours = settings.get(key)
    if hours is None:
        return DEFAULT_DELTA_VALIDITY if delta else DEFAULT_CRL_VALIDITY
    return dt.timedelta(hours=float(hours))


def _default_dir() -> Path:
    from unica.store import unica_home

    return unica_home() / "crl"


class _Counter:
    def __init__(self, it):
        self._it = iter(it)
        self.n = 0

    def __iter__(self):
        for e in self._it:
            self.n += 1
            yield e


class _HashingWriter:
    """A buffered file writer that hashes what it writes."""

    def __init__(self, path: Path):
        self._f = open(path, "wb", buffering=1 << 20)
        os.chmod(path, 0o644)
        self._h = hashlib.sha256()

    def write(self, data) -> int:
        self._h.update(data)
        return self._f.write(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def hexdigest(self) -> str:
        return self._h.hexdigest()
