"""RFC 5280 certificate path validation: the orchestration.

One authority decides every path: pyhanko-certvalidator (:mod:`unica.verify.authority`),
which implements the section 6 algorithm and section 6.3 revocation completely. A fast path
(:mod:`unica.verify.fastpath`: cryptography's Rust verifier and plain CRLs) may accept plain
paths sooner; it never refuses, so whatever it does not accept is decided by the authority.
unica then adds refusals only: the intended use (key usage / EKU), the RFC 5280 profile
rules a CA must follow when ``strict`` is set, TLS server rules when a server name is given,
and a chain-depth limit. Supplied intermediates are pruned to those that can lie on a path
(by normalised name, RFC 5280 7.1) before path building, which bounds the work an attacker
can cause.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import ipaddress
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import authority, fastpath
from ._sm2 import is_sm2_signed, sm2_signed_by
from .authority import DEFAULT_PATH_POLICY, PathPolicy
from .report import (
    PolicyQualifier,
    RevocationEvidence,
    SubIndication,
    ValidationReport,
    ValidPolicy,
    indication_for,
)
from .revocation import RevocationPolicy, RevocationSource
from .usage import Usage
from ._util import cert_info, public_key_name, signer_identity

#: what cryptography raises on extensions its Python layer refuses
PARSE_ERRORS = (ValueError, TypeError, KeyError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType)

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
        self.normalised_subjects = frozenset(normalised(a.subject) for a in self.anchors)
        self._der = frozenset(uniq)
        self._pyhanko = None

    def pyhanko_trust(self):
        """pyhanko-certvalidator's trust manager for these anchors, built once."""
        if self._pyhanko is None:
            from asn1crypto import x509 as ax
            from pyhanko_certvalidator.authority import CertTrustAnchor
            from pyhanko_certvalidator.context import SimpleTrustManager

            self.asn1_anchors = [ax.Certificate.load(a.public_bytes(_DER)) for a in self.anchors]
            self._pyhanko = SimpleTrustManager.build(trust_roots=[CertTrustAnchor(a) for a in self.asn1_anchors])
        return self._pyhanko

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
    """The Rust verifier's extension policy cannot name policyConstraints / inhibitAnyPolicy /
    policyMappings, so it refuses a path with those critical extensions; such paths are not
    plain anyway and go to the authority."""
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
    good = set(trust.normalised_subjects)
    kept: list[x509.Certificate] = []
    changed = True
    remaining = cands
    while changed and remaining:
        changed = False
        rest = []
        for c in remaining:
            if normalised(c.issuer) in good:
                kept.append(c)
                if normalised(c.subject) not in good:
                    good.add(normalised(c.subject))
                    changed = True
            else:
                rest.append(c)
        remaining = rest
        changed = changed or False
    if normalised(leaf.issuer) not in good:
        return []
    return kept[:MAX_INTERMEDIATES]


@functools.lru_cache(maxsize=8192)
def _normalised_der(der: bytes):
    from asn1crypto import x509 as ax

    try:
        return ax.Name.load(der).hashable
    except Exception:  # a name asn1crypto cannot prepare: compare it as bytes
        return der


def normalised(name: x509.Name):
    """A key under which names equal per RFC 5280 7.1 (case, white space, string type) meet."""
    return _normalised_der(name.public_bytes())


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
        if is_sm2_signed(cert.signature_algorithm_oid):
            return sm2_signed_by(issuer, cert.signature, cert.tbs_certificate_bytes)
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


