"""What an agent's console asks Asterisk to do: go ready or pause, sign out of the queue, hang up,
transfer, call back. Each builds the AMI actions and has the bridge run them (`commands.run`).

Dialplan contract (README, "Asterisk dialplan the console uses"):
- queue member interface `AGENT_INTERFACE` (default `PJSIP/{extension}`), named after the agent,
  its device state read from the agent's phone (`AGENT_PHONE`) when the interface is a Local channel;
- a transfer redirects the caller's channel to `TRANSFER_CONTEXT`, exten = agent extension or queue;
- a callback rings `AGENT_PHONE` first, then dials the number in `OUTBOUND_CONTEXT`, with CC_AGENT
  and ELDER_ID set on the channel (the bridge reads them back from VarSet).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callcenter.calls.commands import Outcome, Step, run
from callcenter.calls.models import CHOSEN_PAUSES, AgentRequest, CallRecord, PauseReason
from callcenter.calls.tracker import AGENT_CONTEXTS
from callcenter.errors import Conflict, FieldErrors
from callcenter.phones import Phone

PAUSE_REASONS = {reason.value: reason.label for reason in CHOSEN_PAUSES}
WRAPUP_REASON = PauseReason.WRAPUP
PHONE_OFFLINE_REASON = PauseReason.PHONE_OFFLINE
# queues.conf `wrapuptime`: Asterisk offers an agent no call this soon after the last, so the
# bridge's wrap-up pause always lands first (the simulator keeps it too).
WRAPUP_GUARD_SECONDS = 2  # set by the bridge while the agent's phone is unregistered
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_EXTENSION = re.compile(r"^\d{2,8}$")


class NoExtension(Conflict):
    def __init__(self):
        super().__init__("您的账号未绑定分机号，无法接听或外呼，请联系管理员")


def agent_interface(settings, extension: str) -> str:
    return settings.agent_interface.format(extension=extension)


def agent_queues(settings, queues: list[str] | None) -> list[str]:
    """An agent's queues: their own, or the configured one."""
    return list(queues) if queues else [settings.queue_name]


def state_interface(settings, extension: str) -> str:
    """Where the queue reads whether the agent is on a call: the member interface itself, or the
    agent's phone behind a Local channel (whose own state is lost once Asterisk optimises it away)."""
    interface = agent_interface(settings, extension)
    return settings.agent_phone.format(extension=extension) if interface.startswith("Local/") else interface


def agent_contexts(settings) -> frozenset[str]:
    """Where agents' channels start: the agents' phones' context, and the context a Local-channel
    member interface (`Local/{extension}@ctx`) or phone dials into. The bridge tells agents' legs
    from callers' channels by it, live and in Asterisk's records."""
    contexts = set(AGENT_CONTEXTS)
    for template in (settings.agent_interface, settings.agent_phone):
        if template.startswith("Local/") and "@" in template:
            contexts.add(template.rsplit("@", 1)[1].split("/", 1)[0])
    return frozenset(contexts)


def set_agent_state(*, redis, settings, extension: str | None, state: str, reason: str | None = None,
                    queues: list[str] | None = None, penalty: int = 0, name: str | None = None) -> Outcome:
    """ready: join the agent's queues if needed and unpause; paused: the same, paused with a
    reason; offline: leave the queues. `name`: the member's name in Asterisk (the wallboard's)."""
    if not extension:
        raise NoExtension()
    interface = agent_interface(settings, extension)
    queues = agent_queues(settings, queues)
    member = _Member(interface, state_interface(settings, extension), name or extension)
    join = lambda paused: [_join(queue, member, penalty=penalty, paused=paused) for queue in queues]  # noqa: E731
    if state == "ready":
        steps = [*join(False), Step("QueuePause", [("Interface", interface), ("Paused", "false")])]
    elif state == "paused":
        if reason not in PAUSE_REASONS:
            raise FieldErrors.single("reason", f"请选择暂停原因：{'、'.join(PAUSE_REASONS.values())}")
        steps = [*join(True), Step("QueuePause", [("Interface", interface), ("Paused", "true"), ("Reason", reason)])]
    elif state == "offline":
        steps = [_leave(queue, interface) for queue in queues]
    else:
        raise FieldErrors.single("state", f"状态无效：{state}（可选：{AgentRequest.choices()}）")
    return run(redis, steps, timeout=settings.ami_command_timeout)


@dataclass(frozen=True)
class _Member:
    interface: str
    state_interface: str
    name: str


def _join(queue: str, member: _Member, *, penalty: int, paused: bool) -> Step:
    return Step("QueueAdd", [("Queue", queue), ("Interface", member.interface), ("Penalty", str(penalty)),
                             ("Paused", "true" if paused else "false"), ("MemberName", member.name),
                             ("StateInterface", member.state_interface)], tolerate=("Already there",))


