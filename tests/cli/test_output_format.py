"""Output that reads well (issue #11 item 12), through the real ``unica`` binary on a real CA:

* no Python repr in any data-printing command, human or ``--json`` (``<Store ...>``, ``True``,
  ``False``, ``None``, ``['...']`` lists), and ``--json`` never writes ``null``: a field without a
  value is left out;
* tables line up in terminal cells with Chinese text;
* ``profile show`` prints TOML that loads back (tomllib, ``profile check``, UNICA_HOME/profiles)
  as the same profile;
* every command that prints data has ``--json`` (an explicit, reasoned list of those that only act);
* ``token enroll`` / ``token renew`` JSON carry the serial, the CA and the validity.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ca.conftest import PASSPHRASE, openssl_csr
from tests.conftest import run_unica

USCC = "91350100M000100Y43"

#: what a Python repr looks like in text meant for people or programs
REPR_PATTERNS = {
    "object repr": re.compile(r"<[A-Za-z_][\w.]*( [^<>]*)?>"),
    "True/False/None": re.compile(r"\b(True|False|None)\b"),
    "list repr": re.compile(r"\[\s*'"),
    "null": re.compile(r"\bnull\b"),
}


@dataclass
class Home:
    dir: Path
    env: dict
    tag: str
    root: str
    sub: str
    valid: str  # serial of a valid tls-server certificate
    revoked: str  # serial of a revoked one
    leaf: Path
    revoked_leaf: Path
    csr: Path
    enrolled: dict  # token enroll --json
    renewed: dict  # token renew --json
    key_label: str

    def run(self, *args, **kw):
        return run_unica(*args, env=self.env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, f"unica {' '.join(args)}: {p.stdout}{p.stderr}"
        return p

    def crl(self, ca: str) -> Path:
        return self.dir / "home" / "crl" / f"{ca}.crl"


@pytest.fixture(scope="module")
def home(tmp_path_factory, token_label) -> Home:
    d = tmp_path_factory.mktemp("output")
    tag = uuid.uuid4().hex[:6]
    env = {"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None}

    def ok(*args):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, f"unica {' '.join(args)}: {p.stdout}{p.stderr}"
        return p

    root, sub = f"root-{tag}", f"sub-{tag}"
    ok("init")
    ok("ca", "create-root", root, "--subject", "C=CN,O=统一输出测试根,CN=Output Root", "--key-type", "ec-p256",
       "--token", token_label, "--crl-url", f"http://crl.example.cn/{root}.crl")
    ok("ca", "create-sub", sub, "--parent", root, "--subject", "C=CN,O=示例输出,CN=Output Sub", "--key-type",
       "ec-p256", "--crl-url", f"http://crl.example.cn/{sub}.crl", "--ocsp-url", "http://ocsp.example.cn/")
    ok("ca", "export", root, "--out", str(d / "root.pem"))
    ok("ca", "export", sub, "--out", str(d / "sub.pem"))
    serials = []
    for i in (1, 2):
        csr = openssl_csr(d, f"/C=CN/O=示例公司/CN=h{i}.example.cn", san=f"DNS:h{i}.example.cn", name=f"h{i}")
        out = json.loads(ok("issue", "--ca", sub, "--profile", "tls-server", "--csr", str(csr),
                            "--out", str(d / f"h{i}.pem"), "--json").stdout)
        serials.append(out["serial"])
    ok("revoke", serials[1], "--ca", sub, "--reason", "keyCompromise")
    ok("crl", "generate", "--ca", sub)
    ok("crl", "generate", "--ca", root)
    ok("ocsp", "signer", "--ca", sub)
    ok("ocsp", "configure", "--ca", sub, "--mode", "presigned")
    ok("ocsp", "presign")
    ok("key", "generate", f"file:{d / 'audit.p8'}", "--type", "ec-p256")
    label = f"签名密钥-{tag}"  # a Chinese key label: the key and object tables must still line up
    enrolled = json.loads(ok("token", "enroll", "--token", "unica-aux", "--label", label, "--type", "ec-p256",
                             "--subject", "C=CN,O=示例公司,CN=Output Signer", "--uscc", USCC, "--ca", sub,
                             "--profile", "enterprise-sign", "--json").stdout)
    renewed = json.loads(ok("token", "renew", "--key", f"pkcs11:token=unica-aux;object={label}", "--ca", sub,
                            "--profile", "enterprise-sign", "--json").stdout)
    return Home(dir=d, env=env, tag=tag, root=root, sub=sub, valid=serials[0], revoked=serials[1],
                leaf=d / "h1.pem", revoked_leaf=d / "h2.pem", csr=d / "h1.csr", enrolled=enrolled,
                renewed=renewed, key_label=label)


def _builtin_profiles() -> list[str]:
    from unica.policies import BUILTIN_DIR

    return sorted(p.stem for p in Path(BUILTIN_DIR).glob("*.toml"))


def _data_commands(h: Home) -> list[tuple[str, ...]]:
    """The commands that print data, with arguments for this home (each run with and without --json)."""
    d = h.dir
    verify = ("--trust", str(d / "root.pem"), "--untrusted", str(d / "sub.pem"), "--offline",
              "--crl", str(h.crl(h.sub)), "--crl", str(h.crl(h.root)))
    return [
        ("ca", "list"), ("ca", "show", h.root), ("ca", "show", h.sub),
        ("cert", "list"), ("cert", "show", h.valid), ("cert", "show", h.revoked, "--ca", h.sub),
        ("key", "list", "--token", "unica-aux"), ("key", "show", f"pkcs11:token=unica-aux;object={h.key_label}"),
        ("key", "show", f"file:{d / 'audit.p8'}"),
        ("token", "list"), ("token", "info", "--token", "unica-aux"), ("token", "objects", "--token", "unica-aux"),
        ("profile", "list"), *(("profile", "show", p) for p in _builtin_profiles()),
        ("ocsp", "status"), ("ocsp", "configure", "--ca", h.sub), ("ocsp", "configure", "--ca", h.root),
        ("ocsp", "signer", "--ca", h.sub, "--renew-if-due"),
        ("audit", "show"), ("audit", "verify"),
        ("crl", "list"), ("crl", "show", "--ca", h.sub),
        ("show", str(h.leaf)), ("show", str(h.csr)), ("show", str(h.crl(h.sub))),
        ("verify", "cert", str(h.leaf), "--usage", "server-auth", *verify),
        ("verify", "cert", str(h.revoked_leaf), "--usage", "server-auth", *verify),
        ("recover",),
    ]


def _reprs(text: str) -> list[str]:
    return [f"{what}: {m.group()!r} in {text[max(0, m.start() - 60):m.end() + 20]!r}"
            for what, rx in REPR_PATTERNS.items() for m in rx.finditer(text)]


def _nulls(value, path="$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _nulls(v, f"{path}[{i}]")]
    return []


def test_no_python_repr_in_any_data_command_human_or_json(home):
    """Each data command, as people read it and with --json: no repr, no null, valid JSON; verify's
    exit status is its verdict (0 valid, 10 revoked)."""
    found = []
    for args in _data_commands(home):
        for extra in ((), ("--json",)):
            p = home.run(*args, *extra)
            if p.returncode == 2 and "No such command" in p.stderr:
                continue  # a command another change adds (crl list/show, show): walked once it is here
            assert p.returncode in ((0, 10) if args[0] == "verify" else (0,)), \
                f"unica {' '.join(args + extra)}: {p.returncode}\n{p.stdout}{p.stderr}"
            found += [f"unica {' '.join(args + extra)}: {r}" for r in _reprs(p.stdout + p.stderr)]
            if extra:
                found += [f"unica {' '.join(args + extra)}: null at {n}" for n in _nulls(json.loads(p.stdout))]
    assert not found, "\n".join(found)


def test_nothing_to_do_is_said_in_json_not_null(home, tmp_path):
    """'audit seal' with nothing new and 'ocsp signer --renew-if-due' when not due: a result object."""
    key = f"file:{home.dir / 'audit.p8'}"
    first = json.loads(home.ok("audit", "seal", "--key", key, "--json").stdout)
    assert first["sealed"] is True and first["upto"] >= 1
    again = json.loads(home.ok("audit", "seal", "--key", key, "--json").stdout)
    assert again == {"sealed": False, "reason": "nothing new to seal"}
    assert home.ok("audit", "seal", "--key", key).stdout.strip() == "nothing new to seal"
    signer = json.loads(home.ok("ocsp", "signer", "--ca", home.sub, "--renew-if-due", "--json").stdout)
    assert signer["issued"] is False and signer["ca"] == home.sub


def test_json_leaves_out_fields_without_value(home):
    """A root has no parent, a valid certificate no revocation time: the keys are absent, not null."""
    root = json.loads(home.ok("ca", "show", home.root, "--json").stdout)
    assert "parent" not in root and root["name"] == home.root
    valid = json.loads(home.ok("cert", "show", home.valid, "--json").stdout)
    assert "revoked_at" not in valid and valid["status"] == "valid"
    revoked = json.loads(home.ok("cert", "show", home.revoked, "--ca", home.sub, "--json").stdout)
    assert revoked["revocation_reason"] == "keyCompromise" and revoked["revoked_at"]


def test_human_fields_say_yes_no_and_dash(home):
    out = home.ok("cert", "show", home.valid).stdout
    assert re.search(r"^is ca:\s+no$", out, re.M), out
    assert re.search(r"^revoked at:\s+-$", out, re.M), out
    init = run_unica("init", env={**home.env, "UNICA_HOME": str(home.dir / "second-home")})
    assert init.returncode == 0 and "<Store" not in init.stdout and "sqlite:///" in init.stdout, init.stdout


#: a field line of the show commands: a lower-case label (the --json key, ``_`` read as a space), aligned values
FIELD_LINE = re.compile(r"^([a-z][a-z0-9 ]*):( +)(\S.*)$")


def _fields(text: str) -> dict[str, tuple[str, int]]:
    """The ``label: value`` lines before any PEM block: label -> (value, column the value starts at)."""
    lines = text.split("-----BEGIN", 1)[0].splitlines()
    fields = {}
    for line in lines:
        m = FIELD_LINE.match(line)
        assert m, f"not a lower-case 'label: value' line: {line!r}\n{text}"
        fields[m.group(1)] = (m.group(3), m.end(2))
    return fields


def test_show_commands_print_fields_one_way(home):
    """ca show, cert show, key show, token info and token keygen: the same lower-case labels as
    their --json keys, values in one column, ``-`` for a field without a value (never an em dash),
    ``yes`` / ``no`` (the one helper, unica.cli.common.show_fields)."""
    outs = {
        "ca show root": home.ok("ca", "show", home.root).stdout,
        "ca show sub": home.ok("ca", "show", home.sub).stdout,
        "cert show": home.ok("cert", "show", home.valid).stdout,
        "key show pkcs11": home.ok("key", "show", f"pkcs11:token=unica-aux;object={home.key_label}").stdout,
        "key show file": home.ok("key", "show", f"file:{home.dir / 'audit.p8'}").stdout,
        "token info": home.ok("token", "info", "--token", "unica-aux").stdout,
    }
    for what, out in outs.items():
        fields = _fields(out)
        assert len({column for _, column in fields.values()}) == 1, (what, out)
        assert "—" not in out, (what, out)
    root = _fields(outs["ca show root"])
    assert root["parent"][0] == "-" and root["ocsp url"][0] == "-" and root["expired"][0] == "no"
    assert _fields(outs["ca show sub"])["parent"][0] == home.root
    for what in ("key show pkcs11", "key show file"):
        key = _fields(outs[what])
        assert list(key) == ["uri", "type", "spki sha256"], (what, key)
        assert key["type"][0] == "ec-p256" and re.fullmatch(r"[0-9a-f]{64}", key["spki sha256"][0])
        assert "-----BEGIN PUBLIC KEY-----" in outs[what]
    assert _fields(outs["key show file"])["uri"][0] == f"file:{home.dir / 'audit.p8'}"
    token = _fields(outs["token info"])
    assert token["label"][0] == "unica-aux" and {"slot", "serial", "flags", "user pin", "so pin"} <= set(token)
    keygen = home.ok("token", "keygen", "--token", "unica-aux", "--label", f"fields-{home.tag}", "--key-type",
                     "ec-p256").stdout
    assert list(_fields(keygen)) == ["uri", "type", "id", "spki sha256"], keygen


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
               for c in text)


def _at_cells(line: str) -> dict[int, str]:
    """The character that starts at each terminal cell of ``line`` (wide characters take two cells)."""
    out, pos = {}, 0
    for c in line:
        out[pos] = c
        pos += _cells(c)
    return out


def test_tables_line_up_with_chinese_text(home):
    """key list and token objects: a Chinese label in a column before others; on every line each
    column starts at the terminal cell where its header starts (wide characters count two), after
    two spaces."""
    for args in (("key", "list", "--token", "unica-aux"), ("token", "objects", "--token", "unica-aux")):
        lines = home.ok(*args).stdout.splitlines()
        assert any(home.key_label in line for line in lines), lines
        starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", lines[0])]  # the header is ASCII
        assert len(starts) >= 4, lines[0]
        for line in lines:
            cells = _at_cells(line)
            assert line == line.rstrip() and "\r" not in line, line
            for c in starts[1:]:
                assert cells.get(c, " ") != " " and cells.get(c - 1) == " " and cells.get(c - 2) == " ", \
                    f"unica {' '.join(args)}: column at cell {c} not aligned in {line!r}"


def test_table_helper_measures_cells_and_keeps_one_row_one_line(capsys):
    from unica.cli.common import table

    table([["示例", "a"], ["ab", None], ["x\ny\r", ""]], ["NAME", "V"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["NAME        V", "示例        a", "ab          -", "x\\x0ay\\x0d  -"]


def _profile_dict(h: Home, *args) -> dict:
    d = json.loads(h.ok(*args, "--json").stdout)
    d.pop("source")
    return d


OPERATOR_PROFILE = """\
description = "运营商 sub-CA: policies, name constraints, \\"quotes\\" and a backslash \\\\"
kind = "sub-ca"
validity = "5y"

