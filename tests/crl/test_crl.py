"""The DER-level CRL encoder, checked by cryptography, openssl and pkilint."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import CRLEntryExtensionOID

from unica import der
from unica.ca.crl import (CRLIssuer, IssuingDistributionPoint, RevokedEntry, ShardScheme, build_crl,
                          crl_to_file)

from crlpki import NOW, openssl_crl_verify, pkilint_crl, sig_hash

R = x509.ReasonFlags
ALL_REASONS = [None, R.unspecified, R.key_compromise, R.ca_compromise, R.affiliation_changed, R.superseded,
               R.cessation_of_operation, R.certificate_hold, R.privilege_withdrawn, R.aa_compromise]


def sig_alg_der(signed: bytes) -> bytes:
    """The outer signatureAlgorithm of a signed structure, as DER bytes."""
    s, e = der.expect(signed, 0, der.SEQUENCE)
    (_, _, _, _), (_, _, aend, astart) = list(der.children(signed, s, e))[:2]
    return signed[astart:aend]


def sample_entries():
    out = []
    for i, reason in enumerate(ALL_REASONS):
        inv = NOW - dt.timedelta(days=3, seconds=i) if i % 2 else None
        out.append(RevokedEntry(0x7F00_0000_0000_0000_0000_0000_0000_0000 + i * 977,
                                NOW - dt.timedelta(hours=i), reason, inv))
    # a serial with the top bit set (needs a leading zero octet), a small one, a 2050+ date
    out.append(RevokedEntry((1 << 127) | 5, NOW - dt.timedelta(minutes=1)))
    out.append(RevokedEntry(1, dt.datetime(2051, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc), R.superseded))
    return out


def _kw(kind, ca):
    return dict(issuer=ca.cert, signing_key=ca.key, hash_alg=sig_hash(kind), rsa_pss=(kind == "rsa-pss"),
                this_update=NOW, next_update=NOW + dt.timedelta(days=7))


def check_values(crl: x509.CertificateRevocationList, entries, ca):
    assert crl.issuer == ca.cert.subject
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + dt.timedelta(days=7)
    assert crl.is_signature_valid(ca.key.public_key())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    got = {r.serial_number: r for r in crl}
    assert len(got) == len(entries)
    for e in entries:
        r = got[e.serial]
        assert r.revocation_date_utc == e.revoked_at
        exts = {x.oid: x.value for x in r.extensions}
        if e.reason in (None, R.unspecified):
            assert CRLEntryExtensionOID.CRL_REASON not in exts  # RFC 5280: absent rather than unspecified
        else:
            assert exts[CRLEntryExtensionOID.CRL_REASON].reason == e.reason
        if e.invalidity_date is None:
            assert CRLEntryExtensionOID.INVALIDITY_DATE not in exts
        else:
            assert exts[CRLEntryExtensionOID.INVALIDITY_DATE].invalidity_date_utc == e.invalidity_date


def test_base_crl_every_key_type(any_ca, tmp_path):
    kind, ca = any_ca
    entries = sample_entries()
    der_bytes = build_crl(crl_number=42, entries=iter(entries), **_kw(kind, ca))
    crl = x509.load_der_x509_crl(der_bytes)
    check_values(crl, entries, ca)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    # the AlgorithmIdentifier matches what cryptography's own builder writes for this key
    ref = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(NOW).next_update(NOW + dt.timedelta(days=1)))
    extra = {"rsa_padding": padding.PSS(padding.MGF1(hashes.SHA256()), 32)} if kind == "rsa-pss" else {}
    ref = ref.sign(ca.key, sig_hash(kind), **extra)
    assert crl.signature_algorithm_oid == ref.signature_algorithm_oid
    assert sig_alg_der(der_bytes) == sig_alg_der(ref.public_bytes(serialization.Encoding.DER))
    path = tmp_path / "base.crl"
    path.write_bytes(der_bytes)
    proc = openssl_crl_verify(path, ca)
    assert proc.returncode == 0 and "verify OK" in proc.stdout + proc.stderr, proc.stderr
    lint = pkilint_crl(path)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


def test_delta_crl(ca, tmp_path):
    entries = [RevokedEntry(1000, NOW - dt.timedelta(minutes=5), R.key_compromise),
               RevokedEntry(1001, NOW - dt.timedelta(minutes=4), R.remove_from_crl)]
    path = tmp_path / "delta.crl"
    crl_to_file(path, crl_number=8, delta_base=7, entries=entries, **_kw("p256", ca))
    crl = x509.load_der_x509_crl(path.read_bytes())
    ext = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert ext.critical and ext.value.crl_number == 7
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 8
    assert crl.get_revoked_certificate_by_serial_number(1001).extensions.get_extension_for_class(
        x509.CRLReason).value.reason == R.remove_from_crl
    assert crl.is_signature_valid(ca.key.public_key())
    assert openssl_crl_verify(path, ca).returncode == 0
    lint = pkilint_crl(path)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout


def test_base_crl_points_to_delta(ca, tmp_path):
    path = tmp_path / "base-fresh.crl"
    crl_to_file(path, crl_number=7, freshest_crl_urls=["http://crl.example/ca1/delta.crl"],
                entries=sample_entries(), **_kw("p256", ca))
    crl = x509.load_der_x509_crl(path.read_bytes())
    ext = crl.extensions.get_extension_for_class(x509.FreshestCRL)
    assert not ext.critical
    assert ext.value[0].full_name == [x509.UniformResourceIdentifier("http://crl.example/ca1/delta.crl")]
    assert openssl_crl_verify(path, ca).returncode == 0
    lint = pkilint_crl(path)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout


@pytest.mark.parametrize("user_only", [False, True])
def test_sharded_crls(ca, tmp_path, user_only):
    scheme = ShardScheme(4, "http://crl.example/ca1/{shard}.crl")
    entries = [RevokedEntry(s, NOW - dt.timedelta(seconds=s), R.superseded) for s in range(100, 140)]
    for shard in range(4):
        path = tmp_path / f"{shard}.crl"
        idp = scheme.idp(shard, only_contains_user_certs=user_only)
        crl_to_file(path, crl_number=3, idp=idp, entries=scheme.filter(iter(entries), shard), **_kw("p256", ca))
        crl = x509.load_der_x509_crl(path.read_bytes())
        assert sorted(r.serial_number for r in crl) == [s for s in range(100, 140) if s % 4 == shard]
        ext = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert ext.critical
        assert ext.value.full_name == [x509.UniformResourceIdentifier(f"http://crl.example/ca1/{shard}.crl")]
        assert ext.value.only_contains_user_certs is user_only
        assert not ext.value.only_contains_ca_certs
        assert openssl_crl_verify(path, ca).returncode == 0
        lint = pkilint_crl(path)
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout
    assert scheme.shard_of(103) == 3
    assert scheme.url_for_serial(103) == "http://crl.example/ca1/3.crl"


def test_empty_crl(ca, tmp_path):
    path = tmp_path / "empty.crl"
    crl_to_file(path, crl_number=1, entries=(), **_kw("p256", ca))
    crl = x509.load_der_x509_crl(path.read_bytes())
    assert len(crl) == 0
    assert crl.is_signature_valid(ca.key.public_key())
    assert openssl_crl_verify(path, ca).returncode == 0
    lint = pkilint_crl(path)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout


def test_streams_a_generator_and_writes_to_a_file(ca, tmp_path):
    n = 20_000
    seen = []

    def gen():
        for i in range(n):
            seen.append(i)
            yield (10**30 + i, NOW - dt.timedelta(seconds=i), R.key_compromise if i % 2 else None, None)

    path = tmp_path / "big.crl"
    with open(path, "wb") as f:
        size = build_crl(crl_number=2, entries=gen(), out=f, **_kw("p256", ca))
    assert size == path.stat().st_size and len(seen) == n
    crl = x509.load_der_x509_crl(path.read_bytes())
    assert len(crl) == n and crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(10**30 + 7).revocation_date_utc == NOW - dt.timedelta(seconds=7)
    assert openssl_crl_verify(path, ca).returncode == 0


def test_issuer_from_name_and_key_id(ca):
    issuer = CRLIssuer.from_certificate(ca.cert)
    der_bytes = build_crl(crl_number=1, **{**_kw("p256", ca), "issuer": issuer})
    assert x509.load_der_x509_crl(der_bytes).issuer == ca.cert.subject


@pytest.mark.parametrize("change,message", [
    ({"this_update": NOW.replace(tzinfo=None)}, "naive"),
    ({"next_update": NOW}, "nextUpdate"),
    ({"crl_number": -1}, "CRL number"),
    ({"delta_base": 9, "crl_number": 9}, "delta base"),
    ({"entries": [RevokedEntry(1, NOW.replace(tzinfo=None))]}, "naive"),
    ({"entries": [RevokedEntry(-1, NOW)]}, "serial"),
    ({"entries": [RevokedEntry(1, NOW, "keyCompromise")]}, "reason"),
    ({"entries": [RevokedEntry(1, NOW, R.remove_from_crl)]}, "removeFromCRL"),
    ({"freshest_crl_urls": ["ftp://x"]}, "freshest"),
    ({"delta_base": 1, "freshest_crl_urls": ["http://x/d.crl"]}, "Freshest"),
])
def test_bad_input_is_refused(ca, change, message):
    kw = {**_kw("p256", ca), "crl_number": 5, **change}
    with pytest.raises(ValueError, match=message):
        build_crl(**kw)


def test_shard_scheme_validation():
    with pytest.raises(ValueError, match="placeholder"):
        ShardScheme(4, "http://crl.example/ca1.crl")
    with pytest.raises(ValueError, match="shard count"):
        ShardScheme(0, "http://crl.example/{shard}.crl")
    with pytest.raises(ValueError, match="both"):
        IssuingDistributionPoint("http://x/1.crl", True, True)


def test_epoch_second_times_encode_like_datetimes(ca):
    """The database reader's fast form: revoked_at as whole seconds since the epoch (UTC)."""
    as_dt = sample_entries()
    as_int = [e._replace(revoked_at=int(e.revoked_at.timestamp())) for e in as_dt]
    kw = {**_kw("p256", ca), "crl_number": 9}
    a = x509.load_der_x509_crl(build_crl(entries=as_dt, **kw))
    b = x509.load_der_x509_crl(build_crl(entries=as_int, **kw))
    assert a.tbs_certlist_bytes == b.tbs_certlist_bytes
