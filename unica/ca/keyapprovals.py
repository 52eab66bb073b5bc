"""Executors of approved ``key.backup`` and ``key.restore`` requests (see :mod:`unica.ca.approvals`).

A key backup under dual control writes its file where the request said (``out``), once the
quorum approves; a restore reads the backup file the request named (its SHA-256 must still be
the approved one) and asks the custodians' cards -- the URIs the request named -- to open their
shares: the custodians come to the approval that meets the quorum.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

from unica.ca.approvals import executor
from unica.errors import InputError


def _write_atomic(path: str, data: bytes) -> None:
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@executor("key.backup")
def _key_backup(store, request, execution, key_secrets) -> dict:
    from cryptography import x509

    from unica.ca.authority import ca_info
    from unica.ca.keybackup import backup_ca_key, load_backup

    p = request["params"]
    certs = [x509.load_der_x509_certificate(base64.b64decode(c["certificate"])) for c in p["custodians"]]
    key_uri = ca_info(store, request["ca"])["key_uri"]
    pin = key_secrets(key_uri).get("pin")
    out = p.get("out")
    data = backup_ca_key(store, request["ca"], certs, p["threshold"], pin=pin, out=out, auth=execution,
                         write=(lambda d: _write_atomic(out, d)) if out else None)
    summary = load_backup(data).summary()
    return {"backup_id": summary["backup_id"], "out": out, "file_sha256": hashlib.sha256(data).hexdigest()}


@executor("key.restore")
def _key_restore(store, request, execution, key_secrets) -> dict:
    from unica.boundedio import read_limited
    from unica.ca.keybackup import MAX_BACKUP_FILE, restore_ca_key
    from unica.hsm import load_key
    from unica.hsm.uri import Pkcs11URI

    p = request["params"]
    if not p.get("file") or not p.get("share_keys"):
        raise InputError(f"request {request['id']} does not name the backup file and the custodians' cards")
    data = read_limited(p["file"], MAX_BACKUP_FILE, "key backup file")
    keys = [load_key(uri, **key_secrets(uri)) for uri in p["share_keys"]]
    target = Pkcs11URI(token=p["token"])
    pin = key_secrets(str(Pkcs11URI(token=p["token"], object=p["label"]))).get("pin")
    result = restore_ca_key(data, target, keys, store=store, label=p["label"], pin=pin, auth=execution,
                            source=p["file"], share_key_uris=p["share_keys"])
    return {"key_uri": result["key_uri"], "backup_id": result["backup_id"]}
