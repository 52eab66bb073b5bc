"""Differential testing of certificate path validation (issue #10).

A seeded generator builds random certification paths (root -> 1..4 intermediates -> leaf) with
CRL sets, and three engines judge each one at a fixed validation time:

* unica: ``unica.verify.validate_certificate`` (``usage="any"``, ``OFFLINE_HARD_FAIL``, CRLs
  passed explicitly);
* pyhanko-certvalidator directly: ``ValidationContext(revocation_mode="require")`` +
  ``CertificateValidator`` with ``PKIXValidationParams``;
* ``openssl verify`` (OpenSSL 3.0 CLI): ``-crl_check_all -extended_crl -use_deltas -attime
  -purpose any -policy_check`` plus ``-policy`` / ``-explicit_policy`` / ``-inhibit_map`` /
  ``-inhibit_any``.

Every engine is asked the same question: is this leaf valid at ``AT`` for any purpose, with
the given user policy inputs, when every certificate of the path except the trust anchor
needs current revocation data (no network)?

What the generator covers (randomly combined; see ``features`` of a :class:`Case`):

* name constraints on intermediates: dNSName, rfc822Name, iPAddress, directoryName, permitted
  and excluded, critical or not; leaf subjects (with emailAddress attributes) and SANs inside
  and outside them; a hostname-like leaf CN now and then;
* certificate policies, policy mappings, policyConstraints (requireExplicitPolicy /
  inhibitPolicyMapping, critical), inhibitAnyPolicy, anyPolicy, and the user inputs
  (initial policy set, initial-explicit-policy, -policy-mapping-inhibit, -any-policy-inhibit);
* basicConstraints pathLen, self-issued intermediates (same name, new key), missing or false cA,
  keyUsage without keyCertSign, CAs without keyUsage;
* expired and not-yet-valid certificates;
* CRLs: full CRLs, revoked leaf or intermediate, issuingDistributionPoint with fullName (URI,
  or the issuer's DN for a certificate without CRL distribution points) and with
  nameRelativeToCRLIssuer (against relative and full-DN distribution points, matching or not),
  onlyContainsUserCerts / onlyContainsCACerts, onlySomeReasons split across two CRLs (one may be
  missing), indirect CRLs (cRLIssuer in the CDP + indirectCRL + certificateIssuer entry
  extensions) signed by a separate CRL-signing certificate (and broken variants), delta CRLs
  with Freshest CRL (revoking, un-holding, missing, stale), unknown critical CRL and CRL entry
  extensions, stale CRLs (alone or next to a fresh one), missing CRLs.

Outcome classes (:func:`classify`):

``agree-accept`` / ``agree-reject``
    unica and every peer that judged the case say the same.
``HARMFUL``
    unica says TOTAL-PASSED while pyhanko-certvalidator rejects, or while openssl rejects for a
    reason that is not one of the documented openssl divergences below (the CI test requires
    none).
``openssl-divergence``
    unica (and pyhanko, where it judged) accept; openssl rejects only for documented reasons.
``unica-rejects-only``
    unica rejects while a peer accepts: conservative, reported, not a failure.
``unica-error``
    unica raised (for instance TypeError for a policy keyword the current code lacks; such
    keywords are passed only when not at their default, so the rest of the run still works).

Peers that cannot judge a case say so instead of guessing: pyhanko-certvalidator 0.33 has no
iPAddress name-constraint matching (``NotImplementedError``; RFC 5280 4.2.1.10), so a leaf
with an iPAddress SAN under an iPAddress constraint is ``unsupported`` for it.

Translating the inputs: unica's ``policies=None`` and pyhanko's default both mean {anyPolicy};
openssl's default user-initial-policy-set is empty (with explicit policy required it then fails
every path), so openssl always gets ``-policy`` (anyPolicy when the case has no set). The root has
a CRL distribution point and a CRL of its own (IDP: that DP, CA certificates only) because
``-crl_check_all`` also checks the trust anchor; that CRL is in scope for nothing else and is given
to every engine.

Triage of openssl rejections (:func:`explain_openssl`): ``OPENSSL_DIVERGENCES`` lists openssl
behaviour that RFC 5280 does not have, with the section; a rejection counts as a divergence only
when every error openssl printed (code, depth, and "[CRL path]" errors mapped onto the CRL issuer's
path) is recognised as one of them from the case's structure, and, for the classes where the structure
alone cannot tell, confirmed by an independent check: openssl itself on the delegated CRL signer's
certificate (nested-crl-path), and Bouncy Castle's PKIX validator on the path with the same policy
inputs (policy-tree; tests/verify/PkixCheck.java). Where openssl rejects and pyhanko
accepts, ``PYHANKO_DIVERGENCES`` names known pyhanko-certvalidator 0.33 departures from RFC 5280
present at the failing certificate: a label for the report, never an excuse (a unica accept there
stays HARMFUL). Limitation: openssl stops at the first error it cannot continue past (revocation
is checked leaf first, before signatures, name constraints and policies), so a divergence or a
rejection says nothing about what openssl would have found further on.

The reference engines never share a process with unica: ``unica.verify`` adapts
pyhanko-certvalidator in place when imported, so pyhanko and openssl run in spawned worker
processes that never import unica (:func:`run_pyhanko` refuses otherwise), unica in others.

Reproducing: every case is a pure function of (seed, index), byte for byte (deterministic keys
and ECDSA signatures)::

    python -m tests.verify.differential --seed 20240610 --index 17 --write /tmp/case17
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

UTC = dt.timezone.utc
#: the fixed validation time of every case
AT = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)

DEFAULT_SEED = 20240610

# --- universes the generator draws from --------------------------------------------------

P = {f"P{i}": f"1.3.6.1.4.1.55555.1.{i}" for i in range(1, 5)}
ANY_POLICY = "2.5.29.32.0"
UNKNOWN_EXT = x509.ObjectIdentifier("1.3.6.1.4.1.55555.9.1")
OID_POLICY_MAPPINGS = x509.ObjectIdentifier("2.5.29.33")

DNS_NAMES = ["example.com", "www.example.com", "a.example.com", "x.a.example.com", "fooexample.com",
             "example.org", "host.example.org", "b.example.org", "evil.com", "www.evil.com"]
DNS_BASES = ["example.com", "a.example.com", "example.org", "b.example.org", "evil.com"]
EMAILS = ["alice@example.com", "bob@a.example.com", "carol@example.org", "dave@b.example.org",
          "eve@evil.com", "alice@fooexample.com"]
EMAIL_BASES = ["example.com", ".example.com", "alice@example.com", "example.org", ".example.org",
               "evil.com"]
IPS = ["192.0.2.5", "192.0.2.200", "198.51.100.7", "2001:db8::1", "2001:db8:1::1"]
IP_BASES = ["192.0.2.0/24", "192.0.2.0/25", "198.51.100.0/24", "2001:db8::/32", "2001:db8::/48"]
ORGS = ["Org A", "Org B"]
OUS = ["Unit 1", "Unit 2"]
HOSTLIKE_CNS = ["www.example.com", "host.evil.com"]
ALL_REASONS = (x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise,
               x509.ReasonFlags.affiliation_changed, x509.ReasonFlags.superseded,
               x509.ReasonFlags.cessation_of_operation, x509.ReasonFlags.certificate_hold,
               x509.ReasonFlags.privilege_withdrawn, x509.ReasonFlags.aa_compromise)


def _dn_base(*extra) -> list:
    return [(NameOID.COUNTRY_NAME, "CN"), *extra]


def dn(*pairs) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, v) for oid, v in pairs])


#: directoryName subtrees (subject prefixes)
DIRNAME_BASES = [
    dn((NameOID.COUNTRY_NAME, "CN")),
    dn((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Org A")),
    dn((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Org A"),
       (NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit 1")),
    dn((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "Org B")),
    dn((NameOID.COUNTRY_NAME, "US")),
]


# --- keys ----------------------------------------------------------------------------------

_POOL: list[ec.EllipticCurvePrivateKey] = []
_POOL_SIZE = 40
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def key_pool() -> list[ec.EllipticCurvePrivateKey]:
    """A fixed pool of P-256 keys, derived from constants (the same in every process)."""
    if not _POOL:
        for i in range(_POOL_SIZE):
            d = int.from_bytes(hashlib.sha256(b"unica-differential-key-%d" % i).digest(), "big") % (_P256_N - 1) + 1
            _POOL.append(ec.derive_private_key(d, ec.SECP256R1()))
    return _POOL


def _sign_cert(b: x509.CertificateBuilder, key) -> x509.Certificate:
    return b.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


# --- the case -------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    seed: int
    index: int
    root: x509.Certificate
    #: the path's intermediates, root side first
    chain: list[x509.Certificate]
    leaf: x509.Certificate
    #: other certificates offered as intermediates (CRL signers)
    extra: list[x509.Certificate]
    crls: list[x509.CertificateRevocationList]
    policies: tuple[str, ...] | None
    explicit: bool
    inhibit_map: bool
    inhibit_any: bool
    at: dt.datetime
    features: frozenset[str]
    notes: tuple[str, ...]
    #: revocation tags of each certificate (by serial number): how its revocation data was made
    link_tags: dict[int, frozenset[str]] = dataclasses.field(default_factory=dict)

    @property
    def untrusted(self) -> list[x509.Certificate]:
        return list(self.chain) + list(self.extra)

    @property
    def reproducer(self) -> str:
        return f"python -m tests.verify.differential --seed {self.seed} --index {self.index}"

    def describe(self) -> str:
        user = []
        if self.policies is not None:
            user.append("initial-policy-set=" + ",".join(_pname(p) for p in self.policies))
        for flag, name in ((self.explicit, "initial-explicit-policy"), (self.inhibit_map, "initial-policy-mapping-inhibit"),
                           (self.inhibit_any, "initial-any-policy-inhibit")):
            if flag:
                user.append(name)
        lines = [f"case seed={self.seed} index={self.index} at={self.at:%Y-%m-%dT%H:%M:%SZ}",
                 "user inputs: " + ("; ".join(user) or "defaults")]
        lines += ["  " + n for n in self.notes]
        return "\n".join(lines)

    def openssl_args(self, d: Path) -> list[str]:
        cmd = ["openssl", "verify", "-CAfile", str(d / "root.pem")]
        if self.untrusted:
            cmd += ["-untrusted", str(d / "untrusted.pem")]
        if self.crls:
            cmd += ["-CRLfile", str(d / "crls.pem")]
        cmd += ["-crl_check_all", "-extended_crl", "-use_deltas", "-attime", str(int(self.at.timestamp())),
                "-purpose", "any", "-policy_check"]
        # openssl's default user-initial-policy-set is empty, not {anyPolicy}: say anyPolicy explicitly
        for p in self.policies if self.policies is not None else (ANY_POLICY,):
            cmd += ["-policy", p]
        if self.explicit:
            cmd.append("-explicit_policy")
        if self.inhibit_map:
            cmd.append("-inhibit_map")
        if self.inhibit_any:
            cmd.append("-inhibit_any")
        cmd.append(str(d / "leaf.pem"))
        return cmd

    def write(self, d: Path) -> Path:
        """PEM files (root.pem, untrusted.pem, leaf.pem, crls.pem) and case.txt into ``d``."""
        d.mkdir(parents=True, exist_ok=True)
        pem = serialization.Encoding.PEM
        (d / "root.pem").write_bytes(self.root.public_bytes(pem))
        (d / "untrusted.pem").write_bytes(b"".join(c.public_bytes(pem) for c in self.untrusted))
        (d / "leaf.pem").write_bytes(self.leaf.public_bytes(pem))
        (d / "crls.pem").write_bytes(b"".join(c.public_bytes(pem) for c in self.crls))
        (d / "case.txt").write_text(
            self.describe() + "\n\nreplay: " + self.reproducer + "\nopenssl: "
            + shlex.join(self.openssl_args(d)) + "\n")
        return d


def _pname(oid: str) -> str:
    for k, v in P.items():
        if v == oid:
            return k
    return "anyPolicy" if oid == ANY_POLICY else oid


# --- generator ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Auth:
    """A certificate being planned: name, key, serial, and (once built) the certificate."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    tag: str
    serial: int
    is_ca: bool = True
    self_issued: bool = False
    cert: x509.Certificate | None = None
    exts: list = dataclasses.field(default_factory=list)
    not_before: dt.datetime = AT - 200 * DAY
    not_after: dt.datetime = AT + 300 * DAY


