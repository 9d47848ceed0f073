"""Accounts carry a scope: users.area_id (a district, street or community; NULL: the whole city).
Existing accounts keep the whole city. users.role widens to 32 characters for the area officials'
roles (district_official …).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 08:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.alter_column('role', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
                           type_=sqlmodel.sql.sqltypes.AutoString(length=32), existing_nullable=False)
        batch.add_column(sa.Column('area_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_users_area_id_areas', 'areas', ['area_id'], ['id'])
        batch.create_index('ix_users_area_id', ['area_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_index('ix_users_area_id')
        batch.drop_constraint('fk_users_area_id_areas', type_='foreignkey')
        batch.drop_column('area_id')
        batch.alter_column('role', existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
                           type_=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=False)
