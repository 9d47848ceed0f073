"""Care: indexes for the reports, the wallboard's care tile and the agents' work lists.

- care_attempts (user_id, outcome): `GET /api/care/tasks/mine` first settles the agent's attempts
  with no outcome yet; without it each fetch read the whole attempts table (33 ms at 400 k
  attempts, growing by every care call ever made).
- care_attempts (at): the attempts of a period (reach rate per agent).
- care_tasks (closed_at): care calls done or escalated today (the wallboard tile, read every 5 s)
  and escalations of a period.
- care_tasks (parent_id): the visit each escalation raised (and the foreign key's ON DELETE).

Revision ID: 0014r
Revises: 0013
Create Date: 2026-12-02 16:00:00
"""
from alembic import op


revision = '0014r'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_care_attempts_user_outcome', ['user_id', 'outcome'], unique=False)
        batch_op.create_index('ix_care_attempts_at', ['at'], unique=False)
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_care_tasks_closed', ['closed_at'], unique=False)
        batch_op.create_index('ix_care_tasks_parent', ['parent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_care_tasks_parent')
        batch_op.drop_index('ix_care_tasks_closed')
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_care_attempts_at')
        batch_op.drop_index('ix_care_attempts_user_outcome')
