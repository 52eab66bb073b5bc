"""PKCS#10 requests and X.509 certificates from users (PEM and DER).

Contract: :func:`unica.ca.request.parse_csr` returns a :class:`CSRRequest` or raises
:class:`MalformedInput` / :class:`PolicyViolation`; the certificate loaders of ``unica ca
import-cert`` (:func:`unica.ca.authority.import_cert`, run against a real SQLite store and a
CA waiting for its certificate), ``unica token import-cert`` / ``unica sign``
(:func:`unica.hsm.objects.load_certificate_bytes`) and ``unica verify cert``
(:func:`unica.verify._util.load_certificates` then :func:`unica.verify.validate_certificate`)
raise only :class:`UnicaError`; :func:`unica.der.cert_fields` raises only ``DERError``.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, der_inputs, feed, pem_inputs, resigned
from unica import der
from unica.ca.request import MAX_CSR_BYTES, CSRRequest, parse_csr
from unica.errors import MalformedInput, PolicyViolation


@budget(1500)
@given(data=st.data())
def test_parse_csr(seeds, data):
    raw = data.draw(cached("csr", lambda: st.one_of(
        der_inputs(seeds.csrs), pem_inputs(seeds.csrs, "CERTIFICATE REQUEST"), resigned(seeds.signed_csrs),
        resigned(seeds.signed_csrs),
        st.integers(MAX_CSR_BYTES - 1, MAX_CSR_BYTES + 1).map(lambda n: seeds.csrs[0] + b"\x00" * (n - len(seeds.csrs[0]))))))
    req, err = feed("ca.request.parse_csr", parse_csr, raw, "request.csr")
    if err is not None:
        assert isinstance(err, (MalformedInput, PolicyViolation)), err
        assert "request.csr" in str(err)
        return
    assert isinstance(req, CSRRequest)
    assert req.key_type
    req.subject.rfc4514_string()  # the subject the CA will look at is readable
    for gn in req.requested_sans:
        assert isinstance(gn, x509.GeneralName)


def test_parse_csr_seeds(seeds):
    for raw in seeds.csrs:
        req, err = feed("ca.request.parse_csr", parse_csr, raw, "request.csr")
        assert err is None, err


def _certs(seeds):
    return cached("certs", lambda: st.one_of(der_inputs(seeds.certs), pem_inputs(seeds.certs, "CERTIFICATE"),
                                             resigned(seeds.signed_certs)))


@budget(1200)
@given(data=st.data())
def test_load_certificate_bytes(seeds, data):
    from unica.hsm.objects import load_certificate_bytes

    raw = data.draw(_certs(seeds))
    certs, err = feed("hsm.objects.load_certificate_bytes", load_certificate_bytes, raw, "cert.pem")
    if err is None:
        assert certs and all(isinstance(c, x509.Certificate) for c in certs)


@budget(1200)
@given(data=st.data())
def test_cert_fields(seeds, data):
    raw = data.draw(der_inputs(seeds.certs))
    f, err = feed("ca.der.cert_fields", der.cert_fields, raw)
    if err is not None:
        assert isinstance(err, der.DERError)
        return
    for k in ("issuer", "subject", "spki"):
        assert f[k] and f[k] in raw


# --- unica ca import-cert, against a real store -----------------------------------------------


@pytest.fixture(scope="module")
def pending_ca(seeds, tmp_path_factory, monkeypatch_module):
    """A SQLite store with CA 'fuzzsub' waiting for the certificate of its external parent;
    returns (store, a valid certificate for it, the parent)."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    from unica.ca.authority import KeySpec, create_external_sub
    from unica.store import open_store

    home = tmp_path_factory.mktemp("fuzz-home")
    monkeypatch_module.setenv("UNICA_HOME", str(home))
    monkeypatch_module.setenv("UNICA_PASSPHRASE", "fuzz-passphrase-1")
    store = open_store(f"sqlite:///{home / 'unica.db'}", create=True)
    csr_path = home / "sub.csr"
    create_external_sub(store, "fuzzsub", "CN=Fuzz External Sub,O=Fuzz Org,C=CN",
                        KeySpec(key_type="ec-p256", passphrase="fuzz-passphrase-1"), csr_path)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    parent = seeds.root
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(parent.cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                           critical=False)
            .sign(parent.key, hashes.SHA256()))
    return store, cert, parent


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _reset_pending(store) -> None:
    from sqlalchemy import select

    from unica.store import models as m

    with store.write() as s:
        row = s.execute(select(m.CA).where(m.CA.name == "fuzzsub")).scalar_one()
        row.status, row.cert_der = "pending", None


@budget(800)
@given(data=st.data())
def test_ca_import_cert(seeds, pending_ca, data):
    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.ca.authority import import_cert

    store, cert, parent = pending_ca
    good = [cert.public_bytes(Encoding.DER), cert.public_bytes(Encoding.DER) + parent.der]
    pems = [cert.public_bytes(Encoding.PEM) + parent.cert.public_bytes(Encoding.PEM)]
    raw = data.draw(cached("import", lambda: st.one_of(der_inputs(good[:1] + seeds.certs[:2]),
                                                       pem_inputs(good[:1] + [parent.der], "CERTIFICATE"),
                                                       st.sampled_from(pems))))
    info, err = feed("ca.authority.import_cert", import_cert, store, "fuzzsub", raw, "sub.pem")
    if err is None:
        assert info["name"] == "fuzzsub"
        _reset_pending(store)


# --- unica verify cert --------------------------------------------------------------------------


@budget(1000)
@given(data=st.data())
def test_verify_certificate(seeds, data):
    from unica.verify import OFF, ValidationReport, validate_certificate

    raw = data.draw(_certs(seeds))
    how = data.draw(st.integers(0, 3))
    inter = [[seeds.inter.der], [], [data.draw(der_inputs([seeds.inter.der]))],
             [data.draw(cached("inter-resigned", lambda: resigned(seeds.signed_certs[1:2])))]][how]
    rep, err = feed("verify.validate_certificate", validate_certificate, raw, trust=[seeds.root.der],
                    intermediates=inter, revocation=OFF)
    if err is None:
        assert isinstance(rep, ValidationReport)
