"""``unica show FILE``: what a certificate, CSR, CRL, OCSP response or CMS signed data file holds.

The kind is detected, PEM or DER (a PEM file may hold several blocks: each is shown). The
file is read with a bound (:mod:`unica.boundedio`); input that is none of these kinds is one
line ``unica: error: ...``, exit 2. Nothing is verified here: ``unica verify`` does that.

The describers (:func:`describe`) are also used by ``unica crl show``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re

import click

from unica.cli.common import emit_json, json_option, table

#: PEM labels and the kind each holds
PEM_KINDS = {
    "CERTIFICATE": "certificate", "X509 CERTIFICATE": "certificate",
    "CERTIFICATE REQUEST": "csr", "NEW CERTIFICATE REQUEST": "csr",
    "X509 CRL": "crl",
    "PKCS7": "cms", "CMS": "cms",
    "OCSP RESPONSE": "ocsp-response",
}
KINDS = ("certificate", "csr", "crl", "ocsp-response", "cms")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n(.*?)-----END \1-----", re.S)

#: revoked entries, OCSP single responses and certificates listed by default
DEFAULT_ENTRIES = 20


def _malformed(message: str):
    from unica.errors import MalformedInput

    return MalformedInput(message)


def _pem_blocks(data: bytes, name: str) -> list[tuple[str, bytes]]:
    blocks = []
    for m in _PEM.finditer(data):
        label = m.group(1).decode("ascii")
        kind = PEM_KINDS.get(label)
        if kind is None:
            raise _malformed(f"{name}: holds a PEM {label} block; unica show reads certificates, CSRs, CRLs, "
                             "OCSP responses and CMS signed data")
        body = b"".join(line for line in m.group(2).splitlines() if b":" not in line)  # RFC 1421 headers
        try:
            blocks.append((kind, base64.b64decode(body, validate=True)))
        except (binascii.Error, ValueError):
            raise _malformed(f"{name}: the PEM {label} block is not valid base64") from None
    return blocks


def load_any(data: bytes, name: str) -> list[tuple[str, object]]:
    """[(kind, parsed object)] for each item in ``data`` (PEM blocks, or one DER object)."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN ") or b"-----BEGIN " in data[:4096]:
        blocks = _pem_blocks(data, name)
        if not blocks:
            raise _malformed(f"{name}: a PEM header without a complete block")
        return [(kind, _load(kind, der, name)) for kind, der in blocks]
    if not data:
        raise _malformed(f"{name}: the file is empty")
    if data[:1] != b"\x30":
        raise _malformed(f"{name}: neither PEM nor DER (a certificate, CSR, CRL, OCSP response or CMS "
                         "signed data was expected)")
    for kind in KINDS:
        try:
            return [(kind, _load(kind, data, name))]
        except ValueError:
            continue
    raise _malformed(f"{name}: not a certificate, CSR, CRL, OCSP response or CMS signed data (DER)")


def _load(kind: str, der: bytes, name: str):
    from cryptography import x509
    from cryptography.x509 import ocsp

    try:
        if kind == "certificate":
            return x509.load_der_x509_certificate(der)
        if kind == "csr":
            return x509.load_der_x509_csr(der)
        if kind == "crl":
            return x509.load_der_x509_crl(der)
        if kind == "ocsp-response":
            return ocsp.load_der_ocsp_response(der)
        from asn1crypto import cms

        ci = cms.ContentInfo.load(der, strict=True)  # BER tolerated (CMS often is), trailing data refused
        if ci["content_type"].native not in ("signed_data",):
            raise ValueError("not signed data")
        ci["content"].native  # noqa: B018 - parse it all now: malformed content fails here
        return ci
    except ValueError as e:
        if isinstance(e, _MalformedKind):
            raise
        raise _MalformedKind(f"{name}: not a {kind}") from None
    except Exception as e:  # asn1crypto raises TypeError/KeyError on some malformed input
        raise _MalformedKind(f"{name}: not a {kind} ({type(e).__name__})") from None


