"""What one card login established: the verified facts every agency system learns the same way
(the portal's session holds them; :mod:`unica.sso` puts them in the ID token)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

#: the ``acr`` value of a login with the card's key (a hardware-held key and its PIN)
ACR_CARD = "urn:unica:acr:card"

#: how the card was used: through the local signing agent, or as the TLS client certificate
METHODS = ("card-agent", "tls-client")


@dataclass(frozen=True)
class LoginFacts:
    """One verified card login.

    ``uscc``: the enterprise's unified social credit code (the certificate subject's
    organizationIdentifier); ``enterprise``: its name (O); ``person``: the holder (CN);
    ``cert_serial``: lowercase hex; ``cert_issuer``: RFC 4514; ``cert_sha256``: of the DER;
    ``ca``/``office``: the issuing CA and the RA office of the certificate in this service's
    records (None when unknown); ``roles``: what the holder may do in the portal
    (``enterprise``, ...); ``method``: one of :data:`METHODS`; ``auth_time``: aware UTC."""

    uscc: str | None
    enterprise: str | None
    person: str | None
    cert_serial: str
    cert_issuer: str
    cert_sha256: str
    ca: str | None
    office: str | None
    roles: tuple[str, ...]
    method: str
    auth_time: dt.datetime

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown login method {self.method!r}")
        if self.auth_time.tzinfo is None:
            raise ValueError("auth_time must be aware")

    @property
    def acr(self) -> str:
        return ACR_CARD

    @property
    def amr(self) -> list[str]:
        """RFC 8176 values: a hardware-secured key (``hwk``) unlocked with a PIN (``pin``); with
        the card as a smart card (``sc``), both factors (``mfa``)."""
        return ["hwk", "sc", "pin", "mfa"]
