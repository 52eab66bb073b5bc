"""Intended use of a certificate: key usage and extended key usage required of the leaf."""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

_KU_NAMES = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
)
_KU_ALIASES = {
    "digitalsignature": "digital_signature", "nonrepudiation": "content_commitment",
    "contentcommitment": "content_commitment", "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment", "keyagreement": "key_agreement",
    "keycertsign": "key_cert_sign", "crlsign": "crl_sign", "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}
_EKU_ALIASES = {
    "serverauth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientauth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codesigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailprotection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocspsigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the leaf must allow.

    ``key_usage_any``: at least one of these KU bits must be set (when the leaf has a KU
    extension; a leaf without one allows every use, RFC 5280 4.2.1.3).
    ``key_usage_all``: all of these must be set. ``eku``: when the leaf has an EKU
    extension, it must contain one of these (or anyExtendedKeyUsage unless ``strict_eku``).
    """

    name: str
    key_usage_any: frozenset[str] = frozenset()
    key_usage_all: frozenset[str] = frozenset()
    eku: frozenset[x509.ObjectIdentifier] = frozenset()
    strict_eku: bool = False  # EKU must be present and contain one of ``eku`` (no anyEKU)

    def problems(self, cert: x509.Certificate) -> list[str]:
        out: list[str] = []
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            ku = None
        if ku is not None:
            have = set()
            for n in _KU_NAMES:
                try:
                    if getattr(ku, n):
                        have.add(n)
                except ValueError:  # encipher_only without key_agreement
                    pass
            if self.key_usage_any and not (have & self.key_usage_any):
                out.append(
                    f"key usage {', '.join(sorted(have)) or 'none'} allows none of "
                    f"{', '.join(sorted(self.key_usage_any))}"
                )
            missing = self.key_usage_all - have
            if missing:
                out.append(f"key usage lacks {', '.join(sorted(missing))}")
        try:
            eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            eku = None
        if self.eku:
            if eku is None:
                if self.strict_eku:
                    out.append("certificate has no extended key usage")
            else:
                ok = bool(eku & self.eku) or (
                    not self.strict_eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
                )
                if not ok:
                    out.append(
                        "extended key usage "
                        f"{', '.join(sorted(o.dotted_string for o in eku))} allows none of "
                        f"{', '.join(sorted(o.dotted_string for o in self.eku))}"
                    )
        return out


PRESETS: dict[str, Usage] = {
    "any": Usage("any"),
    # a leaf with an EKU must name a signing purpose: a TLS-server-only certificate is no
    # document-signing certificate
    "document-signing": Usage(
        "document-signing",
        key_usage_any=frozenset({"digital_signature", "content_commitment"}),
        eku=frozenset({
            x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
            ExtendedKeyUsageOID.EMAIL_PROTECTION,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            x509.ObjectIdentifier("1.2.840.113583.1.1.5"),  # Adobe Authentic Documents Trust
            x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
        }),
    ),
    "client-auth": Usage(
        "client-auth",
        key_usage_any=frozenset({"digital_signature", "key_agreement"}),
        eku=frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
    ),
    "server-auth": Usage(
        "server-auth",
        key_usage_any=frozenset({"digital_signature", "key_encipherment", "key_agreement"}),
        eku=frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
    ),
    "timestamping": Usage(
        "timestamping",
        key_usage_any=frozenset({"digital_signature", "content_commitment"}),
        eku=frozenset({ExtendedKeyUsageOID.TIME_STAMPING}),
        strict_eku=True,
    ),
    "ocsp-signing": Usage(
        "ocsp-signing",
        key_usage_any=frozenset({"digital_signature", "content_commitment"}),
        eku=frozenset({ExtendedKeyUsageOID.OCSP_SIGNING}),
        strict_eku=True,
    ),
}


def resolve_usage(usage: str | Usage) -> Usage:
    """A preset name, or ``ku:digitalSignature,nonRepudiation;eku:clientAuth,1.2.3`` (any-of sets)."""
    if isinstance(usage, Usage):
        return usage
    if not isinstance(usage, str):
        raise TypeError("usage must be a preset name or a Usage")
    if usage in PRESETS:
        return PRESETS[usage]
    ku: set[str] = set()
    eku: set[x509.ObjectIdentifier] = set()
    for part in usage.split(";"):
        kind, _, vals = part.partition(":")
        kind = kind.strip().lower()
        for v in filter(None, (x.strip() for x in vals.split(","))):
            key = v.replace("_", "").replace("-", "").lower()
            if kind == "ku":
                if key not in _KU_ALIASES:
                    raise ValueError(f"unknown key usage {v!r}")
                ku.add(_KU_ALIASES[key])
            elif kind == "eku":
                if key in _EKU_ALIASES:
                    eku.add(_EKU_ALIASES[key])
                else:
                    try:
                        eku.add(x509.ObjectIdentifier(v))
                    except ValueError:
                        raise ValueError(f"unknown extended key usage {v!r}") from None
            else:
                raise ValueError(
                    f"unknown usage {usage!r}: use one of {sorted(PRESETS)} or 'ku:...;eku:...'"
                )
    return Usage(usage, key_usage_any=frozenset(ku), eku=frozenset(eku))
