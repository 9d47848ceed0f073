#!/usr/bin/env python3
"""Benchmark: load N elders, then time lookup by phone and search, on PostgreSQL and SQLite.

    .venv/bin/python scripts/bench/elders.py --elders 1000000 [--backend postgresql|sqlite|both]

Times the service functions the API and the AMI bridge call (`lookup_by_phone`, `search`),
through SQLAlchemy, on a fresh database each run. Prints load time, p50/p99 per operation.
Targets (issue 2): phone lookup p99 < 2 ms on PostgreSQL with 1 M elders; search p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from callcenter import demo, migrate  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.elders import service as elders_service  # noqa: E402
from callcenter.elders.models import Elder, ElderPhone  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def timed(samples: list, call) -> dict:
    durations = []
    results = 0
    for sample in samples:
        start = time.perf_counter()
        results += call(sample)
        durations.append((time.perf_counter() - start) * 1000)
    return {"n": len(durations), "p50": percentile(durations, 0.5), "p99": percentile(durations, 0.99),
            "mean": statistics.fmean(durations), "hits": results}


def fresh_database(backend: str, workdir: Path) -> tuple[str, callable]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}", lambda: None
    return create_postgres_database(PG_ADMIN_URL, f"bench_elders_{uuid.uuid4().hex[:8]}")


def run(backend: str, elders: int, seed: int, samples: int, keep: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url, drop = fresh_database(backend, workdir)
        try:
            settings = Settings(_env_file=None, data_dir=workdir, database_url=url, secret_key="bench", city_area_code="0411")
            migrate.upgrade(url)
            database = Database(settings)
            start = time.perf_counter()
            demo.generate(database, settings, elders=elders, seed=seed)
            load_seconds = time.perf_counter() - start
            # Steady state, as autovacuum leaves a table: statistics and the visibility map set.
            statement = "VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE"
            with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text(statement))
            report(backend, elders, load_seconds, measure(database, settings, samples, seed))
        finally:
            if not keep:
                drop()


def measure(database: Database, settings: Settings, samples: int, seed: int) -> dict:
    rng = random.Random(seed + 1)
    with database.session_scope() as session:
        max_phone = session.exec(select(ElderPhone.id).order_by(ElderPhone.id.desc()).limit(1)).one()
        max_elder = session.exec(select(Elder.id).order_by(Elder.id.desc()).limit(1)).one()
        phone_ids = [rng.randint(1, max_phone) for _ in range(samples)]
        numbers = [session.get(ElderPhone, pid).number for pid in phone_ids]
        people = [session.get(Elder, rng.randint(1, max_elder)) for _ in range(samples)]
    # Caller IDs as the trunk delivers them: national form for known numbers, and unknown numbers.
    caller_ids = [n.replace("+86", "0" if not n.startswith("+861") else "") for n in numbers]
    unknown = [rng.choice(demo.MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}" for _ in range(samples)]
    area = settings.city_area_code
    results = {}
    with database.session_scope() as session:
        lookup = lambda raw: len(elders_service.lookup_by_phone(session=session, raw=raw, area_code=area)[1])  # noqa: E731
        search = lambda q: len(elders_service.search(session=session, q=q, page_size=20).items)  # noqa: E731
        timed(caller_ids[:50], lookup)  # warm-up
        results["lookup by phone (known)"] = timed(caller_ids, lookup)
        results["lookup by phone (unknown)"] = timed(unknown, lookup)
        results["search full name"] = timed([p.name for p in people], search)
        results["search pinyin initials"] = timed([p.name_initials for p in people], search)
        results["search full pinyin"] = timed([p.name_pinyin for p in people], search)
        results["search phone last 4"] = timed([n[-4:] for n in numbers], search)
    return results


def report(backend: str, elders: int, load_seconds: float, results: dict) -> None:
    print(f"\n== {backend}: {elders:,} elders ==")
    print(f"load: {load_seconds:,.1f} s ({elders / load_seconds:,.0f} elders/s, with phones and contacts)")
    print(f"{'operation':<28}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'hits':>9}")
    for name, r in results.items():
        print(f"{name:<28}{r['n']:>7}{r['p50']:>10.3f}{r['p99']:>10.3f}{r['mean']:>10.3f}{r['hits']:>9}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elders", type=int, default=100_000)
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=12349)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database afterwards")
    args = parser.parse_args()
    for backend in (["postgresql", "sqlite"] if args.backend == "both" else [args.backend]):
        run(backend, args.elders, args.seed, args.samples, args.keep)


if __name__ == "__main__":
    main()