def structural_problems(chain: Sequence[x509.Certificate], trust: TrustStore, strict: bool = False) -> list[str]:
    """RFC 5280 rules for how certificates are formed. By default only those a relying party
    needs to build and check a path unambiguously (key identifiers of CA certificates,
    positive serials). ``strict`` adds the section 4 rules that bind the CA issuing the
    certificate but that section 6 does not check: a critical policyConstraints (4.2.1.11)
    and basicConstraints (4.2.1.9) in CA certificates, and UTCTime for dates before 2050
    (4.1.2.5)."""
    out = []
    anchor = chain[-1]
    for i, c in enumerate(chain):
        is_anchor = i == len(chain) - 1
        name = c.subject.rfc4514_string() or "(empty subject)"
        if i > 0 and _ext(c, x509.SubjectKeyIdentifier) is None:
            out.append(f"{name}: CA certificate has no subject key identifier (RFC 5280 4.2.1.2)")
        if not is_anchor and i > 0:
            aki = _ext(c, x509.AuthorityKeyIdentifier)
            if aki is None or aki.value.key_identifier is None:
                out.append(f"{name}: certificate has no authority key identifier (RFC 5280 4.2.1.1)")
        if c.serial_number <= 0 and (not is_anchor or i == 0):
            out.append(f"{name}: serial number is not positive (RFC 5280 4.1.2.2)")
        if i == 0 and len(chain) > 1 and _ext(c, x509.NameConstraints) is not None:
            bc = _ext(c, x509.BasicConstraints)
            if bc is None or not bc.value.ca:
                out.append(f"{name}: name constraints in an end-entity certificate (RFC 5280 4.2.1.10)")
        if is_anchor and len(chain) > 1:
            for ext in c.extensions:
                if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension) and ext.oid != _POLICY_MAPPINGS:
                    out.append(f"{name}: trust anchor has an unrecognised critical extension {ext.oid.dotted_string}")
        if strict:
            out.extend(_profile_problems(c, name, is_ca=i > 0))
    out.extend(_rfc822_problems(chain))
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


_POLICY_MAPPINGS = x509.ObjectIdentifier("2.5.29.33")


def _rfc822_problems(chain) -> list[str]:
    """An rfc822Name constraint is a mailbox, a host or a domain, and a constrained rfc822Name
    a mailbox: at most one '@' in either (RFC 5280 4.2.1.10, 4.2.1.6). pyhanko-certvalidator
    splits at the last '@' and would accept ``a@b@example.com`` under ``example.com``."""
    out, constrained = [], False
    for c in chain[1:]:
        nc = _ext(c, x509.NameConstraints)
        if nc is None:
            continue
        for g in (*(nc.value.permitted_subtrees or ()), *(nc.value.excluded_subtrees or ())):
            if isinstance(g, x509.RFC822Name):
                constrained = True
                if g.value.count("@") > 1:
                    out.append(f"{c.subject.rfc4514_string()}: malformed rfc822Name constraint {g.value!r}")
    if constrained:
        san = _ext(chain[0], x509.SubjectAlternativeName)
        for e in san.value.get_values_for_type(x509.RFC822Name) if san is not None else ():
            if e.count("@") != 1:
                out.append(f"certificate: malformed rfc822Name {e!r} under rfc822Name constraints")
    return out


def _profile_problems(c: x509.Certificate, name: str, is_ca: bool) -> list[str]:
    out = []
    if c.issuer != c.subject:
        aki = _ext(c, x509.AuthorityKeyIdentifier)
        if aki is None or aki.value.key_identifier is None:
            out.append(f"{name}: certificate not self-issued has no authority key identifier (RFC 5280 4.2.1.1)")
    pc = _ext(c, x509.PolicyConstraints)
    if pc is not None and not pc.critical:
        out.append(f"{name}: policy constraints extension is not critical (RFC 5280 4.2.1.11)")
    bc = _ext(c, x509.BasicConstraints)
    if is_ca and bc is not None and bc.value.ca and not bc.critical:
        out.append(f"{name}: basic constraints extension of a CA certificate is not critical (RFC 5280 4.2.1.9)")
    from asn1crypto import x509 as ax

    try:
        validity = ax.Certificate.load(c.public_bytes(_DER))["tbs_certificate"]["validity"]
        for field in ("not_before", "not_after"):
            t = validity[field]
            if t.name == "general_time" and t.native.year < 2050:
                out.append(f"{name}: {field.replace('_', '')} before 2050 is encoded as GeneralizedTime "
                           "(RFC 5280 4.1.2.5)")
    except (ValueError, TypeError, KeyError):
        out.append(f"{name}: validity cannot be read")
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
        if public_key_name(cert) == "sm2":  # 256-bit SM2 (GM/T 0003): what RFC 5280's profile needs of it holds
            return []
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


