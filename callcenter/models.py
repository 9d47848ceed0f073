"""Every table, imported once so `SQLModel.metadata` is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from callcenter.areas.models import Area
from callcenter.audit.models import AuditLog
from callcenter.auth.models import AccessToken, User
from callcenter.calls.models import AgentStatus, CallLeg, CallRecord
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact
from callcenter.stats.models import AgentActivityDay, CallRollup, CallRollupDirty

metadata = SQLModel.metadata

__all__ = ["AccessToken", "AgentActivityDay", "AgentStatus", "Area", "AuditLog", "CallLeg", "CallRecord", "CallRollup", "CallRollupDirty", "Elder",
           "ElderPhone", "EmergencyContact", "User", "metadata"]
