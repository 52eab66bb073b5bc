"""Consistency across the command tree (issue #11, item 14).

The walk starts at the click root, so a command added later is checked without editing this
file. What is asserted:

* one option name has one meaning: the same metavar, the same kind of value (type, choices,
  flag or not) in every command that has it, except the few listed in ``EXCEPTIONS`` with the
  reason each differs;
* the options made by one shared decorator read the same everywhere (``SHARED_HELP``);
* every secret-file option (``--pin-file``, ``--so-pin-file``, ``--ca-passphrase-file``, ...)
  takes ``-`` for standard input, and ``-`` works on the real binary;
* the short forms are aliases, not commands (tests/cli/test_aliases.py runs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest

from tests.conftest import run_unica
from tests.clitree import all_commands
from unica.cli.main import ALIASES, cli


COMMANDS = list(all_commands(cli))

#: option name -> {command path: why it differs}; a command not listed here must agree with the rest
EXCEPTIONS = {
    "--chain": {
        "sign cms": "a FILE of CA certificates to embed in the signature; in ca/cert export and cert issue "
                    "--chain is a flag (append the CA chain to the output): both are established, renaming "
                    "either breaks scripts",
        "sign pdf": "as sign cms",
        "token import-cert": "a FILE of CA certificates to write onto the token, as sign cms",
    },
    "--reason": {
        "sign pdf": "the free-text /Reason of a PDF signature (PAdES), not an RFC 5280 revocation reason",
        "approval reject": "free text: why the approver rejects a request under dual control (issue #12 names "
                           "'--reason TEXT'), not an RFC 5280 revocation reason",
        "application approve": "free text: why an RA officer decides on an application (issue #13), as approval reject",
        "application reject": "as application approve (the service's decision body has the same 'reason')",
        "revocation-request approve": "free text: why the officer decides; the RFC 5280 reason is the enterprise's, "
                                      "in the request",
        "revocation-request reject": "as revocation-request approve",
        "enterprise disable": "free text: why an officer disables an enterprise (audited), as application reject; "
                              "no certificate is revoked by it",
        "enterprise enable": "as enterprise disable",
    },
    "--subject": {
        "cert list": "a filter: TEXT the subject DN contains, not a DN to put in a certificate",
    },
    "--label": {
        "token init": "the token's label; elsewhere the label of a key pair or object (both LABEL)",
    },
    "--out": {
        "backup": "a DIR: a backup is several files (database, profiles, manifest); elsewhere one FILE",
    },
}

#: options made by one shared helper: the same help text in every command
SHARED_HELP = ("--json", "--pin-file", "--passphrase-file", "--so-pin-file", "--new-pin-file", "--db", "--module")


def _signature(param: click.Option, ctx: click.Context) -> tuple:
    """What an option means to the user: the value it takes (metavar as --help shows it, type,
    choices) or that it is a flag."""
    if param.is_flag or param.count:
        return ("flag",)
    t = param.type
    choices = tuple(t.choices) if isinstance(t, click.Choice) else None
    kind = type(t).__name__
    if isinstance(t, click.Path):
        kind += "(-)" if t.allow_dash else ""
    return (param.make_metavar(ctx), kind, choices)


def _options():
    """(option name, command path, click.Option, ctx) over the whole tree."""
    for path, command in COMMANDS:
        ctx = click.Context(command, info_name=path[-1] if path else "unica")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in param.opts + param.secondary_opts:
                    if name.startswith("--") and name != "--help":
                        yield name, " ".join(path), param, ctx


def test_the_walk_sees_the_noun_verb_commands_once():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"cert issue", "cert issue-batch", "cert revoke", "cert hold", "cert release"} <= paths
    assert not paths & set(ALIASES)


def test_one_option_name_one_meaning():
    meanings: dict[str, dict[tuple, list[str]]] = {}
    for name, path, param, ctx in _options():
        if path in EXCEPTIONS.get(name, {}):
            continue
        meanings.setdefault(name, {}).setdefault(_signature(param, ctx), []).append(path)
    clashes = {name: {str(sig): paths for sig, paths in sigs.items()} for name, sigs in meanings.items()
               if len(sigs) > 1}
    assert not clashes, json.dumps(clashes, indent=1, ensure_ascii=False)


def test_the_exceptions_are_still_needed():
    """An exception that no longer differs is taken off the list."""
    seen = {(name, path): (param, ctx) for name, path, param, ctx in _options()}
    for name, paths in EXCEPTIONS.items():
        others = {_signature(p, c) for (n, q), (p, c) in seen.items() if n == name and q not in paths}
        for path in paths:
            if (name, path) not in seen:  # not (or no longer) there
                continue
            param, ctx = seen[(name, path)]
            if name != "--label":  # --label: the same signature, a different object (the reason says which)
                assert _signature(param, ctx) not in others, f"{name} in '{path}' agrees now: remove the exception"


def test_shared_options_read_the_same_everywhere():
    helps: dict[str, set[str]] = {}
    for name, path, param, ctx in _options():
        if name in SHARED_HELP:
            helps.setdefault(name, set()).add(param.help or "")
    assert set(helps) == set(SHARED_HELP)
    assert {name: h for name, h in helps.items() if len(h) != 1} == {}


def test_key_type_is_one_option_with_the_same_choices():
    from unica.hsm.keytypes import KeyType

    found = [(path, param) for name, path, param, _ctx in _options() if name == "--key-type"]
    assert {p for p, _ in found} >= {"ca create-root", "ca create-sub", "ocsp signer", "token keygen",
                                     "token enroll", "key generate"}
    for path, param in found:
        assert tuple(param.type.choices) == tuple(k.value for k in KeyType), path


def test_every_secret_file_option_takes_a_dash():
    secret_options = [(name, path, param) for name, path, param, _ctx in _options()
                      if name.endswith("pin-file") or name.endswith("passphrase-file")]
    assert len(secret_options) > 30
    for name, path, param in secret_options:
        assert isinstance(param.type, click.Path) and param.type.allow_dash, f"{path} {name}"
        assert param.metavar == "FILE" and "'-': standard input" in param.help, f"{path} {name}"


# --- '-' on the real binary ---------------------------------------------------------


def test_passphrase_file_dash_reads_standard_input(tmp_path):
    home = tmp_path / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": None, "UNICA_DB": None}
    key = tmp_path / "k.key"
    p = run_unica("key", "generate", f"file:{key}", "--key-type", "ec-p256", "--passphrase-file", "-", "--json",
                  env=env, input="stdin pass phrase\n")
    assert p.returncode == 0, p.stderr
    spki = json.loads(p.stdout)["spki_sha256"]
    p = run_unica("key", "show", f"file:{key}", "--passphrase-file", "-", "--json", env=env,
                  input="stdin pass phrase\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["spki_sha256"] == spki
    # the older name of --key-type still works
    p = run_unica("key", "generate", f"file:{tmp_path / 'k2.key'}", "--type", "ec-p256", "--passphrase-file", "-",
                  env=env, input="another\n")
    assert p.returncode == 0, p.stderr
    # the wrong passphrase on stdin, and nothing on stdin: one clean line each
    p = run_unica("key", "show", f"file:{key}", "--passphrase-file", "-", env=env, input="wrong\n")
    assert p.returncode != 0 and p.stderr.startswith("unica: error: ") and len(p.stderr.splitlines()) == 1
    p = run_unica("key", "show", f"file:{key}", "--passphrase-file", "-", env=env, input="")
    assert p.returncode == 2 and p.stderr.strip() == ("unica: error: no key passphrase on standard input "
                                                      "(one line expected)"), p.stderr


def test_pin_file_dash_reads_standard_input(token_label):
    env = {"UNICA_PIN": None}
    p = run_unica("token", "objects", "--token", token_label, "--pin-file", "-", "--json", env=env,
                  input=os.environ["UNICA_PIN"] + "\n")
    assert p.returncode == 0, p.stderr
    assert isinstance(json.loads(p.stdout), list)
    p = run_unica("key", "list", "--token", token_label, "--pin-file", "-", env=env,
                  input=os.environ["UNICA_PIN"] + "\r\n")  # a CRLF line ending is not part of the PIN
    assert p.returncode == 0, p.stderr


def test_two_secrets_from_standard_input_come_one_per_line(tmp_path, token_label):
    """token change-pin --pin-file - --new-pin-file -: the current PIN, then the new one; and back."""
    old, new = os.environ["UNICA_PIN"], "5931-changed"
    env = {"UNICA_PIN": None, "UNICA_NEW_PIN": None}
    p = run_unica("token", "change-pin", "--token", token_label, "--pin-file", "-", "--new-pin-file", "-",
                  env=env, input=f"{old}\n{new}\n")
    assert p.returncode == 0, p.stderr
    p = run_unica("token", "change-pin", "--token", token_label, "--pin-file", "-", "--new-pin-file", "-",
                  env=env, input=f"{new}\n{old}\n")
    assert p.returncode == 0, p.stderr
    p = run_unica("token", "objects", "--token", token_label, "--json", env={"UNICA_PIN": old})
    assert p.returncode == 0, p.stderr


# --- prompts name what they want (on a terminal only) ---------------------------------


def _on_a_terminal(args: list[str], answers: list[str], env: dict, timeout: float = 120) -> tuple[list[str], str, int]:
    """Run the real ``unica`` with a pseudo-terminal as its controlling terminal and standard
    streams; answer each prompt (text ending in ': ') in turn. The prompts seen, all output, the
    exit status."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve(sys.executable, [sys.executable, "-m", "unica", *args], env)
        finally:
            os._exit(127)
    out, prompts = b"", []
    deadline = time.monotonic() + timeout

    def read_some() -> bool:
        nonlocal out
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(out.decode(errors="replace"))
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        out += chunk
        return bool(chunk)

    try:
        for answer in answers:
            start = len(out)
            while not out[start:].rstrip(b" ").endswith(b":"):
                if not read_some():
                    break
            prompts.append(out[start:].decode().strip())
            os.write(fd, answer.encode() + b"\n")
        while read_some():
            pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return prompts, out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def _env(**changes) -> dict:
    env = dict(os.environ)
    for k in ("UNICA_PIN", "UNICA_SO_PIN", "UNICA_PASSPHRASE", "UNICA_NEW_PIN"):
        env.pop(k, None)
    env.update(changes)
    return env


