"""CA lifecycle with the database: create a root or a subordinate CA, export, change settings.

A CA certificate goes through the same engine as any other (profile, lint, record intent,
sign once). Its row in ``certificates`` belongs to its issuer (for a root: to itself).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from unica import der
from unica.ca import engine
from unica.ca.names import apply_subject_rules, check_any_subject, name_text, parse_dn
from unica.ca.records import get_ca_row, name_hash, pem
from unica.store.cas import ca_row_info, list_cas  # noqa: F401 (list_cas: part of this module's API)
from unica.ca.request import CSRRequest
from unica.errors import CAExists, CAUnusable, InputError, MalformedInput, PolicyViolation, StoreError
from unica.hsm.keytypes import key_identifier, key_type_of, public_key_of
from unica.policies import Profile, get_profile, parse_duration

_CA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class KeySpec:
    """Where a new CA's key comes from: an existing URI, or a new key of ``key_type``
    (on token ``token``, else an encrypted file under ``$UNICA_HOME/keys``)."""

    uri: str | None = None
    key_type: str | None = None
    token: str | None = None
    pin: str | None = None
    passphrase: str | None = None
    #: a new token key that is sensitive but wrappable (``unica key backup``), never readable in plaintext
    backup_allowed: bool = False

    def __post_init__(self):
        if (self.uri is None) == (self.key_type is None):
            raise InputError("give exactly one of --key URI or --key-type TYPE")
        if self.token and self.uri:
            raise InputError("--token goes with --key-type (a --key URI already names its token)")
        if self.backup_allowed and not (self.key_type and self.token):
            raise InputError("--backup-allowed goes with --key-type and --token (a key generated on a token)")

    def settings(self) -> dict:
        """What the CA's settings JSON records about its key."""
        return {"backup_allowed": bool(self.backup_allowed)}

    def target_uri(self, ca_name: str) -> str:
        if self.uri:
            return self.uri
        if self.token:
            from unica.hsm.uri import Pkcs11URI

            return str(Pkcs11URI(token=self.token, object=f"ca-{ca_name}"))
        from unica.config import keys_dir

        d = keys_dir()
        d.mkdir(parents=True, exist_ok=True)
        return f"file:{(d / f'{ca_name}.pem').resolve()}"

    def obtain(self, ca_name: str):
        from unica.hsm import generate_key, load_key

        uri = self.target_uri(ca_name)
        if self.uri:
            return uri, load_key(uri, pin=self.pin, passphrase=self.passphrase)
        return uri, generate_key(uri, self.key_type, pin=self.pin, passphrase=self.passphrase,
                                 backup_allowed=self.backup_allowed)


