"""Server-side sign-ins: sessions of hotline users and provider staff, and one-time SMS login
links, each stored as a hash of its random token with an expiry and a revocation time. The
signed session cookies of earlier versions are no longer read: everyone signs in once more.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 08:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('access_tokens',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
                    sa.Column('subject_id', sa.Integer(), nullable=False),
                    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('token_hash'))
    op.create_index('ix_access_tokens_subject', 'access_tokens', ['kind', 'subject_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_access_tokens_subject', table_name='access_tokens')
    op.drop_table('access_tokens')