@dataclasses.dataclass
class _Entry:
    serial: int
    date: dt.datetime
    reason: x509.ReasonFlags | None = None
    cert_issuer: x509.Name | None = None
    unknown_critical: bool = False


class _Gen:
    def __init__(self, seed: int, index: int):
        self.seed, self.index = seed, index
        self.r = random.Random(f"unica-differential/{seed}/{index}")
        self.features: set[str] = set()
        self.notes: list[str] = []
        pool = key_pool()
        self._keys = iter(self.r.sample(pool, len(pool)))
        self.crls: list[x509.CertificateRevocationList] = []
        self.extra: list[_Auth] = []
        self.link_tags: dict[int, set[str]] = collections.defaultdict(set)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def key(self):
        return next(self._keys)

    def serial(self) -> int:
        return self.r.getrandbits(62) | (1 << 62)

    def feat(self, *names: str) -> None:
        self.features.update(names)

    # -- certificates ------------------------------------------------------------------------

    def build(self, a: _Auth, issuer: _Auth | None) -> x509.Certificate:
        ik = (issuer or a).key
        b = (x509.CertificateBuilder().subject_name(a.name).issuer_name((issuer or a).name)
             .public_key(a.key.public_key()).serial_number(a.serial)
             .not_valid_before(a.not_before).not_valid_after(a.not_after)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(a.key.public_key()), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ik.public_key()), False))
        for ext, crit in a.exts:
            b = b.add_extension(ext, crit)
        a.cert = _sign_cert(b, ik)
        return a.cert

    def validity(self, a: _Auth, label: str) -> None:
        x = self.r.random()
        if x < 0.012:
            a.not_before, a.not_after = AT - 400 * DAY, AT - DAY
            self.feat("validity:expired")
            self.notes.append(f"{label}: expired (notAfter {a.not_after:%Y-%m-%d})")
        elif x < 0.024:
            a.not_before = AT + DAY
            self.feat("validity:not-yet-valid")
            self.notes.append(f"{label}: not yet valid (notBefore {a.not_before:%Y-%m-%d})")

    # -- CRLs ----------------------------------------------------------------------------------

    def crl(self, issuer_name: x509.Name, key, entries: Iterable[_Entry] = (), *, number: int | None = None,
            this_update: dt.datetime = AT - HOUR, next_update: dt.datetime = AT + 6 * DAY,
            idp: x509.IssuingDistributionPoint | None = None, delta_of: int | None = None,
            freshest: list | None = None, unknown_critical: bool = False) -> x509.CertificateRevocationList:
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer_name)
             .last_update(this_update).next_update(next_update)
             .add_extension(x509.CRLNumber(number if number is not None else self.r.randint(1, 90)), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
        if idp is not None:
            b = b.add_extension(idp, True)
        if delta_of is not None:
            b = b.add_extension(x509.DeltaCRLIndicator(delta_of), True)
        if freshest:
            b = b.add_extension(x509.FreshestCRL(freshest), False)
        if unknown_critical:
            b = b.add_extension(x509.UnrecognizedExtension(UNKNOWN_EXT, b"\x05\x00"), True)
        for e in entries:
            rb = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(e.date)
            if e.reason is not None:
                rb = rb.add_extension(x509.CRLReason(e.reason), False)
            if e.cert_issuer is not None:
                rb = rb.add_extension(x509.CertificateIssuer([x509.DirectoryName(e.cert_issuer)]), True)
            if e.unknown_critical:
                rb = rb.add_extension(x509.UnrecognizedExtension(UNKNOWN_EXT, b"\x05\x00"), True)
            b = b.add_revoked_certificate(rb.build())
        return b.sign(key, hashes.SHA256(), ecdsa_deterministic=True)

    def dummies(self, n_max: int = 2, cert_issuer: x509.Name | None = None) -> list[_Entry]:
        return [_Entry(self.serial(), AT - self.r.randint(5, 90) * DAY,
                       self.r.choice([None, x509.ReasonFlags.superseded, x509.ReasonFlags.key_compromise]),
                       cert_issuer)
                for _ in range(self.r.randint(0, n_max))]


def _uri(u: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(u)


def _dp(full=None, rel=None, crl_issuer=None) -> x509.DistributionPoint:
    return x509.DistributionPoint(full, rel, None, crl_issuer)


def _idp(full=None, rel=None, *, user=False, ca=False, reasons=None, indirect=False) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(full, rel, user, ca, reasons, indirect, False)


def _policy_mappings(pairs: list[tuple[str, str]]) -> x509.UnrecognizedExtension:
    from asn1crypto import x509 as ax

    der = ax.PolicyMappings([{"issuer_domain_policy": a, "subject_domain_policy": b} for a, b in pairs]).dump()
    return x509.UnrecognizedExtension(OID_POLICY_MAPPINGS, der)


def _gn_str(g: x509.GeneralName) -> str:
    if isinstance(g, x509.DirectoryName):
        return "dirName:" + g.value.rfc4514_string()
    kind = {x509.DNSName: "dns", x509.RFC822Name: "email", x509.IPAddress: "ip",
            x509.UniformResourceIdentifier: "uri"}.get(type(g), type(g).__name__)
    return f"{kind}:{g.value}"


class _Link:
    """Revocation data for one child certificate (its issuer's CRLs, or an indirect CRL)."""

    SCHEMES = (("full", 10), ("idp-full", 10), ("idp-relative", 12), ("idp-dn-no-cdp", 4), ("scope", 9),
               ("reasons", 10), ("indirect", 14), ("delta", 14))
    MUTATIONS = (("revoked", 30), ("missing", 15), ("stale", 20), ("unknown-crl", 15), ("unknown-entry", 20))

    def __init__(self, g: _Gen, j: int, issuer: _Auth, child: _Auth, root: _Auth,
                 mutations: frozenset[str] = frozenset()):
        self.g, self.j, self.issuer, self.child, self.root = g, j, issuer, child, root
        r = g.r
        self.scheme = "full" if g.chance(0.55) else r.choices([s for s, _ in self.SCHEMES], [w for _, w in self.SCHEMES])[0]
        self.variant = ""
        self.revoked = "revoked" in mutations
        self.missing = "missing" in mutations
        self.stale = "" if "stale" not in mutations else r.choice(["alone", "with-fresh"])
        self.unknown_crl = "" if "unknown-crl" not in mutations else r.choice(["alone", "with-clean"])
        self.unknown_entry = "" if "unknown-entry" not in mutations else r.choice(["other-entry", "child-entry"])
        self.uri = f"http://crl.test/{issuer.tag}-{j}.crl"
        self.tags: set[str] = {f"crl:{self.scheme}"}
        self.signer: _Auth | None = None
        self.signer_issuer: _Auth | None = None
        self._plan()

    @property
    def who(self) -> str:
        return f"{self.child.tag} (by {self.issuer.tag})"

    def _plan(self) -> None:
        g, r, s = self.g, self.g.r, self.scheme
        cdp = None
        if s == "full":
            if g.chance(0.75):
                cdp = [_dp([_uri(self.uri)])]
        elif s == "idp-full":
            self.variant = "match" if g.chance(0.75) else "mismatch"
            cdp = [_dp([_uri(self.uri)])]
        elif s == "idp-relative":
            self.variant = r.choices(["rel-rel", "full-rel", "rel-full", "mismatch"], [40, 20, 20, 20])[0]
            self.rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, f"CRL {self.j}")])
            full_dn = x509.Name(list(self.issuer.name.rdns) + [self.rdn])
            cdp = [_dp([x509.DirectoryName(full_dn)])] if self.variant == "full-rel" else [_dp(rel=self.rdn)]
        elif s == "idp-dn-no-cdp":
            cdp = None
        elif s == "scope":
            self.variant = r.choice(["only-user", "only-ca"]) + ("+name" if g.chance(0.5) else "")
            if "+name" in self.variant or g.chance(0.5):
                cdp = [_dp([_uri(self.uri)])]
        elif s == "reasons":
            self.variant = "both" if g.chance(0.75) else "one-missing"
            self.with_name = g.chance(0.4)
            cdp = [_dp([_uri(self.uri)])] if self.with_name or g.chance(0.5) else None
        elif s == "indirect":
            self.variant = r.choices(["ok", "no-indirect-flag", "no-crlissuer-in-cdp", "signer-no-crlsign",
                                      "entry-other-issuer"], [60, 8, 14, 6, 12])[0]
            self.signer_issuer = self.root if g.chance(0.5) else self.issuer
            s_name = dn(*_dn_base((NameOID.ORGANIZATION_NAME, "Org A"), (NameOID.COMMON_NAME, f"CRL Signer {self.j}")))
            self.signer = _Auth(s_name, g.key(), f"signer{self.j}", g.serial(), is_ca=False)
            ku = dict(digital_signature=True, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                      crl_sign=self.variant != "signer-no-crlsign", encipher_only=False, decipher_only=False)
            self.signer_uri = f"http://crl.test/signer-{self.j}.crl"
            self.signer.exts = [(x509.KeyUsage(**ku), True),
                                (x509.CRLDistributionPoints([_dp([_uri(self.signer_uri)])]), False)]
            g.validity(self.signer, f"CRL signer of {self.child.tag}")
            self.with_uri = g.chance(0.5)
            full = [_uri(self.uri)] if self.with_uri else None
            if self.variant == "no-crlissuer-in-cdp":
                cdp = [_dp(full or [_uri(self.uri)])]
                self.with_uri = True
            else:
                cdp = [_dp(full, crl_issuer=[x509.DirectoryName(s_name)])]
        elif s == "delta":
            self.variant = r.choices(["good", "delta-revokes", "hold-removed", "hold-kept", "delta-missing",
                                      "delta-stale", "delta-stale-revokes", "hold-removed-newer-base"],
                                     [32, 14, 14, 6, 11, 8, 8, 7])[0]
            self.delta_uri = f"http://crl.test/{self.issuer.tag}-{self.j}-delta.crl"
            if g.chance(0.8):
                cdp = [_dp([_uri(self.uri)])]
            self.child.exts.append((x509.FreshestCRL([_dp([_uri(self.delta_uri)])]), False))
        if self.unknown_entry == "child-entry" and not (self.revoked or self.variant in (
                "hold-removed", "hold-kept", "hold-removed-newer-base", "entry-other-issuer")):
            self.unknown_entry = "other-entry"  # the child has no entry in the main CRL
        if self.variant:
            self.tags.add(f"crl:{s}:{self.variant}")
        if cdp:
            self.child.exts.append((x509.CRLDistributionPoints(cdp), False))
        for flag, tag in ((self.revoked, "revoked"), (self.missing, "missing")):
            if flag:
                self.tags.add(f"crl:{tag}")
        if self.stale:
            self.tags.add(f"crl:stale:{self.stale}")
        if self.unknown_crl:
            self.tags.add(f"crl:unknown-critical-ext:{self.unknown_crl}")
        if self.unknown_entry:
            self.tags.add(f"crl:unknown-critical-entry-ext:{self.unknown_entry}")
        if self.revoked:
            self.tags.add("crl:revoked-leaf" if not self.child.is_ca else "crl:revoked-ca")
        g.feat(*self.tags)
        d = f"revocation of {self.who}: {s}" + (f"/{self.variant}" if self.variant else "")
        extras = [t for t, f in (("revoked", self.revoked), ("missing", self.missing),
                                 (f"stale({self.stale})", self.stale), (f"unknown-critical-crl-ext({self.unknown_crl})", self.unknown_crl),
                                 (f"unknown-critical-entry-ext({self.unknown_entry})", self.unknown_entry)) if f]
        if cdp:
            d += "; CDP " + ", ".join(
                ("full=" + "|".join(_gn_str(n) for n in p.full_name) if p.full_name else "")
                + ("relative=" + p.relative_name.rfc4514_string() if p.relative_name else "")
                + (" cRLIssuer=" + "|".join(_gn_str(n) for n in p.crl_issuer) if p.crl_issuer else "")
                for p in cdp)
        else:
            d += "; no CDP"
        if extras:
            d += "; " + ", ".join(extras)
        if self.signer is not None:
            d += f"; CRL signer issued by {self.signer_issuer.tag}"
        self.description = d

    # -- after the certificates exist ---------------------------------------------------------

    def child_entry(self, reason=x509.ReasonFlags.key_compromise, cert_issuer=None) -> _Entry:
        return _Entry(self.child.serial, AT - 3 * DAY, reason, cert_issuer)

    def _finish(self, main_entries: list[_Entry], build_main, extra_crls=()) -> list:
        """Apply the common mutations to the main CRL: ``build_main(entries, **kw)`` makes it."""
        g = self.g
        if self.unknown_entry:
            target = None
            if self.unknown_entry == "child-entry":
                target = next((e for e in main_entries if e.serial == self.child.serial), None)
            if target is None:
                target = _Entry(g.serial(), AT - 20 * DAY, None, main_entries[-1].cert_issuer if main_entries else None)
                main_entries.append(target)
            target.unknown_critical = True
        out = []
        n = self.number  # the usable main CRL has this CRL number; a stale copy is older, a bad one newer
        if self.stale:
            out.append(build_main(main_entries, this_update=AT - 10 * DAY, next_update=AT - 3 * DAY, number=n - 1))
            if self.stale == "with-fresh":
                out.append(build_main(main_entries, number=n))
        elif self.unknown_crl:
            out.append(build_main(main_entries, unknown_critical=True, number=n + 1))
            if self.unknown_crl == "with-clean":
                out.append(build_main(main_entries, number=n))
        else:
            out.append(build_main(main_entries, number=n))
        out.extend(extra_crls)
        return [] if self.missing else out

    def crls(self) -> list[x509.CertificateRevocationList]:
        g, s, iss = self.g, self.scheme, self.issuer
        self.number = g.r.randint(10, 80)
        entries = g.dummies()
        if self.revoked and s not in ("indirect", "delta", "reasons"):
            entries.append(self.child_entry())

        def direct(idp=None, **extra):
            def build(es, **kw):
                return g.crl(iss.name, iss.key, es, idp=idp, **{**extra, **kw})
            return build

        if s == "full":
            return self._finish(entries, direct())
        if s == "idp-full":
            u = self.uri if self.variant == "match" else self.uri.replace(".crl", "-other.crl")
            return self._finish(entries, direct(_idp([_uri(u)])))
        if s == "idp-relative":
            full_dn = x509.Name(list(iss.name.rdns) + [self.rdn])
            if self.variant == "rel-full":
                idp = _idp([x509.DirectoryName(full_dn)])
            elif self.variant == "mismatch":
                idp = _idp(rel=x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, f"CRL {self.j}x")]))
            else:
                idp = _idp(rel=self.rdn)
            return self._finish(entries, direct(idp))
        if s == "idp-dn-no-cdp":
            return self._finish(entries, direct(_idp([x509.DirectoryName(iss.name)])))
        if s == "scope":
            full = [_uri(self.uri)] if "+name" in self.variant else None
            idp = _idp(full, user="only-user" in self.variant, ca="only-ca" in self.variant)
            return self._finish(entries, direct(idp))
        if s == "reasons":
            rest = list(ALL_REASONS[1:])
            g.r.shuffle(rest)
            cut = g.r.randint(0, len(rest) - 1)
            a = frozenset([ALL_REASONS[0], *rest[:cut]])
            b = frozenset(rest[cut:])
            full = [_uri(self.uri)] if self.with_name else None
            if self.revoked:
                entries.append(self.child_entry())
            crl_b = g.crl(iss.name, iss.key, g.dummies(1), idp=_idp(full, reasons=b))
            if self.variant == "one-missing":
                drop = g.r.choice("ab")
                self.description += f"; reasons {{{_reasons(a)}}} / {{{_reasons(b)}}}, {drop.upper()} missing"
                if drop == "b":
                    return self._finish(entries, direct(_idp(full, reasons=a)))
                return [] if self.missing else [crl_b]
            self.description += f"; reasons {{{_reasons(a)}}} / {{{_reasons(b)}}}"
            return self._finish(entries, direct(_idp(full, reasons=a)), [crl_b])
        if s == "indirect":
            sg = self.signer
            other = dn(*_dn_base((NameOID.ORGANIZATION_NAME, "Org Z"), (NameOID.COMMON_NAME, "Other CA")))
            es = g.dummies(2, cert_issuer=other) or [_Entry(g.serial(), AT - 9 * DAY, None, other)]
            mine = g.dummies(1, cert_issuer=iss.name)
            if self.variant == "entry-other-issuer":
                # the child's serial, but under another certificate issuer: not a revocation of the child
                es.append(self.child_entry(cert_issuer=other))
            if self.revoked:
                mine.append(self.child_entry(cert_issuer=iss.name))
            if mine:
                mine[0].cert_issuer = iss.name
                for e in mine[1:]:
                    e.cert_issuer = None if g.chance(0.5) else iss.name  # carried over from the entry before
            es = es + mine
            full = [_uri(self.uri)] if self.with_uri else None
            if self.variant == "no-indirect-flag":
                idp = _idp(full) if full else None
            else:
                idp = _idp(full, indirect=True)

            def build(ents, **kw):
                return g.crl(sg.name, sg.key, ents, idp=idp, **kw)

            # the signer's own status: a user-certs-only CRL from its issuer, at its own DP
            cover = g.crl(self.signer_issuer.name, self.signer_issuer.key, (),
                          idp=_idp([_uri(self.signer_uri)], user=True))
            out = self._finish(es, build)
            return out + [cover]
        if s == "delta":
            v = self.variant
            base_no = self.number
            fresh = [_dp([_uri(self.delta_uri)])]
            if self.revoked:
                entries.append(self.child_entry())
            if v in ("hold-removed", "hold-kept", "hold-removed-newer-base"):
                entries.append(self.child_entry(x509.ReasonFlags.certificate_hold))
            d_entries = g.dummies(1)
            if v in ("delta-revokes", "delta-stale-revokes"):
                d_entries.append(_Entry(self.child.serial, AT - 2 * DAY, x509.ReasonFlags.key_compromise))
            if v in ("hold-removed", "hold-removed-newer-base"):
                d_entries.append(_Entry(self.child.serial, AT - 2 * DAY, x509.ReasonFlags.remove_from_crl))
            deltas = []
            if v != "delta-missing":
                stale = v.startswith("delta-stale")
                # "newer base": the delta is for a complete CRL newer than the one supplied, so the two
                # must not be combined (RFC 5280 5.2.4): the hold in the supplied base stands
                delta_of = base_no + 2 if v == "hold-removed-newer-base" else base_no
                deltas.append(g.crl(iss.name, iss.key, d_entries, number=delta_of + g.r.randint(1, 3),
                                    delta_of=delta_of,
                                    this_update=AT - (5 * DAY if stale else HOUR / 2),
                                    next_update=AT - 2 * DAY if stale else AT + DAY))

            def build(es, **kw):
                kw.setdefault("number", base_no)
                return g.crl(iss.name, iss.key, es, freshest=fresh, **kw)
            return self._finish(entries, build, deltas)
        raise AssertionError(s)


