"""llm: calls and their cost, the score cache, inbound replies, backtests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _id():
    return sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table('llm_calls',
    _id(),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('job', sa.String(length=20), nullable=False),
    sa.Column('model', sa.String(length=80), nullable=False),
    sa.Column('prompt_version', sa.String(length=40), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cost_micro_usd', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_calls'))
    )
    op.create_index(op.f('ix_llm_calls_run_id'), 'llm_calls', ['run_id'], unique=False)
    op.create_index(op.f('ix_llm_calls_as_of'), 'llm_calls', ['as_of'], unique=False)
    op.create_table('llm_scores',
    _id(),
    sa.Column('invoice_id', sa.String(length=120), nullable=False),
    sa.Column('input_hash', sa.String(length=64), nullable=False),
    sa.Column('prompt_version', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=80), nullable=False),
    sa.Column('risk_score', sa.Integer(), nullable=False),
    sa.Column('tone', sa.String(length=20), nullable=False),
    sa.Column('escalation', sa.String(length=20), nullable=False),
    sa.Column('escalation_reason', sa.Text(), nullable=False),
    sa.Column('rationale', sa.Text(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_scores'))
    )
    op.create_index(op.f('ix_llm_scores_invoice_id'), 'llm_scores', ['invoice_id'], unique=False)
    op.create_index(op.f('ix_llm_scores_input_hash'), 'llm_scores', ['input_hash'], unique=False)
    op.create_table('replies',
    _id(),
    sa.Column('message_id', sa.String(length=300), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('from_address', sa.String(length=300), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.String(length=120), nullable=True),
    sa.Column('invoice_id', sa.String(length=120), nullable=True),
    sa.Column('category', sa.String(length=30), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('classifier', sa.String(length=20), nullable=False),
    sa.Column('flagged', sa.String(length=200), nullable=True),
    sa.Column('effect', sa.Text(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replies')),
    sa.UniqueConstraint('message_id', name='uq_replies_message_id')
    )
    op.create_index(op.f('ix_replies_received_on'), 'replies', ['received_on'], unique=False)
    op.create_index(op.f('ix_replies_customer_id'), 'replies', ['customer_id'], unique=False)
    op.create_table('backtests',
    _id(),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('scorer', sa.String(length=20), nullable=False),
    sa.Column('model', sa.String(length=80), nullable=True),
    sa.Column('prompt_version', sa.String(length=40), nullable=False),
    sa.Column('labels', sa.Text(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('tone_agreement', sa.Float(), nullable=False),
    sa.Column('escalation_agreement', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backtests'))
    )
    op.create_index(op.f('ix_backtests_prompt_version'), 'backtests', ['prompt_version'], unique=False)


def downgrade() -> None:
    op.drop_table('backtests')
    op.drop_table('replies')
    op.drop_table('llm_scores')
    op.drop_table('llm_calls')
