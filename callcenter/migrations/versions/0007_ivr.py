"""IVR settings edited by supervisors, callers' callback requests, the work-order number counter

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ivr_settings',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('callback_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caller_number', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('caller_e164', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('elder_id', sa.Integer(), nullable=True),
    sa.Column('call_linkedid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('handled_by', sa.Integer(), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ),
    sa.ForeignKeyConstraint(['handled_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('work_order_numbers',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day')
    )
    op.create_index('ix_callback_requests_waiting', 'callback_requests', ['status', 'due_at'], unique=False)
    op.create_index(op.f('ix_callback_requests_caller_e164'), 'callback_requests', ['caller_e164'], unique=False)
    op.create_index(op.f('ix_callback_requests_elder_id'), 'callback_requests', ['elder_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_callback_requests_elder_id'), table_name='callback_requests')
    op.drop_index(op.f('ix_callback_requests_caller_e164'), table_name='callback_requests')
    op.drop_index('ix_callback_requests_waiting', table_name='callback_requests')
    op.drop_table('work_order_numbers')
    op.drop_table('callback_requests')
    op.drop_table('ivr_settings')