@dataclass(frozen=True)
class CASettings:
    """The operator-set parts of a CA (None: leave unchanged)."""

    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    crl_shards: int | None = None
    profiles: tuple[str, ...] | None = None
    #: where the delta CRLs are published: base CRLs carry it as their Freshest CRL pointer
    #: (RFC 5280 5.2.6); certificates do not (it stays changeable with ``ca set``)
    delta_crl_url: str | None = None

    def check(self) -> None:
        for field in ("crl_url", "ocsp_url", "ca_issuers_url", "delta_crl_url"):
            v = getattr(self, field)
            if v is None or v == "":
                continue
            u = urlparse(v.replace("{shard}", "0"))
            if u.scheme not in ("http", "https") or not u.netloc:
                raise InputError(f"--{field.replace('_', '-')} {v!r} is not an http(s) URL")
        if self.crl_shards is not None and not 1 <= self.crl_shards <= 65536:
            raise InputError(f"--crl-shards {self.crl_shards} must be from 1 to 65536")
        for p in self.profiles or ():
            get_profile(p)

    def check_new(self) -> None:
        """:meth:`check`, and the CRL URL / shard count agree for a CA created with these."""
        self.check()
        shards = self.crl_shards or 1
        for field in ("crl_url", "delta_crl_url"):
            url = getattr(self, field)
            opt = "--" + field.replace("_", "-")
            has = bool(url) and "{shard}" in url
            if shards > 1 and not has and (field == "crl_url" or url):
                raise InputError(f"with --crl-shards {shards} the {opt} must contain {{shard}}")
            if shards == 1 and has:
                raise InputError(f"the {opt} has {{shard}} but --crl-shards is 1")

    def apply(self, row) -> dict:
        changed = {}
        for field in ("crl_url", "ocsp_url", "ca_issuers_url", "crl_shards", "delta_crl_url"):
            v = getattr(self, field)
            if v is not None:
                v = v or None if isinstance(v, str) else v
                setattr(row, field, v)
                changed[field] = v
        if self.profiles is not None:
            row.profiles = list(self.profiles)
            changed["profiles"] = list(self.profiles)
        shards = row.crl_shards or 1
        if shards > 1 and (not row.crl_url or "{shard}" not in row.crl_url):
            raise InputError(f"CA {row.name!r}: with --crl-shards {shards} the CRL URL must contain {{shard}}")
        if shards == 1 and row.crl_url and "{shard}" in row.crl_url:
            raise InputError(f"CA {row.name!r}: the CRL URL has {{shard}} but --crl-shards is 1")
        if shards > 1 and row.delta_crl_url and "{shard}" not in row.delta_crl_url:
            raise InputError(f"CA {row.name!r}: with --crl-shards {shards} the delta CRL URL must contain {{shard}}")
        if shards == 1 and row.delta_crl_url and "{shard}" in row.delta_crl_url:
            raise InputError(f"CA {row.name!r}: the delta CRL URL has {{shard}} but --crl-shards is 1")
        return changed


def _check_name(name: str) -> None:
    if not _CA_NAME.match(name):
        raise InputError(f"bad CA name {name!r} (letters, digits, '.', '_', '-'; at most 64)")


def _ensure_new(store, name: str) -> None:
    from sqlalchemy import select

    from unica.store import models as m

    _check_name(name)
    with store.read() as s:
        if s.execute(select(m.CA.id).where(m.CA.name == name)).first():
            raise CAExists(f"a CA named {name!r} already exists")


def _with_validity(profile: Profile, validity: str | None) -> Profile:
    if not validity:
        return profile
    try:
        return dataclasses.replace(profile, validity=parse_duration(validity))
    except ValueError as e:
        raise InputError(f"--validity: {e}") from None


def _fill_ca_row(row, cert_der: bytes) -> None:
    cert = x509.load_der_x509_certificate(cert_der)
    row.cert_der = cert_der
    row.subject_der = cert.subject.public_bytes()
    row.subject_text = name_text(cert.subject)
    row.not_before = cert.not_valid_before_utc
    row.not_after = cert.not_valid_after_utc
    row.ski = key_identifier(public_key_of(cert))
    row.key_hash = row.ski  # SHA-1 of subjectPublicKey: RFC 5280 method 1 = OCSP issuerKeyHash
    row.name_hash = name_hash(cert.subject)
    row.status = "active"


def create_root(store, name: str, subject: str, key: KeySpec, *, validity: str | None = None,
                profile: str = "root-ca", settings: CASettings = CASettings(),
                now: dt.datetime | None = None, auth=None) -> dict:
    """Create a self-signed root CA; return :func:`ca_info` of it.

    Operation ``ca.create`` (admin; see :mod:`unica.auth`): ``auth`` is the operator."""
    _ensure_new(store, name)
    settings.check_new()
    op = create_operation("root", name, subject, key, validity=validity, profile=profile, settings=settings)
    with _authorized(store, op, auth):
        return _create_root(store, name, subject, key, validity=validity, profile=profile, settings=settings,
                            now=now)