#: Rust verifier refusals (TLS server profile) that are web-PKI policy where RFC 5280, as
#: decided by the authority, allows the path: self-issued certificates do not count towards
#: pathLenConstraint, a CA certificate may be the leaf, directoryName constraints exist
_RFC5280_DIVERGENCES = (
    "basicConstraints.cA must not be asserted in an EE certificate",
    "path length constraint violated",
    "unsupported name constraint",
    "invalid extension: 2.5.29.36:",  # policyConstraints
    "invalid extension: 2.5.29.54:",  # inhibitAnyPolicy
    "invalid extension: 2.5.29.33:",  # policyMappings
    "invalid extension: 2.5.29.30:",  # nameConstraints
    "unaccounted-for critical extensions",
    "signature does not match",  # the Rust builder's own candidate choice; signatures were checked
)


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
    policy: PathPolicy = DEFAULT_PATH_POLICY,
    embedded=None,
    fetchers=None,
    asn1=None,
) -> tuple[ValidationReport, _dt.datetime | None]:
    """Validate; return the report and, when it passed, the time until which it may be reused.

    ``asn1`` maps a cryptography certificate to its asn1crypto form (memoised by the
    Verifier); ``fetchers`` are pyhanko-certvalidator fetchers when fetching is allowed."""
    messages: list[str] = []
    engine = "pyhanko-certvalidator"
    valid_policies: tuple[ValidPolicy, ...] = ()

    def report(sub, path, evidence=(), msgs=None) -> ValidationReport:
        return ValidationReport(
            indication=indication_for(sub), sub_indication=sub, validation_time=at,
            path=tuple(cert_info(c) for c in path), signer=signer_identity(leaf),
            usage=usage.name, revocation=tuple(evidence), messages=tuple(msgs if msgs is not None else messages),
            valid_policies=valid_policies, revocation_policy=revocation.mode, engine=engine,
        )

    if asn1 is None:
        from asn1crypto import x509 as ax

        def asn1(c):
            return ax.Certificate.load(c.public_bytes(_DER))

    inter = prune_intermediates(leaf, intermediates, trust, at)
    evidence: list[RevocationEvidence] = []
    fresh_until = None
    if trust.is_anchor(leaf) and not intermediates:
        engine = "trust anchor"
        chain = [leaf]
        if not (leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc):
            sub = SubIndication.NOT_YET_VALID if at < leaf.not_valid_before_utc else (
                SubIndication.EXPIRED if time_is_proven else SubIndication.OUT_OF_BOUNDS_NO_POE)
            return report(sub, [leaf], msgs=[f"trust anchor is not valid at {at:%Y-%m-%dT%H:%M:%SZ}"]), None
    else:
        if normalised(leaf.issuer) not in trust.normalised_subjects and not inter and fetchers is None:
            return report(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, [leaf], msgs=[
                f"no trust anchor or supplied intermediate is named {leaf.issuer.rfc4514_string()!r} "
                "(the certificate's issuer)"]), None
        fast = _fast_path(leaf, inter, trust, at, revocation, source, embedded, policy, server_name,
                          fetchers is not None)
        if fast is not None:
            engine = "fast path"
            chain, evidence, fresh_until, valid_policies = fast
        else:
            try:
                crls, ocsps = source.asn1_revinfo(embedded)
                out = authority.validate(
                    asn1(leaf), anchors=(), intermediates=[asn1(c) for c in inter], at=at, crls=crls, ocsps=ocsps,
                    mode=revocation.mode, check_ca=revocation.check_ca, policy=policy, fetchers=fetchers,
                    trust_manager=trust.pyhanko_trust())
            except PARSE_ERRORS as e:  # a certificate asn1crypto cannot even start to read
                return report(SubIndication.FORMAT_FAILURE, [leaf], msgs=[f"certificate cannot be processed: {e}"]), None
            chain = _certs_for(out.path_der, [leaf, *inter, *trust.anchors])
            fetched = _fetch_evidence(fetchers, chain, accepted=out.sub is None)
            if out.sub is not None:
                rep = _refusal(out, report, chain, at, time_is_proven, claimed_time)
                return dataclasses.replace(rep, revocation=(*fetched, *rep.revocation)), None
            valid_policies = _valid_policies(out.policies)
            if revocation.mode != "off":
                scope = frozenset()
                if revocation.mode == "hard-fail":
                    serials = source.ocsp_serials(embedded)
                    fetched_for = {e.certificate for e in fetched}
                    last = len(chain) - 1 if revocation.check_ca else 1
                    scope = frozenset(i for i in range(min(last, len(chain) - 1))
                                      if chain[i].serial_number not in serials
                                      and chain[i].subject.rfc4514_string() not in fetched_for)
                hit = source.rfc_refusal(chain, at, embedded, require_scope=scope, others=inter)
                if hit is not None:
                    i, kind, rt, reason = hit
                    who = "the certificate" if i == 0 else f"CA certificate {chain[i].subject.rfc4514_string()}"
                    if kind == "no-scope":
                        out = dataclasses.replace(out, sub=SubIndication.TRY_LATER, message=(
                            f"the current CRLs at hand that are in scope for {who} do not cover every revocation "
                            "reason (RFC 5280 6.3.3 (b), (d))"))
                    else:
                        out = dataclasses.replace(
                            out, sub=SubIndication.REVOKED if i == 0 else SubIndication.REVOKED_CA_NO_POE,
                            message=f"a {'delta ' if kind == 'revoked by delta' else ''}CRL of its issuer lists {who} "
                                    f"as revoked ({reason or 'no reason given'})",
                            revocation_time=rt, revocation_reason=reason)
                    return _refusal(out, report, chain, at, time_is_proven, claimed_time), None
            evidence, fresh_until = source.evidence_for(chain, at, now, embedded, revocation)
            evidence = [*fetched, *evidence]
            if out.soft_fail_used:
                messages.append("soft-fail revocation policy: a certificate without usable revocation data "
                                "was accepted")
                fresh_until = min(fresh_until or now + _dt.timedelta(minutes=5), now + _dt.timedelta(minutes=5))

    # refusals unica adds to an accepted path
    try:
        problems = structural_problems(chain, trust, policy.strict) + wildcard_nc_problems(chain)
        if server_name is not None:
            sp = _server_problems(chain, trust, at, server_name, engine)
            if sp and engine != "fast path":
                # the TLS rules may want another of the paths: the one the Rust verifier builds,
                # if the authority accepts it as well
                alt = _server_alternative(leaf, inter, trust, at, server_name, revocation, source, embedded,
                                          policy, fetchers, asn1)
                if alt is not None:
                    chain, sp = alt, _server_problems(alt, trust, at, server_name, engine)
            problems += sp
        problems += _leaf_and_depth_problems(chain, max_chain_depth)
        uprob = usage.problems(leaf)
    except PARSE_ERRORS as e:  # an extension Python's parser refuses
        return report(SubIndication.CHAIN_CONSTRAINTS_FAILURE, chain,
                      msgs=[f"a certificate extension of the path cannot be processed: {e}"]), None
    if problems:
        return report(SubIndication.CHAIN_CONSTRAINTS_FAILURE, chain, msgs=problems), None
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
    valid = min(c.not_valid_after_utc for c in chain)
    fresh_until = valid if fresh_until is None else min(valid, fresh_until)
    return report(None, chain, evidence), fresh_until


