"""The AMI simulator (`callcenter simulate`): a fake Asterisk whose callers and agents behave
like a hotline's, sending events of the same shapes as the recorded traces.

Callers arrive at random (Poisson) at `calls_per_minute`; some go through the IVR: with `agi`
set, a real FastAGI session with our IVR server (`ivr/`), whose channel variables decide the
route and the queue priority, and the survey after an agent hangs up; without it, a share press
9 and get priority 10. All queue on `hotline` (one simulated queue), wait for a free agent who is
neither paused nor busy (highest priority first), or give up after their patience runs out.
Agents answer after a short ring and talk for a random time. The simulator answers the actions
the bridge and the console send: QueueStatus, QueueSummary, CoreShowChannels, BridgeList,
QueuePause, QueueAdd, QueueRemove, Originate, Hangup, Redirect, QueueChangePriorityCaller.
`speed` > 1 runs the clock faster (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from dataclasses import dataclass, field

from callcenter.ami.protocol import Message
from callcenter.calls.control import WRAPUP_GUARD_SECONDS
from callcenter.simulator import agi as agi_peer
from callcenter.simulator.server import AMIServer, Session, encode_message

log = logging.getLogger(__name__)
QUEUE = "hotline"
# What the far end of an outbound call (a callback, a care call) does, by the dialled number's last
# digit, so that tests and the demo meet every outcome while most numbers answer: 7 is busy, 8
# rings until the Dial gives up (OUTBOUND_RING_SECONDS), 9 fails in the network; the rest answer.
# The real-PBX tier's fake carrier (tests/pbx/carrier.py) follows the same rule.
FAR_END_BY_LAST_DIGIT = {"7": "BUSY", "8": "NOANSWER", "9": "CONGESTION"}
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
MEMBER_STATUS = {"free": 1, "busy": 2, "ringing": 6}


@dataclass
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    number: str
    caller_name: str
    state: int = 4
    bridge: str = ""
    connected: str | None = None  # the connected line's number, when not the channel's own


@dataclass
class Member:
    extension: str
    name: str
    paused: bool = False
    reason: str = ""
    status: str = "free"  # free | ringing | busy
    calls_taken: int = 0
    in_queue: bool = True  # in the hotline queue, the one simulated callers join
    other_queues: dict[str, int] = field(default_factory=dict)  # further queues it is a member of → penalty
    penalty: int = 0
    last_call_end: float = -1e9  # monotonic time: queues.conf's wrapuptime counts from it

    @property
    def interface(self) -> str:
        """As the generated queues.conf has agents: their phone's PJSIP endpoint."""
        return f"PJSIP/{self.extension}"

    def member_of(self, queue: str) -> bool:
        return self.in_queue if queue == QUEUE else queue in self.other_queues


@dataclass
class Caller:
    linkedid: str
    number: str
    name: str
    channels: list[Channel]
    priority: int = 0
    joined: float = 0.0
    connected: asyncio.Future | None = None
    legs: list[Channel] = field(default_factory=list)
    finished: asyncio.Future | None = None  # set to who ended the talk early: agent | caller | transfer
    requeue: tuple[str, str] | None = None  # redirected back into the queue: (context, exten) it now runs in


@dataclass
class Outbound:
    """A call placed from an agent's phone (Originate): the agent's channel, then the trunk's."""

    agent: Channel
    member: Member | None
    finished: asyncio.Future  # set to who ended it early: agent | caller
    far: Channel | None = None


@dataclass
class TrafficMix:
    calls_per_minute: float = 6.0
    ivr_share: float = 0.3  # of callers, go through the IVR
    emergency_share: float = 0.15  # of IVR callers, press 9
    patience_seconds: tuple[float, float] = (5.0, 90.0)  # how long callers wait before hanging up
    ring_seconds: tuple[float, float] = (1.0, 4.0)
    talk_seconds: tuple[float, float] = (20.0, 240.0)
    outbound_talk_seconds: tuple[float, float] = (30.0, 180.0)  # a callback or care call answered, until the elder hangs up
    survey_share: float = 0.5
    unknown_share: float = 0.2  # callers whose number is in no profile


