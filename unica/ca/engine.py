"""The pure issuance engine: request + profile + issuer -> linted, signable contents.

Two steps, as in Boulder's ``issuance`` package:

* :func:`prepare` checks the request against the profile, decides every extension, encodes
  the exact TBSCertificate (from a per-(issuer, profile) template, :mod:`unica.ca.tbs`),
  lints the certificate it makes with pkilint and returns a :class:`Prepared`.
* :func:`sign_prepared` signs exactly that TBSCertificate once with the CA's real key and
  assembles the certificate at the DER level (no second build, so what was linted and
  recorded is what is signed), then checks the signature with the CA's public key.

Nothing here touches the database; :mod:`unica.ca.authority` records the intent between
the two steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID, ObjectIdentifier

from unica import der
from unica.ca.lint import require_clean
from unica.ca.names import apply_subject_rules
from unica.ca.tbs import Template, make_template
from unica.ca.request import CSRRequest
from unica.errors import CAUnusable, PolicyViolation, UnsupportedKeyType
from unica.hsm import signature_params
from unica.hsm.keytypes import (KeyType, default_hash_for, is_sm2, key_identifier, key_type_of, spki_der,
                                 spki_sha256)
from unica.policies.model import KEY_USAGES, NameConstraintsSpec, Profile

#: certificates are backdated this much, for relying parties with slow clocks
BACKDATE = dt.timedelta(minutes=1)
_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
#: two or more labels, the first may be "*"
_DNS_NAME = re.compile(rf"^(?:\*\.)?(?:{_DNS_LABEL}\.)+{_DNS_LABEL}\Z")


@dataclass(frozen=True)
class Issuer:
    """What the engine knows about the issuing CA (never its key)."""

    name: str
    subject: x509.Name
    public_key: object
    ski: bytes
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    crl_url: str | None = None
    crl_shards: int = 1
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    path_length: int | None = None  # the CA's own pathLenConstraint (None: unlimited)
    is_root: bool = False
    name_constraints: x509.NameConstraints | None = None  # the CA certificate's own, if any

    @property
    def key_type(self) -> str:
        return key_type_of(self.public_key)


@dataclass(frozen=True)
class Prepared:
    """A certificate ready to be signed: the exact TBSCertificate and what it says."""

    issuer: str
    profile: str
    serial: int
    tbs_der: bytes
    signature_algorithm_der: bytes
    hash_name: str | None
    subject: x509.Name
    subject_der: bytes
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    spki_sha256: str
    linted: bool
    ignored_extensions: tuple[str, ...] = ()


def new_serial() -> int:
    """A positive 128-bit serial from ``secrets`` (never zero)."""
    while True:
        n = secrets.randbits(128)
        if n:
            return n


def throwaway_key(key_type: str):
    """A process-wide throwaway key for signing the lint copy of a certificate a ``key_type``
    CA will sign. The TBSCertificate names only the signature algorithm, which for RSA does
    not depend on the modulus size, so every RSA CA shares one RSA-2048 throwaway key (a
    4096-bit one would make each lint copy ten times dearer)."""
    return _throwaway("rsa-2048" if key_type.startswith("rsa-") else key_type)


@functools.lru_cache(maxsize=None)
def _throwaway(key_type: str):
    from unica.hsm.software import new_private_key

    return new_private_key(KeyType.parse(key_type))


# --- checking the request ----------------------------------------------------------


def check_key(profile: Profile, key_type: str, where: str) -> None:
    if key_type not in profile.key_types:
        raise PolicyViolation(f"{where}: key type {key_type} is not allowed by profile {profile.name!r} "
                              f"(allowed: {', '.join(profile.key_types)})")


def a_label_form(name: str, where: str) -> str:
    """``例子.中国`` -> ``xn--fsqu00a.xn--fiqs8s``: a dNSName holds A-labels only (RFC 5280 7.2,
    IDNA2008 with the UTS #46 mapping, via the ``idna`` package); a leading ``*.`` is kept."""
    star, rest = ("*.", name[2:]) if name.startswith("*.") else ("", name)
    try:
        import idna
    except ImportError:  # refuse, naming the form to use (IDNA 2003 from the standard library)
        try:
            hint = star + rest.encode("idna").decode("ascii")
        except UnicodeError:
            hint = None
        raise PolicyViolation(f"{where}: {name!r} is not an ASCII DNS name; request its IDNA A-label form"
                              + (f" {hint!r}" if hint else "")) from None
    try:
        return star + idna.encode(rest, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise PolicyViolation(f"{where}: {name!r} is not a valid internationalised domain name "
                              f"({e})") from None


def _cn_like_san(subject: x509.Name, sans: list, where: str) -> x509.Name:
    """A commonName that repeats a U-label DNS name of the request is written as the A-label the
    dNSName got, so that the two stay one name (CA/B Forum BR 7.1.4.3: the CN is a copy of a SAN)."""
    from unica.policies.dn import attribute

    dns = {gn.value for gn in sans if isinstance(gn, x509.DNSName)}
    cn = [a for a in subject if a.oid == NameOID.COMMON_NAME]
    if len(cn) != 1 or cn[0].value.isascii() or not dns:
        return subject
    try:
        a_label = a_label_form(cn[0].value, where)
    except PolicyViolation:
        return subject
    if a_label not in dns:
        return subject
    return x509.Name([x509.RelativeDistinguishedName(
        [attribute(a.oid, a_label) if a.oid == NameOID.COMMON_NAME else a for a in rdn]) for rdn in subject.rdns])


def _check_dns(name: str, where: str) -> str:
    n = name.lower() if name.isascii() else a_label_form(name, where)
    if len(n) > 253 or not _DNS_NAME.match(n):
        raise PolicyViolation(f"{where}: {name!r} is not a valid DNS name")
    return n


def _check_email(addr: str, where: str) -> str:
    local, at, domain = addr.rpartition("@")
    if not at or not local or not addr.isascii() or any(c.isspace() for c in addr):
        raise PolicyViolation(f"{where}: {addr!r} is not a valid e-mail address")
    _check_dns(domain, where)
    return addr


def apply_san_rules(profile: Profile, requested: tuple, where: str) -> list[x509.GeneralName]:
    """The SANs the CA will write: the requested ones the profile honours and allows."""
    if "subjectAltName" not in profile.honour_extensions:
        requested = ()
    out: list[x509.GeneralName] = []
    seen = set()
    for gn in requested:
        if isinstance(gn, x509.DNSName):
            kind, val = "dns", x509.DNSName(_check_dns(gn.value, where))
        elif isinstance(gn, x509.IPAddress):
            if isinstance(gn.value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                raise PolicyViolation(f"{where}: an IP network is not a subject alternative name")
            kind, val = "ip", gn
        elif isinstance(gn, x509.RFC822Name):
            kind, val = "email", x509.RFC822Name(_check_email(gn.value, where))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            if not re.match(r"^[a-z][a-z0-9+.-]*:\S+$", gn.value, re.I):
                raise PolicyViolation(f"{where}: {gn.value!r} is not a URI")
            kind, val = "uri", gn
        else:
            raise PolicyViolation(f"{where}: subject alternative name of type {type(gn).__name__} is not supported")
        if kind not in profile.san.allowed:
            raise PolicyViolation(f"{where}: subject alternative name type {kind} ({gn.value}) is not allowed by "
                                  f"profile {profile.name!r} (allowed: {', '.join(profile.san.allowed) or 'none'})")
        if val in seen:
            continue
        seen.add(val)
        out.append(val)
    if len(out) > profile.san.max:
        raise PolicyViolation(f"{where}: {len(out)} subject alternative names; profile {profile.name!r} allows "
                              f"at most {profile.san.max}")
    if profile.san.required and not out:
        raise PolicyViolation(f"{where}: profile {profile.name!r} requires a subject alternative name "
                              f"({', '.join(profile.san.allowed)}) and the request has none")
    return out


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _email_within(addr: str, base: str) -> bool:
    if "@" in base:
        return addr.lower() == base.lower()
    host = addr.rpartition("@")[2].lower()
    return host.endswith(base.lower()) if base.startswith(".") else host == base.lower()


def _within(gn: x509.GeneralName, tree: x509.GeneralName) -> bool | None:
    """Whether ``gn`` is inside the subtree ``tree`` (None: the subtree is of another type)."""
    if isinstance(gn, x509.DNSName) and isinstance(tree, x509.DNSName):
        return _dns_within(gn.value, tree.value)
    if isinstance(gn, x509.RFC822Name) and isinstance(tree, x509.RFC822Name):
        return _email_within(gn.value, tree.value)
    if isinstance(gn, x509.IPAddress) and isinstance(tree, x509.IPAddress):
        return gn.value.version == tree.value.version and gn.value in tree.value
    return None


def check_name_constraints(issuer: Issuer, sans: list, where: str) -> None:
    """Refuse SANs the issuing CA's own name constraints exclude or do not permit."""
    nc = issuer.name_constraints
    for gn in sans:
        for tree in nc.excluded_subtrees or ():
            if _within(gn, tree):
                raise PolicyViolation(f"{where}: {san_text(gn)} is excluded by CA {issuer.name!r}'s name constraints")
        permitted = [t for t in nc.permitted_subtrees or () if _within(gn, t) is not None]
        if permitted and not any(_within(gn, t) for t in permitted):
            raise PolicyViolation(f"{where}: {san_text(gn)} is outside CA {issuer.name!r}'s permitted names")


def san_text(gn: x509.GeneralName) -> str:
    prefix = {x509.DNSName: "dns", x509.IPAddress: "ip", x509.RFC822Name: "email",
              x509.UniformResourceIdentifier: "uri"}[type(gn)]
    return f"{prefix}:{gn.value}"


# --- extensions the CA decides ------------------------------------------------------


def _name_constraints(nc: NameConstraintsSpec) -> x509.NameConstraints:
    def subtrees(dns, email, ip):
        out = [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in email]
        out += [x509.IPAddress(ipaddress.ip_network(i)) for i in ip]
        return out or None

    return x509.NameConstraints(
        permitted_subtrees=subtrees(nc.permitted_dns, nc.permitted_email, nc.permitted_ip),
        excluded_subtrees=subtrees(nc.excluded_dns, nc.excluded_email, nc.excluded_ip))


def crl_url_for(issuer: Issuer, serial: int) -> str | None:
    if not issuer.crl_url:
        return None
    if issuer.crl_shards > 1:
        from unica.ca.crl import ShardScheme

        return ShardScheme(issuer.crl_shards, issuer.crl_url).url_for_serial(serial)
    return issuer.crl_url


def extensions_for(profile: Profile, issuer: Issuer, public_key, subject: x509.Name,
                   sans: list[x509.GeneralName], serial: int) -> list[tuple[x509.ExtensionType, bool]]:
    """Every extension of the certificate, in order, as ``(value, critical)``."""
    exts: list[tuple[x509.ExtensionType, bool]] = []
    exts.append((x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length if profile.is_ca else None),
                 True))
    ku = {arg: False for arg in KEY_USAGES.values()}
    for u in profile.key_usage:
        ku[KEY_USAGES[u]] = True
    exts.append((x509.KeyUsage(**ku), profile.key_usage_critical))
    if profile.extended_key_usage:
        exts.append((x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in profile.extended_key_usage]),
                     profile.extended_key_usage_critical))
    exts.append((x509.SubjectKeyIdentifier(key_identifier(public_key)), False))
    exts.append((x509.AuthorityKeyIdentifier(issuer.ski, None, None), False))
    if sans:
        exts.append((x509.SubjectAlternativeName(sans), len(subject) == 0))
    if profile.policies:
        exts.append((x509.CertificatePolicies([
            x509.PolicyInformation(ObjectIdentifier(p.oid), (
                ([p.cps_uri] if p.cps_uri else []) +
                ([x509.UserNotice(None, p.user_notice)] if p.user_notice else [])) or None)
            for p in profile.policies]), False))
    if profile.name_constraints is not None:
        exts.append((_name_constraints(profile.name_constraints), True))
    if not issuer.is_root or profile.kind != "root-ca":
        url = crl_url_for(issuer, serial) if profile.crl_distribution_points else None
        if url:
            exts.append((x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(url)], None, None, None)]), False))
        aia = []
        if profile.ocsp and issuer.ocsp_url:
            aia.append(x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                              x509.UniformResourceIdentifier(issuer.ocsp_url)))
        if profile.ca_issuers and issuer.ca_issuers_url:
            aia.append(x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                                              x509.UniformResourceIdentifier(issuer.ca_issuers_url)))
        if aia:
            exts.append((x509.AuthorityInformationAccess(aia), False))
    if profile.ocsp_nocheck:
        exts.append((x509.OCSPNoCheck(), False))
    if profile.subject.gmt0015:  # per-certificate values: slots of the TBS template (unica.ca.gmt0015)
        from unica.ca import gmt0015

        exts += gmt0015.extensions(profile.subject.gmt0015, subject)
    return exts


