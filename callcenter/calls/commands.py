"""Telephony commands: how a web process gets an AMI action run.

Only the bridge owns the AMI socket (DESIGN.md, rule 6), so a console button does not talk to
Asterisk itself: the web pushes a command (a short list of AMI actions) onto a Redis list, the
bridge runs the actions in order and pushes the outcome onto a reply list named after the
command, and the web waits for that reply a few seconds. A command carries its deadline: one
the bridge picks up too late (it was down, or busy) is dropped, never run behind the agent's back.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callcenter.errors import Conflict, Unavailable

# Redis lists (not pub/sub): they belong to the Redis database, so unlike the live events'
# channels (`service.event_channels`) they need no deployment prefix.
COMMANDS_KEY = "hotline:ami:commands"
REPLY_PREFIX = "hotline:ami:reply:"
# The bridge's heartbeat ({"ami": connected?}, refreshed every few seconds, expiring): a button
# fails at once when no bridge runs, and says why when a command goes unanswered.
BRIDGE_KEY = "hotline:ami:bridge"
BRIDGE_TTL_SECONDS = 10
NO_BRIDGE = "呼叫中心桥接服务（callcenter ami）未运行"
NO_ASTERISK = "桥接服务与电话交换机（Asterisk）的连接已中断，正在重连"
REPLY_TTL_SECONDS = 60
# What a web process may ask for; anything else is refused by the bridge.
ALLOWED_ACTIONS = frozenset({"QueuePause", "QueueAdd", "QueueRemove", "QueuePenalty", "Hangup", "Redirect", "Originate"})


@dataclass
class Step:
    """One AMI action; `tolerate`: substrings of an error message that still count as done
    (QueueAdd's "Already there" when the agent is a member already)."""

    action: str
    fields: list[tuple[str, str]]
    tolerate: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"action": self.action, "fields": [[k, str(v)] for k, v in self.fields if v is not None],
                "tolerate": list(self.tolerate)}


@dataclass
class Outcome:
    ok: bool
    message: str = ""
    results: list[dict] = field(default_factory=list)
    unavailable: bool = False  # not run: Asterisk out of reach (503), rather than refused (409)


class TelephonyUnavailable(Unavailable):
    def __init__(self, detail: str = ""):
        super().__init__("电话系统暂时无法执行该操作（呼叫中心桥接服务未响应）" + (f"：{detail}" if detail else "") + "，请稍后重试")


class TelephonyRefused(Conflict):
    def __init__(self, message: str):
        super().__init__(f"电话系统拒绝了该操作：{message}")


def run(redis, steps: list[Step], *, timeout: float) -> Outcome:
    """Have the bridge run `steps` in order; raises when it does not answer in `timeout` s or
    Asterisk refuses a step."""
    command_id = uuid.uuid4().hex
    command = {"id": command_id, "deadline": time.time() + timeout, "steps": [step.as_dict() for step in steps]}
    try:
        if redis.get(BRIDGE_KEY) is None:
            raise TelephonyUnavailable(NO_BRIDGE)
        redis.rpush(COMMANDS_KEY, json.dumps(command, ensure_ascii=False))
        reply = redis.blpop([REPLY_PREFIX + command_id], timeout=max(1, math.ceil(timeout)))
    except RedisTimeoutError:  # the client's socket timeout ran out first: no answer, Redis is fine
        reply = None
    except (RedisError, OSError) as exc:
        raise TelephonyUnavailable(f"Redis 不可用（{type(exc).__name__}）") from exc
    if reply is None:
        raise TelephonyUnavailable(_why_unanswered(redis))
    data = json.loads(reply[1])
    outcome = Outcome(ok=bool(data.get("ok")), message=data.get("message", ""), results=data.get("results", []),
                      unavailable=bool(data.get("unavailable")))
    if outcome.unavailable:
        raise TelephonyUnavailable(outcome.message)
    if not outcome.ok:
        raise TelephonyRefused(outcome.message or "未知错误")
    return outcome


def _why_unanswered(redis) -> str:
    try:
        beat = redis.get(BRIDGE_KEY)
    except (RedisError, OSError):
        return ""
    if beat is None:
        return NO_BRIDGE
    return "" if json.loads(beat).get("ami") else NO_ASTERISK


def heartbeat(*, ami_connected: bool, recording: bool = True, held: int = 0) -> str:
    """The bridge's word every few seconds: connected to Asterisk, writing calls to the database
    as they happen (False: an outage or a hung write), changes kept back meanwhile."""
    return json.dumps({"ami": ami_connected, "recording": recording, "held": held, "at": time.time()})


def bridge_status(redis) -> dict:
    """What /healthz reports of the bridge, from its last heartbeat (no heartbeat: not running)."""
    beat = redis.get(BRIDGE_KEY)
    if beat is None:
        return {"running": False}
    data = json.loads(beat)
    return {"running": True, "ami": bool(data.get("ami")), "recording": bool(data.get("recording", True)),
            "held": int(data.get("held", 0))}


def parse(text: bytes | str) -> tuple[dict | None, str]:
    """The bridge's side: (command, "") or (None, why it is refused)."""
    try:
        command = json.loads(text)
        steps = command["steps"]
        if not isinstance(steps, list) or not steps:
            return None, "empty command"
        for step in steps:
            if step.get("action") not in ALLOWED_ACTIONS:
                return None, f"action not allowed: {step.get('action')!r}"
        return command, ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "malformed command"


def reply_key(command: dict) -> str:
    return REPLY_PREFIX + str(command.get("id", ""))


def encode_reply(outcome: Outcome) -> str:
    return json.dumps({"ok": outcome.ok, "message": outcome.message, "results": outcome.results,
                       "unavailable": outcome.unavailable}, ensure_ascii=False)
