"""pkilint, in process: the same checks as ``lint_pkix_cert lint -s WARNING``.

The validator tree is built once per process and reused. :func:`lint_findings` returns the
findings at WARNING or above as ``"SEVERITY code (message) at path"`` strings; an empty list
means the certificate is clean.

Speed: pkilint's ``ValidatorContainer`` asks every validator whether it matches every node
of the document (~3,700 ``match`` calls per certificate, half the lint time). :func:`_walk`
runs the same validators on the same nodes in the same order, but remembers, per
(container, node path, node type), which validators can match at all on the static criteria
(``path``, ``path_re``, ``pdu_class``); only the dynamic criteria (``pdu_supertype``,
``predicate``) and overridden ``match`` methods are evaluated per node. The results are the
same as pkilint's own walk (``tests/ca/test_lint_fast.py`` compares them).
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


_STATIC, _DYNAMIC, _FULL = 0, 1, 2
_candidates: dict = {}


def _kind(v) -> int:
    from pkilint.document import NodeVisitor

    if type(v).match is not NodeVisitor.match:
        return _FULL
    if v._pdu_supertype is not None or v._predicate is not None:
        return _DYNAMIC
    return _STATIC


#: overridden ``match`` methods that begin with ``super().match(node)`` (checked against
#: pkilint 0.13's source): for these the static criteria are a necessary condition too
_OVERRIDES_CALLING_SUPER_FIRST = frozenset({
    "ExtensionCriticalityValidator.match", "TypeMatchingValidator.match",
    "ExtendedKeyUsageCriticalityValidator.match",
})


def _static_match(v, path: str, pdu) -> bool:
    from pkilint.document import NodeVisitor

    if type(v).match is not NodeVisitor.match and type(v).match.__qualname__ not in _OVERRIDES_CALLING_SUPER_FIRST:
        return True  # decided per node
    if v._path is not None and v._path != path:
        return False
    if v._path_re is not None and v._path_re.match(path) is None:
        return False
    if v._pdu_class is not None and not isinstance(pdu, v._pdu_class):
        return False
    return True


def _is_plain_container(v) -> bool:
    from pkilint.validation import ValidatorContainer

    return (isinstance(v, ValidatorContainer) and type(v).validate is ValidatorContainer.validate
            and type(v)._validate_rec is ValidatorContainer._validate_rec
            and type(v).validate_wrapper is ValidatorContainer.validate_wrapper)


def _walk(container, node, results: list) -> None:
    """``container._validate_rec(node, results)``, with the static part of ``match`` cached."""
    path = node.path
    key = (id(container), path, type(node.pdu))
    cands = _candidates.get(key)
    if cands is None:
        cands = tuple((v, _kind(v), _is_plain_container(v)) for v in container.validators
                      if _static_match(v, path, node.pdu))
        if len(_candidates) < 200_000:
            _candidates[key] = cands
    for v, kind, plain in cands:
        if kind == _FULL:
            if not v.match(node):
                continue
        elif kind == _DYNAMIC:
            if v._pdu_supertype is not None and not v._pdu_supertype.isSuperTypeOf(node.pdu):
                continue
            if v._predicate is not None and not v._predicate(node):
                continue
        if plain:
            _walk(v, node, results)
            continue
        result = v.validate_wrapper(node)
        if isinstance(result, list):
            results += result
        else:
            results.append(result)
    for child in node.children.values():
        _walk(container, child, results)


def lint_findings(cert_der: bytes, name: str = "certificate", *, fast: bool = True) -> list[str]:
    """pkilint's PKIX certificate findings at WARNING or above (empty list: clean)."""
    from pkilint.validation import ValidationFindingSeverity

    try:
        doc = _loader().load_der_document(cert_der, name)
    except Exception as e:  # pkilint/pyasn1 raise assorted errors on undecodable input
        return [f"FATAL pkilint cannot decode the certificate: {e}"]
    validator = _pkix_validator()
    if fast and _is_plain_container(validator):
        results: list = []
        _walk(validator, doc.root, results)
    else:
        results = validator.validate(doc.root)
    out = []
    for result in results:
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
