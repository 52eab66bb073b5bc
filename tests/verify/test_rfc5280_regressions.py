"""Regression tests for issue #10: hand-crafted RFC 5280 / EN 319 102-1 cases.

Each test is named for a finding of the issue (f1 ... f9) and gives the RFC section. Expected
results are worked out from RFC 5280 (and the indications from the contract in
notes/verify-contract.md); every harmful-accept case is also rejected here by an independent
validator (the OpenSSL 3 command line and/or pyhanko-certvalidator, see crafted.py), and every
case that must pass is accepted by them, so that a wrong expectation cannot hide in a test.

Where the two independent validators disagree, the docstring says so and only the one that
follows the RFC is asserted.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.x509.name import _ASN1Type

from unica.errors import MalformedInput
from unica.verify import (
    OFF,
    OFFLINE_HARD_FAIL,
    SOFT_FAIL,
    Indication,
    SubIndication,
    ValidationReport,
    Verifier,
    validate_certificate,
)

from tests.verify.crafted import (
    ALL_REASONS,
    ANY_POLICY,
    AT,
    Entry,
    build_cert,
    build_crl,
    certvalidator,
    closed_port,
    crl_of,
    dp_relative,
    dp_uri,
    generalized_not_after,
    idp,
    name,
    openssl_verify,
    policies,
    policy_mappings,
    resign_cert,
    root,
)
from tests.verify.pki import DAY, NOW, PKI, Ident, blank_pdf, make_crl, pyhanko_sign, pyhanko_sign_pdf

I, ST = Indication, SubIndication
PASSED = (I.TOTAL_PASSED, None)
CHAIN = (I.INDETERMINATE, ST.CHAIN_CONSTRAINTS_FAILURE)
POLICY = (I.INDETERMINATE, ST.POLICY_PROCESSING_ERROR)
TRY_LATER = (I.INDETERMINATE, ST.TRY_LATER)
REVOKED = (I.TOTAL_FAILED, ST.REVOKED)
CRYPTO = (I.INDETERMINATE, ST.CRYPTO_CONSTRAINTS_FAILURE)


def _result(rep) -> tuple:
    return rep.indication, rep.sub_indication


def _validate(leaf: Ident, anchor: Ident, inter=(), *, crls=None, **kw) -> ValidationReport:
    """Validate at the fixed time AT; with ``crls`` under offline hard-fail, else revocation off."""
    kw.setdefault("revocation", OFFLINE_HARD_FAIL if crls is not None else OFF)
    return validate_certificate(leaf.cert, trust=[anchor.cert], intermediates=[c.cert for c in inter],
                                at=AT, crls=crls or (), **kw)


def _expect(rep: ValidationReport, expected: tuple) -> None:
    assert _result(rep) == expected, (rep.messages, [(e.source, e.status, e.message) for e in rep.revocation])


def _oracles(tmp_path, leaf: Ident, anchor: Ident, inter=(), *, crls=None, ok: bool, openssl=True,
             cv=True, openssl_args=(), **cv_kw) -> None:
    """The independent validators agree with the expectation ``ok`` (accepted / refused)."""
    others = [c.cert for c in inter]
    if openssl:
        o_ok, out = openssl_verify(tmp_path, leaf.cert, roots=[anchor.cert], untrusted=others, crls=crls or (),
                                   args=openssl_args)
        assert o_ok is ok, f"openssl verify: {out}"
    if cv:
        c_ok, res = certvalidator(leaf.cert, roots=[anchor.cert], others=others, crls=crls or (),
                                  revocation="hard-fail" if crls is not None else "soft-fail", **cv_kw)
        assert c_ok is ok, f"pyhanko-certvalidator: {res}"


# --- f1: directoryName and rfc822Name name constraints ------------------------------------


def _nc_ca(anchor, permitted=None, excluded=None):
    nc = x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)
    return build_cert(name(("C", "CN"), ("O", "Good Org"), ("CN", "Constrained CA")), anchor, ca=True,
                      extensions=[(nc, True)])


@pytest.mark.parametrize("org,expected", [("Good Org", PASSED), ("Evil Org", CHAIN)])
def test_f1_directory_name_permitted_subtree(tmp_path, org, expected):
    """RFC 5280 4.2.1.10 and 6.1.3 (b): a subject DN outside every permitted directoryName
    subtree is refused (the old code accepted it); inside one, it passes."""
    anchor = root()
    ca = _nc_ca(anchor, permitted=[x509.DirectoryName(name(("C", "CN"), ("O", "Good Org")))])
    leaf = build_cert(name(("C", "CN"), ("O", org), ("CN", "dn leaf")), ca)
    _expect(_validate(leaf, anchor, [ca]), expected)
    _oracles(tmp_path, leaf, anchor, [ca], ok=expected == PASSED)


@pytest.mark.parametrize("org,expected", [("Fine Org", PASSED), ("Bad Org", CHAIN)])
def test_f1_directory_name_excluded_subtree(tmp_path, org, expected):
    """RFC 5280 4.2.1.10 and 6.1.3 (b): a subject DN inside an excluded directoryName subtree is
    refused (the old code accepted it)."""
    anchor = root()
    ca = _nc_ca(anchor, excluded=[x509.DirectoryName(name(("C", "CN"), ("O", "Bad Org")))])
    leaf = build_cert(name(("C", "CN"), ("O", org), ("CN", "dn leaf")), ca)
    _expect(_validate(leaf, anchor, [ca]), expected)
    _oracles(tmp_path, leaf, anchor, [ca], ok=expected == PASSED)


@pytest.mark.parametrize("email,expected", [("seal@good.example", PASSED), ("seal@evil.example", CHAIN)])
def test_f1_rfc822_constraint_applies_to_subject_email_address(tmp_path, email, expected):
    """RFC 5280 4.2.1.10: with no subjectAltName, rfc822Name constraints apply to the
    emailAddress attribute of the subject DN (the old code ignored it)."""
    anchor = root()
    ca = _nc_ca(anchor, permitted=[x509.RFC822Name("good.example")])
    leaf = build_cert(name(("C", "CN"), ("CN", "mail leaf"), ("E", email)), ca)
    _expect(_validate(leaf, anchor, [ca]), expected)
    _oracles(tmp_path, leaf, anchor, [ca], ok=expected == PASSED)


# --- f2: CRL scope with nameRelativeToCRLIssuer --------------------------------------------


@pytest.mark.parametrize("leaf_dp", ["uri", "relative"])
def test_f2_crl_with_other_relative_idp_is_not_proof_of_good(tmp_path, leaf_dp):
    """RFC 5280 5.2.5 and 6.3.3 (b)(2)(i): a CRL whose issuingDistributionPoint names another
    partition by nameRelativeToCRLIssuer (CN=Partition 2) does not cover a certificate whose
    CRL distribution point is a URI or the relative name CN=Partition 1. With no other CRL the
    status is unknown: INDETERMINATE/TRY_LATER under hard-fail (the old code took it as
    proof of good)."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Partitioned CA")), anchor, ca=True)
    dp = dp_uri("http://crl.unica.test/p1.crl") if leaf_dp == "uri" else dp_relative("Partition 1")
    leaf = build_cert(name(("CN", "partition leaf")), ca, extensions=[(x509.CRLDistributionPoints([dp]), False)])
    crls = [crl_of(anchor), crl_of(ca, idp=idp(relative_name="Partition 2"))]
    _expect(_validate(leaf, anchor, [ca], crls=crls), TRY_LATER)
    _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=False)