def _fast_path(leaf, inter, trust, at, revocation, source, embedded, policy, server_name, online):
    """(chain, evidence, fresh_until, valid policies) when the fast path accepts; else None
    (also for anything its parsers refuse: the authority then reads it)."""
    try:
        return _fast_path_unguarded(leaf, inter, trust, at, revocation, source, embedded, policy, server_name,
                                    online)
    except (*PARSE_ERRORS, UnsupportedAlgorithm, KeyError):
        return None


def _fast_path_unguarded(leaf, inter, trust, at, revocation, source, embedded, policy, server_name, online):
    if not policy.plain:
        return None
    cands = candidate_paths(leaf, inter, trust, max_paths=1)
    if not cands or not fastpath.plain_chain(cands[0]):
        return None
    builder = xv.PolicyBuilder().store(trust.store).time(at)
    if server_name is not None:
        _, ca = _policies(server=True)
        chain = fastpath.rust_chain(builder, leaf, cands[0][1:-1], xv.ExtensionPolicy.webpki_defaults_ee(), ca,
                                    _subject_for(server_name))
    else:
        ee, ca = _policies()
        chain = fastpath.rust_chain(builder, leaf, cands[0][1:-1], ee, ca)
    if chain is None:
        return None
    evidence, fresh_until = [], None
    if revocation.mode != "off":
        last = len(chain) - 1 if revocation.check_ca else 1
        crls = source.crl_candidates(embedded)
        serials = source.ocsp_serials(embedded)
        for i in range(min(last, len(chain) - 1)):
            st = fastpath.plain_crl_status(chain[i], chain[i + 1], at, crls, source, serials, online)
            if st is None:
                return None
            evidence.append(st[2])
            fresh_until = st[1] if fresh_until is None else min(fresh_until, st[1])
    return chain, evidence, fresh_until, _plain_policies(chain)