def test_the_passphrase_prompt_names_the_key_file(tmp_path):
    key = tmp_path / "keys" / "x.key"
    key.parent.mkdir()
    env = _env(UNICA_HOME=str(tmp_path / "home"))
    prompts, out, code = _on_a_terminal(["key", "generate", f"file:{key}", "--key-type", "ec-p256"],
                                        ["terminal pass phrase", "terminal pass phrase"], env)
    assert code == 0, out
    assert prompts[0] == f"New passphrase for key file {key}:", prompts
    assert prompts[1].startswith("Repeat for confirmation"), prompts
    prompts, out, code = _on_a_terminal(["key", "show", f"file:{key}"], ["terminal pass phrase"], env)
    assert code == 0, out
    assert prompts == [f"Passphrase for key file {key}:"]
    assert "spki sha256:" in out


def test_the_pin_prompt_names_the_token(token_label):
    prompts, out, code = _on_a_terminal(["token", "objects", "--token", token_label], [os.environ["UNICA_PIN"]],
                                        _env())
    assert code == 0, out
    assert prompts == [f"PIN for token '{token_label}':"]


def test_no_prompt_without_a_terminal(tmp_path, token_label):
    p = run_unica("token", "objects", "--token", token_label, env={"UNICA_PIN": None})
    assert p.returncode != 0 and "PIN for token" not in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    assert "UNICA_PIN" in p.stderr


