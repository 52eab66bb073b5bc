"""the CA as a service: enterprises, applications and their approvals, revocation requests,
idempotency keys; the enterprise a certificate was issued to

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enterprises",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uscc", sa.String(18), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("legal_rep", sa.String(200), nullable=True),
        sa.Column("office", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "applications",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("enterprise_id", sa.Integer, sa.ForeignKey("enterprises.id"), nullable=False, index=True),
        sa.Column("ca_name", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("csr_der", sa.LargeBinary, nullable=True),
        sa.Column("contact", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("code_salt", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=True),
        sa.Column("code_expires_at", UTCDateTime, nullable=True),
        sa.Column("code_failures", sa.Integer, nullable=False),
        sa.Column("code_released", sa.Boolean, nullable=False),
        sa.Column("status_token_hash", sa.String(64), nullable=True),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("certificates.id"), nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("operators.id"), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "application_approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.String(16), sa.ForeignKey("applications.id"), nullable=False, index=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("application_id", "operator_id", name="uq_application_approvals_app_operator"),
    )
    op.create_table(
        "revocation_requests",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("certificate_id", sa.Integer, sa.ForeignKey("certificates.id"), nullable=False, index=True),
        sa.Column("enterprise_id", sa.Integer, sa.ForeignKey("enterprises.id"), nullable=False, index=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("client", sa.Text, nullable=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False, index=True),
        sa.UniqueConstraint("client", "key", name="uq_idempotency_keys_client_key"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a nullable column with its REFERENCES clause in place: no copy of the
        # certificates table (batch mode would rebuild it to add the constraint)
        op.execute("ALTER TABLE certificates ADD COLUMN enterprise_id INTEGER REFERENCES enterprises (id)")
    else:
        op.add_column("certificates", sa.Column("enterprise_id", sa.Integer, nullable=True))
        op.create_foreign_key("fk_certificates_enterprise", "certificates", "enterprises", ["enterprise_id"], ["id"])
    op.create_index("ix_certificates_enterprise_id", "certificates", ["enterprise_id"])


def downgrade() -> None:
    op.drop_index("ix_certificates_enterprise_id", "certificates")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("certificates", recreate="always") as batch_op:
            batch_op.drop_column("enterprise_id")
    else:
        op.drop_constraint("fk_certificates_enterprise", "certificates", type_="foreignkey")
        op.drop_column("certificates", "enterprise_id")
    for t in ("idempotency_keys", "revocation_requests", "application_approvals", "applications", "enterprises"):
        op.drop_table(t)
