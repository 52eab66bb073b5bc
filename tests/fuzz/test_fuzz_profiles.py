"""Profile files (TOML) with random keys, types and values, and damaged text.

Contract: :func:`unica.policies.load_profile_file` / :func:`parse_profile` return a
:class:`Profile` or raise :class:`ProfileError` whose message names the file (and, for a bad
key, the key) -- never another exception.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, feed, pick
from unica.errors import ProfileError
from unica.policies import Profile, load_profile_file, parse_profile
from unica.policies.loader import _SCHEMA
from unica.policies.model import EKU_NAMES, HONOURABLE_EXTENSIONS, KEY_USAGES, KINDS, SAN_TYPES, SUBJECT_ATTRIBUTES

VOCAB = sorted({*KEY_USAGES, *EKU_NAMES, *KINDS, *SAN_TYPES, *SUBJECT_ATTRIBUTES, *HONOURABLE_EXTENSIONS,
                "ec-p256", "rsa-2048", "ed25519", "required", "optional", "forbidden", "1y", "90d", "0d", "-1y",
                "10000000000000y", "1.2.3", "2.5.29.99", "http://x.example/cps", "ftp://x", "10.0.0.0/8",
                "10.0.0.1/8", "::/0", "", " ", "\u00e9", "example.com"})
KEYS = sorted({k for t in _SCHEMA.values() for k in t} | set(_SCHEMA) - {""} | {"unknown", "Kind", "key usage"})

scalar = st.one_of(
    st.sampled_from(VOCAB), st.text(max_size=20), st.integers(-2**70, 2**70), st.sampled_from([0, 1, -1, 1000, 1001]),
    st.booleans(), st.floats(allow_nan=True), st.just(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
    st.just(dt.date(2026, 1, 1)), st.just(dt.time(12, 0)))
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                     max_leaves=4)


@pytest.fixture(scope="module")
def builtin_dicts(seeds):
    return {name: tomllib.loads(text) for name, text in seeds.profiles.items()}


@st.composite
def mutated_profile(draw, base: dict) -> dict:
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        # pick a table (top level or one nested table / array-of-tables item)
        tables = [d] + [v for v in d.values() if isinstance(v, dict)] + \
                 [x for v in d.values() if isinstance(v, list) for x in v if isinstance(x, dict)]
        t = draw(st.sampled_from(tables))
        op = draw(st.sampled_from(("set", "set", "delete", "add", "list-item", "swap-type")))
        keys = list(t)
        if op == "delete" and keys:
            del t[draw(st.sampled_from(keys))]
        elif op == "add" or not keys:
            t[draw(st.sampled_from(KEYS))] = draw(value)
        elif op == "list-item":
            lists = [k for k in keys if isinstance(t[k], list)]
            if lists:
                k = draw(st.sampled_from(lists))
                t[k] = list(t[k]) + [draw(st.one_of(st.sampled_from(VOCAB), scalar))]
            else:
                t[draw(st.sampled_from(keys))] = draw(value)
        elif op == "swap-type":
            k = draw(st.sampled_from(keys))
            v = t[k]
            t[k] = ([v] if not isinstance(v, list) else (v[0] if v else {})) if draw(st.booleans()) else str(v)
        else:
            t[draw(st.sampled_from(keys))] = draw(st.one_of(st.sampled_from(VOCAB), value))
    return d


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(d: dict) -> str:
    """A small TOML writer (inline tables for nested values): enough for profile-shaped data."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in d.items())


def _check(res, err, source: str):
    if err is not None:
        assert isinstance(err, ProfileError), err
        assert f"profile {source}" in str(err), f"the message does not name the file: {err}"
        return
    assert isinstance(res, Profile)


@budget(1500)
@given(data=st.data())
def test_parse_profile(builtin_dicts, data):
    name = pick(data.draw, sorted(builtin_dicts))
    d = data.draw(cached(("profile", name), lambda: st.one_of(
        mutated_profile(builtin_dicts[name]), mutated_profile(builtin_dicts[name]),
        st.dictionaries(st.sampled_from(KEYS), value, max_size=6))))
    pname = pick(data.draw, [name, "fuzz", "Fuzz", "", "a" * 70, "../x", "ok.name-1"])
    res, err = feed("policies.parse_profile", parse_profile, d, name=pname, source="fuzz.toml")
    _check(res, err, "fuzz.toml")


@budget(600)
@given(data=st.data())
def test_load_profile_file(seeds, builtin_dicts, tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(seeds.profiles)))
    how = data.draw(st.sampled_from(("mutated-dict", "text", "text", "bytes")))
    if how == "mutated-dict":
        raw = to_toml(data.draw(cached(("profile-only", name), lambda: mutated_profile(builtin_dicts[name])))).encode()
    elif how == "text":
        text = seeds.profiles[name]
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 20)))
        raw = (text[:i] + data.draw(st.sampled_from(["", "[", "]]", "=", "\"", "\n[x]\n", "'''", "\x00", "\\u0000",
                                                      "# c\n", "\ud7ff", "kind = \"root-ca\"\n"])) + text[j:]).encode()
    else:
        raw = data.draw(st.binary(max_size=200))
    path = tmp_path_factory.getbasetemp() / f"{name}.toml"
    path.write_bytes(raw)
    res, err = feed("policies.load_profile_file", load_profile_file, path)
    _check(res, err, str(path))


def test_builtins_load(seeds, tmp_path):
    """The unmutated profiles and their round trip through the test's TOML writer load."""
    for name, text in seeds.profiles.items():
        p = tmp_path / f"{name}.toml"
        p.write_text(to_toml(tomllib.loads(text)))
        res, err = feed("policies.load_profile_file", load_profile_file, p)
        assert err is None, err