[key_usage]
usages = ["digitalSignature", "keyCertSign", "cRLSign"]

[extended_key_usage]
usages = ["clientAuth", "1.2.156.10197.1.1"]
critical = false

[basic_constraints]
path_length = 1

[[certificate_policies]]
oid = "1.2.156.112559.1.1.2"
cps_uri = "https://pki.example.cn/cps"
user_notice = "仅用于测试"

[[certificate_policies]]
oid = "2.23.140.1.2.2"

[keys]
allowed = ["ec-p256", "ec-p384"]

[subject]
required = ["countryName", "organizationName", "organizationIdentifier", "commonName"]
uscc = "required"

[name_constraints]
permitted_dns = ["example.cn", ".example.cn"]
excluded_ip = ["10.0.0.0/8"]

[revocation_info]
ocsp = false
"""


def test_profile_show_is_toml_that_round_trips(home, tmp_path):
    """Every built-in profile and an operator profile using every table: the output loads with
    tomllib; 'profile check' of it, and the same file installed under a new name, give the profile
    'profile show --json' describes."""
    profiles_dir = home.dir / "home" / "profiles"
    (profiles_dir / f"op-{home.tag}.toml").write_text(OPERATOR_PROFILE, encoding="utf-8")
    for name in [*_builtin_profiles(), f"op-{home.tag}"]:
        text = home.ok("profile", "show", name).stdout
        tomllib.loads(text)  # valid TOML, comments and all
        f = tmp_path / f"{name}.toml"
        f.write_text(text, encoding="utf-8")
        want = _profile_dict(home, "profile", "show", name)
        assert _profile_dict(home, "profile", "check", str(f)) == want, text
        copy = f"copy-{name}"
        (profiles_dir / f"{copy}.toml").write_text(text, encoding="utf-8")
        got = _profile_dict(home, "profile", "show", copy)
        assert got.pop("name") == copy and {**got, "name": name} == want, text
    op = _profile_dict(home, "profile", "show", f"op-{home.tag}")
    assert op["name_constraints"]["permitted_dns"] == ["example.cn", ".example.cn"]
    assert [p["oid"] for p in op["certificate_policies"]] == ["1.2.156.112559.1.1.2", "2.23.140.1.2.2"]


def test_token_enroll_and_renew_json_carry_serial_ca_and_validity(home):
    for result in (home.enrolled, home.renewed):
        assert result["ca"] == home.sub
        assert re.fullmatch(r"[0-9a-f]+", result["serial"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["not_after"])
        shown = json.loads(home.ok("cert", "show", result["serial"], "--ca", home.sub, "--json").stdout)
        assert shown["profile"] == "enterprise-sign"
        assert shown["not_after"].startswith(result["not_after"][:19])
    assert home.renewed["serial"] != home.enrolled["serial"] and home.renewed["rekeyed"] is False


# --- --json on every command that prints data -----------------------------------------

#: commands without --json, and why: they only act, or what they print is itself the data in a
#: standard format (PEM, a shell script) that JSON would only wrap
NO_JSON = {
    "ca export": "prints the CA certificate (PEM) or writes it to --out: 'ca show --json' is its JSON",
    "cert export": "prints the certificate (PEM) or writes it to --out: 'cert show --json' has the PEM",
    "completion": "prints a shell completion script",
    "init": "acts (creates UNICA_HOME and the database); one status line",
    "ocsp serve": "a service: runs until stopped, logs on stderr",
    "serve": "a service: runs until stopped, logs on stderr; /healthz, /readyz and /metrics describe it",
    "tsa serve": "a service: runs until stopped, logs on stderr; /healthz describes it",
    "agent": "a service on the enterprise's PC: runs until stopped; its first stdout line is its address, logs on stderr",
    "sign cms": "acts: writes the signature file; 'verify cms --json' / 'show --json' describe it",
    "sign pdf": "acts: writes the signed PDF; 'verify pdf --json' describes it",
    "token change-pin": "acts: changes a PIN; nothing to report but success",
    "token set-pin": "acts: sets a PIN; nothing to report but success",
    "token unblock": "acts: unblocks a PIN; nothing to report but success",
    "token csr": "prints the request (PEM) or writes it to --out; 'show --json' describes it",
}


def _leaf_commands():
    from tests.clitree import leaf_commands
    from unica.cli.main import cli

    return {" ".join(path): cmd for path, cmd in leaf_commands(cli)}


def test_every_command_that_prints_data_has_json():
    commands = _leaf_commands()
    missing = [name for name, cmd in commands.items()
               if name not in NO_JSON and not any(p.name == "as_json" and "--json" in p.opts for p in cmd.params)]
    assert not missing, f"commands that print data without --json (add it, or a reasoned NO_JSON entry): {missing}"
    with_json_anyway = [n for n in NO_JSON if n in commands and
                        any(p.name == "as_json" for p in commands[n].params)]
    assert not with_json_anyway, f"NO_JSON lists commands that have --json: {with_json_anyway}"
    # every --json is the same option: same name, flag, help
    helps = {p.help for cmd in commands.values() for p in cmd.params if p.name == "as_json"}
    assert len(helps) == 1, helps