@pytest.mark.parametrize("revoked", [False, True])
def test_f2_crl_with_matching_relative_idp_is_used(tmp_path, revoked):
    """RFC 5280 6.3.3 (b)(2)(i): CDP nameRelativeToCRLIssuer CN=Partition 1 and a CRL whose
    IDP has the same relative name (both relative to the CA's name): the CRL is used."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Partitioned CA")), anchor, ca=True)
    leaf = build_cert(name(("CN", "partition leaf")), ca,
                      extensions=[(x509.CRLDistributionPoints([dp_relative("Partition 1")]), False)])
    entries = [Entry(leaf.cert.serial_number)] if revoked else []
    crls = [crl_of(anchor), crl_of(ca, entries, idp=idp(relative_name="Partition 1"))]
    rep = _validate(leaf, anchor, [ca], crls=crls)
    _expect(rep, REVOKED if revoked else PASSED)
    _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=not revoked)


# --- f3: policy processing with mappings, inhibit inputs, reported policies ---------------

P_ISS = x509.ObjectIdentifier("1.3.6.1.4.1.99999.10.1")  # issuerDomainPolicy (trust anchor's domain)
P_SUB = x509.ObjectIdentifier("1.3.6.1.4.1.99999.10.2")  # subjectDomainPolicy (the leaf's domain)
P1 = x509.ObjectIdentifier("1.3.6.1.4.1.99999.10.3")


@pytest.fixture(scope="module")
def mapped():
    """anchor -> CA {policies P_ISS, policyMappings P_ISS -> P_SUB (critical)} -> leaf {P_SUB}."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Mapping CA")), anchor, ca=True,
                    extensions=[(policies(P_ISS), False), (policy_mappings((P_ISS, P_SUB)), True)])
    leaf = build_cert(name(("CN", "mapped leaf")), ca, extensions=[(policies(P_SUB), False)])
    return anchor, ca, leaf


