"""Calls and agent states as the bridge records them from AMI (DESIGN.md, "Call model")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index, select
from sqlmodel import Field, SQLModel

from callcenter.areas import scope as areas_scope
from callcenter.elders.models import elders_within
from callcenter.timeutil import utcnow
from callcenter.vocabulary import Vocabulary



class CallState(Vocabulary):
    """Where a call is now (DESIGN.md, "Call model")."""

    RINGING = "ringing", "振铃"
    IVR = "ivr", "语音导航"
    QUEUED = "queued", "排队中"
    OFFERED = "offered", "分配坐席"
    TALKING = "talking", "通话中"
    WRAPUP = "wrapup", "坐席已挂机"
    ENDED = "ended", "已结束"


WAITING_STATES = (CallState.QUEUED, CallState.OFFERED)  # a caller in a queue, not yet talking to an agent
WITH_AGENT = (CallState.OFFERED, CallState.TALKING)  # on an agent's console: ringing there, or talking


class Outcome(Vocabulary):
    """How a call ended (DESIGN.md: the KPIs count these)."""

    ANSWERED = "answered", "已接听"
    ABANDONED = "abandoned", "放弃"
    SHORT_ABANDON = "short_abandon", "短时放弃"
    TIMEOUT = "timeout", "排队超时"
    IVR_ONLY = "ivr_only", "仅语音导航"
    OUTBOUND = "outbound", "外呼"
    LOST_DURING_OUTAGE = "lost_during_outage", "中断期间丢失"
    CUT_OFF = "cut_off", "系统中断"


DISPOSITIONS = {"consultation": "咨询", "service_request": "服务申请", "emergency": "紧急求助", "complaint": "投诉",
                "companionship": "精神慰藉", "wrong_number": "打错电话", "other": "其他"}
IVR_ROUTES = {"emergency": "紧急求助", "meal": "助餐", "home_service": "居家服务", "medical": "助医", "agent": "人工服务",
              "high_risk": "高风险老人直通", "callback": "登记回电"}


def _ts(**kwargs):
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kwargs))


class CallRecord(SQLModel, table=True):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_queued_at", "queued_at"),
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_open", "state", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    linkedid: str = Field(max_length=64, unique=True)
    direction: str = Field(max_length=16)
    context: str = Field(default="", max_length=80)
    state: str = Field(max_length=16)
    outcome: str | None = Field(default=None, max_length=24)
    caller_number: str | None = Field(default=None, max_length=40, description="as the trunk delivered it")
    caller_e164: str | None = Field(default=None, max_length=20, index=True)
    caller_name: str | None = Field(default=None, max_length=80)
    elder_id: int | None = Field(default=None, foreign_key="elders.id", index=True)
    elder_candidates: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    queue: str | None = Field(default=None, max_length=80)
    position: int | None = None
    priority: int = 0
    ivr_route: str | None = Field(default=None, max_length=32)
    elder_ref: str | None = Field(default=None, max_length=32, description="ELDER_ID set by the IVR")
    survey_score: int | None = None
    agent_interface: str | None = Field(default=None, max_length=120)
    agent_name: str | None = Field(default=None, max_length=80)
    agent_extension: str | None = Field(default=None, max_length=32, index=True)
    agent_user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    ring_attempts: int = 0
    transfers: int = 0
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ivr_at: datetime | None = _ts()
    queued_at: datetime | None = _ts()
    offered_at: datetime | None = _ts()
    answered_at: datetime | None = _ts()
    abandoned_at: datetime | None = _ts()
    agent_done_at: datetime | None = _ts()
    ended_at: datetime | None = _ts()
    wait_seconds: int | None = None
    talk_seconds: int | None = None
    hangup_by: str | None = Field(default=None, max_length=16)
    # An outbound call: how the dialled party's leg ended (Asterisk's DIALSTATUS: ANSWER, NOANSWER,
    # BUSY, CHANUNAVAIL, CONGESTION, CANCEL); None while not dialled (the agent's phone first).
    dial_status: str | None = Field(default=None, max_length=16)
    outage_from: datetime | None = _ts()
    outage_to: datetime | None = _ts()
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    leg_agents: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False),
                                  description="extensions of every agent who talked with the caller, in order")
    reconciled: bool = Field(default=False, description="recorded or completed from Asterisk's own records after an outage")
    wrapup_ended_at: datetime | None = _ts()
    disposition: str | None = Field(default=None, max_length=32)
    notes: str = Field(default="", max_length=4000)
    notes_by: int | None = Field(default=None, foreign_key="users.id")
    notes_at: datetime | None = _ts()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CallLeg(SQLModel, table=True):
    """One agent's part of a call (tracker.Leg): a call transferred twice has three. Per-agent
    figures (calls talked, talk, wrap-up, transfers) are summed from legs, not from the call."""

    __tablename__ = "call_legs"
    __table_args__ = (Index("ux_call_legs_channel", "call_id", "channel", unique=True),
                      Index("ix_call_legs_agent_connected", "agent_extension", "connected_at"))

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="calls.id", index=True)
    seq: int
    channel: str = Field(max_length=80)
    agent_interface: str = Field(max_length=120)
    agent_extension: str | None = Field(default=None, max_length=32)
    agent_user_id: int | None = Field(default=None, foreign_key="users.id")
    agent_name: str | None = Field(default=None, max_length=80)
    queue: str | None = Field(default=None, max_length=80)
    connected_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = _ts()
    talk_seconds: int | None = None
    ended_by: str | None = Field(default=None, max_length=16)
    transfer: str | None = Field(default=None, max_length=16)
    wrapup_ended_at: datetime | None = _ts()


class AgentStatus(SQLModel, table=True):
    """The last known state of each queue member (an agent's phone interface)."""

    __tablename__ = "agent_states"

    interface: str = Field(primary_key=True, max_length=120)
    name: str | None = Field(default=None, max_length=80)
    extension: str | None = Field(default=None, max_length=32, index=True)
    state: str = Field(max_length=16)
    status: str = Field(max_length=16)
    paused: bool = False
    pause_reason: str | None = Field(default=None, max_length=40)
    queues: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    paused_in: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False),
                            description="queue → pause reason: pause is per queue in Asterisk")
    since: datetime | None = _ts()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class AgentActivity(Vocabulary):
    """What an agent is doing: the state the console and wallboard show (DESIGN.md, "Agent
    state"). The tracker derives it from Asterisk's per-queue membership; `wrapup` is a pause
    the bridge set after a call."""

    READY = "ready", "就绪"
    RINGING = "ringing", "振铃中"
    IN_CALL = "in_call", "通话中"
    WRAPUP = "wrapup", "话后整理"
    PAUSED = "paused", "暂停"
    UNAVAILABLE = "unavailable", "话机离线"


