"""source_records: the connected systems' mirror (QuickBooks, kept current by Change Data Capture)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 21:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('source_records',
    sa.Column('system', sa.String(length=80), nullable=False),
    sa.Column('entity', sa.String(length=40), nullable=False),
    sa.Column('record_id', sa.String(length=120), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('system', 'entity', 'record_id', name=op.f('pk_source_records'))
    )


def downgrade() -> None:
    op.drop_table('source_records')
