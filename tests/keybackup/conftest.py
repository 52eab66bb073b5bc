"""Key backup fixtures: SoftHSM2 tokens as the CA's HSM and as three custodians' cards.

Custodian 1's key is made in software and imported onto its card with pkcs11-tool (so openssl
can use the same key as a PEM: the independent peer of the card path); custodians 2 and 3
generate theirs on the card (pkcs11-tool --keypairgen). Each card key has CKA_DERIVE (ECDH).
The custodians' certificates (keyUsage keyAgreement) are signed by a small software
"custodian issuer" made here.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import SOFTHSM_MODULE, TEST_PIN, run_unica, softhsm_init_token

CARD_LABEL = "custodian"


def p11tool(token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token, "--login",
                           "--pin", TEST_PIN, *args], capture_output=True, text=True, check=True)


def card_uri(token: str) -> str:
    return f"pkcs11:token={token};object={CARD_LABEL}"


def make_cert(public_key, cn: str, issuer_key, *, key_agreement: bool = True, days: int = 365) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "口岸联合测试"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Custodian Issuer")])
    ku = x509.KeyUsage(digital_signature=not key_agreement, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=key_agreement, key_cert_sign=False, crl_sign=False,
                       encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(ku, critical=True).sign(issuer_key, hashes.SHA256()))


def card_public_key(token: str, path: Path):
    p11tool(token, "--read-object", "--type", "pubkey", "--label", CARD_LABEL, "-o", str(path))
    return serialization.load_der_public_key(path.read_bytes())


@dataclass
class Ceremony:
    dir: Path
    home: Path
    env: dict
    tag: str
    hsm: str
    cards: list[str]
    cert_files: list[Path]
    soft_key_pem: Path  # custodian 1's key, also on card 1
    issuer_key: object = None
    spare: list[str] = field(default_factory=list)

    def run(self, *args, **kw):
        env = dict(self.env)
        env.update(kw.pop("env", {}) or {})
        return run_unica(*args, env=env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def new_token(self, prefix: str) -> str:
        label = f"{prefix}-{uuid.uuid4().hex[:6]}"
        softhsm_init_token(label)
        self.spare.append(label)
        return label

    def new_card(self, prefix: str = "kbx") -> tuple[str, x509.Certificate]:
        """A card with a derive key generated on it, and a keyAgreement certificate for it."""
        token = self.new_token(prefix)
        p11tool(token, "--keypairgen", "--key-type", "EC:prime256v1", "--usage-derive", "--label", CARD_LABEL,
                "--id", "01")
        pub = card_public_key(token, self.dir / f"{token}.pub.der")
        return token, make_cert(pub, f"Custodian {token}", self.issuer_key)


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory) -> Ceremony:
    d = tmp_path_factory.mktemp("keybackup")
    tag = uuid.uuid4().hex[:6]
    home = d / "home"
    hsm = f"kbh-{tag}"
    cards = [f"kbc{i}-{tag}" for i in (1, 2, 3)]
    for t in (hsm, *cards):
        softhsm_init_token(t)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    # custodian 1: software key, imported onto card 1 (private and public objects, CKA_DERIVE)
    soft = ec.generate_private_key(ec.SECP256R1())
    soft_pem = d / "custodian1.key.pem"
    soft_pem.write_bytes(soft.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    (d / "c1.key.der").write_bytes(soft.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (d / "c1.pub.der").write_bytes(soft.public_key().public_bytes(serialization.Encoding.DER,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    p11tool(cards[0], "--write-object", str(d / "c1.key.der"), "--type", "privkey", "--id", "01",
            "--label", CARD_LABEL, "--usage-derive")
    p11tool(cards[0], "--write-object", str(d / "c1.pub.der"), "--type", "pubkey", "--id", "01",
            "--label", CARD_LABEL, "--usage-derive")
    pubs = [soft.public_key()]
    # custodians 2 and 3: generated on the card
    for t in cards[1:]:
        p11tool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--usage-derive", "--label", CARD_LABEL,
                "--id", "01")
        pubs.append(card_public_key(t, d / f"{t}.pub.der"))
    cert_files = []
    for i, pub in enumerate(pubs, 1):
        f = d / f"custodian{i}.pem"
        f.write_bytes(make_cert(pub, f"Custodian {i}", issuer_key).public_bytes(serialization.Encoding.PEM))
        cert_files.append(f)
    c = Ceremony(dir=d, home=home, env={"UNICA_HOME": str(home), "UNICA_DB": None}, tag=tag, hsm=hsm, cards=cards,
                 cert_files=cert_files, soft_key_pem=soft_pem, issuer_key=issuer_key)
    c.ok("init")
    return c


def rsa_cert(issuer_key) -> x509.Certificate:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return make_cert(k.public_key(), "RSA Custodian", issuer_key)
