"""Every table, imported once so `SQLModel.metadata` is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from callcenter.areas.models import Area
from callcenter.audit.models import AuditLog
from callcenter.auth.models import User
from callcenter.calls.models import AgentStatus, CallRecord
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact

metadata = SQLModel.metadata

__all__ = ["AgentStatus", "Area", "AuditLog", "CallRecord", "Elder", "ElderPhone", "EmergencyContact", "User", "metadata"]
