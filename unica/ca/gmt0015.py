"""GM/T 0015 private certificate extensions for organisations (profiles ``enterprise-*-gm``).

GM/T 0015 (数字证书格式, "digital certificate format"; editions 2012 and 2023) defines
private, non-critical extensions that Chinese relying parties read to find who an
organisation's certificate belongs to. unica writes, for a profile that lists editions in
``[subject] gmt0015``, the extensions whose values follow from the certificate's validated
Unified Social Credit Code (USCC, GB 32100-2015, carried in ``organizationIdentifier``):

* edition 2023 -- the USCC item, :data:`USCC_2023` (1.2.156.10260.4.4), UTF8String, the
  18-character code;
* edition 2012 -- OrganizationCode, :data:`ORGANIZATION_CODE_2012` (1.2.156.10260.4.1.4),
  PrintableString, the 9-character organisation code (GB 11714) that is the USCC's
  characters 9-17.

Sources and confidence are in ``docs/sm2-gmt0015.md`` (sections 1, 2 and 7). In short: the
2012 OIDs are corroborated by several independent codebases; their PrintableString type
rests on XiPKI; the 2023 USCC OID and its UTF8String type rest on XiPKI alone (a README and
a test class), which is why it has exactly one definition here (:data:`USCC_2023`) and is
written only when a profile asks for edition ``"2023"``. Putting the 9-character code (not
the whole USCC) in OrganizationCode is unica's reading of the name; some CAs put the USCC
there (docs section 1, low confidence either way).

TaxationNumber (1.2.156.10260.4.1.5) and ICRegistrationNumber (1.2.156.10260.4.1.3) are
never derived: nothing public says how they follow from a USCC. :func:`requested_value`
reads and checks one from a request's extensionRequest, so that an issuance path that
honours them writes exactly what was asked (see the module's callers for whether it does).

Why the values are per-certificate slots: the TBSCertificate template
(:mod:`unica.ca.tbs`) is built once per (issuer, profile) from the extension list
:func:`unica.ca.engine.extensions_for` gives for a sample certificate -- the issuer's own
subject -- so a value taken from the subject at that point would be the issuer's. The
extension objects here (:class:`SubjectDerived`) carry the value for the subject they were
made for (so ``cryptography``'s CertificateBuilder writes the same bytes), and the template
turns them into slots that :meth:`SubjectDerived.extension_der` fills from each
certificate's subject DER.

Linting: pkilint's PKIX certificate linter (0.13.3, ``lint_pkix_cert``) has no decoder for the
1.2.156.10260 arc and no unknown-extension check: it passes these extensions over without a
finding at any severity (checked; ``tests/gm/test_gmt0015.py`` pins it). So that this is never
silent, :func:`check_extension_value` is the check of what pkilint skips (decode, string type,
characters, length, USCC check character, non-critical): the template slot runs it on every
value it writes, :func:`pkilint_validator` is the same check as a pkilint validator (to add to
a pkilint extensions container), and :func:`lint_findings` is pkilint's PKIX findings plus it.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from unica import der
from unica.errors import MalformedInput, PolicyViolation
from unica.policies.model import GMT0015_EDITIONS
from unica.policies.uscc import USCCError, validate_uscc

#: GM/T 0015-2023 "统一社会信用代码" (unified social credit code). SINGLE SOURCE, low confidence:
#: XiPKI's README ("China GM/T 0015-2023 ... Unified Social Credit Code (1.2.156.10260.4.4)") and
#: XiPKI's test ``GenerateExtensions.generateGmt0015`` (``new DERUTF8String(...)``, non-critical);
#: docs/sm2-gmt0015.md section 2. It sits outside the 1.2.156.10260.4.1 arc of every 2012 item.
#: Change it here and nowhere else if a second source says otherwise.
USCC_2023 = "1.2.156.10260.4.4"
#: GM/T 0015-2012 items (XiPKI ObjectIdentifiers.java id_GMT_0015_*, corroborated; docs section 1)
IC_REGISTRATION_NUMBER_2012 = "1.2.156.10260.4.1.3"
ORGANIZATION_CODE_2012 = "1.2.156.10260.4.1.4"
TAXATION_NUMBER_2012 = "1.2.156.10260.4.1.5"

EDITIONS = GMT0015_EDITIONS

UTF8_STRING, PRINTABLE_STRING = 0x0C, 0x13
#: OID -> (name, string tag) of every extension this module writes or reads
ITEMS = {
    USCC_2023: ("unifiedSocialCreditCode", UTF8_STRING),
    ORGANIZATION_CODE_2012: ("organizationCode", PRINTABLE_STRING),
    TAXATION_NUMBER_2012: ("taxationNumber", PRINTABLE_STRING),
    IC_REGISTRATION_NUMBER_2012: ("icRegistrationNumber", PRINTABLE_STRING),
}
#: requested (never derived) items: name -> OID
REQUESTABLE = {"taxationNumber": TAXATION_NUMBER_2012, "icRegistrationNumber": IC_REGISTRATION_NUMBER_2012}
#: longest requested value accepted (a Chinese taxpayer number has 15 to 20 characters, a
#: business registration number 13 or 15; 64 leaves room without letting a request grow a
#: certificate freely)
MAX_REQUESTED_LENGTH = 64

#: X.680 PrintableString characters
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
_ORG_ID = der.oid(NameOID.ORGANIZATION_IDENTIFIER.dotted_string)
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1"}


def organization_code(uscc: str) -> str:
    """The 9-character organisation code (GB 11714) inside a valid USCC: characters 9-17."""
    return validate_uscc(uscc)[8:17]


def value_der(oid: str, text: str) -> bytes:
    """The extnValue content of item ``oid`` holding ``text`` (its string type per :data:`ITEMS`)."""
    _, tag = ITEMS[oid]
    if tag == PRINTABLE_STRING:
        bad = [c for c in text if c not in _PRINTABLE]
        if bad:
            raise PolicyViolation(f"GM/T 0015 {ITEMS[oid][0]}: {bad[0]!r} is not a PrintableString character")
        return der.tlv(tag, text.encode("ascii"))
    return der.tlv(tag, text.encode("utf-8"))


def extension_der(oid: str, text: str) -> bytes:
    """The whole non-critical Extension (GM/T 0015 items are non-critical: XiPKI's
    ExtensionSpec lists them as non-critical only; docs section 1)."""
    return der.extension(der.oid(oid), value_der(oid, text), False)


def uscc_of_subject_der(subject_der: bytes) -> str | None:
    """The validated bare USCC in a Name's organizationIdentifier, or None if it has none."""
    s, e = der.expect(subject_der, 0, der.SEQUENCE, what="Name")
    for _, rs, re_, _ in der.children(subject_der, s, e):
        for _, as_, ae, _ in der.children(subject_der, rs, re_):
            _, _, oe = der.read_tlv(subject_der, as_, ae)
            if subject_der[as_:oe] != _ORG_ID:
                continue
            vtag, vs, ve = der.read_tlv(subject_der, oe, ae)
            codec = _STRING_TAGS.get(vtag)
            if codec is None:
                raise PolicyViolation("organizationIdentifier is not a string the USCC can be read from")
            try:
                return validate_uscc(bytes(subject_der[vs:ve]).decode(codec))
            except (UnicodeDecodeError, USCCError) as exc:
                raise PolicyViolation(f"GM/T 0015: {exc}") from None
    return None


