"""the time-stamping authority: TSA units and the archive of the tokens they issued

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tsa_units",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("ca_name", sa.String(64), nullable=False),
        sa.Column("key_uri", sa.Text, nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("accept_policies", sa.JSON, nullable=False),
        sa.Column("accuracy_ms", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "tsa_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("serial", sa.String(48), nullable=False, index=True),
        sa.Column("unit", sa.String(64), nullable=False, index=True),
        sa.Column("gen_time", UTCDateTime, nullable=False),
        sa.Column("imprint_alg", sa.String(16), nullable=False),
        sa.Column("imprint_hex", sa.String(128), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("nonce", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tsa_tokens")
    op.drop_table("tsa_units")
