"""The registry's errors: each carries a stable ``slug`` (the service's problem type)."""

from __future__ import annotations

from unica.errors import InputError, PolicyViolation, UnicaError


class RegistryRefused(PolicyViolation):
    """The registry refuses a request (exit 3). ``slug`` names why, e.g. ``not-your-certificate``."""

    def __init__(self, slug: str, message: str):
        super().__init__(message)
        self.slug = slug
        self.reason_slug = slug


class EnrollmentRefused(RegistryRefused):
    """An enrollment (or re-enrollment, or a status poll) refused. Slugs: ``code-invalid``,
    ``code-expired``, ``code-used``, ``code-locked``, ``not-approved``, ``no-such-application``;
    ``other-ca``, ``enterprise-disabled``; re-enrollment: ``certificate-unknown``,
    ``not-enterprise``, ``certificate-revoked``, ``certificate-expired``; ``issuance-failed``."""


class RegistryConflict(InputError):
    """The request contradicts the registry's state (exit 2): an enterprise registered already,
    an application decided already, an officer deciding twice. ``slug`` names it."""

    def __init__(self, slug: str, message: str):
        super().__init__(message)
        self.slug = slug


class EnterpriseNotFound(UnicaError):
    """No enterprise with that USCC."""

    slug = "not-found"


class ApplicationNotFound(UnicaError):
    """No application with that id."""

    slug = "not-found"


class RevocationRequestNotFound(UnicaError):
    """No revocation request with that id."""

    slug = "not-found"
