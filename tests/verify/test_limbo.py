"""x509-limbo: every case not skipped for a listed feature must give the expected result."""

from __future__ import annotations

import warnings

import pytest

from tests.verify import limbo_harness as lh


def test_limbo_all_cases_zero_failures():
    if not lh.LIMBO.exists():
        import os

        if os.environ.get("CI"):
            pytest.fail(f"x509-limbo data not found at {lh.LIMBO} (set UNICA_LIMBO)")
        pytest.skip(f"x509-limbo data not found at {lh.LIMBO}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = lh.load_cases()
        counts, failures = lh.run(cases)
    passed = sum(v for (ns, k), v in counts.items() if k == "pass")
    skipped = sum(v for (ns, k), v in counts.items() if k == "skip")
    assert not failures, "\n".join(" | ".join(f) for f in failures[:40])
    assert passed + skipped == len(cases) == 9780
    assert skipped <= 11  # only the listed features / conflicting cases
