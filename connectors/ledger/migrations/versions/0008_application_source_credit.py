"""payment_applications: the credits the source showed on the invoice when cash was applied, so a
later drop in its balance that a credit note explains is not taken for the payment arriving

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 21:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payment_applications') as batch:
        batch.add_column(sa.Column('source_credit_minor', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('payment_applications') as batch:
        batch.drop_column('source_credit_minor')