def _reasons(rs) -> str:
    return ",".join(sorted(r.name for r in rs))


def _ku(**on) -> x509.KeyUsage:
    full = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False)
    full.update(on)
    return x509.KeyUsage(**full)


def _subtree(g: _Gen) -> tuple[str, x509.GeneralName, str]:
    kind = g.r.choice(["dns", "email", "ip", "dirname"])
    if kind == "dns":
        v = g.r.choice(DNS_BASES)
        return kind, x509.DNSName(v), v
    if kind == "email":
        v = g.r.choice(EMAIL_BASES)
        return kind, x509.RFC822Name(v), v
    if kind == "ip":
        v = g.r.choice(IP_BASES)
        return kind, x509.IPAddress(ipaddress.ip_network(v)), v
    v = g.r.choice(DIRNAME_BASES)
    return kind, x509.DirectoryName(v), v.rfc4514_string()


def generate(seed: int, index: int) -> Case:
    """The case number ``index`` of the run with ``seed`` (a pure function of both)."""
    g = _Gen(seed, index)
    r = g.r
    depth = r.choice([1, 1, 2, 2, 2, 3, 3, 4])
    g.feat(f"depth:{depth}")
    root = _Auth(dn(*_dn_base((NameOID.ORGANIZATION_NAME, "Org A"), (NameOID.COMMON_NAME, "Root CA"))),
                 g.key(), "root", g.serial())
    root.not_before, root.not_after = AT - 3000 * DAY, AT + 3000 * DAY
    anchor_uri = "http://crl.test/anchor.crl"
    root.exts = [(x509.BasicConstraints(True, None), True), (_ku(key_cert_sign=True, crl_sign=True), True),
                 (x509.CRLDistributionPoints([_dp([_uri(anchor_uri)])]), False)]

    # -- intermediates -----------------------------------------------------------------------
    cas: list[_Auth] = []
    for i in range(1, depth + 1):
        if i >= 2 and g.chance(0.1):
            name, si = cas[-1].name, True
            g.feat("bc:self-issued")
            g.notes.append(f"ca{i}: self-issued (same name as ca{i - 1}, new key)")
        else:
            org = "Org A" if g.chance(0.85) else "Org B"
            name, si = dn(*_dn_base((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, f"CA {i}"))), False
        cas.append(_Auth(name, g.key(), f"ca{i}", g.serial(), self_issued=si))
    for i, ca in enumerate(cas, 1):
        label = f"ca{i}"
        x = r.random()
        pathlen = r.randint(0, 2) if g.chance(0.25) else None
        if pathlen is not None:
            g.feat("bc:pathlen")
            g.notes.append(f"{label}: pathLenConstraint={pathlen}")
        if x < 0.015:
            g.feat("bc:missing")
            g.notes.append(f"{label}: no basicConstraints")
        elif x < 0.03:
            ca.exts.append((x509.BasicConstraints(False, None), True))
            g.feat("bc:ca-false")
            g.notes.append(f"{label}: basicConstraints cA=FALSE")
        else:
            ca.exts.append((x509.BasicConstraints(True, pathlen), True))
        y = r.random()
        if y < 0.015:
            ca.exts.append((_ku(digital_signature=True, crl_sign=True), True))
            g.feat("ku:no-keycertsign")
            g.notes.append(f"{label}: keyUsage without keyCertSign")
        elif y < 0.05:
            g.feat("ku:absent")
            g.notes.append(f"{label}: no keyUsage")
        else:
            ca.exts.append((_ku(digital_signature=True, key_cert_sign=True, crl_sign=True), True))
        g.validity(ca, label)
        if g.chance(0.22):
            perm, excl, desc = [], [], []
            for _ in range(r.randint(1, 3)):
                kind, gn, v = _subtree(g)
                which = "permitted" if g.chance(0.65) else "excluded"
                (perm if which == "permitted" else excl).append(gn)
                g.feat(f"nc:{kind}:{which}")
                desc.append(f"{which} {kind}:{v}")
            crit = g.chance(0.9)
            if not crit:
                g.feat("nc:non-critical")
            ca.exts.append((x509.NameConstraints(perm or None, excl or None), crit))
            g.notes.append(f"{label}: nameConstraints{'' if crit else ' (non-critical)'} " + "; ".join(desc))

    # -- policies ----------------------------------------------------------------------------
    policy_case = g.chance(0.4)
    policies, explicit, inhibit_map, inhibit_any = None, False, False, False
    pool = list(P.values())
    if policy_case:
        g.feat("policy:case")
        for i, ca in enumerate(cas, 1):
            label = f"ca{i}"
            if g.chance(0.12):
                g.feat("policy:ca-without-policies")
                g.notes.append(f"{label}: no certificatePolicies")
            else:
                ps = r.sample(pool + [ANY_POLICY, ANY_POLICY], r.randint(1, 2))
                ps = list(dict.fromkeys(ps))
                if ANY_POLICY in ps:
                    g.feat("policy:anyPolicy")
                ca.exts.append((x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(p), None)
                                                          for p in ps]), False))
                g.notes.append(f"{label}: policies " + ",".join(_pname(p) for p in ps))
            if g.chance(0.3):
                pairs = []
                for _ in range(r.randint(1, 2)):
                    a, b = r.sample(pool, 2)
                    if (a, b) not in pairs:
                        pairs.append((a, b))
                crit = g.chance(0.8)
                ca.exts.append((_policy_mappings(pairs), crit))
                g.feat("policy:mapping")
                g.notes.append(f"{label}: policyMappings{'' if crit else ' (non-critical)'} "
                               + ",".join(f"{_pname(a)}->{_pname(b)}" for a, b in pairs))
            if g.chance(0.25):
                rep = r.choice([None, 0, 1, 2])
                ipm = r.choice([None, 0, 1]) if rep is not None else r.choice([0, 1])
                ca.exts.append((x509.PolicyConstraints(rep, ipm), True))
                if rep is not None:
                    g.feat("policy:requireExplicitPolicy")
                if ipm is not None:
                    g.feat("policy:inhibitPolicyMapping")
                g.notes.append(f"{label}: policyConstraints requireExplicitPolicy={rep} inhibitPolicyMapping={ipm}")
            if g.chance(0.15):
                skip = r.choice([0, 1])
                ca.exts.append((x509.InhibitAnyPolicy(skip), True))
                g.feat("policy:inhibitAnyPolicy")
                g.notes.append(f"{label}: inhibitAnyPolicy skipCerts={skip}")
        if not g.chance(0.5):
            policies = tuple(r.sample(pool, r.randint(1, 2)))
        explicit, inhibit_map, inhibit_any = g.chance(0.3), g.chance(0.2), g.chance(0.2)
    else:
        if g.chance(0.04):
            explicit = True
        if g.chance(0.04):
            policies = (r.choice(pool),)
    for flag, f in ((policies is not None, "user:policy-set"), (explicit, "user:explicit-policy"),
                    (inhibit_map, "user:inhibit-policy-mapping"), (inhibit_any, "user:inhibit-any-policy")):
        if flag:
            g.feat(f)

    # -- leaf ----------------------------------------------------------------------------------
    attrs = _dn_base((NameOID.ORGANIZATION_NAME, "Org A" if g.chance(0.8) else "Org B"))
    if g.chance(0.4):
        attrs.append((NameOID.ORGANIZATIONAL_UNIT_NAME, r.choice(OUS)))
    if g.chance(0.05):
        attrs.append((NameOID.COMMON_NAME, r.choice(HOSTLIKE_CNS)))
        g.feat("leaf:hostname-cn")
    else:
        attrs.append((NameOID.COMMON_NAME, f"Leaf {index}"))
    if g.chance(0.2):
        attrs.append((NameOID.EMAIL_ADDRESS, r.choice(EMAILS)))
        g.feat("leaf:subject-email")
    leaf = _Auth(dn(*attrs), g.key(), "leaf", g.serial(), is_ca=False)
    leaf.exts = [(_ku(digital_signature=True), True)]
    if g.chance(0.3):
        leaf.exts.append((x509.BasicConstraints(False, None), True))
    sans = []
    if g.chance(0.6):
        for _ in range(r.randint(1, 3)):
            kind = r.choices(["dns", "email", "ip"], [50, 25, 25])[0]
            if kind == "dns":
                gn = x509.DNSName(r.choice(DNS_NAMES))
            elif kind == "email":
                gn = x509.RFC822Name(r.choice(EMAILS))
            else:
                gn = x509.IPAddress(ipaddress.ip_address(r.choice(IPS)))
            if gn not in sans:
                sans.append(gn)
                g.feat(f"leaf:san-{kind}")
        leaf.exts.append((x509.SubjectAlternativeName(sans), False))
    if policy_case and not g.chance(0.12):
        ps = r.sample(pool, r.randint(1, 2)) + ([ANY_POLICY] if g.chance(0.1) else [])
        leaf.exts.append((x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(p), None)
                                                    for p in ps]), False))
        g.notes.append("leaf: policies " + ",".join(_pname(p) for p in ps))
    elif policy_case:
        g.notes.append("leaf: no certificatePolicies")
    g.validity(leaf, "leaf")
    g.notes.insert(0, f"leaf: subject {leaf.name.rfc4514_string()}"
                   + (f"; SAN {', '.join(_gn_str(s) for s in sans)}" if sans else "; no SAN"))
    g.notes.insert(0, f"path: root -> {' -> '.join(c.tag for c in cas)} -> leaf")

    # -- revocation plan (adds CDP / Freshest CRL to the children) ------------------------------
    auths = [root, *cas]
    children = [*cas, leaf]
    muts: dict[int, set[str]] = collections.defaultdict(set)
    for _ in range(r.choice([0, 0, 0, 1, 1, 2])):
        muts[r.randrange(len(children))].add(
            r.choices([m for m, _ in _Link.MUTATIONS], [w for _, w in _Link.MUTATIONS])[0])
    links = [_Link(g, j, auths[j], children[j], root, mutations=frozenset(muts[j]))
             for j in range(len(children))]
    for ln in links:
        g.notes.append(ln.description)

    # -- build -------------------------------------------------------------------------------------
    g.build(root, None)
    for j, ca in enumerate(cas):
        g.build(ca, auths[j])
    g.build(leaf, cas[-1])
    extra = []
    for ln in links:
        if ln.signer is not None:
            g.build(ln.signer, ln.signer_issuer)
            extra.append(ln.signer.cert)
    crls = [g.crl(root.name, root.key, (), idp=_idp([_uri(anchor_uri)], ca=True), number=1)]
    link_tags = {}
    for ln in links:
        crls.extend(ln.crls())
        link_tags[ln.child.serial] = frozenset(ln.tags)
    return Case(seed=seed, index=index, root=root.cert, chain=[c.cert for c in cas], leaf=leaf.cert,
                extra=extra, crls=crls, policies=policies, explicit=explicit, inhibit_map=inhibit_map,
                inhibit_any=inhibit_any, at=AT, features=frozenset(g.features), notes=tuple(g.notes),
                link_tags=link_tags)


