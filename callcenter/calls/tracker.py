"""The call tracker: AMI events in, call and agent state changes out. Pure: no I/O, no clock.

A call is keyed by Asterisk's Linkedid and lives while any of its channels (Uniqueid) does.
States: ringing → ivr → queued → offered → talking → (wrapup: agent gone, caller still on the
line, e.g. in the survey) → ended. Outcomes: answered, abandoned, short_abandon, timeout (left
the queue unanswered without hanging up), ivr_only, outbound, lost_during_outage, cut_off (the PBX
restarted or stopped before an agent answered; an answered call it cut off stays answered, and
both get hangup_by `pbx`: the recall list).

Applying the same event twice changes nothing: every call remembers the fingerprints of the
events it has applied, so a replay after a reconnect is safe.

Field traps (../shared/ami-traces/README.md): in QueueCaller*/Agent* events `Priority` is the
dialplan step, the queue priority comes from the QUEUE_PRIO variable or QueueEntry; QueueStatus
rows say Name/Location where queue events say MemberName/Interface.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from callcenter.ami.protocol import Message

INBOUND_CONTEXTS = frozenset({"from-elders", "from-elders-ivr"})
# Channel variables read from VarSet (the IVR's, and the console's callbacks): Asterisk's event
# filter for the bridge lets these through and drops every other VarSet (ivr/asterisk_config.py).
TRACKED_VARIABLES = ("IVR_ROUTE", "QUEUE_PRIO", "ELDER_ID", "CC_AGENT", "SURVEY_SCORE")
IVR_CONTEXTS = frozenset({"from-elders-ivr"})
MEMBER_STATUS = {"0": "unknown", "1": "not_in_use", "2": "in_use", "3": "busy", "4": "invalid", "5": "unavailable",
                 "6": "ringing", "7": "ringinuse", "8": "on_hold"}
UNKNOWN_NUMBERS = {"", "<unknown>", "anonymous", "unknown"}
SOFTHANGUP_SHUTDOWN = "4"  # SoftHangupRequest Cause: AST_SOFTHANGUP_SHUTDOWN (core restart / stop)


@dataclass
class Call:
    linkedid: str
    direction: str  # inbound | outbound
    context: str
    started_at: datetime
    state: str = "ringing"
    outcome: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    queue: str | None = None
    position: int | None = None
    priority: int = 0
    ivr_route: str | None = None
    elder_ref: str | None = None  # ELDER_ID set by the IVR
    survey_score: int | None = None
    agent_interface: str | None = None
    agent_name: str | None = None
    agent_channel: str | None = None  # Uniqueid of the answering agent's leg (AgentConnect's DestUniqueid)
    connected_at: datetime | None = None  # when this agent's leg was connected (answered_at: the first one)
    caller_left: bool = False  # a channel of the caller's side hung up during the talk
    rang_interface: str | None = None  # the agent that last let it ring unanswered (who must drop it)
    ring_attempts: int = 0
    transfers: int = 0
    ivr_at: datetime | None = None
    queued_at: datetime | None = None
    offered_at: datetime | None = None
    answered_at: datetime | None = None
    abandoned_at: datetime | None = None
    agent_done_at: datetime | None = None
    left_queue_at: datetime | None = None
    ended_at: datetime | None = None
    wait_seconds: int | None = None
    talk_seconds: int | None = None
    hangup_by: str | None = None  # caller | agent | transfer
    outage_from: datetime | None = None
    outage_to: datetime | None = None
    cut_off: bool = False  # the PBX itself ended it (a restart or shutdown): call the elder back
    channels: set[str] = field(default_factory=set)
    seen: set[int] = field(default_factory=set, repr=False)

    def snapshot(self) -> "Call":
        return replace(self, channels=set(self.channels), seen=set())


@dataclass
class AgentState:
    interface: str
    name: str | None = None
    status: str = "unknown"
    paused: bool = False
    pause_reason: str | None = None
    in_call: bool = False
    queues: set[str] = field(default_factory=set)
    since: datetime | None = None

    @property
    def state(self) -> str:
        """ready | ringing | in_call | paused | unavailable, as an agent console shows it."""
        if self.status in ("unavailable", "invalid"):
            return "unavailable"
        if self.paused:
            return "paused"
        if self.status in ("ringing", "ringinuse"):
            return "ringing"
        if self.in_call or self.status in ("in_use", "busy", "on_hold"):
            return "in_call"
        return "ready"


@dataclass(frozen=True)
class Change:
    """What one event changed: `kind` names it (call.started, call.offered, agent.state …)."""

    kind: str
    call: Call | None = None
    agent: AgentState | None = None


class CallTracker:
    def __init__(self, *, short_abandon_seconds: int = 5, inbound_contexts=INBOUND_CONTEXTS, ivr_contexts=IVR_CONTEXTS,
                 remember_ended: int = 10000):
        self.short_abandon_seconds = short_abandon_seconds
        self.inbound_contexts = frozenset(inbound_contexts)
        self.ivr_contexts = frozenset(ivr_contexts)
        self.calls: dict[str, Call] = {}
        self.agents: dict[str, AgentState] = {}
        self._channel_call: dict[str, str] = {}  # Uniqueid → Linkedid
        self._ended: OrderedDict[str, None] = OrderedDict()  # recently ended Linkedids, for replays
        self._remember_ended = remember_ended
        self._queue_entries: dict[str, tuple[int, int]] = {}  # Uniqueid → (waited s, priority), last QueueStatus

    @classmethod
    def handled_events(cls) -> list[str]:
        """The AMI events the tracker reads (the rest it ignores)."""
        return sorted(name.removeprefix("_on_") for name in dir(cls) if name.startswith("_on_"))

    # --- entry point ------------------------------------------------------------------------

    def apply(self, message: Message, at: datetime) -> list[Change]:
        """Apply one AMI event received at `at`; returns the changes it caused (often none)."""
        handler = getattr(self, f"_on_{message.event}", None)
        if handler is None:
            return []
        return handler(message, at) or []

    def restore(self, call: Call) -> None:
        """Take back a call that was open when the bridge stopped (from the database)."""
        self.calls[call.linkedid] = call
        for uniqueid in call.channels:
            self._channel_call[uniqueid] = call.linkedid

    # --- helpers ----------------------------------------------------------------------------

    def _call_for(self, message: Message) -> Call | None:
        linkedid = message.get("Linkedid") or self._channel_call.get(message.get("Uniqueid", ""))
        return self.calls.get(linkedid) if linkedid else None

    @staticmethod
    def _first_time(call: Call, message: Message) -> bool:
        """False when this very event was applied to the call before (a replay)."""
        fingerprint = hash(message.raw)
        if fingerprint in call.seen:
            return False
        call.seen.add(fingerprint)
        return True

    def _changed(self, kind: str, call: Call) -> list[Change]:
        return [Change(kind=kind, call=call.snapshot())]

    def _set_caller(self, call: Call, message: Message) -> None:
        number = (message.get("CallerIDNum") or "").strip()
        name = (message.get("CallerIDName") or "").strip()
        if call.direction == "inbound":
            if number.lower() not in UNKNOWN_NUMBERS:
                call.caller_number = number
            if name.lower() not in UNKNOWN_NUMBERS:
                call.caller_name = name
        else:
            # Outbound: the far end is the connected line (the elder being called back).
            number = (message.get("ConnectedLineNum") or "").strip()
            if number.lower() not in UNKNOWN_NUMBERS:
                call.caller_number = number

    # --- channels ---------------------------------------------------------------------------

    def _on_Newchannel(self, message: Message, at: datetime) -> list[Change]:
        uniqueid, linkedid = message.get("Uniqueid"), message.get("Linkedid")
        if not uniqueid or not linkedid or linkedid in self._ended:
            return []
        call = self.calls.get(linkedid)
        if call is None:
            context = message.get("Context", "")
            direction = "inbound" if context in self.inbound_contexts else "outbound"
            call = Call(linkedid=linkedid, direction=direction, context=context, started_at=at)
            self.calls[linkedid] = call
            call.channels.add(uniqueid)
            self._channel_call[uniqueid] = linkedid
            self._first_time(call, message)
            self._set_caller(call, message)
            return self._changed("call.started", call)
        if uniqueid not in call.channels and self._first_time(call, message):
            call.channels.add(uniqueid)
            self._channel_call[uniqueid] = linkedid
        return []

    def _on_NewCallerid(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.answered_at is not None:
            return []
        before = (call.caller_number, call.caller_name)
        if message.get("Context") == call.context:  # the caller's own channels, not the agent legs
            self._set_caller(call, message)
        return self._changed("call.updated", call) if (call.caller_number, call.caller_name) != before else []

    def _on_VarSet(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None:
            return []
        variable, value = message.get("Variable", ""), (message.get("Value") or "").strip()
        if variable == "IVR_ROUTE" and value and value != call.ivr_route:
            call.ivr_route = value
        elif variable == "QUEUE_PRIO" and value.lstrip("-").isdigit() and int(value) != call.priority:
            call.priority = int(value)
        elif variable == "ELDER_ID" and value and value != call.elder_ref:
            call.elder_ref = value
        elif variable == "CC_AGENT" and value.isdigit() and call.direction == "outbound" and call.agent_interface is None:
            call.agent_interface = f"PJSIP/{value}"  # a console callback: whose call it is
        elif variable == "SURVEY_SCORE" and value.isdigit() and 1 <= int(value) <= 5 and call.survey_score != int(value):
            call.survey_score = int(value)
        else:
            return []
        return self._changed("call.updated", call)

    def _on_AGIExecStart(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state != "ringing":
            return []
        call.state, call.ivr_at = "ivr", at
        return self._changed("call.ivr", call)

    def _on_Hangup(self, message: Message, at: datetime) -> list[Change]:
        uniqueid = message.get("Uniqueid", "")
        call = self._call_for(message)
        if call is None or uniqueid not in call.channels:
            return []
        call.channels.discard(uniqueid)
        self._channel_call.pop(uniqueid, None)
        if uniqueid == call.agent_channel:
            changes = self._agent_leg_ended(call, at)
        else:  # the caller's side: the agent's leg hanging up after it is not the agent's doing
            if call.state == "talking" and not call.caller_left:
                call.caller_left, call.hangup_by = True, "caller"
            changes = []
        if call.channels:
            return changes
        return self._end(call, at)

    def _agent_leg_ended(self, call: Call, at: datetime) -> list[Change]:
        """The agent's leg hung up while the caller stays (the survey follows): the talk ends now.
        app_queue reports nothing when that leg is hung up from outside (AMI Hangup, the
        console's 挂断): its AgentComplete comes when the caller hangs up, after the survey, with
        the survey counted as talk and Reason caller. The Hangup of the leg is the truth."""
        if call.state != "talking" or call.agent_done_at is not None or call.caller_left:
            return []  # (the caller left first: AgentComplete says so)
        call.agent_done_at = at
        talk = seconds_between(call.connected_at or call.answered_at or at, at)
        call.talk_seconds = talk if call.talk_seconds is None else call.talk_seconds + talk
        call.hangup_by, call.outcome, call.state = "agent", "answered", "wrapup"
        call.agent_channel = None
        return self._changed("call.agent_done", call)

    # --- the PBX going down -------------------------------------------------------------------

    def _on_SoftHangupRequest(self, message: Message, at: datetime) -> list[Change]:
        """Cause 4 is AST_SOFTHANGUP_SHUTDOWN: Asterisk hangs up every channel to restart or stop.
        Its calls were cut off, not hung up by the caller (nor abandoned in the queue)."""
        call = self._call_for(message)
        if call is not None and message.get("Cause") == SOFTHANGUP_SHUTDOWN:
            call.cut_off = True
        return []

    def _on_Shutdown(self, message: Message, at: datetime) -> list[Change]:
        """`Event: Shutdown` (Restart: True/False): whatever is still up is being cut off."""
        for call in self.calls.values():
            call.cut_off = True
        return []

    def _end(self, call: Call, at: datetime, outcome: str | None = None) -> list[Change]:
        call.ended_at = at
        call.state = "ended"
        call.outcome = outcome or call.outcome or self._outcome(call)
        if call.cut_off:
            call.hangup_by = "pbx"
            if call.direction == "inbound":  # not abandoned, not lost: answered, or cut off before an agent
                call.outcome = "answered" if call.answered_at is not None else "cut_off"
        if call.talk_seconds is None and call.answered_at is not None:
            call.talk_seconds = max(0, round((at - call.answered_at).total_seconds()))
        self.calls.pop(call.linkedid, None)
        for uniqueid in list(call.channels):
            self._channel_call.pop(uniqueid, None)
        self._ended[call.linkedid] = None
        while len(self._ended) > self._remember_ended:
            self._ended.popitem(last=False)
        return self._changed("call.ended", call)

    def _outcome(self, call: Call) -> str:
        if call.direction == "outbound":
            return "outbound"
        if call.answered_at is not None:
            return "answered"
        if call.queued_at is not None and call.left_queue_at is not None and call.abandoned_at is None:
            # Left the queue alive and unanswered (queue timeout, empty queue): not an abandon.
            call.wait_seconds = seconds_between(call.queued_at, call.left_queue_at)
            return "timeout"
        if call.queued_at is not None:
            # Hung up in the queue without a QueueCallerAbandon (e.g. the caller's leg dropped).
            wait = round((call.ended_at - call.queued_at).total_seconds())
            call.wait_seconds = call.wait_seconds if call.wait_seconds is not None else wait
            return "short_abandon" if call.wait_seconds <= self.short_abandon_seconds else "abandoned"
        return "ivr_only"

    # --- queue ------------------------------------------------------------------------------

    def _on_QueueCallerJoin(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or not self._first_time(call, message):
            return []
        if call.agent_done_at is not None:  # transferred back into a queue: a new agent will take it
            call.transfers += 1
            call.agent_interface = call.agent_name = None
            call.agent_done_at = None
        call.queue = message.get("Queue")
        call.position = _int(message.get("Position"))
        if call.queued_at is None:
            call.queued_at = at
        call.state = "queued"
        return self._changed("call.queued", call)

    def _on_AgentCalled(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state == "talking" or not self._first_time(call, message):
            return []
        call.state = "offered"
        call.agent_interface = message.get("Interface")
        call.agent_name = message.get("MemberName")
        call.offered_at = call.offered_at or at
        return self._changed("call.offered", call)

    def _on_AgentRingNoAnswer(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state == "talking" or not self._first_time(call, message):
            return []
        call.ring_attempts += 1
        call.state = "queued"
        call.rang_interface = message.get("Interface") or call.agent_interface
        call.agent_interface = call.agent_name = None
        return self._changed("call.ring_no_answer", call)

    def _on_AgentConnect(self, message: Message, at: datetime) -> list[Change]:
        """The first answer sets answered_at and the wait (the KPIs' ASA); an answer after a
        transfer back into the queue only changes who is talking."""
        call = self._call_for(message)
        if call is None or call.state == "talking" or not self._first_time(call, message):
            return []
        call.state = "talking"
        call.agent_interface = message.get("Interface")
        call.agent_name = message.get("MemberName")
        call.agent_channel = message.get("DestUniqueid") or None
        call.connected_at, call.caller_left = at, False
        if call.answered_at is None:
            call.answered_at = at
            call.wait_seconds = _int(message.get("HoldTime"))
        return self._changed("call.answered", call)

    def _on_AgentComplete(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.agent_done_at is not None or not self._first_time(call, message):
            return []
        call.agent_done_at = at
        call.agent_channel = None
        talk = _int(message.get("TalkTime"))
        call.talk_seconds = talk if call.talk_seconds is None else call.talk_seconds + (talk or 0)  # every leg of a transferred call
        call.hangup_by = message.get("Reason")
        if call.answered_at is None:  # AgentConnect was lost (e.g. in an outage): rebuild it
            call.answered_at = at - timedelta(seconds=call.talk_seconds or 0)
            call.wait_seconds = _int(message.get("HoldTime"))
            call.agent_interface, call.agent_name = message.get("Interface"), message.get("MemberName")
        call.outcome = "answered"
        call.state = "wrapup"
        return self._changed("call.agent_done", call)

    def _on_QueueCallerAbandon(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.abandoned_at is not None or not self._first_time(call, message):
            return []
        call.abandoned_at = at
        call.wait_seconds = _int(message.get("HoldTime"))
        short = call.wait_seconds is not None and call.wait_seconds <= self.short_abandon_seconds
        call.outcome = "short_abandon" if short else "abandoned"
        return self._changed("call.abandoned", call)

    def _on_QueueCallerLeave(self, message: Message, at: datetime) -> list[Change]:
        """Sent just before AgentConnect for every answered call, so it decides nothing by itself:
        a call that left the queue and ends unanswered and not abandoned is a `timeout`."""
        call = self._call_for(message)
        if call is not None and call.left_queue_at is None:
            call.left_queue_at = at
        return []

    def _on_BlindTransfer(self, message: Message, at: datetime) -> list[Change]:
        return self._transfer(message)

    def _on_AttendedTransfer(self, message: Message, at: datetime) -> list[Change]:
        return self._transfer(message)

    def _transfer(self, message: Message) -> list[Change]:
        linkedid = message.get("TransfererLinkedid") or message.get("OrigTransfererLinkedid")
        call = self.calls.get(linkedid or "")
        if call is None or not self._first_time(call, message):
            return []
        call.transfers += 1
        return self._changed("call.transferred", call)

    # --- agents -----------------------------------------------------------------------------

    def _agent(self, interface: str) -> AgentState:
        agent = self.agents.get(interface)
        if agent is None:
            agent = self.agents[interface] = AgentState(interface=interface)
        return agent

    def _agent_update(self, interface: str | None, at: datetime, **values) -> list[Change]:
        if not interface:
            return []
        agent = self._agent(interface)
        before = (agent.state, agent.pause_reason, agent.name, frozenset(agent.queues))
        queue = values.pop("queue", None)
        if queue:
            agent.queues.add(queue)
        for key, value in values.items():
            if value is not None:
                setattr(agent, key, value)
        if not agent.paused:
            agent.pause_reason = None
        after = (agent.state, agent.pause_reason, agent.name, frozenset(agent.queues))
        if after == before:
            return []
        if agent.since is None or before[0] != after[0] or before[1] != after[1]:
            agent.since = at  # a member first seen already ready is ready since now, not "unknown"
        return [Change(kind="agent.state", agent=replace(agent, queues=set(agent.queues)))]

    def _on_QueueMemberStatus(self, message: Message, at: datetime) -> list[Change]:
        return self._agent_update(
            message.get("Interface"), at, name=message.get("MemberName"), queue=message.get("Queue"),
            status=MEMBER_STATUS.get(message.get("Status", ""), "unknown"), paused=message.get("Paused") == "1",
            pause_reason=message.get("PausedReason") or None, in_call=message.get("InCall") == "1",
        )

    def _on_QueueMemberAdded(self, message: Message, at: datetime) -> list[Change]:
        return self._on_QueueMemberStatus(message, at)

    def _on_QueueMemberPause(self, message: Message, at: datetime) -> list[Change]:
        return self._agent_update(message.get("Interface"), at, name=message.get("MemberName"), queue=message.get("Queue"),
                                  paused=message.get("Paused") == "1", pause_reason=message.get("PausedReason") or None)

    def _on_QueueMemberRemoved(self, message: Message, at: datetime) -> list[Change]:
        interface, queue = message.get("Interface"), message.get("Queue")
        agent = self.agents.get(interface or "")
        if agent is None or queue not in agent.queues:
            return []
        agent.queues.discard(queue)
        if not agent.queues:
            agent.status, agent.since = "unavailable", at
        return [Change(kind="agent.state", agent=replace(agent, queues=set(agent.queues)))]

    # --- reconciliation after a reconnect ---------------------------------------------------

    def reconcile_queue(self, *, members: list[Message], entries: list[Message], now: datetime) -> list[Change]:
        """From a QueueStatus snapshot: agent states, and queue priorities of waiting calls."""
        changes: list[Change] = []
        self._queue_entries = {entry.get("Uniqueid"): (_int(entry.get("Wait")) or 0, _int(entry.get("Priority")) or 0)
                               for entry in entries}
        for member in members:  # QueueMember rows: Name / Location, not MemberName / Interface
            changes += self._agent_update(
                member.get("Location"), now, name=member.get("Name"), queue=member.get("Queue"),
                status=MEMBER_STATUS.get(member.get("Status", ""), "unknown"), paused=member.get("Paused") == "1",
                pause_reason=member.get("PausedReason") or None, in_call=member.get("InCall") == "1",
            )
        for entry in entries:  # QueueEntry: here Priority *is* the queue priority
            call = self.calls.get(self._channel_call.get(entry.get("Uniqueid", ""), ""))
            priority = _int(entry.get("Priority"))
            if call is not None and priority is not None and priority != call.priority:
                call.priority = priority
                changes += self._changed("call.updated", call)
        return changes

    def reconcile_channels(self, *, channels: list[Message], outage_from: datetime | None, now: datetime) -> list[Change]:
        """From a CoreShowChannels snapshot after a reconnect: calls Asterisk no longer has
        ended during the outage and are closed as lost_during_outage with its time range; calls
        it still has go on; calls that began while we were away are adopted."""
        changes: list[Change] = []
        live: dict[str, list[Message]] = {}
        for row in channels:
            if row.get("Linkedid"):
                live.setdefault(row["Linkedid"], []).append(row)
        for call in list(self.calls.values()):
            if call.linkedid not in live:
                call.outage_from, call.outage_to = outage_from, now
                changes += self._end(call, outage_from or now, outcome="lost_during_outage")
            else:  # forget channels that hung up while we were away
                call.channels &= {row.get("Uniqueid") for row in live[call.linkedid]}
        for linkedid, rows in live.items():
            if linkedid not in self.calls and linkedid not in self._ended:
                changes += self._adopt(linkedid, rows, self._queue_entries, now)
        return changes

    def _adopt(self, linkedid: str, rows: list[Message], queued: dict[str, tuple[int, int]], now: datetime) -> list[Change]:
        """A call that started while the bridge was disconnected, as the snapshot shows it."""
        first = next((row for row in rows if row.get("Uniqueid") == linkedid), rows[0])
        context = first.get("Context", "")
        started = now - timedelta(seconds=_duration(first.get("Duration")))
        call = Call(linkedid=linkedid, direction="inbound" if context in self.inbound_contexts else "outbound",
                    context=context, started_at=started)
        for row in rows:
            call.channels.add(row["Uniqueid"])
            self._channel_call[row["Uniqueid"]] = linkedid
        self._set_caller(call, first)
        entries = [queued[row["Uniqueid"]] for row in rows if row.get("Uniqueid") in queued]
        if entries:
            wait, call.priority = entries[0]
            call.state, call.queued_at = "queued", now - timedelta(seconds=wait)
        elif any(row.get("BridgeId") for row in rows):
            call.state = "talking"  # answered_at stays unknown: AgentComplete will rebuild it
        self.calls[linkedid] = call
        return self._changed("call.started", call)


def _duration(text: str | None) -> int:
    """CoreShowChannel Duration `HH:MM:SS` in seconds."""
    try:
        hours, minutes, seconds = (int(part) for part in (text or "0:0:0").split(":"))
        return hours * 3600 + minutes * 60 + seconds
    except ValueError:
        return 0


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) / timedelta(seconds=1)))
