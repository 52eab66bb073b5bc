"""Certificate policy processing (RFC 5280 6.1) and the signer identity (organisation, USCC)."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from unica.verify import OFF, SubIndication, validate_certificate
from unica.verify._util import signer_identity

from tests.verify.pki import PKI, USCC, _name, make_cert

P1 = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1.1")
P2 = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1.2")


def _policies(*oids):
    return (x509.CertificatePolicies([x509.PolicyInformation(o, None) for o in oids]), False)


def _chain(leaf_policies=(), inter_extra=()):
    pki = PKI()
    inter = make_cert(_name("Policy CA"), pki.root, ca=True, extra=inter_extra)
    extra = [_policies(*leaf_policies)] if leaf_policies else []
    leaf = make_cert(_name("Policy Leaf"), inter, ku=dict(digital_signature=True), extra=extra)
    return pki, inter, leaf


def _validate(pki, inter, leaf, **kw):
    return validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[inter.cert], revocation=OFF, **kw)


def test_require_explicit_policy_enforced():
    pc = (x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None), True)
    pki, inter, leaf = _chain(inter_extra=[pc, _policies(P1)])
    rep = _validate(pki, inter, leaf)
    assert rep.sub_indication is SubIndication.POLICY_PROCESSING_ERROR, rep
    pki, inter, leaf = _chain(leaf_policies=[P1], inter_extra=[pc, _policies(P1)])
    assert _validate(pki, inter, leaf).passed
    pki, inter, leaf = _chain(leaf_policies=[P2], inter_extra=[pc, _policies(P1)])
    assert _validate(pki, inter, leaf).sub_indication is SubIndication.POLICY_PROCESSING_ERROR


def test_user_initial_policy_set():
    pki, inter, leaf = _chain(leaf_policies=[P1], inter_extra=[_policies(x509.ObjectIdentifier("2.5.29.32.0"))])
    assert _validate(pki, inter, leaf, policies=[P1.dotted_string], require_explicit_policy=True).passed
    rep = _validate(pki, inter, leaf, policies=[P2.dotted_string], require_explicit_policy=True)
    assert rep.sub_indication is SubIndication.POLICY_PROCESSING_ERROR


def test_inhibit_any_policy():
    any_policy = x509.ObjectIdentifier("2.5.29.32.0")
    pki = PKI()
    inter = make_cert(_name("Inhibit CA"), pki.root, ca=True,
                      extra=[(x509.InhibitAnyPolicy(0), True), _policies(any_policy),
                             (x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None), True)])
    leaf = make_cert(_name("Any Leaf"), inter, ku=dict(digital_signature=True), extra=[_policies(any_policy)])
    assert _validate(pki, inter, leaf).sub_indication is SubIndication.POLICY_PROCESSING_ERROR


def test_identity_uscc_sources():
    pki = PKI()
    ident = signer_identity(pki.signer.cert)
    assert ident.uscc == USCC and ident.uscc_source == "organizationIdentifier"
    assert ident.organization == "Zhang San Trading" and ident.common_name == "Zhang San Trading seal"
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "某某贸易有限公司"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, USCC),
                      x509.NameAttribute(NameOID.COMMON_NAME, "seal")])
    cert = make_cert(name, pki.inter, ku=dict(digital_signature=True)).cert
    ident = signer_identity(cert)
    assert ident.uscc == USCC and ident.uscc_source == "serialNumber" and ident.organization == "某某贸易有限公司"


def test_pathological_same_subject_same_key_is_fast():
    """30 same-subject same-key self-issued CA certificates (each verifies under every other),
    named to chain to the root: path building stays bounded."""
    import time

    from cryptography.hazmat.primitives.asymmetric import ec

    pki = PKI()
    k = ec.generate_private_key(ec.SECP256R1())
    name = _name("Loop CA")
    # X issued "by the root" by name, but signed by an unrelated key: no valid path exists
    impostor_root = make_cert(pki.root.cert.subject, None, ca=True)
    top = make_cert(name, impostor_root, ca=True, key=k)
    from tests.verify.pki import Ident

    loop_issuer = Ident(top.cert, k)
    twins = [make_cert(name, loop_issuer, ca=True, key=k).cert for _ in range(30)]
    leaf = make_cert(_name("Victim"), loop_issuer, ku=dict(digital_signature=True))
    t0 = time.perf_counter()
    rep = validate_certificate(leaf.cert, trust=[pki.root.cert], intermediates=[top.cert, *twins], revocation=OFF)
    assert time.perf_counter() - t0 < 5
    assert rep.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