def _create_root(store, name: str, subject: str, key: KeySpec, *, validity, profile, settings, now) -> dict:
    from unica.store import models as m

    _ensure_new(store, name)
    settings.check_new()
    prof = _with_validity(get_profile(profile), validity)
    if prof.kind != "root-ca":
        raise PolicyViolation(f"profile {prof.name!r} is a {prof.kind} profile, not a root-ca profile")
    dn = parse_dn(subject)
    apply_subject_rules(prof, dn, f"CA {name}")  # refuse before a key is made
    if key.key_type:
        engine.check_key(prof, _key_type_hint(key), f"CA {name}")
    uri, k = key.obtain(name)
    pub = k.public_key()
    req = CSRRequest(pub, key_type_of(pub), dn, (), ())
    issuer = engine.Issuer(name=name, subject=dn, public_key=pub, ski=key_identifier(pub), is_root=True)
    prepared = engine.prepare(issuer, prof, req, now=now, where=f"CA {name}")
    with store.write() as s:
        row = m.CA(name=name, key_uri=uri, subject_der=prepared.subject_der,
                   subject_text=name_text(prepared.subject), status="pending", crl_shards=1, profiles=[],
                   settings=key.settings())
        settings.apply(row)
        s.add(row)
        s.flush()
        cert_row = _intent_row(m, row.id, prepared, requester="unica ca create-root")
        s.add(cert_row)
        s.flush()
        ids = (row.id, cert_row.id)
    cert_der = _sign_or_fail(store, ids[1], prepared, k, pub, name)
    with store.write() as s:
        row = s.get(m.CA, ids[0])
        _fill_ca_row(row, cert_der)
        _finish_cert_row(s.get(m.Certificate, ids[1]), cert_der)
        store.audit(s, "ca.created", ca=name, target=m.serial_hex(prepared.serial), details={
            "kind": "root", "key_uri": uri, "subject": row.subject_text, "profile": prof.name,
            "fingerprint_sha256": engine.fingerprint(cert_der), "not_after": row.not_after.isoformat()})
    return ca_info(store, name)


def _key_type_hint(key: KeySpec) -> str:
    from unica.hsm import KeyType

    return KeyType.parse(key.key_type).value


def _intent_row(m, ca_id: int, prepared, requester: str | None):
    return m.Certificate(
        ca_id=ca_id, serial=m.serial_hex(prepared.serial), status="pending",
        subject_text=name_text(prepared.subject), subject_der=prepared.subject_der,
        sans=list(prepared.sans), not_before=prepared.not_before, not_after=prepared.not_after,
        profile=prepared.profile, is_ca=prepared.is_ca, tbs_der=prepared.tbs_der,
        spki_sha256=prepared.spki_sha256, requester=requester)


def _finish_cert_row(cert_row, cert_der: bytes) -> None:
    if cert_row.tbs_der is None or der.tbs_of(cert_der) != cert_row.tbs_der:
        raise StoreError(f"certificate {cert_row.serial}: the signed certificate is not the recorded intent")
    cert_row.tbs_der = None  # the certificate holds it
    cert_row.der = cert_der
    cert_row.fingerprint_sha256 = engine.fingerprint(cert_der)
    cert_row.status = "valid"


def _sign_or_fail(store, cert_id: int, prepared, key, issuer_pub, ca_name: str) -> bytes:
    from unica.store import models as m

    try:
        return engine.sign_prepared(prepared, key, issuer_pub)
    except BaseException as e:
        with store.write() as s:
            row = s.get(m.Certificate, cert_id)
            row.status = "failed"
            store.audit(s, "certificate.signing_failed", ca=ca_name, target=row.serial,
                        details={"error": type(e).__name__, "reason": " ".join(str(e).split())})
        raise


def create_sub(store, name: str, parent: str, subject: str, key: KeySpec, *, parent_key=None,
               validity: str | None = None, profile: str = "sub-ca", settings: CASettings = CASettings(),
               now: dt.datetime | None = None, auth=None) -> dict:
    """Create a subordinate CA signed by the CA ``parent`` of this store.

    Operation ``ca.create`` (admin): issuing the sub-CA's certificate runs under it."""
    _ensure_new(store, name)
    settings.check_new()
    op = create_operation("sub", name, subject, key, validity=validity, profile=profile, settings=settings,
                          parent=parent)
    with _authorized(store, op, auth):
        return _create_sub(store, name, parent, subject, key, parent_key=parent_key, validity=validity,
                           profile=profile, settings=settings, now=now)


