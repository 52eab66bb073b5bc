"""What the real ``unica tsa serve`` answers, request by request (http.client as the client,
requests built with asn1crypto): each rejection status of RFC 3161 with its failInfo and no
token, 413/415 before anything is read, the policy rules, the nonce, certReq, the serial, the
clock check (timeNotAvailable while the status file says unsynced; the loss and the recovery
audited once each), the archive (``unica tsa show SERIAL``)."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
from asn1crypto import cms, core, tsp

from tests.tsa.conftest import ALT_POLICY, OTHER_POLICY, POLICY, post, wait_for


class Resp(core.Sequence):
    """TimeStampResp with the token OPTIONAL, as RFC 3161 has it (asn1crypto's requires it)."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def query(data: bytes = b"payload", alg: str = "sha256", *, digest: bytes | None = None, nonce: int | None = None,
          policy: str | None = None, cert_req: bool = True, extensions=None) -> bytes:
    req = {"version": "v1",
           "message_imprint": {"hash_algorithm": {"algorithm": alg},
                               "hashed_message": digest if digest is not None else hashlib.new(alg, data).digest()},
           "cert_req": cert_req}
    if nonce is not None:
        req["nonce"] = nonce
    if policy is not None:
        req["req_policy"] = policy
    if extensions is not None:
        req["extensions"] = extensions
    return tsp.TimeStampReq(req).dump()


def ask(server, body: bytes) -> Resp:
    status, ctype, out = post(server.url, body)
    assert status == 200 and ctype == "application/timestamp-reply"
    return Resp.load(out)


def rejected(resp: tsp.TimeStampResp, failure: str) -> str:
    st = resp["status"]
    assert st["status"].native == "rejection"
    assert st["fail_info"].native == {failure}
    assert isinstance(resp["time_stamp_token"], core.Void), "a rejection carries no token"
    return " ".join(st["status_string"].native or [])


def tst_info(resp: tsp.TimeStampResp) -> tsp.TSTInfo:
    assert resp["status"]["status"].native == "granted", resp["status"].native
    sd = resp["time_stamp_token"]["content"]
    assert sd["encap_content_info"]["content_type"].native == "tst_info"
    return sd["encap_content_info"]["content"].parsed


def test_granted_token_fields(server, tsa_home):
    resp = ask(server, query(b"x", nonce=(1 << 159) + 12345))
    tst = tst_info(resp)
    assert tst["version"].native == "v1"
    assert tst["policy"].dotted == POLICY  # no policy asked: the default
    assert tst["nonce"].native == (1 << 159) + 12345  # copied back exactly
    assert tst["message_imprint"]["hashed_message"].native == hashlib.sha256(b"x").digest()
    assert tst["ordering"].native is False
    assert tst["accuracy"]["seconds"].native == 1
    serial = tst["serial_number"].native
    assert serial > 0 and 64 <= serial.bit_length() <= 160
    from cryptography import x509

    unit = x509.load_pem_x509_certificate(tsa_home.unit_pem.read_bytes())
    assert tst["tsa"].name == "directory_name"
    assert tst["tsa"].chosen.native == _asn1_name(unit).native
    sd = resp["time_stamp_token"]["content"]
    assert sd["version"].native == "v3"
    si = sd["signer_infos"][0]
    attrs = {a["type"].native: a for a in si["signed_attrs"]}
    assert attrs["content_type"]["values"][0].native == "tst_info"
    ess = attrs["signing_certificate_v2"]["values"][0]
    assert ess["certs"][0]["cert_hash"].native == hashlib.sha256(unit.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)).digest()
    # certReq true: the unit certificate is in the token
    assert [c.chosen["tbs_certificate"]["serial_number"].native for c in sd["certificates"]] == [unit.serial_number]
    # two tokens never share a serial
    assert tst_info(ask(server, query(b"x")))["serial_number"].native != serial


def _asn1_name(cert):
    from asn1crypto import x509 as ax
    from cryptography.hazmat.primitives.serialization import Encoding

    return ax.Certificate.load(cert.public_bytes(Encoding.DER)).subject


def test_cert_req_false_leaves_the_certificate_out(server):
    resp = ask(server, query(b"y", cert_req=False))
    tst_info(resp)
    assert isinstance(resp["time_stamp_token"]["content"]["certificates"], core.Void) or \
        len(resp["time_stamp_token"]["content"]["certificates"]) == 0


@pytest.mark.parametrize("alg", ["sha384", "sha512"])
def test_other_accepted_digests(server, alg):
    tst = tst_info(ask(server, query(b"z", alg)))
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == alg


def test_accepted_policy_is_used_and_another_is_refused(server):
    assert tst_info(ask(server, query(policy=ALT_POLICY)))["policy"].dotted == ALT_POLICY
    assert tst_info(ask(server, query(policy=POLICY)))["policy"].dotted == POLICY
    text = rejected(ask(server, query(policy=OTHER_POLICY)), "unaccepted_policy")
    assert OTHER_POLICY in text


@pytest.mark.parametrize("alg", ["sha1", "md5", "sha224", "sha3_256"])
def test_digest_outside_the_allow_list_is_bad_alg(server, alg):
    rejected(ask(server, query(b"w", alg)), "bad_alg")


def test_wrong_imprint_length_is_bad_alg(server):
    rejected(ask(server, query(digest=b"\x01" * 20)), "bad_alg")
    rejected(ask(server, query(alg="sha512", digest=b"\x01" * 32)), "bad_alg")


