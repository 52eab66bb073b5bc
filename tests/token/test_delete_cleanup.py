"""Issue #11 item 6 and the token parts of 15, on real SoftHSM2 tokens through the real CLI:
`token delete`, a failed `enroll` removing the key it made, `renew --rekey --remove-old`
removing the old key, `init` reporting the slot the token ends up in, no PIN asked for a
missing token, the wrong-PIN message, concurrent processes on one token.

What is gone is cross-checked with OpenSC's `pkcs11-tool --list-objects`.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import SOFTHSM_MODULE, assert_one_line_error, run_unica
from tests.token.pki import enroll_with_cli, init_token_in_process, new_token_label, run

SEAL_SUBJECT = "CN=示例企业公章,O=示例企业有限公司,C=CN"
USCC = "91350100M000100Y43"


def _p11_objects(token: str) -> list[dict]:
    """pkcs11-tool's view of the token (logged in): one dict per object, 'head' is its kind."""
    r = run("pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token, "--login",
            "--pin", os.environ["UNICA_PIN"], "--list-objects")
    out, cur = [], None
    for line in r.stdout.splitlines():
        if line and not line.startswith(" "):
            cur = {"head": line.split(";")[0].strip()}
            out.append(cur)
        elif cur is not None and ":" in line:
            k, _, v = line.strip().partition(":")
            cur[k.strip()] = v.strip()
    return out


def _kinds_by_id(token: str) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for o in _p11_objects(token):
        got.setdefault(o.get("ID", ""), set()).add(o["head"])
    return got


def _run_on_tty(args: list[str], answer: str | None, env: dict | None = None, timeout: float = 120):
    """The CLI with a terminal as stdin (what an operator has); ``answer`` typed once a prompt
    shows on stderr. (returncode, stderr text)."""
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "unica", *args], stdin=slave, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=full_env)
    os.close(slave)
    err = b""
    deadline = time.monotonic() + timeout
    answered = False
    try:
        while p.poll() is None and time.monotonic() < deadline:
            r, _, _ = select.select([p.stderr], [], [], 0.2)
            if r:
                chunk = os.read(p.stderr.fileno(), 4096)
                err += chunk
                if answer is not None and not answered and b"?" in err:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
        if p.poll() is None:
            p.kill()
            p.wait()
            return None, (err + p.stderr.read()).decode(errors="replace")
        return p.returncode, (err + p.stderr.read()).decode(errors="replace")
    finally:
        os.close(master)


# --- token delete ---------------------------------------------------------------------


def test_delete_cert_then_key_by_label_and_id(unica, soft_ca, tmp_path):
    e = enroll_with_cli(run_unica, soft_ca, tmp_path, subject="CN=Del Co,O=Del Co,C=CN", uscc=None)
    p = unica("token", "objects", "--token", e.token, "--json")
    kid = next(o["id"] for o in json.loads(p.stdout) if o["kind"] == "private-key" and o["label"] == "signer")
    assert _kinds_by_id(e.token)[kid] == {"Private Key Object", "Public Key Object", "Certificate Object"}

    # no terminal and no --yes: refused, one line, exit 2, nothing changed
    p = unica("token", "delete", "--token", e.token, "--label", "signer")
    assert_one_line_error(p, "confirmation", "--yes")
    assert p.returncode == 2
    assert _kinds_by_id(e.token)[kid] == {"Private Key Object", "Public Key Object", "Certificate Object"}

    # the certificate only, by label
    p = unica("token", "delete", "--token", e.token, "--label", "signer", "--what", "cert", "--yes", "--json")
    assert p.returncode == 0, p.stderr
    assert [o["kind"] for o in json.loads(p.stdout)] == ["certificate"]
    by_id = _kinds_by_id(e.token)
    assert by_id[kid] == {"Private Key Object", "Public Key Object"}
    # the CA certificates of the chain are other objects: untouched
    assert sum("Certificate Object" in v for v in by_id.values()) == 2

    # then the key pair, by id
    p = unica("token", "delete", "--token", e.token, "--id", kid, "--what", "key", "--yes")
    assert p.returncode == 0, p.stderr
    assert "deleted private-key" in p.stdout and "deleted public-key" in p.stdout
    assert kid not in _kinds_by_id(e.token)

    # nothing left to delete: a clear error; bad selectors are usage errors
    assert_one_line_error(unica("token", "delete", "--token", e.token, "--id", kid, "--yes"), "no key", kid)
    p = unica("token", "delete", "--token", e.token, "--id", "xyz", "--yes")
    assert_one_line_error(p, "not hex")
    assert p.returncode == 2
    p = unica("token", "delete", "--token", e.token, "--yes")
    assert_one_line_error(p, "--label", "--id")
    assert p.returncode == 2