def _create_sub(store, name: str, parent: str, subject: str, key: KeySpec, *, parent_key, validity, profile,
                settings, now) -> dict:
    from unica.ca.issuance import IssuingCA
    from unica.store import models as m

    _ensure_new(store, name)
    settings.check_new()
    prof = _with_validity(get_profile(profile), validity)
    if prof.kind != "sub-ca":
        raise PolicyViolation(f"profile {prof.name!r} is a {prof.kind} profile, not a sub-ca profile")
    dn = parse_dn(subject)
    apply_subject_rules(prof, dn, f"CA {name}")  # refuse before a key is made
    parent_ca = IssuingCA(store, parent, key=parent_key)
    issuer = parent_ca.issuer  # CAUnusable (expired, pending) before any key is made
    if validity:
        _check_within_parent(prof, issuer, validity, now)
    if key.key_type:
        engine.check_key(prof, _key_type_hint(key), f"CA {name}")
    uri, k = key.obtain(name)
    pub = k.public_key()
    req = CSRRequest(pub, key_type_of(pub), dn, (), ())
    issued = parent_ca.issue(req, prof, requester="unica ca create-sub", source=f"CA {name}", now=now)
    with store.write() as s:
        row = m.CA(name=name, parent_id=parent_ca.ca_id, key_uri=uri, subject_der=b"", subject_text="",
                   status="pending", crl_shards=1, profiles=[], settings=key.settings())
        settings.apply(row)
        _fill_ca_row(row, issued.der)
        s.add(row)
        s.flush()
        store.audit(s, "ca.created", ca=name, target=issued.serial_hex, details={
            "kind": "subordinate", "parent": issuer.name, "key_uri": uri, "subject": row.subject_text,
            "profile": prof.name, "fingerprint_sha256": issued.fingerprint_sha256})
    return ca_info(store, name)


def _check_within_parent(prof: Profile, issuer, validity: str, now: dt.datetime | None) -> None:
    """An explicit ``--validity`` that would outlive the parent is refused (the engine would cut
    the certificate to the parent's notAfter: the operator asked for something else)."""
    if issuer.not_after is None:
        return
    start = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0) - engine.BACKDATE
    end = start + prof.validity
    if end > issuer.not_after:
        left = issuer.not_after - start
        raise PolicyViolation(
            f"--validity {validity} would end {end:%Y-%m-%d %H:%M}Z, after the parent CA {issuer.name!r} expires "
            f"({issuer.not_after:%Y-%m-%d %H:%M}Z); at most {left.days}d is possible")


def create_external_sub(store, name: str, subject: str, key: KeySpec, csr_out: Path, *,
                        settings: CASettings = CASettings(), write_csr=None, auth=None) -> dict:
    """A subordinate CA whose parent is outside unica: write its CSR, wait for ``import_cert``.

    ``write_csr(pem_bytes)``, when given, writes ``csr_out`` (the CLI's atomic writer). The CSR
    is written inside the transaction that records the pending CA, after the row is flushed: if
    writing fails, no CA is recorded (a retry does not find the name taken by a CA whose request
    was lost). Operation ``ca.create`` (admin); the request names ``csr_out`` as an absolute path.
    """
    _ensure_new(store, name)
    settings.check_new()
    op = create_operation("external", name, subject, key, settings=settings, csr_out=csr_out)
    with _authorized(store, op, auth):
        return _create_external_sub(store, name, subject, key, csr_out, settings=settings, write_csr=write_csr)


def _create_external_sub(store, name: str, subject: str, key: KeySpec, csr_out: Path, *, settings,
                         write_csr) -> dict:
    from cryptography.hazmat.primitives import serialization

    from unica.hsm.enroll import make_csr
    from unica.store import models as m

    _ensure_new(store, name)
    settings.check_new()
    dn = check_any_subject(parse_dn(subject), f"CA {name}")  # the bounds any CA applies, before a key is made
    uri, k = key.obtain(name)
    csr = make_csr(k, dn, ca=True)
    pem_bytes = csr.public_bytes(serialization.Encoding.PEM)
    with store.write() as s:
        row = m.CA(name=name, key_uri=uri, subject_der=dn.public_bytes(), subject_text=name_text(dn),
                   status="pending", crl_shards=1, profiles=[], settings=key.settings(),
                   ski=key_identifier(k.public_key()), key_hash=key_identifier(k.public_key()),
                   name_hash=name_hash(dn))
        settings.apply(row)
        s.add(row)
        store.audit(s, "ca.csr_created", ca=name, details={"key_uri": uri, "subject": row.subject_text,
                                                           "csr_out": str(csr_out)})
        s.flush()  # a constraint violation surfaces before the request is written
        if write_csr is not None:
            write_csr(pem_bytes)
        else:
            Path(csr_out).write_bytes(pem_bytes)
    return ca_info(store, name)