def test_any_extension_is_unaccepted(server):
    ext = [{"extn_id": "1.3.6.1.4.1.59999.1", "critical": False, "extn_value": core.OctetString(b"\x05\x00").dump()}]
    body = query(extensions=ext)
    rejected(ask(server, body), "unaccepted_extensions")


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 10,
                                  query() + b"\x00", query()[:-3], cms.ContentInfo({"content_type": "data",
                                                                                    "content": b"x"}).dump()],
                         ids=["empty", "text", "short-seq", "indefinite", "trailing", "truncated", "other-der"])
def test_garbage_is_bad_data_format_with_200(server, body):
    rejected(ask(server, body), "bad_data_format")


def test_version_2_is_bad_data_format(server):
    body = bytearray(query())
    assert body[2:5] == b"\x02\x01\x01"
    body[4] = 2
    rejected(ask(server, bytes(body)), "bad_data_format")


def test_wrong_content_type_is_415(server):
    for ct in ("application/ocsp-request", "text/plain", None):
        status, _, _ = post(server.url, query(), content_type=ct)
        assert status == 415, ct
    status, _, _ = post(server.url, query(), content_type="Application/TimeStamp-Query; charset=binary")
    assert status == 200


def test_oversized_body_is_413_before_it_is_read(server):
    # the declared length alone is refused: the client sends the headers and no body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    status, _, _ = post(server.url, b"\x30" * 9000)
    assert status == 413


def test_other_paths_and_methods(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
        conn.request("PUT", "/", body=b"x")
        r = conn.getresponse()
        r.read()
        assert r.status == 405
        conn.request("POST", "/other", body=query(), headers={"Content-Type": "application/timestamp-query"})
        r = conn.getresponse()
        r.read()
        assert r.status == 404
    finally:
        conn.close()


def _archived(tsa_home, serial: int):
    p = tsa_home.run("tsa", "show", format(serial, "x"), "--json")
    return json.loads(p.stdout) if p.returncode == 0 else None


def test_every_token_is_archived(server, tsa_home):
    resp = ask(server, query(b"archive me", "sha384", nonce=7, policy=ALT_POLICY))
    serial = tst_info(resp)["serial_number"].native
    row = wait_for(lambda: _archived(tsa_home, serial), timeout=10, step=0.2)
    assert row == {"serial": format(serial, "x"), "unit": "tsa1", "gen_time": row["gen_time"], "imprint_alg": "sha384",
                   "imprint": hashlib.sha384(b"archive me").hexdigest(), "policy": ALT_POLICY, "nonce": True}
    gen = tst_info(resp)["gen_time"].native
    assert row["gen_time"].startswith(gen.strftime("%Y-%m-%dT%H:%M:%S"))
    p = tsa_home.run("tsa", "show", format(serial, "x"))
    assert p.returncode == 0 and "imprint alg:" in p.stdout and ALT_POLICY in p.stdout
    # an unknown serial: one line, exit 1; not hex: exit 2
    p = tsa_home.run("tsa", "show", "abcdef0123")
    assert p.returncode == 1 and p.stderr.startswith("unica: error: no time-stamp token with serial")
    p = tsa_home.run("tsa", "show", "not-hex")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1


def _clock_events(tsa_home):
    return [r[0] for r in tsa_home.sql("SELECT event FROM audit_log WHERE event LIKE 'tsa.clock-%' ORDER BY id")]


def test_clock_out_of_sync_answers_time_not_available_then_recovers(server, tsa_home, clock_file):
    before = _clock_events(tsa_home)
    tokens_before = tsa_home.counts()["tsa_tokens"]
    try:
        clock_file.write_text("unsynced\n")
        assert wait_for(lambda: ask(server, query(b"t"))["status"]["status"].native == "rejection", timeout=10)
        for _ in range(5):  # many requests while out of sync: rejected, one audit entry
            text = rejected(ask(server, query(b"t", nonce=5)), "time_not_available")
        assert "not synchronised" in text
        status, _ = _get(server, "/healthz")
        assert status == 503
        # an offset beyond the declared accuracy (1 s) is out of sync too
        clock_file.write_text("synced offset=-1.5\n")
        import time

        time.sleep(0.5)
        rejected(ask(server, query(b"t")), "time_not_available")
    finally:
        clock_file.write_text("synced offset=0.0004\n")
    assert wait_for(lambda: ask(server, query(b"t"))["status"]["status"].native == "granted", timeout=10)
    # the recovery is audited before issuance resumes (ClockMonitor.poll), so no waiting here
    assert _clock_events(tsa_home)[len(before):] == ["tsa.clock-lost", "tsa.clock-recovered"]
    row = tsa_home.sql("SELECT details FROM audit_log WHERE event = 'tsa.clock-lost' ORDER BY id DESC LIMIT 1")[0][0]
    assert "unsynced" in row
    # nothing was issued while out of sync: only the tokens granted after recovery reach the archive
    wait_for(lambda: tsa_home.counts()["tsa_tokens"] > tokens_before, timeout=5)


def test_missing_status_file_is_out_of_sync(tsa_home, tmp_path):
    from tests.tsa.conftest import Server

    with Server(tsa_home, "--unit", "tsa1", "--clock-status", str(tmp_path / "nowhere"),
                "--clock-interval", "0.1") as s:
        assert "NOT SYNCED" in "".join(s.lines)
        rejected(ask(s, query()), "time_not_available")


def _get(server, path):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()
