"""outbox: an index on (status, channel), for the rows queued to go and the failed charges

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 02:30:00
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_status_channel', 'outbox', ['status', 'channel'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outbox_status_channel', table_name='outbox')
