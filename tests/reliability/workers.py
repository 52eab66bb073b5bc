"""Bodies of the child processes of the reliability tests.

- :func:`storm` -- one of the 8 concurrent nodes (multiprocessing 'spawn'): issues, revokes,
  and, by role, generates CRLs or pre-signs OCSP responses, on one shared database.
- ``python -m tests.reliability.workers crash KIND DB_URL HOME`` -- a process that loops
  over one operation (issue / revoke / crl / presign) until the test kills it with SIGKILL;
  it prints ``ready`` once its keys are loaded.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path


def _setup(home: str):
    os.environ["UNICA_HOME"] = home
    os.environ.pop("UNICA_DB", None)


def storm(args: dict) -> dict:
    """One node of the concurrency test; returns what it did."""
    _setup(args["home"])
    from unica.ca.issuance import IssuingCA
    from unica.ca.revocation import generate_crl, revoke
    from unica.errors import RevocationError
    from unica.ocsp.service import presign, served_cas
    from unica.store import open_store
    from tests.reliability import rel

    wid, n = args["wid"], args["certs"]
    rnd = random.Random(args["seed"])
    store = open_store(args["url"])
    key = rel.load_ca_key(store, rel.SUB)
    ca = IssuingCA(store, rel.SUB, key=key)
    cas = served_cas(store, [rel.SUB], passphrase=rel.PASSPHRASE) if args.get("presign") else None
    crl_dir = Path(args["crl_dir"])
    issued, revoked, crls, presigned, linted = [], [], [], [], 0
    i = 0
    while i < n:
        lint = i < args.get("lint", 0)
        if rnd.random() < 0.5 or lint:
            it = ca.issue(rel.leaf_request(f"w{wid}-{i}"), "tls-server", requester=f"node{wid}", lint=lint)
            issued.append(it.serial_hex)
            linted += lint
            i += 1
        else:
            k = min(rnd.randint(5, 25), n - i)
            out = ca.issue_many([rel.leaf_request(f"w{wid}-{i + j}") for j in range(k)], "tls-server",
                                requester=f"node{wid}", lint=False)
            issued += [o.serial_hex for o in out]
            i += k
        # revoke about a fifth: our own certificates, and now and then a random recent one of
        # any node (two nodes may race to revoke the same certificate: exactly one wins)
        while len(revoked) < len(issued) // 5:
            target = rnd.choice(issued)
            if rnd.random() < 0.2:
                target = peek_recent(store, rnd) or target
            try:
                revoke(store, target, ca=rel.SUB, reason=rnd.choice(["keyCompromise", "superseded",
                                                                      "cessationOfOperation"]))
                revoked.append(target)
            except RevocationError:
                pass
        if args.get("crl") and rnd.random() < 0.08:
            # a CRL to a file of its own (checked against the table), and one to the shared,
            # published path (which must end with the highest number)
            own = generate_crl(store, rel.SUB, key=key, out=crl_dir / f"w{wid}-{len(crls)}.crl")
            crls += [(r.number, r.path) for r in own]
            generate_crl(store, rel.SUB, key=key, out_dir=crl_dir / "published")
        if cas is not None and rnd.random() < 0.08:
            presigned += [r.to_dict() for r in presign(store, cas, batch=50)]
    store.dispose()
    return {"wid": wid, "issued": issued, "revoked": revoked, "crls": crls, "presigned": presigned,
            "linted": linted}


def peek_recent(store, rnd):
    """A random recently issued valid certificate of any node (cross-node revocations)."""
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        rows = s.execute(select(m.Certificate.serial).where(m.Certificate.status == "valid",
                                                           m.Certificate.profile == "tls-server")
                         .order_by(m.Certificate.id.desc()).limit(30)).scalars().all()
    return rnd.choice(rows) if rows else None


def presign_once(args: dict, barrier, results) -> None:
    """A refresher: pre-sign what is due, once (several start at the same moment)."""
    _setup(args["home"])
    from unica.store import open_store
    from tests.reliability import rel

    store = open_store(args["url"])
    cas = rel.served(store)
    barrier.wait(60)
    try:
        from unica.ocsp.service import presign

        results.put([r.to_dict() for r in presign(store, cas, batch=50)])
    finally:
        store.dispose()


# --- crash workers -----------------------------------------------------------------------


def crash_loop(kind: str, url: str, home: str, ready=None) -> None:
    """Loop over one operation until killed; ``ready`` (an Event) is set once the keys are loaded."""
    _setup(home)
    from unica.ca.issuance import IssuingCA
    from unica.ca.revocation import generate_crl, revoke
    from unica.errors import RevocationError
    from unica.ocsp.service import presign
    from unica.store import open_store
    from tests.reliability import rel

    store = open_store(url)
    key = rel.load_ca_key(store, rel.SUB)
    cas = rel.served(store) if kind in ("revoke", "presign") else None
    serials = []
    if kind == "revoke":
        from sqlalchemy import select

        from unica.store import models as m

        with store.read() as s:
            serials = s.execute(select(m.Certificate.serial).where(m.Certificate.status == "valid",
                                                                  m.Certificate.profile == "tls-server")
                                ).scalars().all()
        random.shuffle(serials)
    ca = IssuingCA(store, rel.SUB, key=key)
    if ready is not None:
        ready.set()
    else:
        print("ready", flush=True)
    i = 0
    while True:
        i += 1
        if kind == "issue":
            if i % 3:
                ca.issue(rel.leaf_request(f"c{os.getpid()}-{i}"), "tls-server", requester="crash", lint=i % 7 == 0)
            else:
                ca.issue_many([rel.leaf_request(f"c{os.getpid()}-{i}-{j}") for j in range(10)], "tls-server",
                              requester="crash", lint=False)
        elif kind == "revoke":
            if not serials:  # all revoked: keep going with fresh ones
                serials.append(ca.issue(rel.leaf_request(f"r{os.getpid()}-{i}"), "tls-server", lint=False).serial_hex)
            try:
                revoke(store, serials.pop(), ca=rel.SUB, reason="keyCompromise")
            except RevocationError:
                pass
            if i % 4 == 0:  # the revocations are pre-signed (as the responder's refresher would)
                presign(store, cas, batch=20)
        elif kind == "crl":
            generate_crl(store, rel.SUB, key=key)
        elif kind == "presign":
            presign(store, cas, everything=True, batch=25)
        else:
            raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash_loop(*sys.argv[2:5])
