"""The strict profile loader, the built-ins, durations and the USCC check character."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from unica.errors import ProfileError, ProfileNotFound
from unica.policies import (builtin_names, get_profile, list_profiles, load_profile_file, parse_duration,
                            validate_uscc, USCCError)
from unica.policies.uscc import check_char

MINIMAL = '''kind = "end-entity"
validity = "1y"
[key_usage]
usages = ["digitalSignature"]
[keys]
allowed = ["ec-p256"]
[subject]
required = ["commonName"]
'''


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_builtins_load_and_say_what_the_issue_asks():
    names = set(builtin_names())
    assert names == {"root-ca", "sub-ca", "enterprise-sign", "enterprise-auth", "agency-sign", "tls-server",
                     "ocsp-signer", "timestamping", "operator", "enterprise-sign-gm", "enterprise-auth-gm"}
    es = get_profile("enterprise-sign", Path("/nonexistent"))
    assert es.key_usage == ("digitalSignature", "nonRepudiation") and es.subject.uscc == "required"
    # issue #11 item 5: clientAuth + emailProtection, what NSS (pdfsig, certutil -u S) and OpenSSL's
    # S/MIME-signing purpose require of a signer; documentSigning (RFC 9336) alongside
    assert es.extended_key_usage == ("1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.36")
    ea = get_profile("enterprise-auth", Path("/x"))
    assert ea.extended_key_usage == ("1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4") and ea.key_usage == ("digitalSignature",)
    ocsp = get_profile("ocsp-signer", Path("/x"))
    assert ocsp.ocsp_nocheck and ocsp.extended_key_usage == ("1.3.6.1.5.5.7.3.9",)
    ts = get_profile("timestamping", Path("/x"))
    assert ts.extended_key_usage_critical and ts.extended_key_usage == ("1.3.6.1.5.5.7.3.8",)
    # issue #12: an operator's card signs requests and, as a custodian, opens key-backup shares (ECDH)
    op = get_profile("operator", Path("/x"))
    assert op.key_usage == ("digitalSignature", "keyAgreement") and op.extended_key_usage == ("1.3.6.1.5.5.7.3.2",)
    assert set(op.key_types) == {"ec-p256", "ec-p384"}
    root, sub = get_profile("root-ca", Path("/x")), get_profile("sub-ca", Path("/x"))
    assert root.is_ca and root.path_length is None and not root.crl_distribution_points
    assert sub.is_ca and sub.path_length == 0
    with pytest.raises(Exception):
        es.validity = dt.timedelta(days=1)  # frozen


def test_minimal_operator_profile(tmp_path):
    p = load_profile_file(write(tmp_path, MINIMAL, "mine.toml"))
    assert p.name == "mine" and p.validity == dt.timedelta(days=365) and not p.is_ca
    assert get_profile("mine", tmp_path) == p
    assert "mine" in [x.name for x in list_profiles(tmp_path)]


@pytest.mark.parametrize("extra,key,problem", [
    ('colour = "blue"\n', "colour", "unknown key"),
    ('[revocation_info]\nocsp_url = "http://x"\n', "revocation_info.ocsp_url", "unknown key"),
    ('ocsp_nocheck = "yes"\n', "ocsp_nocheck", "must be true or false"),
    ('[subject_alt_name]\nmax = "3"\n', "subject_alt_name.max", "must be an integer"),
    ('[basic_constraints]\npath_length = 1\n', "basic_constraints.path_length", "only CA profiles"),
    ('[extended_key_usage]\nusages = ["timeStamping", "clientAuth"]\ncritical = true\n', "extended_key_usage",
     "timeStamping must be the only usage"),
    ('[extended_key_usage]\nusages = ["fooAuth"]\n', "extended_key_usage.usages", "unknown value 'fooAuth'"),
    ('ocsp_nocheck = true\n', "ocsp_nocheck", "does not include OCSPSigning"),
    ('[name_constraints]\npermitted_dns = ["example.cn"]\n', "name_constraints", "only CA profiles"),
    ('[subject_alt_name]\nallowed = ["dns"]\n', "subject_alt_name.allowed", "honour_extensions"),
    ('[[certificate_policies]]\noid = "not.an.oid"\n', "certificate_policies[0].oid", "not a dotted OID"),
    ('[[certificate_policies]]\noid = "1.2.3"\ncps_uri = "ftp://x"\n', "certificate_policies[0].cps_uri",
     "not an http(s) URL"),
])
def test_loader_rejects_naming_file_key_and_problem(tmp_path, extra, key, problem):
    path = write(tmp_path, MINIMAL + "\n" + extra if extra.startswith("[") else extra + MINIMAL)
    with pytest.raises(ProfileError) as e:
        load_profile_file(path)
    msg = str(e.value)
    assert str(path) in msg and key in msg and problem in msg, msg


@pytest.mark.parametrize("text,key,problem", [
    (MINIMAL.replace('"digitalSignature"', '"keyCertSign"'), "key_usage.usages", "only for CA profiles"),
    (MINIMAL.replace('end-entity', 'sub-ca'), "key_usage.usages", "must include keyCertSign"),
    (MINIMAL.replace('validity = "1y"', 'validity = "forever"'), "validity", "bad duration"),
    (MINIMAL.replace('validity = "1y"\n', ''), "validity", "missing"),
    (MINIMAL.replace('"ec-p256"', '"ec-p999"'), "keys.allowed", "unknown value 'ec-p999'"),
    (MINIMAL.replace('"commonName"', '"favouriteColour"'), "subject.required", "unknown value"),
    (MINIMAL + 'uscc = "required"\n', "subject.uscc", "organizationIdentifier"),
    (MINIMAL.replace('kind = "end-entity"', 'kind = "leaf"'), "kind", "unknown kind"),
    ("kind = [", "", "not valid TOML"),
])
def test_loader_rejects_impossible_combinations(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as e:
        load_profile_file(path)
    assert str(path) in str(e.value) and key in str(e.value) and problem in str(e.value), str(e.value)


def test_operator_profile_may_not_shadow_builtin(tmp_path):
    write(tmp_path, MINIMAL, "tls-server.toml")
    with pytest.raises(ProfileError, match="shadows the built-in"):
        get_profile("tls-server", tmp_path)
    with pytest.raises(ProfileNotFound, match="unknown profile 'nope'"):
        get_profile("nope", tmp_path)


def test_full_operator_profile_with_policies_and_name_constraints(tmp_path):
    text = '''description = "Constrained issuing CA"
kind = "sub-ca"
validity = "5y"
[key_usage]
usages = ["keyCertSign", "cRLSign"]
[basic_constraints]
path_length = 0
[[certificate_policies]]
oid = "1.3.6.1.4.1.55555.1.2"
cps_uri = "https://pki.example.cn/cps"
user_notice = "仅限内部使用"
[keys]
allowed = ["ec-p256", "ec-p384"]
[subject]
required = ["countryName", "organizationName", "commonName"]
[name_constraints]
permitted_dns = ["example.cn"]
excluded_ip = ["10.0.0.0/8"]
'''
    p = load_profile_file(write(tmp_path, text))
    assert p.policies[0].user_notice == "仅限内部使用" and p.name_constraints.permitted_dns == ("example.cn",)
    bad = text.replace('excluded_ip = ["10.0.0.0/8"]', 'excluded_ip = ["10.0.0.1/8"]')
    with pytest.raises(ProfileError, match="name_constraints.excluded_ip"):
        load_profile_file(write(tmp_path, bad, "bad.toml"))


@pytest.mark.parametrize("code", ["914403001922038216", "9144030071526726XG", "91330100799655058B",
                                  "NTRCN-91350100M000100Y43"])
def test_uscc_valid(code):
    assert len(validate_uscc(code)) == 18


@pytest.mark.parametrize("code,problem", [
    ("914403001922038217", "wrong check character '7' (GB 32100-2015 gives '6')"),
    ("91440300192203821", "18 characters"),
    ("9144030019220382I6", "contains 'I'"),
    ("91AB0300192203821X", "must be digits"),
])
def test_uscc_invalid(code, problem):
    with pytest.raises(USCCError) as e:
        validate_uscc(code)
    assert problem in str(e.value)


def test_uscc_every_single_character_change_is_caught():
    code = "9144030071526726XG"
    assert check_char(code[:17]) == "G"
    for i in range(17):
        for c in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            if c != code[i]:
                mutated = code[:i] + c + code[i + 1:]
                assert check_char(mutated[:17]) != "G", (i, c)


def test_durations():
    assert parse_duration("20y") == dt.timedelta(days=7300)
    assert parse_duration("397d") == dt.timedelta(days=397)
    assert parse_duration("12h") == dt.timedelta(hours=12)
    assert parse_duration("100y") == dt.timedelta(days=36500)
    for bad in ("", "0d", "1w", "-1d", "1.5y", "101y", "999999d"):  # > 100 years: past the last valid date
        with pytest.raises(ValueError):
            parse_duration(bad)
