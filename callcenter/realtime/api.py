"""`/ws` (live events) and `/api/realtime/snapshot` (what to show before following them).

A console first loads the snapshot over HTTP, then follows the websocket; after any drop it does
both again, so a missed event can never leave a ghost call on screen. The socket stays open
through a Redis outage, but the events published meanwhile never reach it: the hub then sends
`{"type": "resync", "epoch", "reason"}`, and event frames carry `seq` per `channel` and the hub's
`epoch` (realtime/hub.py); on a resync frame, a gap or another epoch the page loads the snapshot
again, exactly as after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from urllib.parse import urlparse

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from callcenter.areas import scope as areas_scope
from callcenter.auth import service as auth_service
from callcenter.calls import presenter as calls_presenter
from callcenter.calls.models import WAITING_STATES, AgentStatus, CallRecord
from callcenter.calls import service as calls_service
from callcenter.calls.notifier import agent_changed
from callcenter.deps import SESSION_COOKIE, AgentUser, DbSession, ServicesDep
from callcenter.realtime.events import Heartbeat, Hello, encode
from callcenter.realtime.hub import TOO_SLOW, Subscriber

log = logging.getLogger(__name__)
router = APIRouter(tags=["realtime"])
HEARTBEAT_SECONDS = 15.0
SESSION_CHECK_SECONDS = 15.0  # an open socket whose session ended elsewhere is closed within this
HEARTBEAT = encode(Heartbeat())
NOT_SIGNED_IN = 4401
FORBIDDEN_ORIGIN = 4403  # another site's page, or an account that follows no live calls


@router.get("/api/realtime/snapshot")
def snapshot(session: DbSession, services: ServicesDep, user: AgentUser):
    """Open calls and agent states this user may see, and the callers waiting per queue."""
    tz = services.settings.tz
    subscriber = Subscriber(user_id=user.id, role=user.role, extension=user.sip_extension, city=user.area_id is None)
    with areas_scope.city_wide(session):  # the agent's own calls, whoever calls; wants() decides
        rows = list(session.exec(select(CallRecord).where(CallRecord.state != "ended")))
    calls = [calls_presenter.call_dict(row, tz, notes_visible=calls_service.handles(user=user, call=row)) for row in rows]
    agents = [agent_changed(row).model_dump() for row in session.exec(select(AgentStatus))]
    waiting: dict[str, int] = {}
    for call in calls:
        if call["state"] in ("queued", "offered") and call["queue"]:
            waiting[call["queue"]] = waiting.get(call["queue"], 0) + 1
    return {
        "calls": [c for c in calls if subscriber.wants({"type": "call.snapshot", "agent": c["agent"]})],
        "agents": [a for a in agents if subscriber.wants(a)],
        "waiting": waiting,
        "me": {"role": user.role, "extension": user.sip_extension, "wrapup_seconds": services.settings.wrapup_seconds},
    }


@router.websocket("/ws")
async def websocket(socket: WebSocket):
    services = socket.app.state.services
    hub = socket.app.state.hub
    if not _same_origin(socket):
        await socket.close(code=FORBIDDEN_ORIGIN)  # another site's page may not ride on our cookie
        return
    token = socket.cookies.get(SESSION_COOKIE)
    user = await asyncio.to_thread(_user_for, services, token)
    if user is None:
        await socket.close(code=NOT_SIGNED_IN)
        return
    if not auth_service.has_role(user, "agent"):
        await socket.close(code=FORBIDDEN_ORIGIN)  # area officials follow no live calls
        return
    await socket.accept()
    hub.set_waiting_loader(partial(_waiting_calls, services))
    subscriber = Subscriber(user_id=user.id, role=user.role, extension=user.sip_extension, city=user.area_id is None)
    hub.add(subscriber)
    # live: False until the hub's subscription is up, which a resync frame then announces
    await socket.send_text(encode(Hello(role=user.role, extension=user.sip_extension, live=hub.live)))
    sender = asyncio.create_task(_send(socket, subscriber, partial(_signed_in, services, token)))
    try:
        while True:  # the browser says nothing we need; reading notices when it leaves
            await socket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(subscriber)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def _send(socket: WebSocket, subscriber: Subscriber, signed_in) -> None:
    """Forward the subscriber's frames, a heartbeat when idle; close the socket when it falls too
    far behind, or once its session has ended elsewhere (logout, a password change, a deactivation)."""
    loop = asyncio.get_running_loop()
    beat_at, check_at = loop.time() + HEARTBEAT_SECONDS, loop.time() + SESSION_CHECK_SECONDS
    while True:
        if subscriber.overflowed:
            await socket.close(code=TOO_SLOW)
            return
        now = loop.time()
        if now >= check_at:
            if not await signed_in():
                await socket.close(code=NOT_SIGNED_IN)
                return
            check_at = loop.time() + SESSION_CHECK_SECONDS
        if now >= beat_at:
            text = HEARTBEAT
        else:
            try:
                text = await asyncio.wait_for(subscriber.queue.get(), min(beat_at, check_at) - now)
            except asyncio.TimeoutError:
                continue
        await socket.send_text(text)
        beat_at = loop.time() + HEARTBEAT_SECONDS


async def _signed_in(services, token: str) -> bool:
    """Whether the socket's session still signs its user in; a database that cannot answer now
    ends nothing (the next check decides)."""
    try:
        return await asyncio.to_thread(_user_for, services, token) is not None
    except SQLAlchemyError as exc:
        log.warning("session of an open websocket not checked: %s", type(exc).__name__)
        return True


def _waiting_calls(services) -> list[tuple[str, str, str]]:
    """(queue, call_id, state) of the calls waiting in a queue now: the hub counts from these
    again after a resync."""
    with services.db.session_scope() as session:
        rows = session.exec(select(CallRecord.queue, CallRecord.linkedid, CallRecord.state)
                            .where(CallRecord.state.in_(WAITING_STATES), CallRecord.queue.is_not(None)))
        return [tuple(row) for row in rows]


def _same_origin(socket: WebSocket) -> bool:
    origin = socket.headers.get("origin")
    if origin is None:
        return True  # not a browser (tests, tools): the session cookie still decides
    return urlparse(origin).netloc == socket.headers.get("host")


def _user_for(services, token: str | None):
    if not token:
        return None
    with services.db.session_scope() as session:
        user = services.sessions.read(token, session)
        if user is not None:
            session.expunge(user)
        return user
