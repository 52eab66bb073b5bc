"""index ocsp_responses.produced_at (responders poll it for re-signed responses)

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ocsp_responses_produced_at", "ocsp_responses", ["produced_at"])


def downgrade() -> None:
    op.drop_index("ix_ocsp_responses_produced_at", table_name="ocsp_responses")
