"""agent activity log (occupancy), call and activity rollups, report indexes, agents' queues, providers' status reasons

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 03:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_state_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('interface', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('extension', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('activity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('pause_reason', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_agent_state_log_ended', 'agent_state_log', ['ended_at'], unique=False)
    op.create_index('ix_agent_state_log_open', 'agent_state_log', ['interface', 'ended_at'], unique=False)
    op.create_index('ix_work_orders_created', 'work_orders', ['created_at', 'service_type', 'completed_at'], unique=False)
    op.create_table('call_rollup',
    sa.Column('bucket', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('agent', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    *[sa.Column(name, sa.Integer(), nullable=False) for name in ROLLUP_SUMS[:8]],
    sa.Column('longest_wait', sa.Integer(), nullable=True),
    *[sa.Column(name, sa.Integer(), nullable=False) for name in ROLLUP_SUMS[8:]],
    sa.PrimaryKeyConstraint('bucket', 'queue', 'agent')
    )
    op.create_table('agent_activity_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('extension', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('activity', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('seconds', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'extension', 'activity')
    )
    op.create_table('call_rollup_dirty',
    sa.Column('bucket', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket')
    )
    _backfill_call_rollup()
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queues', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('queue_penalty', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False,
                                      server_default=''))


# The tally's sums in column order (stats.service.Tally), as of this revision.
ROLLUP_SUMS = ['offered', 'answered', 'within', 'abandoned', 'short_abandons', 'timeouts', 'abandoned_within',
               'answered_wait', 'handled', 'handle']


def _backfill_call_rollup() -> None:
    """Sum the calls recorded before this revision (T = 15 s), in plain SQL frozen here."""
    if op.get_bind().dialect.name == 'postgresql':
        epoch = 'CAST(FLOOR(EXTRACT(EPOCH FROM {})) AS BIGINT)'
    else:
        epoch = "CAST(strftime('%s', {}) AS INTEGER)"
    queued, wrapped, done = epoch.format('queued_at'), epoch.format('wrapup_ended_at'), epoch.format('agent_done_at')
    answered = 'answered_at IS NOT NULL'
    handled = f'{answered} AND agent_done_at IS NOT NULL'
    wait = 'COALESCE(wait_seconds, 0)'
    wrapup = (f'CASE WHEN wrapup_ended_at IS NOT NULL AND agent_done_at IS NOT NULL AND wrapup_ended_at > agent_done_at '
              f'THEN {wrapped} - {done} ELSE 0 END')

    def count(condition):
        return f'SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)'

    op.execute(f"""
        INSERT INTO call_rollup (bucket, queue, agent, offered, answered, within, abandoned, short_abandons, timeouts,
                                 abandoned_within, answered_wait, longest_wait, handled, handle)
        SELECT {queued} / 3600, COALESCE(queue, ''), COALESCE(agent_extension, ''), COUNT(*), {count(answered)},
               {count(f'{answered} AND {wait} <= 15')}, {count("outcome = 'abandoned'")}, {count("outcome = 'short_abandon'")},
               {count("outcome = 'timeout'")}, {count(f"outcome IN ('abandoned', 'short_abandon') AND {wait} <= 15")},
               SUM(CASE WHEN {answered} THEN {wait} ELSE 0 END), MAX(wait_seconds), {count(handled)},
               SUM(CASE WHEN {handled} THEN COALESCE(talk_seconds, 0) + {wrapup} ELSE 0 END)
        FROM calls WHERE direction = 'inbound' AND queued_at IS NOT NULL
        GROUP BY {queued} / 3600, COALESCE(queue, ''), COALESCE(agent_extension, '')""")


def downgrade() -> None:
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.drop_column('status_reason')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('queue_penalty')
        batch_op.drop_column('queues')
    op.drop_table('call_rollup_dirty')
    op.drop_table('agent_activity_days')
    op.drop_table('call_rollup')
    op.drop_index('ix_work_orders_created', table_name='work_orders')
    op.drop_index('ix_agent_state_log_open', table_name='agent_state_log')
    op.drop_index('ix_agent_state_log_ended', table_name='agent_state_log')
    op.drop_table('agent_state_log')