# --- prepare and sign ---------------------------------------------------------------


def check_issuer(issuer: Issuer, profile: Profile, now: dt.datetime) -> None:
    if issuer.is_root and profile.kind == "root-ca":
        return
    if issuer.not_after is not None and now >= issuer.not_after:
        raise CAUnusable(f"CA {issuer.name!r} expired at {issuer.not_after.isoformat()}; it cannot issue")
    if issuer.not_before is not None and now < issuer.not_before:
        raise CAUnusable(f"CA {issuer.name!r} is not valid before {issuer.not_before.isoformat()}")
    if profile.kind == "root-ca":
        raise PolicyViolation(f"profile {profile.name!r} is for self-signed roots; CA {issuer.name!r} cannot use it")
    if profile.kind == "sub-ca" and issuer.path_length is not None:
        if issuer.path_length == 0:
            raise PolicyViolation(f"CA {issuer.name!r} has path length 0: it cannot issue CA certificates")
        if profile.path_length is None or profile.path_length >= issuer.path_length:
            raise PolicyViolation(f"profile {profile.name!r} path length {profile.path_length} does not fit under "
                                  f"CA {issuer.name!r} (path length {issuer.path_length})")


def prepare(issuer: Issuer, profile: Profile, request: CSRRequest, *, now: dt.datetime | None = None,
            serial: int | None = None, lint: bool = True, where: str = "request") -> Prepared:
    """Check ``request`` under ``profile``, decide the contents (the exact TBSCertificate) and,
    with ``lint``, lint the certificate it makes (with a placeholder signature)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    self_signed = issuer.is_root and profile.kind == "root-ca"
    check_issuer(issuer, profile, now)
    check_key(profile, request.key_type, where)
    spki = request.spki_der or spki_der(request.public_key)
    spki_hex = hashlib.sha256(spki).hexdigest()
    if not self_signed and spki_hex == _issuer_spki_sha256(issuer):
        raise PolicyViolation(f"{where}: the request's public key is the key of CA {issuer.name!r}")
    subject = apply_subject_rules(profile, request.subject, where)
    sans = apply_san_rules(profile, request.requested_sans, where)
    subject = _cn_like_san(subject, sans, where)
    if issuer.name_constraints is not None:
        check_name_constraints(issuer, sans, where)
    serial = serial or new_serial()
    not_before = now - BACKDATE
    not_after = not_before + profile.validity
    if self_signed:
        issuer = dataclasses.replace(issuer, subject=subject, ski=key_identifier(request.public_key))
    elif issuer.not_after is not None and not_after > issuer.not_after:
        not_after = issuer.not_after  # never outlive the issuer
    tmpl = template_for(issuer, profile, cache=not self_signed)
    subject_der = subject.public_bytes()
    gm_requested = _gmt0015_requested(profile, request, where)
    tbs_der = tmpl.build(serial, not_before, not_after, subject_der, spki, sans, len(subject) == 0,
                         tuple(d for _, d in gm_requested))
    sigalg_der = tmpl.sigalg_der
    if lint:
        copy_der = der.seq(tbs_der, sigalg_der, der.bit_string(_placeholder_signature(issuer.key_type)))
        require_clean(copy_der, f"the certificate for {where} under profile {profile.name!r}")
    honoured = {"2.5.29.17"} if "subjectAltName" in profile.honour_extensions else set()
    honoured |= {oid for oid, _ in gm_requested}
    return Prepared(
        issuer=issuer.name, profile=profile.name, serial=serial, tbs_der=tbs_der,
        signature_algorithm_der=sigalg_der, hash_name=tmpl.hash_name,
        subject=subject, subject_der=subject_der, sans=tuple(san_text(g) for g in sans), not_before=not_before, not_after=not_after,
        is_ca=profile.is_ca, spki_sha256=spki_hex, linted=lint,
        ignored_extensions=tuple(o for o in request.requested_extensions if o not in honoured))


def _gmt0015_requested(profile: Profile, request: CSRRequest, where: str) -> list[tuple[str, bytes]]:
    """(OID, Extension DER) of the GM/T 0015-2012 items the request supplies and the profile
    honours (TaxationNumber, ICRegistrationNumber), each value checked; never made up."""
    names = [h for h in profile.honour_extensions if h != "subjectAltName"]
    if not names or request.csr is None:
        return []
    from unica.ca import gmt0015

    out = []
    for name in names:
        value = gmt0015.requested_value(request.csr, name, where)
        if value is not None:
            oid = gmt0015.REQUESTABLE[name]
            out.append((oid, gmt0015.extension_der(oid, value)))
    return out


# --- templates (see unica.ca.tbs) -----------------------------------------------------

_TEMPLATES: dict[tuple[int, int], tuple[Issuer, Profile, Template]] = {}
_ISSUER_SPKI: dict[int, tuple[Issuer, str]] = {}


def template_for(issuer: Issuer, profile: Profile, *, cache: bool = True) -> Template:
    """The TBSCertificate template of ``issuer`` under ``profile`` (kept per object pair)."""
    key = (id(issuer), id(profile))
    hit = _TEMPLATES.get(key) if cache else None
    if hit is not None and hit[0] is issuer and hit[1] is profile:
        return hit[2]
    sample_sans = [x509.DNSName("sample.invalid")]
    exts = extensions_for(profile, issuer, issuer.public_key, issuer.subject, sample_sans, 0)
    hash_alg = default_hash_for(issuer.public_key)
    sigalg = der.SignatureScheme(throwaway_key(issuer.key_type), hash_alg).algorithm_identifier
    cdp = functools.partial(crl_url_for, issuer) if issuer.crl_shards > 1 else None
    tmpl = make_template(exts, issuer.subject.public_bytes(), sigalg, cdp, hash_alg.name if hash_alg else None)
    if cache:
        if len(_TEMPLATES) >= 256:
            _TEMPLATES.clear()
        _TEMPLATES[key] = (issuer, profile, tmpl)
    return tmpl


def _issuer_spki_sha256(issuer: Issuer) -> str:
    hit = _ISSUER_SPKI.get(id(issuer))
    if hit is not None and hit[0] is issuer:
        return hit[1]
    digest = spki_sha256(issuer.public_key)
    if len(_ISSUER_SPKI) >= 256:
        _ISSUER_SPKI.clear()
    _ISSUER_SPKI[id(issuer)] = (issuer, digest)
    return digest


@functools.lru_cache(maxsize=None)
def _placeholder_signature(key_type: str) -> bytes:
    """A well-formed signature value of ``key_type`` for the lint copy (pkilint checks the
    certificate's contents, not who signed it; the real signature comes after the lint)."""
    key = throwaway_key(key_type)
    return der.SignatureScheme(key, default_hash_for(key.public_key())).sign(b"unica lint copy")


_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def check_key_matches(key, issuer_public_key) -> None:
    """Refuse a CA key whose public half is not the CA certificate's public key (checked once,
    when the key is loaded, before anything is signed with it)."""
    try:
        same = spki_der(key.public_key()) == spki_der(issuer_public_key)
    except Exception:
        same = False
    if not same:
        raise UnsupportedKeyType("the CA key is not the key of the CA certificate (its public key differs)")


def sign_prepared(prepared: Prepared, key, issuer_public_key, *, verify: bool = True) -> bytes:
    """Sign ``prepared.tbs_der`` once with ``key``; return the certificate DER.

    With ``verify`` (the default) the signature is checked with the CA's public key before
    the certificate is returned; bulk re-issuance without linting checks a sample instead
    (see :meth:`unica.ca.issuance.IssuingCA.issue_many`)."""
    return sign_many([prepared], key, issuer_public_key, verify_every=1 if verify else 0)[0]


def sign_many(prepared: list, key, issuer_public_key, *, verify_every: int = 1) -> list:
    """:func:`sign_prepared` over a batch (all of one hash): the signatures first, then the
    certificate DERs, returned in order; the signature of every ``verify_every``-th one (the
    first included) is verified (0: none). If any signature fails, nothing is returned (it raises)."""
    if not prepared:
        return []
    hash_name = prepared[0].hash_name
    hash_alg = _HASHES[hash_name]() if hash_name else None
    params = signature_params(key, hash_alg)
    sign = key.sign
    signatures = []
    for k, p in enumerate(prepared):
        if p.hash_name != hash_name:
            raise ValueError("sign_many: the batch mixes signature hashes")
        signature = sign(p.tbs_der, *params)
        if verify_every and k % verify_every == 0:
            try:
                _verify(signature, p.tbs_der, issuer_public_key, hash_alg)
            except Exception:
                raise UnsupportedKeyType("the CA key's signature does not verify with the CA certificate's public "
                                         "key (wrong key for this CA?)") from None
        signatures.append(signature)
    seq, bit_string = der.seq, der.bit_string
    return [seq(p.tbs_der, p.signature_algorithm_der, bit_string(signature))
            for p, signature in zip(prepared, signatures)]


def _verify(sig: bytes, tbs: bytes, public_key, hash_alg) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if is_sm2(public_key):
        public_key.verify(sig, tbs)  # SM3, default signer ID: as the CA signs
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(sig, tbs, ec.ECDSA(hash_alg))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(sig, tbs, padding.PKCS1v15(), hash_alg)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(sig, tbs)
    else:
        raise UnsupportedKeyType(type(public_key).__name__)


def fingerprint(cert_der: bytes) -> str:
    return hashlib.sha256(cert_der).hexdigest()
