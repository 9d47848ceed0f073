"""`callcenter worker` through a Redis outage, and `callcenter run` keeping its worker alive.

The worker runs as a real process whose Redis link goes through a TCP proxy this test owns
(tests/redis_proxy.py); the proxy refuses every connection for a few seconds, then passes again.
The worker must still be running afterwards, with its three parts working: the queue (an order
created after the outage is routed), the sweeper (an order whose routing job was lost is routed)
and RQ's scheduler, a thread of the worker (a job scheduled after the outage runs, under the
scheduler lock the worker held before)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from rq import Worker

from callcenter.timeutil import utcnow
from tests.telephony import wait_for
from tests.test_cli import CALLCENTER, free_port
from tests.workorders.conftest import new_order, order_row
from tests.workorders.test_routing import children_of
from workorders import jobs
from workorders import service as orders_service

ROUTED_IN = 60.0  # seconds an order may take to be routed (the sweeper runs every half second here)


def worker_env(settings, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMI_", "REDIS_", "DATABASE_"))}
    return env | {"DATABASE_URL": settings.database_url, "REDIS_URL": redis_url, "SECRET_KEY": settings.secret_key.get_secret_value(),
                  "DATA_DIR": str(settings.data_dir), "EVENTS_PREFIX": settings.events_prefix}


def order_without_job(services, settings, user, elder_id: int, *, waited: timedelta = timedelta(0)) -> int:
    """An order committed with no routing job (as when Redis was down at its creation)."""
    with services.db.session_scope() as session:
        order = orders_service.create_order(session=session, user=user, service_type="meal", elder_id=elder_id, tz=settings.tz)
        order.updated_at = utcnow() - waited
        session.flush()
        return order.id


def dispatched(services, order_id: int, message: str, timeout: float = ROUTED_IN) -> None:
    wait_for(lambda: order_row(services, order_id).status == "dispatched", timeout=timeout, message=message)


def group_members(pgid: int) -> list[int]:
    """Processes of process group `pgid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def stop(process: subprocess.Popen, *groups: int) -> str:
    """SIGTERM, as a service manager stops it; returns what it printed. Whatever is left of it
    then (in its process `groups` too) is killed: the test leaves nothing running."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output = "(did not stop)"
    for pid in [member for group in groups for member in group_members(group)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(10)
    return output


def test_the_worker_its_sweeper_and_scheduler_outlive_a_redis_outage(settings, services, console, city, agent, rq_redis,
                                                                     redis_proxy):
    proxy, proxied_url = redis_proxy
    queue = jobs.queue(rq_redis)
    worker = subprocess.Popen([CALLCENTER, "worker", "--sweep-seconds", "0.5"], env=worker_env(settings, proxied_url),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: Worker.all(queue=queue), timeout=30, message="the worker never registered with RQ")
        wait_for(lambda: rq_redis.exists(f"rq:scheduler-lock:{jobs.QUEUE_NAME}"), timeout=30, message="no scheduler")
        scheduler_name = rq_redis.get(f"rq:scheduler-lock:{jobs.QUEUE_NAME}")

        proxy.reject()  # Redis is gone for the worker: every connection closed, new ones refused
        time.sleep(6)  # the outage (the sweeper and RQ keep trying meanwhile)
        proxy.heal()
        assert worker.poll() is None, "the worker exited during the outage"

        lost = order_without_job(services, settings, agent, city["elder"], waited=timedelta(minutes=5))
        dispatched(services, lost, "the sweeper no longer routes orders left waiting")
        after = new_order(console, city["elder"])  # its routing job is enqueued on Redis at once
        dispatched(services, after, "an order created after the outage was not routed")
        scheduled = order_without_job(services, settings, agent, city["elder"])  # too recent for the sweeper
        queue.enqueue_in(timedelta(seconds=1), jobs.route_order, scheduled)
        dispatched(services, scheduled, "RQ's scheduler did not run a job scheduled after the outage")
        assert worker.poll() is None
        assert rq_redis.get(f"rq:scheduler-lock:{jobs.QUEUE_NAME}") == scheduler_name  # kept, not waited out
    finally:
        output = stop(worker, worker.pid)
        print(output)  # shown when the test fails: what the worker said through the outage
    for thread in ("sweeper", "scheduler"):  # each said it clearly, once
        assert output.count(f"{thread} cannot reach Redis") == 1 and output.count(f"{thread}: Redis is back") == 1, output
    assert "work-order worker stopped" in output  # and it still stops when told to,
    assert not rq_redis.exists(f"rq:scheduler-lock:{jobs.QUEUE_NAME}")  # handing its scheduler locks back


def test_callcenter_run_starts_a_killed_worker_again(settings, services, console, city, rq_redis, tmp_path):
    """kill -9 of the worker process `callcenter run` started: another one is started and routes."""
    env = worker_env(settings, settings.redis_url) | {
        "AMI_HOST": "127.0.0.1", "AMI_PORT": str(free_port()), "AMI_USER": "bridge", "AMI_SECRET": "not-listening",  # no simulator
        "IVR_PORT": str(free_port())}
    port = free_port()
    run = subprocess.Popen([CALLCENTER, "run", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    first = again = []
    try:
        first = wait_for(lambda: children_of(run.pid), timeout=60, message="callcenter run started no worker")
        assert len(first) == 1
        wait_for(lambda: [w for w in Worker.all(queue=jobs.queue(rq_redis)) if w.pid == first[0]], timeout=30,
                 message="the worker never registered with RQ")
        os.kill(first[0], signal.SIGKILL)
        again = wait_for(lambda: [pid for pid in children_of(run.pid) if pid != first[0]], timeout=30,
                         message="the killed worker was not started again")
        assert run.poll() is None
        wait_for(lambda: not group_members(first[0]), message="a process the killed worker started was left running")
        order_id = new_order(console, city["elder"])
        dispatched(services, order_id, "no worker routed the order after the restart")
        assert again[0] in [w.pid for w in Worker.all(queue=jobs.queue(rq_redis))]
    finally:
        output = stop(run, *first, *again)  # each worker leads a process group of its own
        print(output)  # shown when the test fails: what `callcenter run` and its workers said
    assert f"work-order worker (pid {first[0]}) exited (killed by SIGKILL); starting it again" in output
    assert f"work-order worker started again (pid {again[0]}" in output
    assert not children_of(run.pid)
