"""audit_log: each row chained to the previous by a hash (connectors/ledger/audit.py); the rows
already there are chained in id order, and the chain's head is kept in meta (audit_head)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:15:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from connectors.ledger.audit import GENESIS, row_hash

    with op.batch_alter_table('audit_log') as batch:
        batch.add_column(sa.Column('prev_hash', sa.String(64), nullable=True))
        batch.add_column(sa.Column('row_hash', sa.String(64), nullable=True))
    log = sa.table('audit_log', sa.column('id', sa.Integer), sa.column('at', sa.DateTime(timezone=True)),
                   sa.column('actor', sa.String), sa.column('action', sa.String), sa.column('entity', sa.String),
                   sa.column('entity_id', sa.String), sa.column('detail', sa.Text),
                   sa.column('prev_hash', sa.String), sa.column('row_hash', sa.String))
    conn = op.get_bind()
    head = GENESIS
    rows = conn.execute(sa.select(log).order_by(log.c.id)).mappings().all()
    for r in rows:
        h = row_hash(head, dict(r))
        conn.execute(log.update().where(log.c.id == r['id']).values(prev_hash=head, row_hash=h))
        head = h
    meta = sa.table('meta', sa.column('key', sa.String), sa.column('value', sa.Text))
    conn.execute(meta.delete().where(meta.c.key == 'audit_head'))
    conn.execute(meta.insert().values(key='audit_head', value=head))


def downgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.drop_column('row_hash')
        batch.drop_column('prev_hash')
    meta = sa.table('meta', sa.column('key', sa.String))
    op.get_bind().execute(meta.delete().where(meta.c.key == 'audit_head'))