class _MalformedKind(ValueError):
    pass


# --- describers: plain dicts (str, int, list); keys without a value are left out ---------------


def _t(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat()


def _name(name) -> str:
    from cryptography.x509.oid import NameOID

    return name.rfc4514_string({NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier"})


#: names of OIDs cryptography does not name
_OID_NAMES = {"1.3.6.1.5.5.7.3.36": "documentSigning", "1.3.6.1.4.1.311.20.2.2": "msSmartcardLogin",
              "2.5.4.97": "organizationIdentifier"}


def _oid_name(oid) -> str:
    if oid.dotted_string in _OID_NAMES:
        return _OID_NAMES[oid.dotted_string]
    n = getattr(oid, "_name", None)
    return n if n and n != "Unknown OID" else oid.dotted_string


def _gn(gn) -> str:
    from cryptography import x509

    if isinstance(gn, x509.DNSName):
        return f"DNS:{gn.value}"
    if isinstance(gn, x509.IPAddress):
        return f"IP:{gn.value}"
    if isinstance(gn, x509.RFC822Name):
        return f"email:{gn.value}"
    if isinstance(gn, x509.UniformResourceIdentifier):
        return f"URI:{gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"dirName:{_name(gn.value)}"
    if isinstance(gn, x509.RegisteredID):
        return f"RID:{gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"otherName:{gn.type_id.dotted_string}"
    return str(gn)  # pragma: no cover


def _key(public_key) -> str:
    from unica.hsm.keytypes import key_type_of

    try:
        return key_type_of(public_key)
    except Exception:
        return type(public_key).__name__.lstrip("_")


def _spki_sha256(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(public_key.public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _ext(exts, cls):
    from cryptography import x509

    try:
        return exts.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


_KU = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
       "key_cert_sign", "crl_sign")
_KU_NAMES = {"digital_signature": "digitalSignature", "content_commitment": "nonRepudiation",
             "key_encipherment": "keyEncipherment", "data_encipherment": "dataEncipherment",
             "key_agreement": "keyAgreement", "key_cert_sign": "keyCertSign", "crl_sign": "cRLSign"}


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != [] and v != ""}


def _extensions(exts) -> dict:
    from cryptography import x509

    out: dict = {}
    bc = _ext(exts, x509.BasicConstraints)
    out["is_ca"] = bool(bc and bc.ca)
    if bc and bc.ca and bc.path_length is not None:
        out["path_length"] = bc.path_length
    ku = _ext(exts, x509.KeyUsage)
    if ku is not None:
        out["key_usage"] = [_KU_NAMES[a] for a in _KU if getattr(ku, a)]
    eku = _ext(exts, x509.ExtendedKeyUsage)
    if eku is not None:
        out["extended_key_usage"] = [_oid_name(o) for o in eku]
    san = _ext(exts, x509.SubjectAlternativeName)
    if san is not None:
        out["sans"] = [_gn(g) for g in san]
    cdp = _ext(exts, x509.CRLDistributionPoints)
    if cdp is not None:
        out["crl_urls"] = [_gn(g) for dp in cdp for g in (dp.full_name or [])]
    fresh = _ext(exts, x509.FreshestCRL)
    if fresh is not None:
        out["delta_crl_urls"] = [_gn(g) for dp in fresh for g in (dp.full_name or [])]
    aia = _ext(exts, x509.AuthorityInformationAccess)
    if aia is not None:
        from cryptography.x509.oid import AuthorityInformationAccessOID as A

        out["ocsp_urls"] = [_gn(d.access_location) for d in aia if d.access_method == A.OCSP]
        out["ca_issuers_urls"] = [_gn(d.access_location) for d in aia if d.access_method == A.CA_ISSUERS]
    pol = _ext(exts, x509.CertificatePolicies)
    if pol is not None:
        out["policies"] = [p.policy_identifier.dotted_string for p in pol]
    ski = _ext(exts, x509.SubjectKeyIdentifier)
    if ski is not None:
        out["ski"] = ski.digest.hex()
    aki = _ext(exts, x509.AuthorityKeyIdentifier)
    if aki is not None and aki.key_identifier:
        out["aki"] = aki.key_identifier.hex()
    return out


def describe_certificate(cert, now: dt.datetime | None = None) -> dict:
    from cryptography.hazmat.primitives import hashes

    now = now or dt.datetime.now(dt.timezone.utc)
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    d = {"kind": "certificate", "serial": format(cert.serial_number, "x"), "subject": _name(cert.subject),
         "issuer": _name(cert.issuer), "not_before": _t(nb), "not_after": _t(na),
         "validity": "expired" if na <= now else "not yet valid" if nb > now else "valid now",
         "key": _key(cert.public_key()), "signature_algorithm": _oid_name(cert.signature_algorithm_oid)}
    d.update(_extensions(cert.extensions))
    d["fingerprint_sha256"] = cert.fingerprint(hashes.SHA256()).hex()
    d["spki_sha256"] = _spki_sha256(cert.public_key())
    return _clean(d)


def describe_csr(csr) -> dict:
    d = {"kind": "csr", "subject": _name(csr.subject), "key": _key(csr.public_key()),
         "signature": "valid" if csr.is_signature_valid else "INVALID",
         "signature_algorithm": _oid_name(csr.signature_algorithm_oid)}
    exts = _extensions(csr.extensions)
    exts.pop("is_ca", None)
    if any(e.oid.dotted_string == "2.5.29.19" for e in csr.extensions):
        exts["is_ca"] = _extensions(csr.extensions)["is_ca"]
    d.update(exts)
    d["requested_extensions"] = [_oid_name(e.oid) for e in csr.extensions]
    d["spki_sha256"] = _spki_sha256(csr.public_key())
    return _clean(d)


def _reason(entry) -> str | None:
    from cryptography import x509

    r = _ext(entry.extensions, x509.CRLReason)
    return r.reason.value if r is not None else None


def describe_crl(crl, entries: int | None = DEFAULT_ENTRIES, now: dt.datetime | None = None) -> dict:
    """``entries``: how many revoked entries to list (None: all)."""
    from cryptography import x509

    now = now or dt.datetime.now(dt.timezone.utc)
    exts = crl.extensions
    number = _ext(exts, x509.CRLNumber)
    delta = _ext(exts, x509.DeltaCRLIndicator)
    nxt = crl.next_update_utc
    d = {"kind": "crl", "issuer": _name(crl.issuer), "crl_number": number.crl_number if number else None,
         "crl_kind": f"delta (base {delta.crl_number})" if delta else "base",
         "this_update": _t(crl.last_update_utc), "next_update": _t(nxt),
         "overdue": (nxt <= now) if nxt is not None else None,
         "signature_algorithm": _oid_name(crl.signature_algorithm_oid)}
    aki = _ext(exts, x509.AuthorityKeyIdentifier)
    if aki is not None and aki.key_identifier:
        d["aki"] = aki.key_identifier.hex()
    idp = _ext(exts, x509.IssuingDistributionPoint)
    if idp is not None:
        d["distribution_point"] = [_gn(g) for g in (idp.full_name or [])] or "(relative name)"
        scope = [n for n, on in (("user certificates only", idp.only_contains_user_certs),
                                 ("CA certificates only", idp.only_contains_ca_certs),
                                 ("indirect", idp.indirect_crl)) if on]
        if idp.only_some_reasons:
            scope.append("reasons " + ", ".join(sorted(r.value for r in idp.only_some_reasons)))
        d["scope"] = scope
    fresh = _ext(exts, x509.FreshestCRL)
    if fresh is not None:
        d["delta_crl_urls"] = [_gn(g) for dp in fresh for g in (dp.full_name or [])]
    total = len(crl)
    d["entries"] = total
    listed = []
    for i, e in enumerate(crl):
        if entries is not None and i >= entries:
            break
        listed.append(_clean({"serial": format(e.serial_number, "x"), "revoked_at": _t(e.revocation_date_utc),
                              "reason": _reason(e)}))
    d["revoked"] = listed
    return _clean(d)


def describe_ocsp_response(resp, entries: int | None = DEFAULT_ENTRIES, now: dt.datetime | None = None) -> dict:
    from cryptography.x509 import ocsp

    now = now or dt.datetime.now(dt.timezone.utc)
    status = resp.response_status
    d = {"kind": "ocsp-response", "response_status": status.name.lower()}
    if status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return d
    d["responder"] = (_name(resp.responder_name) if resp.responder_name is not None
                      else f"key hash {resp.responder_key_hash.hex()}")
    d["produced_at"] = _t(resp.produced_at_utc)
    d["signature_algorithm"] = _oid_name(resp.signature_algorithm_oid)
    d["certificates"] = [_name(c.subject) for c in resp.certificates]
    d["nonce"] = any(e.oid.dotted_string == "1.3.6.1.5.5.7.48.1.2" for e in resp.extensions)
    singles = list(resp.responses)
    d["responses"] = len(singles)
    listed = []
    for s in singles[: entries if entries is not None else len(singles)]:
        nxt = s.next_update_utc
        listed.append(_clean({
            "serial": format(s.serial_number, "x"), "status": s.certificate_status.name.lower(),
            "this_update": _t(s.this_update_utc), "next_update": _t(nxt),
            "stale": (nxt <= now) if nxt is not None else None,
            "revoked_at": _t(s.revocation_time_utc) if s.certificate_status == ocsp.OCSPCertStatus.REVOKED else None,
            "reason": s.revocation_reason.value if s.revocation_reason is not None else None,
            "hash_algorithm": s.hash_algorithm.name, "issuer_key_hash": s.issuer_key_hash.hex(),
            "issuer_name_hash": s.issuer_name_hash.hex()}))
    d["single_responses"] = listed
    return _clean(d)


#: asn1crypto attribute names as RFC 4514 / unica writes them
_A1_NAMES = {"common_name": "CN", "organization_name": "O", "organizational_unit_name": "OU", "country_name": "C",
             "locality_name": "L", "state_or_province_name": "ST", "street_address": "STREET",
             "domain_component": "DC", "user_id": "UID", "organization_identifier": "organizationIdentifier",
             "email_address": "emailAddress", "serial_number": "serialNumber"}


def _a1name(name) -> str:
    """An asn1crypto Name in the RFC 4514 form used everywhere else (most specific first)."""
    parts = []
    for rdn in reversed(list(name.chosen)):
        avas = []
        for ava in rdn:
            t = ava["type"]
            key = _A1_NAMES.get(t.native, t.dotted)
            try:
                value = str(ava["value"].native)
            except Exception:
                value = "#" + ava["value"].dump().hex()
            for ch in ("\\", ",", "+", '"', "<", ">", ";"):
                value = value.replace(ch, "\\" + ch)
            avas.append(f"{key}={value}")
        parts.append("+".join(avas))
    return ",".join(parts)


def describe_cms(ci) -> dict:
    sd = ci["content"]
    eci = sd["encap_content_info"]
    content = eci["content"]
    d = {"kind": "cms", "content_type": "signedData", "version": sd["version"].native,
         "encapsulated_content_type": eci["content_type"].native,
         "detached": "yes" if content.native is None else "no",
         "content_size": len(content.native) if content.native is not None else None,
         "digest_algorithms": [a["algorithm"].native for a in sd["digest_algorithms"]]}
    certs = []
    for c in sd["certificates"] or []:
        if c.name == "certificate":
            certs.append(f"{_a1name(c.chosen.subject)} (serial {format(c.chosen.serial_number, 'x')})")
        else:
            certs.append(c.name)
    d["certificates"] = certs
    if sd["crls"]:
        d["crls"] = len(sd["crls"])
    signers = []
    for si in sd["signer_infos"]:
        sid = si["sid"]
        if sid.name == "issuer_and_serial_number":
            who = (f"issuer {_a1name(sid.chosen['issuer'])}, serial "
                   f"{format(sid.chosen['serial_number'].native, 'x')}")
        else:
            who = f"subject key id {sid.chosen.native.hex()}"
        attrs = {a["type"].native: a["values"] for a in (si["signed_attrs"] or [])}
        unsigned = [a["type"].native for a in (si["unsigned_attrs"] or [])]
        signing_time = attrs.get("signing_time")
        signers.append(_clean({
            "signer": who, "digest_algorithm": si["digest_algorithm"]["algorithm"].native,
            "signature_algorithm": si["signature_algorithm"]["algorithm"].native,
            "signing_time": _t(signing_time[0].native) if signing_time else None,
            "signed_attributes": list(attrs),
            "timestamp": "yes" if "signature_time_stamp_token" in unsigned else "no"}))
    d["signers"] = signers
    return _clean(d)


def describe(kind: str, obj, entries: int | None = DEFAULT_ENTRIES) -> dict:
    if kind == "certificate":
        return describe_certificate(obj)
    if kind == "csr":
        return describe_csr(obj)
    if kind == "crl":
        return describe_crl(obj, entries)
    if kind == "ocsp-response":
        return describe_ocsp_response(obj, entries)
    return describe_cms(obj)


# --- printing --------------------------------------------------------------------------------


def _text(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


#: list-of-dict fields printed as tables after the plain fields, with their total's key
_TABLES = {"revoked": "entries", "single_responses": "responses", "signers": None}


def print_fields(d: dict) -> None:
    """``key: value`` lines, aligned, as ``unica cert show`` prints them; then the tables."""
    plain = {k: v for k, v in d.items() if k not in _TABLES}
    width = max(len(k) for k in plain) + 2
    for k, v in plain.items():
        click.echo(f"{(k.replace('_', ' ') + ':').ljust(width)} {_text(v)}")
    for key, total_key in _TABLES.items():
        rows = d.get(key)
        if not rows:
            continue
        total = d.get(total_key) if total_key else len(rows)
        click.echo(f"{key.replace('_', ' ')}" + (f" ({len(rows)} of {total}):" if total != len(rows) else ":"))
        header = list(dict.fromkeys(k for r in rows for k in r))
        table([[_text(r[h]) if h in r else None for h in header] for r in rows], [h.replace("_", " ").upper() for h in header])


def parse_entries(text: str) -> int | None:
    from unica.errors import InputError

    if text.lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"bad --entries {text!r}: a number of entries, or 'all'")
    return n


def entries_option(f):
    return click.option("--entries", "entries", default=str(DEFAULT_ENTRIES), show_default=True, metavar="N|all",
                        help="How many revoked entries (CRL) or single responses (OCSP) to list.")(f)


@click.command("show")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@entries_option
@json_option
def show_cmd(file, entries, as_json) -> None:
    """Show what FILE holds: a certificate, CSR, CRL, OCSP response or CMS signed data, PEM or DER
    (detected; '-' reads standard input). Nothing is verified: see 'unica verify'.

    \b
    Examples:
      unica show leaf.pem
      unica show root.crl --entries all
      unica show signature.p7s --json
    """
    from unica.boundedio import MAX_SIGNATURE, label, read_limited

    limit = parse_entries(entries)
    data = read_limited(file, MAX_SIGNATURE, "file", stdin=True)
    items = [describe(kind, obj, limit) for kind, obj in load_any(data, label(file))]
    if as_json:
        emit_json(items[0] if len(items) == 1 else items)
        return
    for i, d in enumerate(items):
        if i:
            click.echo()
        print_fields(d)


COMMANDS = [show_cmd]
