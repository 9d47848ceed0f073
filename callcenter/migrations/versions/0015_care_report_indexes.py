"""Care: indexes for the morning's plans, the agents' work lists, the reports and the wallboard's
care tile (measured with scripts/bench/care.py on 1 M elders).

- care_contacts (elder_id, at) becomes (elder_id, at, kind): `compute_plans` takes each elder's
  last contact and last visit from the index alone; with `kind` only in the table it fetched every
  contact's row in elder order (5.6 M random reads: its statement 16 s → 9 s, and growing with
  every contact kept).
- care_attempts (user_id) where the outcome is not known yet: `GET /api/care/tasks/mine` first
  settles the agent's unsettled attempts; without it each fetch read every attempt ever made
  (33 of 45 ms a request at 400 k attempts).
- care_attempts (at): the attempts of a period (reach rate per agent).
- care_tasks (closed_at) where set: care calls done or escalated today (the wallboard tile, read
  every 5 s: a sequential scan of all tasks before) and the escalations of a period; open tasks
  (made and shared each morning) stay out of it.
- care_tasks (parent_id) where set: the visit each escalation raised (and the foreign key's
  ON DELETE SET NULL).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 16:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('care_contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_care_contacts_elder_at')
        batch_op.create_index('ix_care_contacts_elder_at', ['elder_id', 'at', 'kind'], unique=False)
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_care_attempts_unsettled', ['user_id'], unique=False,
                              postgresql_where=sa.text('outcome IS NULL'), sqlite_where=sa.text('outcome IS NULL'))
        batch_op.create_index('ix_care_attempts_at', ['at'], unique=False)
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_care_tasks_closed', ['closed_at'], unique=False,
                              postgresql_where=sa.text('closed_at IS NOT NULL'), sqlite_where=sa.text('closed_at IS NOT NULL'))
        batch_op.create_index('ix_care_tasks_parent', ['parent_id'], unique=False,
                              postgresql_where=sa.text('parent_id IS NOT NULL'), sqlite_where=sa.text('parent_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_care_tasks_parent')
        batch_op.drop_index('ix_care_tasks_closed')
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_care_attempts_at')
        batch_op.drop_index('ix_care_attempts_unsettled')
    with op.batch_alter_table('care_contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_care_contacts_elder_at')
        batch_op.create_index('ix_care_contacts_elder_at', ['elder_id', 'at'], unique=False)
