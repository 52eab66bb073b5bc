"""Profiles as frozen values. A :class:`Profile` says everything the CA puts in a certificate
issued under it; the request only supplies a public key, a subject and (where the profile
honours them) subject alternative names."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

#: key usage names (RFC 5280 4.2.1.3, as in the ASN.1) -> cryptography KeyUsage argument
KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}

#: extended key usage names -> OID (a dotted OID is accepted too)
EKU_NAMES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,
    "documentSigning": "1.3.6.1.5.5.7.3.36",  # RFC 9336
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string,
}

#: subject attribute names -> OID
SUBJECT_ATTRIBUTES = {
    "countryName": NameOID.COUNTRY_NAME,
    "stateOrProvinceName": NameOID.STATE_OR_PROVINCE_NAME,
    "localityName": NameOID.LOCALITY_NAME,
    "streetAddress": NameOID.STREET_ADDRESS,
    "postalCode": NameOID.POSTAL_CODE,
    "organizationName": NameOID.ORGANIZATION_NAME,
    "organizationalUnitName": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "commonName": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "givenName": NameOID.GIVEN_NAME,
    "surname": NameOID.SURNAME,
    "title": NameOID.TITLE,
    "pseudonym": NameOID.PSEUDONYM,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "domainComponent": NameOID.DOMAIN_COMPONENT,
}
ATTRIBUTE_NAME_BY_OID = {oid: name for name, oid in SUBJECT_ATTRIBUTES.items()}

SAN_TYPES = ("dns", "ip", "email", "uri")
#: CSR-requested extensions a profile may honour
#: requested extensions a profile may honour: subjectAltName, and the GM/T 0015-2012 items an
#: enterprise supplies (TaxationNumber, ICRegistrationNumber: unica.ca.gmt0015.REQUESTABLE)
HONOURABLE_EXTENSIONS = ("subjectAltName", "taxationNumber", "icRegistrationNumber")
USCC_MODES = ("forbidden", "optional", "required")
#: GM/T 0015 editions whose USCC-derived private extensions a profile may ask for
#: (``[subject] gmt0015``; see unica.ca.gmt0015)
GMT0015_EDITIONS = ("2012", "2023")
KINDS = ("root-ca", "sub-ca", "end-entity")

OCSP_NOCHECK_OID = ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")


@dataclass(frozen=True)
class PolicyInformation:
    oid: str
    cps_uri: str | None = None
    user_notice: str | None = None


@dataclass(frozen=True)
class SubjectRules:
    required: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    #: where the Unified Social Credit Code stands: forbidden | optional | required
    uscc: str = "forbidden"
    #: GM/T 0015 editions ("2012", "2023") whose extensions repeat the subject's USCC (unica.ca.gmt0015)
    gmt0015: tuple[str, ...] = ()

    @property
    def permitted(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(self.allowed)


@dataclass(frozen=True)
class SANRules:
    allowed: tuple[str, ...] = ()
    required: bool = False
    max: int = 10


@dataclass(frozen=True)
class NameConstraintsSpec:
    permitted_dns: tuple[str, ...] = ()
    excluded_dns: tuple[str, ...] = ()
    permitted_email: tuple[str, ...] = ()
    excluded_email: tuple[str, ...] = ()
    permitted_ip: tuple[str, ...] = ()
    excluded_ip: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)


@dataclass(frozen=True)
class Profile:
    """A certificate profile (see ``unica profile show NAME``)."""

    name: str
    source: str
    kind: str
    validity: dt.timedelta
    description: str = ""
    key_usage: tuple[str, ...] = ()
    key_usage_critical: bool = True
    extended_key_usage: tuple[str, ...] = ()  # dotted OIDs
    extended_key_usage_critical: bool = False
    path_length: int | None = None
    policies: tuple[PolicyInformation, ...] = ()
    key_types: tuple[str, ...] = ()
    subject: SubjectRules = field(default_factory=SubjectRules)
    san: SANRules = field(default_factory=SANRules)
    name_constraints: NameConstraintsSpec | None = None
    crl_distribution_points: bool = True
    ocsp: bool = True
    ca_issuers: bool = True
    ocsp_nocheck: bool = False
    honour_extensions: tuple[str, ...] = ()

    @property
    def is_ca(self) -> bool:
        return self.kind in ("root-ca", "sub-ca")

    def to_dict(self) -> dict:
        from unica.policies.duration import format_duration

        eku_names = {v: k for k, v in EKU_NAMES.items()}
        return {
            "name": self.name, "source": self.source, "kind": self.kind, "description": self.description,
            "validity": format_duration(self.validity),
            "key_usage": {"usages": list(self.key_usage), "critical": self.key_usage_critical},
            "extended_key_usage": {"usages": [eku_names.get(o, o) for o in self.extended_key_usage],
                                   "critical": self.extended_key_usage_critical},
            "basic_constraints": {"ca": self.is_ca, "path_length": self.path_length},
            "certificate_policies": [
                {k: v for k, v in vars(p).items() if v is not None} for p in self.policies],
            "keys": {"allowed": list(self.key_types)},
            "subject": {"required": list(self.subject.required), "allowed": list(self.subject.allowed),
                        "uscc": self.subject.uscc,
                        **({"gmt0015": list(self.subject.gmt0015)} if self.subject.gmt0015 else {})},
            "subject_alt_name": {"allowed": list(self.san.allowed), "required": self.san.required,
                                 "max": self.san.max},
            "name_constraints": ({k: list(getattr(self.name_constraints, k))
                                  for k in NameConstraintsSpec.__dataclass_fields__}
                                 if self.name_constraints else None),
            "revocation_info": {"crl_distribution_points": self.crl_distribution_points, "ocsp": self.ocsp,
                                "ca_issuers": self.ca_issuers},
            "ocsp_nocheck": self.ocsp_nocheck,
            "csr": {"honour_extensions": list(self.honour_extensions)},
        }