BUSY = (AgentActivity.IN_CALL, AgentActivity.WRAPUP)  # occupancy's numerator …
LOGGED_IN = (AgentActivity.READY, AgentActivity.RINGING, AgentActivity.IN_CALL, AgentActivity.WRAPUP)  # … its denominator


class PauseReason(Vocabulary):
    BREAK = "break", "小休"
    MEAL = "meal", "就餐"
    TRAINING = "training", "培训"
    MEETING = "meeting", "会议"
    WRAPUP = "wrapup", "话后整理"  # set by the bridge after each call
    PHONE_OFFLINE = "phone_offline", "话机离线"  # set by the bridge while the agent's phone is unregistered


CHOSEN_PAUSES = (PauseReason.BREAK, PauseReason.MEAL, PauseReason.TRAINING, PauseReason.MEETING)  # what an agent may pick


class AgentRequest(Vocabulary):
    """What an agent asks for with the console's state buttons."""

    READY = "ready", "就绪"
    PAUSED = "paused", "暂停"
    OFFLINE = "offline", "签出"


class AgentStateLog(SQLModel, table=True):
    """Each stretch of time an agent spent in one activity (ready, ringing, in_call, wrapup,
    paused, unavailable): what occupancy and time-in-state reports are summed from. The open
    stretch has no `ended_at`; the bridge closes it when the next one starts."""

    __tablename__ = "agent_state_log"
    __table_args__ = (Index("ix_agent_state_log_ended", "ended_at"), Index("ix_agent_state_log_open", "interface", "ended_at"))

    id: int | None = Field(default=None, primary_key=True)
    interface: str = Field(max_length=120)
    extension: str | None = Field(default=None, max_length=32)
    activity: str = Field(max_length=16)
    pause_reason: str | None = Field(default=None, max_length=40)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = _ts()


def _callers(session, extension: str) -> list[int]:
    """The elders of the calls open on `extension` (offered to it or talking)."""
    rows = session.execute(select(CallRecord.elder_id).where(CallRecord.agent_extension == extension, CallRecord.state != "ended",
                                                             CallRecord.elder_id.is_not(None)))
    return [elder_id for (elder_id,) in rows]


areas_scope.register(CallRecord, lambda scope: CallRecord.elder_id.in_(elders_within(scope)))
areas_scope.register_callers(_callers)