def _plain_policies(chain) -> tuple[ValidPolicy, ...]:
    """The valid policy set of a plain path (no mappings, no policy constraints, no
    relying-party inputs), by RFC 5280 6.1.3 (d)-(e) with expected sets of one policy each;
    qualifiers from the end-entity certificate."""
    ANY = authority.ANY_POLICY
    valid = {ANY}
    quals: dict = {}
    for i in range(len(chain) - 2, -1, -1):  # from below the anchor down to the leaf
        cp = _ext(chain[i], x509.CertificatePolicies)
        if cp is None:
            return ()
        pols = {p.policy_identifier.dotted_string for p in cp.value}
        new = {p for p in pols - {ANY} if p in valid or ANY in valid}
        if ANY in pols:
            new |= valid - pols
            if ANY in valid:
                new.add(ANY)
        valid = new
        if i == 0:
            quals = {p.policy_identifier.dotted_string: p.policy_qualifiers or () for p in cp.value}
    return tuple(ValidPolicy(p, p, tuple(_qualifier(q) for q in quals.get(p, quals.get(ANY, ()))))
                 for p in sorted(valid))


def _qualifier(q) -> PolicyQualifier:
    if isinstance(q, str):
        return PolicyQualifier("cps", cps_uri=q)
    ref = q.notice_reference
    return PolicyQualifier("user-notice", notice_text=q.explicit_text,
                           organization=ref.organization if ref else None,
                           notice_numbers=tuple(ref.notice_numbers) if ref else ())


def _valid_policies(policies) -> tuple[ValidPolicy, ...]:
    out = []
    for user, issuer, quals in policies:
        qs = []
        for qid, value in quals:
            if qid == "certification_practice_statement":
                qs.append(PolicyQualifier("cps", cps_uri=str(value)))
            elif qid == "user_notice":
                ref = (value or {}).get("notice_ref") or {}
                qs.append(PolicyQualifier("user-notice", notice_text=(value or {}).get("explicit_text"),
                                          organization=ref.get("organization"),
                                          notice_numbers=tuple(ref.get("notice_numbers") or ())))
            else:
                qs.append(PolicyQualifier(str(qid)))
        out.append(ValidPolicy(user, issuer, tuple(qs)))
    return tuple(out)