def _load_certs(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except (ValueError, x509.InvalidVersion):
        raise MalformedInput(f"{source}: not a PEM or DER certificate") from None
    return certs


def import_cert(store, name: str, data: bytes, source: str = "certificate", *, auth=None) -> dict:
    """Install the certificate an external parent issued for the pending CA ``name``
    (PEM may carry the parent chain after it: it is kept for ``export --chain``).

    Operation ``ca.import-cert`` (admin): its parameters carry the file as given (base64)."""
    import base64

    from unica.auth import Operation

    _load_certs(data, source)  # not a certificate: said before anything else
    with _authorized(store, Operation("ca.import-cert", ca=name, params={"cert": base64.b64encode(data).decode()}),
                     auth):
        return _import_cert(store, name, data, source)


def _import_cert(store, name: str, data: bytes, source: str) -> dict:
    certs = _load_certs(data, source)
    cert = certs[0]
    with store.write() as s:
        row = get_ca_row(s, name)
        if row.status != "pending" or row.cert_der is not None:
            raise CAUnusable(f"CA {name!r} is not waiting for a certificate (status {row.status})")
        try:
            cert_key = cert.public_key()
            exts = cert.extensions
            cert.subject, cert.issuer  # parsed lazily; KeyError: a string with an unknown ASN.1 type
        except (ValueError, KeyError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType) as e:
            raise MalformedInput(f"{source}: unreadable public key, names or extensions: {type(e).__name__}: {e}") \
                from None
        if key_identifier(cert_key) != row.key_hash:
            raise PolicyViolation(f"{source}: its public key is not CA {name!r}'s key")
        try:
            bc = exts.get_extension_for_class(x509.BasicConstraints).value
            ku = exts.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound as e:
            raise PolicyViolation(f"{source}: not a CA certificate (no {e.oid._name})") from None
        if not bc.ca or not ku.key_cert_sign:
            raise PolicyViolation(f"{source}: not a CA certificate (cA false or no keyCertSign)")
        if len(certs) > 1:
            try:
                cert.verify_directly_issued_by(certs[1])
            except (ValueError, TypeError, Exception):
                raise PolicyViolation(f"{source}: the certificate is not signed by the next one in the file") from None
        _fill_ca_row(row, cert.public_bytes(Encoding.DER))
        if cert.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc):
            raise CAUnusable(f"{source}: the certificate expired at {cert.not_valid_after_utc.isoformat()}")
        row.settings = {**(row.settings or {}),
                        "external_chain_pem": [c.public_bytes(Encoding.PEM).decode() for c in certs[1:]]}
        store.audit(s, "ca.certificate_imported", ca=name, details={
            "subject": row.subject_text, "issuer": name_text(cert.issuer),
            "fingerprint_sha256": engine.fingerprint(row.cert_der)})
    return ca_info(store, name)


def set_ca(store, name: str, settings: CASettings, *, key_uri: str | None = None, pin: str | None = None,
           passphrase: str | None = None, auth=None) -> dict:
    """Change CA ``name``'s settings and, with ``key_uri``, point it at that key (a restored one:
    :func:`unica.ca.keybackup.set_ca_key` checks it against the CA certificate).

    Operation ``ca.set`` (admin): its parameters are the settings given and the key URI (never a
    PIN). The settings are checked against the CA before the key is asked for or changed."""
    settings.check()
    if key_uri is not None:
        from unica.hsm.uri import parse_key_uri

        parse_key_uri(key_uri)  # a malformed URI is said before anything else
    with store.read() as s:  # a combination the CA refuses is said before anything changes (not committed)
        settings.apply(get_ca_row(s, name))
    with _authorized(store, set_operation(name, settings, key_uri), auth):
        if key_uri is not None:
            from unica.ca.keybackup import set_ca_key

            set_ca_key(store, name, key_uri, pin=pin, passphrase=passphrase)  # under this authority
        with store.write() as s:
            row = get_ca_row(s, name)
            changed = settings.apply(row)
            if changed:
                store.audit(s, "ca.settings_changed", ca=name, details=changed)
    return ca_info(store, name)


