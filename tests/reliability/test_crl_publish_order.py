"""Two CRL generations of one CA overlapping: the published file must end with the higher number.

CRL numbers are reserved under the CA row lock, then the CRL is built and signed, then
written. If the generation holding number N is slower than the one holding N+1 (a slow
token, a big CRL), the N CRL must not replace the published N+1 file: relying parties
would be served an older CRL, missing revocations. The slow signer is a real P-256 key
behind the same kind of wrapper unica's token keys use (a subclass of
``ec.EllipticCurvePrivateKey`` forwarding ``sign``), held at a gate.
"""

from __future__ import annotations

import threading

from tests.reliability import rel


def test_slower_lower_numbered_crl_does_not_replace_the_published_newer_one(tmp_path):
    from unica.ca.revocation import generate_crl
    from unica.store import models as m
    from unica.store import open_store

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'unica.db'}"
    rel.make_pki(url, home, certs=4, revoked=1)
    store = open_store(url)
    key = rel.load_ca_key(store, rel.SUB)
    entered, gate = threading.Event(), threading.Event()

    def hold():
        entered.set()
        assert gate.wait(60)

    slow = rel.HookedKey(key, hold)
    out_dir = tmp_path / "pub"
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("slow", generate_crl(store, rel.SUB, key=slow,
                                                                                out_dir=out_dir)))
    t.start()
    try:
        assert entered.wait(30)  # number N reserved, signing
        fast = generate_crl(store, rel.SUB, key=key, out_dir=out_dir)[0]  # N+1, published
    finally:
        gate.set()
        t.join(30)
    slow_crl = result["slow"][0]
    assert fast.number == slow_crl.number + 1
    number, _ = rel.parse_crl(out_dir / f"{rel.SUB}.crl")
    assert number == fast.number, f"the published CRL went back from {fast.number} to {number}"
    with store.read() as s:
        rows = {c.number: c for c in s.query(m.CRL).all()}
    assert set(rows) == {slow_crl.number, fast.number}  # both numbers accounted for
    assert rows[fast.number].path == str(out_dir / f"{rel.SUB}.crl")
    assert not list(out_dir.glob("*.tmp*"))
    rel.check_consistency(store, crl_dirs=[out_dir])
    store.dispose()
