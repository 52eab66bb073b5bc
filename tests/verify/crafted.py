"""Hand-crafted certificates and CRLs for the RFC 5280 regression tests, and two independent
validators (the OpenSSL 3 command line and pyhanko-certvalidator) that ground the expected
results of those tests.

Everything is built with `cryptography`'s x509 builders; what they cannot express (policy
mappings, CRL entry extensions they do not know, GeneralizedTime before 2050) is encoded with
asn1crypto and re-signed with the issuer's real key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from asn1crypto import core as acore, crl as acrl, x509 as ax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID

from tests.verify.pki import DAY, NOW, Ident

_DER = serialization.Encoding.DER
_PEM = serialization.Encoding.PEM

#: the fixed validation time of every test in test_rfc5280_regressions.py
AT = NOW
ANY_POLICY = x509.ObjectIdentifier("2.5.29.32.0")
ALL_REASONS = frozenset({
    x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise, x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded, x509.ReasonFlags.cessation_of_operation, x509.ReasonFlags.certificate_hold,
    x509.ReasonFlags.privilege_withdrawn, x509.ReasonFlags.aa_compromise,
})


def name(*pairs: tuple) -> x509.Name:
    """``name(("C", "CN"), ("O", "Org"), ("CN", "x"))``; a third element is an ASN.1 string type."""
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "CN": NameOID.COMMON_NAME, "E": NameOID.EMAIL_ADDRESS}
    attrs = []
    for p in pairs:
        if len(p) == 3:
            attrs.append(x509.NameAttribute(oids[p[0]], p[1], _type=p[2]))
        else:
            attrs.append(x509.NameAttribute(oids[p[0]], p[1]))
    return x509.Name(attrs)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def sign_hash_for(key, h=None):
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dsa.DSAPrivateKey)):
        return h or hashes.SHA256()
    return None


def build_cert(subject: x509.Name, issuer: Ident | None, *, key=None, ca: bool = False, pathlen=None,
               bc_critical: bool = True, ku: dict | None = None, extensions: Sequence = (),
               issuer_name: x509.Name | None = None, sig_hash=None, not_before=None, not_after=None,
               cdp: str | None = None) -> Ident:
    """A certificate with SKI/AKI, basicConstraints for a CA (critical unless ``bc_critical`` is
    False), key usage ``ku`` (default: CA keyCertSign+cRLSign, leaf digitalSignature), any
    ``extensions`` ((value, critical) pairs), an ``issuer_name`` other than the issuer's subject
    when given, and a signature with ``sig_hash`` (default SHA-256)."""
    key = key or ec_key()
    signer = issuer.key if issuer else key
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_name or (issuer.cert.subject if issuer else subject))
         .public_key(key.public_key()).serial_number(secrets.randbits(127) | 1)
         .not_valid_before(not_before or NOW - 30 * DAY).not_valid_after(not_after or NOW + 365 * DAY)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False))
    if ca:
        b = b.add_extension(x509.BasicConstraints(True, pathlen), bc_critical)
    if ku is None:
        ku = dict(key_cert_sign=True, crl_sign=True) if ca else dict(digital_signature=True)
    if ku:
        full = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False)
        full.update(ku)
        b = b.add_extension(x509.KeyUsage(**full), True)
    if cdp:
        b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(cdp)], None, None, None)]), False)
    for ext, critical in extensions:
        b = b.add_extension(ext, critical)
    return Ident(b.sign(signer, sign_hash_for(signer, sig_hash)), key)


def root(cn: str = "Regression Root") -> Ident:
    return build_cert(name(("C", "CN"), ("O", "Unica Regression"), ("CN", cn)), None, ca=True)


def raw_ext(oid: str, der: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), der)


def policy_mappings(*pairs: tuple[x509.ObjectIdentifier, x509.ObjectIdentifier]) -> x509.UnrecognizedExtension:
    """policyMappings (2.5.29.33), which cryptography cannot build: (issuerDomain, subjectDomain)."""
    der = ax.PolicyMappings([{"issuer_domain_policy": i.dotted_string, "subject_domain_policy": s.dotted_string}
                             for i, s in pairs]).dump()
    return raw_ext("2.5.29.33", der)


def policies(*items) -> x509.CertificatePolicies:
    """Each item is an OID or (OID, [qualifiers]) with qualifiers str (CPS URI) or UserNotice."""
    out = []
    for it in items:
        if isinstance(it, tuple):
            out.append(x509.PolicyInformation(it[0], list(it[1])))
        else:
            out.append(x509.PolicyInformation(it, None))
    return x509.CertificatePolicies(out)


_SIG_ALGS = {"sha256": "sha256_ecdsa", "sha1": "sha1_ecdsa"}


def resign_cert(cert: x509.Certificate, signer_key, mutate=None, *, hash_name: str = "sha256") -> x509.Certificate:
    """Re-encode ``cert``'s TBSCertificate with asn1crypto, let ``mutate(tbs)`` change it, and
    sign it again with the (EC) ``signer_key`` using ECDSA with ``hash_name`` ("sha256" or
    "sha1": cryptography's builders refuse SHA-1, its low-level signing does not)."""
    a = ax.Certificate.load(cert.public_bytes(_DER))
    tbs = a["tbs_certificate"]
    alg = _SIG_ALGS[hash_name]
    tbs["signature"] = {"algorithm": alg}
    if mutate is not None:
        mutate(tbs)
    tbs_der = tbs.dump(force=True)
    h = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}[hash_name]
    sig = signer_key.sign(tbs_der, ec.ECDSA(h))
    new = ax.Certificate({"tbs_certificate": ax.TbsCertificate.load(tbs_der),
                          "signature_algorithm": {"algorithm": alg}, "signature_value": sig})
    return x509.load_der_x509_certificate(new.dump())


