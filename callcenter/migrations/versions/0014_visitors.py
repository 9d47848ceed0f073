"""Visitors (巡访员): community workers and volunteers are `users` accounts (role `visitor`, attached
to their community) who sign in by phone: users.phone (E.164, unique) and users.volunteer
(志愿者: their visits earn time-bank hours). A visit's check-in at the door, with the position
the phone's browser gave, is care_visit_checkins.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch.add_column(sa.Column('volunteer', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_unique_constraint('uq_users_phone', ['phone'])
    op.create_table('care_visit_checkins',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('accuracy_m', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['care_tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('task_id')
    )
    with op.batch_alter_table('care_visit_checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_visit_checkins_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('care_visit_checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_visit_checkins_user_id'))
    op.drop_table('care_visit_checkins')
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint('uq_users_phone', type_='unique')
        batch.drop_column('volunteer')
        batch.drop_column('phone')
