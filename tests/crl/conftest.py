"""CRL test fixtures (the PKI helpers are in crlpki.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlpki import PkiCA, make_ca

@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crl-pki")


@pytest.fixture(scope="session", params=["p256", "p384", "rsa", "rsa-pss", "ed25519"])
def any_ca(request, pki_dir) -> tuple[str, PkiCA]:
    return request.param, make_ca(pki_dir, f"CRL CA {request.param}", request.param)


@pytest.fixture(scope="session")
def ca(pki_dir) -> PkiCA:
    return make_ca(pki_dir, "CRL CA main", "p256")
