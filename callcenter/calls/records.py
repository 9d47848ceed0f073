"""Asterisk's own durable records of calls: what the bridge reads to record the calls of an outage.

AMI never replays what a client missed, so a call that rang, waited, talked or was transferred
while the bridge was down (killed, restarting, cut off from Asterisk, or a standby taking over)
is rebuilt from the two records Asterisk writes to its own log folder whatever happens to us
(`callcenter asterisk-config` switches both on):

- `queue_log`: `time|callid|queue|agent|event|data1|…` — ENTERQUEUE, CONNECT (hold time, the
  agent's channel), COMPLETEAGENT / COMPLETECALLER (hold, talk), BLINDTRANSFER / ATTENDEDTRANSFER,
  ABANDON (position, original position, wait), EXITWITHTIMEOUT, RINGNOANSWER;
- `cel-custom/hotline.csv`: one line per channel event (asterisk_config.CEL_FIELDS): when each
  channel started and ended, who bridged with whom, and when the call (Linkedid) ended.

Why these and not CDRs written into our database (cdr_pgsql / cel_pgsql): the records must
survive exactly the outages they repair. A database outage would lose the rows Asterisk tries to
write during it; local files do not depend on our database, our Redis or our network, and work
the same with SQLite. Where the bridge runs on another host, the log folder is shared read-only
with it (README, "Connecting a real Asterisk").

Pure: files' text in, tracker Calls out; no clock.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from callcenter.calls.tracker import AGENT_CONTEXTS, INBOUND_CONTEXTS, Call, Leg, close_call, interface_of, seconds_between

log = logging.getLogger(__name__)
CEL_FILE = Path("cel-custom") / "hotline.csv"  # asterisk_config.CEL_FILE
QUEUE_LOG = Path("queue_log")
LOOKBACK = timedelta(hours=1)  # lines this far before the window are read too: calls that began before it
TRANSFER_EVENTS = {"BLINDTRANSFER": "blind", "ATTENDEDTRANSFER": "attended"}
COMPLETE_EVENTS = {"COMPLETEAGENT": "agent", "COMPLETECALLER": "caller"}
# A call Asterisk ended this shortly before it booted again was hung up by its own restart.
SHUTDOWN_SECONDS = timedelta(seconds=15)
# FullyBooted's Uptime is whole seconds, so Asterisk booted up to this long before the time the
# tracker derives. Asterisk takes longer than that to boot, so a call whose last event falls in
# that margin belongs to the new run (still live), never to the one that crashed.
BOOT_UNCERTAINTY = timedelta(seconds=1)


@dataclass(frozen=True)
class CelEvent:
    kind: str
    at: datetime
    cid_num: str
    context: str
    channel: str
    uniqueid: str
    linkedid: str
    app: str
    bridge: str | None


@dataclass(frozen=True)
class QueueLine:
    at: datetime
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]

    def number(self, index: int) -> int | None:
        try:
            return int(self.data[index])
        except (IndexError, ValueError):
            return None


@dataclass
class Records:
    """The two files' lines from `since` on."""

    cel: list[CelEvent] = field(default_factory=list)
    queue_log: list[QueueLine] = field(default_factory=list)


def read(log_dir: Path, since: datetime) -> Records:
    """Read both files (lines older than `since` − LOOKBACK skipped); missing files read as empty."""
    start = since - LOOKBACK
    return Records(cel=_read_cel(log_dir / CEL_FILE, start), queue_log=_read_queue_log(log_dir / QUEUE_LOG, start))


