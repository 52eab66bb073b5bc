"""index certificates.updated_at (OCSP responders poll it for status changes)

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_certificates_updated_at", "certificates", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_certificates_updated_at", table_name="certificates")