def test_f3_policy_mapping_user_set_in_issuer_domain_passes(tmp_path, mapped):
    """RFC 5280 6.1.5 (g)(iii): the user-initial-policy-set is intersected with the
    authority-constrained set, i.e. the valid_policy of the nodes whose parent is anyPolicy,
    which is the policy in the trust anchor's domain: P_ISS. The leaf's P_SUB is the
    mapping of P_ISS, so user-initial-policy-set {P_ISS} with initial-explicit-policy passes
    (the old code intersected with the leaf-level P_SUB and failed this path). The valid
    policy is reported as P_ISS as understood by the relying party, P_SUB as written on the
    leaf (pyhanko-certvalidator's user_domain_policy_id / issuer_domain_policy_id)."""
    anchor, ca, leaf = mapped
    rep = _validate(leaf, anchor, [ca], policies=[P_ISS.dotted_string], require_explicit_policy=True)
    _expect(rep, PASSED)
    assert {(p.policy, p.issuer_domain_policy) for p in rep.valid_policies} == \
        {(P_ISS.dotted_string, P_SUB.dotted_string)}
    _oracles(tmp_path, leaf, anchor, [ca], ok=True, openssl_args=["-policy", P_ISS.dotted_string, "-explicit_policy"],
             policies=[P_ISS.dotted_string], explicit_policy=True)


def test_f3_policy_mapping_user_set_in_subject_domain_fails(tmp_path, mapped):
    """RFC 5280 6.1.5 (g)(iii)(2): user-initial-policy-set {P_SUB}: the only node whose parent
    is anyPolicy has valid_policy P_ISS, which is not in the set, so it is deleted with its
    child and the tree is NULL; with initial-explicit-policy the path fails (the old code
    passed it)."""
    anchor, ca, leaf = mapped
    rep = _validate(leaf, anchor, [ca], policies=[P_SUB.dotted_string], require_explicit_policy=True)
    _expect(rep, POLICY)
    _oracles(tmp_path, leaf, anchor, [ca], ok=False, openssl_args=["-policy", P_SUB.dotted_string, "-explicit_policy"],
             policies=[P_SUB.dotted_string], explicit_policy=True)


def test_f3_any_policy_oid_as_user_set_means_any_policy(tmp_path, mapped):
    """RFC 5280 6.1.1 (c): a user-initial-policy-set given as the anyPolicy OID 2.5.29.32.0 is
    the special value any-policy; with initial-explicit-policy the mapped path passes."""
    anchor, ca, leaf = mapped
    rep = _validate(leaf, anchor, [ca], policies=[ANY_POLICY.dotted_string], require_explicit_policy=True)
    _expect(rep, PASSED)
    _oracles(tmp_path, leaf, anchor, [ca], ok=True, openssl_args=["-policy", ANY_POLICY.dotted_string,
                                                                   "-explicit_policy"],
             explicit_policy=True)


@pytest.mark.parametrize("inhibit,expected", [(False, PASSED), (True, POLICY)])
def test_f3_initial_policy_mapping_inhibit(tmp_path, mapped, inhibit, expected):
    """RFC 5280 6.1.2 (e) and 6.1.4 (b)(2): with initial-policy-mapping-inhibit, policy_mapping
    starts at 0, so the CA's mapped node P_ISS is deleted and the tree is NULL; with
    initial-explicit-policy that fails. Without it the same path passes."""
    anchor, ca, leaf = mapped
    rep = _validate(leaf, anchor, [ca], require_explicit_policy=True, inhibit_policy_mapping=inhibit)
    _expect(rep, expected)
    args = ["-policy", ANY_POLICY.dotted_string, "-explicit_policy"] + (["-inhibit_map"] if inhibit else [])
    _oracles(tmp_path, leaf, anchor, [ca], ok=expected == PASSED, openssl_args=args, explicit_policy=True,
             inhibit_mapping=inhibit)