def _uscc_of_name(subject: x509.Name) -> str | None:
    attrs = subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    if not attrs:
        return None
    try:
        return validate_uscc(str(attrs[0].value))
    except USCCError as exc:
        raise PolicyViolation(f"GM/T 0015: {exc}") from None


class SubjectDerived(x509.UnrecognizedExtension):
    """A GM/T 0015 extension whose value follows from the certificate's subject USCC.

    Made for one subject, it holds that subject's value (``value`` is the extnValue content,
    as for any :class:`~cryptography.x509.UnrecognizedExtension`; empty if that subject has no
    USCC, as the issuer's subject of a template sample may not). The TBS template uses
    :meth:`extension_der` instead, per certificate."""

    def __init__(self, oid: str, subject: x509.Name):
        if oid not in (USCC_2023, ORGANIZATION_CODE_2012):
            raise ValueError(f"{oid} is not derived from the USCC")
        try:
            uscc = _uscc_of_name(subject)
        except PolicyViolation:  # e.g. the issuer's subject a template sample is made with
            uscc = None
        value = value_der(oid, self._text(oid, uscc)) if uscc else b""
        super().__init__(ObjectIdentifier(oid), value)
        self.item = oid

    @staticmethod
    def _text(oid: str, uscc: str) -> str:
        return uscc if oid == USCC_2023 else uscc[8:17]

    def extension_der(self, subject_der: bytes) -> bytes:
        """The Extension for the certificate whose subject is ``subject_der``. A profile that
        asks for GM/T 0015 extensions requires the USCC, so a subject without one is refused."""
        uscc = uscc_of_subject_der(subject_der)
        if uscc is None:
            raise PolicyViolation(f"GM/T 0015 {ITEMS[self.item][0]}: the subject has no Unified Social "
                                  "Credit Code (organizationIdentifier)")
        text = self._text(self.item, uscc)
        check_extension_value(self.item, value_der(self.item, text), "GM/T 0015 extension")  # what pkilint skips
        return extension_der(self.item, text)


