"""RFC 5280 certificate path building and validation.

The path is built and validated by cryptography's Rust verifier (``cryptography.x509.
verification``: path building with backtracking over multiple candidate issuers, signatures,
validity, basic constraints and path length, name constraints, critical extensions, key
and signature algorithm constraints). unica adds, in Python: RFC 5280 structural rules the
Rust verifier leaves out (AKI/SKI presence, criticality of name and policy constraints),
certificate policy processing (RFC 5280 6.1.3-6.1.5), the key usage / EKU of the intended
use, revocation (:mod:`unica.verify.revocation`), and a diagnosis that turns a failure into
an ETSI EN 319 102-1 indication. Supplied intermediates are pruned to those that can lie on a
path by name before path building, which bounds the work an attacker can cause.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

from .policies import policy_problems
from .report import (
    RevocationEvidence,
    SubIndication,
    ValidationReport,
    indication_for,
)
from .revocation import CertStatus, RevocationPolicy, RevocationSource
from .usage import Usage
from ._util import cert_info, signer_identity

#: what cryptography raises on extensions its Python layer refuses
PARSE_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)

#: most intermediates considered for one path (after pruning by name)
MAX_INTERMEDIATES = 64
#: most steps of the diagnostic path search
_MAX_SEARCH_STEPS = 2000


class TrustStore:
    """A set of trust anchors (immutable once built)."""

    def __init__(self, anchors: Sequence[x509.Certificate]):
        uniq: dict[bytes, x509.Certificate] = {}
        for a in anchors:
            uniq.setdefault(a.public_bytes(_DER), a)
        if not uniq:
            raise ValueError("no trust anchors given")
        self.anchors: tuple[x509.Certificate, ...] = tuple(uniq.values())
        self.store = xv.Store(list(self.anchors))
        self.subjects = frozenset(a.subject for a in self.anchors)
        self._der = frozenset(uniq)

    def is_anchor(self, cert: x509.Certificate) -> bool:
        return cert.public_bytes(_DER) in self._der


from cryptography.hazmat.primitives.serialization import Encoding as _Enc  # noqa: E402

_DER = _Enc.DER
from cryptography.hazmat.primitives.serialization import PublicFormat as _PF  # noqa: E402

_SPKI = _PF.SubjectPublicKeyInfo


def _ee_extension_policy() -> xv.ExtensionPolicy:
    """End-entity policy for signing certificates: no SAN requirement, EKU checked by unica."""
    agn = xv.Criticality.AGNOSTIC
    return _with_policy_extensions(
        xv.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, agn, None)
        .may_be_present(x509.ExtendedKeyUsage, agn, None)
        .may_be_present(x509.BasicConstraints, agn, None)
        .may_be_present(x509.KeyUsage, agn, None)
    )


def _ca_key_usage(policy, cert, ku) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("CA certificate's key usage does not allow keyCertSign")


def _with_policy_extensions(p: xv.ExtensionPolicy) -> xv.ExtensionPolicy:
    """Hook for extensions unica processes itself. The Rust verifier's extension policy cannot
    name policyConstraints / inhibitAnyPolicy / policyMappings ("unsupported extension OID"),
    so a path with those critical extensions is refused by it ("unaccounted-for critical
    extensions") and re-validated by the RFC 5280 fallback engine; unica's own policy
    processing (:mod:`unica.verify.policies`) then runs on the path either way."""
    return p


def _ca_extension_policy() -> xv.ExtensionPolicy:
    """CA policy: web PKI defaults, except that a CA's EKU does not have to contain clientAuth
    and a CA certificate without a key usage extension is allowed (RFC 5280 4.2.1.3)."""
    return _with_policy_extensions(
        xv.ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, None)
        .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_key_usage)
    )


def _server_ca_extension_policy() -> xv.ExtensionPolicy:
    """TLS server profile: web PKI defaults (a CA's EKU must allow serverAuth), except that a CA
    certificate without a key usage extension is allowed (RFC 5280 4.2.1.3)."""
    return _with_policy_extensions(xv.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_key_usage))


_POLICIES: tuple | None = None


def _policies(server: bool = False):
    global _POLICIES
    if _POLICIES is None:
        _POLICIES = (_ee_extension_policy(), _ca_extension_policy(), _server_ca_extension_policy())
    ee, ca, sca = _POLICIES
    return ee, (sca if server else ca)


#: most intermediates kept per subject name
MAX_PER_SUBJECT = 16


def prune_intermediates(leaf: x509.Certificate, intermediates: Iterable[x509.Certificate],
                        trust: TrustStore, at: _dt.datetime | None = None) -> list[x509.Certificate]:
    """Keep the intermediates that can chain, by issuer name, to a trust anchor.

    Of several certificates with the same subject, key and issuer only one is kept (the one
    valid at ``at`` with the latest notAfter): such twins make every certificate they issued
    verify under each of them (x509-limbo's pathological chains). At most
    ``MAX_PER_SUBJECT`` certificates per subject and ``MAX_INTERMEDIATES`` in all are kept.
    """
    uniq: dict[bytes, x509.Certificate] = {}
    for c in intermediates:
        uniq.setdefault(c.public_bytes(_DER), c)
    by_subject_key: dict[tuple, x509.Certificate] = {}
    for c in uniq.values():
        if trust.is_anchor(c):
            continue
        try:
            spki = c.public_key().public_bytes(_DER, _SPKI)
        except Exception:  # unsupported key type: keep the certificate itself as its own key
            spki = c.public_bytes(_DER)
        k = (c.subject.public_bytes(), spki, c.issuer.public_bytes())
        cur = by_subject_key.get(k)
        if cur is None or _preferred(c, cur, at):
            by_subject_key[k] = c
    per_subject: dict[bytes, int] = {}
    per_subject_key: dict[tuple, int] = {}
    cands = []
    for (subj, spki, _), c in by_subject_key.items():
        if per_subject.get(subj, 0) < MAX_PER_SUBJECT:
            per_subject[subj] = per_subject.get(subj, 0) + 1
            per_subject_key[(subj, spki)] = per_subject_key.get((subj, spki), 0) + 1
            cands.append(c)
    good = set(trust.subjects)
    kept: list[x509.Certificate] = []
    changed = True
    remaining = cands
    while changed and remaining:
        changed = False
        rest = []
        for c in remaining:
            if c.issuer in good:
                kept.append(c)
                if c.subject not in good:
                    good.add(c.subject)
                    changed = True
            else:
                rest.append(c)
        remaining = rest
        changed = changed or False
    if leaf.issuer not in good:
        return []
    return kept[:MAX_INTERMEDIATES]


def _preferred(a: x509.Certificate, b: x509.Certificate, at: _dt.datetime | None) -> bool:
    """Is ``a`` a better pick than ``b`` (same subject and key)?"""
    def valid(c):
        return at is None or c.not_valid_before_utc <= at <= c.not_valid_after_utc
    if valid(a) != valid(b):
        return valid(a)
    return a.not_valid_after_utc > b.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def candidate_paths(leaf, intermediates, trust: TrustStore, *, max_paths: int = 8,
                    max_steps: int = _MAX_SEARCH_STEPS, max_depth: int = 10) -> list[list[x509.Certificate]]:
    """Paths leaf..anchor by issuer names and signatures, shortest first (breadth first),
    at most ``max_paths``, within a budget of ``max_steps`` signature checks."""
    memo: dict[tuple[int, int], bool] = {}
    steps = 0

    def issued(c, i) -> bool:
        nonlocal steps
        k = (id(c), id(i))
        r = memo.get(k)
        if r is None:
            steps += 1
            r = memo[k] = _issued_by(c, i)
        return r

    out: list[list[x509.Certificate]] = []
    frontier = [[leaf]]
    while frontier and len(out) < max_paths and steps < max_steps:
        nxt = []
        for path in frontier:
            cur = path[-1]
            for a in trust.anchors:
                if cur.issuer == a.subject and issued(cur, a):
                    out.append(path + [a])
                    if len(out) >= max_paths:
                        return out
            if len(path) > max_depth:
                continue
            for c in intermediates:
                if steps >= max_steps:
                    break
                if cur.issuer != c.subject or any(c is p for p in path):
                    continue
                if issued(cur, c):
                    nxt.append(path + [c])
        frontier = nxt[:256]
    return out


# --- Python checks added to the Rust verifier ---------------------------------------------


def _ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def structural_problems(chain: Sequence[x509.Certificate], trust: TrustStore) -> list[str]:
    """RFC 5280 rules for how certificates are formed that path validation must enforce."""
    out = []
    anchor = chain[-1]
    for i, c in enumerate(chain):
        is_anchor = i == len(chain) - 1
        name = c.subject.rfc4514_string() or "(empty subject)"
        pc = _ext(c, x509.PolicyConstraints)
        if pc is not None and not pc.critical:
            out.append(f"{name}: policy constraints extension is not critical (RFC 5280 4.2.1.11)")
        if i > 0 and _ext(c, x509.SubjectKeyIdentifier) is None:
            out.append(f"{name}: CA certificate has no subject key identifier (RFC 5280 4.2.1.2)")
        if not is_anchor and i > 0:
            aki = _ext(c, x509.AuthorityKeyIdentifier)
            if aki is None or aki.value.key_identifier is None:
                out.append(f"{name}: certificate has no authority key identifier (RFC 5280 4.2.1.1)")
        if c.serial_number <= 0 and (not is_anchor or i == 0):
            out.append(f"{name}: serial number is not positive (RFC 5280 4.1.2.2)")
    aki = _ext(anchor, x509.AuthorityKeyIdentifier)
    if aki is not None and len(chain) > 1:
        v = aki.value
        if v.authority_cert_issuer is not None or v.authority_cert_serial_number is not None:
            out.append("trust anchor's authority key identifier names an issuer/serial")
        ski = _ext(anchor, x509.SubjectKeyIdentifier)
        if (anchor.issuer == anchor.subject and ski is not None and v.key_identifier is not None
                and v.key_identifier != ski.value.digest):
            out.append("self-signed trust anchor's authority key identifier differs from its subject key identifier")
    return out


def webpki_problems(chain: Sequence[x509.Certificate]) -> list[str]:
    """CA/Browser Forum rules applied in the TLS server profile (usage server-auth + name)."""
    out = []
    leaf = chain[0]
    # CN: a different spelling of a SAN entry (case, IP address form, IDN) is rejected
    # (CABF BR 7.1.4.3 asks for a character-for-character copy); see _cn_problem
    san = _ext(leaf, x509.SubjectAlternativeName)
    dns: list[str] = []
    ips: list[str] = []
    if san is not None:
        for gn in san.value:
            if isinstance(gn, x509.DNSName):
                dns.append(gn.value)
            elif isinstance(gn, x509.IPAddress):
                ips.append(str(gn.value))
    for attr in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        cn = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        p = _cn_problem(cn, dns, ips)
        if p:
            out.append(p)
    for i, c in enumerate(chain):
        out.extend(_key_problems(c, leaf=i == 0))
    return out


def _cn_problem(cn: str, dns: list[str], ips: list[str]) -> str | None:
    """A CN that names the same host as a SAN entry must spell it the same way; an IDN CN
    (A-label or U-label) must be a SAN entry. Other CNs are not judged (BetterTLS and
    RFC 5280 leave the CN alone; CABF 7.1.4.3 is only partly enforced)."""
    if cn in dns or cn in ips:
        return None
    ip = None
    try:
        ip = ipaddress.ip_address(cn)
    except ValueError:
        try:
            if cn.lower().startswith("0x"):
                ip = ipaddress.ip_address(int(cn, 16))
            elif cn.count(".") == 3 and all(p.isdigit() for p in cn.split(".")):
                ip = ipaddress.IPv4Address(".".join(str(int(p)) for p in cn.split(".")))
        except ValueError:
            ip = None
    if ip is not None:
        for s in ips:
            if ipaddress.ip_address(s) == ip:
                return f"common name {cn!r} is not a character-for-character copy of the subjectAltName IP address {s}"
        return None
    if any(d.lower() == cn.lower() for d in dns):
        return f"common name {cn!r} differs in case from its subjectAltName DNS name"
    try:
        ace = cn.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ace = None
    is_idn = ace is not None and (ace != cn.lower() or any(lbl.startswith("xn--") for lbl in ace.split(".")))
    if is_idn:
        return f"internationalised common name {cn!r} is not a copy of a subjectAltName DNS name"
    return None


def _key_problems(cert: x509.Certificate, leaf: bool) -> list[str]:
    try:
        key = cert.public_key()
    except Exception as e:  # unsupported key algorithms
        return [f"{cert.subject.rfc4514_string()}: unsupported public key ({e})"]
    who = "leaf" if leaf else cert.subject.rfc4514_string()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return [f"{who}: RSA key of {key.key_size} bits is too small"]
        if key.key_size % 8:
            return [f"{who}: RSA modulus of {key.key_size} bits is not a multiple of 8"]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            return [f"{who}: EC curve {key.curve.name} is not allowed"]
    elif isinstance(key, dsa.DSAPublicKey):
        return [f"{who}: DSA keys are not allowed"]
    return []


def _diagnose(leaf, path, trust, at, time_is_proven, rust_error: str):
    """Turn a failed path validation into (sub-indication, message, path)."""
    if path is None:
        return (SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                "no certification path from the certificate to a trust anchor "
                f"(path builder: {rust_error})", [leaf])
    for i, c in enumerate(path):
        if trust.is_anchor(c) and i == len(path) - 1:
            continue
        nb, na = c.not_valid_before_utc, c.not_valid_after_utc
        who = "certificate" if i == 0 else f"CA certificate {c.subject.rfc4514_string()}"
        if at < nb:
            sub = SubIndication.NOT_YET_VALID if i == 0 else SubIndication.OUT_OF_BOUNDS_NO_POE
            return sub, f"{who} is not valid before {nb:%Y-%m-%dT%H:%M:%SZ} (validation time {at:%Y-%m-%dT%H:%M:%SZ})", path
        if at > na:
            sub = SubIndication.EXPIRED if (i == 0 and time_is_proven) else SubIndication.OUT_OF_BOUNDS_NO_POE
            return sub, f"{who} expired {na:%Y-%m-%dT%H:%M:%SZ} (validation time {at:%Y-%m-%dT%H:%M:%SZ})", path
    return SubIndication.CHAIN_CONSTRAINTS_FAILURE, f"path validation failed: {rust_error}", path


#: Rust verifier refusals that are web-PKI policy, not RFC 5280: such paths are re-validated
#: by pyhanko-certvalidator, a full RFC 5280 implementation (self-issued certificates do not
#: count towards pathLenConstraint; a CA certificate may be the leaf; directoryName
#: name constraints are supported)
_FALLBACK_ERRORS = (
    "basicConstraints.cA must not be asserted in an EE certificate",
    "path length constraint violated",
    "unsupported name constraint",
    "signature does not match",
    # critical policy extensions, which the Rust verifier's extension policy cannot name
    "invalid extension: 2.5.29.36:",  # policyConstraints
    "invalid extension: 2.5.29.54:",  # inhibitAnyPolicy
    "invalid extension: 2.5.29.33:",  # policyMappings
)
_POLICY_MAPPINGS_OID = x509.ObjectIdentifier("2.5.29.33")


def _unknown_critical(chain) -> str | None:
    for c in chain:
        for ext in c.extensions:
            if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension) and ext.oid != _POLICY_MAPPINGS_OID:
                return f"{c.subject.rfc4514_string()}: unrecognised critical extension {ext.oid.dotted_string}"
    return None


def _fallback_path(leaf, inter, trust, at, max_chain_depth, server_name):
    import asyncio

    from asn1crypto import x509 as ax
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError

    def a(c):
        return ax.Certificate.load(c.public_bytes(_DER))

    ctx = ValidationContext(trust_roots=[a(t) for t in trust.anchors], other_certs=[a(c) for c in inter],
                            moment=at, revocation_mode="soft-fail", allow_fetching=False)
    v = CertificateValidator(a(leaf), validation_context=ctx)
    try:
        path = asyncio.run(v.async_validate_path())
    except (PathBuildingError, PathValidationError, ValidationError) as e:
        return None, str(e)
    except Exception as e:  # an engine bug must not turn a refusal into a pass
        return None, f"{type(e).__name__}: {e}"
    ders = [c.dump() for c in path]  # anchor first
    by_der = {t.public_bytes(_DER): t for t in (*trust.anchors, *inter, leaf)}
    chain = [by_der.get(d) or x509.load_der_x509_certificate(d) for d in reversed(ders)]
    try:
        unknown = _unknown_critical(chain)
    except PARSE_ERRORS as e:
        unknown = f"certificate extensions cannot be parsed: {e}"
    if unknown:
        return None, unknown
    if max_chain_depth is not None:
        # self-issued intermediates do not count (RFC 5280 6.1.4 (l))
        if sum(1 for c in chain[1:-1] if c.issuer != c.subject) > max_chain_depth:
            return None, "maximum chain depth exceeded"
    bc = _ext(leaf, x509.BasicConstraints)
    if bc is not None and bc.value.ca:
        # a CA certificate in leaf position: never a TLS server certificate (CABF 7.1.2.7.8);
        # elsewhere only a real CA certificate (keyCertSign), as RFC 5280 allows
        ku = _ext(leaf, x509.KeyUsage)
        if ku is None or not ku.value.key_cert_sign:
            return None, "a certificate asserting cA without keyCertSign is no end-entity certificate"
    if server_name is not None:
        try:
            _, ca = _policies()
            b = xv.PolicyBuilder().store(xv.Store([chain[-1]])).time(at).extension_policies(
                ca_policy=ca, ee_policy=_ee_extension_policy())
            b.build_client_verifier()  # policy sanity only
        except Exception as e:
            return None, str(e)
        if not _name_matches(chain[0], server_name):
            return None, f"certificate does not match {server_name}"
    return chain, None


def _name_matches(leaf: x509.Certificate, server_name: str) -> bool:
    san = _ext(leaf, x509.SubjectAlternativeName)
    if san is None:
        return False
    try:
        ip = ipaddress.ip_address(server_name)
        return ip in san.value.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    name = server_name.lower()
    for d in san.value.get_values_for_type(x509.DNSName):
        d = d.lower()
        if d == name:
            return True
        if d.startswith("*.") and "." in name and name.split(".", 1)[1] == d[2:]:
            return True
    return False


def wildcard_nc_problems(chain: Sequence[x509.Certificate]) -> list[str]:
    """A wildcard SAN must lie wholly inside the permitted DNS subtrees and must not cover an
    excluded one (the Rust verifier checks only the literal name; cf. CVE-2025-61727)."""
    san = _ext(chain[0], x509.SubjectAlternativeName)
    if san is None:
        return []
    wild = [d.lower()[2:] for d in san.value.get_values_for_type(x509.DNSName) if d.startswith("*.")]
    if not wild:
        return []
    out = []
    for ca in chain[1:]:
        nc = _ext(ca, x509.NameConstraints)
        if nc is None:
            continue
        permitted = [g.value.lower().lstrip(".") for g in nc.value.permitted_subtrees or () if isinstance(g, x509.DNSName)]
        excluded = [g.value.lower().lstrip(".") for g in nc.value.excluded_subtrees or () if isinstance(g, x509.DNSName)]
        for base in wild:
            if permitted and not any(base == p or base.endswith("." + p) for p in permitted):
                out.append(f"wildcard *.{base} is not wholly inside the permitted name constraints of "
                           f"{ca.subject.rfc4514_string()}")
            for e in excluded:
                if e == base or e.endswith("." + base) or base.endswith("." + e):
                    out.append(f"wildcard *.{base} may match the excluded name {e} of {ca.subject.rfc4514_string()}")
    return out


def _subject_for(server_name: str) -> xv.Subject:
    try:
        return xv.IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        return xv.DNSName(server_name)


def validate_path(
    leaf: x509.Certificate,
    *,
    trust: TrustStore,
    intermediates: Sequence[x509.Certificate],
    at: _dt.datetime,
    now: _dt.datetime,
    usage: Usage,
    revocation: RevocationPolicy,
    source: RevocationSource,
    server_name: str | None = None,
    max_chain_depth: int | None = None,
    time_is_proven: bool = True,
    claimed_time: _dt.datetime | None = None,
    initial_policies: frozenset[str] | None = None,
    require_explicit_policy: bool = False,
    embedded=None,
) -> tuple[ValidationReport, _dt.datetime | None]:
    """Validate; return the report and, when it passed, the time until which it may be reused."""
    messages: list[str] = []
    inter = prune_intermediates(leaf, intermediates, trust, at)
    builder = xv.PolicyBuilder().store(trust.store).time(at)
    if max_chain_depth is not None:
        builder = builder.max_chain_depth(max_chain_depth)

    def report(sub, path, evidence=(), msgs=None) -> ValidationReport:
        return ValidationReport(
            indication=indication_for(sub), sub_indication=sub, validation_time=at,
            path=tuple(cert_info(c) for c in path), signer=signer_identity(leaf),
            usage=usage.name, revocation=tuple(evidence), messages=tuple(msgs if msgs is not None else messages),
        )

    if trust.is_anchor(leaf) and not intermediates:
        chain = [leaf]
        if not (leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc):
            sub, msg, _ = _diagnose(leaf, [leaf], trust, at, time_is_proven, "trust anchor outside validity")
            return report(sub, [leaf], msgs=[msg]), None
    else:
        if leaf.issuer not in trust.subjects and not inter:
            return report(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, [leaf], msgs=[
                f"no trust anchor or supplied intermediate is named {leaf.issuer.rfc4514_string()!r} "
                "(the certificate's issuer)"]), None
        # Candidate paths (names + signatures) are found here; the Rust verifier validates
        # each in turn, given only that path's intermediates: this bounds its path-building
        # work, which is exponential on crafted sets of same-subject same-key certificates.
        cands = candidate_paths(leaf, inter, trust)
        if not cands:
            return report(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, [leaf], msgs=[
                "no certification path from the certificate to a trust anchor (no chain of issuer "
                "names and valid signatures)"]), None
        chain = None
        first_err = None
        for cand in cands:
            cand_inter = cand[1:-1]
            try:
                if server_name is not None:
                    _, ca = _policies(server=True)
                    chain = builder.extension_policies(
                        ca_policy=ca, ee_policy=xv.ExtensionPolicy.webpki_defaults_ee()
                    ).build_server_verifier(_subject_for(server_name)).verify(leaf, cand_inter)
                else:
                    ee, ca = _policies()
                    chain = builder.extension_policies(ca_policy=ca, ee_policy=ee).build_client_verifier().verify(
                        leaf, cand_inter).chain
                break
            except xv.VerificationError as e:
                err = str(e)
                if any(k in err for k in _FALLBACK_ERRORS):
                    chain, fb_err = _fallback_path(leaf, cand_inter, trust, at, max_chain_depth, server_name)
                    if chain is not None:
                        messages.append("path validated by the RFC 5280 fallback engine (pyhanko-certvalidator): "
                                        + err.split("(encountered")[0].strip())
                        break
                    if fb_err:
                        err = f"{err}; RFC 5280 fallback engine: {fb_err}"
                if first_err is None:
                    first_err = (err, cand)
            except ValueError as e:  # e.g. a leaf the verifier cannot parse
                return report(SubIndication.FORMAT_FAILURE, [leaf], msgs=[f"certificate cannot be processed: {e}"]), None
        if chain is None:
            err, cand = first_err
            sub, msg, path = _diagnose(leaf, cand, trust, at, time_is_proven, err)
            if sub is SubIndication.CHAIN_CONSTRAINTS_FAILURE:
                try:
                    pol = policy_problems(path, initial_policies, require_explicit_policy)
                except PARSE_ERRORS:  # extensions Python cannot parse
                    pol = []
                if pol:
                    return report(SubIndication.POLICY_PROCESSING_ERROR, path, msgs=pol), None
            return report(sub, path, msgs=[msg]), None

    try:
        problems = structural_problems(chain, trust) + wildcard_nc_problems(chain)
        if server_name is not None:
            problems += webpki_problems(chain)
        if problems:
            return report(SubIndication.CHAIN_CONSTRAINTS_FAILURE, chain, msgs=problems), None
        pol = policy_problems(chain, initial_policies, require_explicit_policy)
        if pol:
            return report(SubIndication.POLICY_PROCESSING_ERROR, chain, msgs=pol), None
        uprob = usage.problems(leaf)
    except PARSE_ERRORS as e:  # an extension Python's parser refuses
        return report(SubIndication.CHAIN_CONSTRAINTS_FAILURE, chain,
                      msgs=[f"a certificate extension of the path cannot be processed: {e}"]), None
    if usage.eku:
        for ca in chain[1:-1]:
            ceku = _ext(ca, x509.ExtendedKeyUsage)
            if ceku is not None and not (set(ceku.value) & usage.eku) and \
                    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in ceku.value:
                uprob.append(f"CA certificate {ca.subject.rfc4514_string()} restricts extended key usage "
                             "to other purposes")
    if uprob:
        return report(SubIndication.CHAIN_CONSTRAINTS_FAILURE, chain,
                      msgs=[f"certificate not allowed for {usage.name}: " + "; ".join(uprob)]), None

    # revocation
    evidence: list[RevocationEvidence] = []
    fresh_until = min(c.not_valid_after_utc for c in chain)
    good_before: _dt.datetime | None = None
    if revocation.mode != "off":
        last = len(chain) - 1 if revocation.check_ca else 1
        for i in range(min(last, len(chain) - 1)):
            cert, issuer = chain[i], chain[i + 1]
            try:
                st = source.check(cert, issuer, at, revocation, now, embedded)
            except PARSE_ERRORS as e:
                st = CertStatus("unknown", (RevocationEvidence(
                    certificate=cert.subject.rfc4514_string(), source="CRL/OCSP", origin="-",
                    status="invalid", message=f"revocation pointers cannot be parsed: {e}"),))
            evidence.extend(st.evidence)
            who = "certificate" if i == 0 else f"CA certificate {cert.subject.rfc4514_string()}"
            if st.status == "revoked":
                rt = st.revocation_time
                when = f" on {rt:%Y-%m-%dT%H:%M:%SZ}" if rt else ""
                if i > 0:
                    sub = SubIndication.REVOKED_CA_NO_POE
                elif claimed_time is not None and rt is not None and rt > claimed_time:
                    sub = SubIndication.REVOKED_NO_POE
                    messages.append("the claimed signing time is before the revocation, but nothing proves it")
                else:
                    sub = SubIndication.REVOKED
                messages.insert(0, f"{who} was revoked{when}")
                return report(sub, chain, evidence), None
            if st.status == "unknown":
                msg = f"no usable revocation data for the {who}"
                if revocation.mode == "hard-fail":
                    return report(SubIndication.TRY_LATER, chain, evidence, [msg + " (hard-fail policy)"]), None
                messages.append(msg + " (soft-fail: accepted)")
                fresh_until = min(fresh_until, now + _dt.timedelta(minutes=5))
            else:
                if st.fresh_until is not None:
                    fresh_until = min(fresh_until, st.fresh_until)
                if st.revocation_time is not None:
                    good_before = st.revocation_time if good_before is None else min(good_before, st.revocation_time)
                    if good_before is not None:
                        fresh_until = min(fresh_until, good_before)
    return report(None, chain, evidence), fresh_until
