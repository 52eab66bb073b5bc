"""Token life cycle through the CLI on fresh SoftHSM2 tokens: init, info, PINs, objects, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import SOFTHSM_MODULE, assert_one_line_error
from tests.token.pki import PKCS11_SPY, new_token_label, softhsm_init_token


def _logins(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.split(": ", 1)[-1] == "C_Login")


def _spy_env(log: Path, **extra) -> dict:
    if not Path(PKCS11_SPY).exists():
        pytest.fail("OpenSC's pkcs11-spy.so is needed to count C_Login calls (package opensc)")
    return {"UNICA_PKCS11_MODULE": PKCS11_SPY, "PKCS11SPY": SOFTHSM_MODULE, "PKCS11SPY_OUTPUT": str(log), **extra}


def test_init_free_sets_label_so_and_user_pin(unica):
    label = new_token_label("init")
    p = unica("token", "init", "--free", "--label", label, "--json",
              env={"UNICA_SO_PIN": "so-4711-x", "UNICA_PIN": "user-0815"})
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["label"] == label and "user-pin-initialized" in info["flags"]
    p = unica("token", "info", "--token", label, "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["model"] == "SoftHSM v2" and info["user_pin"] == "ok" and info["serial"]
    # the user PIN works, the SO PIN is the SO's
    assert unica("token", "objects", "--token", label, env={"UNICA_PIN": "user-0815"}).returncode == 0
    p = unica("token", "objects", "--token", label, env={"UNICA_PIN": "so-4711-x"})
    assert_one_line_error(p, "wrong PIN", label)
    # listed by `token list`
    assert label in unica("token", "list").stdout
    # a second init with the same label is refused
    p = unica("token", "init", "--free", "--label", label)
    assert_one_line_error(p, "already exists")


def test_init_refuses_initialised_slot_without_force(unica):
    label = new_token_label("used")
    softhsm_init_token(label)
    slot = json.loads(unica("token", "info", "--token", label, "--json").stdout)["slot_id"]
    p = unica("token", "init", "--slot", str(slot), "--label", "other")
    assert_one_line_error(p, "already initialised", "--force")
    p = unica("token", "init", "--label", "x")
    assert_one_line_error(p, "--free")


def test_init_utf8_label_and_long_label(unica):
    label = "企业-" + new_token_label("u")[-8:]
    assert unica("token", "init", "--free", "--label", label).returncode == 0
    assert json.loads(unica("token", "info", "--token", label, "--json").stdout)["label"] == label
    p = unica("token", "init", "--free", "--label", "x" * 33)
    assert_one_line_error(p, "32 bytes")


def test_change_pin_from_env_and_file(unica, tmp_path):
    label = new_token_label("chg")
    softhsm_init_token(label)
    p = unica("token", "change-pin", "--token", label, env={"UNICA_NEW_PIN": "new-pin-1"})
    assert p.returncode == 0, p.stderr
    assert_one_line_error(unica("token", "objects", "--token", label), "wrong PIN")
    assert unica("token", "objects", "--token", label, env={"UNICA_PIN": "new-pin-1"}).returncode == 0
    new = tmp_path / "new.pin"
    new.write_text("new-pin-2\n")
    old = tmp_path / "old.pin"
    old.write_text("new-pin-1\n")
    p = unica("token", "set-pin", "--token", label, "--pin-file", str(old), "--new-pin-file", str(new),
              env={"UNICA_NEW_PIN": None})
    assert p.returncode == 0, p.stderr
    assert unica("token", "objects", "--token", label, env={"UNICA_PIN": "new-pin-2"}).returncode == 0
    # wrong current PIN: clear error, PIN unchanged
    p = unica("token", "change-pin", "--token", label, env={"UNICA_PIN": "nope", "UNICA_NEW_PIN": "x1234"})
    assert_one_line_error(p, "wrong PIN", label)
    assert unica("token", "objects", "--token", label, env={"UNICA_PIN": "new-pin-2"}).returncode == 0


def test_new_pin_required_without_terminal(unica):
    label = new_token_label("np")
    softhsm_init_token(label)
    p = unica("token", "change-pin", "--token", label, env={"UNICA_NEW_PIN": None})
    assert_one_line_error(p, "UNICA_NEW_PIN")


def test_unblock_by_security_officer(unica):
    label = new_token_label("unb")
    softhsm_init_token(label)
    p = unica("token", "unblock", "--token", label, env={"UNICA_SO_PIN": "wrong-so", "UNICA_NEW_PIN": "fresh-1"})
    assert_one_line_error(p, "wrong SO PIN", label)
    p = unica("token", "unblock", "--token", label, env={"UNICA_NEW_PIN": "fresh-1"})
    assert p.returncode == 0, p.stderr
    assert unica("token", "objects", "--token", label, env={"UNICA_PIN": "fresh-1"}).returncode == 0
    assert_one_line_error(unica("token", "objects", "--token", label), "wrong PIN")


def test_wrong_pin_is_one_login_per_command(unica, tmp_path):
    """The token's failed-login counter is respected: one C_Login per command, no retry loop."""
    label = new_token_label("pin")
    softhsm_init_token(label)
    doc = tmp_path / "d.txt"
    doc.write_text("x")
    for args in (["token", "objects", "--token", label],
                 ["token", "keygen", "--token", label, "--label", "k", "--type", "ec-p256"],
                 ["sign", "cms", str(doc), "--key", f"pkcs11:token={label};object=k"],
                 ["key", "list", "--token", label]):
        log = tmp_path / f"spy-{args[1]}.log"
        p = unica(*args, env=_spy_env(log, UNICA_PIN="not-the-pin"))
        assert_one_line_error(p, "wrong PIN")
        assert _logins(log) == 1, args
    # and a good PIN: still exactly one login for a whole signing command
    assert unica("token", "keygen", "--token", label, "--label", "k", "--type", "ec-p256").returncode == 0
    for i, args in enumerate((["token", "objects", "--token", label],
                              ["token", "csr", "--key", f"pkcs11:token={label};object=k", "--subject", "CN=k"],
                              ["token", "renew", "--key", f"pkcs11:token={label};object=k", "--subject", "CN=k",
                               "--rekey", "--new-label", "k2"])):
        log = tmp_path / f"spy-ok-{i}.log"
        p = unica(*args, env=_spy_env(log))
        assert p.returncode == 0, p.stderr
        assert _logins(log) == 1, args