def test_delete_asks_on_a_terminal(soft_ca, tmp_path):
    e = enroll_with_cli(run_unica, soft_ca, tmp_path, subject="CN=Ask Co,O=Ask Co,C=CN", uscc=None, label="ask")
    args = ["token", "delete", "--token", e.token, "--label", "ask"]
    rc, err = _run_on_tty(args, "n")
    assert rc == 1, err
    assert "private-key label='ask'" in err and "certificate label='ask'" in err and "nothing was deleted" in err
    assert len(_p11_objects(e.token)) == 5  # key pair, its certificate, two CA certificates
    rc, err = _run_on_tty(args, "y")
    assert rc == 0, err
    heads = [o["head"] for o in _p11_objects(e.token)]
    assert heads == ["Certificate Object"] * 2  # only the CA certificates remain


# --- enroll: refused by the CA -> its key is removed, exit 3, no temporary path ---------


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory):
    """A local CA home: 'narrow' issues TLS server certificates only, 'wide' issues anything."""
    home = tmp_path_factory.mktemp("cleanup-home") / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": "cleanup-test-passphrase", "UNICA_DB": None}
    for args in (["init"],
                 ["ca", "create-root", "root", "--subject", "C=CN,O=示例,CN=Cleanup Root", "--key-type", "ec-p256"],
                 ["ca", "create-sub", "narrow", "--parent", "root", "--subject", "C=CN,O=示例,CN=Narrow Sub",
                  "--key-type", "ec-p256", "--profiles", "tls-server"],
                 ["ca", "create-sub", "wide", "--parent", "root", "--subject", "C=CN,O=示例,CN=Wide Sub",
                  "--key-type", "ec-p256"]):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, (args, p.stderr)
    return env


def test_enroll_refused_by_ca_removes_only_its_key_and_retry_succeeds(unica, two_cas):
    env = two_cas
    token = new_token_label("clean")
    init_token_in_process(token)
    assert unica("token", "keygen", "--token", token, "--label", "other", "--type", "ec-p256").returncode == 0
    before = _kinds_by_id(token)
    assert len(before) == 1
    args = ["token", "enroll", "--token", token, "--label", "seal", "--type", "ec-p256", "--subject", SEAL_SUBJECT,
            "--uscc", USCC, "--profile", "enterprise-sign"]
    p = unica(*args, "--ca", "narrow", env=env)
    assert_one_line_error(p, "narrow", "enterprise-sign", "removed")
    assert p.returncode == 3, p.stderr
    assert "/tmp" not in p.stderr and "unica-enroll-" not in p.stderr and ".pem" not in p.stderr, p.stderr
    # the key this run made is gone (pkcs11-tool agrees); the key that was there stays
    assert _kinds_by_id(token) == before
    # the same command against a CA that issues under the profile now succeeds
    p = unica(*args, "--ca", "wide", "--json", env=env)
    assert p.returncode == 0, p.stderr
    kid = json.loads(p.stdout)["id"]
    assert _kinds_by_id(token)[kid] == {"Private Key Object", "Public Key Object", "Certificate Object"}


def test_enroll_refused_by_the_profile_before_a_key_is_made(unica, two_cas):
    token = new_token_label("pre")
    init_token_in_process(token)
    # no organizationIdentifier, which enterprise-sign requires: refused before keygen
    p = unica("token", "enroll", "--token", token, "--label", "k", "--type", "ec-p256", "--subject", "CN=x,O=y,C=CN",
              "--ca", "wide", "--profile", "enterprise-sign", env=two_cas)
    assert_one_line_error(p, "organizationIdentifier", "enterprise-sign")
    assert p.returncode == 3, p.stderr
    assert _p11_objects(token) == []


def test_renew_rekey_remove_old_removes_the_old_key(unica, two_cas):
    env = two_cas
    token = new_token_label("rk")
    init_token_in_process(token)
    p = unica("token", "enroll", "--token", token, "--label", "seal", "--type", "ec-p256", "--subject", SEAL_SUBJECT,
              "--uscc", USCC, "--ca", "wide", "--profile", "enterprise-sign", "--json", env=env)
    assert p.returncode == 0, p.stderr
    old_id = json.loads(p.stdout)["id"]
    p = unica("token", "renew", "--key", f"pkcs11:token={token};object=seal", "--rekey", "--new-label", "seal-2",
              "--ca", "wide", "--profile", "enterprise-sign", "--remove-old", env=env)
    assert p.returncode == 0, p.stderr
    assert "removed 1 old certificate(s) and the old key" in p.stdout, p.stdout
    by_id = _kinds_by_id(token)
    assert old_id not in by_id, by_id
    new = [o for o in _p11_objects(token) if o.get("label") == "seal-2"]
    assert {o["head"] for o in new} == {"Private Key Object", "Public Key Object", "Certificate Object"}
    assert [o for o in _p11_objects(token) if o.get("label") == "seal"] == []


# --- token csr: the subject checked as the CA will check it --------------------------------


