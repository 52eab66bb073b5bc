"""certificates.released_at (delta CRLs: removeFromCRL); seed the audit chain head row

The head row always exists, so appends only ever lock it (SELECT ... FOR UPDATE) and two
first appends cannot race to insert it.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    head = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("last_id", sa.BigInteger),
                    sa.column("last_hash", sa.String))
    conn = op.get_bind()
    if conn.execute(sa.select(sa.func.count()).select_from(head)).scalar() == 0:
        op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": "0" * 64}])


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("released_at")
