"""The typed exceptions of :mod:`unica.sso` (all :class:`~unica.errors.UnicaError` subclasses:
the CLI prints each as one line, with its exit status)."""

from __future__ import annotations

from unica.errors import PolicyViolation, UnicaError

__all__ = ["SSOClientNotFound", "SSOClientExists", "SSOClientDisabled", "SSOKeyNotFound", "SSOKeyExists",
           "NoSigningKey", "IDTokenInvalid"]


class SSOClientNotFound(UnicaError):
    """No agency system (OpenID Connect client) has that name or client_id."""


class SSOClientExists(UnicaError):
    """An agency system with that name is already registered."""


class SSOClientDisabled(PolicyViolation):
    """The agency system is disabled: no ID token is made for it."""


class SSOKeyNotFound(UnicaError):
    """No ID-token signing key has that kid."""


class SSOKeyExists(UnicaError):
    """That key (same RFC 7638 thumbprint) is already an ID-token signing key."""


class NoSigningKey(UnicaError):
    """No active ID-token signing key (``unica sso key add``)."""


class IDTokenInvalid(UnicaError):
    """An ID token does not verify. ``reason``: ``malformed``, ``unknown-key``, ``bad-signature``,
    ``wrong-issuer``, ``wrong-audience``, ``expired``, ``not-yet-valid``, ``wrong-nonce``,
    ``missing-claim``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