def extensions(editions, subject: x509.Name) -> list[tuple[x509.ExtensionType, bool]]:
    """The GM/T 0015 extensions for ``editions`` (in a fixed order: 2023 USCC, then 2012
    OrganizationCode), each non-critical."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    if "2023" in editions:
        out.append((SubjectDerived(USCC_2023, subject), False))
    if "2012" in editions:
        out.append((SubjectDerived(ORGANIZATION_CODE_2012, subject), False))
    return out


def requested_value(csr: x509.CertificateSigningRequest, name: str, where: str = "request") -> str | None:
    """The TaxationNumber / ICRegistrationNumber (``name`` in :data:`REQUESTABLE`) a request's
    extensionRequest supplies, checked: a non-critical PrintableString of 1 to
    :data:`MAX_REQUESTED_LENGTH` characters, or None when the request has none."""
    oid = REQUESTABLE[name]
    try:
        ext = csr.extensions.get_extension_for_oid(ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    if ext.critical:
        raise PolicyViolation(f"{where}: GM/T 0015 {name} is requested as critical; it is non-critical")
    return check_extension_value(oid, ext.value.value, where)


def check_extension_value(oid: str, content: bytes, where: str = "certificate") -> str:
    """Decode and check one GM/T 0015 extnValue content (what pkilint does not look into):
    exactly one string of the item's type, characters of that type, bounded length, and for
    the USCC-derived items a valid USCC / organisation code. Returns the text."""
    if oid not in ITEMS:
        raise MalformedInput(f"{where}: {oid} is not a GM/T 0015 item unica knows")
    name, want = ITEMS[oid]
    try:
        tag, s, e = der.read_exact(content, what=f"GM/T 0015 {name}")
    except der.DERError as exc:
        raise MalformedInput(f"{where}: GM/T 0015 {name}: {exc}") from None
    if tag != want:
        raise MalformedInput(f"{where}: GM/T 0015 {name} must be a "
                             f"{'UTF8String' if want == UTF8_STRING else 'PrintableString'}, found tag 0x{tag:02x}")
    raw = bytes(content[s:e])
    try:
        text = raw.decode("utf-8" if want == UTF8_STRING else "ascii")
    except UnicodeDecodeError:
        raise MalformedInput(f"{where}: GM/T 0015 {name}: not valid text") from None
    if want == PRINTABLE_STRING and any(c not in _PRINTABLE for c in text):
        raise MalformedInput(f"{where}: GM/T 0015 {name}: not a PrintableString")
    if not 1 <= len(text) <= MAX_REQUESTED_LENGTH:
        raise MalformedInput(f"{where}: GM/T 0015 {name}: {len(text)} characters "
                             f"(1 to {MAX_REQUESTED_LENGTH})")
    if oid == USCC_2023:
        try:
            if validate_uscc(text) != text:
                raise USCCError(f"{text!r} is not a bare 18-character code")
        except USCCError as exc:
            raise MalformedInput(f"{where}: GM/T 0015 {name}: {exc}") from None
    elif oid == ORGANIZATION_CODE_2012 and len(text) != 9:
        raise MalformedInput(f"{where}: GM/T 0015 {name}: {len(text)} characters (an organisation code has 9)")
    return text


ARC = "1.2.156.10260."


def pkilint_validator():
    """A pkilint validator of GM/T 0015 extensions (the 1.2.156.10260 arc): ERROR
    ``unica.gmt0015.invalid_value`` for a value :func:`check_extension_value` refuses or a
    critical one, WARNING ``unica.gmt0015.unchecked_item`` for an item of the arc unica does
    not know (e.g. IdentityCode), so that nothing in the arc passes unlooked-at."""
    from pkilint import validation
    from pyasn1_alt_modules import rfc5280

    invalid = validation.ValidationFinding(validation.ValidationFindingSeverity.ERROR, "unica.gmt0015.invalid_value")
    unchecked = validation.ValidationFinding(validation.ValidationFindingSeverity.WARNING,
                                             "unica.gmt0015.unchecked_item")

    class GMT0015ExtensionValidator(validation.Validator):
        def __init__(self):
            super().__init__(validations=[invalid, unchecked], pdu_class=rfc5280.Extension)

        def validate(self, node):
            oid = str(node.children["extnID"].pdu)
            if not oid.startswith(ARC):
                return None
            if oid not in ITEMS:
                raise validation.ValidationFindingEncountered(unchecked, f"GM/T 0015 item {oid} is not checked")
            if bool(node.children["critical"].pdu):
                raise validation.ValidationFindingEncountered(invalid, f"{ITEMS[oid][0]} ({oid}) is critical")
            try:
                check_extension_value(oid, bytes(node.children["extnValue"].pdu), "extension")
            except MalformedInput as exc:
                raise validation.ValidationFindingEncountered(invalid, str(exc)) from None
            return None

    return GMT0015ExtensionValidator()


def lint_findings(cert_der: bytes) -> list[str]:
    """pkilint's PKIX certificate findings at WARNING or above (as
    :func:`unica.ca.lint.lint_findings` gives them) plus those of :func:`pkilint_validator`,
    in the same ``"SEVERITY code (message) at path"`` form. Empty: clean."""
    from pkilint import loader
    from pkilint.pkix import certificate, extension, name
    from pkilint.validation import ValidationFindingSeverity

    from unica.ca.lint import lint_findings as pkix_findings

    out = list(pkix_findings(cert_der))
    try:
        doc = loader.RFC5280CertificateDocumentLoader().load_der_document(cert_der, "certificate")
    except Exception as exc:  # pkilint/pyasn1 raise assorted errors on undecodable input
        return out or [f"FATAL pkilint cannot decode the certificate: {exc}"]
    container = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [pkilint_validator()])
    for result in container.validate(doc.root):
        for fd in result.finding_descriptions:
            if fd.finding.severity <= ValidationFindingSeverity.WARNING:
                msg = f" ({fd.message})" if fd.message else ""
                out.append(f"{fd.finding.severity.name} {fd.finding.code}{msg} at {result.node.path}")
    return out