class Simulator(AMIServer):
    def __init__(self, *, username: str, secret: str, host: str = "127.0.0.1", port: int = 5038,
                 agents: list[tuple[str, str]], callers: list[tuple[str, str]] | None = None, mix: TrafficMix | None = None,
                 speed: float = 1.0, seed: int | None = None, start_in_queue: bool = True,
                 agi: tuple[str, int] | None = None, wrapuptime: float = 2.0, outbound_ring_seconds: float = 40.0):
        super().__init__(username=username, secret=secret, host=host, port=port)
        self.outbound_ring_seconds = outbound_ring_seconds  # OUTBOUND_RING_SECONDS: the outbound Dial's timeout
        self.wrapuptime = wrapuptime  # queues.conf's (calls.control.WRAPUP_GUARD_SECONDS): no call this soon after the last
        self.agi = agi  # (host, port) of the FastAGI server the IVR calls go to; None: IVR simulated here
        self.members = {m.interface: m for m in (Member(extension=ext, name=name, in_queue=start_in_queue) for ext, name in agents)}
        self.callers_pool = callers or []
        self.mix = mix or TrafficMix()
        self.speed = speed
        self.rng = random.Random(seed)
        self.waiting: list[Caller] = []
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Caller] = {}
        self.outbound: dict[str, Outbound] = {}  # Linkedid → a call placed from an agent's phone
        self._epoch = int(time.time())
        self._ids = itertools.count()
        self._locals = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._dispatch = asyncio.Event()
        self.stats = {"calls": 0, "answered": 0, "abandoned": 0, "outbound": 0, "events": 0}

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, calls: int | None = None) -> None:
        """Serve AMI and generate traffic (`calls` of them, or forever)."""
        if self.port is None:
            await self.start()
        dispatcher = asyncio.create_task(self._dispatcher())
        try:
            for _ in itertools.count() if calls is None else range(calls):
                await self.sleep(self.rng.expovariate(self.mix.calls_per_minute / 60.0))
                self._spawn(self.inbound_call())
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            dispatcher.cancel()

    async def serve(self) -> None:
        """Serve AMI and answer calls placed with `inbound_call`, generating no traffic of its own."""
        if self.port is None:
            await self.start()
        await self._dispatcher()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _uniqueid(self) -> str:
        return f"{self._epoch}.{next(self._ids)}"

    # --- events -----------------------------------------------------------------------------

    def emit(self, event: str, channel: Channel | None = None, **fields) -> None:
        # Timestamp: as Asterisk with `timestampevents = yes` (the generated manager.conf) sends it.
        pairs: list[tuple[str, object]] = [("Event", event), ("Privilege", "call,all"), ("Timestamp", f"{time.time():.6f}")]
        if channel is not None:
            pairs += self._channel_fields(channel)
        pairs += list(fields.items())
        self.stats["events"] += 1
        self.broadcast(encode_message(pairs))

    @staticmethod
    def _channel_fields(channel: Channel, prefix: str = "") -> list[tuple[str, object]]:
        return [(f"{prefix}Channel", channel.name), (f"{prefix}ChannelState", channel.state),
                (f"{prefix}ChannelStateDesc", STATE_DESC.get(channel.state, "Up")), (f"{prefix}CallerIDNum", channel.number),
                (f"{prefix}CallerIDName", channel.caller_name),
                (f"{prefix}ConnectedLineNum", channel.number if channel.connected is None else channel.connected),
                (f"{prefix}ConnectedLineName", channel.caller_name), (f"{prefix}Language", "zh"), (f"{prefix}AccountCode", ""),
                (f"{prefix}Context", channel.context), (f"{prefix}Exten", channel.exten), (f"{prefix}Priority", 1),
                (f"{prefix}Uniqueid", channel.uniqueid), (f"{prefix}Linkedid", channel.linkedid)]

    def _local_pair(self, exten: str, context: str, linkedid: str | None, number: str, name: str) -> list[Channel]:
        serial = f"{next(self._locals):08x}"
        first = self._uniqueid()
        linkedid = linkedid or first
        pair = [Channel(f"Local/{exten}@{context}-{serial};1", first, linkedid, context, exten, number, name),
                Channel(f"Local/{exten}@{context}-{serial};2", self._uniqueid(), linkedid, context, exten, number, name)]
        for channel in pair:
            self.channels[channel.uniqueid] = channel
            self.emit("Newchannel", channel)
        return pair

    def _phone_leg(self, endpoint: str, context: str, exten: str, linkedid: str | None, number: str, name: str) -> Channel:
        """A PJSIP channel (`PJSIP/8001-0000000a`), as Asterisk names a call to or from a phone."""
        uniqueid = self._uniqueid()
        channel = Channel(f"PJSIP/{endpoint}-{next(self._locals):08x}", uniqueid, linkedid or uniqueid, context, exten, number, name)
        self.channels[channel.uniqueid] = channel
        self.emit("Newchannel", channel)
        return channel

    def _hangup(self, channels: list[Channel], cause: int = 16) -> None:
        for channel in channels:
            if self.channels.pop(channel.uniqueid, None) is not None:
                self.emit("Hangup", channel, Cause=cause, **{"Cause-txt": "Normal Clearing"})

    def _member_status(self, member: Member) -> None:
        self.emit("QueueMemberStatus", None, Queue=QUEUE, MemberName=member.name, Interface=member.interface,
                  StateInterface=member.interface, Membership="static", Penalty=0, CallsTaken=member.calls_taken,
                  InCall=1 if member.status == "busy" else 0, Status=MEMBER_STATUS[member.status],
                  Paused=1 if member.paused else 0, PausedReason=member.reason, Ringinuse=0, Wrapuptime=0)

    # --- callers ----------------------------------------------------------------------------

    def _pick_caller(self) -> tuple[str, str]:
        if self.callers_pool and self.rng.random() >= self.mix.unknown_share:
            return self.rng.choice(self.callers_pool)
        return f"1{self.rng.choice('358')}{self.rng.randrange(10**9):09d}", ""

    async def inbound_call(self, *, number: str | None = None, name: str = "", ivr: bool | None = None) -> None:
        """One caller (a random one, or `number`) from dialling 12349 to hanging up."""
        if number is None:
            number, name = self._pick_caller()
        ivr = self.rng.random() < self.mix.ivr_share if ivr is None else ivr
        context = "from-elders-ivr" if ivr else "from-elders"
        pair = self._local_pair("12349", context, None, "<unknown>", "<unknown>")
        caller = Caller(linkedid=pair[0].linkedid, number=number, name=name or "", channels=pair)
        self.calls[caller.linkedid] = caller
        self.stats["calls"] += 1
        for channel in pair:
            channel.number, channel.caller_name = number, "<unknown>"
            self.emit("NewCallerid", channel, **{"CID-CallingPres": "0 (Presentation Allowed, Not Screened)"})
        for channel in pair:
            channel.state = 6
        agent_side = pair[1]
        if ivr and self.agi:
            if not await self._ivr_over_agi(caller, agent_side):
                self.calls.pop(caller.linkedid, None)
                return
        elif ivr:
            await self._ivr(caller, agent_side)
        await self.sleep(0.5)
        await self._queue(caller, agent_side)
        self.calls.pop(caller.linkedid, None)

    async def _ivr(self, caller: Caller, channel: Channel) -> None:
        self.emit("AGIExecStart", channel, Command="ANSWER", CommandId=1)
        await self.sleep(self.rng.uniform(2, 6))
        emergency = self.rng.random() < self.mix.emergency_share
        route, priority = ("emergency", 10) if emergency else (self.rng.choice(["meal", "home_service", "medical", "agent"]), 0)
        for variable, value in (("IVR_ROUTE", route), ("QUEUE_PRIO", priority)):
            self.emit("VarSet", channel, Variable=variable, Value=value)
        if caller.name:
            for ch in caller.channels:
                ch.caller_name = caller.name
                self.emit("NewCallerid", ch, **{"CID-CallingPres": "0 (Presentation Allowed, Not Screened)"})
        caller.priority = priority

    async def _ivr_over_agi(self, caller: Caller, channel: Channel) -> bool:
        """The dialplan's AGI(agi://…/ivr): the caller listens and presses a key (or nothing);
        False when the call ends in the IVR (a callback request)."""
        self.emit("AGIExecStart", channel, Command="ANSWER", CommandId=1)
        await self.sleep(self.rng.uniform(2, 6))
        emergency = self.rng.random() < self.mix.emergency_share
        presses = ["9"] if emergency else [self.rng.choice(["1", "2", "3", "0", None, None])]
        call = await self._agi_session("ivr", caller, channel, agi_peer.keys_from(presses))
        if call is None:
            return True  # the AGI server did not answer: the dialplan goes on to the queue
        caller.priority = int(call.variables.get("QUEUE_PRIO") or 0)
        if call.variables.get("IVR_ROUTE") == "callback":
            self._hangup(list(reversed(caller.channels)))
            return False
        return True

    async def _agi_session(self, script: str, caller: Caller, channel: Channel, keys, **channel_vars) -> agi_peer.AgiCall | None:
        env = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://{self.agi[0]}:{self.agi[1]}/{script}",
               "agi_channel": channel.name, "agi_language": "zh", "agi_type": "Local", "agi_uniqueid": channel.uniqueid,
               "agi_callerid": caller.number, "agi_calleridname": caller.name or "unknown", "agi_context": channel.context,
               "agi_extension": "12349", "agi_priority": "5"}

        def on_set(name: str, value: str) -> None:
            if name == "CALLERID(name)":  # a function, not a variable: Asterisk reports NewCallerid
                for ch in caller.channels:
                    ch.caller_name = value
                    self.emit("NewCallerid", ch, **{"CID-CallingPres": "0 (Presentation Allowed, Not Screened)"})
            else:
                self.emit("VarSet", channel, Variable=name, Value=value)

        try:
            return await agi_peer.run_session(*self.agi, env, keys=keys, on_set=on_set,
                                              channel={"CHANNEL(linkedid)": caller.linkedid, **channel_vars})
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("simulated call %s: FastAGI server unreachable (%s)", caller.linkedid, type(exc).__name__)
            return None

    async def _queue(self, caller: Caller, channel: Channel) -> None:
        caller.joined = time.monotonic()
        caller.connected = asyncio.get_running_loop().create_future()
        self.waiting.append(caller)
        self.emit("QueueCallerJoin", channel, Queue=QUEUE, Position=len(self.waiting), Count=len(self.waiting))
        self._dispatch.set()
        patience = self.rng.uniform(*self.mix.patience_seconds)
        try:
            member = await asyncio.wait_for(asyncio.shield(caller.connected), patience / self.speed)
        except asyncio.TimeoutError:
            if caller.connected.done():  # answered at the very last moment
                member = caller.connected.result()
            else:
                self._abandon(caller, channel)
                return
        if member is None:  # hung up by an action while waiting
            return
        await self._talk(caller, channel, member)

    def _waited(self, caller: Caller) -> int:
        return round((time.monotonic() - caller.joined) * self.speed)

    def _abandon(self, caller: Caller, channel: Channel) -> None:
        if caller in self.waiting:
            position = self.waiting.index(caller) + 1
            self.waiting.remove(caller)
        else:
            position = 1
        caller.connected.cancel()
        self.stats["abandoned"] += 1
        self.emit("QueueCallerAbandon", channel, Queue=QUEUE, Position=position, OriginalPosition=position, HoldTime=self._waited(caller))
        self.emit("QueueCallerLeave", channel, Queue=QUEUE, Count=len(self.waiting), Position=position)
        self._hangup(list(reversed(caller.channels)))

    async def _dispatcher(self) -> None:
        """Hands the waiting caller with the highest priority to a free, unpaused agent."""
        while True:
            await self._dispatch.wait()
            self._dispatch.clear()
            while self.waiting:
                now = time.monotonic()
                free = [m for m in self.members.values() if m.in_queue and not m.paused and m.status == "free"
                        and now - m.last_call_end >= self.wrapuptime / self.speed]
                if not free:
                    break
                caller = max(self.waiting, key=lambda c: (c.priority, -c.joined))
                self.waiting.remove(caller)
                member = min(free, key=lambda m: m.calls_taken)
                member.status = "ringing"
                self._spawn(self._ring(caller, member))

    async def _ring(self, caller: Caller, member: Member) -> None:
        channel = caller.channels[1]
        legs = [self._phone_leg(member.extension, "agents", member.extension, caller.linkedid, caller.number, caller.name or "")]
        dest = self._channel_fields(legs[0], prefix="Dest")
        self.emit("AgentCalled", channel, **dict(dest), Queue=QUEUE, Interface=member.interface, MemberName=member.name)
        self._member_status(member)
        await self.sleep(self.rng.uniform(*self.mix.ring_seconds))
        if caller.connected is None or caller.connected.done():  # the caller gave up while it rang
            member.status = "free"
            self.emit("AgentRingNoAnswer", channel, **dict(dest), Queue=QUEUE, Interface=member.interface,
                      MemberName=member.name, RingTime=1)
            self._hangup(legs)
            self._member_status(member)
            self._dispatch.set()
            return
        member.status = "busy"
        caller.legs = legs
        caller.connected.set_result(member)
        self.emit("QueueCallerLeave", channel, Queue=QUEUE, Count=len(self.waiting), Position=1)
        for leg in legs:
            leg.state = 6
        self.emit("AgentConnect", channel, **dict(self._channel_fields(legs[0], prefix="Dest")), Queue=QUEUE,
                  Interface=member.interface, MemberName=member.name, HoldTime=self._waited(caller), RingTime=1)
        self._member_status(member)

    async def _talk(self, caller: Caller, channel: Channel, member: Member) -> None:
        self.stats["answered"] += 1
        started = time.monotonic()
        caller.finished = asyncio.get_running_loop().create_future()
        try:
            reason = await asyncio.wait_for(asyncio.shield(caller.finished), self.rng.uniform(*self.mix.talk_seconds) / self.speed)
        except asyncio.TimeoutError:
            reason = self.rng.choice(["agent", "caller"])
        legs = caller.legs
        talk = round((time.monotonic() - started) * self.speed)
        self.emit("AgentComplete", channel, **(dict(self._channel_fields(legs[0], prefix="Dest")) if legs else {}), Queue=QUEUE,
                  Interface=member.interface, MemberName=member.name, HoldTime=0, TalkTime=talk, Reason=reason)
        self._hangup(legs)
        member.status, member.calls_taken = "free", member.calls_taken + 1
        member.last_call_end = time.monotonic()
        self._member_status(member)
        asyncio.get_running_loop().call_later(self.wrapuptime / self.speed, self._dispatch.set)
        if reason == "transfer" and caller.requeue:  # back into the queue for another agent
            channel.context, channel.exten = caller.requeue
            caller.requeue, caller.legs, caller.finished = None, [], None
            await self._queue(caller, channel)
            return
        if channel.context == "from-elders-ivr" and reason != "caller":
            await self._survey(caller, channel, member)
        self._hangup(list(reversed(caller.channels)))

    async def _survey(self, caller: Caller, channel: Channel, member: Member) -> None:
        """After the agent hung up: a score by key for a share of callers (over AGI when set)."""
        rates = self.rng.random() < self.mix.survey_share
        score = str(self.rng.choices([5, 4, 3, 2, 1], [60, 25, 8, 4, 3])[0]) if rates else None
        await self.sleep(self.rng.uniform(2, 5))
        if self.agi:
            await self._agi_session("survey", caller, channel, agi_peer.keys_from([score]), MEMBERINTERFACE=member.interface)
        elif score:
            self.emit("VarSet", channel, Variable="SURVEY_SCORE", Value=score)

    def end_talk(self, linkedid: str, reason: str) -> bool:
        """End an answered call now: `agent` or `caller` hung up, or it was `transfer`red. An
        outbound call (ringing or answered): the agent or the party called (`caller`) hangs up."""
        placed = self.outbound.get(linkedid)
        if placed is not None:
            if placed.finished.done():
                return False
            placed.finished.set_result("agent" if reason == "agent" else "caller")
            return True
        caller = self.calls.get(linkedid)
        if caller is None or caller.finished is None or caller.finished.done():
            return False
        caller.finished.set_result(reason)
        return True

    async def outbound_call(self, *, exten: str, number: str, talk: float, variables: list[str] = (),
                            channel_id: str | None = None, context: str = "hotline-outbound", caller_id: str = "12349") -> None:
        """Originate from an agent's extension to a number (a callback, a care call), in the events
        a real Asterisk 22 sends (tests/fixtures/ami-traces/ami-trace-care-*.txt): the agent's phone
        rings first, its channel in the agents' context with Originate's ChannelId as its Uniqueid
        (so the call's Linkedid); Originate's own DialEnd (no dialling channel) says it answered;
        then `context` dials the number over the trunk (DialBegin, DIALSTATUS, DialEnd), whose far
        end answers, is busy, rings until `outbound_ring_seconds` or fails, by the number's last
        digit (far_end_status). An answered talk lasts `talk` seconds unless the agent (AMI
        Hangup) or the party called (`end_talk`) ends it first; the first to leave the bridge
        ends it."""
        linkedid = channel_id or self._uniqueid()
        member = self.members.get(f"PJSIP/{exten}")
        agent = Channel(f"PJSIP/{exten}-{next(self._locals):08x}", linkedid, linkedid, "agents", "s", exten,
                        member.name if member else exten, state=0, connected="<unknown>")
        free = member is not None and member.status == "free"  # else its state is the queue call's to tell
        placed = Outbound(agent=agent, member=member if free else None, finished=asyncio.get_running_loop().create_future())
        member = placed.member
        self.outbound[linkedid] = placed
        self.channels[agent.uniqueid] = agent
        self.stats["outbound"] += 1
        try:
            self.emit("Newchannel", agent)
            for text in variables:
                name, _, value = text.partition("=")
                self.emit("VarSet", agent, Variable=name, Value=value)
            agent.number, agent.caller_name = caller_id, caller_id
            self.emit("NewCallerid", agent, **{"CID-CallingPres": "0 (Presentation Allowed, Not Screened)"})
            self.emit("DialBegin", None, **dict(self._channel_fields(agent, prefix="Dest")), DialString=exten)
            self._set_member(member, "ringing")
            if await self._until_finished(placed, self.rng.uniform(*self.mix.ring_seconds)):
                self._hangup([agent])  # hung up (AMI Hangup) before the agent's phone answered
                return
            agent.state = 6
            self.emit("DialEnd", None, **dict(self._channel_fields(agent, prefix="Dest")), DialStatus="ANSWER")
            self.emit("OriginateResponse", None, Response="Success", Channel=agent.name, Context=context, Exten=number,
                      Reason=4, Uniqueid=linkedid, CallerIDNum=caller_id, CallerIDName=caller_id)
            self._set_member(member, "busy")
            await self._dial_out(placed, context=context, number=number, caller_id=caller_id, talk=talk)
        finally:
            self.outbound.pop(linkedid, None)
            self._set_member(member, "free")

    async def _dial_out(self, placed: Outbound, *, context: str, number: str, caller_id: str, talk: float) -> None:
        """The outbound context's Dial(PJSIP/<number>@trunk, OUTBOUND_RING_SECONDS) on the agent's channel."""
        agent = placed.agent
        agent.context, agent.exten = context, number
        self.emit("VarSet", agent, Variable="DIALSTATUS", Value="")
        far = placed.far = Channel(f"PJSIP/trunk-{next(self._locals):08x}", self._uniqueid(), agent.linkedid, "from-elders-ivr",
                                   "s", "<unknown>", "<unknown>", state=0)
        self.channels[far.uniqueid] = far
        self.emit("Newchannel", far)
        far.number, far.caller_name, far.exten, far.connected = number, caller_id, number, caller_id
        agent.connected = number
        self.emit("NewCallerid", far, **{"CID-CallingPres": "0 (Presentation Allowed, Not Screened)"})
        self.emit("DialBegin", agent, **dict(self._channel_fields(far, prefix="Dest")), DialString=f"{number}@trunk")
        status = far_end_status(number)
        wait = {"ANSWER": self.rng.uniform(*self.mix.ring_seconds), "NOANSWER": self.outbound_ring_seconds}.get(status, 0.2)
        if await self._until_finished(placed, wait):
            status = "CANCEL" if placed.finished.result() == "agent" else "NOANSWER"
        far.state = 6 if status == "ANSWER" else 5
        self.emit("VarSet", agent, Variable="DIALSTATUS", Value=status)
        self.emit("DialEnd", agent, **dict(self._channel_fields(far, prefix="Dest")), DialStatus=status)
        if status != "ANSWER":
            self._hangup([far], cause={"BUSY": 17, "CONGESTION": 34}.get(status, 16))
            self._hangup([agent], cause={"BUSY": 17, "CONGESTION": 34}.get(status, 16))
            return
        bridge = f"{far.uniqueid}-bridge"
        for channel in (far, agent):
            channel.bridge = bridge
            self.emit("BridgeEnter", channel, BridgeUniqueid=bridge, BridgeType="basic", BridgeTechnology="simple_bridge",
                      BridgeNumChannels=1 if channel is far else 2)
        await self._until_finished(placed, talk)
        first = agent if placed.finished.done() and placed.finished.result() == "agent" else far
        for channel in (first, far if first is agent else agent):
            self.emit("BridgeLeave", channel, BridgeUniqueid=bridge, BridgeType="basic", BridgeTechnology="simple_bridge",
                      BridgeNumChannels=1 if channel is first else 0)
            channel.bridge = ""
        self.emit("VarSet", agent, Variable="DIALSTATUS", Value="ANSWER")
        self._hangup([agent, far])

    async def _until_finished(self, placed: Outbound, seconds: float) -> bool:
        """Wait `seconds` (at the simulator's speed); True when the call was hung up meanwhile."""
        try:
            await asyncio.wait_for(asyncio.shield(placed.finished), seconds / self.speed)
            return True
        except asyncio.TimeoutError:
            return False

    def _set_member(self, member: Member | None, status: str) -> None:
        """The agent's phone rings, talks or is free again: queue members show it (the queue offers
        no caller to an agent on a call: ringinuse = no)."""
        if member is None or member.status == status:
            return
        member.status = status
        if status == "free":
            self._dispatch.set()
        if member.in_queue:
            self._member_status(member)

    # --- actions ----------------------------------------------------------------------------

    async def handle_action(self, session: Session, name: str, message: Message) -> None:
        handler = getattr(self, f"_action_{name}", None)
        if handler is None:
            await super().handle_action(session, name, message)
            return
        handler(session, message)

    def _action_queuestatus(self, session: Session, message: Message) -> None:
        items = [[("Event", "QueueParams"), ("Queue", QUEUE), ("Max", 0), ("Strategy", "rrmemory"), ("Calls", len(self.waiting))]]
        for member in self.members.values():
            if member.in_queue:
                items.append([("Event", "QueueMember"), ("Queue", QUEUE), ("Name", member.name), ("Location", member.interface),
                              ("StateInterface", member.interface), ("Membership", "static"), ("Penalty", 0),
                              ("CallsTaken", member.calls_taken), ("InCall", 1 if member.status == "busy" else 0),
                              ("Status", MEMBER_STATUS[member.status]), ("Paused", 1 if member.paused else 0),
                              ("PausedReason", member.reason)])
        now = time.monotonic()
        for position, caller in enumerate(self.waiting, start=1):
            channel = caller.channels[1]
            items.append([("Event", "QueueEntry"), ("Queue", QUEUE), ("Position", position), ("Channel", channel.name),
                          ("Uniqueid", channel.uniqueid), ("CallerIDNum", caller.number), ("CallerIDName", caller.name),
                          ("Wait", round((now - caller.joined) * self.speed)), ("Priority", caller.priority)])
        self.send_list(session, message.action_id, "Queue status will follow", items, "QueueStatusComplete")

    def _action_queuesummary(self, session: Session, message: Message) -> None:
        members = [m for m in self.members.values() if m.in_queue]
        available = sum(1 for m in members if not m.paused and m.status == "free")
        items = [[("Event", "QueueSummary"), ("Queue", QUEUE), ("LoggedIn", len(members)), ("Available", available),
                  ("Callers", len(self.waiting))]]
        self.send_list(session, message.action_id, "Queue summary will follow", items, "QueueSummaryComplete")

    def _action_coreshowchannels(self, session: Session, message: Message) -> None:
        items = [[("Event", "CoreShowChannel"), *self._channel_fields(ch), ("Duration", "00:00:01"), ("BridgeId", ch.bridge)]
                 for ch in self.channels.values()]
        self.send_list(session, message.action_id, "Channels will follow", items, "CoreShowChannelsComplete")

    def _action_bridgelist(self, session: Session, message: Message) -> None:
        self.send_list(session, message.action_id, "Bridge listing will follow", [], "BridgeListComplete")

    def _member_or_error(self, session: Session, message: Message) -> Member | None:
        member = self.members.get(message.get("Interface", ""))
        if member is None:
            session.send(self.response(message.action_id, "Error", Message="Interface not found"))
        return member

    def _action_queuepause(self, session: Session, message: Message) -> None:
        member = self._member_or_error(session, message)
        if member is None:
            return
        member.paused = (message.get("Paused") or "").lower() in ("true", "1", "yes")
        member.reason = (message.get("Reason") or "") if member.paused else ""
        session.send(self.response(message.action_id, "Success",
                                   Message="Interface paused successfully" if member.paused else "Interface unpaused successfully"))
        self.emit("QueueMemberPause", None, Queue=QUEUE, MemberName=member.name, Interface=member.interface,
                  StateInterface=member.interface, Membership="static", Penalty=0, CallsTaken=member.calls_taken,
                  InCall=1 if member.status == "busy" else 0, Status=MEMBER_STATUS[member.status],
                  Paused=1 if member.paused else 0, PausedReason=member.reason)
        self._dispatch.set()

    def _action_queueadd(self, session: Session, message: Message) -> None:
        interface, queue = message.get("Interface", ""), message.get("Queue") or QUEUE
        member = self.members.get(interface)
        if member is not None and member.member_of(queue):
            session.send(self.response(message.action_id, "Error", Message="Unable to add interface: Already there"))
            return
        if member is None:
            extension = interface.split("/", 1)[-1].split("@", 1)[0]
            member = self.members[interface] = Member(extension=extension, name=message.get("MemberName") or extension,
                                                      in_queue=False)
        penalty = int(message.get("Penalty") or 0)
        if queue == QUEUE:
            member.in_queue, member.penalty = True, penalty
        else:
            member.other_queues[queue] = penalty
        member.paused = (message.get("Paused") or "").lower() == "true"
        session.send(self.response(message.action_id, "Success", Message="Added interface to queue"))
        self.emit("QueueMemberAdded", None, Queue=queue, MemberName=member.name, Interface=member.interface,
                  StateInterface=member.interface, Penalty=penalty, Status=MEMBER_STATUS[member.status],
                  Paused=1 if member.paused else 0)
        self._dispatch.set()

    def _action_queueremove(self, session: Session, message: Message) -> None:
        member, queue = self.members.get(message.get("Interface", "")), message.get("Queue") or QUEUE
        if member is None or not member.member_of(queue):
            session.send(self.response(message.action_id, "Error", Message="Unable to remove interface: Not there"))
            return
        if queue == QUEUE:
            member.in_queue = False
        else:
            member.other_queues.pop(queue)
        session.send(self.response(message.action_id, "Success", Message="Removed interface from queue"))
        self.emit("QueueMemberRemoved", None, Queue=queue, MemberName=member.name, Interface=member.interface)

    def _action_queuepenalty(self, session: Session, message: Message) -> None:
        member, queue = self.members.get(message.get("Interface", "")), message.get("Queue") or QUEUE
        if member is None or not member.member_of(queue):
            session.send(self.response(message.action_id, "Error", Message="Invalid interface, queuename or penalty"))
            return
        penalty = int(message.get("Penalty") or 0)
        if queue == QUEUE:
            member.penalty = penalty
        else:
            member.other_queues[queue] = penalty
        session.send(self.response(message.action_id, "Success", Message="Interface penalty set successfully"))
        self.emit("QueueMemberPenalty", None, Queue=queue, Interface=member.interface, Penalty=penalty)

    def _action_originate(self, session: Session, message: Message) -> None:
        channel = message.get("Channel", "")
        exten = channel.split("/", 1)[-1].split("@", 1)[0]
        number = (message.get("Exten") or message.get("CallerID") or "").strip()
        channel_id = (message.get("ChannelId") or "").strip() or None
        if channel_id is not None and (channel_id in self.channels or channel_id in self.outbound):
            session.send(self.response(message.action_id, "Error", Message="Originate failed: Uniqueid already in use"))
            return
        caller_id = (message.get("CallerID") or "").rpartition("<")[2].rstrip(">").strip() or "12349"
        session.send(self.response(message.action_id, "Success", Message="Originate successfully queued"))
        self._spawn(self.outbound_call(exten=exten, number=number, talk=self.rng.uniform(*self.mix.outbound_talk_seconds),
                                       variables=message.getall("Variable"), channel_id=channel_id,
                                       context=message.get("Context") or "hotline-outbound", caller_id=caller_id))

    def _find_channels(self, spec: str) -> list[Channel]:
        """A channel by name or Uniqueid, or every channel whose name matches `/regex/` (as Asterisk)."""
        if len(spec) > 2 and spec.startswith("/") and spec.endswith("/"):
            pattern = re.compile(spec[1:-1])
            return [ch for ch in self.channels.values() if pattern.search(ch.name)]
        return [ch for ch in self.channels.values() if spec in (ch.name, ch.uniqueid)]

    def _action_hangup(self, session: Session, message: Message) -> None:
        targets = self._find_channels(message.get("Channel") or "")
        if not targets:
            session.send(self.response(message.action_id, "Error", Message="No such channel"))
            return
        session.send(self.response(message.action_id, "Success", Message=f"Channels hungup: {len(targets)}"))
        for linkedid in dict.fromkeys(target.linkedid for target in targets):
            caller, placed = self.calls.get(linkedid), self.outbound.get(linkedid)
            if placed is not None:  # a call placed from an agent's phone: whose side was hung up
                self.end_talk(linkedid, "agent" if placed.agent in targets else "caller")
            elif caller is None:
                self._hangup([ch for ch in list(self.channels.values()) if ch.linkedid == linkedid])
            elif any(target in caller.legs for target in targets):  # the agent's leg: the agent hung up
                self.end_talk(linkedid, "agent")
            elif caller.connected is not None and not caller.connected.done():
                self._abandon(caller, caller.channels[1])
            elif not self.end_talk(linkedid, "caller"):
                self._hangup([ch for ch in list(self.channels.values()) if ch.linkedid == linkedid])

    def _action_redirect(self, session: Session, message: Message) -> None:
        targets = self._find_channels(message.get("Channel") or "")
        ok = bool(targets)
        session.send(self.response(message.action_id, "Success" if ok else "Error",
                                   Message="Redirect successful" if ok else "Channel specified does not exist"))
        if ok:  # the caller leaves this agent: back into the queue, or (to an extension) out of the simulation
            caller = self.calls.get(targets[0].linkedid)
            if caller is not None and message.get("Exten") == QUEUE:
                caller.requeue = (message.get("Context") or "", QUEUE)
            self.end_talk(targets[0].linkedid, "transfer")

    def _action_queuechangeprioritycaller(self, session: Session, message: Message) -> None:
        caller = next((c for c in self.waiting if c.channels[1].name == message.get("Caller")), None)
        if caller is None:
            session.send(self.response(message.action_id, "Error", Message="Caller not found"))
            return
        caller.priority = int(message.get("Priority") or 0)
        session.send(self.response(message.action_id, "Success", Message="Priority change for caller successful"))
        self._dispatch.set()


