"""Seeing state (issue #11, item 11): ``audit show`` (newest first, --tail, filters), ``crl list`` /
``crl show``, the CRL state in ``ca show``, ``unica show FILE``, and the ``cert list`` filters.

One CA hierarchy is built through the real ``unica`` binary: a root whose key is on the SoftHSM2
token, certificates under several profiles (one with a Unified Social Credit Code, a short-lived
operator profile, one already expired), a revocation, a hold, base and delta CRLs and a
pre-signed OCSP response. Every filter is checked against a set it must narrow (so a filter
that were ignored fails its test), and no output carries a Python repr (True/False/None) or a
JSON null.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ca.conftest import openssl_csr
from tests.conftest import assert_one_line_error, run_unica

PASSPHRASE = "seeing-state-passphrase-4"
USCC = "91350100M000100Y43"
OTHER_USCC = "9144030071526726XG"
REPRS = re.compile(r"\b(True|False|None|null)\b")


@dataclass
class World:
    dir: Path
    home: Path
    env: dict
    ca: str
    certs: dict = field(default_factory=dict)  # name -> serial
    pems: dict = field(default_factory=dict)  # name -> PEM path
    csr: Path | None = None

    def run(self, *args, **kw):
        env = dict(self.env)
        env.update(kw.pop("env", {}) or {})
        return run_unica(*map(str, args), env=env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def serials(self, *args) -> set[str]:
        return {r["serial"] for r in self.json("cert", "list", *args)}

    def db(self):
        import sqlite3

        return sqlite3.connect(f"file:{self.home / 'unica.db'}?mode=ro", uri=True)


def _issue(w: World, name: str, profile: str, subj: str, san: str | None) -> None:
    csr = openssl_csr(w.dir, subj, san=san, name=name)
    out = w.dir / f"{name}.pem"
    p = w.ok("issue", "--ca", w.ca, "--profile", profile, "--csr", csr, "--out", out)
    w.certs[name] = re.search(r"serial ([0-9a-f]+)", p.stdout).group(1)
    w.pems[name] = out
    w.csr = csr


@pytest.fixture(scope="module")
def world(tmp_path_factory, token_label) -> World:
    d = tmp_path_factory.mktemp("seeing-state")
    home = d / "home"
    tag = uuid.uuid4().hex[:6]
    w = World(dir=d, home=home, env={"UNICA_HOME": str(home), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None,
                                      "TZ": "Asia/Shanghai"}, ca=f"see-{tag}")
    w.ok("init")
    w.ok("ca", "create-root", w.ca, "--subject", "C=CN,O=看见测试,CN=Seeing Root", "--key-type", "ec-p256",
         "--token", token_label, "--crl-url", f"http://crl.example.cn/{w.ca}.crl",
         "--delta-crl-url", f"http://crl.example.cn/{w.ca}-delta.crl")
    tls = (Path(__file__).parents[2] / "unica/policies/builtin/tls-server.toml").read_text()
    (home / "profiles").mkdir(exist_ok=True)
    (home / "profiles/short-tls.toml").write_text(tls.replace('validity = "397d"', 'validity = "10d"'))
    (home / "profiles/blink-tls.toml").write_text(tls.replace('validity = "397d"', 'validity = "2s"'))
    _issue(w, "alpha", "tls-server", "/CN=alpha.example.cn", "DNS:alpha.example.cn")
    _issue(w, "beta", "short-tls", "/CN=Beta.Example.cn", "DNS:beta.example.cn")
    _issue(w, "blink", "blink-tls", "/CN=blink.example.cn", "DNS:blink.example.cn")
    _issue(w, "ent", "enterprise-sign", f"/C=CN/O=示例科技有限公司/organizationIdentifier={USCC}/CN=张三",
           "email:zhang@example.cn")
    _issue(w, "ent2", "enterprise-sign",
           f"/C=CN/O=另一家公司/organizationIdentifier=NTRCN-{OTHER_USCC}/CN=李四", "email:li@example.cn")
    _issue(w, "gamma", "tls-server", "/CN=gamma.example.cn", "DNS:gamma.example.cn")
    _issue(w, "held", "tls-server", "/CN=held.example.cn", "DNS:held.example.cn")
    w.ok("revoke", w.certs["gamma"], "--reason", "keyCompromise")
    w.ok("crl", "generate", "--ca", w.ca)
    w.ok("revoke", w.certs["held"], "--reason", "certificateHold")
    w.ok("crl", "generate", "--ca", w.ca, "--delta")
    w.ok("crl", "generate", "--ca", w.ca)
    w.ok("ocsp", "signer", "--ca", w.ca)
    w.ok("ocsp", "presign", "--ca", w.ca)
    left = 2.5 - (time.time() - (w.dir / "blink.pem").stat().st_mtime)
    if left > 0:
        time.sleep(left)  # 'blink' (2 s) has expired
    return w


# --- audit show ------------------------------------------------------------------------------


def _audit(w: World, *args) -> list[dict]:
    return w.json("audit", "show", *args)


def test_audit_show_is_newest_first_and_tail_takes_the_newest(world):
    everything = _audit(world)
    ids = [e["id"] for e in everything]
    assert len(ids) > 10 and ids == sorted(ids, reverse=True)
    assert [e["id"] for e in _audit(world, "--oldest-first")] == sorted(ids)
    assert [e["id"] for e in _audit(world, "--tail", "3")] == ids[:3]
    assert [e["id"] for e in _audit(world, "--tail", "3", "--oldest-first")] == sorted(ids[:3])
    assert [e["id"] for e in _audit(world, "--limit", "2", "--oldest-first")] == sorted(ids)[:2]
    # human output: newest first too, a table, no Python reprs
    out = world.ok("audit", "show", "--tail", "5").stdout.splitlines()
    assert out[0].split()[:3] == ["ID", "TIME", "EVENT"]
    assert [int(line.split()[0]) for line in out[1:]] == ids[:5]
    assert not REPRS.search(world.ok("audit", "show").stdout)


def test_audit_show_filters(world):
    everything = _audit(world)
    crl = _audit(world, "--event", "crl.*")
    assert crl and len(crl) < len(everything) and all(e["event"].startswith("crl.") for e in crl)
    exact = _audit(world, "--event", "certificate.revoked")
    assert exact and {e["event"] for e in exact} == {"certificate.revoked"}
    mine = _audit(world, "--ca", world.ca)
    assert mine and len(mine) < len(everything) and all(e["ca"] == world.ca for e in mine)
    assert _audit(world, "--ca", "no-such-ca") == []
    # --actor: the whole user@host:pid, the user alone, or a glob
    one = everything[-1]["actor"]  # the process that ran 'unica init'
    by_pid = _audit(world, "--actor", one)
    assert by_pid and all(e["actor"] == one for e in by_pid) and len(by_pid) < len(everything)
    user = one.split("@")[0]
    assert len(_audit(world, "--actor", user)) == len(everything)
    assert len(_audit(world, "--actor", f"{user}@*")) == len(everything)
    assert _audit(world, "--actor", "nobody-at-all") == []
    # filters combine
    both = _audit(world, "--event", "crl.generated", "--ca", world.ca, "--tail", "1")
    assert len(both) == 1 and both[0]["event"] == "crl.generated" and int(both[0]["target"]) == 3


def test_audit_show_since_takes_dates_and_times_without_a_zone_as_utc(world):
    everything = _audit(world, "--oldest-first")
    pivot = everything[len(everything) // 2]
    at = dt.datetime.fromisoformat(pivot["at"])
    # no zone: UTC (TZ=Asia/Shanghai in the environment: a local reading would be 8 hours off)
    naive = at.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat()
    got = _audit(world, "--since", naive, "--oldest-first")
    assert got == [e for e in everything if dt.datetime.fromisoformat(e["at"]) >= at]
    assert 0 < len(got) < len(everything)
    aware = at.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()
    assert _audit(world, "--since", aware, "--oldest-first") == got
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    assert _audit(world, "--since", tomorrow) == []
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert len(_audit(world, "--since", today)) == len(everything) or at.date().isoformat() != today
    p = world.run("audit", "show", "--since", "last tuesday")
    assert p.returncode == 2
    assert_one_line_error(p, "--since")


def test_audit_show_json_has_no_nulls_and_the_chain_still_verifies(world):
    text = world.ok("audit", "show", "--json").stdout
    assert "null" not in text
    init = _audit(world, "--event", "home.initialised")[0]
    assert "ca" not in init and "target" not in init  # left out, not null
    assert world.ok("audit", "verify").stdout.startswith("audit log intact")


# --- cert list filters -----------------------------------------------------------------------


def test_cert_list_subject_is_a_case_insensitive_substring_with_no_wildcards(world):
    assert world.serials("--subject", "beta.EXAMPLE") == {world.certs["beta"]}
    assert world.serials("--subject", "示例科技") == {world.certs["ent"]}
    assert world.serials("--subject", "example.cn") >= {world.certs[n] for n in ("alpha", "beta", "gamma")}
    # LIKE's wildcards are text here: '%' and '_' match only themselves
    assert world.serials("--subject", "%") == set()
    assert world.serials("--subject", "alpha_example") == set()


def test_cert_list_uscc_matches_the_organization_identifier(world):
    assert world.serials("--uscc", USCC) == {world.certs["ent"]}
    assert world.serials("--uscc", OTHER_USCC) == {world.certs["ent2"]}  # stored as NTRCN-...
    assert world.serials("--uscc", f"NTRCN-{USCC}") == {world.certs["ent"]}
    assert world.serials("--uscc", USCC.lower()) == {world.certs["ent"]}
    p = world.run("cert", "list", "--uscc", "91350100M000100Y44")  # wrong check character
    assert p.returncode == 2
    assert_one_line_error(p, "--uscc")


def test_cert_list_profile_and_status(world):
    assert world.serials("--profile", "short-tls") == {world.certs["beta"]}
    assert world.serials("--profile", "enterprise-sign") == {world.certs["ent"], world.certs["ent2"]}
    assert world.serials("--status", "revoked") == {world.certs["gamma"]}
    assert world.serials("--status", "hold") == {world.certs["held"]}
    assert world.serials("--status", "expired") == {world.certs["blink"]}
    valid = world.serials("--status", "valid")
    assert {world.certs[n] for n in ("alpha", "beta", "ent", "ent2")} <= valid
    assert not valid & {world.certs[n] for n in ("gamma", "held", "blink")}
    rows = world.json("cert", "list", "--status", "expired")
    assert [r["status"] for r in rows] == ["expired"]


def test_cert_list_expiry_window(world):
    assert world.serials("--expires-within", "30") == {world.certs["beta"]}  # 10 days; 'blink' is past
    assert world.serials("--expires-within", "400") >= {world.certs[n] for n in ("alpha", "beta")}
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    assert world.serials("--expires-before", soon) == {world.certs["beta"]}
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=11)).replace(microsecond=0, tzinfo=None)
    assert world.serials("--expires-before", later.isoformat()) == {world.certs["beta"]}  # no zone: UTC
    assert world.serials("--expires-before", soon, "--profile", "tls-server") == set()
    for bad in (["--expires-before", "next month"], ["--expires-within", "0"], ["--expires-within", "x"]):
        p = world.run("cert", "list", *bad)
        assert p.returncode == 2, p.stderr
        assert_one_line_error(p, bad[0])


def test_cert_list_filters_run_in_sql(world):
    """The filters are WHERE clauses of the one query sent to the database (not Python filtering
    after loading every row): the SQL statements are captured from the real store."""
    from sqlalchemy import event

    from unica.ca.certs import CertFilter, list_certs
    from unica.store import open_store

    store = open_store(f"sqlite:///{world.home / 'unica.db'}")
    sent = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: sent.append((a[2], a[3])))
    try:
        rows = list_certs(store, CertFilter(subject="示例", uscc=USCC, profile="enterprise-sign", status="valid",
                                            expires_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=9999)))
    finally:
        store.dispose()
    assert [r["serial"] for r in rows] == [world.certs["ent"]]
    query = [(q, params) for q, params in sent if "FROM certificates" in q]
    assert len(query) == 1, sent
    where = query[0][0].split("WHERE", 1)[1]
    for needle in ("lower(certificates.subject_text) LIKE", "upper(certificates.subject_text)",
                   "certificates.profile =", "certificates.status =", "certificates.not_after <="):
        assert needle in where, (needle, where)


# --- ca show, crl list, crl show -------------------------------------------------------------


def test_ca_show_has_the_crl_number_and_next_update(world):
    info = world.json("ca", "show", world.ca)
    newest_base = world.json("crl", "show", "--ca", world.ca)
    assert info["crl_number"] == 3
    assert info["crl_next_update"] == newest_base["next_update"]
    assert info["delta_crl_number"] == 2
    assert info["delta_crl_next_update"] == world.json("crl", "show", "--ca", world.ca, "--delta")["next_update"]
    assert info["delta_crl_configured"] is True
    text = world.ok("ca", "show", world.ca).stdout
    assert re.search(r"^crl number:\s+3$", text, re.M)
    assert re.search(r"^delta crl configured:\s+yes$", text, re.M)
    assert re.search(r"^expired:\s+no$", text, re.M)
    assert re.search(r"^parent:\s+-$", text, re.M)  # a root: no parent, '-' as in every show and table
    assert "—" not in text
    assert not REPRS.search(text)


def test_crl_list(world):
    rows = world.json("crl", "list", "--ca", world.ca)
    assert [(r["number"], r["kind"]) for r in rows] == [(3, "base"), (2, "delta"), (1, "base")]
    assert rows[1]["base_number"] == 1
    assert [r["superseded"] for r in rows] == [False, False, True]
    assert rows[0]["entries"] == 2 and rows[2]["entries"] == 1  # gamma; then gamma and the hold
    assert rows[0]["url"] == f"http://crl.example.cn/{world.ca}.crl"
    assert rows[1]["url"] == f"http://crl.example.cn/{world.ca}-delta.crl"
    assert rows[0]["path"].endswith(f"{world.ca}.crl") and rows[1]["path"].endswith(f"{world.ca}-delta.crl")
    latest = world.json("crl", "list", "--ca", world.ca, "--latest")
    assert [r["number"] for r in latest] == [3, 2]
    assert [r["number"] for r in world.json("crl", "list", "--limit", "1")] == [3]
    text = world.ok("crl", "list").stdout
    assert text.splitlines()[0].split()[:4] == ["CA", "NUMBER", "KIND", "SHARD"]
    assert "delta of 1" in text and not REPRS.search(text)
    assert "null" not in world.ok("crl", "list", "--json").stdout
    p = world.run("crl", "list", "--ca", "no-such-ca")
    assert p.returncode == 1
    assert_one_line_error(p, "no-such-ca")


def test_crl_show_latest_numbered_and_delta(world):
    latest = world.json("crl", "show", "--ca", world.ca)
    assert latest["number"] == 3 and latest["file_state"] == "current"
    entries = {e["serial"]: e.get("reason") for e in latest["crl"]["revoked"]}
    assert entries == {world.certs["gamma"]: "keyCompromise", world.certs["held"]: "certificateHold"}
    assert latest["crl"]["delta_crl_urls"] == [f"URI:http://crl.example.cn/{world.ca}-delta.crl"]
    text = world.ok("crl", "show", "--ca", world.ca).stdout
    assert "holds this CRL" in text and world.certs["gamma"] in text and not REPRS.search(text)
    # CRL 1 was published to the same file, which now holds CRL 3: its record is shown, honestly
    old = world.ok("crl", "show", "--ca", world.ca, "--number", "1")
    assert "now holds another CRL" in old.stdout and world.certs["gamma"] not in old.stdout
    assert world.json("crl", "show", "--ca", world.ca, "--number", "1")["file_state"] == "replaced"
    delta = world.json("crl", "show", "--ca", world.ca, "--delta")
    assert delta["number"] == 2 and delta["kind"] == "delta" and delta["crl"]["crl_kind"] == "delta (base 1)"
    assert [e["serial"] for e in delta["crl"]["revoked"]] == [world.certs["held"]]
    few = world.json("crl", "show", "--ca", world.ca, "--entries", "1")
    assert len(few["crl"]["revoked"]) == 1 and few["entries"] == 2
    p = world.run("crl", "show", "--ca", world.ca, "--number", "99")
    assert p.returncode == 1
    assert_one_line_error(p, "no CRL number 99")
    p = world.run("crl", "show", "--ca", world.ca, "--number", "1", "--delta")
    assert p.returncode == 2
    assert_one_line_error(p, "--delta")


# --- unica show FILE -------------------------------------------------------------------------


def _show(w: World, path, *args) -> dict:
    return w.json("show", path, *args)


def test_show_certificate_pem_and_der_as_cert_show_sees_it(world):
    pem = world.pems["ent"]
    der = world.dir / "ent.der"
    subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", der], check=True)
    a, b = _show(world, pem), _show(world, der)
    assert a == b and a["kind"] == "certificate"
    stored = world.json("cert", "show", world.certs["ent"])
    for k in ("serial", "subject", "fingerprint_sha256", "spki_sha256", "not_after", "sans"):
        assert a[k] == stored[k], k
    assert a["is_ca"] is False and "documentSigning" in " ".join(a["extended_key_usage"])
    text = world.ok("show", pem).stdout
    assert re.search(r"^serial:\s+" + world.certs["ent"], text, re.M)
    assert re.search(r"^is ca:\s+no$", text, re.M) and not REPRS.search(text)
    # a PEM bundle: each block
    bundle = world.dir / "bundle.pem"
    bundle.write_text(pem.read_text() + world.pems["alpha"].read_text())
    both = _show(world, bundle)
    assert [x["serial"] for x in both] == [world.certs["ent"], world.certs["alpha"]]
    # standard input
    assert world.json("show", "-", input=pem.read_text())["serial"] == world.certs["ent"]


def test_show_csr(world):
    d = _show(world, world.csr)
    assert d["kind"] == "csr" and d["signature"] == "valid" and d["sans"] == ["DNS:held.example.cn"]


def test_show_crl_der_and_pem(world):
    path = Path(world.json("crl", "show", "--ca", world.ca)["path"])
    d = _show(world, path)
    assert d["kind"] == "crl" and d["crl_number"] == 3 and d["entries"] == 2
    pem = world.dir / "crl.pem"
    subprocess.run(["openssl", "crl", "-inform", "DER", "-in", path, "-out", pem], check=True)
    assert _show(world, pem) == d
    assert len(_show(world, path, "--entries", "0").get("revoked", [])) == 0
    text = world.ok("show", path).stdout
    assert "REVOKED AT" in text and world.certs["held"] in text and not REPRS.search(text)


def test_show_ocsp_response(world):
    with world.db() as c:
        der = c.execute("SELECT o.der FROM ocsp_responses o JOIN certificates c ON c.id = o.cert_id "
                        "WHERE c.serial = ?", (world.certs["alpha"],)).fetchone()[0]
    path = world.dir / "alpha.ocsp"
    path.write_bytes(der)
    d = _show(world, path)
    assert d["kind"] == "ocsp-response" and d["response_status"] == "successful"
    assert [(s["serial"], s["status"]) for s in d["single_responses"]] == [(world.certs["alpha"], "good")]
    assert not REPRS.search(world.ok("show", path).stdout)


def test_show_cms_detached_der_and_attached_pem(world):
    data = world.dir / "data.txt"
    data.write_text("seeing state\n")
    key = world.dir / "alpha.key"
    der, pem = world.dir / "sig.p7s", world.dir / "sig.pem"
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-in", data, "-signer", world.pems["alpha"], "-inkey", key,
                    "-outform", "DER", "-out", der], check=True, capture_output=True)
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-in", data, "-signer", world.pems["alpha"],
                    "-inkey", key, "-outform", "PEM", "-out", pem], check=True, capture_output=True)
    a, b = _show(world, der), _show(world, pem)
    assert a["kind"] == b["kind"] == "cms"
    assert a["detached"] == "yes" and b["detached"] == "no" and b["content_size"] == len(data.read_bytes())
    assert a["signers"][0]["signer"].endswith(f"serial {world.certs['alpha']}")
    assert a["certificates"] == [f"CN=alpha.example.cn (serial {world.certs['alpha']})"]
    assert not REPRS.search(world.ok("show", der).stdout)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"just some text\n", "neither PEM nor DER"),
    (b"\x30\x03\x02\x01\x01", "not a certificate, CSR, CRL"),
    (b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", "PRIVATE KEY"),
    (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "base64"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "PEM header"),
])
def test_show_malformed_input_is_one_line_exit_2(world, tmp_path, content, needle):
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    p = world.run("show", f)
    assert p.returncode == 2, p.stderr
    assert_one_line_error(p, needle)


def test_show_truncated_der_and_unreadable_input(world, tmp_path):
    der = world.dir / "ent.der"
    if not der.exists():
        subprocess.run(["openssl", "x509", "-in", world.pems["ent"], "-outform", "DER", "-out", der], check=True)
    cut = tmp_path / "cut.der"
    cut.write_bytes(der.read_bytes()[:200])
    p = world.run("show", cut)
    assert p.returncode == 2
    assert_one_line_error(p, "not a certificate")
    p = world.run("show", tmp_path / "missing.pem")
    assert p.returncode == 2
    assert_one_line_error(p, "cannot read")
    p = world.run("show", "/dev/zero")  # bounded: refused, not read forever
    assert p.returncode == 2
    assert_one_line_error(p, "larger than")
