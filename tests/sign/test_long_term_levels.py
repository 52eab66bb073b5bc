"""The level resolver of unica.sign.ltv: defaults that keep existing invocations' meaning, unica's
TSA from UNICA_TSA_URL, and the refusals (typed InputError: exit 2 on the command line)."""

from __future__ import annotations

import pytest

from unica.errors import InputError
from unica.sign.ltv import TSA_ENV, resolve_level


def test_defaults_keep_existing_meaning(monkeypatch):
    monkeypatch.setenv(TSA_ENV, "http://127.0.0.1:3180/")
    assert resolve_level(None, None).name == "B-B"  # no --tsa, no --level: B-B even with UNICA_TSA_URL
    assert resolve_level(None, None).tsa_url is None
    lvl = resolve_level(None, "http://tsa.example/")
    assert (lvl.name, lvl.tsa_url) == ("B-T", "http://tsa.example/")


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA", "b-lta"])
def test_unica_tsa_by_default(monkeypatch, level):
    monkeypatch.setenv(TSA_ENV, "http://127.0.0.1:3180/")
    lvl = resolve_level(level, None)
    assert lvl.tsa_url == "http://127.0.0.1:3180/" and lvl.name == level.upper()
    assert lvl.timestamped and lvl.long_term == (lvl.name != "B-T") and lvl.archival == (lvl.name == "B-LTA")
    assert resolve_level(level, "https://other.example/").tsa_url == "https://other.example/"  # --tsa wins


def test_refusals(monkeypatch):
    monkeypatch.delenv(TSA_ENV, raising=False)
    with pytest.raises(InputError, match="UNICA_TSA_URL"):
        resolve_level("B-T", None)
    monkeypatch.setenv(TSA_ENV, "  ")
    with pytest.raises(InputError, match="UNICA_TSA_URL"):
        resolve_level("B-LTA", None)
    with pytest.raises(InputError, match="B-B"):
        resolve_level("B-B", "http://tsa.example/")
    with pytest.raises(InputError, match="B-LTA"):
        resolve_level("B-LTA", "http://tsa.example/", allowed=("B-B", "B-T", "B-LT"))
    with pytest.raises(InputError, match="http"):
        resolve_level("B-T", "ftp://tsa.example/")
    with pytest.raises(InputError):
        resolve_level("B-X", None)