def test_token_init_force_asks_for_the_current_so_pin():
    from tests.conftest import TEST_PIN, TEST_SO_PIN, softhsm_init_token

    label = "unica-reinit"
    softhsm_init_token(label)
    tokens = json.loads(run_unica("token", "list", "--json").stdout)
    slot = next(t["slot_id"] for t in tokens if t["label"] == label)
    prompts, out, code = _on_a_terminal(
        ["token", "init", "--slot", str(slot), "--label", "unica-reinit-2", "--force"],
        [TEST_SO_PIN, TEST_PIN, TEST_PIN], _env())
    assert code == 0, out
    # the prompt names the token as it is now, and says what --force does
    assert prompts[0] == f"Current SO PIN of token '{label}' in slot {slot} (--force erases the token):", prompts
    assert prompts[1:] == ["New user PIN for token 'unica-reinit-2':", "Repeat for confirmation:"], prompts
    assert "initialised token 'unica-reinit-2'" in out
    # the SO PIN stayed: the security officer can still set a user PIN
    p = run_unica("token", "unblock", "--token", "unica-reinit-2", env={"UNICA_NEW_PIN": TEST_PIN})
    assert p.returncode == 0, p.stderr
    # a new token (no --force) asks for a new SO PIN, twice
    prompts, out, code = _on_a_terminal(
        ["token", "init", "--free", "--label", "unica-fresh"], ["7777-so", "7777-so", "8888-user", "8888-user"], _env())
    assert code == 0, out
    assert prompts == ["New SO PIN for token 'unica-fresh':", "Repeat for confirmation:",
                       "New user PIN for token 'unica-fresh':", "Repeat for confirmation:"], prompts


# --- live OCSP answers: the validity the README states, and configurable ------------------


