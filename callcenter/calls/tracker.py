"""The call tracker: AMI events in, call and agent state changes out. Pure: no I/O, no clock.

A call is keyed by Asterisk's Linkedid and lives while any of its channels (Uniqueid) does.
States: ringing → ivr → queued → offered → talking → (wrapup: agent gone, caller still on the
line, e.g. in the survey) → ended. Outcomes: answered, abandoned, short_abandon, timeout (left
the queue unanswered without hanging up), ivr_only, outbound, lost_during_outage, cut_off (the PBX
restarted or stopped before an agent answered; an answered call it cut off stays answered, and
both get hangup_by `pbx`: the recall list).

An outbound call (the console's 回拨, a care call: Originate rings the agent's phone, whose
channel, started in the agents' context, is the call's first and gives its Linkedid; once it
answers, the outbound context Dials the number over the trunk) is `ringing` until the party
called answers. Its `dial_status` is the DialStatus of that Dial's DialEnd (the one whose dialling
channel is the agent's and whose destination is not an agent's phone; Originate's own DialEnd,
which has no dialling channel, is about the agent's phone and is not it), or DIALSTATUS from
VarSet (app_dial sets it a moment before its DialEnd, and alone when no channel could be made:
CHANUNAVAIL); None when the agent's phone never answered (no Dial at all). For an outbound call
`answered_at` is when the party called answered and `talk_seconds` runs from then until either
side left the bridge (the first BridgeLeave: Asterisk hangs up the two channels in either order,
whoever hung up), and `hangup_by` is `agent` or `caller` (the party called, whose number is
`caller_number`). As a real Asterisk 22 reports them: tests/fixtures/ami-traces/ami-trace-care-*.txt.

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
from callcenter.calls.models import AgentActivity, CallState, Outcome

INBOUND_CONTEXTS = frozenset({"from-elders", "from-elders-ivr"})
# Channel variables read from VarSet (the IVR's, and the console's callbacks): Asterisk's event
# filter for the bridge lets these through and drops every other VarSet (ivr/asterisk_config.py).
TRACKED_VARIABLES = ("IVR_ROUTE", "QUEUE_PRIO", "ELDER_ID", "CC_AGENT", "SURVEY_SCORE", "DIALSTATUS")
IVR_CONTEXTS = frozenset({"from-elders-ivr"})
MEMBER_STATUS = {"0": "unknown", "1": "not_in_use", "2": "in_use", "3": "busy", "4": "invalid", "5": "unavailable",
                 "6": "ringing", "7": "ringinuse", "8": "on_hold"}
UNKNOWN_NUMBERS = {"", "<unknown>", "anonymous", "unknown"}
SOFTHANGUP_SHUTDOWN = "4"  # SoftHangupRequest Cause: AST_SOFTHANGUP_SHUTDOWN (core restart / stop)
# Where agents' phones' channels start (pjsip.conf: the agents' endpoints' context): a channel
# from there that the caller's side dials and that answers is an agent's leg.
AGENT_CONTEXTS = frozenset({"agents"})
LEG_ENDS = {"caller": "来电人挂断", "agent": "坐席挂断", "transfer": "转接", "pbx": "系统中断"}
TRANSFER_KINDS = {"agent": "转坐席", "queue": "转队列", "blind": "话机盲转", "attended": "话机咨询转接", "redirect": "转出"}


@dataclass
class Leg:
    """One agent's part of a call: from their phone being connected with the caller until they
    left it (hung up, the caller hung up, or the caller was passed on). A call transferred twice
    has three legs; each agent's talk, wrap-up and figures come from their own legs."""

    channel: str  # the agent's channel (Uniqueid)
    interface: str  # the queue member / endpoint, e.g. PJSIP/8001
    connected_at: datetime
    agent_name: str | None = None
    queue: str | None = None  # None: dialled directly (a transfer to the agent's extension)
    ended_at: datetime | None = None
    talk_seconds: int | None = None
    ended_by: str | None = None  # caller | agent | transfer | pbx (LEG_ENDS)
    transfer: str | None = None  # how the caller was passed on (TRANSFER_KINDS), when ended_by == transfer
    bridge: str | None = None  # the bridge the agent and the caller talk in
    caller_place: tuple[str, str] | None = None  # the caller's (context, exten) on entering that bridge
    wrapup_ended_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.ended_at is None