def _epoch(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(text), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _read_cel(path: Path, start: datetime) -> list[CelEvent]:
    if not path.exists():
        return []
    events = []
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 11 or (at := _epoch(row[1])) is None or at < start:
                continue
            events.append(CelEvent(kind=row[0], at=at, cid_num=row[2], context=row[4], channel=row[6], uniqueid=row[7],
                                   linkedid=row[8], app=row[9], bridge=_bridge_id(row[10])))
    return events


def _bridge_id(extra: str) -> str | None:
    if "bridge_id" not in extra:
        return None
    try:
        return json.loads(extra).get("bridge_id")
    except (ValueError, AttributeError):
        return None


def _read_queue_log(path: Path, start: datetime) -> list[QueueLine]:
    if not path.exists():
        return []
    lines = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for text in handle:
            parts = text.rstrip("\n").split("|")
            if len(parts) < 5 or (at := _epoch(parts[0])) is None or at < start:
                continue
            lines.append(QueueLine(at=at, callid=parts[1], queue=parts[2], agent=parts[3], event=parts[4], data=tuple(parts[5:])))
    return lines


def ended_calls(records: Records, *, start: datetime, end: datetime, restarted_at: datetime | None = None,
                inbound_contexts=INBOUND_CONTEXTS, agent_contexts=AGENT_CONTEXTS, short_abandon_seconds: int = 5,
                skip: set[str] = frozenset()) -> list[Call]:
    """Every call that ended in [start, end], rebuilt from the records (`reconciled`), except
    those in `skip`. `restarted_at`: Asterisk (re)started then while we were away: calls it
    never ended (a crash) or ended in the seconds before (a restart's hang-ups) were cut off by it."""
    by_call: dict[str, list[CelEvent]] = defaultdict(list)
    for event in records.cel:
        by_call[event.linkedid].append(event)
    queue_lines: dict[str, list[QueueLine]] = defaultdict(list)
    for line in records.queue_log:
        queue_lines[line.callid].append(line)
    calls = []
    for linkedid, events in by_call.items():
        if linkedid in skip:
            continue
        finished = next((e.at for e in events if e.kind == "LINKEDID_END"), None)
        cut_off = restarted_at is not None and (events[-1].at <= restarted_at - BOOT_UNCERTAINTY if finished is None
                                                else restarted_at - SHUTDOWN_SECONDS <= finished <= restarted_at)
        ended = finished or (events[-1].at if cut_off else None)
        if ended is None or not start <= ended <= end:
            continue
        call = _build(linkedid, events, queue_lines, inbound_contexts=frozenset(inbound_contexts),
                      agent_contexts=frozenset(agent_contexts))
        _close(call, ended, cut_off=cut_off, short_abandon_seconds=short_abandon_seconds)
        calls.append(call)
    return sorted(calls, key=lambda call: call.started_at)


def _build(linkedid: str, events: list[CelEvent], queue_lines: dict[str, list[QueueLine]], *, inbound_contexts,
           agent_contexts) -> Call:
    starts = {e.uniqueid: e for e in events if e.kind == "CHAN_START"}
    agents = {uid for uid, e in starts.items() if e.context in agent_contexts}
    first = starts.get(linkedid) or next(iter(starts.values()), events[0])
    call = Call(linkedid=linkedid, direction="inbound" if first.context in inbound_contexts else "outbound",
                context=first.context, started_at=first.at, reconciled=True)
    callers = [e for e in events if e.uniqueid not in agents]
    if call.direction == "inbound":
        call.caller_number = next((e.cid_num for e in callers if e.cid_num), None)
    call.ivr_at = next((e.at for e in callers if e.kind == "APP_START" and e.app == "AGI"), None)
    lines = sorted((line for uid in {e.uniqueid for e in callers} for line in queue_lines.get(uid, [])), key=lambda line: line.at)
    _apply_queue_log(call, lines)
    call.legs = _legs(events, agents, lines)
    for leg in call.legs:
        call.transfers += leg.ended_by == "transfer"
    if call.legs:
        last = call.legs[-1]
        call.agent_interface, call.agent_name = last.interface, last.agent_name
        call.answered_at = call.answered_at or call.legs[0].connected_at
        call.agent_done_at, call.hangup_by = last.ended_at, last.ended_by
        call.talk_seconds = sum(leg.talk_seconds or 0 for leg in call.legs)
    return call


def _apply_queue_log(call: Call, lines: list[QueueLine]) -> None:
    for line in lines:
        if line.event == "ENTERQUEUE":
            call.queue = call.queue or line.queue
            call.queued_at = call.queued_at or line.at
        elif line.event == "RINGNOANSWER":
            call.ring_attempts += 1
        elif line.event == "CONNECT" and call.answered_at is None:
            call.answered_at, call.wait_seconds = line.at, line.number(0)
        elif line.event == "ABANDON":
            call.abandoned_at, call.wait_seconds = line.at, line.number(2)
        elif line.event in ("EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"):
            call.left_queue_at = line.at


def _legs(events: list[CelEvent], agents: set[str], lines: list[QueueLine]) -> list[Leg]:
    """One leg per agent channel that shared a bridge with the caller's side."""
    caller_bridges = {e.bridge for e in events if e.kind == "BRIDGE_ENTER" and e.uniqueid not in agents and e.bridge}
    connects = {line.data[1]: line for line in lines if line.event == "CONNECT" and len(line.data) > 1}
    legs = []
    for index, event in enumerate(events):
        if event.kind != "BRIDGE_ENTER" or event.uniqueid not in agents or event.bridge not in caller_bridges:
            continue
        connect = connects.get(event.uniqueid)
        leg = Leg(channel=event.uniqueid, interface=interface_of(event.channel), connected_at=event.at,
                  agent_name=connect.agent if connect else None, queue=connect.queue if connect else None, bridge=event.bridge)
        _end_leg(leg, events[index + 1:], agents, lines, connect)
        legs.append(leg)
    for leg, following in zip(legs, legs[1:]):  # how the caller was passed on: where they went next
        if leg.ended_by == "transfer" and leg.transfer == "redirect":
            leg.transfer = "queue" if following.queue else "agent"
    return legs


def _end_leg(leg: Leg, later: list[CelEvent], agents: set[str], lines: list[QueueLine], connect: QueueLine | None) -> None:
    """Who left the agent's bridge first ends the leg (as the live tracker decides it): the agent,
    or the caller, who hung up next or was passed on."""
    for index, event in enumerate(later):
        if event.kind == "BLINDTRANSFER" and event.uniqueid == leg.channel:
            leg.ended_by, leg.transfer = "transfer", "blind"
        elif event.kind == "ATTENDEDTRANSFER" and event.uniqueid == leg.channel:
            leg.ended_by, leg.transfer = "transfer", "attended"
        if event.kind not in ("BRIDGE_EXIT", "HANGUP") or (event.kind == "BRIDGE_EXIT" and event.bridge != leg.bridge):
            continue
        if event.uniqueid == leg.channel:
            leg.ended_by = leg.ended_by or "agent"
        elif event.uniqueid not in agents and event.kind == "BRIDGE_EXIT":
            caller_next = next((e for e in later[index + 1:] if e.uniqueid == event.uniqueid), None)
            if leg.ended_by is None:
                hung_up = caller_next is None or caller_next.kind == "HANGUP"
                leg.ended_by, leg.transfer = ("caller", None) if hung_up else ("transfer", "redirect")
        else:
            continue
        leg.ended_at = event.at
        break
    leg.ended_at = leg.ended_at or (later[-1].at if later else leg.connected_at)
    leg.talk_seconds = seconds_between(leg.connected_at, leg.ended_at)
    complete = next((line for line in lines if connect is not None and line.event in COMPLETE_EVENTS
                     and line.agent == connect.agent and line.at >= leg.connected_at), None)
    if complete is not None and COMPLETE_EVENTS[complete.event] == leg.ended_by and abs((complete.at - leg.ended_at).total_seconds()) <= 1:
        leg.talk_seconds = complete.number(1)  # queue_log's own figure for the same end


def _close(call: Call, ended: datetime, *, cut_off: bool, short_abandon_seconds: int) -> None:
    call.cut_off = cut_off
    close_call(call, ended, short_abandon_seconds=short_abandon_seconds)
