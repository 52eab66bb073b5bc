"""Fixtures of the reliability tests (helpers live in tests/reliability/rel.py)."""

from __future__ import annotations

import pytest

from tests.reliability import rel


@pytest.fixture
def own_pg():
    """A PostgreSQL cluster of this test's own, which it may stop and start (never the shared one)."""
    from tests.conftest import PG_BIN

    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    cluster = rel.PGCluster()
    try:
        yield cluster
    finally:
        cluster.destroy()
