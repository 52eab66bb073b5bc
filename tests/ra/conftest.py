"""The registry's tests: one joint CA per module (tests/auth/conftest.py's), with the cards in the
run's SoftHSM2 token directory so the library can use them in this process."""

from __future__ import annotations

import datetime as dt

import pytest

from unica.policies.uscc import check_char


def uscc(body17: str) -> str:
    """A valid USCC from its first 17 characters (the check character computed)."""
    return body17 + check_char(body17)


def csr_der(cn: str = "Mallory", org: str = "Other Corp", key=None) -> tuple[bytes, object]:
    """A PKCS#10 request (DER) claiming another identity, and its key (software, P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, uscc("91110000600037341")),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    algorithm = hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None  # Ed25519: none
    req = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return req.public_bytes(Encoding.DER), key


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """(joint CA, store, issuer) -- alice admin, office customs (root, enterprise-sign) with bob as
    its officer; carol's card enrolled (made a second officer by the dual-control tests)."""
    from tests.auth.conftest import bootstrap, build_joint_ca
    from unica.ca.issuance import IssuingCA
    from unica.store import open_store

    j = bootstrap(build_joint_ca(tmp_path_factory.mktemp("ra"), cards=("alice", "bob", "carol"), own_tokens=False))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in j.env.items():
            if v is None:
                mp.delenv(k, raising=False)
            else:
                mp.setenv(k, v)
        store = open_store(j.db_url())
        yield j, store, IssuingCA(store, "root")
        store.dispose()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