def _leave(queue: str, interface: str) -> Step:
    return Step("QueueRemove", [("Queue", queue), ("Interface", interface)], tolerate=("Not there",))


def change_membership(*, redis, settings, extension: str | None, live_queues: list[str], paused: bool,
                      queues: list[str], penalty: int, old_penalty: int, name: str | None = None) -> Outcome | None:
    """A supervisor changed an agent's queues or penalty: an agent logged into queues now leaves
    the dropped ones, joins the added ones (paused as they are) and takes the new penalty where
    they stay; an agent logged out takes them when next ready (None: nothing to tell Asterisk)."""
    if not extension or not live_queues:
        return None
    interface = agent_interface(settings, extension)
    queues = agent_queues(settings, queues)
    member = _Member(interface, state_interface(settings, extension), name or extension)
    steps = [_leave(queue, interface) for queue in live_queues if queue not in queues]
    steps += [_join(queue, member, penalty=penalty, paused=paused) for queue in queues if queue not in live_queues]
    if penalty != old_penalty:
        steps += [Step("QueuePenalty", [("Queue", queue), ("Interface", interface), ("Penalty", str(penalty))])
                  for queue in queues if queue in live_queues]
    return run(redis, steps, timeout=settings.ami_command_timeout) if steps else None


def check_queue_names(queues: list[str]) -> list[str]:
    """Queue names as Asterisk's queues.conf has them; refused in Chinese otherwise."""
    cleaned = list(dict.fromkeys(queue.strip() for queue in queues if queue.strip()))
    bad = [queue for queue in cleaned if not _QUEUE_NAME.match(queue)]
    if bad or len(cleaned) > 10:
        raise FieldErrors.single("queues", f"队列名只能含字母、数字、- 和 _，最多 10 个：{'、'.join(bad) or len(cleaned)}")
    return cleaned


def _require_live(call: CallRecord) -> None:
    if call.state == "ended":
        raise Conflict("该通话已结束")


def hangup(*, redis, settings, call: CallRecord) -> Outcome:
    """End the agent's leg; the caller goes on in the dialplan (e.g. the satisfaction survey)."""
    _require_live(call)
    if call.state != "talking" or not call.agent_extension:
        raise Conflict("该通话不在通话中，无法挂断")
    pattern = "/^" + re.escape(agent_interface(settings, call.agent_extension)).replace("/", "\\/") + "-/"
    return run(redis, [Step("Hangup", [("Channel", pattern), ("Cause", "16")])], timeout=settings.ami_command_timeout)


def transfer(*, redis, settings, call: CallRecord, target: str) -> Outcome:
    """Redirect the caller to another agent (extension) or a queue (its name)."""
    _require_live(call)
    if call.state != "talking":
        raise Conflict("只能转接通话中的来电")
    target = (target or "").strip()
    if not (_EXTENSION.match(target) or _QUEUE_NAME.match(target)):
        raise FieldErrors.single("target", "转接目标应为坐席分机号或队列名")
    if target == call.agent_extension:
        raise FieldErrors.single("target", "不能转接给自己")
    step = Step("Redirect", [("Channel", call.linkedid), ("Context", settings.transfer_context), ("Exten", target),
                             ("Priority", "1")])
    return run(redis, [step], timeout=settings.ami_command_timeout)


def dial_string(phone: Phone) -> str:
    """What the outbound context dials: mobiles as 11 digits, landlines with the trunk 0."""
    national = phone.e164.removeprefix("+86")
    return national if phone.kind == "mobile" else "0" + national


def callback(*, redis, settings, extension: str | None, phone: Phone, elder_id: int | None,
             channel_id: str | None = None) -> Outcome:
    """Ring the agent's phone, then dial `phone` from it (AMI Originate, asynchronous).
    `channel_id`: the Uniqueid Asterisk gives the agent's channel, so the call's linkedid (a care
    call's attempt finds its call by it)."""
    if not extension:
        raise NoExtension()
    variables = [("Variable", f"CC_AGENT={extension}")]
    if channel_id is not None:
        variables.append(("ChannelId", channel_id))
    if elder_id is not None:
        variables.append(("Variable", f"ELDER_ID={elder_id}"))
    step = Step("Originate", [("Channel", settings.agent_phone.format(extension=extension)), ("Context", settings.outbound_context),
                              ("Exten", dial_string(phone)), ("Priority", "1"),
                              ("CallerID", f"{settings.hotline_caller_id} <{settings.hotline_caller_id}>"),
                              ("Timeout", "30000"), ("Async", "true"), *variables])
    return run(redis, [step], timeout=settings.ami_command_timeout)
