"""Call KPIs exactly as DESIGN.md defines them ("KPIs"), computed from each call's stored
timestamps so a definition can change without losing history.

A call counts on the day and hour (Asia/Shanghai, or the configured zone) it entered the queue;
only inbound calls that reached a queue are offered. Rates are None when their denominator is
zero (a day without calls has no service level, not 0 %).

Every KPI is derived here (`call_kpis`) from a `Tally` of named measures (stats/measures.py: each
a sum, a count or a maximum, defined once), so the database does the adding: one GROUP BY per
quarter hour and Python folds the tallies into hours, days and the range, measure by measure.
With the standard T of 15 s the measures come from `call_rollup`, per hour (kept exact by
stats/rollup.py), so a report reads the rollup's rows, not every call; another T or a district
filter sums the calls.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import and_, func, literal_column, or_
from sqlmodel import Session, select

from callcenter.areas import service as areas_service
from callcenter.calls.models import BUSY, LOGGED_IN, WAITING_STATES, AgentActivity, AgentStateLog, CallLeg, CallRecord
from callcenter.reporting import count_where, rate, table_rows
from callcenter.stats import rollup
from callcenter.stats.measures import Tally, rollup_columns, tally_columns
from callcenter.stats.models import AgentActivityDay, CallRollup
from callcenter.elders.models import Elder
from callcenter.timeutil import day_start_utc, utcnow

RAW_BUCKET_SECONDS = 900  # raw calls are summed per quarter hour: every time zone's hours are whole quarters


@dataclass
class Filters:
    """What a report is narrowed to: a queue, an agent's extension, a district (the matched elder's)."""

    queue: str | None = None
    agent: str | None = None
    district_id: int | None = None


def _mean(total: int, count: int) -> float | None:
    return round(total / count, 1) if count else None


def call_kpis(tally: Tally, *, threshold: int) -> dict:
    """The call KPIs of a tally; `threshold` is T (seconds) of the service level."""
    return {
        "offered": tally.offered, "answered": tally.answered, "abandoned": tally.abandoned,
        "short_abandons": tally.short_abandons, "timeouts": tally.timeouts, "answered_within_threshold": tally.within,
        "answer_rate": rate(tally.answered, tally.offered),  # 人工接通率
        "timely_answer_rate": rate(tally.within, tally.answered),  # 人工应答及时率 (GB/T 33358-2016)
        "service_level": rate(tally.within, tally.offered - tally.short_abandons),  # inclusive definition (DESIGN.md)
        "service_level_asterisk": rate(tally.within + tally.abandoned_within, tally.offered),  # Asterisk's SL2, for comparison
        "abandon_rate": rate(tally.abandoned, tally.offered),  # short abandons excluded
        "asa_seconds": _mean(tally.answered_wait, tally.answered),
        "longest_wait_seconds": tally.longest_wait,
        "aht_seconds": _mean(tally.handle, tally.handled),
        "threshold_seconds": threshold,
    }


def _offered_where(query, *, session: Session, start: datetime, end: datetime, filters: Filters):
    """Inbound calls that entered a queue in [start, end), narrowed by `filters`."""
    query = query.where(CallRecord.direction == "inbound", CallRecord.queued_at >= start, CallRecord.queued_at < end)
    if filters.queue:
        query = query.where(CallRecord.queue == filters.queue)
    if filters.agent:
        query = query.where(CallRecord.agent_extension == filters.agent)
    if filters.district_id:
        communities = areas_service.communities_under(session=session, area_id=filters.district_id)
        query = query.where(CallRecord.elder_id.in_(select(Elder.id).where(Elder.community_id.in_(communities))))
    return query


def tally_until_now(*, session: Session, start: datetime, now: datetime, threshold: int) -> Tally:
    """One tally of the calls queued since `start` (the wallboard's last hour). A caller still
    waiting is left out until the wait passes T: until then the call may yet be answered in time."""
    undecided = and_(CallRecord.state.in_(WAITING_STATES), CallRecord.queued_at > now - timedelta(seconds=threshold))
    query = _offered_where(select(*tally_columns(threshold)), session=session, start=start, end=now, filters=Filters())
    return Tally.of_row(session.exec(query.where(~undecided)).one())


def _uses_rollup(threshold: int, filters: Filters) -> bool:
    """The rollup holds T = ROLLUP_THRESHOLD per hour, queue and agent; a district needs the raw calls."""
    return threshold == rollup.ROLLUP_THRESHOLD and not filters.district_id


def _rollup_where(query, *, start: datetime, end: datetime, filters: Filters):
    query = query.where(CallRollup.bucket >= rollup.bucket_of(start), CallRollup.bucket < rollup.bucket_of(end))
    if filters.queue:
        query = query.where(CallRollup.queue == filters.queue)
    if filters.agent:
        query = query.where(CallRollup.agent == filters.agent)
    return query


def _dirty_hours(*, session: Session, start: datetime, end: datetime, threshold: int, filters: Filters) -> set[int] | None:
    """None: the whole range is read from the calls; otherwise the hours the rollup must not be
    trusted for (marked dirty by a write the bridge has not summed yet), read from the calls."""
    if not (_uses_rollup(threshold, filters) and rollup.covers(start, end)):
        return None
    return rollup.dirty_buckets(session, rollup.bucket_of(start), rollup.bucket_of(end))


def _in_hours(hours: set[int]):
    size = rollup.BUCKET_SECONDS
    return or_(*(and_(CallRecord.queued_at >= datetime.fromtimestamp(hour * size, timezone.utc),
                      CallRecord.queued_at < datetime.fromtimestamp((hour + 1) * size, timezone.utc)) for hour in sorted(hours)))


# The keys of a tally's row, labelled like its measures: the bucket (None: a row per agent) and the
# agent's extension ('': a row per bucket).
NO_BUCKET, NO_AGENT = literal_column("NULL").label("bucket"), literal_column("''").label("agent")


def tallies(*, session: Session, start: datetime, end: datetime, threshold: int,
            filters: Filters) -> tuple[dict[datetime, Tally], dict[str, Tally]]:
    """The tallies of [start, end) per hour or quarter hour (keyed by its start in UTC; either
    lies within one local hour) and per agent extension. From the rollup, with the hours marked
    dirty from the calls in one query grouped by hour and agent; or, where the rollup does not
    apply, all from the calls."""
    dirty = _dirty_hours(session=session, start=start, end=end, threshold=threshold, filters=filters)
    where = {"session": session, "start": start, "end": end, "filters": filters}
    if dirty is None:
        seconds = RAW_BUCKET_SECONDS
        rows = _rows_of_calls(threshold=threshold, **where)
    else:
        seconds = rollup.BUCKET_SECONDS
        rows = _rows_of_rollup(dirty=dirty, **where)
    per_bucket: dict[datetime, Tally] = defaultdict(Tally)
    per_agent: dict[str, Tally] = defaultdict(Tally)
    for row in rows:
        tally, hour, name = Tally.of_row(row), row._mapping["bucket"], row._mapping["agent"]
        if hour is not None:
            per_bucket[datetime.fromtimestamp(int(hour) * seconds, timezone.utc)].add(tally)
        if name:
            per_agent[name].add(tally)
    return per_bucket, per_agent


def _raw_tallies(*keys, session: Session, start: datetime, end: datetime, threshold: int, filters: Filters):
    return _offered_where(select(*keys, *tally_columns(threshold)), session=session, start=start, end=end, filters=filters)


def _rows_of_calls(*, session: Session, start: datetime, end: datetime, threshold: int, filters: Filters) -> list:
    """All from the calls, per quarter hour, then per agent (a month by both at once would be a
    row per agent-hour)."""
    where = {"session": session, "start": start, "end": end, "threshold": threshold, "filters": filters}
    bucket, agent = rollup.bucket_column(RAW_BUCKET_SECONDS).label("bucket"), rollup.AGENT_KEY.label("agent")
    return (session.exec(_raw_tallies(bucket, NO_AGENT, **where).group_by(bucket)).all()
            + session.exec(_raw_tallies(NO_BUCKET, agent, **where).group_by(agent)).all())


def _rows_of_rollup(*, session: Session, start: datetime, end: datetime, filters: Filters, dirty: set[int]) -> list:
    """The hours marked dirty from the calls, per hour and agent; every other hour from the rollup,
    per hour, then per agent."""
    rows = []
    if dirty:
        bucket, agent = rollup.bucket_column().label("bucket"), rollup.AGENT_KEY.label("agent")
        raw = _raw_tallies(bucket, agent, session=session, start=start, end=end, threshold=rollup.ROLLUP_THRESHOLD,
                           filters=filters)
        rows += session.exec(raw.where(_in_hours(dirty)).group_by(bucket, agent)).all()
    per_hour = _rollup_where(select(CallRollup.bucket.label("bucket"), NO_AGENT, *rollup_columns()), start=start, end=end,
                             filters=filters)
    per_agent = _rollup_where(select(NO_BUCKET, CallRollup.agent.label("agent"), *rollup_columns()).where(CallRollup.agent != ""),
                              start=start, end=end, filters=filters)
    if dirty:
        per_hour, per_agent = (query.where(CallRollup.bucket.not_in(dirty)) for query in (per_hour, per_agent))
    return rows + session.exec(per_hour.group_by(CallRollup.bucket)).all() + session.exec(per_agent.group_by(CallRollup.agent)).all()


def agent_activity_seconds(*, session: Session, tz, date_from: date, date_to: date, now: datetime | None = None,
                           agent: str | None = None) -> dict[str, dict[str, int]]:
    """Seconds each agent spent in each activity on the local days `date_from`…`date_to`: the
    closed stretches from their daily rollup, the open one (one per agent at most) up to `now`."""
    now = now or utcnow()
    query = (select(AgentActivityDay.extension, AgentActivityDay.activity, func.sum(AgentActivityDay.seconds))
             .where(AgentActivityDay.day >= date_from, AgentActivityDay.day <= date_to)
             .group_by(AgentActivityDay.extension, AgentActivityDay.activity))
    open_query = select(AgentStateLog.extension, AgentStateLog.interface, AgentStateLog.activity,
                        AgentStateLog.started_at).where(AgentStateLog.ended_at.is_(None))
    if agent:
        query = query.where(AgentActivityDay.extension == agent)
        open_query = open_query.where(AgentStateLog.extension == agent)
    seconds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, activity, total in session.exec(query).all():
        seconds[name][activity] += int(total or 0)
    for extension, interface, activity, started_at in session.exec(open_query).all():
        for day, part in rollup.split_by_day(started_at, now, tz):
            if date_from <= day <= date_to:
                seconds[extension or interface][activity] += part
    return seconds


def occupancy(activity: dict[str, int]) -> float | None:
    """Time in calls and wrap-up / time logged in and not paused (DESIGN.md)."""
    return rate(sum(activity.get(a, 0) for a in BUSY), sum(activity.get(a, 0) for a in LOGGED_IN))


def report(*, session: Session, tz, date_from: date, date_to: date, threshold: int, filters: Filters | None = None,
           now: datetime | None = None) -> dict:
    """The KPIs of the range, and split per day, per hour of day and per agent (with occupancy).
    A call counts on the local day and hour it entered the queue."""
    filters = filters or Filters()
    start, end = day_start_utc(date_from, tz), day_start_utc(date_to + timedelta(days=1), tz)
    total, by_day, by_hour = Tally(), defaultdict(Tally), defaultdict(Tally)
    per_bucket, agent_tallies = tallies(session=session, start=start, end=end, threshold=threshold, filters=filters)
    for at, tally in per_bucket.items():
        local = at.astimezone(tz)
        total.add(tally)
        by_day[local.date().isoformat()].add(tally)
        by_hour[local.hour].add(tally)
    agents = {name: {"answered": t.answered, "asa_seconds": _mean(t.answered_wait, t.answered),
                     "aht_seconds": _mean(t.handle, t.handled)} for name, t in agent_tallies.items() if t.answered}
    activity = {} if filters.queue or filters.district_id else agent_activity_seconds(
        session=session, tz=tz, date_from=date_from, date_to=date_to, now=now, agent=filters.agent)
    legs = leg_figures(session=session, start=start, end=end, filters=filters)
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "queue": filters.queue, "agent": filters.agent,
        "district_id": filters.district_id,
        "total": call_kpis(total, threshold=threshold),
        "by_day": [{"day": day, **call_kpis(tally, threshold=threshold)} for day, tally in sorted(by_day.items())],
        "by_hour": [{"hour": hour, **call_kpis(by_hour[hour], threshold=threshold)} for hour in range(24)],
        "by_agent": [_agent_row(name, agents.get(name), activity.get(name, {}), legs.get(name))
                     for name in sorted(set(agents) | set(activity) | set(legs))],
    }


def leg_figures(*, session: Session, start: datetime, end: datetime, filters: Filters) -> dict[str, dict]:
    """Per agent, from their own legs of the calls queued in [start, end): calls talked on
    (transfers received included), their talk, and callers they passed on. A transferred call
    counts, in `answered` / ASA / AHT, for the agent who finished it; here for each agent who
    talked on it, with their own part."""
    query = _offered_where(select(CallLeg.agent_extension, func.count(), func.coalesce(func.sum(CallLeg.talk_seconds), 0),
                                  count_where(CallLeg.ended_by == "transfer"))
                           .join(CallRecord, CallRecord.id == CallLeg.call_id).where(CallLeg.agent_extension.is_not(None)),
                           session=session, start=start, end=end, filters=replace(filters, agent=None))
    if filters.agent:
        query = query.where(CallLeg.agent_extension == filters.agent)
    return {agent: {"talked": int(count), "talk_seconds": int(talk), "transfers_out": int(out)}
            for agent, count, talk, out in session.exec(query.group_by(CallLeg.agent_extension))}


def _agent_row(name: str, calls: dict | None, activity: dict[str, int], legs: dict | None = None) -> dict:
    calls = calls or {"answered": 0, "asa_seconds": None, "aht_seconds": None}
    return {"agent": name, **calls, **(legs or {"talked": 0, "talk_seconds": 0, "transfers_out": 0}),
            "logged_in_seconds": sum(activity.get(a, 0) for a in LOGGED_IN),
            "busy_seconds": sum(activity.get(a, 0) for a in BUSY), "paused_seconds": activity.get(AgentActivity.PAUSED, 0),
            "occupancy": occupancy(activity)}


# Export headers (Chinese), in column order; rates are exported as percentages.
CALL_COLUMNS = {
    "offered": "进线量", "answered": "接通量", "abandoned": "放弃量", "short_abandons": "短时放弃量", "timeouts": "排队超时量",
    "answered_within_threshold": "及时接通量", "answer_rate": "人工接通率", "timely_answer_rate": "人工应答及时率",
    "service_level": "服务水平", "service_level_asterisk": "服务水平（Asterisk SL2 口径）", "abandon_rate": "放弃率",
    "asa_seconds": "平均应答时长（秒）", "longest_wait_seconds": "最长等待（秒）", "aht_seconds": "平均处理时长（秒）",
    "threshold_seconds": "及时阈值（秒）",
}
CALL_TABLES = {"total": ({}, "合计"), "by_day": ({"day": "日期"}, "按日"), "by_hour": ({"hour": "时段"}, "按时段"),
               "by_agent": ({"agent": "坐席分机", "answered": "接通量", "asa_seconds": "平均应答时长（秒）",
                             "aht_seconds": "平均处理时长（秒）", "talked": "通话次数（含转入）",
                             "talk_seconds": "本人通话时长（秒）", "transfers_out": "转出次数", "logged_in_seconds": "在线时长（秒）",
                             "busy_seconds": "通话及整理时长（秒）", "paused_seconds": "暂停时长（秒）",
                             "occupancy": "占用率"}, "按坐席")}



def call_table(report: dict, table: str) -> tuple[list[list], str]:
    """One of the report's tables for export: (rows, sheet title)."""
    keys, title = CALL_TABLES[table]
    if table == "by_agent":
        return table_rows(report["by_agent"], keys), title
    items = [report["total"]] if table == "total" else report[table]
    return table_rows(items, keys | CALL_COLUMNS), title