@pytest.mark.parametrize("inhibit,expected", [(False, PASSED), (True, POLICY)])
def test_f3_initial_any_policy_inhibit(tmp_path, inhibit, expected):
    """RFC 5280 6.1.2 (d) and 6.1.3 (d)(2): with initial-any-policy-inhibit, inhibit_anyPolicy
    starts at 0, so a CA that asserts only anyPolicy adds no node and the tree is NULL; with
    initial-explicit-policy that fails. Without it, anyPolicy admits the leaf's P1."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "AnyPolicy CA")), anchor, ca=True,
                    extensions=[(policies(ANY_POLICY), False)])
    leaf = build_cert(name(("CN", "p1 leaf")), ca, extensions=[(policies(P1), False)])
    rep = _validate(leaf, anchor, [ca], require_explicit_policy=True, inhibit_any_policy=inhibit)
    _expect(rep, expected)
    args = ["-policy", ANY_POLICY.dotted_string, "-explicit_policy"] + (["-inhibit_any"] if inhibit else [])
    _oracles(tmp_path, leaf, anchor, [ca], ok=expected == PASSED, openssl_args=args, explicit_policy=True,
             inhibit_any=inhibit)


def test_f3_valid_policies_report_qualifiers(tmp_path):
    """RFC 5280 6.1.5 (g) and 4.2.1.4: the report lists the valid policy P1 with the CPS URI
    and the user notice's explicitText qualifiers of the leaf's policy information."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "AnyPolicy CA")), anchor, ca=True,
                    extensions=[(policies(ANY_POLICY), False)])
    cps = "http://cps.unica.test/seal-cps.pdf"
    text = "Seal certificate for customs declarations only"
    leaf = build_cert(name(("CN", "qualified leaf")), ca, extensions=[(policies(
        (P1, [cps, x509.UserNotice(None, text)])), False)])
    rep = _validate(leaf, anchor, [ca], policies=[P1.dotted_string], require_explicit_policy=True)
    _expect(rep, PASSED)
    (vp,) = rep.valid_policies
    assert (vp.policy, vp.issuer_domain_policy) == (P1.dotted_string, P1.dotted_string)
    kinds = {(q.kind, q.cps_uri, q.notice_text) for q in vp.qualifiers}
    assert kinds == {("cps", cps, None), ("user-notice", None, text)}
    _oracles(tmp_path, leaf, anchor, [ca], ok=True, openssl_args=["-policy", P1.dotted_string, "-explicit_policy"],
             policies=[P1.dotted_string], explicit_policy=True)


# --- f4: CA profile rules (RFC 5280 section 4) only with strict=True -----------------------


def _profile_case(case):
    anchor = root()
    if case == "non-critical policyConstraints":  # 4.2.1.11: MUST be critical
        pc = x509.PolicyConstraints(require_explicit_policy=None, inhibit_policy_mapping=2)
        ca = build_cert(name(("C", "CN"), ("CN", "Profile CA")), anchor, ca=True, extensions=[(pc, False)])
        leaf = build_cert(name(("CN", "profile leaf")), ca)
    elif case == "non-critical basicConstraints":  # 4.2.1.9: MUST be critical in a CA certificate
        ca = build_cert(name(("C", "CN"), ("CN", "Profile CA")), anchor, ca=True, bc_critical=False)
        leaf = build_cert(name(("CN", "profile leaf")), ca)
    else:  # 4.1.2.5: validity dates through 2049 MUST be UTCTime
        ca = build_cert(name(("C", "CN"), ("CN", "Profile CA")), anchor, ca=True)
        leaf = build_cert(name(("CN", "profile leaf")), ca)
        leaf = Ident(generalized_not_after(leaf.cert, ca.key), leaf.key)
    return anchor, ca, leaf


@pytest.mark.parametrize("case", ["non-critical policyConstraints", "non-critical basicConstraints",
                                  "GeneralizedTime notAfter before 2050"])
def test_f4_ca_profile_rules_apply_only_with_strict(tmp_path, case):
    """RFC 5280 4.1.2.5, 4.2.1.9, 4.2.1.11 are rules for conforming CAs, not section 6 path
    validation rules: by default such a path passes (the old code refused it); strict=True
    applies the profile and refuses it (INDETERMINATE/CHAIN_CONSTRAINTS_FAILURE)."""
    anchor, ca, leaf = _profile_case(case)
    _expect(_validate(leaf, anchor, [ca]), PASSED)
    _expect(_validate(leaf, anchor, [ca], strict=True), CHAIN)
    _oracles(tmp_path, leaf, anchor, [ca], ok=True)


# --- f5: CRLs not signed by the certificate's issuer key ----------------------------------