def ca_info(store, name: str) -> dict:
    from unica.ca.crls import ca_crl_state

    with store.read() as s:
        row = get_ca_row(s, name)
        info = ca_row_info(row, row.parent.name if row.parent_id and row.parent else None)
        info["backup_allowed"] = bool((row.settings or {}).get("backup_allowed"))
        info.update(ca_crl_state(s, row))  # CRL number, next updates, delta CRL configured
        return info


def export_ca(store, name: str, chain: bool = False) -> str:
    """The CA certificate as PEM; with ``chain``, followed by its parents up to the root."""
    with store.read() as s:
        row = get_ca_row(s, name)
        if row.cert_der is None:
            raise CAUnusable(f"CA {name!r} has no certificate yet (awaiting 'unica ca import-cert')")
        out = [pem(row.cert_der)]
        if chain:
            seen = {row.id}
            cur = row
            while cur.parent_id and cur.parent_id not in seen and cur.parent is not None:
                cur = cur.parent
                seen.add(cur.id)
                out.append(pem(cur.cert_der))
            out.extend((cur.settings or {}).get("external_chain_pem", []))
        return "".join(out)


def chain_pems(store, ca_name: str) -> str:
    return export_ca(store, ca_name, chain=True)


# --- under the operator check (unica.auth) ---------------------------------------------------
#
# Each state-changing function above runs as one operation: its parameters are exactly what is
# asked (never a PIN or passphrase), enough for an approved request to run it again
# (unica.ca.approvals rebuilds the call from them; the digest must come out the same).


def _authorized(store, op, auth):
    from unica.auth import authorized

    return authorized(store, op, auth)


def key_params(key: KeySpec) -> dict:
    """Where a new CA's key comes from, as an operation's parameters (no secret: a key URI cannot
    carry a PIN, see :mod:`unica.hsm.uri`)."""
    return {"uri": key.uri, "key_type": key.key_type, "token": key.token, "backup_allowed": bool(key.backup_allowed)}


def key_from_params(p: dict, **secrets) -> KeySpec:
    return KeySpec(uri=p["uri"], key_type=p["key_type"], token=p["token"], backup_allowed=p["backup_allowed"],
                   **secrets)


_SETTINGS_FIELDS = ("crl_url", "delta_crl_url", "ocsp_url", "ca_issuers_url", "crl_shards", "profiles")


def settings_params(settings: CASettings) -> dict:
    """The settings given (None: not given, left out; '' clears a URL)."""
    out = {}
    for f in _SETTINGS_FIELDS:
        v = getattr(settings, f)
        if v is not None:
            out[f] = list(v) if f == "profiles" else v
    return out


def settings_from_params(p: dict) -> CASettings:
    return CASettings(**{f: (tuple(p[f]) if f == "profiles" else p[f]) for f in _SETTINGS_FIELDS if f in p})


def create_operation(kind: str, name: str, subject: str, key: KeySpec, *, validity: str | None = None,
                     profile: str | None = None, settings: CASettings = CASettings(), parent: str | None = None,
                     csr_out: Path | str | None = None):
    """The ``ca.create`` operation: ``kind`` root, sub (``parent``) or external (``csr_out``)."""
    from unica.auth import Operation

    params = {"kind": kind, "subject": subject, "key": key_params(key), "settings": settings_params(settings)}
    if kind != "external":
        params.update(validity=validity, profile=profile)
    if kind == "sub":
        params["parent"] = parent
    if kind == "external":
        params["csr_out"] = str(Path(csr_out).resolve())
    return Operation("ca.create", ca=name, params=params)


