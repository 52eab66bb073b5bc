"""The strict profile loader: TOML file -> :class:`~unica.policies.model.Profile`.

Every key is known, every value has the expected type, and combinations that cannot make
a sound certificate are refused. Each error is a :class:`~unica.errors.ProfileError` whose
message names the file, the key and the problem.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

from unica.errors import ProfileError
from unica.hsm.keytypes import KeyType
from unica.policies.duration import parse_duration
from unica.policies.model import (
    EKU_NAMES,
    GMT0015_EDITIONS,
    HONOURABLE_EXTENSIONS,
    KEY_USAGES,
    KINDS,
    SAN_TYPES,
    SUBJECT_ATTRIBUTES,
    USCC_MODES,
    NameConstraintsSpec,
    PolicyInformation,
    Profile,
    SANRules,
    SubjectRules,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_KEY_TYPES = tuple(k.value for k in KeyType)

# schema: table -> {key: type}; "str[]" is a list of strings
_SCHEMA: dict[str, dict[str, str]] = {
    "": {"description": "str", "kind": "str", "validity": "str", "ocsp_nocheck": "bool",
         "key_usage": "table", "extended_key_usage": "table", "basic_constraints": "table",
         "certificate_policies": "table[]", "keys": "table", "subject": "table",
         "subject_alt_name": "table", "name_constraints": "table", "revocation_info": "table", "csr": "table"},
    "key_usage": {"usages": "str[]", "critical": "bool"},
    "extended_key_usage": {"usages": "str[]", "critical": "bool"},
    "basic_constraints": {"path_length": "int"},
    "certificate_policies": {"oid": "str", "cps_uri": "str", "user_notice": "str"},
    "keys": {"allowed": "str[]"},
    "subject": {"required": "str[]", "allowed": "str[]", "uscc": "str", "gmt0015": "str[]"},
    "subject_alt_name": {"allowed": "str[]", "required": "bool", "max": "int"},
    "name_constraints": {k: "str[]" for k in NameConstraintsSpec.__dataclass_fields__},
    "revocation_info": {"crl_distribution_points": "bool", "ocsp": "bool", "ca_issuers": "bool"},
    "csr": {"honour_extensions": "str[]"},
}
_TYPE_WORDS = {"str": "a string", "bool": "true or false", "int": "an integer", "str[]": "a list of strings",
               "table": "a table", "table[]": "an array of tables ([[...]])"}


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> ProfileError:
        return ProfileError(f"profile {self.source}: {key}: {problem}" if key else f"profile {self.source}: {problem}")


def _check_type(ctx: _Ctx, key: str, value, want: str) -> None:
    ok = {
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "str[]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "table": lambda v: isinstance(v, dict),
        "table[]": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    }[want](value)
    if not ok:
        raise ctx.fail(key, f"must be {_TYPE_WORDS[want]}, not {_describe(value)}")


def _describe(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list" if not value or not isinstance(value[0], dict) else "an array of tables"
    return {str: "a string", int: "an integer", float: "a float"}.get(type(value), type(value).__name__)


def _check_table(ctx: _Ctx, table: str, data: dict) -> None:
    schema = _SCHEMA[table]
    for k, v in data.items():
        full = f"{table}.{k}" if table else k
        if k not in schema:
            known = ", ".join(sorted(schema))
            raise ctx.fail(full, f"unknown key (known keys{' in [' + table + ']' if table else ''}: {known})")
        _check_type(ctx, full, v, schema[k])
        if schema[k] == "table":
            _check_table(ctx, k, v)
        elif schema[k] == "table[]":
            for item in v:
                _check_table(ctx, k, item)


def _unique(ctx: _Ctx, key: str, items: list[str]) -> tuple[str, ...]:
    seen = set()
    for x in items:
        if x in seen:
            raise ctx.fail(key, f"{x!r} is listed twice")
        seen.add(x)
    return tuple(items)


def _one_of(ctx: _Ctx, key: str, items: list[str], known) -> tuple[str, ...]:
    for x in items:
        if x not in known:
            raise ctx.fail(key, f"unknown value {x!r} (one of: {', '.join(known)})")
    return _unique(ctx, key, items)


def _url(ctx: _Ctx, key: str, text: str) -> str:
    u = urlparse(text)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ctx.fail(key, f"{text!r} is not an http(s) URL")
    return text


def parse_profile(data: dict, *, name: str, source: str) -> Profile:
    """Build a :class:`Profile` from the parsed TOML ``data`` (strict)."""
    ctx = _Ctx(source)
    if not _NAME_RE.match(name):
        raise ctx.fail("", f"bad profile name {name!r} (lower-case letters, digits, '.', '_', '-')")
    _check_table(ctx, "", data)
    for required in ("kind", "validity"):
        if required not in data:
            raise ctx.fail(required, "missing (every profile sets it)")
    kind = data["kind"]
    if kind not in KINDS:
        raise ctx.fail("kind", f"unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    is_ca = kind != "end-entity"
    try:
        validity = parse_duration(data["validity"])
    except ValueError as e:
        raise ctx.fail("validity", str(e)) from None

    ku = data.get("key_usage", {})
    if "usages" not in ku or not ku["usages"]:
        raise ctx.fail("key_usage.usages", "missing or empty (every certificate states its key usage)")
    key_usage = _one_of(ctx, "key_usage.usages", ku["usages"], tuple(KEY_USAGES))
    if not ku.get("critical", True):
        raise ctx.fail("key_usage.critical", "must be true (RFC 5280 4.2.1.3: SHOULD be critical)")
    if is_ca:
        for need in ("keyCertSign", "cRLSign"):
            if need not in key_usage:
                raise ctx.fail("key_usage.usages", f"a CA profile ({kind}) must include {need}")
    else:
        for bad in ("keyCertSign", "cRLSign"):
            if bad in key_usage:
                raise ctx.fail("key_usage.usages", f"{bad} is only for CA profiles, and kind is end-entity")
    if ("encipherOnly" in key_usage or "decipherOnly" in key_usage) and "keyAgreement" not in key_usage:
        raise ctx.fail("key_usage.usages", "encipherOnly/decipherOnly need keyAgreement")

    eku_t = data.get("extended_key_usage", {})
    eku: list[str] = []
    for x in eku_t.get("usages", []):
        if x in EKU_NAMES:
            eku.append(EKU_NAMES[x])
        elif _OID_RE.match(x):
            eku.append(x)
        else:
            raise ctx.fail("extended_key_usage.usages",
                           f"unknown value {x!r} (a dotted OID or one of: {', '.join(EKU_NAMES)})")
    eku_t_usages = _unique(ctx, "extended_key_usage.usages", eku)
    eku_critical = eku_t.get("critical", False)
    if "critical" in eku_t and not eku_t_usages:
        raise ctx.fail("extended_key_usage.critical", "set but extended_key_usage.usages is empty")
    any_eku = EKU_NAMES["anyExtendedKeyUsage"]
    if any_eku in eku_t_usages and eku_critical:
        raise ctx.fail("extended_key_usage.critical", "must be false when anyExtendedKeyUsage is present (RFC 5280)")
    ts = EKU_NAMES["timeStamping"]
    if ts in eku_t_usages and (len(eku_t_usages) != 1 or not eku_critical):
        raise ctx.fail("extended_key_usage", "timeStamping must be the only usage and critical (RFC 3161 2.3)")
    if is_ca and eku_t_usages and kind == "root-ca":
        raise ctx.fail("extended_key_usage.usages", "a root-ca profile must not restrict extended key usage")

    bc = data.get("basic_constraints", {})
    path_length = bc.get("path_length")
    if path_length is not None:
        if not is_ca:
            raise ctx.fail("basic_constraints.path_length", "only CA profiles have a path length (kind is end-entity)")
        if path_length < 0:
            raise ctx.fail("basic_constraints.path_length", f"must be 0 or more, not {path_length}")

    policies = []
    for i, p in enumerate(data.get("certificate_policies", [])):
        key = f"certificate_policies[{i}]"
        if "oid" not in p:
            raise ctx.fail(f"{key}.oid", "missing")
        if not _OID_RE.match(p["oid"]):
            raise ctx.fail(f"{key}.oid", f"{p['oid']!r} is not a dotted OID")
        if "cps_uri" in p:
            _url(ctx, f"{key}.cps_uri", p["cps_uri"])
        if "user_notice" in p and not 0 < len(p["user_notice"]) <= 200:
            raise ctx.fail(f"{key}.user_notice", "must have 1 to 200 characters (RFC 5280 explicitText)")
        policies.append(PolicyInformation(p["oid"], p.get("cps_uri"), p.get("user_notice")))
    if len({p.oid for p in policies}) != len(policies):
        raise ctx.fail("certificate_policies", "a policy OID is listed twice")
    if kind == "root-ca" and policies:
        raise ctx.fail("certificate_policies", "a root-ca profile does not assert policies (put them in sub-ca / end-entity profiles)")

    keys = data.get("keys", {})
    if not keys.get("allowed"):
        raise ctx.fail("keys.allowed", "missing or empty (list the key types the profile accepts)")
    key_types = _one_of(ctx, "keys.allowed", keys["allowed"], _KEY_TYPES)

    subj = data.get("subject", {})
    required = _one_of(ctx, "subject.required", subj.get("required", []), tuple(SUBJECT_ATTRIBUTES))
    allowed = _one_of(ctx, "subject.allowed", subj.get("allowed", []), tuple(SUBJECT_ATTRIBUTES))
    both = set(required) & set(allowed)
    if both:
        raise ctx.fail("subject.allowed", f"{sorted(both)[0]} is already in subject.required")
    uscc = subj.get("uscc", "forbidden")
    if uscc not in USCC_MODES:
        raise ctx.fail("subject.uscc", f"unknown value {uscc!r} (one of: {', '.join(USCC_MODES)})")
    permitted = set(required) | set(allowed)
    if uscc != "forbidden" and "organizationIdentifier" not in permitted:
        raise ctx.fail("subject.uscc", f"is {uscc!r} but organizationIdentifier (which carries the code) "
                                       "is in neither subject.required nor subject.allowed")
    if uscc == "required" and "organizationIdentifier" not in required:
        raise ctx.fail("subject.uscc", "is 'required' but organizationIdentifier is not in subject.required")
    if uscc == "forbidden" and "organizationIdentifier" in permitted:
        raise ctx.fail("subject.uscc", "organizationIdentifier is permitted, so set uscc to 'optional' or 'required' "
                                       "(unica reads it as a Unified Social Credit Code)")
    gmt0015 = _one_of(ctx, "subject.gmt0015", subj.get("gmt0015", []), GMT0015_EDITIONS)
    if gmt0015 and uscc != "required":
        raise ctx.fail("subject.gmt0015", "GM/T 0015 extensions repeat the subject's Unified Social Credit Code, "
                                          "so subject.uscc must be 'required'")
    if gmt0015 and is_ca:
        raise ctx.fail("subject.gmt0015", f"GM/T 0015 organisation extensions are for end-entity certificates "
                                          f"(kind is {kind})")
    if is_ca and "commonName" not in required and "organizationName" not in required:
        raise ctx.fail("subject.required", "a CA profile must require commonName or organizationName")

    san_t = data.get("subject_alt_name", {})
    san_allowed = _one_of(ctx, "subject_alt_name.allowed", san_t.get("allowed", []), SAN_TYPES)
    san_max = san_t.get("max", 10)
    if not 1 <= san_max <= 1000:
        raise ctx.fail("subject_alt_name.max", f"must be from 1 to 1000, not {san_max}")
    san = SANRules(san_allowed, san_t.get("required", False), san_max)

    honour = _one_of(ctx, "csr.honour_extensions", data.get("csr", {}).get("honour_extensions", []),
                     HONOURABLE_EXTENSIONS)
    if san.allowed and "subjectAltName" not in honour:
        raise ctx.fail("subject_alt_name.allowed", "SAN types are allowed but csr.honour_extensions does not "
                                                   "include subjectAltName (names come only from the request)")
    if san.required and not san.allowed:
        raise ctx.fail("subject_alt_name.required", "is true but subject_alt_name.allowed is empty")
    gm_honoured = [h for h in honour if h != "subjectAltName"]
    if gm_honoured and "2012" not in gmt0015:
        raise ctx.fail("csr.honour_extensions", f"{', '.join(gm_honoured)} are GM/T 0015-2012 items: the profile "
                                                "needs subject.gmt0015 to include \"2012\"")
    if "subjectAltName" in honour and not san.allowed:
        raise ctx.fail("csr.honour_extensions", "subjectAltName is honoured but subject_alt_name.allowed is empty")
    if not required and not san.required:
        raise ctx.fail("subject.required", "is empty and subject_alt_name.required is false: "
                                           "a certificate could name nobody")

    nc = None
    if "name_constraints" in data:
        if not is_ca:
            raise ctx.fail("name_constraints", "only CA profiles carry name constraints (kind is end-entity)")
        if kind == "root-ca":
            raise ctx.fail("name_constraints", "a root-ca profile must not carry name constraints (RFC 5280 4.2.1.10 "
                                               "applies them to subordinate CAs)")
        values = {}
        for k, v in data["name_constraints"].items():
            key = f"name_constraints.{k}"
            _unique(ctx, key, v)
            for item in v:
                if k.endswith("_ip"):
                    try:
                        ipaddress.ip_network(item, strict=True)
                    except ValueError:
                        raise ctx.fail(key, f"{item!r} is not an IP network like 10.0.0.0/8") from None
                elif not item or any(c.isspace() for c in item):
                    raise ctx.fail(key, f"{item!r} is not a name")
            values[k] = tuple(v)
        nc = NameConstraintsSpec(**values)
        if nc.empty:
            raise ctx.fail("name_constraints", "is present but lists nothing")

    rev = data.get("revocation_info", {})
    ocsp_nocheck = data.get("ocsp_nocheck", False)
    if ocsp_nocheck and EKU_NAMES["OCSPSigning"] not in eku_t_usages:
        raise ctx.fail("ocsp_nocheck", "is true but extended_key_usage does not include OCSPSigning")
    if EKU_NAMES["OCSPSigning"] in eku_t_usages and "digitalSignature" not in key_usage:
        raise ctx.fail("key_usage.usages", "OCSPSigning needs digitalSignature")
    root_no_rev = kind == "root-ca" and any(rev.get(k, False) for k in ("crl_distribution_points", "ocsp", "ca_issuers"))
    if root_no_rev:
        raise ctx.fail("revocation_info", "a root-ca certificate is self-signed: it has no CRL or AIA to point to "
                                          "(set all to false)")
    default_rev = kind != "root-ca"
    return Profile(
        name=name, source=source, kind=kind, validity=validity, description=data.get("description", ""),
        key_usage=key_usage, key_usage_critical=True, extended_key_usage=eku_t_usages,
        extended_key_usage_critical=eku_critical, path_length=path_length, policies=tuple(policies),
        key_types=key_types, subject=SubjectRules(required, allowed, uscc, gmt0015), san=san, name_constraints=nc,
        crl_distribution_points=rev.get("crl_distribution_points", default_rev),
        ocsp=rev.get("ocsp", default_rev), ca_issuers=rev.get("ca_issuers", default_rev),
        ocsp_nocheck=ocsp_nocheck, honour_extensions=honour,
    )


def load_profile_file(path: str | Path, name: str | None = None) -> Profile:
    """Load one profile file; its name is the file name without ``.toml`` unless given."""
    from unica.boundedio import MAX_TEXT, read_limited

    p = Path(path)
    raw = read_limited(p, MAX_TEXT, "profile", unreadable=ProfileError)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"profile {p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {p}: not valid TOML: {e}") from None
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    return parse_profile(data, name=name or stem, source=str(p))
