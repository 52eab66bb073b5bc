"""Objects on a PKCS#11 token: list them, write certificates next to their keys, find them again.

A certificate is written as ``CKO_CERTIFICATE`` / ``CKC_X_509`` with the ``CKA_ID`` and
``CKA_LABEL`` of the key pair whose public key it certifies, so any PKCS#11 application
(OpenSC, a browser, pyHanko) pairs key and certificate. CA certificates of the chain get
their own subject key identifier as ``CKA_ID`` and the label ``ca:<subject CN>``.

Every call goes through the token's cached :class:`~unica.hsm.pkcs11.TokenSession` and so
holds the module lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import pkcs11.exceptions as p11e
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, CertificateType, ObjectClass

from unica.errors import KeyNotFound, MalformedInput, TokenError
from unica.hsm.keytypes import key_identifier, key_type_of, spki_der
from unica.hsm.pkcs11 import TokenSession, _p11_name, _public_key_from_objects, get_module
from unica.hsm.uri import Pkcs11URI

_CLASS_NAMES = {
    ObjectClass.PRIVATE_KEY: "private-key", ObjectClass.PUBLIC_KEY: "public-key",
    ObjectClass.CERTIFICATE: "certificate", ObjectClass.SECRET_KEY: "secret-key", ObjectClass.DATA: "data",
}


@dataclass(frozen=True)
class TokenObject:
    """One object on a token, as ``unica token objects`` shows it."""

    kind: str
    label: str | None
    id: bytes | None
    key_type: str | None = None
    private: bool | None = None
    sensitive: bool | None = None
    extractable: bool | None = None
    always_sensitive: bool | None = None
    never_extractable: bool | None = None
    local: bool | None = None
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    not_after: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["id"] = self.id.hex() if self.id else None
        return d


def _session(token: str, pin: str | None, path: str | None, rw: bool = False) -> TokenSession:
    uri = Pkcs11URI(token=token, module_path=path)
    return get_module(uri.module).session(uri, pin, rw=rw)


def _attr(obj, attr, default=None):
    try:
        return obj[attr]
    except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive, NotImplementedError):
        return default


def load_certificate_bytes(data: bytes, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate in PEM (one or more) or DER ``data``."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
        for c in certs:
            c.subject, c.issuer  # parsed lazily; KeyError: a string with an unknown ASN.1 type
    except (ValueError, KeyError, TypeError, x509.InvalidVersion) as e:
        raise MalformedInput(f"{what} holds no readable X.509 certificate: {type(e).__name__}: {e}") from None
    if not certs:
        raise MalformedInput(f"{what} holds no certificate")
    return certs


def dn_text(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    return name.rfc4514_string({NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier"})


def _cert_object(obj) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE]))
    except (ValueError, p11e.PKCS11Error):
        return None


def list_objects(token: str, pin: str | None, path: str | None = None) -> list[TokenObject]:
    """Keys and certificates on the token (private objects need the PIN)."""
    ts = _session(token, pin, path)

    def scan(session):
        out = []
        for obj in list(session.get_objects({})):
            cls = _attr(obj, Attribute.CLASS)
            kind = _CLASS_NAMES.get(cls, str(cls))
            label = _attr(obj, Attribute.LABEL) or None
            oid = _attr(obj, Attribute.ID) or None
            if cls == ObjectClass.CERTIFICATE:
                cert = _cert_object(obj)
                out.append(TokenObject(
                    kind=kind, label=label, id=oid, private=_attr(obj, Attribute.PRIVATE),
                    subject=dn_text(cert.subject) if cert else None,
                    issuer=dn_text(cert.issuer) if cert else None,
                    serial=format(cert.serial_number, "x") if cert else None,
                    not_after=cert.not_valid_after_utc.isoformat() if cert else None,
                    sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest() if cert else None,
                ))
                continue
            ktype = None
            if cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                kt = _attr(obj, Attribute.KEY_TYPE)
                ktype = getattr(kt, "name", str(kt)).lower() if kt is not None else None
                if cls == ObjectClass.PUBLIC_KEY:
                    try:
                        ktype = key_type_of(_public_key_from_objects(obj, obj))
                    except Exception:
                        pass
            secret_like = cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
            out.append(TokenObject(
                kind=kind, label=label, id=oid, key_type=ktype, private=_attr(obj, Attribute.PRIVATE),
                sensitive=_attr(obj, Attribute.SENSITIVE) if secret_like else None,
                extractable=_attr(obj, Attribute.EXTRACTABLE) if secret_like else None,
                always_sensitive=_attr(obj, Attribute.ALWAYS_SENSITIVE) if secret_like else None,
                never_extractable=_attr(obj, Attribute.NEVER_EXTRACTABLE) if secret_like else None,
                local=_attr(obj, Attribute.LOCAL) if cls != ObjectClass.DATA else None,
            ))
        # a private key's size shows on its public key: borrow the precise type by id
        precise = {o.id: o.key_type for o in out if o.kind == "public-key" and o.id and o.key_type}
        out = [dataclasses.replace(o, key_type=precise.get(o.id, o.key_type)) if o.kind == "private-key" else o
               for o in out]
        order = {"private-key": 0, "public-key": 1, "certificate": 2}
        return sorted(out, key=lambda o: (o.id or b"\xff" * 64, order.get(o.kind, 9), o.label or ""))

    return ts.run(scan)


def certificates(ts: TokenSession, key_id: bytes | None = None) -> list[x509.Certificate]:
    """The X.509 certificates on the token (those with ``CKA_ID == key_id`` if given)."""
    attrs = {Attribute.CLASS: ObjectClass.CERTIFICATE}
    if key_id is not None:
        attrs[Attribute.ID] = key_id

    def scan(session):
        return [c for c in (_cert_object(o) for o in list(session.get_objects(attrs))) if c is not None]

    return ts.run(scan)


def find_key_for(ts: TokenSession, public_key) -> tuple[str | None, bytes]:
    """(label, CKA_ID) of the private key on the token whose public key is ``public_key``."""
    want = spki_der(public_key)

    def scan(session):
        for priv in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            kid = _attr(priv, Attribute.ID) or None
            pub = None
            if kid:
                pubs = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: kid}))
                pub = pubs[0] if len(pubs) == 1 else None
            try:
                pk = _public_key_from_objects(priv, pub)
            except Exception:
                continue
            if spki_der(pk) == want:
                return _attr(priv, Attribute.LABEL) or None, kid
        return None

    found = ts.run(scan)
    if found is None:
        raise KeyNotFound(f"no key on token {ts.token.label!r} matches the certificate's public key")
    label, kid = found
    if not kid:
        raise KeyNotFound(f"the matching key {label!r} on token {ts.token.label!r} has no CKA_ID")
    return label, kid


def _cn(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _cert_template(cert: x509.Certificate, label: str, key_id: bytes) -> dict:
    from asn1crypto import core

    return {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.SUBJECT: cert.subject.public_bytes(),
        Attribute.ISSUER: cert.issuer.public_bytes(),
        Attribute.SERIAL_NUMBER: core.Integer(cert.serial_number).dump(),
        Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
    }


@dataclass(frozen=True)
class ImportResult:
    label: str | None
    id: bytes
    subject: str
    chain_written: int
    removed: int

    def to_dict(self) -> dict:
        return {"label": self.label, "id": self.id.hex(), "subject": self.subject,
                "chain_written": self.chain_written, "removed": self.removed}


def import_certificate(token: str, certs: list[x509.Certificate], pin: str, *,
                       chain: list[x509.Certificate] = (), remove_old: bool = False,
                       path: str | None = None) -> ImportResult:
    """Write the certificate for a key on the token, plus CA certificates, next to it.

    ``certs[0]`` -- or the first of ``certs`` whose public key is on the token -- is the
    key's certificate; the other ``certs`` and ``chain`` are written as CA certificates.
    ``remove_old`` deletes the other certificates with the same subject (renewal, re-key).
    """
    ts = _session(token, pin, path, rw=True)
    ee, label, kid = None, None, None
    for cert in certs:
        try:
            label, kid = find_key_for(ts, cert.public_key())
        except KeyNotFound:
            continue
        ee = cert
        break
    if ee is None:
        raise KeyNotFound(f"certificate {certs[0].subject.rfc4514_string()!r} matches no key on token "
                          f"{token!r} (import it onto the token that holds its key)")
    cas = [c for c in list(certs) + list(chain) if c is not ee]
    ee_der = ee.public_bytes(serialization.Encoding.DER)

    def write(session):
        existing = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))
        have = {bytes(_attr(o, Attribute.VALUE, b"")) for o in existing}
        written = 0
        if ee_der not in have:
            session.create_object(_cert_template(ee, label or _cn(ee.subject), kid))
        for ca in cas:
            der = ca.public_bytes(serialization.Encoding.DER)
            if der in have:
                continue
            try:
                ca_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                ca_id = key_identifier(ca.public_key())
            session.create_object(_cert_template(ca, f"ca:{_cn(ca.subject)}", ca_id))
            have.add(der)
            written += 1
        removed = 0
        if remove_old:
            subject = ee.subject.public_bytes()
            for o in existing:
                if _attr(o, Attribute.SUBJECT) == subject and bytes(_attr(o, Attribute.VALUE, b"")) != ee_der:
                    o.destroy()
                    removed += 1
        return written, removed

    try:
        written, removed = ts.run(write)
    except p11e.PKCS11Error as e:
        raise TokenError(f"writing the certificate onto token {token!r} failed: {_p11_name(e)}") from None
    return ImportResult(label, kid, dn_text(ee.subject), written, removed)


def certificate_for_key(key) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The certificate of a loaded token key (same CKA_ID, same public key) and its CA chain.

    The chain is built from the CA certificates on the token by issuer name and key
    identifiers, leaf first, without the leaf.
    """
    ts: TokenSession = key._ts
    kid = key.uri.id
    want = spki_der(key.public_key())
    mine = [c for c in certificates(ts, kid) if spki_der(c.public_key()) == want] if kid else []
    if not mine:
        raise KeyNotFound(f"the key {key.uri} has no certificate on token {ts.token.label!r} "
                          "(import one with 'unica token import-cert')")
    # the newest certificate of the key, if renewal kept old ones
    leaf = max(mine, key=lambda c: c.not_valid_before_utc)
    return leaf, build_chain(leaf, certificates(ts))