def set_operation(name: str, settings: CASettings, key_uri: str | None = None):
    """The ``ca.set`` operation: the settings given, and the key URI (``ca set --key``) if any."""
    from unica.auth import Operation

    params = {}
    given = settings_params(settings)
    if given:
        params["settings"] = given
    if key_uri is not None:
        params["key_uri"] = key_uri
    return Operation("ca.set", ca=name, params=params)


def revoke_ca(store, name: str, reason: str = "unspecified", *, invalidity_date: dt.datetime | None = None,
              auth=None) -> dict:
    """Revoke CA ``name``'s certificate at its parent (:func:`unica.ca.revocation.revoke` on the
    certificate's serial, which marks the CA revoked: it issues nothing more; its parent's next
    CRL lists it). Operation ``ca.revoke`` (admin).

    Refused: a root (no parent to revoke it), a CA whose certificate an external CA issued (that
    CA revokes it), a CA without a certificate yet, and a hold (a CA is revoked, not held)."""
    from unica.auth import Operation
    from unica.ca.revocation import reason_value, revoke
    from unica.errors import RevocationError
    from unica.store import models as m

    reason_v = reason_value(reason)
    if reason_v == "certificateHold":
        raise InputError("a CA is revoked, not put on hold: give another --reason")
    with store.read() as s:
        row = get_ca_row(s, name)
        if row.status == "revoked":
            raise RevocationError(f"CA {name!r} is revoked already")
        if row.cert_der is None:
            raise CAUnusable(f"CA {name!r} has no certificate yet (awaiting 'unica ca import-cert'): nothing to "
                             f"revoke")
        if row.parent_id is None:
            external = (row.settings or {}).get("external_chain_pem") is not None
            if external:
                raise PolicyViolation(f"CA {name!r}'s certificate was issued by an external CA: that CA revokes it")
            raise PolicyViolation(f"CA {name!r} is a root: no parent can revoke its certificate (withdraw it from "
                                  f"the relying parties' trust stores instead)")
        parent = row.parent.name
        serial = x509.load_der_x509_certificate(row.cert_der).serial_number
    params = {"reason": reason_v, "invalidity_date": invalidity_date.isoformat() if invalidity_date else None}
    with _authorized(store, Operation("ca.revoke", ca=name, params=params), auth):
        with store.read() as s:
            admins, outside = _admins_outside(s, get_ca_row(s, name).id)
        if admins and not outside:  # like disabling the last admin: nobody could act any more
            raise PolicyViolation(f"revoking CA {name!r} would end the authority of every admin (the certificates "
                                  f"of {', '.join(admins)} are issued under it): add an admin whose certificate "
                                  f"another CA issued first")
        state = revoke(store, serial, ca=parent, reason=reason_v, invalidity_date=invalidity_date)
    if state.sub_ca != name:  # pragma: no cover - revoke marks the CA whose certificate it is
        raise StoreError(f"revoking certificate {state.serial_hex} of CA {parent!r} did not mark CA {name!r} revoked")
    return {**ca_info(store, name), "revocation": state.to_dict()}


def _admins_outside(session, ca_id: int) -> tuple[list[str], list[str]]:
    """The active admins, and those of them whose certificate is not issued under CA ``ca_id``
    (an operator's authority ends with a revoked CA above their certificate)."""
    from sqlalchemy import select

    from unica.store import models as m

    admins, outside = [], []
    for op in session.scalars(select(m.Operator).where(m.Operator.status == "active").order_by(m.Operator.name)):
        if "admin" not in (op.roles or ()):
            continue
        admins.append(op.name)
        above, cid = set(), op.issuer_ca_id
        while cid is not None and cid not in above:
            above.add(cid)
            ca = session.get(m.CA, cid)
            cid = ca.parent_id if ca is not None else None
        if ca_id not in above:
            outside.append(op.name)
    return admins, outside


__all__ = ["KeySpec", "CASettings", "create_root", "create_sub", "create_external_sub", "import_cert",
           "set_ca", "revoke_ca", "ca_info", "list_cas", "export_ca", "chain_pems", "create_operation",
           "set_operation"]
