"""kpis: invoice register and KPI snapshots

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _id():
    return sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table('invoice_register',
    _id(),
    sa.Column('invoice_id', sa.String(length=120), nullable=False),
    sa.Column('customer_id', sa.String(length=120), nullable=False),
    sa.Column('issue_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('first_seen_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_register')),
    sa.UniqueConstraint('invoice_id', name='uq_invoice_register_invoice_id')
    )
    op.create_index(op.f('ix_invoice_register_customer_id'), 'invoice_register', ['customer_id'], unique=False)
    op.create_index(op.f('ix_invoice_register_issue_date'), 'invoice_register', ['issue_date'], unique=False)
    op.create_table('kpi_snapshots',
    _id(),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('ar_minor', sa.BigInteger(), nullable=False),
    sa.Column('overdue_minor', sa.BigInteger(), nullable=False),
    sa.Column('dso_standard', sa.Float(), nullable=True),
    sa.Column('dso_countback', sa.Float(), nullable=True),
    sa.Column('best_possible_dso', sa.Float(), nullable=True),
    sa.Column('kpis', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kpi_snapshots')),
    sa.UniqueConstraint('as_of', 'currency', name='uq_kpi_snapshots_as_of')
    )
    op.create_index(op.f('ix_kpi_snapshots_as_of'), 'kpi_snapshots', ['as_of'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_kpi_snapshots_as_of'), table_name='kpi_snapshots')
    op.drop_table('kpi_snapshots')
    op.drop_index(op.f('ix_invoice_register_issue_date'), table_name='invoice_register')
    op.drop_index(op.f('ix_invoice_register_customer_id'), table_name='invoice_register')
    op.drop_table('invoice_register')
