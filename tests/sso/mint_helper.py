"""Mint one ID token in a process of its own, as the provider will (the PKCS#11 module initialised
with that process's SOFTHSM2_CONF, the PIN from UNICA_PIN, a key file's passphrase from
UNICA_PASSPHRASE).

stdin: JSON ``{"client_id", "issuer", "nonce", "lifetime", "facts": {...LoginFacts fields...}}``;
stdout: JSON ``{"token", "key_class"}`` (the class of the key object that signed). A refusal:
one line ``error: CLASS: message`` on stderr and the error's exit status.
"""

from __future__ import annotations

import datetime as dt
import json
import sys


def main() -> int:
    from unica.errors import UnicaError
    from unica.hsm import load_key
    from unica.portal.facts import LoginFacts
    from unica.sso.tokens import mint_id_token
    from unica.store import open_store

    req = json.loads(sys.stdin.read(1 << 16))
    f = dict(req["facts"])
    f["auth_time"] = dt.datetime.fromisoformat(f["auth_time"])
    f["roles"] = tuple(f["roles"])
    facts = LoginFacts(**f)
    used = []

    def loader(uri):
        key = load_key(uri)
        used.append(type(key).__name__)
        return key

    try:
        token = mint_id_token(open_store(), facts, client_id=req["client_id"], issuer_url=req["issuer"],
                              nonce=req.get("nonce"), lifetime=req.get("lifetime", 300), load_key=loader)
    except UnicaError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps({"token": token, "key_class": used[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
