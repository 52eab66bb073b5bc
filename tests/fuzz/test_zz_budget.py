"""Runs last in tests/fuzz: the CI budget of generated inputs was met (measured, not guessed).

Skipped when only part of the fuzz tests ran (-k, single files) or with a multiplier below 1.
"""

from __future__ import annotations

import pytest

from tests.fuzz import harness

#: every parser the fuzz tests feed; all must have been exercised for the budget to count
PARSERS = {
    "hsm.uri.parse_key_uri", "ca.request.parse_csr", "hsm.objects.load_certificate_bytes", "ca.der.cert_fields",
    "ca.der primitives", "ca.authority.import_cert", "verify.validate_certificate", "ocsp.parse_request",
    "ocsp.decode_get_path", "ocsp.http POST", "ocsp.http GET", "policies.parse_profile",
    "policies.load_profile_file", "verify.verify_cms", "verify.verify_pdf", "verify.offline CRL",
    "verify.offline OCSP",
}


def test_ci_budget_met():
    missing = PARSERS - set(harness.COUNTS)
    if harness.DESELECTED or missing:
        pytest.skip(f"partial fuzz run (deselected {len(harness.DESELECTED)}, not run: {sorted(missing)})")
    if harness.MULTIPLIER < 1:
        pytest.skip(f"UNICA_FUZZ_EXAMPLES={harness.MULTIPLIER:g} < 1")
    assert harness.total() >= harness.CI_BUDGET, (
        f"only {harness.total()} generated inputs across the parsers; the CI budget is {harness.CI_BUDGET}")
    for name in PARSERS:
        assert harness.COUNTS[name] >= 100, f"{name}: only {harness.COUNTS[name]} inputs"
