"""Accounts carry a scope: users.area_id (a district, street or community; NULL: the whole city).
Existing accounts keep the whole city.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('area_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_users_area_id_areas', 'areas', ['area_id'], ['id'])
        batch.create_index('ix_users_area_id', ['area_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_index('ix_users_area_id')
        batch.drop_constraint('fk_users_area_id_areas', type_='foreignkey')
        batch.drop_column('area_id')
