"""What happens after delivery: the suppression list, each recipient's events, the outgoing events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("event", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_suppressions"),
    )
    op.create_index("ix_suppressions_reason_address", "suppressions", ["reason", "address"])
    op.create_table(
        "recipient_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("notification_id", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bounce", sa.String(8), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recipient_events"),
    )
    op.create_index("ix_recipient_events_notification_id_id", "recipient_events", ["notification_id", "id"])
    op.create_index(
        "ix_recipient_events_recipient_type_occurred_at",
        "recipient_events",
        ["recipient", "type", "occurred_at"],
    )
    op.create_index(
        "ix_recipient_events_source_event_id", "recipient_events", ["source", "event_id"], unique=True
    )
    op.create_table(
        "outgoing_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outgoing_events"),
    )
    op.create_index(
        "ix_outgoing_events_status_next_attempt_at", "outgoing_events", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("outgoing_events")
    op.drop_table("recipient_events")
    op.drop_table("suppressions")
