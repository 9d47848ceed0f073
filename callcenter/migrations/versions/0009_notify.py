"""The notification gateway: the outbox gets a kind, template values, a channel and the state of
its sending (attempts, times, the gateway's message id, the error); each recipient's channel

Messages written before this revision were "sent" by the only gateway there was, the outbox
table itself: they are marked sent, so the new sender does not send them days late.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sms_outbox') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False, server_default=''))
        batch.add_column(sa.Column('params', sa.JSON(), nullable=False, server_default='{}'))
        batch.add_column(sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='sms'))
        batch.add_column(sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('gateway', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default=''))
        batch.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('provider_message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False, server_default=''))
        batch.create_index('ix_sms_outbox_status_next', ['status', 'next_attempt_at'], unique=False)
        batch.create_index('ix_sms_outbox_provider_message_id', ['provider_message_id'], unique=False)
    outbox = sa.table('sms_outbox', sa.column('status'), sa.column('gateway'), sa.column('sent_at'), sa.column('created_at'))
    op.execute(outbox.update().where(outbox.c.status == 'queued').values(status='sent', gateway='outbox', sent_at=outbox.c.created_at))
    op.create_table('notify_recipients',
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('wechat_openid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('phone')
    )


def downgrade() -> None:
    op.drop_table('notify_recipients')
    with op.batch_alter_table('sms_outbox') as batch:
        batch.drop_index('ix_sms_outbox_provider_message_id')
        batch.drop_index('ix_sms_outbox_status_next')
        for column in ('error', 'provider_message_id', 'delivered_at', 'sent_at', 'claimed_at', 'next_attempt_at', 'attempts', 'gateway',
                       'address', 'channel', 'params', 'kind'):
            batch.drop_column(column)