def far_end_status(number: str) -> str:
    """The DialStatus the far end of an outbound call to `number` gives (FAR_END_BY_LAST_DIGIT)."""
    return FAR_END_BY_LAST_DIGIT.get(number.strip()[-1:], "ANSWER")


def numbered_agents(count: int) -> list[tuple[str, str]]:
    return [(str(8000 + n), f"Agent {8000 + n}") for n in range(1, count + 1)]


def from_database(database, *, username: str, secret: str, host: str, port: int, mix: TrafficMix, speed: float = 1.0,
                  seed: int | None = None, sample: int = 500, agents: int | None = None,
                  agi: tuple[str, int] | None = None, outbound_ring_seconds: float = 40.0) -> Simulator:
    """A simulator whose agents are the active agents with an extension (or `agents` of them,
    8001 up; 8001–8005 when the database has none) and whose callers are elders' and relatives'
    numbers from the database."""
    from sqlalchemy import func
    from sqlmodel import select

    from callcenter.auth.models import User
    from callcenter.elders.models import Elder, ElderPhone

    with database.session_scope() as session:
        users = session.exec(select(User).where(User.role == "agent", User.active, User.sip_extension.is_not(None))).all()
        members = numbered_agents(agents) if agents else [(u.sip_extension, u.display_name or u.username) for u in users]
        rows = session.exec(select(ElderPhone.number, ElderPhone.relation, Elder.name).join(Elder, Elder.id == ElderPhone.elder_id)
                            .where(Elder.active).order_by(func.random()).limit(sample)).all()
    # Caller ID as a Chinese trunk delivers it: national digits, landlines with their trunk 0.
    callers = [(_national(number), name if relation == "self" else "") for number, relation, name in rows]
    return Simulator(username=username, secret=secret, host=host, port=port, agents=members or numbered_agents(5),
                     callers=callers, mix=mix, speed=speed, seed=seed, agi=agi, wrapuptime=WRAPUP_GUARD_SECONDS,
                     outbound_ring_seconds=outbound_ring_seconds)


def _national(e164: str) -> str:
    digits = e164.removeprefix("+86")
    return digits if digits.startswith("1") else "0" + digits