def generalized_not_after(cert: x509.Certificate, signer_key) -> x509.Certificate:
    """The same certificate with its notAfter (before 2050) encoded as GeneralizedTime."""
    def m(tbs):
        na = tbs["validity"]["not_after"].native
        tbs["validity"]["not_after"] = ax.Time(name="general_time", value=acore.GeneralizedTime(na))
    return resign_cert(cert, signer_key, m)


# --- CRLs ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Entry:
    serial: int
    when: dt.datetime = NOW - 2 * DAY
    reason: x509.ReasonFlags | None = None
    certificate_issuer: x509.Name | None = None
    raw_extensions: tuple = ()  # (oid, der, critical)


def build_crl(issuer_name: x509.Name, key, entries: Iterable[Entry] = (), *, number: int = 1,
              idp: x509.IssuingDistributionPoint | None = None, delta_of: int | None = None,
              this_update=None, next_update=None, extra: Sequence = ()) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer_name)
         .last_update(this_update or NOW - dt.timedelta(hours=1))
         .next_update(next_update or NOW + 7 * DAY)
         .add_extension(x509.CRLNumber(number), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    if idp is not None:
        b = b.add_extension(idp, True)
    if delta_of is not None:
        b = b.add_extension(x509.DeltaCRLIndicator(delta_of), True)
    for ext, critical in extra:
        b = b.add_extension(ext, critical)
    raw_entries = {}
    for e in entries:
        rb = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(e.when)
        if e.reason is not None:
            rb = rb.add_extension(x509.CRLReason(e.reason), False)
        if e.certificate_issuer is not None:
            rb = rb.add_extension(x509.CertificateIssuer([x509.DirectoryName(e.certificate_issuer)]), True)
        if e.raw_extensions:
            raw_entries[e.serial] = e.raw_extensions
        b = b.add_revoked_certificate(rb.build())
    crl = b.sign(key, hashes.SHA256())
    if raw_entries:
        crl = _add_entry_extensions(crl, key, raw_entries)
    return crl


def _add_entry_extensions(crl, key, raw_entries) -> x509.CertificateRevocationList:
    """Add CRL entry extensions cryptography does not know (re-encoded and re-signed)."""
    a = acrl.CertificateList.load(crl.public_bytes(_DER))
    tbs = a["tbs_cert_list"]
    for rc in tbs["revoked_certificates"]:
        extra = raw_entries.get(rc["user_certificate"].native)
        if not extra:
            continue
        exts = list(rc["crl_entry_extensions"]) if rc["crl_entry_extensions"].native else []
        for oid, der, critical in extra:
            exts.append(acrl.CRLEntryExtension({"extn_id": acrl.CRLEntryExtensionId(oid), "critical": critical,
                                                 "extn_value": acore.ParsableOctetString(der)}))
        rc["crl_entry_extensions"] = acrl.CRLEntryExtensions(exts)
    tbs_der = tbs.dump(force=True)
    sig = key.sign(tbs_der, ec.ECDSA(hashes.SHA256()))
    new = acrl.CertificateList({"tbs_cert_list": acrl.TbsCertList.load(tbs_der),
                                "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": sig})
    return x509.load_der_x509_crl(new.dump())


def crl_of(ca: Ident, entries: Iterable[Entry] = (), **kw) -> x509.CertificateRevocationList:
    return build_crl(ca.cert.subject, ca.key, entries, **kw)


def dp_uri(url: str, *, crl_issuer: x509.Name | None = None) -> x509.DistributionPoint:
    return x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None,
                                  [x509.DirectoryName(crl_issuer)] if crl_issuer else None)