# --- engines ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    #: "accept", "reject", "unsupported" (the engine cannot judge this case), "skip", "error"
    verdict: str
    detail: str = ""
    #: openssl only: (code, depth, message, in CRL path)
    errors: tuple = ()

    def __str__(self) -> str:
        return self.verdict + (f" ({self.detail})" if self.detail else "")


def run_unica(case: Case) -> Outcome:
    from unica.verify import OFFLINE_HARD_FAIL, validate_certificate

    kw = dict(trust=[case.root], intermediates=case.untrusted, at=case.at, usage="any",
              revocation=OFFLINE_HARD_FAIL, crls=case.crls)
    # keywords of the contract: passed only when not at their default (the current code may lack some)
    if case.policies is not None:
        kw["policies"] = list(case.policies)
    if case.explicit:
        kw["require_explicit_policy"] = True
    if case.inhibit_map:
        kw["inhibit_policy_mapping"] = True
    if case.inhibit_any:
        kw["inhibit_any_policy"] = True
    try:
        rep = validate_certificate(case.leaf, **kw)
    except TypeError as e:
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m:
            return Outcome("error", f"keyword {m.group(1)} not supported")
        return Outcome("error", f"TypeError: {e}")
    except Exception as e:  # noqa: BLE001 - the contract says nothing else may escape
        return Outcome("error", f"{type(e).__name__}: {e}")
    sub = rep.sub_indication.value if rep.sub_indication else ""
    msg = "; ".join(rep.messages)[:300]
    if rep.passed:
        return Outcome("accept", msg)
    return Outcome("reject", f"{rep.indication.value}/{sub} {msg}".strip())