def test_csr_checks_subject_against_profile_before_the_pin(unica, enrolled):
    key = enrolled.key_uri
    # the profile's rules: checked before any PIN is asked (none is available here)
    p = unica("token", "csr", "--key", key, "--subject", "CN=x,O=y,C=CN", "--profile", "enterprise-sign",
              env={"UNICA_PIN": None})
    assert_one_line_error(p, "organizationIdentifier", "enterprise-sign")
    assert p.returncode == 3
    # an O longer than X.520 allows: no CA would issue it, refused without a profile too
    p = unica("token", "csr", "--key", key, "--subject", f"CN=x,O={'某' * 65},C=CN", env={"UNICA_PIN": None})
    assert_one_line_error(p, "organizationName", "64")
    assert p.returncode == 3
    p = unica("token", "csr", "--key", key, "--subject", "CN=x,O=y,C=CN", "--profile", "no-such-profile")
    assert_one_line_error(p, "no-such-profile")
    # a subject the profile takes
    p = unica("token", "csr", "--key", key, "--subject", SEAL_SUBJECT, "--uscc", USCC, "--profile", "enterprise-sign")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")


# --- init, missing tokens, PINs, concurrency -------------------------------------------------


def test_init_reports_the_slot_the_token_ends_up_in(unica):
    label = new_token_label("slot")
    p = unica("token", "init", "--free", "--label", label, "--json")
    assert p.returncode == 0, p.stderr
    reported = json.loads(p.stdout)["slot_id"]
    p = unica("token", "info", "--token", label, "--json")
    assert json.loads(p.stdout)["slot_id"] == reported
    # pkcs11-tool, another program, finds it there too
    r = run("pkcs11-tool", "--module", SOFTHSM_MODULE, "--list-token-slots")
    slot_lines = [ln for ln in r.stdout.splitlines() if ln.startswith("Slot")]
    idx = next(i for i, ln in enumerate(r.stdout.splitlines()) if f"token label        : {label}" in ln)
    head = [ln for ln in r.stdout.splitlines()[:idx] if ln.startswith("Slot")][-1]
    assert f"(0x{reported:x})" in head, (head, slot_lines)
    p = unica("token", "init", "--free", "--label", label + "-h")
    assert p.returncode == 0, p.stderr
    assert f"in slot {json.loads(unica('token', 'info', '--token', label + '-h', '--json').stdout)['slot_id']} " \
        in p.stdout


def test_missing_token_is_reported_before_a_pin_is_asked(unica):
    for args in (["key", "show", "pkcs11:token=no-such-tok;object=x"],
                 ["token", "objects", "--token", "no-such-tok"],
                 ["token", "csr", "--key", "pkcs11:token=no-such-tok;object=x", "--subject", "CN=x"],
                 ["token", "delete", "--token", "no-such-tok", "--label", "x", "--yes"],
                 ["key", "list", "--token", "no-such-tok"]):
        # on a terminal, with no UNICA_PIN: a prompt would wait; the missing token is said first
        rc, err = _run_on_tty(args, None, env={"UNICA_PIN": None}, timeout=60)
        assert rc == 1, (args, err)
        assert "no-such-tok" in err and "no PKCS#11 token" in err and "PIN" not in err, (args, err)


def test_wrong_pin_message_claims_no_counter(unica):
    label = new_token_label("wp")
    init_token_in_process(label)
    for _ in range(2):  # SoftHSM2 then sets CKF_USER_PIN_COUNT_LOW, which says nothing about attempts left
        p = unica("token", "objects", "--token", label, env={"UNICA_PIN": "not-the-pin"})
        assert_one_line_error(p, "wrong PIN", label, "CKR_PIN_INCORRECT")
        assert "count" not in p.stderr and "attempt" not in p.stderr, p.stderr
    assert unica("token", "objects", "--token", label).returncode == 0


_LOGINS = """
import os, sys, pkcs11
tok = next(t for t in pkcs11.lib(sys.argv[1]).get_tokens() if t.label == sys.argv[2])
print("logging in", flush=True)
while not os.path.exists(sys.argv[4]):  # each SoftHSM2 login rewrites the token's token.object
    with tok.open(user_pin=sys.argv[3]):
        pass
"""


def test_concurrent_logins_on_one_token(unica, tmp_path):
    """Two `unica` processes log in at once to a token another process keeps logging in to:
    neither fails with "is it plugged in?" or CKR_USER_PIN_NOT_INITIALIZED (a SoftHSM2 process
    starting while another login rewrites the token file reads it half-written)."""
    label = new_token_label("cc")
    init_token_in_process(label)
    assert unica("token", "keygen", "--token", label, "--label", "base", "--type", "ec-p256").returncode == 0
    stop = tmp_path / "stop"
    other = subprocess.Popen([sys.executable, "-c", _LOGINS, SOFTHSM_MODULE, label, os.environ["UNICA_PIN"], str(stop)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures = []
    try:
        assert other.stdout.readline().strip() == "logging in", other.stderr.read()
        with ThreadPoolExecutor(2) as ex:
            for i in range(5):
                a = ex.submit(run_unica, "key", "show", f"pkcs11:token={label};object=base")
                b = ex.submit(run_unica, "token", "objects", "--token", label)
                failures += [p.stderr for p in (a.result(), b.result()) if p.returncode != 0]
    finally:
        stop.touch()  # stopped between two logins: killed in the middle of one, SoftHSM2 can leave the file empty
        other.wait(timeout=60)
    assert failures == []
    assert unica("token", "objects", "--token", label).returncode == 0