def test_info_reports_pin_flags(unica):
    # SoftHSM2 keeps no retry counter, so the flags stay clear; the fields are there for real cards
    label = new_token_label("flags")
    softhsm_init_token(label)
    for _ in range(3):
        unica("token", "objects", "--token", label, env={"UNICA_PIN": "bad"})
    info = json.loads(unica("token", "info", "--token", label, "--json").stdout)
    assert info["user_pin"] in ("ok", "count-low", "final-try", "locked")
    assert "user-pin-locked" not in info["flags"] or info["user_pin"] == "locked"


def test_unknown_token_label(unica):
    for args in (["token", "info", "--token", "no-such-token"], ["token", "objects", "--token", "no-such-token"],
                 ["token", "change-pin", "--token", "no-such-token"]):
        p = unica(*args, env={"UNICA_NEW_PIN": "x12345"})
        assert_one_line_error(p, "no-such-token", "plugged in")


def test_objects_public_only_needs_no_pin(unica, enrolled):
    p = unica("token", "objects", "--token", enrolled.token, "--public-only", "--json", env={"UNICA_PIN": None})
    assert p.returncode == 0, p.stderr
    kinds = {o["kind"] for o in json.loads(p.stdout)}
    assert "private-key" not in kinds and "certificate" in kinds


def test_library_init_token_in_process_is_visible(monkeypatch):
    """C_InitToken in a process that already loaded the module: the new token is usable at once."""
    from unica.hsm import generate_key
    from unica.hsm.tokens import init_token, list_tokens

    list_tokens()  # module initialised before the token exists
    label = new_token_label("lib")
    info = init_token(label=label, so_pin=os.environ["UNICA_SO_PIN"], user_pin=os.environ["UNICA_PIN"], free=True)
    assert info.label == label and info.initialized
    key = generate_key(f"pkcs11:token={label};object=k", "ec-p256")
    assert key.uri.id


def test_init_force_erases_token(unica):
    label = new_token_label("force")
    softhsm_init_token(label)
    assert unica("token", "keygen", "--token", label, "--label", "k", "--type", "ec-p256").returncode == 0
    slot = json.loads(unica("token", "info", "--token", label, "--json").stdout)["slot_id"]
    p = unica("token", "init", "--slot", str(slot), "--label", label + "-new", "--force",
              env={"UNICA_SO_PIN": "wrong-so-pin"})
    assert_one_line_error(p, "SO PIN")
    p = unica("token", "init", "--slot", str(slot), "--label", label + "-new", "--force")
    assert p.returncode == 0, p.stderr
    objs = json.loads(unica("token", "objects", "--token", label + "-new", "--json").stdout)
    assert objs == []


def test_change_pin_keeps_loaded_keys_working():
    """In a long-running process, changing the PIN does not log out keys already loaded."""
    from unica.hsm import load_key, sign_raw
    from unica.hsm.tokens import change_pin
    from tests.token.pki import init_token_in_process

    label = new_token_label("live")
    init_token_in_process(label)
    from unica.hsm import generate_key

    generate_key(f"pkcs11:token={label};object=k", "ec-p256")
    key = load_key(f"pkcs11:token={label};object=k")
    change_pin(label, os.environ["UNICA_PIN"], "changed-pin-9")
    assert sign_raw(key, b"still works")
    from unica.errors import PinIncorrect

    with pytest.raises(PinIncorrect):
        change_pin(label, "not-it", "x12345678")
