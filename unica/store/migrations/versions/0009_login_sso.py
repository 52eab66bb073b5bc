"""card login and single sign-on: one-time login challenges, the agency systems registered as
OpenID Connect clients, and the provider's ID-token signing keys

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_challenges",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("nonce_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
        sa.Column("used_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "sso_clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("client_id", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hash", sa.Text, nullable=True),
        sa.Column("redirect_uris", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "sso_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kid", sa.String(64), nullable=False, unique=True),
        sa.Column("key_uri", sa.Text, nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sso_keys")
    op.drop_table("sso_clients")
    op.drop_table("login_challenges")
