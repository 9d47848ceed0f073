"""Proactive care: care rules (seeded with a default set a supervisor edits), per-elder overrides,
the computed plans, contacts, care tasks and their attempts, checks, the time bank and the policy.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

# The rules a city starts from (the seeds: regular visits to elders living alone, empty-nest and
# left-behind, monthly at least; closer contact for the disabled, the sick and the poorest).
DEFAULT_RULES = [
    {"name": "独居且失能或高风险", "living_situations": ["lives_alone"], "ability_levels": ["moderate", "severe"],
     "economic_statuses": [], "risk_flags": [], "min_age": None, "call_every_days": 3, "visit_every_days": 7, "risk_level": "3"},
    {"name": "近期出院或心理危机", "living_situations": [], "ability_levels": [], "economic_statuses": [],
     "risk_flags": ["recent_discharge", "mental_crisis"], "min_age": None, "call_every_days": 2, "visit_every_days": 14,
     "risk_level": "3"},
    {"name": "特困、低保独居", "living_situations": ["lives_alone"], "ability_levels": [],
     "economic_statuses": ["extreme_poverty", "minimum_living"], "risk_flags": [], "min_age": None, "call_every_days": 7,
     "visit_every_days": 14, "risk_level": "2"},
    {"name": "独居、空巢、留守老人", "living_situations": ["lives_alone", "empty_nest", "left_behind"], "ability_levels": [],
     "economic_statuses": [], "risk_flags": [], "min_age": None, "call_every_days": 7, "visit_every_days": 30, "risk_level": "2"},
    {"name": "80岁以上高龄老人", "living_situations": [], "ability_levels": [], "economic_statuses": [], "risk_flags": [],
     "min_age": 80, "call_every_days": 14, "visit_every_days": None, "risk_level": "1"},
]


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dial_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.create_table('care_contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'source_id', name='uq_care_contacts_source')
    )
    with op.batch_alter_table('care_contacts', schema=None) as batch_op:
        batch_op.create_index('ix_care_contacts_elder_at', ['elder_id', 'at'], unique=False)

    op.create_table('care_overrides',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('call_every_days', sa.Integer(), nullable=True),
    sa.Column('visit_every_days', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('until', sa.Date(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('care_overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_overrides_elder_id'), ['elder_id'], unique=False)

    op.create_table('care_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('living_situations', sa.JSON(), nullable=False),
    sa.Column('ability_levels', sa.JSON(), nullable=False),
    sa.Column('economic_statuses', sa.JSON(), nullable=False),
    sa.Column('risk_flags', sa.JSON(), nullable=False),
    sa.Column('min_age', sa.Integer(), nullable=True),
    sa.Column('call_every_days', sa.Integer(), nullable=True),
    sa.Column('visit_every_days', sa.Integer(), nullable=True),
    sa.Column('risk_level', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('care_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_rules_position'), ['position'], unique=False)

    op.create_table('care_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_attempts', sa.Integer(), nullable=False),
    sa.Column('retry_after_hours', sa.JSON(), nullable=False),
    sa.Column('visit_deadline_hours', sa.Integer(), nullable=False),
    sa.Column('work_starts', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('work_ends', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('script', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('care_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('risk_level', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('overdue_days', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=True),
    sa.Column('assigned_to', sa.Integer(), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assigned_to'], ['users.id'], ),
    sa.ForeignKeyConstraint(['community_id'], ['areas.id'], ),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['care_tasks.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_care_tasks_assignee', ['assigned_to', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_care_tasks_community_id'), ['community_id'], unique=False)
        batch_op.create_index('ix_care_tasks_elder', ['elder_id', 'status'], unique=False)
        batch_op.create_index('ix_care_tasks_status_due', ['status', 'due_on'], unique=False)

    op.create_table('care_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('linkedid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('talk_seconds', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['task_id'], ['care_tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('linkedid')
    )
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_attempts_task_id'), ['task_id'], unique=False)

    op.create_table('care_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.Column('needs_action', sa.Boolean(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('photo', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('work_order_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['care_tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('care_checks', schema=None) as batch_op:
        batch_op.create_index('ix_care_checks_action', ['needs_action', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_care_checks_elder_id'), ['elder_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_care_checks_task_id'), ['task_id'], unique=False)

    op.create_table('care_plans',
    sa.Column('elder_id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('override_id', sa.Integer(), nullable=True),
    sa.Column('risk_level', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('call_every_days', sa.Integer(), nullable=True),
    sa.Column('visit_every_days', sa.Integer(), nullable=True),
    sa.Column('last_contact_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_visit_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('call_due_on', sa.Date(), nullable=True),
    sa.Column('visit_due_on', sa.Date(), nullable=True),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['elder_id'], ['elders.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['override_id'], ['care_overrides.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rule_id'], ['care_rules.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('elder_id')
    )
    with op.batch_alter_table('care_plans', schema=None) as batch_op:
        batch_op.create_index('ix_care_plans_call_due', ['call_due_on'], unique=False)
        batch_op.create_index('ix_care_plans_visit_due', ['visit_due_on'], unique=False)

    op.create_table('time_bank_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('hours', sa.Numeric(precision=6, scale=2), nullable=False),
    sa.Column('confirmed_by', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['confirmed_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['task_id'], ['care_tasks.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id')
    )
    with op.batch_alter_table('time_bank_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_time_bank_entries_user_id'), ['user_id'], unique=False)
    rules = sa.table("care_rules", sa.column("position", sa.Integer), sa.column("name", sa.String),
                     sa.column("living_situations", sa.JSON), sa.column("ability_levels", sa.JSON),
                     sa.column("economic_statuses", sa.JSON), sa.column("risk_flags", sa.JSON),
                     sa.column("min_age", sa.Integer), sa.column("call_every_days", sa.Integer),
                     sa.column("visit_every_days", sa.Integer), sa.column("risk_level", sa.String),
                     sa.column("active", sa.Boolean), sa.column("updated_at", sa.DateTime(timezone=True)))
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    op.bulk_insert(rules, [dict(rule, position=position, active=True, updated_at=now)
                           for position, rule in enumerate(DEFAULT_RULES, start=1)])


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('dial_status')
    with op.batch_alter_table('time_bank_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_time_bank_entries_user_id'))

    op.drop_table('time_bank_entries')
    with op.batch_alter_table('care_plans', schema=None) as batch_op:
        batch_op.drop_index('ix_care_plans_visit_due')
        batch_op.drop_index('ix_care_plans_call_due')

    op.drop_table('care_plans')
    with op.batch_alter_table('care_checks', schema=None) as batch_op:
        batch_op.drop_index('ix_care_checks_action')
        batch_op.drop_index(batch_op.f('ix_care_checks_task_id'))
        batch_op.drop_index(batch_op.f('ix_care_checks_elder_id'))

    op.drop_table('care_checks')
    with op.batch_alter_table('care_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_attempts_task_id'))

    op.drop_table('care_attempts')
    with op.batch_alter_table('care_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_care_tasks_status_due')
        batch_op.drop_index('ix_care_tasks_elder')
        batch_op.drop_index(batch_op.f('ix_care_tasks_community_id'))
        batch_op.drop_index('ix_care_tasks_assignee')

    op.drop_table('care_tasks')
    op.drop_table('care_settings')
    with op.batch_alter_table('care_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_rules_position'))

    op.drop_table('care_rules')
    with op.batch_alter_table('care_overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_overrides_elder_id'))

    op.drop_table('care_overrides')
    with op.batch_alter_table('care_contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_care_contacts_elder_at')

    op.drop_table('care_contacts')
