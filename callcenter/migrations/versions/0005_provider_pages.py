"""provider staff and mobile pages, callbacks, subsidy ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:12:30
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provider_staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('phone')
    )
    with op.batch_alter_table('provider_staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_staff_provider_id'), ['provider_id'], unique=False)

    op.create_table('subsidy_ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('service_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('balance_after', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('overdraw_approved_by', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['work_orders.id'], ),
    sa.ForeignKeyConstraint(['overdraw_approved_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('subsidy_ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subsidy_ledger_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_subsidy_ledger_elder_id'), ['elder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subsidy_ledger_order_id'), ['order_id'], unique=False)

    with op.batch_alter_table('work_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirm_code', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch_op.add_column(sa.Column('confirm_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('service_notes', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('service_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('photo', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('satisfaction', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('callback_comment', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('complaint', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('callback_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('self_paid', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('subsidy_amount', sa.Numeric(precision=10, scale=2), nullable=True))
        batch_op.add_column(sa.Column('overdraw_approved_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_work_orders_callback_by', 'users', ['callback_by'], ['id'])
        batch_op.create_foreign_key('fk_work_orders_overdraw_approved_by', 'users', ['overdraw_approved_by'], ['id'])


    # Every existing provider gets its dispatcher account (its notification phone), which the
    # dispatch SMS's login link signs in.
    connection = op.get_bind()
    taken = {row[0] for row in connection.execute(sa.text("SELECT phone FROM provider_staff"))}
    for provider_id, name, contact, phone in connection.execute(sa.text("SELECT id, name, contact_name, phone FROM providers")).all():
        if phone and phone not in taken:
            connection.execute(sa.text("INSERT INTO provider_staff (provider_id, name, phone, active, created_at) "
                                       "VALUES (:p, :n, :ph, :a, CURRENT_TIMESTAMP)"),
                               {"p": provider_id, "n": (contact or name)[:50], "ph": phone, "a": True})
            taken.add(phone)


def downgrade() -> None:
    with op.batch_alter_table('work_orders', schema=None) as batch_op:
        batch_op.drop_constraint('fk_work_orders_overdraw_approved_by', type_='foreignkey')
        batch_op.drop_constraint('fk_work_orders_callback_by', type_='foreignkey')
        batch_op.drop_column('overdraw_approved_by')
        batch_op.drop_column('subsidy_amount')
        batch_op.drop_column('self_paid')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('callback_by')
        batch_op.drop_column('complaint')
        batch_op.drop_column('callback_comment')
        batch_op.drop_column('satisfaction')
        batch_op.drop_column('photo')
        batch_op.drop_column('service_minutes')
        batch_op.drop_column('service_notes')
        batch_op.drop_column('confirm_failures')
        batch_op.drop_column('confirm_code')
        batch_op.drop_column('completed_at')
        batch_op.drop_column('arrived_at')
        batch_op.drop_column('accepted_at')

    with op.batch_alter_table('subsidy_ledger', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subsidy_ledger_order_id'))
        batch_op.drop_index(batch_op.f('ix_subsidy_ledger_elder_id'))
        batch_op.drop_index(batch_op.f('ix_subsidy_ledger_at'))

    op.drop_table('subsidy_ledger')
    with op.batch_alter_table('provider_staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_staff_provider_id'))

    op.drop_table('provider_staff')
