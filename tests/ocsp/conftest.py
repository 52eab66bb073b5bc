"""OCSP fixtures: a PKI, statuses, and one running responder serving three CAs.

- ``live``: live mode, responses signed by a delegated OCSP signer (id-kp-OCSPSigning +
  id-pkix-ocsp-nocheck), nonces echoed;
- ``pre``: pre-signed mode, its own delegated signer used by the pre-signer; the server
  does not sign live for it (``live_nonce`` False) except on misses;
- ``cakey``: live mode, responses signed by the CA key itself.
A fourth CA, ``stranger``, is not served (unauthorized).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from ocsppki import NOW, Issued, ThreadServer, issue, make_ca
from unica.ocsp import (InMemoryPresignedStore, InMemoryStatusSource, Presigner, Responder, ResponseSigner,
                        ServedCA)
from unica.ocsp.http import OCSPApp


@dataclass
class World:
    dir: Path
    cas: dict[str, Issued]
    signers: dict[str, Issued]
    leaves: dict[str, Issued]
    source: InMemoryStatusSource
    store: InMemoryPresignedStore
    presigner: Presigner
    responder: Responder
    url: str = ""


REVOKED_AT = NOW - dt.timedelta(days=2, hours=3)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("ocsp-pki")
    cas = {n: make_ca(d, f"OCSP CA {n}") for n in ("live", "pre", "cakey", "stranger")}
    signers = {n: issue(d, cas[n], f"OCSP signer {n}", ocsp_signer=True) for n in ("live", "pre")}
    leaves = {}
    source = InMemoryStatusSource()
    for ca in ("live", "pre", "cakey"):
        for kind in ("good", "revoked", "unknown"):
            leaves[f"{ca}-{kind}"] = leaf = issue(d, cas[ca], f"leaf {ca} {kind}")
            if kind == "good":
                source.issue(ca, leaf.cert.serial_number)
            elif kind == "revoked":
                source.revoke(ca, leaf.cert.serial_number, REVOKED_AT, x509.ReasonFlags.key_compromise)
        leaves[f"{ca}-later"] = leaf = issue(d, cas[ca], f"leaf {ca} later")
        source.issue(ca, leaf.cert.serial_number)
    leaves["stranger-good"] = issue(d, cas["stranger"], "leaf stranger")
    served = [
        ServedCA("live", cas["live"].cert, "live",
                 ResponseSigner(cas["live"].cert, signers["live"].cert, signers["live"].key)),
        ServedCA("pre", cas["pre"].cert, "presigned",
                 ResponseSigner(cas["pre"].cert, signers["pre"].cert, signers["pre"].key)),
        ServedCA("cakey", cas["cakey"].cert, "live", ResponseSigner(cas["cakey"].cert, cas["cakey"].cert,
                                                                    cas["cakey"].key)),
    ]
    store = InMemoryPresignedStore()
    presigner = Presigner(served, source, store)
    presigner.presign_all()
    source.on_change(presigner.status_changed)
    responder = Responder(served, source, store)
    w = World(d, cas, signers, leaves, source, store, presigner, responder)
    with ThreadServer(OCSPApp(responder)) as srv:
        w.url = srv.url
        yield w
