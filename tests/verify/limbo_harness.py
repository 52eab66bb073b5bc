"""Run x509-limbo test cases through unica.verify.validate_certificate.

Used by tests/verify/test_limbo.py (CI) and bench/limbo.py (the full run with figures).
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
from pathlib import Path

from cryptography import x509

from unica.verify import OFF, RevocationPolicy, Usage, validate_certificate
from unica.verify.usage import _EKU_ALIASES, _KU_ALIASES

def _find_limbo() -> Path:
    """``$UNICA_LIMBO``, else ``shared/`` beside the repository (as CI lays it), else /work/shared."""
    import os

    env = os.environ.get("UNICA_LIMBO")
    if env:
        return Path(env)
    rel = Path("testdata/x509-limbo/limbo.json.gz")
    repo = Path(__file__).resolve().parents[2]
    for base in (repo.parent / "shared", Path("/work/shared")):
        if (base / rel).exists():
            return base / rel
    return repo.parent / "shared" / rel


LIMBO = _find_limbo()

#: features unica does not implement, with the reason (also in /work/notes/readme-verify.md)
SKIPPED_FEATURES = {
    "pedantic-webpki-eku": "conflicts with rfc5280::eku cases; unica follows RFC 5280 4.2.1.12 (a leaf "
    "without EKU, or with anyExtendedKeyUsage, may be used for any purpose)",
    "rfc5280-incompatible-with-webpki": "unica accepts non-critical name constraints (and enforces them), "
    "as the web PKI does (conflicts with webpki::nc::permitted-dns-match-noncritical)",
    "pedantic-public-suffix-wildcard": "unica has no Public Suffix List; wildcard-vs-PSL checks are a "
    "browser policy, not RFC 5280",
}
#: single cases skipped, with the reason
SKIPPED_CASES: dict[str, str] = {
    "webpki::cn::not-in-san": "contradicts about 100 BetterTLS name-constraint cases that expect success "
    "with a CN outside the SANs; unica rejects a CN only when it respells a SAN entry or is an IDN",
    "webpki::ca-as-leaf": "conflicts_with rfc5280::ca-as-leaf (and pathlen::validation-ignores-pathlen-in-leaf "
    "expects a CA certificate as leaf to pass): unica follows RFC 5280, which allows a CA certificate "
    "(with keyCertSign) in leaf position",
}

#: cases whose expectation is a CA *profile* rule (RFC 5280 section 4), which unica applies under
#: strict=True only (issue #10 finding 4: section 6 processes these either way); run under strict
STRICT_CASES: dict[str, str] = {
    "rfc5280::pc::ica-noncritical-pc": "4.2.1.11 binds the CA (MUST be critical); section 6 processes a "
    "non-critical policyConstraints like a critical one",
}
SKIPPED_CASES["rfc5280::nc::nc-forbids-othername-noop"] = (
    "pyhanko-certvalidator 0.33 cannot hash an otherName subtree (TypeError) and unica refuses the path "
    "(a conservative refusal; RFC 5280 leaves otherName constraints to the implementation)")

_CRL_POLICY = RevocationPolicy(mode="hard-fail", fetch=False, check_ca=False)


def load_cases() -> list[dict]:
    with gzip.open(LIMBO) as f:
        return json.load(f)["testcases"]


def namespace(case_id: str) -> str:
    parts = case_id.split("::")
    return "::".join(parts[:2]) if parts[0] == "bettertls" else parts[0]


def skip_reason(tc: dict) -> str | None:
    if tc["id"] in SKIPPED_CASES:
        return SKIPPED_CASES[tc["id"]]
    for f in tc.get("features") or ():
        if f in SKIPPED_FEATURES:
            return f"{f}: {SKIPPED_FEATURES[f]}"
    pn = tc.get("expected_peer_name")
    if tc["validation_kind"] == "SERVER" and pn and pn["kind"] not in ("DNS", "IP"):
        return "server name of kind " + pn["kind"]
    return None


def _usage(tc: dict) -> Usage:
    ku = frozenset(_KU_ALIASES[k.replace("_", "").lower()] for k in tc.get("key_usage") or ())
    eku = frozenset(_EKU_ALIASES[e.lower()] for e in tc.get("extended_key_usage") or ())
    return Usage("limbo", key_usage_all=ku, eku=eku)


def run_case(tc: dict) -> tuple[str, str]:
    """-> (actual result SUCCESS/FAILURE, message)."""
    try:
        leaf = x509.load_pem_x509_certificate(tc["peer_certificate"].encode())
        trusted = [x509.load_pem_x509_certificate(c.encode()) for c in tc["trusted_certs"]]
        inter = [x509.load_pem_x509_certificate(c.encode()) for c in tc["untrusted_intermediates"]]
        crls = [x509.load_pem_x509_crl(c.encode()) for c in tc.get("crls") or ()]
    except ValueError as e:
        return "FAILURE", f"unparsable input: {e}"
    if not trusted:
        return "FAILURE", "no trust anchors"
    at = None
    if tc.get("validation_time"):
        at = dt.datetime.fromisoformat(tc["validation_time"].replace("Z", "+00:00"))
    server_name = None
    pn = tc.get("expected_peer_name")
    if tc["validation_kind"] == "SERVER" and pn:
        server_name = pn["value"]
    try:
        rep = validate_certificate(
            leaf, trust=trusted, intermediates=inter, at=at, usage=_usage(tc),
            revocation=_CRL_POLICY if crls else OFF, crls=crls, server_name=server_name,
            max_chain_depth=tc.get("max_chain_depth"),
            # pedantic cases test the RFC 5280 profile rules: run them under strict
            strict="pedantic-rfc5280" in (tc.get("features") or ()) or tc["id"] in STRICT_CASES,
        )
    except ValueError as e:
        return "FAILURE", f"rejected: {e}"
    msg = f"{rep.indication.value}/{rep.sub_indication.value if rep.sub_indication else ''} {'; '.join(rep.messages)}"
    return ("SUCCESS" if rep.passed else "FAILURE"), msg


def run(cases, progress=None):
    """-> (Counter[(namespace, outcome)], list of failures (id, expected, actual, message))."""
    counts: collections.Counter = collections.Counter()
    failures = []
    for i, tc in enumerate(cases):
        ns = namespace(tc["id"])
        reason = skip_reason(tc)
        if reason:
            counts[(ns, "skip")] += 1
            continue
        actual, msg = run_case(tc)
        if actual == tc["expected_result"]:
            counts[(ns, "pass")] += 1
        else:
            counts[(ns, "fail")] += 1
            failures.append((tc["id"], tc["expected_result"], actual, msg))
        if progress:
            progress(i)
    return counts, failures
