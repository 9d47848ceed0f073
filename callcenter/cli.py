"""The one command line: `callcenter run | web | db upgrade | user create | demo-data | …`."""

from __future__ import annotations

import logging
import os
import sys

import typer

from callcenter.config import get_settings

app = typer.Typer(help="12349 养老服务热线后台 (12349 elderly-care hotline backend)", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


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
            typer.echo(f"created {user.role} {user.username} (id {user.id})")
    except FieldErrors as exc:
        _fail("; ".join(f"{field}: {msg}" for field, msg in exc.errors))
    except DomainError as exc:
        _fail(exc.message)


@app.command("demo-data")
def demo_data(
    elders: int = typer.Option(500, "--elders", help="how many elder profiles"),
    seed: int = typer.Option(12349, "--seed", help="random seed: the same seed gives the same city"),
    if_empty: bool = typer.Option(False, "--if-empty", help="do nothing when elders already exist"),
) -> None:
    """Write a realistic demo city: areas, elders, phones, relatives, demo accounts."""
    from callcenter import demo
    from callcenter.db import Database

    settings = get_settings()
    result = demo.generate(Database(settings), settings, elders=elders, seed=seed, if_empty=if_empty)
    if result is None:
        typer.echo("demo data already present; nothing written")
        return
    typer.echo(f"wrote {result.elders} elders, {result.phones} phones, {result.areas} areas")
    for username, role, password in result.accounts:
        typer.echo(f"  demo login: {username} / {password}  ({role})")


def _serve(host: str, port: int, workers: int = 1, migrate_first: bool = False) -> None:
    import uvicorn

    from callcenter import migrate, redis_conn

    settings = get_settings()
    if migrate_first:
        migrate.upgrade(settings.effective_database_url)
    # Child processes (web workers now; bridge, worker, IVR later) share this Redis.
    os.environ["REDIS_URL"] = redis_conn.redis_url(settings)
    typer.echo(f"12349 hotline running at http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  (Ctrl+C to stop)")
    sys.stdout.flush()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn's own access log prints query strings (phone and ID numbers): ours does not.
    uvicorn.run("callcenter.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info",
                access_log=False)


@app.command("run")
def run(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8000, "--port")) -> None:
    """Everything on one machine: migrations, embedded Redis and SQLite by default, the web app."""
    _serve(host, port, migrate_first=True)


@app.command("web")
def web(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers"),
) -> None:
    """The web tier alone (several may run against one PostgreSQL and one Redis; run
    `callcenter db upgrade` once before starting them)."""
    _serve(host, port, workers)


if __name__ == "__main__":
    app()
