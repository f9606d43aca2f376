"""Priority (0 high, 1 normal, 2 low) with the index the claim scans in order, and when a hold began.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("1"))
        )
        batch.add_column(sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_notifications_priority_next_attempt_at", ["priority", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_priority_next_attempt_at")
        batch.drop_column("held_since")
        batch.drop_column("priority")
