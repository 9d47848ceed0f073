"""Per-leg call records (one row per agent who talked with the caller), calls completed from
Asterisk's own records after an outage, agents' pause per queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('call_legs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('agent_interface', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('agent_extension', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('agent_user_id', sa.Integer(), nullable=True),
    sa.Column('agent_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('talk_seconds', sa.Integer(), nullable=True),
    sa.Column('ended_by', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('transfer', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('wrapup_ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ),
    sa.ForeignKeyConstraint(['agent_user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_call_legs_call_id', 'call_legs', ['call_id'], unique=False)
    op.create_index('ux_call_legs_channel', 'call_legs', ['call_id', 'channel'], unique=True)
    op.create_index('ix_call_legs_agent_connected', 'call_legs', ['agent_extension', 'connected_at'], unique=False)
    with op.batch_alter_table('calls') as batch:
        batch.add_column(sa.Column('leg_agents', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('reconciled', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('agent_states') as batch:
        batch.add_column(sa.Column('paused_in', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('agent_states') as batch:
        batch.drop_column('paused_in')
    with op.batch_alter_table('calls') as batch:
        batch.drop_column('reconciled')
        batch.drop_column('leg_agents')
    op.drop_index('ix_call_legs_agent_connected', table_name='call_legs')
    op.drop_index('ux_call_legs_channel', table_name='call_legs')
    op.drop_index('ix_call_legs_call_id', table_name='call_legs')
    op.drop_table('call_legs')
