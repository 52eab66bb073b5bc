"""Signing tests: a software CA, an enrolled SoftHSM2 token, a local RFC 3161 TSA."""

from __future__ import annotations

import pytest

from tests.token.pki import SoftCA, TSAServer, enroll_with_cli


@pytest.fixture(scope="session")
def soft_ca(tmp_path_factory) -> SoftCA:
    return SoftCA.create(tmp_path_factory.mktemp("sign-ca"))


@pytest.fixture(scope="session")
def enrolled(tmp_path_factory, soft_ca):
    from tests.conftest import run_unica

    return enroll_with_cli(run_unica, soft_ca, tmp_path_factory.mktemp("sign-enrolled"))


@pytest.fixture(scope="session")
def enrolled_rsa(tmp_path_factory, soft_ca):
    from tests.conftest import run_unica

    return enroll_with_cli(run_unica, soft_ca, tmp_path_factory.mktemp("sign-enrolled-rsa"), key_type="rsa-2048",
                           subject="CN=RSA signer,O=Example Ltd,C=CN", uscc=None)


@pytest.fixture(scope="session")
def tsa(soft_ca):
    server = TSAServer(soft_ca)
    yield server
    server.close()


@pytest.fixture(scope="session")
def lt(tmp_path_factory):
    """A unica CA with its CRL URL and OCSP responder on 127.0.0.1, TSAs on demand (tests/sign/ltpki.py)."""
    from tests.sign.ltpki import make_home

    h = make_home(tmp_path_factory.mktemp("long-term"))
    yield h
    h.close()