def run_pyhanko(case: Case) -> Outcome:
    from asn1crypto import crl as acrl, x509 as ax
    from pyhanko_certvalidator import CertificateValidator, PKIXValidationParams, ValidationContext
    from pyhanko_certvalidator.errors import PathBuildingError, ValidationError

    _assert_no_unica()
    der = serialization.Encoding.DER

    def a(c):
        return ax.Certificate.load(c.public_bytes(der))

    ctx = ValidationContext(
        trust_roots=[a(case.root)], other_certs=[a(c) for c in case.untrusted], moment=case.at,
        crls=[acrl.CertificateList.load(c.public_bytes(der)) for c in case.crls],
        revocation_mode="require", allow_fetching=False)
    params = PKIXValidationParams(
        user_initial_policy_set=frozenset(case.policies) if case.policies is not None else frozenset(["any_policy"]),
        initial_explicit_policy=case.explicit, initial_policy_mapping_inhibit=case.inhibit_map,
        initial_any_policy_inhibit=case.inhibit_any)
    v = CertificateValidator(a(case.leaf), validation_context=ctx, pkix_params=params)
    try:
        asyncio.run(v.async_validate_path())
    except (ValidationError, PathBuildingError) as e:
        return Outcome("reject", f"{type(e).__name__}: {e}"[:400])
    except NotImplementedError as e:
        return Outcome("unsupported", f"NotImplementedError: {e}")
    except Exception as e:  # noqa: BLE001
        return Outcome("error", f"{type(e).__name__}: {e}"[:400])
    return Outcome("accept")


_ERR_RE = re.compile(r"^(\[CRL path\] )?error (\d+) at (\d+) depth lookup: (.*)$", re.M)


def _workdir() -> Path:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="unica-diff-", dir=base))