@pytest.mark.parametrize("revoked", [False, True])
def test_f5a_crl_signed_by_separate_crl_signing_certificate(tmp_path, revoked):
    """RFC 5280 6.3.3 (f): the CA (same name) signs CRLs with another key, certified by the CA
    itself in a certificate with keyUsage cRLSign. Its path is validated to the same trust
    anchor (and it is itself checked against a CRL signed by the CA key), and the CRL it
    signs is then used: good passes, revoked fails (the old code tried only the CA's key)."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Split Key CA")), anchor, ca=True)
    leaf_dp, signer_dp = "http://crl.unica.test/split-leaf.crl", "http://crl.unica.test/split-signer.crl"
    signer = build_cert(ca.cert.subject, ca, ku=dict(crl_sign=True), cdp=signer_dp)
    leaf = build_cert(name(("CN", "split key leaf")), ca, cdp=leaf_dp)
    entries = [Entry(leaf.cert.serial_number)] if revoked else []
    crls = [crl_of(anchor),
            build_crl(ca.cert.subject, signer.key, entries, number=5, idp=idp(full_name=[leaf_dp])),
            build_crl(ca.cert.subject, ca.key, [], number=6, idp=idp(full_name=[signer_dp]))]
    _expect(_validate(leaf, anchor, [ca, signer], crls=crls), REVOKED if revoked else PASSED)
    _oracles(tmp_path, leaf, anchor, [ca, signer], crls=crls, ok=not revoked)


@pytest.mark.parametrize("case", ["good", "revoked", "same serial without certificateIssuer"])
def test_f5b_indirect_crl(tmp_path, case):
    """RFC 5280 5.2.5, 5.3.3, 6.3.3 (b)(1): the certificate's distribution point names a
    cRLIssuer; that authority's CRL has IDP indirectCRL=TRUE and a certificateIssuer entry
    extension (which carries over to the following entries) naming the CA. A leaf listed
    under the CA's name is revoked; a good leaf passes; an entry with the same serial but
    without certificateIssuer belongs to the CRL issuer itself and revokes nothing of the CA."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Indirect Issuing CA")), anchor, ca=True)
    authority = build_cert(name(("C", "CN"), ("CN", "Indirect CRL Authority")), anchor, ku=dict(crl_sign=True))
    url = "http://crl.unica.test/indirect.crl"
    cdp = x509.CRLDistributionPoints([dp_uri(url, crl_issuer=authority.cert.subject)])
    leaf = build_cert(name(("CN", "indirect leaf")), ca, extensions=[(cdp, False)])
    other = build_cert(name(("CN", "other leaf")), ca)
    if case == "same serial without certificateIssuer":
        entries = [Entry(leaf.cert.serial_number)]
    else:
        entries = [Entry(other.cert.serial_number, certificate_issuer=ca.cert.subject)]
        if case == "revoked":
            entries.append(Entry(leaf.cert.serial_number))  # still under the CA's name
    crls = [crl_of(anchor), build_crl(authority.cert.subject, authority.key, entries, number=3,
                                      idp=idp(full_name=[url], indirect=True))]
    expected = REVOKED if case == "revoked" else PASSED
    _expect(_validate(leaf, anchor, [ca, authority], crls=crls), expected)
    _oracles(tmp_path, leaf, anchor, [ca, authority], crls=crls, ok=expected == PASSED)


R = x509.ReasonFlags
REASONS_A = frozenset({R.key_compromise, R.ca_compromise, R.affiliation_changed, R.superseded})
REASONS_B = ALL_REASONS - REASONS_A


@pytest.mark.parametrize("parts,revoked,expected", [
    ("A+B", False, PASSED), ("A", False, TRY_LATER), ("B", False, TRY_LATER), ("A+B", True, REVOKED)])
def test_f5c_only_some_reasons(tmp_path, parts, revoked, expected):
    """RFC 5280 5.2.5 and 6.3.3 (d), (j)-(l): two CRLs of the CA with onlySomeReasons covering
    the reason codes between them. Only both together cover all reasons and prove the status
    good; with one part missing the status is unknown (INDETERMINATE/TRY_LATER under
    hard-fail). A revocation (keyCompromise) listed in its partition is found."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Reasons CA")), anchor, ca=True)
    url = "http://crl.unica.test/reasons.crl"
    leaf = build_cert(name(("CN", "reasons leaf")), ca, cdp=url)
    entries = [Entry(leaf.cert.serial_number, reason=R.key_compromise)] if revoked else []
    crls = [crl_of(anchor)]
    if "A" in parts:
        crls.append(crl_of(ca, entries, number=7, idp=idp(full_name=[url], only_some_reasons=REASONS_A)))
    if "B" in parts:
        crls.append(crl_of(ca, [], number=8, idp=idp(full_name=[url], only_some_reasons=REASONS_B)))
    _expect(_validate(leaf, anchor, [ca], crls=crls), expected)
    _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=expected == PASSED)


@pytest.mark.parametrize("freshest_in", ["certificate and base CRL", "certificate"])
def test_f5d_delta_crl_applied_to_its_base(tmp_path, freshest_in):
    """RFC 5280 5.2.4, 5.2.6, 6.3.3 (a)(1)(i), (c), (i): base CRL number 10 does not list the
    leaf; the delta CRL (number 11, deltaCRLIndicator 10) revokes it. The certificate (and in
    the first case the base CRL) carries a freshest CRL extension: the delta applies and the
    leaf is revoked.

    Disagreement: for "certificate" only, OpenSSL (-use_deltas) applies the delta, as 6.3.3
    (a)(1)(i) says ("either the certificate or the CRL contains the freshest CRL extension"),
    but pyhanko-certvalidator 0.33 uses a delta only when the *base CRL* has the extension,
    and passes the revoked leaf; so only OpenSSL is asserted there."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Delta CA")), anchor, ca=True)
    base_url, delta_url = "http://crl.unica.test/base.crl", "http://crl.unica.test/delta.crl"
    leaf = build_cert(name(("CN", "delta leaf")), ca, cdp=base_url,
                      extensions=[(x509.FreshestCRL([dp_uri(delta_url)]), False)])
    base = crl_of(ca, [], number=10, this_update=NOW - DAY,
                  extra=[(x509.FreshestCRL([dp_uri(delta_url)]), False)] if "base" in freshest_in else [])
    delta = crl_of(ca, [Entry(leaf.cert.serial_number, when=NOW - DAY / 2)], number=11, delta_of=10)
    crls = [crl_of(anchor), base, delta]
    _expect(_validate(leaf, anchor, [ca], crls=crls), REVOKED)
    o_ok, out = openssl_verify(tmp_path, leaf.cert, roots=[anchor.cert], untrusted=[ca.cert], crls=crls,
                               args=["-use_deltas"])
    assert not o_ok and "certificate revoked" in out, out
    if "base" in freshest_in:
        _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=False, openssl=False)