@dataclass
class Call:
    linkedid: str
    direction: str  # inbound | outbound
    context: str
    started_at: datetime
    state: str = CallState.RINGING
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
    hangup_by: str | None = None  # caller | agent | pbx: how the last agent's leg ended (outbound: who left the talk)
    dial_status: str | None = None  # outbound: how the party called answered the Dial (ANSWER, BUSY, NOANSWER …)
    outage_from: datetime | None = None
    outage_to: datetime | None = None
    cut_off: bool = False  # the PBX itself ended it (a restart or shutdown): call the elder back
    reconciled: bool = False  # rebuilt from Asterisk's own records (calls.records) after an outage
    channels: set[str] = field(default_factory=set)
    legs: list[Leg] = field(default_factory=list)
    seen: set[int] = field(default_factory=set, repr=False)

    def snapshot(self) -> "Call":
        return replace(self, channels=set(self.channels), legs=[replace(leg) for leg in self.legs], seen=set())

    def open_leg(self) -> Leg | None:
        return next((leg for leg in reversed(self.legs) if leg.open), None)

    def leg_of(self, channel: str | None) -> Leg | None:
        return next((leg for leg in self.legs if leg.channel == channel), None) if channel else None


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
    paused_in: dict[str, str | None] = field(default_factory=dict)  # queue → pause reason, as Asterisk keeps it

    def pause(self, queue: str | None, paused: bool, reason: str | None) -> None:
        """Pause is per queue in Asterisk (QueuePause without a queue pauses every one). The
        agent is `paused` when paused in every queue they are in: they take no call at all; paused
        in some only, they still take calls from the others and count as ready."""
        for name in ([queue] if queue else list(self.queues) or [""]):
            if paused:
                self.paused_in[name] = reason
            else:
                self.paused_in.pop(name, None)
        self.derive_pause()

    def derive_pause(self) -> None:
        self.paused_in = {name: why for name, why in self.paused_in.items() if name in self.queues or not self.queues}
        self.paused = bool(self.paused_in) and all(name in self.paused_in for name in (self.queues or {""}))
        self.pause_reason = next((why for why in self.paused_in.values() if why), None) if self.paused else None

    @property
    def paused_queues(self) -> list[str]:
        return sorted(name for name in self.paused_in if name)

    @property
    def state(self) -> str:
        """ready | ringing | in_call | paused | unavailable, as an agent console shows it."""
        if self.status in ("unavailable", "invalid"):
            return AgentActivity.UNAVAILABLE
        if self.paused:
            return AgentActivity.PAUSED
        if self.status in ("ringing", "ringinuse"):
            return AgentActivity.RINGING
        if self.in_call or self.status in ("in_use", "busy", "on_hold"):
            return AgentActivity.IN_CALL
        return AgentActivity.READY


@dataclass(frozen=True)
class Change:
    """What one event changed: `kind` names it (call.started, call.offered, agent.state …)."""

    kind: str
    call: Call | None = None
    agent: AgentState | None = None


