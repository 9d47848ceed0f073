"""The AGI scripts: `/ivr` (the 12349 menu), `/survey` (1–5 after the agent hangs up) and
`/afterhours` (a callback request, out of hours or when nobody answered).

Rules they keep, for callers who are often over 80, some confused or hard of hearing:
- silence leads to a person: no key → an agent; an invalid key repeats the menu once, then an agent;
- nothing stands between an emergency and a person: the channel variables that send the caller
  to the queue are set before anything is written; the database, Redis or a slow query may fail
  or lag and the caller still reaches a queue (unknown caller, business hours from the file);
- the emergency key, or a high-risk elder, puts the caller above everyone in the queue, alerts
  the supervisors and leaves a draft emergency order on the call for the agent to confirm; the
  order is written first (it is the record), and an alert Redis cannot take now is kept, in
  order, and published by a background task once Redis answers again (at most ALERT_BACKLOG);
- a caller hanging up ends the script where it is: nothing is written for a menu left half-way.

Variables set for the dialplan (see `ivr/asterisk_config.py`): IVR_ROUTE, QUEUE_PRIO, IVR_QUEUE,
ELDER_ID, CALLERID(name), and SURVEY_SCORE after the survey.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from callcenter.realtime.events import IvrEmergency, encode, event_channels
from callcenter.db import Database
from callcenter.timeutil import utcnow
from ivr import menu
from ivr import service as ivr_service
from ivr.agi import AgiServer, AgiSession
from ivr.prompts import PROMPTS
from ivr.service import Caller

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0  # seconds the menu waits for the database before going on without it
CALL_RECORD_WAIT = 3.0  # the bridge records the call from AMI: wait this long for its row
CONFIG_SECONDS = 1.0  # a supervisor's change reaches calls within this long
SURVEY_KEYS = "12345"
ALERT_BACKLOG = 500  # emergency alerts kept while Redis is away (beyond: the oldest is dropped, logged)
PUBLISH_TIMEOUT = 3.0  # a publish taking longer counts as failed (a half-open link would hang it)
ALERT_RETRY = (0.5, 10.0)  # back-off (first, longest) between attempts to publish the kept alerts


class IvrScripts:
    def __init__(self, *, database: Database, settings, redis=None, menu_file: Path | None = None):
        self.database = database
        self.settings = settings
        self.redis = redis  # redis.asyncio client for the supervisors' alert (None: no alert)
        self.menu_file = menu_file
        self.pending: set[asyncio.Task] = set()
        self._config: tuple[float, menu.IvrConfig] | None = None  # (when read, settings)
        self._alerts: deque[tuple[str, str]] = deque()  # (linkedid, JSON) not yet published, oldest first
        self._alerts_lock: asyncio.Lock | None = None  # one publisher at a time keeps them in order
        self._alerts_retry: asyncio.Task | None = None

    def handlers(self) -> dict:
        return {"ivr": self.ivr, "survey": self.survey, "afterhours": self.afterhours}

    def server(self, *, host: str, port: int) -> AgiServer:
        return AgiServer(self.handlers(), host=host, port=port)

    async def settle(self) -> None:
        """Wait for the emergency records still being written (tests, shutdown)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    @property
    def alerts_waiting(self) -> list[dict]:
        """The emergency alerts kept until Redis takes them, oldest first."""
        return [json.loads(text) for _, text in self._alerts]

    # --- the scripts -----------------------------------------------------------------------------

    async def ivr(self, session: AgiSession) -> None:
        await session.answer()
        linkedid = await self._linkedid(session)
        config, caller = await self._config_and_caller(session.caller_number)
        await self._name_the_caller(session, caller)
        if not config.hours.is_open(self._local_now()):
            await self._callback_menu(session, config, caller, linkedid, reason="after_hours")
            return
        if caller.high_risk and config.menu.high_risk_skip_menu:
            await self._send_to_queue(session, config, caller, linkedid, route="high_risk", queue=config.menu.queue)
            return
        digit = await self._play(session, "welcome_known" if caller.known else "welcome", config.menu.escape_digits)
        route = await self._choose(session, config, "menu", digit)
        await self._send_to_queue(session, config, caller, linkedid, route=route, queue=config.menu.queue)

    async def afterhours(self, session: AgiSession) -> None:
        """Out of hours, or back from a queue nobody answered (`busy`)."""
        linkedid = await self._linkedid(session)
        config, caller = await self._config_and_caller(session.caller_number)
        reason = "busy" if config.hours.is_open(self._local_now()) else "after_hours"
        await self._callback_menu(session, config, caller, linkedid, reason=reason)

    async def survey(self, session: AgiSession) -> None:
        """1–5 by key after the agent hung up; no key (or keys outside 1–5 twice) → no score."""
        linkedid = await self._linkedid(session)
        agent = await session.get_variable("MEMBERINTERFACE")
        if not agent:
            return  # nobody talked to the caller: nothing to rate
        config = await self._config_only()
        score = None
        for attempt in range(config.menu.retries + 1):
            digit = await self._play(session, "survey", config.menu.escape_digits)
            if digit is None:
                digit = await session.wait_for_digit(config.menu.survey_timeout_seconds * 1000)
            if digit is None or digit in SURVEY_KEYS:
                score = int(digit) if digit else None
                break
            if attempt < config.menu.retries:
                await self._play(session, "invalid")
        if score is None:
            await self._play(session, "goodbye")
            return
        await session.set_variable("SURVEY_SCORE", score)  # the bridge records it from VarSet too
        try:
            if not await self._db(ivr_service.save_survey, linkedid=linkedid, score=score):
                log.warning("survey score for call %s kept on the channel only (no call row yet)", linkedid)
        except Exception as exc:  # the database away: the channel variable still carries it
            log.warning("survey score for call %s not written here (%s)", linkedid, type(exc).__name__)
        await session.verbose(f"12349 survey call={linkedid} score={score}")
        await self._play(session, "survey_thanks")

    # --- steps -----------------------------------------------------------------------------------

    async def _choose(self, session: AgiSession, config: menu.IvrConfig, prompt: str, digit: str | None,
                      choices: dict[str, str] | None = None) -> str:
        """Play `prompt` (unless a key already came), wait for a key, and map it: no key → agent,
        an invalid key → `invalid` and the prompt again, `retries` times, then an agent."""
        for attempt in range(config.menu.retries + 1):
            if digit is None:
                digit = await self._play(session, prompt, config.menu.escape_digits)
            if digit is None:
                digit = await session.wait_for_digit(config.menu.digit_timeout_seconds * 1000)
            route = (choices or config.menu.keys).get(digit) if digit is not None else "agent"
            if route is not None:
                return route
            if attempt < config.menu.retries:
                digit = await self._play(session, "invalid", config.menu.escape_digits)
        return "agent"

    async def _callback_menu(self, session: AgiSession, config: menu.IvrConfig, caller: Caller, linkedid: str, *,
                             reason: str) -> None:
        """Out of hours: 9 emergency (on-duty queue), 1 callback request, 0 or nothing the on-duty
        person. Busy: 1 callback request, 0 or nothing back to the queue."""
        queue = config.menu.on_duty_queue if reason == "after_hours" else config.menu.queue
        if caller.high_risk:
            await self._send_to_queue(session, config, caller, linkedid, route="high_risk", queue=queue)
            return
        choices = {"9": "emergency", "1": "callback", "0": "agent"}
        route = await self._choose(session, config, "closed" if reason == "after_hours" else "busy", None, choices)
        if route == "emergency":
            await self._send_to_queue(session, config, caller, linkedid, route="emergency", queue=queue)
            return
        if route == "callback":
            if caller.number and await self._record_callback(config, caller, linkedid, reason):
                await session.set_variable("IVR_ROUTE", "callback")
                await session.verbose(f"12349 callback request call={linkedid} reason={reason}")
                await self._play(session, "callback_saved")
                return
            await self._play(session, "callback_no_number")
            queue = config.menu.on_duty_queue
        await self._send_to_queue(session, config, caller, linkedid, route="agent", queue=queue)

    async def _send_to_queue(self, session: AgiSession, config: menu.IvrConfig, caller: Caller, linkedid: str, *,
                             route: str, queue: str) -> None:
        emergency = route in ("emergency", "high_risk") or caller.high_risk
        priority = config.menu.emergency_priority if emergency else 0
        await session.set_variable("IVR_ROUTE", route)
        await session.set_variable("QUEUE_PRIO", priority)
        await session.set_variable("IVR_QUEUE", queue)
        if emergency:  # recorded while the caller hears the prompt; a hang-up now does not stop it
            task = asyncio.create_task(self._record_emergency(caller, linkedid, route))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        await session.verbose(f"12349 IVR route={route} queue={queue} priority={priority} elder={caller.elder_id or '-'}")
        await self._play(session, "emergency" if emergency else "to_agent")

    async def _record_emergency(self, caller: Caller, linkedid: str, route: str) -> None:
        reason = "按键9" if route == "emergency" else "高风险老人来电"
        order = None
        try:
            call_id = await self._call_id(linkedid)
            order = await self._db(ivr_service.draft_emergency, caller=caller, call_id=call_id, reason=reason,
                                   tz=self.settings.tz, timeout=10.0)
        except Exception:
            log.exception("emergency draft for call %s could not be written", linkedid)
        await self._alert(caller, linkedid, reason, order)

    async def _alert(self, caller: Caller, linkedid: str, reason: str, order) -> None:
        """The supervisors' alert (the draft order, already written, is the record): published
        now, or kept behind the alerts still waiting for Redis."""
        if self.redis is None:
            return
        event = IvrEmergency(call_id=linkedid, caller=caller.e164 or caller.number, elder_id=caller.elder_id,
                             elder_name=caller.elder_name, reason=reason, order_id=order.id if order else None,
                             order_number=order.number if order else None, at=utcnow().isoformat())
        if len(self._alerts) >= ALERT_BACKLOG:
            dropped, _ = self._alerts.popleft()
            log.error("emergency alert for call %s dropped: %d alerts already wait for Redis (its draft order stands)",
                      dropped, ALERT_BACKLOG)
        self._alerts.append((linkedid, encode(event)))
        error = await self._publish_alerts()
        if error is not None:  # Redis away: the draft order and the caller's priority still stand
            log.warning("emergency alert for call %s not published (%s): kept until Redis answers (%d waiting)", linkedid,
                        type(error).__name__, len(self._alerts))
            self._retry_alerts()

    async def _publish_alerts(self) -> Exception | None:
        """Publish the kept alerts in order; stops at the first that fails (returns its error) and
        keeps it and the rest."""
        if self._alerts_lock is None:
            self._alerts_lock = asyncio.Lock()
        channel = event_channels(self.settings.events_prefix).calls
        async with self._alerts_lock:
            while self._alerts:
                try:
                    await asyncio.wait_for(self.redis.publish(channel, self._alerts[0][1]), PUBLISH_TIMEOUT)
                except Exception as exc:
                    return exc
                self._alerts.popleft()
        return None

    def _retry_alerts(self) -> None:
        """Start the background task that publishes the kept alerts once Redis is back."""
        if self._alerts_retry is None or self._alerts_retry.done():
            self._alerts_retry = asyncio.create_task(self._retry_alerts_until_sent(), name="ivr-alert-retry")

    async def _retry_alerts_until_sent(self) -> None:
        delay, since = ALERT_RETRY[0], time.monotonic()
        try:
            while self._alerts:
                await asyncio.sleep(delay)
                count = len(self._alerts)
                if await self._publish_alerts() is None:
                    log.warning("Redis is back: published %d kept emergency alert(s) after %.0f s", count, time.monotonic() - since)
                    return
                delay = min(delay * 2, ALERT_RETRY[1])
        except asyncio.CancelledError:
            if self._alerts:
                log.error("IVR stopping with %d emergency alert(s) never published (their draft orders stand)", len(self._alerts))
            raise

    async def _record_callback(self, config: menu.IvrConfig, caller: Caller, linkedid: str, reason: str) -> bool:
        due = config.hours.next_opening(self._local_now())
        try:
            await self._db(ivr_service.request_callback, caller=caller, linkedid=linkedid, reason=reason, due_at=due)
            return True
        except Exception:
            log.exception("callback request of call %s could not be recorded", linkedid)
            return False

    async def _name_the_caller(self, session: AgiSession, caller: Caller) -> None:
        if caller.known:
            await session.set_variable("ELDER_ID", caller.elder_id)
            await session.set_variable("CALLERID(name)", caller.elder_name if caller.own_phone else f"{caller.elder_name}（亲属）")

    async def _play(self, session: AgiSession, prompt: str, escape: str = "") -> str | None:
        return await session.stream_file(PROMPTS[prompt].file, escape)

    # --- data, never in the caller's way -------------------------------------------------------

    async def _linkedid(self, session: AgiSession) -> str:
        """The call's key (Linkedid): the AGI channel may be a second leg (Local;2)."""
        return await session.get_variable("CHANNEL(linkedid)") or session.uniqueid

    def _current_config(self, *, session) -> menu.IvrConfig:
        """The settings in force, read again at most every CONFIG_SECONDS (one query less per call)."""
        now = time.monotonic()
        if self._config is None or now - self._config[0] >= CONFIG_SECONDS:
            self._config = (now, ivr_service.load_config(session=session, menu_file=self.menu_file))
        return self._config[1]

    async def _config_and_caller(self, number: str | None) -> tuple[menu.IvrConfig, Caller]:
        def load(*, session):
            config = self._current_config(session=session)
            caller = ivr_service.identify_caller(session=session, number=number, area_code=self.settings.city_area_code)
            return config, caller

        try:
            return await self._db(load)
        except Exception as exc:
            log.warning("IVR goes on without the database (%s): unknown caller, menu from the file", type(exc).__name__)
            return menu.parse(menu.read_file(self.menu_file)), Caller(number=number)

    async def _config_only(self) -> menu.IvrConfig:
        try:
            return await self._db(self._current_config)
        except Exception:
            return menu.parse(menu.read_file(self.menu_file))

    async def _call_id(self, linkedid: str) -> int | None:
        deadline = asyncio.get_running_loop().time() + CALL_RECORD_WAIT
        while True:
            call_id = await self._db(ivr_service.call_id_for, linkedid=linkedid)
            if call_id is not None or asyncio.get_running_loop().time() > deadline:
                return call_id
            await asyncio.sleep(0.2)

    async def _db(self, function, *, timeout: float = DB_TIMEOUT, **kwargs):
        """Run `function(session=…, **kwargs)` in one transaction, in a thread."""
        def run():
            with self.database.session_scope() as session:
                return function(session=session, **kwargs)

        return await asyncio.wait_for(asyncio.to_thread(run), timeout)

    def _local_now(self) -> datetime:
        return utcnow().astimezone(self.settings.tz)