def dp_relative(cn: str) -> x509.DistributionPoint:
    return x509.DistributionPoint(None, x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)]), None, None)


def idp(*, full_name=None, relative_name: str | None = None, indirect: bool = False,
        only_some_reasons=None) -> x509.IssuingDistributionPoint:
    rel = (x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, relative_name)])
           if relative_name else None)
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(u) for u in full_name] if full_name else None,
        relative_name=rel, only_contains_user_certs=False, only_contains_ca_certs=False,
        only_some_reasons=frozenset(only_some_reasons) if only_some_reasons else None,
        indirect_crl=indirect, only_contains_attribute_certs=False)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- independent validators -----------------------------------------------------------------


def _pem(objs) -> bytes:
    return b"".join(o.public_bytes(_PEM) for o in objs)


def openssl_verify(tmp: Path, leaf: x509.Certificate, *, roots: Sequence[x509.Certificate],
                   untrusted: Sequence[x509.Certificate] = (), crls: Sequence = (), at: dt.datetime = AT,
                   args: Sequence[str] = (), crl_check: bool = True) -> tuple[bool, str]:
    """``openssl verify`` (OpenSSL 3 CLI) at ``at``; with CRLs, -crl_check_all -extended_crl
    (indirect CRLs, CRL issuers other than the CA key, delta CRLs with -use_deltas)."""
    d = Path(tmp) / f"ossl-{secrets.token_hex(4)}"
    d.mkdir()
    (d / "root.pem").write_bytes(_pem(roots))
    (d / "leaf.pem").write_bytes(_pem([leaf]))
    cmd = ["openssl", "verify", "-attime", str(int(at.timestamp())), "-purpose", "any",
           "-CAfile", str(d / "root.pem")]
    if untrusted:
        (d / "untrusted.pem").write_bytes(_pem(untrusted))
        cmd += ["-untrusted", str(d / "untrusted.pem")]
    if crls:
        (d / "crls.pem").write_bytes(_pem(crls))
        cmd += ["-CRLfile", str(d / "crls.pem")]
        if crl_check:
            cmd += ["-crl_check_all", "-extended_crl"]
    cmd += [*args, str(d / "leaf.pem")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def certvalidator(leaf: x509.Certificate, *, roots: Sequence[x509.Certificate],
                  others: Sequence[x509.Certificate] = (), crls: Sequence = (), at: dt.datetime = AT,
                  revocation: str = "hard-fail", policies: Iterable[str] | None = None,
                  explicit_policy: bool = False, inhibit_mapping: bool = False,
                  inhibit_any: bool = False):
    """pyhanko-certvalidator, no fetching. Returns (True, ValidationPath) or (False, error)."""
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.policy_decl import PKIXValidationParams

    def a(c):
        return ax.Certificate.load(c.public_bytes(_DER))

    ctx = ValidationContext(trust_roots=[a(r) for r in roots], other_certs=[a(c) for c in others],
                            crls=[c.public_bytes(_DER) for c in crls], moment=at, allow_fetching=False,
                            revocation_mode=revocation)
    params = PKIXValidationParams(
        # pyhanko-certvalidator spells anyPolicy "any_policy", not 2.5.29.32.0
        user_initial_policy_set=frozenset("any_policy" if p == ANY_POLICY.dotted_string else p for p in policies)
        if policies else frozenset(["any_policy"]),
        initial_policy_mapping_inhibit=inhibit_mapping, initial_explicit_policy=explicit_policy,
        initial_any_policy_inhibit=inhibit_any)
    v = CertificateValidator(a(leaf), validation_context=ctx, pkix_params=params)
    try:
        return True, asyncio.run(v.async_validate_usage(set()))
    except Exception as e:  # noqa: BLE001 - any refusal is a refusal
        return False, f"{type(e).__name__}: {e}"
