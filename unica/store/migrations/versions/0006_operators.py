"""joint operation: operators, RA offices, approval rules and requests, used nonces; the office
that issued a certificate

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("serial", sa.String(42), nullable=False),
        sa.Column("issuer_ca_id", sa.Integer, sa.ForeignKey("cas.id"), nullable=True),
        sa.Column("subject_text", sa.Text, nullable=False),
        sa.Column("spki_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("office", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "offices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("cas", sa.JSON, nullable=False),
        sa.Column("profiles", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "approval_rules",
        sa.Column("operation", sa.String(96), primary_key=True),
        sa.Column("approvals", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(96), nullable=False),
        sa.Column("ca_name", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("requester_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("approval_requests.id"), nullable=False, index=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("signed_at", UTCDateTime, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.UniqueConstraint("request_id", "operator_id", name="uq_approvals_request_operator"),
    )
    op.create_table(
        "operator_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("certificates") as batch_op:
        batch_op.add_column(sa.Column("office", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch_op:
        batch_op.drop_column("office")
    for t in ("operator_nonces", "approvals", "approval_requests", "approval_rules", "offices", "operators"):
        op.drop_table(t)