class CallTracker:
    def __init__(self, *, short_abandon_seconds: int = 5, inbound_contexts=INBOUND_CONTEXTS, ivr_contexts=IVR_CONTEXTS,
                 agent_contexts=AGENT_CONTEXTS, remember_ended: int = 10000):
        self.short_abandon_seconds = short_abandon_seconds
        self.inbound_contexts = frozenset(inbound_contexts)
        self.ivr_contexts = frozenset(ivr_contexts)
        self.agent_contexts = frozenset(agent_contexts)
        self._agent_channels: set[str] = set()  # live channels of agents' phones (Newchannel in an agent context)
        self.calls: dict[str, Call] = {}
        self.agents: dict[str, AgentState] = {}
        self._channel_call: dict[str, str] = {}  # Uniqueid → Linkedid
        self._ended: OrderedDict[str, None] = OrderedDict()  # recently ended Linkedids, for replays
        self._remember_ended = remember_ended
        self._queue_entries: dict[str, tuple[int, int]] = {}  # Uniqueid → (waited s, priority), last QueueStatus
        self._lost: dict[str, Call] = {}  # closed as lost_during_outage at the last reconnect, until the records say more
        self.booted_at: datetime | None = None  # when Asterisk last started (FullyBooted's Uptime)

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
        self._agent_channels.update(leg.channel for leg in call.legs if leg.open)

    # --- helpers ----------------------------------------------------------------------------

    def _call_for(self, message: Message) -> Call | None:
        """The call a channel belongs to: as we placed it (a channel taken over by an attended
        transfer keeps the Linkedid of the consultation call), else by its Linkedid."""
        linkedid = self._channel_call.get(message.get("Uniqueid", "")) or message.get("Linkedid")
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
        if message.get("Context") in self.agent_contexts:
            self._agent_channels.add(uniqueid)
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
        elif variable == "DIALSTATUS" and value and call.direction == "outbound" and call.dial_status is None:
            # app_dial sets it just before its DialEnd (which then tells when the answer came), and
            # also when the Dial ends without one (CHANUNAVAIL: no channel to the number could be made).
            call.dial_status = value.upper()
            self._set_dialled(call, message.get("Exten"))
        else:
            return []
        return self._changed("call.updated", call)

    def _on_AGIExecStart(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state != CallState.RINGING:
            return []
        call.state, call.ivr_at = CallState.IVR, at
        return self._changed("call.ivr", call)

    def _on_Hangup(self, message: Message, at: datetime) -> list[Change]:
        uniqueid = message.get("Uniqueid", "")
        call = self._call_for(message)
        agent_side = call is not None and self._is_agent_side(call, uniqueid)
        self._agent_channels.discard(uniqueid)
        if call is None or uniqueid not in call.channels:
            return []
        call.channels.discard(uniqueid)
        self._channel_call.pop(uniqueid, None)
        changes: list[Change] = []
        leg, talking = call.leg_of(uniqueid), call.open_leg()
        if self._talking_out(call):  # no BridgeLeave came first (Asterisk's order of the two hang-ups says little)
            changes = self._end_talk_out(call, at, agent_side=agent_side or uniqueid == call.linkedid)
        elif leg is not None and leg.open:  # the agent's phone hung up (a BYE, or AMI Hangup: 挂断)
            changes = self._end_leg(call, leg, at, "pbx" if call.cut_off else "agent")
        elif leg is None and talking is not None and not agent_side:
            changes = self._end_leg(call, talking, at, "pbx" if call.cut_off else "caller")  # the caller's side hung up
        if call.channels:
            return changes
        return changes + self._end(call, at)

    def _is_agent_side(self, call: Call, uniqueid: str) -> bool:
        return uniqueid in self._agent_channels or call.leg_of(uniqueid) is not None

    # --- agent legs ---------------------------------------------------------------------------

    def _start_leg(self, call: Call, *, channel: str, interface: str, at: datetime, name: str | None = None,
                   queue: str | None = None) -> list[Change]:
        """The caller is now talking with this agent. A leg still open is closed first (the
        caller was passed on without our seeing that leg end)."""
        changes: list[Change] = []
        previous = call.open_leg()
        if previous is not None:
            changes += self._end_leg(call, previous, at, "transfer", announce=False)
        call.legs.append(Leg(channel=channel, interface=interface, connected_at=at, agent_name=name, queue=queue))
        self._agent_channels.add(channel)
        call.state, call.agent_interface, call.agent_name = CallState.TALKING, interface, name
        call.agent_done_at = None
        if call.answered_at is None:
            call.answered_at = at
            if call.wait_seconds is None and call.queued_at is not None:
                call.wait_seconds = seconds_between(call.queued_at, at)  # until AgentConnect's HoldTime
        return changes + self._changed("call.answered", call)

    def _end_leg(self, call: Call, leg: Leg, at: datetime, ended_by: str, *, talk: int | None = None,
                 announce: bool = True) -> list[Change]:
        """The agent of `leg` is done with the caller. The call's talk is the sum of its legs'.
        Passed on (ended_by transfer): one more transfer; the caller is not done yet."""
        end_leg(call, leg, at, ended_by, talk=talk)
        gone = self._signed_out_leg_ended(leg.interface, at)
        if ended_by == "transfer":
            return (self._changed("call.transferred", call) if announce else []) + gone
        return (self._changed("call.agent_done", call) if announce else []) + gone

    def _leg_for_queue_event(self, call: Call, message: Message) -> Leg | None:
        """The leg an AgentConnect / AgentComplete is about: by the agent's channel, else the open
        leg of that member. None for app_queue's late AgentComplete of an agent the caller was
        redirected away from (it comes when the caller hangs up, Reason caller, with the later
        agents' talk counted in)."""
        leg = call.leg_of(message.get("DestUniqueid"))
        if leg is not None:
            return leg
        last = call.open_leg() or (call.legs[-1] if call.legs else None)
        return last if last is not None and last.interface == message.get("Interface") else None

    def _on_DialEnd(self, message: Message, at: datetime) -> list[Change]:
        """The caller's side dialled an agent's phone and it answered: a queue's own dial (its
        AgentConnect follows) or the dial of a transfer to an agent's extension. Or, on an outbound
        call, the agent's side dialled the number: its DialStatus is the call's `dial_status`."""
        call = self._call_for(message)
        dest = message.get("DestUniqueid")
        if call is not None and call.direction == "outbound" and message.get("Uniqueid") and dest \
                and not self._is_agent_side(call, dest):
            return self._dialled(call, message, at)
        if (call is None or message.get("DialStatus") != "ANSWER" or not dest or dest not in self._agent_channels
                or call.leg_of(dest) is not None or self._is_agent_side(call, message.get("Uniqueid", ""))
                or not self._first_time(call, message)):
            return []
        previous = call.legs[-1] if call.legs else None
        if previous is not None and previous.ended_by == "transfer" and previous.transfer == "redirect":
            previous.transfer = "agent"  # redirected to an agent's extension
        return self._start_leg(call, channel=dest, interface=interface_of(message.get("DestChannel", "")), at=at)

    # --- outbound calls ----------------------------------------------------------------------

    def _dialled(self, call: Call, message: Message, at: datetime) -> list[Change]:
        """The Dial of the number ended: answered (the talk begins), or busy, not answered, failed,
        cancelled. A Dial that reached several numbers keeps the answer."""
        status = (message.get("DialStatus") or "").upper()
        if not status or call.answered_at is not None or not self._first_time(call, message):
            return []
        call.dial_status = status
        self._set_dialled(call, message.get("DestCallerIDNum") or message.get("DestExten"))
        if status != "ANSWER":
            return self._changed("call.updated", call)
        call.answered_at = call.answered_at or at
        call.state = CallState.TALKING
        return self._changed("call.answered", call)

    @staticmethod
    def _set_dialled(call: Call, number: str | None) -> None:
        number = (number or "").strip()
        if call.caller_number is None and number.lower() not in UNKNOWN_NUMBERS:
            call.caller_number = number

    @staticmethod
    def _talking_out(call: Call) -> bool:
        """An outbound call whose party called answered and whose talk has not ended yet."""
        return call.direction == "outbound" and call.answered_at is not None and call.talk_seconds is None \
            and call.dial_status == "ANSWER"

    def _end_talk_out(self, call: Call, at: datetime, *, agent_side: bool) -> list[Change]:
        """The first of the two sides of an outbound talk left it (`agent_side`: the agent's, whose
        channel began the call): the talk is over."""
        call.talk_seconds = seconds_between(call.answered_at, at)
        call.hangup_by = "pbx" if call.cut_off else "agent" if agent_side else "caller"
        return self._changed("call.updated", call)

    def _on_BridgeEnter(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        leg = call.open_leg() if call is not None else None
        if leg is None:
            return []
        uniqueid, bridge = message.get("Uniqueid"), message.get("BridgeUniqueid")
        if uniqueid == leg.channel:
            leg.bridge = bridge
        elif bridge and bridge == leg.bridge and not self._is_agent_side(call, uniqueid or ""):
            leg.caller_place = (message.get("Context", ""), message.get("Exten", ""))
        return []

    def _on_BridgeLeave(self, message: Message, at: datetime) -> list[Change]:
        """Who left the bridge first ends the leg: the agent (hung up), or the caller: hung up
        (still where it entered the dialplan) or redirected elsewhere (the console's 转接: its
        context or extension changed)."""
        call = self._call_for(message)
        if call is not None and self._talking_out(call) and message.get("Uniqueid") in call.channels:
            uniqueid = message.get("Uniqueid", "")
            return self._end_talk_out(call, at, agent_side=uniqueid == call.linkedid or self._is_agent_side(call, uniqueid))
        leg = call.open_leg() if call is not None else None
        if leg is None or not leg.bridge or message.get("BridgeUniqueid") != leg.bridge:
            return []
        uniqueid = message.get("Uniqueid", "")
        if uniqueid == leg.channel:
            return self._end_leg(call, leg, at, "agent")
        if self._is_agent_side(call, uniqueid):
            return []
        place = (message.get("Context", ""), message.get("Exten", ""))
        moved = leg.caller_place is not None and place != leg.caller_place
        return self._end_leg(call, leg, at, "transfer" if moved else "caller")

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
        leg = call.open_leg()
        if leg is not None:
            self._end_leg(call, leg, at, leg_end_at_close(call, outcome), announce=False)
        close_call(call, at, outcome=outcome, short_abandon_seconds=self.short_abandon_seconds)
        self.calls.pop(call.linkedid, None)
        for uniqueid in list(call.channels):
            self._channel_call.pop(uniqueid, None)
        self._ended[call.linkedid] = None
        while len(self._ended) > self._remember_ended:
            self._ended.popitem(last=False)
        return self._changed("call.ended", call)

    # --- queue ------------------------------------------------------------------------------

    def _on_QueueCallerJoin(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or not self._first_time(call, message):
            return []
        changes: list[Change] = []
        leg = call.open_leg()
        if leg is not None:  # passed on straight into a queue while still with an agent
            changes += self._end_leg(call, leg, at, "transfer", announce=False)
        if call.legs and call.legs[-1].ended_by == "transfer" and call.legs[-1].transfer in (None, "redirect"):
            call.legs[-1].transfer = "queue"
        if call.legs:  # back in a queue after an agent: a new agent will take it
            call.agent_interface = call.agent_name = None
            call.agent_done_at = None
        call.queue = message.get("Queue")
        call.position = _int(message.get("Position"))
        if call.queued_at is None:
            call.queued_at = at
        call.state = CallState.QUEUED
        return changes + self._changed("call.queued", call)

    def _on_AgentCalled(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state == CallState.TALKING or not self._first_time(call, message):
            return []
        call.state = CallState.OFFERED
        call.agent_interface = message.get("Interface")
        call.agent_name = message.get("MemberName")
        call.offered_at = call.offered_at or at
        return self._changed("call.offered", call)

    def _on_AgentRingNoAnswer(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.state == CallState.TALKING or not self._first_time(call, message):
            return []
        call.ring_attempts += 1
        call.state = CallState.QUEUED
        call.rang_interface = message.get("Interface") or call.agent_interface
        call.agent_interface = call.agent_name = None
        return self._changed("call.ring_no_answer", call)

    def _on_AgentConnect(self, message: Message, at: datetime) -> list[Change]:
        """A queue member answered. The first answer sets answered_at and the wait (the KPIs'
        ASA); an answer after a transfer back into a queue starts another leg. The leg may have
        begun a moment before, at the queue's DialEnd: then this names its member and queue."""
        call = self._call_for(message)
        if call is None or not self._first_time(call, message):
            return []
        first = call.answered_at is None
        leg = call.leg_of(message.get("DestUniqueid"))
        if leg is None:
            changes = self._start_leg(call, channel=_leg_channel(message, at),
                                      interface=message.get("Interface", ""), at=at, name=message.get("MemberName"),
                                      queue=message.get("Queue"))
        else:
            leg.agent_name, leg.queue = message.get("MemberName"), message.get("Queue")
            call.agent_interface, call.agent_name = message.get("Interface") or leg.interface, leg.agent_name
            first = first or len(call.legs) == 1
            changes = self._changed("call.updated", call)
        if first and _int(message.get("HoldTime")) is not None:
            call.wait_seconds = _int(message.get("HoldTime"))
        return changes

    def _on_AgentComplete(self, message: Message, at: datetime) -> list[Change]:
        """app_queue's word on a queue leg: who ended it (Reason) and its talk (TalkTime, as
        queue_log has it). A leg that already ended (its BridgeLeave or Hangup came first) keeps
        what it had: app_queue reports a leg hung up from outside (AMI Hangup) or one the caller
        was redirected away from only when the caller hangs up, with later talk counted in."""
        call = self._call_for(message)
        if call is None or not self._first_time(call, message):
            return []
        talk = _int(message.get("TalkTime"))
        if not call.legs and call.answered_at is None:  # AgentConnect was lost (e.g. in an outage): rebuild it
            connected = at - timedelta(seconds=talk or 0)
            self._start_leg(call, channel=_leg_channel(message, connected),
                            interface=message.get("Interface", ""), at=connected, name=message.get("MemberName"),
                            queue=message.get("Queue"))
            call.wait_seconds = _int(message.get("HoldTime"))
        leg = self._leg_for_queue_event(call, message)
        reason = message.get("Reason") or "caller"
        reason = reason if reason in LEG_ENDS else "caller"
        if leg is None:
            return []
        if leg.open:
            return self._end_leg(call, leg, at, reason, talk=talk)
        if leg.ended_by == reason != "transfer" and talk is not None and talk != leg.talk_seconds:
            leg.talk_seconds = talk  # the same end, in queue_log's figures
            call.talk_seconds = sum(item.talk_seconds or 0 for item in call.legs)
            return self._changed("call.updated", call)
        return []

    def _on_QueueCallerAbandon(self, message: Message, at: datetime) -> list[Change]:
        call = self._call_for(message)
        if call is None or call.abandoned_at is not None or not self._first_time(call, message):
            return []
        call.abandoned_at = at
        call.wait_seconds = _int(message.get("HoldTime"))
        short = call.wait_seconds is not None and call.wait_seconds <= self.short_abandon_seconds
        call.outcome = Outcome.SHORT_ABANDON if short else Outcome.ABANDONED
        return self._changed("call.abandoned", call)

    def _on_QueueCallerLeave(self, message: Message, at: datetime) -> list[Change]:
        """Sent just before AgentConnect for every answered call, so it decides nothing by itself:
        a call that left the queue and ends unanswered and not abandoned is a `timeout`."""
        call = self._call_for(message)
        if call is not None and call.left_queue_at is None:
            call.left_queue_at = at
        return []

    def _on_BlindTransfer(self, message: Message, at: datetime) -> list[Change]:
        """An agent's phone transferred the caller blind (SIP REFER, or AMI BlindTransfer): the
        transferer's leg ends as a transfer; wherever the caller goes next starts the next leg."""
        return self._phone_transfer(message, at, "blind", message.get("TransfererUniqueid"))

    def _on_AttendedTransfer(self, message: Message, at: datetime) -> list[Change]:
        """An agent consulted another and handed the caller over. The caller's new agent comes
        from the consultation call: their channel is taken into this call as the next leg."""
        changes = self._phone_transfer(message, at, "attended", message.get("OrigTransfererUniqueid"))
        call = self.calls.get(message.get("TransfereeLinkedid") or message.get("OrigTransfererLinkedid") or "")
        target = message.get("TransferTargetUniqueid")
        if call is None or not changes or not target or call.leg_of(target) is not None:
            return changes
        self._move_channel(target, call)
        return changes + self._start_leg(call, channel=target, interface=interface_of(message.get("TransferTargetChannel", "")),
                                         at=at)

    def _phone_transfer(self, message: Message, at: datetime, kind: str, transferer: str | None) -> list[Change]:
        if (message.get("Result") or "Success") != "Success":
            return []
        linkedid = message.get("TransfereeLinkedid") or message.get("TransfererLinkedid") or message.get("OrigTransfererLinkedid")
        call = self.calls.get(linkedid or "")
        if call is None or not self._first_time(call, message):
            return []
        leg = call.leg_of(transferer) or call.open_leg()
        if leg is None:  # not an agent's leg we know: still a transfer of the call
            call.transfers += 1
            return self._changed("call.transferred", call)
        leg.transfer = kind
        if leg.open:
            return self._end_leg(call, leg, at, "transfer")
        if leg.ended_by == "agent":  # Asterisk reported the agent leaving the bridge first: that was this transfer
            leg.ended_by = call.hangup_by = "transfer"
            call.transfers += 1
            return self._changed("call.transferred", call)
        return []

    def _move_channel(self, uniqueid: str, call: Call) -> None:
        """A channel of another call (the consultation) now belongs to `call`."""
        other = self.calls.get(self._channel_call.get(uniqueid, ""))
        if other is not None and other is not call:
            other.channels.discard(uniqueid)
        call.channels.add(uniqueid)
        self._channel_call[uniqueid] = call.linkedid

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
        before = (agent.state, agent.pause_reason, agent.name, frozenset(agent.queues), tuple(agent.paused_queues))
        queue = values.pop("queue", None)
        paused, reason = values.pop("paused", None), values.pop("pause_reason", None)
        if queue:
            agent.queues.add(queue)
        for key, value in values.items():
            if value is not None:
                setattr(agent, key, value)
        if paused is not None:
            agent.pause(queue, paused, reason)
        after = (agent.state, agent.pause_reason, agent.name, frozenset(agent.queues), tuple(agent.paused_queues))
        if after == before:
            return []
        if agent.since is None or before[0] != after[0] or before[1] != after[1]:
            agent.since = at  # a member first seen already ready is ready since now, not "unknown"
        return [self._agent_changed(agent)]

    @staticmethod
    def _agent_changed(agent: AgentState) -> Change:
        return Change(kind="agent.state", agent=replace(agent, queues=set(agent.queues), paused_in=dict(agent.paused_in)))

    def restore_agent(self, agent: AgentState) -> None:
        """Take back an agent's last known state (from the database) so a restarted bridge keeps
        how long they have been in it: the first snapshot only changes what changed."""
        self.agents[agent.interface] = agent

    def _talking(self, interface: str) -> bool:
        return any((leg := call.open_leg()) is not None and leg.interface == interface for call in self.calls.values())

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
        before = agent.state
        agent.queues.discard(queue)
        agent.paused_in.pop(queue, None)
        if not agent.queues:  # signed out: not paused any more; still busy until the call in hand ends
            agent.paused_in, agent.paused, agent.pause_reason = {}, False, None
            agent.in_call = self._talking(agent.interface)
            if not agent.in_call:
                agent.status = "unavailable"
        else:
            agent.derive_pause()
        if agent.state != before:
            agent.since = at
        return [self._agent_changed(agent)]

    def _signed_out_leg_ended(self, interface: str, at: datetime) -> list[Change]:
        """An agent removed from their queues mid-call was busy until now: now they are gone."""
        agent = self.agents.get(interface)
        if agent is None or agent.queues or not agent.in_call:
            return []
        agent.in_call, agent.status, agent.since = False, "unavailable", at
        return [self._agent_changed(agent)]

    # --- reconciliation after a reconnect ---------------------------------------------------

    def reconcile_queue(self, *, members: list[Message], entries: list[Message], now: datetime) -> list[Change]:
        """From a QueueStatus snapshot: agent states, and queue priorities of waiting calls."""
        changes: list[Change] = []
        self._queue_entries = {entry.get("Uniqueid"): (_int(entry.get("Wait")) or 0, _int(entry.get("Priority")) or 0)
                               for entry in entries}
        listed: dict[str, set[str]] = {}
        for member in members:
            listed.setdefault(member.get("Location", ""), set()).add(member.get("Queue", ""))
        for agent in list(self.agents.values()):  # left queues while we were away (restored from the database)
            for queue in sorted(agent.queues - listed.get(agent.interface, set())):
                changes += self._on_QueueMemberRemoved(Message([["Interface", agent.interface], ["Queue", queue]]), now)
        before = {interface: (agent.state, agent.pause_reason, agent.since) for interface, agent in self.agents.items()}
        for member in members:  # QueueMember rows: Name / Location, not MemberName / Interface
            self._agent_update(
                member.get("Location"), now, name=member.get("Name"), queue=member.get("Queue"),
                status=MEMBER_STATUS.get(member.get("Status", ""), "unknown"), paused=member.get("Paused") == "1",
                pause_reason=member.get("PausedReason") or None, in_call=member.get("InCall") == "1",
            )
        for interface in listed:  # one change per agent, as the whole snapshot leaves them (the bridge
            agent = self.agents.get(interface)  # takes over a wrap-up pause it finds there)
            if agent is None:
                continue
            if interface in before:  # rows in between may have flipped it: unchanged, it keeps its time in state
                state, reason, since = before[interface]
                agent.since = since if (state, reason) == (agent.state, agent.pause_reason) and since else now
            changes.append(self._agent_changed(agent))
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
        restarted = self.pbx_restarted_since(outage_from)
        self._lost = {}
        for call in list(self.calls.values()):
            if call.linkedid not in live:
                call.outage_from, call.outage_to = outage_from, now
                call.cut_off = call.cut_off or restarted  # Asterisk restarted (or crashed) meanwhile: it cut them off
                changes += self._end(call, outage_from or now, outcome=Outcome.LOST_DURING_OUTAGE)
                self._lost[call.linkedid] = call
            else:  # forget channels that hung up while we were away
                call.channels &= {row.get("Uniqueid") for row in live[call.linkedid]}
        for linkedid, rows in live.items():
            if linkedid not in self.calls and linkedid not in self._ended:
                changes += self._adopt(linkedid, rows, self._queue_entries, now)
        return changes

    def pbx_restarted_since(self, moment: datetime | None) -> bool:
        return moment is not None and self.booted_at is not None and self.booted_at > moment

    def _on_FullyBooted(self, message: Message, at: datetime) -> list[Change]:
        """Sent at every AMI login: Asterisk's Uptime tells whether it restarted (or crashed and
        came back) while the bridge was away, which no Shutdown event told us."""
        uptime = _int(message.get("Uptime"))
        if uptime is not None:
            self.booted_at = at - timedelta(seconds=uptime)
        return []

    def reconciled_skip(self) -> set[str]:
        """Calls the records must not replace: still live here, or recorded whole before the outage."""
        return set(self.calls) | (set(self._ended) - set(self._lost))

    def take_reconciled(self, calls: list[Call]) -> list[Change]:
        """Calls rebuilt from Asterisk's own records (calls.records) for an outage window: a call
        closed as lost_during_outage gets its real end, agent and legs (keeping what only the
        live events knew: IVR route, priority, elder, survey); a call never seen is recorded."""
        changes = []
        for call in calls:
            if call.linkedid in self.calls:
                continue
            lost = self._lost.pop(call.linkedid, None)
            if lost is not None:
                for name in ("ivr_route", "priority", "elder_ref", "survey_score", "caller_name", "outage_from", "outage_to",
                             "dial_status"):
                    if getattr(lost, name) is not None and getattr(call, name) in (None, 0):
                        setattr(call, name, getattr(lost, name))
                call.ivr_at = call.ivr_at or lost.ivr_at
                call.queue = call.queue or lost.queue
                if lost.cut_off and not call.cut_off:  # the PBX restarted meanwhile: its hang-ups are not the caller's
                    call.cut_off, call.hangup_by = True, "pbx"
                    if call.direction == "inbound":
                        call.outcome = Outcome.ANSWERED if call.answered_at is not None else Outcome.CUT_OFF
            self._ended[call.linkedid] = None
            changes += self._changed("call.ended", call)
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
            call.state, call.queued_at = CallState.QUEUED, now - timedelta(seconds=wait)
        elif any(row.get("BridgeId") for row in rows):
            call.state = CallState.TALKING  # answered_at stays unknown: AgentComplete will rebuild it
        self.calls[linkedid] = call
        return self._changed("call.started", call)


def interface_of(channel: str) -> str:
    """The endpoint of a channel name: `PJSIP/8001-0000002a` → `PJSIP/8001`."""
    base, _, suffix = channel.rpartition("-")
    return base if base and suffix else channel


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


def _leg_channel(message: Message, connected: datetime) -> str:
    """The agent's channel of a queue leg; app_queue events without DestUniqueid get a stand-in
    unique to the member and moment."""
    return message.get("DestUniqueid") or f"{message.get('Interface')}@{connected.timestamp()}"


def seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) / timedelta(seconds=1)))


def end_leg(call: Call, leg: Leg, at: datetime, ended_by: str | None, *, talk: int | None = None) -> None:
    """The agent of `leg` is done with the caller (live, or rebuilt from Asterisk's records).
    The call's talk is the sum of its legs'. Passed on (ended_by transfer): one more transfer;
    the caller is not done yet."""
    leg.ended_at, leg.ended_by = at, ended_by
    leg.talk_seconds = talk if talk is not None else seconds_between(leg.connected_at, at)
    call.talk_seconds = sum(item.talk_seconds or 0 for item in call.legs)
    call.hangup_by = ended_by
    call.outcome = Outcome.ANSWERED if call.direction == "inbound" else call.outcome
    call.agent_done_at, call.state = at, CallState.WRAPUP  # until the caller reaches the next agent, if any
    if ended_by == "transfer":
        call.transfers += 1
        leg.transfer = leg.transfer or "redirect"


def leg_end_at_close(call: Call, outcome: str | None) -> str | None:
    """How a leg still open when its call ends ended: the PBX cut it off, the caller hung up, or
    not known (an outcome is forced: lost in an outage)."""
    return "pbx" if call.cut_off else "caller" if outcome is None else None


def close_call(call: Call, at: datetime, *, outcome: str | None = None, short_abandon_seconds: int = 5) -> None:
    """The call is over at `at`: its outcome, as the live tracker and Asterisk's records alike
    decide it (`outcome` forces one). Any open leg is closed first (end_leg)."""
    leg = call.open_leg()
    if leg is not None:
        end_leg(call, leg, at, leg_end_at_close(call, outcome))
    call.ended_at = at
    call.state = CallState.ENDED
    call.outcome = outcome or call.outcome or _outcome(call, short_abandon_seconds)
    if call.cut_off:
        call.hangup_by = "pbx"
        if call.direction == "inbound":  # not abandoned, not lost: answered, or cut off before an agent
            call.outcome = Outcome.ANSWERED if call.answered_at is not None else Outcome.CUT_OFF
    if call.talk_seconds is None and call.answered_at is not None:
        call.talk_seconds = max(0, round((at - call.answered_at).total_seconds()))


def _outcome(call: Call, short_abandon_seconds: int) -> str:
    if call.direction == "outbound":
        return Outcome.OUTBOUND
    if call.answered_at is not None:
        return Outcome.ANSWERED
    if call.queued_at is not None and call.left_queue_at is not None and call.abandoned_at is None:
        # Left the queue alive and unanswered (queue timeout, empty queue): not an abandon.
        call.wait_seconds = seconds_between(call.queued_at, call.left_queue_at)
        return Outcome.TIMEOUT
    if call.queued_at is not None:
        # Hung up in the queue without a QueueCallerAbandon (e.g. the caller's leg dropped).
        wait = round((call.ended_at - call.queued_at).total_seconds())
        call.wait_seconds = call.wait_seconds if call.wait_seconds is not None else wait
        return Outcome.SHORT_ABANDON if call.wait_seconds <= short_abandon_seconds else Outcome.ABANDONED
    return Outcome.IVR_ONLY