@pytest.mark.parametrize("entry", ["another certificate's entry", "the certificate's own entry"])
def test_f5e_crl_with_unknown_critical_entry_extension_is_not_used(tmp_path, entry):
    """RFC 5280 5.3: "If a CRL contains a critical CRL entry extension that the application
    cannot process, then the application MUST NOT use that CRL to determine the status of any
    certificates." With no other CRL: INDETERMINATE/TRY_LATER under hard-fail (the old code
    used it: good for the other-entry case, revoked for the own-entry case).

    Disagreement: OpenSSL refuses both ("unhandled critical CRL extension");
    pyhanko-certvalidator 0.33 checks entry extensions only on the certificate's own entry
    and so passes the first case. Only OpenSSL is asserted for that one."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "Entry Extension CA")), anchor, ca=True)
    leaf = build_cert(name(("CN", "entry ext leaf")), ca, cdp="http://crl.unica.test/ee.crl")
    other = build_cert(name(("CN", "other leaf")), ca)
    target = other if entry.startswith("another") else leaf
    unknown = ("1.3.6.1.4.1.99999.10.77", b"\x05\x00", True)
    crl = crl_of(ca, [Entry(target.cert.serial_number, raw_extensions=(unknown,))], number=3)
    assert [(e.oid.dotted_string, e.critical) for rc in crl for e in rc.extensions] == [(unknown[0], True)]
    crls = [crl_of(anchor), crl]
    _expect(_validate(leaf, anchor, [ca], crls=crls), TRY_LATER)
    ok, out = openssl_verify(tmp_path, leaf.cert, roots=[anchor.cert], untrusted=[ca.cert], crls=crls)
    assert not ok and "unhandled critical CRL extension" in out, out
    if target is leaf:
        _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=False, openssl=False)


# --- f6: name chaining (RFC 5280 7.1) -------------------------------------------------------

_CA_NAME = (("C", "CN"), ("O", "Unica Regression"), ("CN", "Name Chaining CA"))
_ISSUER_VARIANTS = {
    "case": (("C", "cn"), ("O", "UNICA regression"), ("CN", "name chaining ca")),
    "internal white space": (("C", "CN"), ("O", "  Unica   Regression "), ("CN", "Name  Chaining   CA")),
    "PrintableString vs UTF8String": (("C", "CN"), ("O", "Unica Regression", _ASN1Type.PrintableString),
                                      ("CN", "Name Chaining CA", _ASN1Type.PrintableString)),
}


@pytest.mark.parametrize("variant", list(_ISSUER_VARIANTS))
def test_f6_name_chaining_rfc4518_comparison(tmp_path, variant):
    """RFC 5280 7.1 (RFC 4518 string preparation): the leaf's issuer name differs from the CA's
    subject (UTF8String) only in case, in insignificant white space, or in being encoded as
    PrintableString; the names match, so the leaf chains to the CA (and the CA's CRL, issued
    under the CA's own spelling, covers it). The old code found no chain."""
    anchor = root()
    ca = build_cert(name(*_CA_NAME), anchor, ca=True)
    leaf = build_cert(name(("CN", "chained leaf")), ca, issuer_name=name(*_ISSUER_VARIANTS[variant]))
    assert leaf.cert.issuer.public_bytes() != ca.cert.subject.public_bytes()
    crls = [crl_of(anchor), crl_of(ca)]
    _expect(_validate(leaf, anchor, [ca], crls=crls), PASSED)
    _oracles(tmp_path, leaf, anchor, [ca], crls=crls, ok=True)


# --- f7: algorithms and unreadable input ------------------------------------------------------


@pytest.fixture(scope="module")
def dsa_key():
    return dsa.generate_private_key(2048)


def test_f7_dsa_ca_key_is_crypto_constraints_failure(tmp_path, dsa_key):
    """EN 319 102-1 5.2.8 (cryptographic constraints) per the contract: a DSA CA key in the path
    gives a report INDETERMINATE/CRYPTO_CONSTRAINTS_FAILURE (the old code said
    CHAIN_CONSTRAINTS_FAILURE). pyhanko-certvalidator's default algorithm policy refuses it
    too (OpenSSL at its default security level accepts DSA-2048)."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "DSA CA")), anchor, ca=True, key=dsa_key)
    leaf = build_cert(name(("CN", "dsa leaf")), ca)
    for revocation, crls in ((OFF, None), (OFFLINE_HARD_FAIL, [crl_of(anchor), crl_of(ca)])):
        rep = _validate(leaf, anchor, [ca], crls=crls, revocation=revocation)
        assert isinstance(rep, ValidationReport)
        _expect(rep, CRYPTO)
        rep.to_json()
    _oracles(tmp_path, leaf, anchor, [ca], ok=False, openssl=False)


@pytest.mark.parametrize("where", ["leaf signature", "CA certificate signature"])
def test_f7_sha1_signature_is_crypto_constraints_failure(tmp_path, where):
    """EN 319 102-1 5.2.8 per the contract: an ECDSA-with-SHA-1 signature on a certificate of
    the path gives INDETERMINATE/CRYPTO_CONSTRAINTS_FAILURE, not NO_CERTIFICATE_CHAIN_FOUND
    (the old code): the chain exists, its algorithm is refused. pyhanko-certvalidator's
    default policy refuses SHA-1 too (OpenSSL 3.0 at its default level accepts it)."""
    anchor = root()
    ca = build_cert(name(("C", "CN"), ("CN", "SHA-1 CA")), anchor, ca=True)
    if where == "CA certificate signature":
        ca = Ident(resign_cert(ca.cert, anchor.key, hash_name="sha1"), ca.key)
    leaf = build_cert(name(("CN", "sha1 leaf")), ca)
    if where == "leaf signature":
        leaf = Ident(resign_cert(leaf.cert, ca.key, hash_name="sha1"), leaf.key)
    sha1 = (leaf if where == "leaf signature" else ca).cert
    assert isinstance(sha1.signature_hash_algorithm, hashes.SHA1)
    rep = _validate(leaf, anchor, [ca])
    _expect(rep, CRYPTO)
    rep.to_json()
    _oracles(tmp_path, leaf, anchor, [ca], ok=False, openssl=False)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _resigned_der(tbs: bytes, key) -> bytes:
    """A certificate around arbitrary TBS bytes, with a valid ECDSA-SHA256 signature."""
    from cryptography.hazmat.primitives.asymmetric import ec

    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    alg = bytes.fromhex("300a06082a8648ce3d040302")
    bits = b"\x03" + _der_len(len(sig) + 1) + b"\x00" + sig
    body = tbs + alg + bits
    return b"\x30" + _der_len(len(body)) + body


def test_f7_garbage_and_truncated_der_never_raise(recwarn):
    """The contract: no input given as bytes raises out of validate_certificate except
    MalformedInput; everything else gives a report. Random bytes, every truncation of a real
    certificate, bit flips, and bit flips inside the TBSCertificate re-signed by the CA (so
    that the damaged content gets past the signature check and into extension processing,
    including certificates that name constraints and policy mappings send down the
    RFC 5280 engine)."""
    anchor = root()
    plain_ca = build_cert(name(("C", "CN"), ("CN", "Fuzz CA")), anchor, ca=True)
    nc_ca = build_cert(name(("C", "CN"), ("CN", "Fuzz NC CA")), anchor, ca=True, extensions=[
        (x509.NameConstraints([x509.DirectoryName(name(("C", "CN")))], None), True),
        (policies(P_ISS), False), (policy_mappings((P_ISS, P_SUB)), True)])
    rnd = random.Random(10)
    inputs: list[tuple[bytes, Ident]] = []
    for ca in (plain_ca, nc_ca):
        leaf = build_cert(name(("C", "CN"), ("CN", "fuzz leaf"), ("E", "f@fuzz.example")), ca,
                          extensions=[(policies((P_SUB, ["http://cps.unica.test/"])), False),
                                      (x509.CRLDistributionPoints([dp_relative("Part")]), False)])
        der = leaf.cert.public_bytes(serialization.Encoding.DER)
        tbs = leaf.cert.tbs_certificate_bytes
        inputs += [(der[:n], ca) for n in range(0, len(der), 5)]
        for _ in range(60):
            m = bytearray(der)
            m[rnd.randrange(len(m))] ^= 1 << rnd.randrange(8)
            inputs.append((bytes(m), ca))
        for _ in range(120):
            m = bytearray(tbs)
            for _ in range(rnd.randrange(1, 3)):
                m[rnd.randrange(4, len(m))] ^= 1 << rnd.randrange(8)
            inputs.append((_resigned_der(bytes(m), ca.key), ca))
    inputs += [(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))), plain_ca) for _ in range(60)]
    inputs += [(b"\x30\x82" + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))), plain_ca)
               for _ in range(30)]
    inputs += [(b"", plain_ca), (b"\x30\x80\x00\x00", plain_ca),
               (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", plain_ca)]
    reports = 0
    for data, ca in inputs:
        try:
            rep = validate_certificate(data, trust=[anchor.cert], intermediates=[ca.cert], at=AT, revocation=OFF)
        except MalformedInput:
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(e).__name__}: {e} for input {data[:40].hex()}...")
        assert isinstance(rep, ValidationReport)
        rep.to_json()
        reports += 1
    assert reports > 100  # the re-signed mutations mostly still parse: the deep paths were reached


# --- f8: default revocation policy ----------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable():
    """A revoked signer whose CRL distribution point is a closed port on 127.0.0.1; the CA's
    CRL that lists it, and the root CRL that covers the CA (given offline)."""
    pki = PKI()
    url = f"http://127.0.0.1:{closed_port()}/x.crl"
    victim = pki.leaf("Unreachable CRL Ltd", ku=dict(digital_signature=True), cdp=url)
    crl = make_crl(pki.inter, [(victim.cert.serial_number, NOW - 2 * DAY)])
    return pki, victim, crl, make_crl(pki.root)


def test_f8_default_revocation_policy_is_hard_fail(unreachable):
    """Contract (issue #10): the default revocation policy is hard-fail: the signer's CRL
    cannot be fetched, so INDETERMINATE/TRY_LATER, not TOTAL-PASSED (the old default was
    soft-fail and passed this revoked signer). Given the CRL, the signer is revoked."""
    pki, victim, crl, root_crl = unreachable
    rep = validate_certificate(victim.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert], at=AT,
                               crls=[root_crl])
    _expect(rep, TRY_LATER)
    assert rep.revocation_policy == "hard-fail"
    rep = Verifier([pki.root.cert], crls=[root_crl]).validate_certificate(victim.cert, intermediates=[pki.inter.cert],
                                                                          at=AT)
    _expect(rep, TRY_LATER)
    rep = validate_certificate(victim.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert], at=AT,
                               crls=[root_crl, crl])
    _expect(rep, REVOKED)


def test_f8_soft_fail_is_opt_in_and_reported(unreachable):
    """With SOFT_FAIL asked for explicitly the same signer passes, and the report says that
    soft-fail was the policy and that it was used."""
    pki, victim, _, root_crl = unreachable
    rep = validate_certificate(victim.cert, trust=[pki.root.cert], intermediates=[pki.inter.cert], at=AT,
                               crls=[root_crl], revocation=SOFT_FAIL)
    _expect(rep, PASSED)
    assert rep.revocation_policy == "soft-fail"
    assert any("soft-fail" in m for m in rep.messages), rep.messages


# --- f9: CMS and PDF agree on a revoked signer with a claimed signing time --------------------


def test_f9_cms_and_pdf_agree_on_revoked_signer_with_claimed_time():
    """EN 319 102-1 5.2.6 / 5.6.2.1: the signer was revoked before the validation time (now) but
    after the signing time claimed by the signature (the CMS signing-time attribute, the
    PDF's /M), and no time-stamp proves that time: INDETERMINATE/REVOKED_NO_POE for both
    (the old code said TOTAL-FAILED/REVOKED for the PDF)."""
    pki = PKI()
    victim = pki.leaf("Claimed Time Ltd", ku=dict(digital_signature=True, content_commitment=True))
    data = "报关单 2026-0009".encode()
    cms_sig = pyhanko_sign(pki, victim, data, tsa=False)
    pdf = pyhanko_sign_pdf(pki, victim, blank_pdf(), tsa=False)
    signed = dt.datetime.now(dt.timezone.utc)
    revoked_at = (signed + dt.timedelta(seconds=2)).replace(microsecond=0)  # after both claimed times
    while dt.datetime.now(dt.timezone.utc) < revoked_at + dt.timedelta(seconds=1):  # and before now
        time.sleep(0.1)
    crl = make_crl(pki.inter, [(victim.cert.serial_number, revoked_at)], this_update=revoked_at)
    v = Verifier([pki.root.cert], revocation=OFFLINE_HARD_FAIL, crls=[crl, make_crl(pki.root)])
    c = v.verify_cms(cms_sig, data)
    (p,) = v.verify_pdf(pdf).signatures
    assert c.signing_time < revoked_at and p.signing_time < revoked_at
    assert "claimed" in c.signing_time_source and "claimed" in p.signing_time_source
    assert _result(c) == (I.INDETERMINATE, ST.REVOKED_NO_POE), c.messages
    assert _result(p) == (I.INDETERMINATE, ST.REVOKED_NO_POE), p.messages
