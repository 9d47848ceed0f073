"""work orders: service catalog (seeded), providers, orders, transition events, SMS outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('providers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('service_types', sa.JSON(), nullable=False),
    sa.Column('coverage', sa.JSON(), nullable=False),
    sa.Column('daily_capacity', sa.Integer(), nullable=False),
    sa.Column('contract_start', sa.Date(), nullable=True),
    sa.Column('contract_end', sa.Date(), nullable=True),
    sa.Column('rating', sa.Numeric(precision=3, scale=2), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('service_types',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('accept_minutes', sa.Integer(), nullable=False),
    sa.Column('arrive_minutes', sa.Integer(), nullable=False),
    sa.Column('complete_minutes', sa.Integer(), nullable=False),
    sa.Column('government_purchased', sa.Boolean(), nullable=False),
    sa.Column('unit_cost', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('work_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('service_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('urgency', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=True),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accept_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('arrive_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('complete_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ),
    sa.ForeignKeyConstraint(['community_id'], ['areas.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], ),
    sa.ForeignKeyConstraint(['service_type'], ['service_types.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    op.create_index(op.f('ix_work_orders_call_id'), 'work_orders', ['call_id'], unique=False)
    op.create_index(op.f('ix_work_orders_elder_id'), 'work_orders', ['elder_id'], unique=False)
    op.create_index(op.f('ix_work_orders_provider_id'), 'work_orders', ['provider_id'], unique=False)
    op.create_index('ix_work_orders_status_created', 'work_orders', ['status', 'created_at'], unique=False)
    op.create_table('work_order_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('from_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('to_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['work_orders.id'], ),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_work_order_events_order_id'), 'work_order_events', ['order_id'], unique=False)
    op.create_index('ix_work_order_events_load', 'work_order_events', ['to_status', 'at', 'provider_id'], unique=False)
    op.create_table('sms_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('to', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['work_orders.id'], ),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_sms_outbox_order_id'), 'sms_outbox', ['order_id'], unique=False)
    op.create_index(op.f('ix_sms_outbox_to'), 'sms_outbox', ['to'], unique=False)

    service_types = sa.table(
        'service_types', sa.column('code', sa.String), sa.column('name', sa.String), sa.column('accept_minutes', sa.Integer),
        sa.column('arrive_minutes', sa.Integer), sa.column('complete_minutes', sa.Integer),
        sa.column('government_purchased', sa.Boolean), sa.column('unit_cost', sa.Numeric), sa.column('active', sa.Boolean))
    # The catalog a city starts from (五助一护 and the rest); SLA minutes from order creation: emergencies are
    # minutes, a meal is hours. Unit costs are placeholders each city replaces with its purchase contract's.
    op.bulk_insert(service_types, [
        dict(code=code, name=name, accept_minutes=accept, arrive_minutes=arrive, complete_minutes=complete,
             government_purchased=gov, unit_cost=cost, active=True)
        for code, name, accept, arrive, complete, gov, cost in (
            ("meal", "助餐", 60, 180, 240, True, 15),
            ("bathing", "助浴", 120, 1440, 1560, True, 60),
            ("cleaning", "助洁", 120, 1440, 1560, True, 50),
            ("emergency", "助急", 5, 30, 240, True, 0),
            ("medical_escort", "助医", 60, 240, 480, True, 80),
            ("nursing", "护理", 120, 1440, 1560, True, 100),
            ("companionship", "精神慰藉", 240, 2880, 2940, False, 0),
            ("repair", "维修", 240, 2880, 3000, False, 0),
            ("consultation", "咨询", 240, 1440, 1440, False, 0),
        )
    ])


def downgrade() -> None:
    op.drop_index(op.f('ix_sms_outbox_to'), table_name='sms_outbox')
    op.drop_index(op.f('ix_sms_outbox_order_id'), table_name='sms_outbox')
    op.drop_table('sms_outbox')
    op.drop_index('ix_work_order_events_load', table_name='work_order_events')
    op.drop_index(op.f('ix_work_order_events_order_id'), table_name='work_order_events')
    op.drop_table('work_order_events')
    op.drop_index('ix_work_orders_status_created', table_name='work_orders')
    op.drop_index(op.f('ix_work_orders_provider_id'), table_name='work_orders')
    op.drop_index(op.f('ix_work_orders_elder_id'), table_name='work_orders')
    op.drop_index(op.f('ix_work_orders_call_id'), table_name='work_orders')
    op.drop_table('work_orders')
    op.drop_table('service_types')
    op.drop_table('providers')
