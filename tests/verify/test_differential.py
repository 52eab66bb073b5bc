"""Differential test of unica.verify against pyhanko-certvalidator and `openssl verify` (issue #10).

1,000 random chains with CRL sets (fixed seed) must give no HARMFUL accept: unica TOTAL-PASSED
while pyhanko-certvalidator rejects, or while openssl rejects for a reason that is not one of the
documented openssl divergences (tests/verify/differential.py: OPENSSL_DIVERGENCES). On failure the
message names each case (seed, index, description, the three verdicts) and a directory with every
harmful case's PEM files and the openssl command line. Replay one case with

    python -m tests.verify.differential --seed SEED --index I [--write DIR]

The 10,000-chain run is marked slow and runs only when asked for: ``pytest -m slow`` or
UNICA_SLOW_TESTS=1.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.verify import differential as d

N = 1000

#: features the generator must produce in the CI run (the brief of issue #10)
REQUIRED_FEATURES = {
    "nc:dns:permitted", "nc:dns:excluded", "nc:email:permitted", "nc:email:excluded", "nc:ip:permitted",
    "nc:ip:excluded", "nc:dirname:permitted", "nc:dirname:excluded", "leaf:subject-email",
    "policy:mapping", "policy:requireExplicitPolicy", "policy:inhibitPolicyMapping", "policy:inhibitAnyPolicy",
    "policy:anyPolicy", "user:policy-set", "user:explicit-policy", "user:inhibit-policy-mapping",
    "user:inhibit-any-policy",
    "bc:pathlen", "bc:self-issued", "bc:missing", "bc:ca-false", "ku:no-keycertsign",
    "validity:expired", "validity:not-yet-valid",
    "crl:full", "crl:revoked-leaf", "crl:revoked-ca", "crl:idp-full:match", "crl:idp-full:mismatch",
    "crl:idp-relative:rel-rel", "crl:idp-relative:full-rel", "crl:idp-relative:rel-full",
    "crl:idp-relative:mismatch", "crl:scope:only-user", "crl:scope:only-ca", "crl:reasons:both",
    "crl:reasons:one-missing", "crl:indirect:ok", "crl:indirect:no-indirect-flag",
    "crl:indirect:no-crlissuer-in-cdp", "crl:indirect:entry-other-issuer", "crl:delta:good",
    "crl:delta:delta-revokes", "crl:delta:hold-removed", "crl:delta:delta-missing",
    "crl:unknown-critical-ext:alone", "crl:unknown-critical-entry-ext:other-entry", "crl:stale:alone",
    "crl:missing",
}


def _slow_requested(config) -> bool:
    return "slow" in (config.getoption("-m") or "") or os.environ.get("UNICA_SLOW_TESTS") == "1"


def _harmful_message(s: d.Summary, limit: int = 25) -> str:
    bad = s.harmful()
    out = d.write_reproducers(bad)
    lines = [d.format_summary(s, features=False), "",
             f"{len(bad)} HARMFUL accepts (unica TOTAL-PASSED, a peer rejects). PEMs + openssl command "
             f"of each: {out}", ""]
    lines += [r.report() + "\n  replay: python -m tests.verify.differential "
              f"--seed {r.seed} --index {r.index}\n" for r in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more (all in {out})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def run() -> d.Summary:
    if not shutil.which("openssl"):
        pytest.fail("openssl is not installed")
    return d.run_many(d.DEFAULT_SEED, N, workers=2)


def test_no_harmful_accept_against_pyhanko(run):
    if run.harmful("pyhanko"):
        pytest.fail(_harmful_message(run), pytrace=False)


def test_no_harmful_accept_against_openssl(run):
    if run.harmful("openssl"):
        pytest.fail(_harmful_message(run), pytrace=False)


def test_every_engine_judged_and_the_run_is_meaningful(run):
    """A run where an engine crashes or nearly everything is rejected proves nothing."""
    errors = [r for r in run.results if "error" in (r.pyhanko.verdict, r.openssl.verdict, r.unica.verdict)]
    assert not errors, "\n\n".join(r.report() for r in errors[:10])
    classes = run.classes
    assert classes["agree-accept"] + classes["openssl-divergence"] >= N // 10, d.format_summary(run, features=False)
    assert classes["agree-reject"] >= N // 4, d.format_summary(run, features=False)
    # pyhanko-certvalidator cannot judge only iPAddress constraints (no matcher in 0.33)
    unsupported = [r for r in run.results if r.pyhanko.verdict == "unsupported"]
    assert all("IP_ADDRESS" in r.pyhanko.detail for r in unsupported)
    assert len(unsupported) < N // 20
    assert set(run.divergences()) <= set(d.OPENSSL_DIVERGENCES)


def test_generator_covers_the_brief(run):
    seen = set().union(*(r.features for r in run.results))
    assert REQUIRED_FEATURES <= seen, sorted(REQUIRED_FEATURES - seen)


def test_missing_revocation_data_is_indeterminate(run):
    """Where pyhanko-certvalidator finds no usable revocation data and nothing else is wrong, unica
    (offline hard-fail) says INDETERMINATE, not TOTAL-FAILED and not TOTAL-PASSED."""
    wrong = []
    other = ("validity:", "crl:revoked", "crl:delta:delta-revokes", "crl:delta:hold", "bc:missing", "bc:ca-false",
             "ku:no-keycertsign")
    checked = 0
    for r in run.results:
        if not r.pyhanko.detail.startswith("InsufficientRevinfoError"):
            continue
        if any(f.startswith(other) for f in r.features):
            continue
        checked += 1
        if r.unica.verdict == "accept" or not r.unica.detail.startswith("INDETERMINATE/"):
            wrong.append(r)
    assert checked >= 50
    assert not wrong, "\n\n".join(r.report() for r in wrong[:10])


def test_cases_are_reproducible_byte_for_byte():
    from cryptography.hazmat.primitives.serialization import Encoding

    for i in (0, 17, 999):
        a, b = d.generate(d.DEFAULT_SEED, i), d.generate(d.DEFAULT_SEED, i)
        ders = [[c.public_bytes(Encoding.DER) for c in (x.root, *x.untrusted, x.leaf, *x.crls)] for x in (a, b)]
        assert ders[0] == ders[1]
        assert a.describe() == b.describe()
    assert d.generate(d.DEFAULT_SEED, 1).leaf != d.generate(d.DEFAULT_SEED + 1, 1).leaf


def test_pyhanko_refuses_to_run_next_to_unica():
    """unica.verify patches pyhanko_certvalidator when imported: the reference must not share its process."""
    import unica.verify  # noqa: F401

    with pytest.raises(RuntimeError, match="has not imported unica"):
        d.run_pyhanko(d.generate(d.DEFAULT_SEED, 0))


def test_classification():
    acc, rej = d.Outcome("accept"), d.Outcome("reject", "x")
    uns, err = d.Outcome("unsupported"), d.Outcome("error", "keyword inhibit_any_policy not supported")
    assert d.classify(acc, acc, acc, None) == ("agree-accept", (), False)
    assert d.classify(rej, rej, rej, None) == ("agree-reject", (), False)
    assert d.classify(acc, rej, acc, None) == ("HARMFUL", ("pyhanko",), True)
    assert d.classify(acc, acc, rej, None) == ("HARMFUL", ("openssl",), True)
    assert d.classify(acc, uns, rej, None) == ("HARMFUL", ("openssl",), False)
    assert d.classify(acc, acc, rej, "idp-dn-no-cdp") == ("openssl-divergence", (), False)
    assert d.classify(acc, rej, rej, "idp-dn-no-cdp") == ("HARMFUL", ("pyhanko",), False)
    assert d.classify(rej, acc, rej, None) == ("unica-rejects-only", (), True)
    assert d.classify(err, acc, acc, None) == ("unica-error", (), False)


@pytest.mark.slow
def test_no_harmful_accept_10000(request):
    if not _slow_requested(request.config):
        pytest.skip("10,000 chains take about 15 minutes: run with -m slow or UNICA_SLOW_TESTS=1")
    s = d.run_many(d.DEFAULT_SEED, 10_000, workers=max(2, os.cpu_count() or 2))
    if s.harmful():
        pytest.fail(_harmful_message(s), pytrace=False)


#: the openssl rejections the 10,000-chain run (seed 20240610) found where unica and pyhanko accept,
#: each explained by a documented divergence that the classifier confirms against an independent
#: check (openssl on the CRL signer alone; the CRL RFC 5280 puts in scope; Bouncy Castle's PKIX validator)
FOUND_AT_10000 = {3509: "nested-crl-path", 6342: "nested-crl-path", 6478: "nested-crl-path",
                  7804: "nested-crl-path", 9078: "nested-crl-path", 5857: "idp-dn-no-cdp", 9189: "policy-tree"}


@pytest.mark.parametrize("index", sorted(FOUND_AT_10000))
def test_divergences_found_by_the_10000_run(index, tmp_path):
    case = d.generate(d.DEFAULT_SEED, index)
    o = d.run_openssl(case, tmp_path)
    assert o.verdict == "reject", o
    assert d.explain_openssl(case, o) == FOUND_AT_10000[index], o.detail


def test_divergence_checks_can_say_no(tmp_path):
    """Each confirmation check refuses when its independent evidence is taken away, so a
    divergence label cannot hide an accept that the peer has a reason to reject."""
    import dataclasses

    policy = d.generate(d.DEFAULT_SEED, 9189)
    assert d._java_pkix_accepts(policy)
    assert not d._java_pkix_accepts(dataclasses.replace(policy, policies=("1.3.6.1.4.1.55555.1.9",)))
    # P2 is what ca2 maps P1 to: 6.1.5 (g) intersects with P1, so {P2} fails (openssl accepts it)
    assert not d._java_pkix_accepts(dataclasses.replace(policy, policies=("1.3.6.1.4.1.55555.1.2",)))

    nested = d.generate(d.DEFAULT_SEED, 3509)
    signer = next(c for c in nested.extra if "CRL Signer 2" in c.subject.rfc4514_string())
    assert d._openssl_accepts_alone(nested, signer)
    assert not d._openssl_accepts_alone(dataclasses.replace(nested, crls=[]), signer)

    rollover = d.generate(d.DEFAULT_SEED, 5857)
    assert d._idp_dn_crl_covers(rollover, rollover.leaf)
    without = dataclasses.replace(rollover, crls=[c for c in rollover.crls if not d._has_dn_idp(c)])
    assert not d._idp_dn_crl_covers(without, without.leaf)
    o = d.run_openssl(without, tmp_path)
    assert o.verdict == "reject" and d.explain_openssl(without, o) is None
