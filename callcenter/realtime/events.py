"""Live events: the JSON that the bridge, the IVR and the hub publish and the pages read.

One pydantic model per event type, and nothing is published but an instance of one of them
(`encode`), so a field cannot be renamed or added in one producer and not in the contract:
tests/realtime/test_event_contract.py pins the schema (`contract_schema`) and checks every frame
a real bridge, IVR and hub send through /ws against it. The pages' JavaScript reads labels and
state sets from the same vocabularies (agent_ui/vocabulary.py).

Where they go (README, "Live events"): call events and the IVR's emergency alerts on
`<prefix>:calls`, agent states on `<prefix>:agents`; the hub numbers those per socket and channel
(`seq`, `channel`, `epoch`: `Numbered`). `queue.waiting`, `resync`, `hello` and `heartbeat` are the
hub's and web process's own frames, not numbered.
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

CALLS, AGENTS = "calls", "agents"  # the two numbered streams


class EventChannels(NamedTuple):
    """The Redis pub/sub channels of live events."""

    calls: str  # call.* from the bridge, ivr.emergency from the IVR
    agents: str  # agent.state from the bridge


def event_channels(prefix: str) -> EventChannels:
    """The channels of one deployment (`Settings.events_prefix`). Pub/sub ignores the database
    number: two deployments sharing one Redis server hear each other's events unless their
    channel names differ."""
    return EventChannels(calls=f"{prefix}:{CALLS}", agents=f"{prefix}:{AGENTS}")


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: ClassVar[str | None] = None  # the channel it is published and numbered on; None: the hub's own

    def channel(self, prefix: str) -> str:
        if self.stream is None:
            raise ValueError(f"{type(self).__name__} is not published on Redis")
        return f"{prefix}:{self.stream}"


class Leg(BaseModel):
    """One agent's part of a call."""

    model_config = ConfigDict(extra="forbid")
    agent: str | None
    agent_name: str | None
    queue: str | None
    connected_at: str | None
    ended_at: str | None
    talk_seconds: int | None  # None while it lasts
    ended_by: str | None  # agent | caller | transfer | pbx …
    transfer: str | None  # how this agent passed the caller on, if they did


CallEventType = Literal["call.started", "call.ivr", "call.queued", "call.offered", "call.ring_no_answer", "call.answered",
                        "call.transferred", "call.agent_done", "call.abandoned", "call.updated", "call.ended"]


class CallEvent(Event):
    """A call changed (calls.tracker: which change is `type`): the call as it is now."""

    stream: ClassVar[str] = CALLS
    type: CallEventType
    call_id: str  # Asterisk's Linkedid
    id: int | None  # the call's row
    state: str  # calls.models.CallState
    outcome: str | None  # calls.models.Outcome, once ended
    direction: str
    caller: str | None  # E.164 when it parses, else as the trunk sent it
    caller_display: str | None
    caller_name: str | None
    elder_id: int | None
    elder_candidates: list[int]
    queue: str | None
    priority: int
    ivr_route: str | None
    agent: str | None  # the extension it is with (offered to, talking to)
    agent_interface: str | None
    rang_agent: str | None  # call.ring_no_answer: the extension that did not answer
    agent_name: str | None
    queued_at: str | None  # when it entered the queue (UTC ISO 8601): the wallboard counts its wait from it
    wait_seconds: int | None  # None until it left the queue
    talk_seconds: int | None  # None until the talk ended
    transfers: int
    legs: list[Leg]
    survey_score: int | None
    at: str  # when it was published (UTC ISO 8601)


class AgentStateEvent(Event):
    """An agent's state (calls.models.AgentActivity, pause per queue as Asterisk keeps it)."""

    stream: ClassVar[str] = AGENTS
    type: Literal["agent.state"] = "agent.state"
    interface: str
    agent: str | None
    name: str | None
    state: str
    paused: bool
    pause_reason: str | None
    paused_queues: list[str]  # paused there only (still taking calls from the others) when not `paused`
    queues: list[str]
    since: str | None


class IvrEmergency(Event):
    """A caller pressed the emergency key: the supervisors' alert (the draft order is the record)."""

    stream: ClassVar[str] = CALLS
    type: Literal["ivr.emergency"] = "ivr.emergency"
    call_id: str
    caller: str | None
    elder_id: int | None
    elder_name: str | None
    reason: str
    order_id: int | None
    order_number: str | None
    at: str


class QueueWaiting(Event):
    """The number of callers waiting in a queue now (the hub's, at most every 0.25 s per queue)."""

    type: Literal["queue.waiting"] = "queue.waiting"
    queue: str
    waiting: int


class Resync(Event):
    """Events may have been lost (the hub's subscription came back): reload the snapshot."""

    type: Literal["resync"] = "resync"
    epoch: str
    reason: str


class Hello(Event):
    """The first frame on a socket; `live` False until the hub is subscribed (a resync follows)."""

    type: Literal["hello"] = "hello"
    role: str
    extension: str | None
    live: bool


class Heartbeat(Event):
    type: Literal["heartbeat"] = "heartbeat"


class Numbered(BaseModel):
    """What the hub adds to an event of a stream on each socket."""

    seq: int  # 1, 2, 3 … per channel on this socket: a gap means frames were lost
    channel: Literal["calls", "agents"]
    epoch: str  # the hub (web process) that numbered it


PUBLISHED = (CallEvent, AgentStateEvent, IvrEmergency)
FRAMES = (*PUBLISHED, QueueWaiting, Resync, Hello, Heartbeat)
AnyEvent = Annotated[Union[FRAMES], Field(discriminator="type")]  # noqa: UP007 (a tuple unpacked)
_any_event = TypeAdapter(AnyEvent)


def encode(event: Event) -> str:
    return event.model_dump_json()


def parse(data: str | bytes) -> Event:
    """An event as published (raises pydantic.ValidationError for anything else)."""
    return _any_event.validate_json(data)


def parse_frame(data: str | bytes) -> Event:
    """A websocket frame: an event, numbered when it belongs to a stream."""
    frame = json.loads(data)
    numbering = {key: frame.pop(key) for key in ("seq", "channel", "epoch") if key in frame and frame.get("type") != "resync"}
    event = _any_event.validate_python(frame)
    if event.stream is not None:
        Numbered.model_validate(numbering)
        if numbering["channel"] != event.stream:
            raise ValueError(f"{event.type} numbered on {numbering['channel']}, published on {event.stream}")
    elif numbering:
        raise ValueError(f"{event.type} is not numbered, but carries {sorted(numbering)}")
    return event


def contract_schema() -> dict:
    """The JSON schema of every frame type, and of the numbering: what the contract test pins."""
    return {"events": {model.__name__: model.model_json_schema() for model in FRAMES},
            "numbered": Numbered.model_json_schema(),
            "streams": {model.__name__: model.stream for model in PUBLISHED}}


if __name__ == "__main__":  # python -m callcenter.realtime.events > tests/realtime/live-events.schema.json
    print(json.dumps(contract_schema(), ensure_ascii=False, indent=1, sort_keys=True))
