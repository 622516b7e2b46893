"""disputes.reason_code and disputes.lines (a partial dispute holds only what it names, with a
reason code from the policy); pauses.kind (`question`: held until a person answers)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('disputes') as batch:
        batch.add_column(sa.Column('reason_code', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('lines', sa.Text(), nullable=True))
    with op.batch_alter_table('pauses') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pauses') as batch:
        batch.drop_column('kind')
    with op.batch_alter_table('disputes') as batch:
        batch.drop_column('lines')
        batch.drop_column('reason_code')
