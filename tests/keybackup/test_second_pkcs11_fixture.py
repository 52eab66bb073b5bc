"""The ``second_module`` fixture: a fresh NSS softokn token per test that the ``unica`` binary can use."""

from __future__ import annotations

import json

from tests.conftest import assert_one_line_error, run_unica
from tests.keybackup.second_pkcs11 import second_module  # noqa: F401  (the fixture)


def test_unica_generates_and_lists_a_key_on_the_second_module(second_module):
    module_path, label, pin = second_module
    listed = run_unica("token", "list", "--json", env={"UNICA_PKCS11_MODULE": module_path})
    assert listed.returncode == 0, listed.stderr
    assert label in listed.stdout
    gen = run_unica("key", "generate", f"pkcs11:token={label};object=ca1?module-path={module_path}",
                    "--type", "ec-p256", env={"UNICA_PIN": pin})
    assert gen.returncode == 0, gen.stderr
    keys = run_unica("key", "list", "--token", label, "--module", module_path, env={"UNICA_PIN": pin})
    assert keys.returncode == 0, keys.stderr
    assert "ca1" in keys.stdout and "ec-p256" in keys.stdout


def test_each_test_gets_an_empty_token_with_its_own_pin(second_module, tmp_path):
    module_path, label, pin = second_module
    assert module_path.startswith(str(tmp_path))
    keys = run_unica("key", "list", "--token", label, "--module", module_path, "--json", env={"UNICA_PIN": pin})
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout) == []
    wrong = run_unica("key", "list", "--token", label, "--module", module_path, env={"UNICA_PIN": pin + "x"})
    assert wrong.returncode == 1
    assert_one_line_error(wrong, "wrong PIN", "CKR_PIN_INCORRECT")
