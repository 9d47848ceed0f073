"""console: wrap-up end and notes authorship on calls, web softphone secret on users

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls') as batch:
        batch.add_column(sa.Column('wrapup_ended_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('notes_by', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('notes_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key('fk_calls_notes_by_users', 'users', ['notes_by'], ['id'])
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('sip_secret_sealed', sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('sip_secret_sealed')
    with op.batch_alter_table('calls') as batch:
        batch.drop_constraint('fk_calls_notes_by_users', type_='foreignkey')
        batch.drop_column('notes_at')
        batch.drop_column('notes_by')
        batch.drop_column('wrapup_ended_at')
