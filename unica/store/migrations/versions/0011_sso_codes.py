"""OpenID Connect authorization codes (one use, 60 s) and the access tokens they were exchanged for

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("client_id", sa.String(64), nullable=False, index=True),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("nonce", sa.String(255), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("session_id", sa.Integer, nullable=False, index=True),
        sa.Column("auth_time", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.Column("access_token_sha256", sa.String(64), nullable=True, unique=True),
        sa.Column("access_expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sso_codes")