def build_chain(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """CA certificates from ``pool`` linking ``leaf`` up to a self-issued one (leaf excluded)."""
    chain: list[x509.Certificate] = []
    cur = leaf
    seen = {leaf.fingerprint(_sha256())}
    while cur.issuer != cur.subject and len(chain) < 10:
        nxt = None
        for c in pool:
            if c.subject != cur.issuer or c.fingerprint(_sha256()) in seen:
                continue
            if _aki(cur) is not None and _ski(c) is not None and _aki(cur) != _ski(c):
                continue
            nxt = c
            break
        if nxt is None:
            break
        chain.append(nxt)
        seen.add(nxt.fingerprint(_sha256()))
        cur = nxt
    return chain


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def delete_key_objects(token: str, key_id: bytes, pin: str, path: str | None = None) -> int:
    """Remove the key pair and certificates with ``CKA_ID == key_id``; the count removed."""
    ts = _session(token, pin, path, rw=True)

    def rm(session):
        objs = list(session.get_objects({Attribute.ID: key_id}))
        for o in objs:
            o.destroy()
        return len(objs)

    try:
        return ts.run(rm)
    except p11e.PKCS11Error as e:
        raise TokenError(f"removing objects from token {token!r} failed: {_p11_name(e)}") from None


#: what ``unica token delete --what`` removes: object classes
DELETE_CLASSES = {
    "key": (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY),
    "cert": (ObjectClass.CERTIFICATE,),
    "both": (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE),
}


def _select(session, label: str | None, key_id: bytes | None, what: str, token: str) -> list:
    """The objects ``delete_objects`` removes: of the classes ``what`` names, those with
    ``CKA_ID == key_id``, or those labelled ``label`` together with the objects that share
    their CKA_ID (the pairing convention: a certificate another tool labelled differently).
    Matches spanning more than one CKA_ID are refused: name the pair by --id."""
    from unica.errors import InputError

    if (label is None) == (key_id is None):
        raise InputError("name the objects to delete by --label or by --id (one of them)")
    if what not in DELETE_CLASSES:
        raise InputError(f"--what must be key, cert or both, not {what!r}")
    classes = DELETE_CLASSES[what]
    objs = []
    for cls in classes:
        objs += [(cls, o) for o in session.get_objects({Attribute.CLASS: cls})]
    if key_id is not None:
        return [(c, o) for c, o in objs if (_attr(o, Attribute.ID) or b"") == key_id]
    named = [(c, o) for c, o in objs if _attr(o, Attribute.LABEL) == label]
    ids = {bytes(_attr(o, Attribute.ID) or b"") for _, o in named}
    if len(ids) > 1:
        shown = ", ".join(sorted(i.hex() or "(none)" for i in ids))
        raise InputError(f"the objects labelled {label!r} on token {token!r} have {len(ids)} different ids "
                         f"({shown}): name the ones to delete by --id")
    kid = next(iter(ids), b"")
    if not kid:
        return named
    return [(c, o) for c, o in objs if _attr(o, Attribute.LABEL) == label or (_attr(o, Attribute.ID) or b"") == kid]


def _describe_object(cls, obj) -> TokenObject:
    label = _attr(obj, Attribute.LABEL) or None
    oid = _attr(obj, Attribute.ID) or None
    if cls == ObjectClass.CERTIFICATE:
        cert = _cert_object(obj)
        return TokenObject(kind="certificate", label=label, id=oid,
                           subject=dn_text(cert.subject) if cert else None,
                           serial=format(cert.serial_number, "x") if cert else None,
                           not_after=cert.not_valid_after_utc.isoformat() if cert else None)
    kt = _attr(obj, Attribute.KEY_TYPE)
    return TokenObject(kind=_CLASS_NAMES[cls], label=label, id=oid,
                       key_type=getattr(kt, "name", str(kt)).lower() if kt is not None else None)


_KIND_ORDER = {"private-key": 0, "public-key": 1, "certificate": 2}


def objects_to_delete(token: str, pin: str, *, label: str | None = None, key_id: bytes | None = None,
                      what: str = "both", path: str | None = None) -> list[TokenObject]:
    """What :func:`delete_objects` with the same arguments would remove (nothing is changed)."""
    ts = _session(token, pin, path)

    def scan(session):
        found = [_describe_object(c, o) for c, o in _select(session, label, key_id, what, token)]
        return sorted(found, key=lambda o: (o.id or b"", _KIND_ORDER.get(o.kind, 9), o.label or ""))

    try:
        return ts.run(scan)
    except p11e.PKCS11Error as e:
        raise TokenError(f"reading the objects of token {token!r} failed: {_p11_name(e)}") from None


def delete_objects(token: str, pin: str, *, label: str | None = None, key_id: bytes | None = None,
                   what: str = "both", path: str | None = None) -> list[TokenObject]:
    """Destroy the key pair and/or certificates named by ``label`` or ``key_id`` (see
    :func:`_select`); the objects removed. :class:`KeyNotFound` when nothing matches."""
    ts = _session(token, pin, path, rw=True)

    def rm(session):
        chosen = _select(session, label, key_id, what, token)
        gone = []
        for cls, obj in chosen:
            desc = _describe_object(cls, obj)
            obj.destroy()
            gone.append(desc)
        return sorted(gone, key=lambda o: (o.id or b"", _KIND_ORDER.get(o.kind, 9), o.label or ""))

    try:
        gone = ts.run(rm)
    except p11e.PKCS11Error as e:
        raise TokenError(f"deleting objects from token {token!r} failed: {_p11_name(e)}") from None
    if not gone:
        what_text = {"key": "key", "cert": "certificate", "both": "key or certificate"}[what]
        sel = f"labelled {label!r}" if label is not None else f"with id {key_id.hex()}"
        raise KeyNotFound(f"no {what_text} {sel} on token {token!r}")
    return gone
