"""Emergency alerts while Redis is away from the IVR (a TCP proxy this test owns between the IVR
and the test Redis): the draft orders are written, the alerts are kept in order, and once Redis
answers again a background task of the IVR server publishes them, where supervisors hear them."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from callcenter.realtime.events import event_channels
from ivr.scripts import IvrScripts
from tests.ivr.fake_agi import LINKEDID, dial
from tests.ivr.test_scripts import make_elder, open_all_day, orders, record_call

OTHER_CALL = "1795363600.30"  # a second emergency call, from a caller with no profile
TIMEOUT = 20.0


async def alerts_heard(pubsub, count: int) -> list[dict]:
    """The next `count` emergency alerts on the subscription."""
    heard = []
    async with asyncio.timeout(TIMEOUT):
        while len(heard) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and json.loads(message["data"])["type"] == "ivr.emergency":
                heard.append(json.loads(message["data"]))
    return heard


def test_emergency_alerts_are_kept_while_redis_is_away_and_published_when_it_returns(services, settings, redis_proxy):
    proxy, proxied_url = redis_proxy
    open_all_day(services)
    elder_id = make_elder(services)
    first_call = record_call(services)
    record_call(services, linkedid=OTHER_CALL)
    channel = event_channels(settings.events_prefix).calls

    async def scenario():
        supervisors = aioredis.Redis.from_url(settings.redis_url).pubsub()  # the web tier's side, not through the proxy
        await supervisors.subscribe(channel)
        scripts = IvrScripts(database=services.db, settings=settings, redis=aioredis.from_url(proxied_url))
        server = scripts.server(host="127.0.0.1", port=0)
        await server.start()
        try:
            proxy.reject()  # Redis is away for the IVR
            await dial(server.port, keys=["9"])
            await scripts.settle()  # its draft written and its alert kept before the next call
            await dial(server.port, keys=["9"], caller="13911112222", channel={"CHANNEL(linkedid)": OTHER_CALL})
            await scripts.settle()
            kept = scripts.alerts_waiting
            early = await supervisors.get_message(ignore_subscribe_messages=True, timeout=1.0)
            proxy.heal()
            heard = await alerts_heard(supervisors, 2)
            async with asyncio.timeout(TIMEOUT):
                while scripts.alerts_waiting:  # the publisher learns of its success just after the listener
                    await asyncio.sleep(0.05)
            return kept, early, heard
        finally:
            await server.close()
            await supervisors.aclose()

    kept, early, heard = asyncio.run(scenario())
    (draft,) = orders(services)  # the record, written while Redis was away (the unknown caller has no elder to order for)
    assert (draft.status, draft.elder_id, draft.call_id) == ("draft", elder_id, first_call)
    assert [a["call_id"] for a in kept] == [LINKEDID, OTHER_CALL]  # kept, in order
    assert early is None  # nothing reached the supervisors during the outage
    assert heard == kept  # published once Redis answered: the same alerts, in the same order
    assert (heard[0]["elder_id"], heard[0]["reason"], heard[0]["order_number"]) == (elder_id, "按键9", draft.number)
    assert (heard[1]["caller"], heard[1]["elder_id"], heard[1]["order_id"]) == ("+8613911112222", None, None)
