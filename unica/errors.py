"""The typed exceptions unica raises.

Every failure the library reports is a subclass of :class:`UnicaError`. The library
never prints; the CLI turns each of these into one line on stderr and a non-zero exit.
The message of each exception is written to stand alone on that line: it names the
thing that is wrong (the file, the key, the profile) and the problem.
"""

from __future__ import annotations


class UnicaError(Exception):
    """Base of every error unica raises on purpose."""

    #: process exit status the CLI uses for this kind of error
    exit_code = 1


# --- configuration and input -------------------------------------------------------


class ConfigurationError(UnicaError):
    """A setting, environment variable or configuration file is missing or invalid."""

    exit_code = 2


class InputError(UnicaError):
    """Input from outside (a file, a request, an argument) is malformed."""

    exit_code = 2


class OutputError(UnicaError):
    """An output file cannot be written: permissions, a read-only file system, a full disk."""


class MalformedInput(InputError):
    """Bytes that should be PEM/DER of some structure are not."""


class URIError(InputError):
    """A key URI (``pkcs11:`` or ``file:``) is malformed or names an unknown scheme."""


# --- keys and tokens ----------------------------------------------------------------


class KeyBackendError(UnicaError):
    """Base for key backend failures (software key files and PKCS#11 tokens)."""


class KeyNotFound(KeyBackendError):
    """No key matches the URI (on the token or on disk)."""


class KeyExists(KeyBackendError):
    """A key with that label / id / path already exists."""


class UnsupportedKeyType(KeyBackendError):
    """The key type or size is not supported here (by unica, or by this token)."""


class TokenError(KeyBackendError):
    """A PKCS#11 call failed for a reason not covered by a narrower class."""


class TokenNotFound(TokenError):
    """No token with that label / serial is present (unplugged, or wrong label)."""


class ModuleNotFound(TokenError):
    """The PKCS#11 module (shared library) cannot be loaded."""


class PinIncorrect(TokenError):
    """The token refused the PIN (CKR_PIN_INCORRECT). A token that keeps a retry counter has
    counted the attempt; not every token keeps one (SoftHSM2 does not)."""


class PinLocked(TokenError):
    """The PIN is locked on the token; only the security officer can unblock it."""


class PinRequired(TokenError):
    """A PIN or passphrase is needed but none was given and no prompt is possible."""


class PassphraseIncorrect(KeyBackendError):
    """The passphrase does not decrypt the key file."""


class CorruptKeyFile(KeyBackendError):
    """The key file is not an encrypted PKCS#8 PEM private key."""


class SM2Error(KeyBackendError):
    """The SM2/SM3 backend (the system OpenSSL 3 libcrypto, :mod:`unica.sm2`) failed: the
    library cannot be loaded or lacks SM2, or an OpenSSL call failed (the message carries
    OpenSSL's reason, on one line)."""


class SM2SignatureInvalid(UnicaError):
    """An SM2-with-SM3 signature does not verify: wrong key, wrong signer ID, altered data, or
    a signature that is not a DER ``SEQUENCE { r, s }`` at all. Not an input error: the
    inputs were processed and the answer is no."""


# --- policy and issuance ------------------------------------------------------------


class ProfileError(UnicaError):
    """A profile file is invalid (the message names the file, the key and the problem)."""

    exit_code = 2


class ProfileNotFound(ProfileError):
    """No profile has that name."""


class PolicyViolation(UnicaError):
    """The request is well-formed but the profile or CA forbids it."""

    exit_code = 3


class LintFailure(PolicyViolation):
    """pkilint found problems at WARNING or above in the certificate to be signed."""

    def __init__(self, message: str, findings: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.findings = tuple(findings)


class KeyNotExtractable(PolicyViolation):
    """The token refuses to wrap the key (CKR_KEY_UNEXTRACTABLE): it was generated without
    ``--backup-allowed``, so it cannot be backed up."""


class KeyBackupRefused(PolicyViolation):
    """A key backup or restore is refused: a custodian certificate unfit for key agreement, a card
    that holds no share of this backup, a restored key that is not the CA certificate's."""


class SharesMissing(KeyBackupRefused):
    """Fewer key-backup shares than the threshold were given."""

    def __init__(self, message: str, *, threshold: int, given: int):
        super().__init__(message)
        self.threshold = threshold
        self.given = given
        self.missing = threshold - given


class CANotFound(UnicaError):
    """No CA has that name."""


class CAExists(UnicaError):
    """A CA with that name already exists."""


class CAUnusable(PolicyViolation):
    """The CA cannot issue now: expired, not yet valid, revoked, or awaiting its certificate."""


class CertificateNotFound(UnicaError):
    """No certificate with that serial (for that CA)."""


class RevocationError(UnicaError):
    """A revocation request cannot be applied (already revoked, not on hold, ...)."""


class StoreError(UnicaError):
    """The database cannot be reached, or is not initialised or migrated."""


# --- verification ------------------------------------------------------------------


class VerificationError(UnicaError):
    """The input to verification cannot be processed at all (not: it failed to verify --
    that is a report with indication TOTAL-FAILED, not an exception)."""


class FetchError(UnicaError):
    """Fetching revocation data over the network failed or exceeded its limits."""


# --- the environment ---------------------------------------------------------------


class EnvironmentFailure(UnicaError):
    """The system refused something unica needs from it: a directory cannot be created (a
    read-only file system, permissions), a host name does not resolve, an address cannot be
    bound (in use, not local). Raised where the operation happens, naming it; exit 1."""

    @classmethod
    def from_os(cls, what: str, e: OSError) -> "EnvironmentFailure":
        """``what: <the system's reason>`` (e.g. ``cannot create unica home /x: Read-only file system``)."""
        return cls(f"{what}: {e.strerror or e}")


# --- joint operation ------------------------------------------------------------------


class NotAuthorized(PolicyViolation):
    """No authenticated operator, or the operator may not do this (role, office, a revoked or
    expired certificate, a bad or replayed card signature). Exit 3; audited."""


class ApprovalPending(UnicaError):
    """The operation is under dual control: it was recorded as request ``request_id`` and runs
    when its quorum approves. Not a failure (the CLI prints the id and exits 0)."""

    exit_code = 0

    def __init__(self, request_id: str, operation: str, needed: int, have: int, expires_at):
        self.request_id, self.operation, self.needed, self.have, self.expires_at = (
            request_id, operation, needed, have, expires_at)
        super().__init__(f"{operation} is under dual control: request {request_id} waits for "
                         f"{needed - have} more approval(s) of {needed} (expires {expires_at:%Y-%m-%d %H:%M}Z)")


# --- card login (issue #14) -----------------------------------------------------------


class ChallengeFormatError(InputError):
    """A text is not a unica login challenge (``unica-login-v1``, :mod:`unica.portal.challenge`):
    a wrong header, a missing, extra or misplaced field, an origin of the wrong syntax, a nonce or a
    time that is not in the one accepted spelling, or too many bytes."""


class LoginRefused(PolicyViolation):
    """A card login was refused; ``slug`` says why, in one stable word (``bad-format``,
    ``wrong-origin``, ``unknown-challenge``, ``expired``, ``replayed``, ``bad-signature``,
    ``certificate-refused``, ``not-for-login``). Audited as ``login.refused``."""

    def __init__(self, slug: str, message: str):
        super().__init__(message)
        self.slug = slug