def run_openssl(case: Case, d: Path) -> Outcome:
    case.write(d)
    try:
        p = subprocess.run(case.openssl_args(d), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Outcome("error", f"{type(e).__name__}: {e}")
    out = p.stdout + p.stderr
    errors = tuple((int(m.group(2)), int(m.group(3)), m.group(4).strip(), bool(m.group(1)))
                   for m in _ERR_RE.finditer(out))
    if p.returncode == 0 and not errors:
        return Outcome("accept")
    if p.returncode == 2 or errors:
        detail = "; ".join(f"{'[CRL path] ' if c else ''}error {code} at depth {dep}: {msg}"
                           for code, dep, msg, c in errors) or out.strip()[-300:]
        return Outcome("reject", detail, errors)
    return Outcome("error", f"exit {p.returncode}: {out.strip()[-300:]}")


# --- triage -----------------------------------------------------------------------------------

#: openssl behaviour that RFC 5280 does not have. Each entry: (RFC 5280 section, what openssl does).
OPENSSL_DIVERGENCES = {
    "subject-email-with-san": (
        "4.2.1.10",
        "openssl checks emailAddress attributes of the subject DN against rfc822Name constraints even "
        "when the certificate has a subjectAltName; RFC 5280 requires that only for certificates "
        "without one (pyhanko-certvalidator follows the RFC)."),
    "cn-as-dns": (
        "4.2.1.10",
        "openssl checks a hostname-like subject commonName against dNSName constraints when the leaf "
        "has no dNSName SAN (a web-PKI heuristic); RFC 5280 applies dNSName constraints to dNSName "
        "names only."),
    "idp-dn-no-cdp": (
        "6.3.3 (a), (b)(2)(i)",
        "a certificate without a CRL distribution point has, per RFC 5280, the distribution point "
        "'the certificate issuer's DN'; a CRL whose issuingDistributionPoint names exactly that DN is "
        "in scope. openssl treats any CRL whose IDP has a distribution point name as out of scope "
        "for a certificate without CDP ('unable to get certificate CRL' / 'different CRL scope')."),
    "self-issued-crl-key": (
        "6.3.3 (f); PKITS 4.5.3",
        "the only CRL in scope for a self-issued (key-rollover) CA certificate is signed with that "
        "certificate's own new key (the CA's name is the CRL issuer; RFC 5280 lets any key of the CRL "
        "issuer's name sign, PKITS 4.5.3 expects such a CRL to be usable, pyhanko-certvalidator breaks "
        "the recursion). openssl fails the CRL issuer path ('CRL path validation error'). Note: the "
        "certificate then vouches for itself; unica agreeing with pyhanko here is an RFC reading, "
        "not a proof of freshness from an independent key."),
    "nested-crl-path": (
        "6.3.3 (f)",
        "the CRL issuer of a certificate is a delegated (indirect) CRL signer whose own path contains a "
        "certificate that is in turn covered only by another delegated CRL signer. RFC 5280 validates "
        "the CRL issuer's path like any other path, revocation included. openssl validates a CRL "
        "issuer's path in a nested context and refuses any further nesting (crypto/x509/x509_vfy.c, "
        "check_crl_path: 'Don't allow recursive CRL path validation'), so it reports 'CRL path "
        "validation error' (54). Confirmed case by case: openssl, asked on its own about the CRL "
        "signer's certificate with the same inputs, accepts it."),
    "policy-tree": (
        "6.1.4 (b)(1), 6.1.5 (g)",
        "openssl 3.0 intersects the user-initial-policy-set with the wrong policies when a CA maps a "
        "policy that exists at that depth only through anyPolicy (6.1.4 (b)(1) generates the "
        "issuerDomainPolicy node from the anyPolicy node): for seed 20240610 case 9189 (ca2 maps P1 -> P2, "
        "the leaf asserts P2) it rejects user set {P1} with 'no explicit policy' (43) and accepts {P2}, "
        "the inverted result of issue #10 finding 3. Worked by hand: the tree keeps anyPolicy -> "
        "anyPolicy -> P1 -> P2 -> P2, so 6.1.5 (g) keeps P1 and drops P2. Confirmed case by case: "
        "Bouncy Castle's PKIX validator (tests/verify/PkixCheck.java, an independent implementation) "
        "accepts the path with the same policy inputs (and, like unica and pyhanko, rejects {P2})."),
    "anchor-revocation": (
        "6.1, 6.1.3 (a)(3)",
        "with -crl_check_all openssl also wants revocation data for the trust anchor itself; RFC 5280 "
        "checks certificates 1..n of the path, the trust anchor is an input. (The generator gives the "
        "root a CDP and a CRL for it, so this should not occur; listed in case it does.)"),
}

_NC_CODES = {47, 48}  # permitted / excluded subtree violation
_CRL_CODES = {3, 12, 44}  # unable to get certificate CRL, CRL has expired, different CRL scope
_CRL_PATH_ERROR = 54

#: where pyhanko-certvalidator 0.33 accepts what RFC 5280 rejects (recognised to label HARMFUL-vs-openssl
#: results whose accept comes from pyhanko; they stay HARMFUL): (RFC 5280 section, what it does)
PYHANKO_DIVERGENCES = {
    "sibling-crl-signer": (
        "6.3.3 (b)(1)",
        "pyhanko-certvalidator takes a CRL signed by any certificate (with cRLSign) that the "
        "certificate's issuer issued, although the certificate's CRL distribution point names no "
        "cRLIssuer (revinfo/validate_crl.py: 'indirect_issuer' / 'indirect_crl_issuer'); RFC 5280 "
        "requires the CRL issuer to be the certificate issuer unless the DP's cRLIssuer names it and "
        "the CRL is an indirect CRL."),
    "unknown-critical-entry-ext": (
        "5.3",
        "pyhanko-certvalidator looks at unknown critical CRL entry extensions only on the entry of the "
        "certificate being checked; RFC 5280 5.3: a CRL with any critical entry extension the "
        "application cannot process MUST NOT be used to determine the status of any certificate."),
    "delta-base-number": (
        "5.2.4",
        "pyhanko-certvalidator combines a delta CRL with any complete CRL of the same issuer, scope and "
        "AKI, without comparing the delta's BaseCRLNumber with the complete CRL's number: a delta made "
        "for a newer complete CRL un-holds (removeFromCRL) a certificate that the supplied, older "
        "complete CRL has on hold. RFC 5280 5.2.4 allows the combination only when the complete CRL's "
        "number is at least the BaseCRLNumber; openssl refuses it."),
    "stale-delta-ignored": (
        "6.3.3 (a)(2), (c)",
        "pyhanko-certvalidator drops a delta CRL that is past its nextUpdate and decides on the base "
        "CRL alone (while a missing delta is an error for it); openssl refuses the stale delta."),
}


def _nc_of(certs: Iterable[x509.Certificate]) -> list[tuple[str, x509.NameConstraints]]:
    out = []
    for c in certs:
        try:
            out.append((c.subject.rfc4514_string(), c.extensions.get_extension_for_class(x509.NameConstraints).value))
        except x509.ExtensionNotFound:
            pass
    return out


def _violates(name: str, kind: type, ncs, contains) -> bool:
    """Does ``name`` (of GeneralName type ``kind``) fall outside the permitted or inside the
    excluded subtrees of that type, over all constraints ``ncs``?"""
    for _, nc in ncs:
        perm = [s.value for s in nc.permitted_subtrees or () if isinstance(s, kind)]
        excl = [s.value for s in nc.excluded_subtrees or () if isinstance(s, kind)]
        if perm and not any(contains(b, name) for b in perm):
            return True
        if any(contains(b, name) for b in excl):
            return True
    return False


def _leaf_names(leaf: x509.Certificate):
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    emails = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return san, emails, cns


def _ski(c: x509.Certificate) -> bytes | None:
    try:
        return c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _aki(c) -> bytes | None:
    try:
        return c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _path_from(case: Case, c: x509.Certificate) -> list[x509.Certificate]:
    """``c`` and its issuers (by AKI/SKI) up to the root, as openssl's depth counts them."""
    pool = [*case.chain, *case.extra, case.root]
    out = [c]
    while out[-1] is not case.root and len(out) < 12:
        nxt = next((x for x in pool if x is not out[-1] and _ski(x) == _aki(out[-1]) and x.subject == out[-1].issuer),
                   None)
        if nxt is None:
            break
        out.append(nxt)
    return out


def _crl_paths_for(case: Case, c: x509.Certificate) -> list[list[x509.Certificate]]:
    """The CRL issuer paths openssl may have tried for ``c``: delegated signers named in its CDP or
    issued by its issuer, and other keys of its issuer's name."""
    try:
        cdp = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        named = {n.value for dp in cdp for n in dp.crl_issuer or () if isinstance(n, x509.DirectoryName)}
    except x509.ExtensionNotFound:
        named = set()
    cands = [s for s in case.extra if s.subject in named or s.issuer == c.issuer]
    # other keys of the issuer's name (self-issued key rollover): not the key that signed c
    cands += [x for x in case.chain if x.subject == c.issuer and x is not c and _ski(x) != _aki(c)]
    return [_path_from(case, x) for x in cands]


def _names_other_crl_issuer(c: x509.Certificate) -> bool:
    """Is ``c``'s revocation delegated: does its CRL distribution point name a cRLIssuer other than
    its issuer, with a CRL of that issuer at hand?"""
    try:
        cdp = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return False
    named = {n.value for dp in cdp for n in dp.crl_issuer or () if isinstance(n, x509.DirectoryName)}
    return bool(named - {c.issuer})


def _openssl_accepts_alone(case: Case, c: x509.Certificate) -> bool:
    """Does openssl, given the case's inputs, accept ``c`` as the certificate to verify?"""
    d = Path(tempfile.mkdtemp(prefix="unica-diff-nested-"))
    try:
        case.write(d)
        (d / "target.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        args = case.openssl_args(d)
        args[-1] = str(d / "target.pem")
        # the user's policy inputs are for the certificate's path, not for its CRL issuer's (6.3.3 (f))
        kept, it = [], iter(args)
        for a in it:
            if a == "-policy":
                next(it)
            elif a not in ("-explicit_policy", "-inhibit_map", "-inhibit_any"):
                kept.append(a)
        args = [*kept[:-1], "-policy", ANY_POLICY, kept[-1]]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return p.returncode == 0 and not _ERR_RE.search(p.stdout + p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


_PKIX_CHECK = Path(__file__).with_name("PkixCheck.java")


_BCPROV = Path("/usr/share/java/bcprov.jar")  # Debian's libbcprov-java (scripts/setup.sh installs it)


def _java_pkix_accepts(case: Case) -> bool:
    """Does Bouncy Castle's PKIX validator accept the case's path (leaf, chain, root) with the case's
    policy inputs, revocation off? False when java or Bouncy Castle is missing or anything goes wrong
    (so nothing is explained)."""
    java = shutil.which("java")
    if java is None or not _BCPROV.is_file():
        return False
    d = Path(tempfile.mkdtemp(prefix="unica-diff-pkix-"))
    try:
        pem = serialization.Encoding.PEM
        (d / "root.pem").write_bytes(case.root.public_bytes(pem))
        (d / "chain.pem").write_bytes(b"".join(x.public_bytes(pem) for x in (case.leaf, *reversed(case.chain))))
        args = [java, "-cp", str(_BCPROV), str(_PKIX_CHECK), str(d / "root.pem"), str(d / "chain.pem"),
                str(int(case.at.timestamp())),
                *("1" if flag else "0" for flag in (case.explicit, case.inhibit_map, case.inhibit_any)),
                *(case.policies if case.policies is not None else ())]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return p.returncode == 0 and p.stdout.startswith("accept")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _is_self_issued(c: x509.Certificate) -> bool:
    return c.subject == c.issuer


def _cert_error_class(case: Case, c: x509.Certificate, code: int, anchor_ok: bool = True) -> str | None:
    """The documented openssl divergence explaining ``code`` for certificate ``c`` (revocation side)."""
    if code in _CRL_CODES:
        if c is case.root and anchor_ok:
            return "anchor-revocation"
        tags = case.link_tags.get(c.serial_number, frozenset())
        # only when nothing else spoils that CRL (else openssl's error may have the RFC's reason)
        spoilt = any(t in ("crl:missing", "crl:stale:alone", "crl:unknown-critical-ext:alone")
                     or t.startswith("crl:unknown-critical-entry-ext") for t in tags)
        if "crl:idp-dn-no-cdp" in tags and not spoilt:
            return "idp-dn-no-cdp"
        if _idp_dn_crl_covers(case, c):
            return "idp-dn-no-cdp"
    return None


def _has_dn_idp(crl: x509.CertificateRevocationList) -> bool:
    """Does the CRL's issuingDistributionPoint name a directoryName distribution point?"""
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return False
    return any(isinstance(n, x509.DirectoryName) for n in idp.full_name or ())


def _idp_dn_crl_covers(case: Case, c: x509.Certificate) -> bool:
    """Is there, for ``c`` without a CRL distribution point, a CRL at hand that RFC 5280 takes as
    complete proof of good and that only the idp-dn-no-cdp divergence keeps from openssl: issued
    under ``c``'s issuer name and signed by a key of a CA certificate of that name in the path,
    current, direct, all reasons, IDP naming exactly the issuer's DN, no critical extension unica
    does not know (CRL or entry), and not listing ``c``? (E.g. a key-rollover CA whose old key's
    CRL covers what the new key issued, while the new key's own CRLs are split by reasons.)"""
    try:
        c.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        return False
    except x509.ExtensionNotFound:
        pass
    keys = [x.public_key() for x in (*case.chain, case.root) if x.subject == c.issuer]
    for crl in case.crls:
        if crl.issuer != c.issuer or not (crl.last_update_utc <= case.at <= crl.next_update_utc):
            continue
        try:
            idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        except x509.ExtensionNotFound:
            continue
        if (idp.full_name != [x509.DirectoryName(c.issuer)] or idp.only_some_reasons or idp.indirect_crl
                or idp.only_contains_attribute_certs or idp.only_contains_user_certs or idp.only_contains_ca_certs):
            continue
        if any(e.oid == UNKNOWN_EXT for e in crl.extensions) or _entries_with_unknown_critical(crl):
            continue
        if crl.get_revoked_certificate_by_serial_number(c.serial_number) is not None:
            continue
        if any(crl.is_signature_valid(k) for k in keys):
            return True
    return False


def explain_openssl(case: Case, o: Outcome, *, confirm: bool = True) -> str | None:
    """The documented divergence class(es) that explain every error of an openssl rejection, or None.

    ``confirm=False`` skips the classes that need an independent check in a subprocess (openssl on
    the CRL signer, Bouncy Castle on the policies): they are then not explained. :func:`run_many`
    explains cheaply first, and with the checks only the openssl rejections that unica accepts.

    Errors marked ``[CRL path]`` belong to the path of a CRL issuer; they are mapped onto the
    candidate CRL issuer paths of the certificates whose main-path error is "CRL path validation
    error", and explained certificate by certificate like main-path errors."""
    from pyhanko_certvalidator.name_trees import dns_tree_contains, email_tree_contains

    if o.verdict != "reject" or not o.errors:
        return None
    main_path = [case.leaf, *reversed(case.chain), case.root]
    ncs = _nc_of(case.chain)
    san, emails, cns = _leaf_names(case.leaf)
    classes: set[str] = set()
    crl_errors = [(code, d) for code, d, _m, in_crl in o.errors if in_crl]
    for code, depth, _msg, in_crl_path in o.errors:
        if in_crl_path:
            continue
        c = main_path[depth] if depth < len(main_path) else None
        if c is None:
            return None
        cls = None
        if code in _NC_CODES and depth == 0:
            sans_ok = True  # do the names the RFC looks at conform?
            for gn in san or ():
                if isinstance(gn, x509.RFC822Name) and _violates(gn.value, x509.RFC822Name, ncs, email_tree_contains):
                    sans_ok = False
                if isinstance(gn, x509.DNSName) and _violates(gn.value, x509.DNSName, ncs, dns_tree_contains):
                    sans_ok = False
            if sans_ok and san is not None and any(
                    _violates(e, x509.RFC822Name, ncs, email_tree_contains) for e in emails):
                cls = "subject-email-with-san"
            elif sans_ok and not any(isinstance(gn, x509.DNSName) for gn in san or ()) and any(
                    re.fullmatch(r"[a-z0-9.-]+\.[a-z]+", cn) and _violates(cn, x509.DNSName, ncs, dns_tree_contains)
                    for cn in cns):
                cls = "cn-as-dns"
        elif code == 43 and depth == 0:  # no explicit policy: openssl's policy tree against Bouncy Castle's
            cls = "policy-tree" if confirm and _java_pkix_accepts(case) else None
        elif code == _CRL_PATH_ERROR:
            if 0 < depth < len(main_path) - 1 and _is_self_issued(c) and all(
                    code2 in _CRL_CODES | {_CRL_PATH_ERROR} for code2, _ in crl_errors):
                cls = "self-issued-crl-key"
            elif crl_errors and all(code2 == _CRL_PATH_ERROR for code2, _ in crl_errors) and any(
                    all(d < len(path) and _names_other_crl_issuer(path[d]) for _, d in crl_errors)
                    and confirm and _openssl_accepts_alone(case, path[0])
                    for path in _crl_paths_for(case, c)):
                cls = "nested-crl-path"
            elif crl_errors:
                for path in _crl_paths_for(case, c):
                    sub = [_cert_error_class(case, path[d], code2, anchor_ok=False) if d < len(path) else None
                           for code2, d in crl_errors]
                    if all(sub):
                        cls = "+".join(sorted(set(sub)))
                        break
        else:
            cls = _cert_error_class(case, c, code)
        if cls is None:
            return None
        classes.update(cls.split("+"))
    return "+".join(sorted(classes)) or None


def _entries_with_unknown_critical(crl: x509.CertificateRevocationList) -> list[int]:
    return [e.serial_number for e in crl if any(ext.critical and ext.oid == UNKNOWN_EXT for ext in e.extensions)]


def _pyhanko_cert_label(case: Case, c: x509.Certificate, code: int) -> set[str]:
    out = set()
    try:
        cdp = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        named = {n.value for dp in cdp for n in dp.crl_issuer or () if isinstance(n, x509.DirectoryName)}
    except x509.ExtensionNotFound:
        named = set()
    if code in (3, 44, _CRL_PATH_ERROR):
        if any(s.issuer == c.issuer and s.subject not in named for s in case.extra):
            out.add("sibling-crl-signer")
    signers = {x.subject for x in case.extra}
    if code in (3, 36, 44):
        for crl in case.crls:
            bad = _entries_with_unknown_critical(crl)
            # an entry of another certificate: another serial, or (indirect CRL) possibly another issuer's
            if bad and ((crl.issuer == c.issuer and c.serial_number not in bad) or crl.issuer in signers):
                out.add("unknown-critical-entry-ext")
    if code in (12, 23):
        complete = {}
        for crl in case.crls:
            if crl.issuer != c.issuer:
                continue
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            try:
                base = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
            except x509.ExtensionNotFound:
                if crl.get_revoked_certificate_by_serial_number(c.serial_number) is not None:
                    complete[number] = crl
                continue
            if crl.next_update_utc < case.at:
                out.add("stale-delta-ignored")
            e = crl.get_revoked_certificate_by_serial_number(c.serial_number)
            if e is not None and complete and all(n < base for n in complete) and any(
                    isinstance(x.value, x509.CRLReason) and x.value.reason == x509.ReasonFlags.remove_from_crl
                    for x in e.extensions):
                out.add("delta-base-number")
    return out


def explain_pyhanko_accept(case: Case, o: Outcome) -> str | None:
    """For an openssl rejection that pyhanko-certvalidator did not share: the known pyhanko
    divergences (PYHANKO_DIVERGENCES) present where openssl failed, or None."""
    if o.verdict != "reject":
        return None
    main_path = [case.leaf, *reversed(case.chain), case.root]
    labels: set[str] = set()
    crl_errors = [(code, d) for code, d, _m, in_crl in o.errors if in_crl]
    for code, depth, _msg, in_crl_path in o.errors:
        if in_crl_path or depth >= len(main_path):
            continue
        c = main_path[depth]
        labels |= _pyhanko_cert_label(case, c, code)
        if code == _CRL_PATH_ERROR:
            for path in _crl_paths_for(case, c):
                for code2, d in crl_errors:
                    if d < len(path):
                        labels |= _pyhanko_cert_label(case, path[d], code2)
    return "+".join(sorted(labels)) or None


@dataclasses.dataclass(frozen=True)
class Result:
    seed: int
    index: int
    klass: str
    #: peers against which unica's accept is harmful ("pyhanko", "openssl")
    harmful: tuple[str, ...]
    unica: Outcome
    pyhanko: Outcome
    openssl: Outcome
    features: frozenset[str]
    description: str
    #: the documented openssl divergence(s) when openssl's rejection was explained
    divergence: str | None = None
    #: pyhanko and openssl disagree (neither explained by a documented divergence)
    peers_disagree: bool = False
    #: where openssl rejected (undocumented) and pyhanko accepted or unica accepted: the known
    #: pyhanko-certvalidator divergences (PYHANKO_DIVERGENCES) present at the failing certificate
    pyhanko_label: str | None = None
    times: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # generate, unica, pyhanko, openssl

    def report(self) -> str:
        return (f"[{self.klass}{' vs ' + '+'.join(self.harmful) if self.harmful else ''}] "
                f"seed={self.seed} index={self.index}\n{self.description}\n"
                f"  unica:   {self.unica}\n  pyhanko: {self.pyhanko}\n  openssl: {self.openssl}"
                + (f"\n  openssl divergence: {self.divergence}" if self.divergence else "")
                + (f"\n  known pyhanko-certvalidator divergence present: {self.pyhanko_label} "
                   f"(RFC 5280 {'; '.join(PYHANKO_DIVERGENCES[x][0] for x in self.pyhanko_label.split('+'))})"
                   if self.pyhanko_label else ""))


def classify(u: Outcome, p: Outcome, o: Outcome, divergence: str | None) -> tuple[str, tuple[str, ...], bool]:
    """-> (class, harmful peers, pyhanko and openssl disagree). ``divergence``: explain_openssl(case, o)."""
    o_reject = o.verdict == "reject" and divergence is None
    peers_disagree = (p.verdict in ("accept", "reject") and o.verdict in ("accept", "reject")
                      and (p.verdict == "accept") != (o.verdict == "accept") and divergence is None)
    if u.verdict == "error":
        return "unica-error", (), peers_disagree
    if u.verdict == "accept":
        harmful = tuple(n for n, bad in (("pyhanko", p.verdict == "reject"), ("openssl", o_reject)) if bad)
        if harmful:
            return "HARMFUL", harmful, peers_disagree
        if divergence is not None:
            return "openssl-divergence", (), peers_disagree
        return "agree-accept", (), peers_disagree
    if p.verdict == "accept" or o.verdict == "accept":
        return "unica-rejects-only", (), peers_disagree
    return "agree-reject", (), peers_disagree


# --- running: the reference engines never share a process with unica ------------------------------
#
# unica.verify adapts pyhanko-certvalidator in place when imported (it adds iPAddress name-constraint
# matching to pyhanko_certvalidator.name_trees), so a pyhanko run in a process that imported unica
# would not be an independent reference. pyhanko and openssl therefore run in "reference" worker
# processes started with the spawn method (fresh interpreters that never import unica), unica in
# separate worker processes. Cases are regenerated from (seed, index) on each side.


def _assert_no_unica() -> None:
    if any(m == "unica" or m.startswith("unica.") for m in sys.modules):
        raise RuntimeError("pyhanko-certvalidator must be run in a process that has not imported unica "
                           "(unica.verify patches pyhanko_certvalidator); use run_many / run_case")


@dataclasses.dataclass(frozen=True)
class _RefOut:
    pyhanko: Outcome
    openssl: Outcome
    divergence: str | None
    pyhanko_label: str | None
    features: frozenset[str]
    description: str
    times: tuple[float, float, float]  # generate, pyhanko, openssl


def _ref_job(args) -> _RefOut:
    seed, index, openssl = args
    _assert_no_unica()
    t0 = time.perf_counter()
    case = generate(seed, index)
    t1 = time.perf_counter()
    p = run_pyhanko(case)
    t2 = time.perf_counter()
    o = run_openssl(case, _WORKER_DIR) if openssl else Outcome("skip", "openssl not run (--no-openssl)")
    t3 = time.perf_counter()
    div = explain_openssl(case, o, confirm=False) if o.verdict == "reject" else None
    plabel = explain_pyhanko_accept(case, o) if o.verdict == "reject" and div is None else None
    return _RefOut(p, o, div, plabel, case.features, case.describe(), (t1 - t0, t2 - t1, t3 - t2))


def _confirm_job(args) -> tuple[str | None, str | None]:
    """(divergence, pyhanko label) for an openssl rejection that unica accepts, with the
    independent checks that the first, cheap explanation skipped."""
    seed, index, o = args
    _assert_no_unica()
    case = generate(seed, index)
    div = explain_openssl(case, o)
    return div, (explain_pyhanko_accept(case, o) if div is None else None)


def _unica_job(args) -> tuple[Outcome, float, float]:
    seed, index = args
    t0 = time.perf_counter()
    case = generate(seed, index)
    t1 = time.perf_counter()
    u = run_unica(case)
    return u, t1 - t0, time.perf_counter() - t1


_WORKER_DIR: Path | None = None


def _quiet() -> None:
    """pyhanko-certvalidator logs every failed CRL-issuer path with a traceback (slow and noisy)."""
    import logging

    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)


def _worker_init() -> None:
    import atexit

    global _WORKER_DIR
    _WORKER_DIR = _workdir()
    atexit.register(shutil.rmtree, _WORKER_DIR, True)
    _quiet()
    key_pool()


@dataclasses.dataclass
class Summary:
    seed: int
    results: list[Result]
    wall: float
    unica_keywords_missing: tuple[str, ...] = ()

    @property
    def classes(self) -> collections.Counter:
        return collections.Counter(r.klass for r in self.results)

    def harmful(self, peer: str | None = None) -> list[Result]:
        return [r for r in self.results if r.harmful and (peer is None or peer in r.harmful)]

    def by_feature(self) -> dict[str, collections.Counter]:
        out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for r in self.results:
            for f in r.features:
                out[f][r.klass] += 1
        return out

    def engine_times(self) -> dict[str, float]:
        names = ("generate", "unica", "pyhanko", "openssl")
        return {n: sum(r.times[i] for r in self.results) for i, n in enumerate(names)}

    def divergences(self) -> collections.Counter:
        c: collections.Counter = collections.Counter()
        for r in self.results:
            for d in (r.divergence or "").split("+"):
                if d:
                    c[d] += 1
        return c

    def pyhanko_unsupported(self) -> int:
        return sum(1 for r in self.results if r.pyhanko.verdict == "unsupported")

    def peer_disagreements(self) -> list[Result]:
        return [r for r in self.results if r.peers_disagree]

    def pyhanko_labels(self) -> collections.Counter:
        return collections.Counter(r.pyhanko_label or "unrecognised" for r in self.results
                                   if r.peers_disagree and r.pyhanko.verdict == "accept")


def _result(seed: int, index: int, u: Outcome, t_unica: float, ref: _RefOut) -> Result:
    klass, harmful, disagree = classify(u, ref.pyhanko, ref.openssl, ref.divergence)
    return Result(seed, index, klass, harmful, u, ref.pyhanko, ref.openssl, ref.features, ref.description,
                  ref.divergence, disagree, ref.pyhanko_label if (disagree or harmful) else None,
                  (ref.times[0], t_unica, ref.times[1], ref.times[2]))


def run_many(seed: int, n: int, *, start: int = 0, workers: int | None = None, openssl: bool = True,
             progress=None) -> Summary:
    """Cases ``start .. start+n-1`` of ``seed``. ``workers`` processes in all (default: CPU count,
    at least 2): half run pyhanko-certvalidator and openssl, half run unica."""
    import concurrent.futures as cf
    import multiprocessing as mp

    workers = max(2, workers or os.cpu_count() or 2)
    n_ref = max(1, workers // 2)
    n_uni = max(1, workers - n_ref)
    ctx = mp.get_context("spawn")
    idx = list(range(start, start + n))
    chunk = max(1, min(16, n // (4 * workers) or 1))
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(n_ref, mp_context=ctx, initializer=_worker_init) as ref_pool, \
            cf.ProcessPoolExecutor(n_uni, mp_context=ctx, initializer=_worker_init) as uni_pool:
        refs = ref_pool.map(_ref_job, [(seed, i, openssl) for i in idx], chunksize=chunk)
        unis = uni_pool.map(_unica_job, [(seed, i) for i in idx], chunksize=chunk)
        results, refs_kept, todo = [], [], []
        for i, ref, (u, tg, tu) in zip(idx, refs, unis):
            if u.verdict == "accept" and ref.openssl.verdict == "reject" and ref.divergence is None:
                todo.append(len(results))  # confirmed below, with the checks that cost a subprocess
            results.append(_result(seed, i, u, tu, ref))
            refs_kept.append(ref)
            if progress:
                progress(len(results))
        confirmed = ref_pool.map(_confirm_job, [(seed, results[k].index, results[k].openssl) for k in todo])
        for k, (div, plabel) in zip(todo, confirmed):
            ref = dataclasses.replace(refs_kept[k], divergence=div, pyhanko_label=plabel)
            results[k] = _result(seed, results[k].index, results[k].unica, results[k].times[1], ref)
    missing = sorted({m.group(1) for r in results
                      for m in [re.match(r"keyword (\w+) not supported", r.unica.detail)] if m})
    return Summary(seed, results, time.perf_counter() - t0, tuple(missing))


def run_case(seed: int, index: int, *, openssl: bool = True) -> Result:
    """One case, with the same process separation as :func:`run_many`."""
    return run_many(seed, 1, start=index, workers=2, openssl=openssl).results[0]


def write_reproducers(results: Iterable[Result], base: Path | None = None) -> Path:
    """Each result's case as PEM files + case.txt under ``base`` (a new temp dir by default)."""
    base = base or Path(tempfile.mkdtemp(prefix="unica-differential-"))
    for r in results:
        d = generate(r.seed, r.index).write(base / f"seed{r.seed}-case{r.index}")
        with open(d / "case.txt", "a") as f:
            f.write("\n" + r.report() + "\n")
    return base


def format_summary(s: Summary, *, features: bool = True) -> str:
    classes = ["agree-accept", "agree-reject", "HARMFUL", "openssl-divergence", "unica-rejects-only", "unica-error"]
    lines = [f"{len(s.results)} cases, seed {s.seed}, {s.wall:.1f} s wall"]
    c = s.classes
    lines.append("  " + "  ".join(f"{k}={c.get(k, 0)}" for k in classes))
    lines.append(f"  harmful vs pyhanko={len(s.harmful('pyhanko'))}  harmful vs openssl={len(s.harmful('openssl'))}"
                 f"  pyhanko unsupported={s.pyhanko_unsupported()}  pyhanko/openssl disagree={len(s.peer_disagreements())}")
    if s.divergences():
        lines.append("  openssl divergences: " + ", ".join(f"{k}={v}" for k, v in sorted(s.divergences().items())))
    if s.pyhanko_labels():
        lines.append("  pyhanko accepts / openssl rejects (RFC 5280 sides with openssl unless unrecognised): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(s.pyhanko_labels().items())))
    if s.unica_keywords_missing:
        lines.append("  unica lacks keywords (passed only when not default): " + ", ".join(s.unica_keywords_missing))
    kw = collections.Counter(r.unica.detail for r in s.results if r.unica.verdict == "error" and "keyword" in r.unica.detail)
    if kw:
        lines.append("  unica keyword errors: " + ", ".join(f"{k} x{v}" for k, v in kw.items()))
    t = s.engine_times()
    tot = sum(t.values()) or 1.0
    lines.append("  time per engine: " + ", ".join(f"{k} {v:.1f} s ({100 * v / tot:.0f}%)" for k, v in t.items()))
    if features:
        short = {"agree-accept": "acc", "agree-reject": "rej", "HARMFUL": "HARM", "openssl-divergence": "odiv",
                 "unica-rejects-only": "uonly", "unica-error": "uerr"}
        lines.append(f"  {'feature':52} {'n':>5} " + " ".join(f"{short[k]:>5}" for k in classes))
        for f, cnt in sorted(s.by_feature().items()):
            lines.append(f"  {f:52} {sum(cnt.values()):5} " + " ".join(f"{cnt.get(k, 0):5}" for k in classes))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--index", type=int, help="run (and show) this one case")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--no-openssl", action="store_true")
    ap.add_argument("--write", type=Path, help="with --index: write the case's PEMs here")
    ap.add_argument("--show", default="HARMFUL", help="print results of these classes (comma list, or 'all')")
    a = ap.parse_args(argv)
    if a.index is not None:
        case = generate(a.seed, a.index)
        if a.write:
            case.write(a.write)
            print(f"written to {a.write}")
        r = run_case(a.seed, a.index, openssl=not a.no_openssl)
        print(r.report())
        return 1 if r.harmful else 0
    s = run_many(a.seed, a.n, start=a.start, workers=a.workers, openssl=not a.no_openssl)
    print(format_summary(s))
    show = None if a.show == "all" else set(a.show.split(","))
    for r in s.results:
        if show is None or r.klass in show:
            print()
            print(r.report())
    return 1 if s.harmful() else 0


if __name__ == "__main__":
    sys.exit(main())