def _certs_for(ders, known: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    by_der = {c.public_bytes(_DER): c for c in known}
    out = []
    for d in ders:
        c = by_der.get(d)
        if c is None:
            try:
                c = x509.load_der_x509_certificate(d)
            except ValueError:
                continue
        out.append(c)
    return out


def _refusal(out: "authority.Outcome", report, chain, at, time_is_proven, claimed_time) -> ValidationReport:
    sub = out.sub
    evidence = []
    msgs = [out.message] if out.message else []
    if sub is SubIndication.OUT_OF_BOUNDS_NO_POE and chain:
        # the authority checks from the anchor down; the signer's own validity says more
        if at < chain[0].not_valid_before_utc:
            sub = SubIndication.NOT_YET_VALID
        elif at > chain[0].not_valid_after_utc:
            sub = SubIndication.EXPIRED
    if sub is SubIndication.EXPIRED and not time_is_proven:
        sub = SubIndication.OUT_OF_BOUNDS_NO_POE
    if sub is SubIndication.REVOKED:
        rt = out.revocation_time
        if not time_is_proven and claimed_time is not None and rt is not None and rt > claimed_time:
            sub = SubIndication.REVOKED_NO_POE
            msgs.append("the claimed signing time is before the revocation, but nothing proves it")
    if sub in (SubIndication.REVOKED, SubIndication.REVOKED_NO_POE, SubIndication.REVOKED_CA_NO_POE):
        who = chain[0] if sub is not SubIndication.REVOKED_CA_NO_POE or len(chain) < 2 else None
        evidence.append(RevocationEvidence(
            certificate=who.subject.rfc4514_string() if who is not None else "a CA certificate of the path",
            source="OCSP" if (out.message or "").startswith("OCSP") else
            "delta-CRL" if "delta CRL" in (out.message or "") else "CRL", origin="-", status="revoked",
            revocation_time=out.revocation_time, revocation_reason=out.revocation_reason))
    return report(sub, chain or [], evidence, msgs)


def _fetch_evidence(fetchers, chain, accepted: bool) -> list[RevocationEvidence]:
    """What was fetched (or failed to be) for this validation, from the fetchers' log, each
    attributed to the certificate of the path that names the URL."""
    if fetchers is None:
        return []
    from .fetch import fetch_log

    owners: dict[str, str] = {}
    for c in chain:
        try:
            for cls in (x509.CRLDistributionPoints, x509.FreshestCRL):
                for dp in _ext(c, cls).value if _ext(c, cls) is not None else ():
                    for gn in dp.full_name or ():
                        if isinstance(gn, x509.UniformResourceIdentifier):
                            owners.setdefault(gn.value, c.subject.rfc4514_string())
            aia = _ext(c, x509.AuthorityInformationAccess)
            for d in aia.value if aia is not None else ():
                if isinstance(d.access_location, x509.UniformResourceIdentifier):
                    owners.setdefault(d.access_location.value, c.subject.rfc4514_string())
        except PARSE_ERRORS:
            continue
    out = []
    for r in fetch_log(fetchers).records:
        if r.kind not in ("crl", "ocsp"):
            continue
        ok = r.status in ("fetched", "cached")
        out.append(RevocationEvidence(
            certificate=owners.get(r.url, "-"), source="CRL" if r.kind == "crl" else "OCSP",
            origin=(f"fetched: {r.url}" if r.status == "fetched" else f"cache: {r.url}") if ok else f"fetch: {r.url}",
            status=("good" if accepted else "fetched") if ok else "unavailable", message=r.message or None))
    return out


def _server_alternative(leaf, inter, trust, at, server_name, revocation, source, embedded, policy, fetchers, asn1):
    _, ca = _policies(server=True)
    builder = xv.PolicyBuilder().store(trust.store).time(at)
    alt = fastpath.rust_chain(builder, leaf, list(inter), xv.ExtensionPolicy.webpki_defaults_ee(), ca,
                              _subject_for(server_name))
    if alt is None:
        return None
    crls, ocsps = source.asn1_revinfo(embedded)
    out = authority.validate(asn1(leaf), anchors=(), intermediates=[asn1(c) for c in alt[1:-1]], at=at, crls=crls,
                             ocsps=ocsps, mode=revocation.mode, check_ca=revocation.check_ca, policy=policy,
                             fetchers=fetchers, trust_manager=trust.pyhanko_trust())
    if out.sub is not None:
        return None
    return _certs_for(out.path_der, [leaf, *alt])


def _server_problems(chain, trust, at, server_name, engine) -> list[str]:
    """TLS server rules on a path the authority accepted: the name, CA/B Forum rules, and the
    Rust verifier's web-PKI checks except where they differ from RFC 5280."""
    out = webpki_problems(chain)
    if not _name_matches(chain[0], server_name):
        out.append(f"certificate does not match {server_name}")
    if engine != "fast path" and len(chain) > 1:
        _, ca = _policies(server=True)
        try:
            xv.PolicyBuilder().store(xv.Store([chain[-1]])).time(at).extension_policies(
                ca_policy=ca, ee_policy=xv.ExtensionPolicy.webpki_defaults_ee()
            ).build_server_verifier(_subject_for(server_name)).verify(chain[0], chain[1:-1])
        except xv.VerificationError as e:
            err = str(e)
            if not any(k in err for k in _RFC5280_DIVERGENCES):
                out.append(f"TLS server profile: {err.split('(encountered')[0].strip()}")
        except (ValueError, TypeError) as e:
            out.append(f"TLS server profile: {e}")
    return out


#: intermediates allowed between the leaf and the anchor unless the caller says otherwise (a
#: resource bound, as in cryptography's verifier and most TLS stacks)
DEFAULT_MAX_CHAIN_DEPTH = 8


def _leaf_and_depth_problems(chain, max_chain_depth) -> list[str]:
    out = []
    limit = DEFAULT_MAX_CHAIN_DEPTH if max_chain_depth is None else max_chain_depth
    # self-issued intermediates do not count (RFC 5280 6.1.4 (l))
    if sum(1 for c in chain[1:-1] if c.issuer != c.subject) > limit:
        out.append(f"the path has more than {limit} intermediate CA certificates (maximum chain depth)")
    if len(chain) > 1:
        bc = _ext(chain[0], x509.BasicConstraints)
        if bc is not None and bc.value.ca:
            ku = _ext(chain[0], x509.KeyUsage)
            if ku is None or not ku.value.key_cert_sign:
                out.append("a certificate asserting cA without keyCertSign is no end-entity certificate")
    return out