def _serve(pki, port: int):
    import time
    import urllib.request

    env = dict(os.environ)
    env.update({k: v for k, v in pki.env.items() if v is not None})
    env.pop("UNICA_DB", None)
    err = open(pki.tmp / f"serve-{port}.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "unica", "ocsp", "serve", "--port", str(port), "--ca", "sub"],
                            env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, (pki.tmp / f"serve-{port}.err").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the responder did not come up")


def _live_window(pki, serial: str) -> "tuple":
    """thisUpdate and nextUpdate of a live answer, as openssl ocsp prints them."""
    import datetime as dt
    import re
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cert = pki.tmp / f"{serial}.pem"
    cert.write_text(pki.run("cert", "export", serial).stdout)
    chain = pki.tmp / "chain.pem"
    chain.write_text(pki.export("sub").read_text() + pki.export("root").read_text())
    proc = _serve(pki, port)
    try:
        r = subprocess.run(["openssl", "ocsp", "-issuer", str(pki.tmp / "sub.pem"), "-cert", str(cert),
                            "-url", f"http://127.0.0.1:{port}/", "-CAfile", str(chain), "-resp_text"],
                           capture_output=True, text=True, timeout=60)
    finally:
        proc.terminate()
        proc.wait(10)
    out = r.stdout + r.stderr
    assert "Response verify OK" in out and f"{cert}: good" in out, out

    def when(label):
        text = re.search(rf"{label}: (.+ GMT)", out).group(1)
        return dt.datetime.strptime(" ".join(text.split()), "%b %d %H:%M:%S %Y GMT")

    return when("This Update"), when("Next Update")


@pytest.fixture(scope="module")
def live_pki(tmp_path_factory):
    from tests.revocation.conftest import make_pki

    pki = make_pki(run_unica, tmp_path_factory.mktemp("live-ocsp"))
    pki.run("ocsp", "signer", "--ca", "sub")
    pki.run("ocsp", "configure", "--ca", "sub", "--mode", "live")
    return pki


def test_live_ocsp_answers_are_valid_5_minutes_by_default(live_pki):
    import datetime as dt

    pki = live_pki
    shown = json.loads(pki.run("ocsp", "configure", "--ca", "sub", "--json").stdout)
    assert shown["live_validity_minutes"] == 5.0 and "live_validity_minutes" in shown["defaults"]
    this, nxt = _live_window(pki, pki.issue("sub")["serial"])
    assert nxt - this == dt.timedelta(minutes=5)


def test_live_ocsp_validity_is_configurable(live_pki):
    import datetime as dt

    pki = live_pki
    out = pki.run("ocsp", "configure", "--ca", "sub", "--live-validity", "15m").stdout
    assert "live_validity=15m" in out and "live_validity=15m (default)" not in out
    this, nxt = _live_window(pki, pki.issue("sub")["serial"])
    assert nxt - this == dt.timedelta(minutes=15)
    for bad in ("0m", "30s", "8d", "soon"):
        p = pki.run("ocsp", "configure", "--ca", "sub", "--live-validity", bad, ok=False)
        assert p.returncode == 2 and p.stderr.startswith("unica: error: ") and len(p.stderr.splitlines()) == 1, \
            (bad, p.stderr)
    audit = json.loads(pki.run("audit", "show", "--event", "ocsp.configured", "--json").stdout)
    assert any(e.get("details", {}).get("live_validity_minutes") == 15.0 for e in audit)
    pki.run("ocsp", "configure", "--ca", "sub", "--live-validity", "5m")


# --- times without a zone are UTC, everywhere ----------------------------------------------

#: a local zone far from UTC: a time read as local instead of UTC would be 8 hours off
FAR_FROM_UTC = {"TZ": "Asia/Shanghai"}

#: every option that takes a point in time (WHEN)
TIME_OPTIONS = {"--since", "--invalidity-date", "--expires-before", "--at"}


def test_every_time_option_is_a_when_that_says_utc():
    found = {}
    for name, path, param, _ctx in _options():
        if param.metavar == "WHEN" or name in TIME_OPTIONS:
            found.setdefault(name, []).append(path)
            assert param.metavar == "WHEN", (path, name)
            assert "no zone means UTC" in (param.help or ""), (path, name, param.help)
    assert set(found) >= TIME_OPTIONS, found


def test_the_one_parser():
    import datetime as dt

    from unica.cli.when import parse_when
    from unica.errors import InputError

    utc = dt.timezone.utc
    assert parse_when("2026-11-20", "--x") == dt.datetime(2026, 11, 20, tzinfo=utc)
    assert parse_when("2026-11-20T08:00", "--x") == dt.datetime(2026, 11, 20, 8, tzinfo=utc)
    assert parse_when("2026-11-20T08:00:00Z", "--x") == dt.datetime(2026, 11, 20, 8, tzinfo=utc)
    assert parse_when("2026-11-20T16:00:00+08:00", "--x") == dt.datetime(2026, 11, 20, 8, tzinfo=utc)
    for bad in ("2026-13-01", "yesterday", "2026-11-20T25:00", ""):
        with pytest.raises(InputError, match="--x"):
            parse_when(bad, "--x")


@pytest.fixture(scope="module")
def dated_pki(tmp_path_factory):
    from tests.revocation.conftest import make_pki

    return make_pki(run_unica, tmp_path_factory.mktemp("dates"))


def _run(pki, *args, ok=True):
    p = run_unica(*args, env={**pki.env, **FAR_FROM_UTC})
    if ok:
        assert p.returncode == 0, (args, p.stderr)
    return p


def test_revoke_and_hold_invalidity_date_without_zone_is_utc(dated_pki):
    pki = dated_pki
    for cmd in (["cert", "revoke"], ["revoke"], ["cert", "hold"]):
        serial = pki.issue("sub")["serial"]
        extra = ["--reason", "keyCompromise"] if "revoke" in cmd else []
        st = json.loads(_run(pki, *cmd, serial, "--ca", "sub", *extra, "--invalidity-date", "2026-11-20T08:00",
                             "--json").stdout)
        assert st["invalidity_date"] in ("2026-11-20T08:00:00+00:00", "2026-11-20T08:00:00Z"), (cmd, st)
    serial = pki.issue("sub")["serial"]
    st = json.loads(_run(pki, "cert", "revoke", serial, "--ca", "sub", "--invalidity-date", "2026-11-20",
                         "--json").stdout)
    assert st["invalidity_date"].startswith("2026-11-20T00:00:00"), st
    p = _run(pki, "cert", "revoke", pki.issue("sub")["serial"], "--invalidity-date", "20/11/2026", ok=False)
    assert p.returncode == 2 and p.stderr.startswith("unica: error: ") and "--invalidity-date" in p.stderr


def test_audit_since_without_zone_is_utc(dated_pki):
    import datetime as dt

    pki = dated_pki
    entries = json.loads(_run(pki, "audit", "show", "--json", "--oldest-first").stdout)
    newest = dt.datetime.fromisoformat(entries[-1]["at"]).astimezone(dt.timezone.utc)
    naive = (newest - dt.timedelta(seconds=1)).replace(tzinfo=None, microsecond=0).isoformat()
    shown = json.loads(_run(pki, "audit", "show", "--since", naive, "--json").stdout)
    assert entries[-1]["id"] in {e["id"] for e in shown}
    # eight hours later in UTC is after every entry: read as Shanghai time, it would be now
    later = (newest + dt.timedelta(hours=8, minutes=1)).replace(tzinfo=None, microsecond=0).isoformat()
    assert json.loads(_run(pki, "audit", "show", "--since", later, "--json").stdout) == []


def test_cert_list_expires_before_without_zone_is_utc(dated_pki):
    import datetime as dt

    pki = dated_pki
    serial = pki.issue("sub")["serial"]
    info = json.loads(_run(pki, "cert", "show", serial, "--json").stdout)
    end = dt.datetime.fromisoformat(info["not_after"].replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    just_after = (end + dt.timedelta(minutes=1)).replace(tzinfo=None).isoformat(timespec="seconds")
    just_before = (end - dt.timedelta(minutes=1)).replace(tzinfo=None).isoformat(timespec="seconds")
    listed = lambda when: {r["serial"] for r in json.loads(  # noqa: E731
        _run(pki, "cert", "list", "--ca", "sub", "--expires-before", when, "--json").stdout)}
    assert serial in listed(just_after)
    assert serial not in listed(just_before)


def test_verify_at_without_zone_is_utc(dated_pki):
    import datetime as dt

    from cryptography import x509

    pki = dated_pki
    serial = pki.issue("sub")["serial"]
    leaf = pki.tmp / f"{serial}.pem"
    leaf.write_text(_run(pki, "cert", "export", serial).stdout)
    start = x509.load_pem_x509_certificate(leaf.read_bytes()).not_valid_before_utc
    root, sub = pki.export("root"), pki.export("sub")

    def verify(at: dt.datetime) -> int:
        return _run(pki, "verify", "cert", str(leaf), "--trust", str(root), "--untrusted", str(sub),
                    "--usage", "any", "--revocation", "off", "--offline",
                    "--at", at.replace(tzinfo=None).isoformat(timespec="seconds"), ok=False).returncode

    assert verify(start + dt.timedelta(minutes=1)) == 0
    assert verify(start - dt.timedelta(minutes=1)) != 0
