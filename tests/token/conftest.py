"""Token tests: a software CA and enrolled SoftHSM2 tokens (helpers in pki.py)."""

from __future__ import annotations

import pytest

from tests.token.pki import SoftCA, enroll_with_cli


@pytest.fixture(scope="session")
def soft_ca(tmp_path_factory) -> SoftCA:
    return SoftCA.create(tmp_path_factory.mktemp("soft-ca"))


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, soft_ca):
    from tests.conftest import run_unica

    return enroll_with_cli(run_unica, soft_ca, tmp_path_factory.mktemp("enrolled"))
