"""``unica verify cert|cms|pdf``: the RFC 5280 policy inputs (--policy, --require-explicit-policy,
--inhibit-policy-mapping, --inhibit-any-policy), --strict, the hard-fail default and the soft-fail
opt-in, and what the human and JSON output show (revocation reason and time, organizationIdentifier
with the USCC, valid policies with their qualifiers). The real binary, real certificates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from asn1crypto import x509 as ax
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from tests.conftest import assert_one_line_error
from tests.verify.pki import (DAY, NOW, USCC, PKI, _name, blank_pdf, make_cert, make_crl,
                              pyhanko_sign, pyhanko_sign_pdf)

P1 = "2.16.156.112554.1.1"
P2 = "2.16.156.112554.1.2"
ANY_POLICY = "2.5.29.32.0"
CPS = "https://cps.example.cn/cps"
NOTICE = "仅用于测试 / for testing only"
CN_ORG = "统一测试有限公司"


def _policies(*oids, qualifiers=False):
    infos = []
    for oid in oids:
        q = None
        if qualifiers:
            q = [CPS, x509.UserNotice(x509.NoticeReference("示例 CA", [1, 2]), NOTICE)]
        infos.append(x509.PolicyInformation(x509.ObjectIdentifier(oid), q))
    return (x509.CertificatePolicies(infos), False)


def _mapping(issuer_domain, subject_domain):
    der = ax.PolicyMappings([{"issuer_domain_policy": issuer_domain, "subject_domain_policy": subject_domain}]).dump()
    return (x509.UnrecognizedExtension(ExtensionOID.POLICY_MAPPINGS, der), True)


def _leaf(issuer, org, *extra, org_id=None):
    return make_cert(_name(f"{org} seal", org=org, org_id=org_id), issuer,
                     ku=dict(digital_signature=True, content_commitment=True), extra=list(extra))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify-cli-policy")
    pki = PKI()
    root = pki.root
    (d / "root.pem").write_bytes(root.pem)
    (d / "inter.pem").write_bytes(pki.inter.pem)
    (d / "leaf.pem").write_bytes(pki.signer.pem)  # organizationIdentifier NTRCN-<USCC>
    (d / "inter.crl").write_bytes(make_crl(pki.inter).public_bytes(serialization.Encoding.DER))
    (d / "root.crl").write_bytes(make_crl(root).public_bytes(serialization.Encoding.DER))
    victim = pki.leaf("Revoked Ltd", ku=dict(digital_signature=True))
    (d / "revoked.pem").write_bytes(victim.pem)
    (d / "revoked.crl").write_bytes(make_crl(pki.inter, [(victim.cert.serial_number, NOW - DAY,
                                                           x509.ReasonFlags.key_compromise)], number=2)
                                    .public_bytes(serialization.Encoding.DER))
    d.joinpath("revoked-at").write_text(f"{NOW - DAY:%Y-%m-%dT%H:%M:%SZ}")
    chinese = make_cert(_name("统一测试 seal", org=CN_ORG, org_id=f"NTRCN-{USCC}"), pki.inter,
                        ku=dict(digital_signature=True))
    (d / "chinese.pem").write_bytes(chinese.pem)

    # A: inter and leaf assert P1 (the leaf with a CPS pointer and a user notice)
    inter_a = make_cert(_name("Policy CA A"), root, ca=True, pathlen=0, extra=[_policies(P1)])
    leaf_a = _leaf(inter_a, "Policy A Ltd", _policies(P1, qualifiers=True))
    # B: inter asserts anyPolicy, leaf P1
    inter_b = make_cert(_name("Policy CA B"), root, ca=True, pathlen=0, extra=[_policies(ANY_POLICY)])
    leaf_b = _leaf(inter_b, "Policy B Ltd", _policies(P1))
    # C: inter asserts P1 and maps it to P2; leaf asserts P2
    inter_c = make_cert(_name("Policy CA C"), root, ca=True, pathlen=0,
                        extra=[_policies(P1), _mapping(P1, P2)])
    leaf_c = _leaf(inter_c, "Policy C Ltd", _policies(P2))
    # S: a CA certificate whose basicConstraints is not critical (RFC 5280 4.2.1.9 MUST; 6.1 does not care)
    inter_s = make_cert(_name("Sloppy CA"), root, ku=dict(key_cert_sign=True, crl_sign=True),
                        extra=[(x509.BasicConstraints(True, 0), False)])
    leaf_s = _leaf(inter_s, "Sloppy Ltd")
    for name, ident in (("inter-a", inter_a), ("leaf-a", leaf_a), ("inter-b", inter_b), ("leaf-b", leaf_b),
                        ("inter-c", inter_c), ("leaf-c", leaf_c), ("inter-s", inter_s), ("leaf-s", leaf_s)):
        (d / f"{name}.pem").write_bytes(ident.pem)

    data = b"policy-checked declaration"
    (d / "data.bin").write_bytes(data)
    (d / "sig.p7s").write_bytes(pyhanko_sign(pki, pki.signer, data))
    (d / "signed.pdf").write_bytes(pyhanko_sign_pdf(pki, pki.signer, blank_pdf()))
    return d


def _cert(unica, d, name, inter, *extra):
    return unica("verify", "cert", str(d / f"{name}.pem"), "--trust", str(d / "root.pem"),
                 "--untrusted", str(d / f"{inter}.pem"), "--offline", "--revocation", "off", *extra)


def _json(p):
    assert p.stdout, p.stderr
    return json.loads(p.stdout)


# --- policy inputs ------------------------------------------------------------------------


def test_policy_set_and_qualifiers_shown(unica, files):
    p = _cert(unica, files, "leaf-a", "inter-a", "--policy", P1, "--require-explicit-policy")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "policies:" in p.stdout and f"- {P1}" in p.stdout
    assert f"CPS: {CPS}" in p.stdout
    assert f"user notice: {NOTICE}" in p.stdout and "示例 CA 1, 2" in p.stdout
    rep = _json(_cert(unica, files, "leaf-a", "inter-a", "--policy", P1, "--require-explicit-policy", "--json"))
    [vp] = rep["valid_policies"]
    assert vp["policy"] == P1
    kinds = {q["kind"]: q for q in vp["qualifiers"]}
    assert kinds["cps"]["cps_uri"] == CPS
    assert kinds["user-notice"]["notice_text"] == NOTICE and kinds["user-notice"]["notice_numbers"] == [1, 2]


def test_policy_not_in_the_path(unica, files):
    # not asked to be explicit: the path is valid, for no policy
    p = _cert(unica, files, "leaf-a", "inter-a", "--policy", P2, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _json(p)["valid_policies"] == []
    p = _cert(unica, files, "leaf-a", "inter-a", "--policy", P2, "--require-explicit-policy", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    assert _json(p)["sub_indication"] == "POLICY_PROCESSING_ERROR"
    # several --policy: the set
    p = _cert(unica, files, "leaf-a", "inter-a", "--policy", P2, "--policy", P1, "--require-explicit-policy")
    assert p.returncode == 0, p.stdout + p.stderr


def test_require_explicit_policy_without_policies(unica, files):
    p = _cert(unica, files, "leaf", "inter")
    assert p.returncode == 0, p.stdout + p.stderr
    p = _cert(unica, files, "leaf", "inter", "--require-explicit-policy", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    assert _json(p)["sub_indication"] == "POLICY_PROCESSING_ERROR"


def test_inhibit_any_policy(unica, files):
    p = _cert(unica, files, "leaf-b", "inter-b", "--require-explicit-policy", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert [vp["policy"] for vp in _json(p)["valid_policies"]] == [P1]
    p = _cert(unica, files, "leaf-b", "inter-b", "--require-explicit-policy", "--inhibit-any-policy", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    assert _json(p)["sub_indication"] == "POLICY_PROCESSING_ERROR"


def test_inhibit_policy_mapping(unica, files):
    p = _cert(unica, files, "leaf-c", "inter-c", "--require-explicit-policy", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    named = {o for vp in _json(p)["valid_policies"] for o in (vp["policy"], vp["issuer_domain_policy"])}
    assert {P1, P2} <= named, named
    p = _cert(unica, files, "leaf-c", "inter-c", "--require-explicit-policy", "--inhibit-policy-mapping", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    assert _json(p)["sub_indication"] == "POLICY_PROCESSING_ERROR"


def test_strict_applies_the_profile_rules(unica, files):
    p = _cert(unica, files, "leaf-s", "inter-s")
    assert p.returncode == 0, p.stdout + p.stderr
    p = _cert(unica, files, "leaf-s", "inter-s", "--strict", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    assert _json(p)["indication"] == "INDETERMINATE"
    # a well-formed path passes under --strict too
    p = _cert(unica, files, "leaf", "inter", "--strict")
    assert p.returncode == 0, p.stdout + p.stderr


BAD_OIDS = ["abc", "1.2.", ".1.2", "1..2", "3.1", "1.40", "0.99", "1", "01.2", "1.02", "1.2 3", "anyPolicy", "",
            "2.5.29.32.0\n1.2"]


@pytest.mark.parametrize("bad", BAD_OIDS)
def test_bad_policy_oid_is_one_line_error(unica, files, bad):
    p = _cert(unica, files, "leaf-a", "inter-a", "--policy", P1, "--policy", bad)
    assert p.returncode == 2, p.stdout + p.stderr
    assert_one_line_error(p, "--policy")
    assert p.stdout == ""


@pytest.mark.parametrize("cmd", ["cms", "pdf"])
def test_bad_policy_oid_cms_pdf(unica, files, cmd):
    target = ["sig.p7s", "--data", str(files / "data.bin")] if cmd == "cms" else ["signed.pdf"]
    p = unica("verify", cmd, str(files / target[0]), *target[1:], "--trust", str(files / "root.pem"),
              "--policy", "1.2.x")
    assert p.returncode == 2
    assert_one_line_error(p, "--policy", "1.2.x")


@pytest.mark.parametrize("cmd", ["cms", "pdf"])
def test_policy_flags_reach_cms_and_pdf(unica, files, cmd):
    target = ["sig.p7s", "--data", str(files / "data.bin")] if cmd == "cms" else ["signed.pdf"]
    base = ["verify", cmd, str(files / target[0]), *target[1:], "--trust", str(files / "root.pem"),
            "--untrusted", str(files / "inter.pem"), "--offline", "--revocation", "off"]
    p = unica(*base, "--strict")
    assert p.returncode == 0, p.stdout + p.stderr
    # the signer's certificate asserts no policy: explicit policy cannot be met
    p = unica(*base, "--require-explicit-policy", "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    rep = _json(p)
    sig = rep["signatures"][0] if cmd == "pdf" else rep
    assert sig["certificate"]["sub_indication"] == "POLICY_PROCESSING_ERROR"
    p = unica(*base, "--policy", P1, "--json")  # not required explicit: still valid
    assert p.returncode == 0, p.stdout + p.stderr


# --- revocation: hard-fail by default, soft-fail an explicit opt-in ------------------------------


def test_revocation_default_is_hard_fail(unica, files):
    args = ["verify", "cert", str(files / "leaf.pem"), "--trust", str(files / "root.pem"),
            "--untrusted", str(files / "inter.pem"), "--offline"]
    p = unica(*args, "--json")
    assert p.returncode == 20, p.stdout + p.stderr
    rep = _json(p)
    assert rep["sub_indication"] == "TRY_LATER" and rep["revocation_policy"] == "hard-fail"
    p = unica(*args, "--crl", str(files / "inter.crl"), "--crl", str(files / "root.crl"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "revocation policy: hard-fail" in p.stdout and "soft-fail" not in p.stdout


def test_soft_fail_is_an_opt_in_and_said_so(unica, files):
    p = unica("verify", "cert", str(files / "leaf.pem"), "--trust", str(files / "root.pem"),
              "--untrusted", str(files / "inter.pem"), "--offline", "--revocation", "soft-fail")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "revocation policy: soft-fail (explicit opt-in" in p.stdout
    p = unica("verify", "cert", str(files / "leaf.pem"), "--trust", str(files / "root.pem"),
              "--untrusted", str(files / "inter.pem"), "--offline", "--revocation", "soft-fail", "--json")
    assert _json(p)["revocation_policy"] == "soft-fail"


@pytest.mark.parametrize("cmd", ["cert", "cms", "pdf"])
def test_help_names_the_default_and_the_opt_in(unica, cmd):
    p = unica("verify", cmd, "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    assert "[default: hard-fail]" in text and "explicit opt-in" in text
    for opt in ("--policy OID", "--require-explicit-policy", "--inhibit-policy-mapping", "--inhibit-any-policy",
                "--strict"):
        assert opt in text, opt


def test_revoked_shows_reason_and_time(unica, files):
    p = unica("verify", "cert", str(files / "revoked.pem"), "--trust", str(files / "root.pem"),
              "--untrusted", str(files / "inter.pem"), "--offline", "--crl", str(files / "revoked.crl"),
              "--crl", str(files / "root.crl"))
    assert p.returncode == 10, p.stdout + p.stderr
    when = (files / "revoked-at").read_text()
    assert "TOTAL-FAILED / REVOKED" in p.stdout
    assert f"on {when}, reason keyCompromise" in p.stdout, p.stdout
    p = unica("verify", "cert", str(files / "revoked.pem"), "--trust", str(files / "root.pem"),
              "--untrusted", str(files / "inter.pem"), "--offline", "--crl", str(files / "revoked.crl"),
              "--crl", str(files / "root.crl"), "--json")
    [ev] = [e for e in _json(p)["revocation"] if e["status"] == "revoked"]
    assert ev["revocation_reason"] == "keyCompromise" and ev["revocation_time"] == when


# --- identity and encoding ----------------------------------------------------------------


def test_organization_identifier_shown_with_uscc(unica, files):
    p = _cert(unica, files, "leaf", "inter")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"organizationIdentifier: NTRCN-{USCC}  (USCC {USCC})" in p.stdout, p.stdout


def test_json_is_utf8_whatever_the_locale(files):
    env = dict(os.environ, PYTHONIOENCODING="latin-1", LC_ALL="C", PYTHONUTF8="0")
    p = subprocess.run([sys.executable, "-m", "unica", "verify", "cert", str(files / "chinese.pem"),
                        "--trust", str(files / "root.pem"), "--untrusted", str(files / "inter.pem"), "--offline",
                        "--revocation", "off", "--json"], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert CN_ORG.encode("utf-8") in p.stdout
    assert b"\\u" not in p.stdout
    assert json.loads(p.stdout.decode("utf-8"))["signer"]["organization"] == CN_ORG
