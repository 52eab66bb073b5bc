"""Revocation facts shared by the CA (CRLs) and the OCSP responder, which stand side by side:
neither imports the other, both import this."""

from __future__ import annotations

from cryptography import x509

__all__ = ["REASON_CODES"]

#: RFC 5280 5.3.1 CRLReason codes (7 is unused); the same ENUMERATED in OCSP's RevokedInfo
REASON_CODES: dict[x509.ReasonFlags, int] = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.remove_from_crl: 8,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}
