"""The fast path: accept plain paths quickly, defer everything else to the authority.

A path is *plain* when nothing in it needs the parts of RFC 5280 section 6 that
cryptography's Rust verifier does not implement: no name constraints, no policy
constraints, policy mappings or inhibitAnyPolicy, no relying-party policy inputs. On such a
path the Rust verifier's checks (signatures, validity, basic constraints and path length,
key usage, critical extensions) are a superset of section 6.1's, and policy processing
cannot fail. Its revocation is decided here only from *plain* CRLs: complete CRLs signed by
the certificate's issuer with the key that signed the certificate, no delta, no indirect
entries, no reasons partition, no unknown critical extension, current at the validation
time, and not listing the certificate.

The fast path only ever accepts. Anything else, and every rejection, goes to
:mod:`unica.verify.authority` (pyhanko-certvalidator), which gives the answer and the
diagnosis. ``tests/verify/test_differential.py`` checks that the fast path accepts nothing the
authority rejects.
"""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import verification as xv

from .report import RevocationEvidence

_TOLERANCE = _dt.timedelta(seconds=1)
_POLICY_MAPPINGS = x509.ObjectIdentifier("2.5.29.33")
#: extensions that make a path not plain
_NOT_PLAIN = frozenset({
    x509.ExtensionOID.NAME_CONSTRAINTS, x509.ExtensionOID.POLICY_CONSTRAINTS,
    x509.ExtensionOID.INHIBIT_ANY_POLICY, _POLICY_MAPPINGS,
})
#: CRL extensions a plain CRL may carry (anything else, critical or not, defers)
_CRL_EXTS = frozenset({
    x509.ExtensionOID.CRL_NUMBER, x509.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    x509.ExtensionOID.ISSUING_DISTRIBUTION_POINT, x509.ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
})
_ENTRY_EXTS = frozenset({x509.CRLEntryExtensionOID.CRL_REASON, x509.CRLEntryExtensionOID.INVALIDITY_DATE})


def plain_chain(chain: Sequence[x509.Certificate]) -> bool:
    for c in chain:
        for ext in c.extensions:
            if ext.oid in _NOT_PLAIN:
                return False
    return True


def _ext(obj, cls):
    try:
        return obj.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _cdp_names(cert: x509.Certificate) -> set | None:
    """The fullName URIs / names of the certificate's distribution points; None when a
    distribution point uses anything but a plain fullName (relative names, reasons, a
    cRLIssuer): such certificates are not plain for revocation."""
    cdp = _ext(cert, x509.CRLDistributionPoints)
    if cdp is None:
        return set()
    names = set()
    for dp in cdp:
        if dp.relative_name is not None or dp.reasons is not None or dp.crl_issuer is not None:
            return None
        if not dp.full_name:
            return None
        names.update(dp.full_name)
    return names


def _is_ca(cert) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    return bc is not None and bc.ca


def plain_crl_status(cert: x509.Certificate, issuer: x509.Certificate, at: _dt.datetime, crls, memo,
                     ocsp_serials=frozenset(), online: bool = False):
    """('good', nextUpdate, evidence) when plain CRLs alone decide that ``cert`` is not revoked
    at ``at``; None otherwise (the authority then decides).

    Every CRL in scope of ``cert`` (issuer name equal per RFC 5280 7.1) must be plain, signed
    by ``issuer``'s key and not list the certificate, and one must be current; an OCSP answer
    about the serial at hand, or one the authority would fetch (``online`` and an AIA OCSP
    URL), also defers. ``memo`` answers, once per CRL, whether its signature verifies with a key
    (``sig_ok``) and whether all its entries are plain (``entries_plain``)."""
    from .certificate import normalised

    names = _cdp_names(cert)
    if names is None or _ext(cert, x509.FreshestCRL) is not None or cert.serial_number in ocsp_serials:
        return None
    if online and _declares_ocsp(cert):
        return None
    ku = _ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.crl_sign:
        return None
    want = normalised(cert.issuer)
    best = None
    for crl, origin in crls:
        try:
            if normalised(crl.issuer) != want:
                continue
            if (crl.issuer != cert.issuer or not _plain_crl(crl, cert, names) or not memo.sig_ok(crl, issuer)
                    or not memo.entries_plain(crl)
                    or crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None):
                return None  # in scope but not plain, or listing the certificate: the authority decides
            nu = crl.next_update_utc
            if nu is None or at - _TOLERANCE > nu:
                continue  # stale: not evidence either way
            if best is None or crl.last_update_utc > best[0].last_update_utc:
                best = (crl, origin)
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType):
            return None
    if best is None:
        return None
    crl, origin = best
    ev = RevocationEvidence(certificate=cert.subject.rfc4514_string(), source="CRL", origin=origin,
                            status="good", this_update=crl.last_update_utc, next_update=crl.next_update_utc,
                            issuer=crl.issuer.rfc4514_string())
    return "good", crl.next_update_utc, ev


def _declares_ocsp(cert) -> bool:
    aia = _ext(cert, x509.AuthorityInformationAccess)
    return aia is not None and any(d.access_method == x509.AuthorityInformationAccessOID.OCSP for d in aia)


def entries_plain(crl: x509.CertificateRevocationList) -> bool:
    """Every entry carries only a reason code and an invalidity date, non-critical (no
    certificateIssuer, no unknown or critical entry extension: RFC 5280 5.3)."""
    for e in crl:
        for x in e.extensions:
            if x.critical or x.oid not in _ENTRY_EXTS:
                return False
    return True


_WEAK_HASHES = ("sha1", "md5")


def _plain_crl(crl: x509.CertificateRevocationList, cert, names: set) -> bool:
    h = crl.signature_hash_algorithm
    if h is None or h.name in _WEAK_HASHES:
        return False
    for ext in crl.extensions:
        if ext.oid not in _CRL_EXTS:
            return False
    idp = _ext(crl, x509.IssuingDistributionPoint)
    if idp is None:
        return True
    if (idp.indirect_crl or idp.only_some_reasons is not None or idp.only_contains_attribute_certs
            or idp.relative_name is not None):
        return False
    if idp.only_contains_user_certs and _is_ca(cert):
        return False
    if idp.only_contains_ca_certs and not _is_ca(cert):
        return False
    if idp.full_name is not None:
        return bool(names & set(idp.full_name))
    return True


def rust_chain(builder: xv.PolicyBuilder, leaf, inter, ee_policy, ca_policy, server_subject=None):
    """The Rust verifier's path for ``leaf`` over exactly ``inter``; None when it refuses."""
    try:
        b = builder.extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        if server_subject is not None:
            return b.build_server_verifier(server_subject).verify(leaf, inter)
        return b.build_client_verifier().verify(leaf, inter).chain
    except (xv.VerificationError, ValueError, TypeError):
        return None
