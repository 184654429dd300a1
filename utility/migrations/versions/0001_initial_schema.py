"""initial schema

Revision ID: 0001
Revises: (none)

Every table of utility/schema.py as of the platform's first cut (issue 15);
the reference head-end's tables keep their names and column order.
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('acks',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('val', sa.BigInteger(), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.Column('tag', sa.Text(), server_default='', nullable=False),
        sa.UniqueConstraint('meter', 'n', 'tag', name=op.f('uq_acks_meter_n_tag'))
    )
    op.create_table('alarms',
        sa.Column('meter', sa.Text(), nullable=True),
        sa.Column('kind', sa.Text(), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alarms'))
    )
    op.create_index(op.f('ix_alarms_meter'), 'alarms', ['meter'])
    op.create_table('arrears',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=True),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('debt', sa.BigInteger(), nullable=True),
        sa.Column('created', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'seq', name=op.f('pk_arrears'))
    )
    op.create_table('audit',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('user', sa.Text(), nullable=False),
        sa.Column('action', sa.Text(), nullable=False),
        sa.Column('target', sa.Text(), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit'))
    )
    op.create_index(op.f('ix_audit_at'), 'audit', ['at'])
    op.create_table('commands',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.Column('op', sa.Text(), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('sent', sa.Float(), nullable=True),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('acked', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'n', name=op.f('pk_commands'))
    )
    op.create_table('events',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('evs', sa.BigInteger(), nullable=True),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('arg', sa.BigInteger(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'seq', name=op.f('pk_events'))
    )
    op.create_index(op.f('ix_events_code_received'), 'events', ['code', 'received'])
    op.create_index(op.f('ix_events_meter_t'), 'events', ['meter', 't'])
    op.create_table('fleet',
        sa.Column('n', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('region', sa.BigInteger(), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('published', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('n', name=op.f('pk_fleet'))
    )
    op.create_table('history',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('al', sa.BigInteger(), nullable=True),
        sa.Column('span', sa.BigInteger(), nullable=True),
        sa.Column('ml', sa.BigInteger(), nullable=True),
        sa.Column('dml', sa.BigInteger(), nullable=True),
        sa.Column('tc', sa.BigInteger(), nullable=True),
        sa.Column('chg', sa.BigInteger(), nullable=True),
        sa.Column('bal', sa.BigInteger(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'kind', 'seq', name=op.f('pk_history'))
    )
    op.create_index(op.f('ix_history_kind_t'), 'history', ['kind', 't'])
    op.create_table('ledger',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('ref', sa.Text(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('recorded', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger')),
        sa.UniqueConstraint('meter', 'source', 'ref', name=op.f('uq_ledger_meter_source_ref'))
    )
    op.create_index(op.f('ix_ledger_meter_recorded'), 'ledger', ['meter', 'recorded'])
    op.create_table('marks',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('reg', sa.Text(), nullable=False),
        sa.Column('hi', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'reg', name=op.f('pk_marks'))
    )
    op.create_table('meters',
        sa.Column('id', sa.Text(), nullable=False),
        sa.Column('region', sa.BigInteger(), nullable=False),
        sa.Column('ctr', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('online', sa.Integer(), nullable=True),
        sa.Column('last_seen', sa.Float(), nullable=True),
        sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=True),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('ml', sa.BigInteger(), nullable=True),
        sa.Column('bal', sa.BigInteger(), nullable=True),
        sa.Column('flow', sa.BigInteger(), nullable=True),
        sa.Column('flags', sa.BigInteger(), nullable=True),
        sa.Column('tv', sa.BigInteger(), nullable=True),
        sa.Column('rssi', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_meters'))
    )
    op.create_index(op.f('ix_meters_region'), 'meters', ['region'])
    op.create_table('payments',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('provider_ref', sa.Text(), nullable=False),
        sa.Column('idempotency_key', sa.Text(), nullable=False),
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('topup_account', sa.BigInteger(), nullable=True),
        sa.Column('topup_seq', sa.BigInteger(), nullable=True),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('updated', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_payments_idempotency_key')),
        sa.UniqueConstraint('meter', 'topup_account', 'topup_seq', name=op.f('uq_payments_meter_topup_account_topup_seq')),
        sa.UniqueConstraint('provider_ref', name=op.f('uq_payments_provider_ref'))
    )
    op.create_table('rollouts',
        sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('board', sa.Text(), nullable=False),
        sa.Column('region', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('grp', sa.Integer(), nullable=True),
        sa.Column('status', sa.Text(), nullable=True),
        sa.Column('sha', sa.Text(), nullable=True),
        sa.Column('started', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('version', 'board', 'region', name=op.f('pk_rollouts'))
    )
    op.create_table('scheduled_tariffs',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('region', sa.BigInteger(), nullable=True),
        sa.Column('meter', sa.Text(), nullable=True),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.Column('body', sa.JSON(), nullable=False),
        sa.Column('due', sa.Float(), nullable=False),
        sa.Column('published', sa.Float(), nullable=True),
        sa.Column('by_user', sa.Text(), nullable=True),
        sa.CheckConstraint('(region IS NULL) <> (meter IS NULL)', name=op.f('ck_scheduled_tariffs_scope')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_tariffs'))
    )
    op.create_index(op.f('ix_scheduled_tariffs_published_due'), 'scheduled_tariffs', ['published', 'due'])
    op.create_table('tariffs',
        sa.Column('scope', sa.Text(), nullable=True),
        sa.Column('version', sa.BigInteger(), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('published', sa.Float(), nullable=True),
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tariffs'))
    )
    op.create_table('telemetry',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.Integer(), nullable=True),
        sa.Column('t', sa.BigInteger(), nullable=True),
        sa.Column('ml', sa.BigInteger(), nullable=True),
        sa.Column('bal', sa.BigInteger(), nullable=True),
        sa.Column('flow', sa.BigInteger(), nullable=True),
        sa.Column('flags', sa.BigInteger(), nullable=True),
        sa.Column('tv', sa.BigInteger(), nullable=True),
        sa.Column('evs', sa.BigInteger(), nullable=True),
        sa.Column('rssi', sa.BigInteger(), nullable=True),
        sa.Column('last_seq', sa.BigInteger(), nullable=True),
        sa.Column('n', sa.BigInteger(), nullable=True),
        sa.Column('t0', sa.BigInteger(), nullable=True),
        sa.Column('ml0', sa.BigInteger(), nullable=True),
        sa.Column('dropped', sa.BigInteger(), nullable=True),
        sa.Column('received', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'seq', name=op.f('pk_telemetry'))
    )
    op.create_index(op.f('ix_telemetry_meter_t'), 'telemetry', ['meter', 't'])
    op.create_table('topups',
        sa.Column('meter', sa.Text(), nullable=False),
        sa.Column('account', sa.BigInteger(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=True),
        sa.Column('status', sa.Text(), nullable=True),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('created', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('meter', 'account', 'seq', name=op.f('pk_topups'))
    )
    op.create_table('users',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('hash', sa.Text(), nullable=False),
        sa.Column('role', sa.Text(), nullable=False),
        sa.Column('created', sa.Float(), nullable=True),
        sa.CheckConstraint("role IN ('operator', 'viewer')", name=op.f('ck_users_role')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )


def downgrade():
    op.drop_table('users')
    op.drop_table('topups')
    op.drop_index(op.f('ix_telemetry_meter_t'), table_name='telemetry')
    op.drop_table('telemetry')
    op.drop_table('tariffs')
    op.drop_index(op.f('ix_scheduled_tariffs_published_due'), table_name='scheduled_tariffs')
    op.drop_table('scheduled_tariffs')
    op.drop_table('rollouts')
    op.drop_table('payments')
    op.drop_index(op.f('ix_meters_region'), table_name='meters')
    op.drop_table('meters')
    op.drop_table('marks')
    op.drop_index(op.f('ix_ledger_meter_recorded'), table_name='ledger')
    op.drop_table('ledger')
    op.drop_index(op.f('ix_history_kind_t'), table_name='history')
    op.drop_table('history')
    op.drop_table('fleet')
    op.drop_index(op.f('ix_events_meter_t'), table_name='events')
    op.drop_index(op.f('ix_events_code_received'), table_name='events')
    op.drop_table('events')
    op.drop_table('commands')
    op.drop_index(op.f('ix_audit_at'), table_name='audit')
    op.drop_table('audit')
    op.drop_table('arrears')
    op.drop_index(op.f('ix_alarms_meter'), table_name='alarms')
    op.drop_table('alarms')
    op.drop_table('acks')
