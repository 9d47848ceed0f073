"""The leader lease of the AMI bridges (calls/leader.py) on the real Redis: one leads, the standby
takes over when the leader stops renewing, and a leader that finds the lease taken steps down."""

import asyncio

import redis.asyncio as aioredis

from callcenter.calls import leader


def test_the_standby_takes_the_lease_when_the_leader_stops_and_the_old_leader_steps_down(settings):
    async def scenario():
        redis = aioredis.from_url(settings.redis_url)
        await redis.delete(leader.LEADER_KEY)
        # A 3 s lease renewed every 0.5 s: a stall of this loaded machine must not let it lapse.
        first = leader.Leadership(redis, "first", lease=3, renew=0.5, wait=0.1)
        second = leader.Leadership(redis, "second", lease=3, renew=0.5, wait=0.1)
        await asyncio.wait_for(first.acquire(), 10)
        holding = asyncio.create_task(first.hold())
        standby = asyncio.create_task(second.acquire())
        await asyncio.sleep(4)
        assert not standby.done() and (await redis.get(leader.LEADER_KEY)) == b"first"  # renewed past its lease
        holding.cancel()  # the leader dies without a word
        await asyncio.wait_for(standby, 10)
        assert (await redis.get(leader.LEADER_KEY)) == b"second"
        await asyncio.wait_for(first.hold(), 10)  # back: finds the lease taken and returns (steps down)
        await second.release()
        assert await redis.get(leader.LEADER_KEY) is None
        await redis.aclose()

    asyncio.run(scenario())


def test_run_as_leader_runs_one_bridge_and_returns_when_it_stops(settings):
    class Bridge:
        runs = 0

        def __init__(self):
            self.stopped = asyncio.Event()

        async def run(self):
            Bridge.runs += 1
            await self.stopped.wait()

        def stop(self):
            self.stopped.set()

    async def scenario():
        redis = aioredis.from_url(settings.redis_url)
        await redis.delete(leader.LEADER_KEY)
        made = []
        task = asyncio.create_task(leader.run_as_leader(lambda: made.append(Bridge()) or made[-1], redis, "solo"))
        while not made:
            await asyncio.sleep(0.05)
        assert (await redis.get(leader.LEADER_KEY)) == b"solo"
        made[0].stop()
        await asyncio.wait_for(task, 3)
        assert await redis.get(leader.LEADER_KEY) is None and Bridge.runs == 1  # released on a clean stop
        await redis.aclose()

    asyncio.run(scenario())


def test_after_a_redis_outage_the_leader_keeps_the_lease_and_the_standby_waits(settings, redis_proxy):
    """Redis goes away for both bridges for longer than the lease: when it is back the leader
    renews and the standby stays standby (not both leading until the leader's next renewal)."""
    proxy, proxied_url = redis_proxy

    async def scenario():
        direct = aioredis.from_url(settings.redis_url)
        await direct.delete(leader.LEADER_KEY)
        clients = [aioredis.from_url(proxied_url), aioredis.from_url(proxied_url)]
        first = leader.Leadership(clients[0], "first", lease=3, renew=0.5, wait=0.05)
        second = leader.Leadership(clients[1], "second", lease=3, renew=0.5, wait=0.05)
        await asyncio.wait_for(first.acquire(), 10)
        holding = asyncio.create_task(first.hold())
        standby = asyncio.create_task(second.acquire())
        await asyncio.sleep(1)
        proxy.reject()
        await asyncio.sleep(4.5)
        assert await direct.get(leader.LEADER_KEY) is None  # the lease ran out meanwhile
        proxy.heal()
        holders = set()
        for _ in range(40):  # 2 s after Redis is back (less than one lease)
            await asyncio.sleep(0.05)
            holders.add(await direct.get(leader.LEADER_KEY))
        result = (holders, standby.done(), holding.done())
        holding.cancel()
        await asyncio.wait_for(standby, 15)  # the leader gone for good: the standby takes over
        taken = await direct.get(leader.LEADER_KEY)
        for client in clients + [direct]:
            await client.aclose()
        return result, taken

    (holders, standby_done, leader_done), taken = asyncio.run(scenario())
    assert holders - {None} == {b"first"} and not standby_done and not leader_done
    assert taken == b"second"
