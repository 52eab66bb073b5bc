"""The small speed fixes made in unica/hsm/pkcs11.py for token signing (issue 5 bench)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import utils
from hypothesis import given, strategies as st

from unica.hsm.pkcs11 import _ecdsa_der, _hash_data


@given(st.sampled_from([32, 48, 66]).flatmap(lambda n: st.tuples(st.binary(min_size=n, max_size=n),
                                                                  st.binary(min_size=n, max_size=n))))
def test_ecdsa_der_matches_cryptography(rs):
    r, s = rs
    assert _ecdsa_der(r + s) == utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


@given(st.binary(max_size=300))
def test_hash_data_matches_cryptography(data):
    for alg in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512(), hashes.SHA224(), hashes.SHA3_256()):
        h = hashes.Hash(alg)
        h.update(data)
        assert _hash_data(data, alg)[0] == h.finalize()
    digest = hashlib.sha256(data).digest()
    assert _hash_data(digest, utils.Prehashed(hashes.SHA256()))[0] == digest
