"""The API client of each notification: existing ones belong to `default`; Idempotency-Keys are per client.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("client", sa.String(64), nullable=True))
    op.execute("UPDATE notifications SET client = 'default'")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("client", existing_type=sa.String(64), nullable=False)
        batch.drop_index("ix_notifications_idempotency_key")
        batch.create_index(
            "ix_notifications_client_idempotency_key", ["client", "idempotency_key"], unique=True
        )
        batch.create_index("ix_notifications_client_id", ["client", "id"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_client_id")
        batch.drop_index("ix_notifications_client_idempotency_key")
        batch.create_index("ix_notifications_idempotency_key", ["idempotency_key"], unique=True)
        batch.drop_column("client")
