"""Retention: what is older than its period is removed, one batch at a time (each batch its own
transaction, so a purge of a year's backlog never holds one long lock). The caller owns each
batch's transaction.

- calls: ended calls that started before the cut-off, with their agent legs; a work order keeps
  its row and loses only the link to the purged call. Figures already summed into the rollups
  (stats) stay.
- recordings: files under RECORDINGS_DIR (Asterisk's MixMonitor folder) last written before the
  cut-off.
- audit log entries. The record of erasures (elder_erasures) is never purged.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, update
from sqlmodel import Session, select

from callcenter.audit.models import AuditLog
from callcenter.calls.models import CallLeg, CallRecord, CallState
from workorders.models import WorkOrder

RECORDING_SUFFIXES = frozenset({".wav", ".gsm", ".mp3", ".ogg", ".sln", ".sln16", ".g722", ".ulaw", ".alaw", ".wav49"})


def purge_calls(*, session: Session, before: datetime, limit: int) -> int:
    """Up to `limit` ended calls that started before `before`; how many were removed."""
    ids = list(session.exec(select(CallRecord.id).where(CallRecord.state == CallState.ENDED, CallRecord.started_at < before)
                            .order_by(CallRecord.id).limit(limit)))
    if not ids:
        return 0
    connection = session.connection()
    connection.execute(update(WorkOrder.__table__).where(WorkOrder.__table__.c.call_id.in_(ids)).values(call_id=None))
    connection.execute(delete(CallLeg.__table__).where(CallLeg.__table__.c.call_id.in_(ids)))
    return connection.execute(delete(CallRecord.__table__).where(CallRecord.__table__.c.id.in_(ids))).rowcount


def purge_audit(*, session: Session, before: datetime, limit: int) -> int:
    """Up to `limit` audit entries written before `before`."""
    ids = list(session.exec(select(AuditLog.id).where(AuditLog.at < before).order_by(AuditLog.id).limit(limit)))
    if not ids:
        return 0
    return session.connection().execute(delete(AuditLog.__table__).where(AuditLog.__table__.c.id.in_(ids))).rowcount


def purge_recordings(*, folder: Path | None, before: datetime, limit: int) -> int:
    """Up to `limit` recordings under `folder` (and its sub-folders) last written before `before`."""
    if folder is None or not folder.is_dir():
        return 0
    cutoff, removed = before.timestamp(), 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.suffix.lower() not in RECORDING_SUFFIXES:
                continue
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile (another worker's purge)
                continue
            if removed >= limit:
                return removed
    return removed
