"""pkilint, in process: the same checks as ``lint_pkix_cert lint -s WARNING``.

The validator tree is built once per process and reused (building it is cheap, but there
is no reason to repeat it for every certificate). :func:`lint_findings` returns the findings
at WARNING or above as ``"SEVERITY code (message) at path"`` strings; an empty list means
the certificate is clean.
"""

from __future__ import annotations

import functools

from unica.errors import LintFailure


@functools.lru_cache(maxsize=1)
def _pkix_validator():
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


@functools.lru_cache(maxsize=1)
def _loader():
    from pkilint import loader

    return loader.RFC5280CertificateDocumentLoader()


def lint_findings(cert_der: bytes, name: str = "certificate") -> list[str]:
    """pkilint's PKIX certificate findings at WARNING or above (empty list: clean)."""
    from pkilint.validation import ValidationFindingSeverity

    try:
        doc = _loader().load_der_document(cert_der, name)
    except Exception as e:  # pkilint/pyasn1 raise assorted errors on undecodable input
        return [f"FATAL pkilint cannot decode the certificate: {e}"]
    out = []
    for result in _pkix_validator().validate(doc.root):
        for fd in result.finding_descriptions:
            sev = fd.finding.severity
            if sev <= ValidationFindingSeverity.WARNING:
                msg = f" ({fd.message})" if fd.message else ""
                out.append(f"{sev.name} {fd.finding.code}{msg} at {result.node.path}")
    return out


def require_clean(cert_der: bytes, what: str) -> None:
    """Raise :class:`LintFailure` listing the findings unless pkilint has none at WARNING+."""
    findings = lint_findings(cert_der)
    if findings:
        raise LintFailure(f"pkilint refuses {what}: {'; '.join(findings)}", findings)
