"""Issue #11 items 7, 8, 14/15 (CA parts), through the real ``unica`` binary:

- ``--delta-crl-url`` on ``ca create-root|create-sub|set``: base CRLs then carry Freshest CRL
  (read back with ``openssl crl -text``); delta CRLs and certificates do not (the design: the
  pointer lives in the base CRL, RFC 5280 5.2.6, so it can change without re-issuing);
- ``ca create-sub`` warns (stderr, one line) when the parent publishes no revocation;
- the CRL signature hash follows the CA key, as the certificate signature does;
- ``--validity`` beyond the parent's expiry is refused (exit 3, nothing stored, no key made); a
  profile validity cut to the parent's expiry is warned about; a root over 30 years is warned about;
- the SQLite database is created mode 0600.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography import x509

from tests.ca.conftest import count_rows
from tests.conftest import assert_one_line_error, run_unica

PASSPHRASE = "ca-settings-passphrase-9"


class Home:
    def __init__(self, d: Path):
        self.dir = d
        self.home = d / "home"
        self.env = {"UNICA_HOME": str(self.home), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None}

    def run(self, *args):
        return run_unica(*args, env=self.env)

    def ok(self, *args):
        p = self.run(*args)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def url(self) -> str:
        return f"sqlite:///{self.home / 'unica.db'}"

    def show(self, name: str) -> dict:
        return json.loads(self.ok("ca", "show", name, "--json").stdout)

    def crl_text(self, ca: str, *extra: str) -> str:
        out = self.dir / f"{ca}-{uuid.uuid4().hex[:6]}.crl"
        self.ok("crl", "generate", "--ca", ca, "--out", str(out), *extra)
        p = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(out), "-noout", "-text"],
                           capture_output=True, text=True, check=True)
        return p.stdout


def _warnings(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in p.stderr.splitlines() if line.startswith("unica: warning:")]


@pytest.fixture(scope="module")
def h(tmp_path_factory) -> Home:
    h = Home(tmp_path_factory.mktemp("ca-settings"))
    h.ok("init")
    p = h.ok("ca", "create-root", "root", "--subject", "C=CN,O=统一测试,CN=Settings Root", "--key-type", "ec-p384",
             "--validity", "20y", "--crl-url", "http://crl.unica.test/root.crl",
             "--delta-crl-url", "http://crl.unica.test/root-delta.crl")
    assert p.stderr == "", p.stderr  # 20 years, revocation published: nothing to warn about
    return h


def test_database_created_0600(h):
    mode = stat.S_IMODE(os.stat(h.home / "unica.db").st_mode)
    assert mode == 0o600, oct(mode)


def test_delta_crl_url_makes_base_crls_carry_freshest_crl(h):
    assert h.show("root")["delta_crl_url"] == "http://crl.unica.test/root-delta.crl"
    text = h.crl_text("root")
    assert "X509v3 Freshest CRL" in text and "URI:http://crl.unica.test/root-delta.crl" in text, text
    p = h.ok("ca", "create-sub", "sub-delta", "--parent", "root", "--subject", "C=CN,O=统一测试,CN=Delta Sub",
             "--key-type", "ec-p256", "--crl-url", "http://crl.unica.test/sub.crl",
             "--delta-crl-url", "http://crl.unica.test/sub-delta.crl")
    assert _warnings(p) == [], p.stderr
    text = h.crl_text("sub-delta")
    assert "URI:http://crl.unica.test/sub-delta.crl" in text, text
    delta = h.crl_text("sub-delta", "--delta")
    assert "Delta CRL Indicator" in delta and "Freshest CRL" not in delta, delta
    # the design: certificates carry only the CRL DP; the Freshest CRL pointer is in the base CRL
    cert = x509.load_pem_x509_certificate(h.ok("ca", "export", "sub-delta").stdout.encode())
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.FreshestCRL)
    # ca set changes it, '' clears it
    h.ok("ca", "set", "sub-delta", "--delta-crl-url", "http://crl2.unica.test/sub-delta.crl")
    assert "URI:http://crl2.unica.test/sub-delta.crl" in h.crl_text("sub-delta")
    h.ok("ca", "set", "sub-delta", "--delta-crl-url", "")
    assert h.show("sub-delta").get("delta_crl_url") is None  # --json leaves out what has no value
    assert "Freshest CRL" not in h.crl_text("sub-delta")


@pytest.mark.parametrize("args,needles", [
    (["ca", "set", "root", "--delta-crl-url", "ftp://crl.unica.test/d.crl"], ["--delta-crl-url", "not an http(s) URL"]),
    (["ca", "set", "root", "--delta-crl-url", "http://crl.unica.test/{shard}.crl"], ["{shard}", "--crl-shards is 1"]),
    (["ca", "create-sub", "sharded", "--parent", "root", "--subject", "CN=Sharded", "--key-type", "ec-p256",
      "--crl-shards", "2", "--crl-url", "http://crl.unica.test/s-{shard}.crl",
      "--delta-crl-url", "http://crl.unica.test/d.crl"], ["--delta-crl-url", "must contain {shard}"]),
])
def test_bad_delta_crl_url_is_refused(h, args, needles):
    before = (count_rows(h.url(), "cas"), h.show("root"))
    p = h.run(*args)
    assert_one_line_error(p, *needles)
    assert p.returncode == 2
    assert (count_rows(h.url(), "cas"), h.show("root")) == before


def test_sharded_delta_crl_url(h):
    h.ok("ca", "create-sub", "sharded-ok", "--parent", "root", "--subject", "C=CN,O=统一测试,CN=Sharded",
         "--key-type", "ec-p256", "--crl-shards", "2", "--crl-url", "http://crl.unica.test/s-{shard}.crl",
         "--delta-crl-url", "http://crl.unica.test/s-delta-{shard}.crl")
    out = h.dir / "shards"
    out.mkdir()
    h.ok("crl", "generate", "--ca", "sharded-ok", "--out-dir", str(out))
    texts = [subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(f), "-noout", "-text"],
                            capture_output=True, text=True, check=True).stdout for f in sorted(out.iterdir())]
    assert len(texts) == 2
    assert any("URI:http://crl.unica.test/s-delta-0.crl" in t for t in texts)
    assert any("URI:http://crl.unica.test/s-delta-1.crl" in t for t in texts)


def test_create_sub_warns_when_the_parent_publishes_no_revocation(h):
    h.ok("ca", "create-root", "bare-root", "--subject", "C=CN,O=统一测试,CN=Bare Root", "--key-type", "ec-p256",
         "--validity", "10y")
    p = h.ok("ca", "create-sub", "under-bare", "--parent", "bare-root", "--subject", "C=CN,O=统一测试,CN=Under Bare",
             "--key-type", "ec-p256", "--validity", "5y", "--crl-url", "http://crl.unica.test/ub.crl")
    (w,) = _warnings(p)
    assert p.stderr.strip() == w  # one line, and nothing else
    assert "'bare-root'" in w and "no CRL URL" in w and "unica ca set bare-root --crl-url" in w, w
    # an OCSP URL alone is revocation published too
    h.ok("ca", "set", "bare-root", "--ocsp-url", "http://ocsp.unica.test/")
    p = h.ok("ca", "create-sub", "under-ocsp", "--parent", "bare-root", "--subject", "C=CN,O=统一测试,CN=Under OCSP",
             "--key-type", "ec-p256", "--validity", "5y")
    assert _warnings(p) == [], p.stderr


def _sig_alg(text: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if "Signature Algorithm" in line)


@pytest.mark.parametrize("ca,key_type,expected", [
    ("root", None, "ecdsa-with-SHA384"),
    ("hash-p256", "ec-p256", "ecdsa-with-SHA256"),
    ("hash-rsa", "rsa-3072", "sha256WithRSAEncryption"),
])
def test_crl_hash_follows_the_ca_key(h, ca, key_type, expected):
    if key_type:
        h.ok("ca", "create-sub", ca, "--parent", "root", "--subject", f"C=CN,O=统一测试,CN={ca}", "--key-type", key_type)
    assert _sig_alg(h.crl_text(ca)) == expected
    # the same choice as for the certificates the CA signs (here: the CA certificate for a root,
    # else a certificate it issues -- the OCSP signer's)
    if ca == "root":
        pem = h.ok("ca", "export", "root").stdout
    else:
        pem = h.ok("ocsp", "signer", "--ca", ca, "--json").stdout
        pem = h.ok("cert", "export", json.loads(pem)["serial"], "--ca", ca).stdout
    cert = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True, text=True,
                          check=True).stdout
    assert _sig_alg(cert) == expected


def test_validity_beyond_the_parent_is_refused(h):
    parent_end = h.show("root")["not_after"][:10]
    before = (count_rows(h.url(), "cas"), count_rows(h.url(), "certificates"), sorted((h.home / "keys").iterdir()))
    p = h.run("ca", "create-sub", "too-long", "--parent", "root", "--subject", "C=CN,O=统一测试,CN=Too Long",
              "--key-type", "ec-p256", "--validity", "25y")
    assert_one_line_error(p, "--validity 25y", "'root'", parent_end)
    assert p.returncode == 3
    after = (count_rows(h.url(), "cas"), count_rows(h.url(), "certificates"), sorted((h.home / "keys").iterdir()))
    assert after == before  # no CA, no certificate row, no key file


def test_profile_validity_cut_to_the_parent_is_warned_about(h):
    h.ok("ca", "create-root", "short-root", "--subject", "C=CN,O=统一测试,CN=Short Root", "--key-type", "ec-p256",
         "--validity", "3y", "--crl-url", "http://crl.unica.test/short.crl")
    p = h.ok("ca", "create-sub", "cut-sub", "--parent", "short-root", "--subject", "C=CN,O=统一测试,CN=Cut Sub",
             "--key-type", "ec-p256")  # sub-ca profile: 10y
    (w,) = _warnings(p)
    assert "'cut-sub'" in w and "'short-root'" in w and "sub-ca" in w, w
    assert h.show("cut-sub")["not_after"] == h.show("short-root")["not_after"]


@pytest.mark.parametrize("validity,warned", [("30y", False), ("31y", True), ("99y", True)])
def test_long_root_is_warned_about(h, validity, warned):
    name = f"root-{validity}"
    p = h.ok("ca", "create-root", name, "--subject", f"C=CN,O=统一测试,CN=Root {validity}", "--key-type", "ec-p256",
             "--validity", validity, "--crl-url", f"http://crl.unica.test/{name}.crl")
    w = _warnings(p)
    if warned:
        assert len(w) == 1 and p.stderr.strip() == w[0], p.stderr
        assert f"'{name}'" in w[0] and f"{validity[:-1]} years" in w[0] and "more than 30" in w[0], w[0]
    else:
        assert w == [], p.stderr
