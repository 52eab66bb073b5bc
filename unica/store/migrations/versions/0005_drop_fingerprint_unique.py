"""drop the unique index on certificates.fingerprint_sha256

A certificate's DER holds its issuer and serial, and (issuer, serial) is unique already
(uq_certificates_ca_serial), so fingerprints are unique without an index enforcing it;
nothing looks certificates up by fingerprint. The index took a random key per issued
certificate -- about a tenth of the time of bulk issuance.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# SQLite reflects the constraint without a name: this names it, so batch mode can drop it
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("certificates", naming_convention=_NAMING, recreate="always") as batch_op:
            batch_op.drop_constraint("uq_certificates_fingerprint_sha256", type_="unique")
    else:
        op.drop_constraint("certificates_fingerprint_sha256_key", "certificates", type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("certificates", recreate="always") as batch_op:
            batch_op.create_unique_constraint("uq_certificates_fingerprint_sha256", ["fingerprint_sha256"])
    else:
        op.create_unique_constraint("certificates_fingerprint_sha256_key", "certificates", ["fingerprint_sha256"])
