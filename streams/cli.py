"""The `pulse` command. Every command takes the settings options, each showing its PULSE_* var."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from streams.errors import PulseError
from streams.settings import Settings

_SETTINGS_FIELDS = list(Settings.model_fields.items())


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per settings field; values not given stay with pydantic-settings (env)."""
    for name, info in reversed(_SETTINGS_FIELDS):
        env = f"PULSE_{name.upper()}"
        default = info.default
        kind = type(default) if isinstance(default, int | float) else str
        func = click.option(
            f"--{name.replace('_', '-')}", name, type=kind, default=None, show_envvar=True,
            envvar=env,
            help=f"{info.description or name} [default: {default}]",
        )(func)
    return func


def make_settings(options: dict[str, Any]) -> Settings:
    given = {k: v for k, v in options.items() if v is not None and k in Settings.model_fields}
    return Settings(**given)


def _fail(err: PulseError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Pulse: real-time product analytics and safety stream processing."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.command()
@click.option("--no-demo", is_flag=True, help="start services and a worker, but no demo traffic")
@settings_options
def dev(no_demo: bool, **options: Any) -> None:
    """Start the embedded broker, PostgreSQL and Redis, a worker and demo traffic (make run)."""
    from streams.dev import run_dev

    try:
        run_dev(make_settings(options), demo=not no_demo)
    except PulseError as err:
        _fail(err)


@main.command()
@click.option("--loglevel", default="WARNING", show_default=True)
@settings_options
def worker(loglevel: str, **options: Any) -> None:
    """Run a stream worker: ingest, validation, per-user state, sinks, /metrics."""
    from streams.worker import run_worker

    logging.getLogger().setLevel(loglevel)
    try:
        run_worker(make_settings(options), loglevel=loglevel)
    except PulseError as err:
        _fail(err)


@main.command()
@click.option("--app", "app_name", required=True, help="the app of the user")
@click.option("--user", "user_id", required=True,
              help="the user id as the app sends it (raw ids are pseudonymized as usual)")
@settings_options
def forget(app_name: str, user_id: str, **options: Any) -> None:
    """Forget a user (right to delete): remove their state, profile, triggers, streaks and
    funnel rows and their Redis profile; crisis audit rows stay with an anonymous user; day
    aggregates keep their counts. Sends a user_deleted event, applied in order with the
    user's other events."""
    import uuid

    from streams.connections import resolve
    from streams.plan import FORGET_EVENT, load_plans
    from streams.publish import Publisher

    settings = make_settings(options)
    if app_name not in load_plans(directory=settings.plans_dir):
        _fail(PulseError(f"no tracking plan for app {app_name!r}"))
    try:
        conn = resolve(settings)
    except PulseError as err:
        _fail(err)
        return
    publisher = Publisher(conn.kafka_bootstrap, settings.ingest_topic)
    event_id = f"forget-{uuid.uuid4()}"
    publisher.send(orjson.dumps({
        "event_id": event_id, "app": app_name, "event": FORGET_EVENT, "user_id": user_id,
        "timestamp": datetime.now(UTC).isoformat()}))
    publisher.flush(30)
    if publisher.summary.sent != 1:
        _fail(PulseError(f"the broker did not take the request: {publisher.summary.errors}"))
    click.echo(f"queued {FORGET_EVENT} for a user of {app_name} (event {event_id})")


@main.command()
@click.argument("file", default="-", type=click.File("rb"))
@click.option("--historical", is_flag=True,
              help="mark every event as a backfill (older than 7 days allowed)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@settings_options
def publish(file: Any, historical: bool, quiet: bool, **options: Any) -> None:
    """Publish JSONL events (FILE or - for stdin) to the ingest topic."""
    from streams.connections import resolve
    from streams.publish import publish_file

    settings = make_settings(options)
    try:
        conn = resolve(settings)
    except PulseError as err:
        _fail(err)
        return
    summary = publish_file(conn.kafka_bootstrap, settings.ingest_topic, file, historical,
                           show_progress=not quiet)
    click.echo(f"sent {summary.sent}, failed {summary.failed}"
               + (f" ({summary.errors})" if summary.failed else ""))
    if summary.failed:
        sys.exit(1)


def _aware(value: str | None) -> datetime | None:
    """An ISO 8601 instant with its offset: a naive time would be read in this machine's zone."""
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    if instant.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset (add Z or +03:00)")
    return instant


@main.command()
@click.option("--app", "app_name", required=True, help="app id, or 'all' for every plan")
@click.option("--users", default=100, show_default=True)
@click.option("--days", default=14, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--late", default=0.0, show_default=True, help="fraction of events delivered late")
@click.option("--duplicates", default=0.0, show_default=True, help="fraction delivered twice")
@click.option("--out", type=click.File("wb"), default="-", help="output file (default stdout)")
@click.option("--end", callback=lambda _ctx, _param, value: _aware(value), metavar="ISO-TIME",
              help="last instant of the traffic, ISO 8601 with an offset "
              "(default now); the same seed and end give the same file")
def generate(app_name: str, users: int, days: int, seed: int, late: float, duplicates: float,
             out: Any, end: datetime | None) -> None:
    """Generate realistic JSONL traffic for a plan: registration first, weekly rhythm, churn.

    Traffic follows the calendar (weekends are quieter in the plan's time zone), so a seed
    gives different traffic on different days unless --end pins it."""
    from streams.generate import GenOptions
    from streams.generate import generate as gen
    from streams.plan import load_plans

    plans = load_plans(directory=Settings().plans_dir)
    names = sorted(plans) if app_name == "all" else [app_name]
    for name in names:
        if name not in plans:
            raise click.BadParameter(f"no plan {name!r}; plans: {', '.join(sorted(plans))}")
    options = GenOptions(users=users, days=days, seed=seed, late_fraction=late,
                         duplicate_fraction=duplicates, end=end or datetime.now(UTC))
    for name in names:
        for event in gen(plans[name], options):
            out.write(orjson.dumps(event) + b"\n")


@main.command()
@click.option("--users", default=200, show_default=True)
@click.option("--backfill-days", default=30, show_default=True,
              help="days of history sent first (historical)")
@click.option("--rate", default=200.0, show_default=True, help="live events per second")
@click.option("--duration", default=None, type=float, help="stop after this many seconds")
@settings_options
def demo(users: int, backfill_days: int, rate: float, duration: float | None,
         **options: Any) -> None:
    """Demo producer: backfill history for every app, then send live traffic."""
    import io

    from streams.connections import resolve
    from streams.generate import GenOptions
    from streams.generate import generate as gen
    from streams.plan import load_plans
    from streams.publish import publish_file, run_demo

    settings = make_settings(options)
    conn = resolve(settings)
    plans = load_plans(directory=settings.plans_dir)
    if backfill_days:
        lines = io.BytesIO()
        gen_options = GenOptions(users=users, days=backfill_days, seed=1,
                                 end=datetime.now(UTC) - timedelta(minutes=5))
        for plan in plans.values():
            for event in gen(plan, gen_options):
                lines.write(orjson.dumps(event) + b"\n")
        lines.seek(0)
        summary = publish_file(conn.kafka_bootstrap, settings.ingest_topic, lines,
                               historical=True, show_progress=False)
        click.echo(f"demo: history sent {summary.sent}, failed {summary.failed}", err=True)
    run_demo(conn.kafka_bootstrap, settings.ingest_topic, plans, users=users, rate=rate,
             duration=duration)


@main.command(epilog="""\b
Sections: overview, cohorts, funnel, segments, churn_risk, paying_users, costs, daily, crisis.
Every section has rows of named columns; ratios are fractions 0-1, change_pct is in percent,
null = unknown (e.g. retention whose day has not come, or change from 0).
--format json: one object: app, period, and one key per section, each
  {title, key, columns, rows: {row: {column: value}}, notes: [..]}.
--format csv: header `section,row,column,value`, one line per value (empty = null); the
  period is section `period`, notes are column `note`.""")
@click.option("--app", "app_name", required=True)
@click.option("--day", "day", is_flag=False, flag_value="today", default=None, metavar="[D]",
              help="one local day: D (YYYY-MM-DD) or today (the default period)")
@click.option("--week", "period", flag_value="week", help="the 7 days ending on --date")
@click.option("--month", "period", flag_value="month", help="the 30 days ending on --date")
@click.option("--from", "date_from", default=None, help="first day of a custom range")
@click.option("--to", "date_to", default=None, help="last day of a custom range (default: today)")
@click.option("--date", "end", default=None,
              help="last day of --week/--month (default: today, in the app's time zone)")
@click.option("--cohorts", "cohort_kind", type=click.Choice(["day", "week"]), default="day",
              help="registration cohorts by day or by ISO week")
@click.option("--section", "sections", multiple=True,
              type=click.Choice(["overview", "cohorts", "funnel", "segments", "churn_risk",
                                 "paying_users", "costs", "daily", "crisis",
                                 "experiments", "monthly", "cohort_breakdowns"]),
              help="only these sections (repeatable; default: all)")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@settings_options
def report(app_name: str, day: str | None, period: str | None, date_from: str | None,
           date_to: str | None, end: str | None, cohort_kind: str, sections: tuple[str, ...],
           fmt: str, **options: Any) -> None:
    """Seed 001's admin view and seed 004's /admin_analytics report of an app, from
    PostgreSQL: each section compared with the period of the same length before it."""
    from streams.connections import resolve
    from streams.plan import load_plans
    from streams.report import build_report
    from streams.report_period import local_today, resolve_period
    from streams.report_render import render, select

    settings = make_settings(options)
    plans = load_plans(directory=settings.plans_dir)
    if app_name not in plans:
        raise click.BadParameter(f"no plan {app_name!r}; plans: {', '.join(sorted(plans))}")
    plan = plans[app_name]
    today = local_today(plan.tz, datetime.now(UTC))

    def parse(value: str | None, option: str) -> Any:
        try:
            return date.fromisoformat(value) if value and value != "today" else None
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD",
                                     param_hint=option) from None

    chosen = [name for name, given in (("--day", day), ("--week/--month", period),
                                       ("--from/--to", date_from or date_to)) if given]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one period: {' or '.join(chosen)}")
    try:
        span = resolve_period(
            "range" if (date_from or date_to) else period or "day", today,
            end=parse(day, "--day") or parse(end, "--date"),
            date_from=parse(date_from, "--from"), date_to=parse(date_to, "--to"))
        conn = resolve(settings)
    except PulseError as err:
        _fail(err)
        return
    full = build_report(conn.database_url, plan, span, today, cohort_kind)
    click.echo(render(select(full, sections), fmt), nl=False)


@main.group()
def plans() -> None:
    """Tracking plans."""


@plans.command("check")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def plans_check(files: tuple[Path, ...]) -> None:
    """Validate tracking plans (default: the bundled ones); print file:line: problem."""
    from streams.plan import load_plans

    try:
        loaded = load_plans(list(files) if files else None, directory=Settings().plans_dir)
    except PulseError as err:
        _fail(err)
        return
    for name, plan in sorted(loaded.items()):
        click.echo(f"ok  {name:<18} {len(plan.events):>4} events  {len(plan.activity_events):>4} "
                   f"activity  tz {plan.timezone:<14} registration "
                   f"{plan.registration.event or 'first activity'}")


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@settings_options
def topics_create(**options: Any) -> None:
    """Create every Pulse topic with its partitions and configs (idempotent)."""
    import asyncio

    from streams.connections import resolve
    from streams.topics import create_topics

    settings = make_settings(options)
    created = asyncio.run(create_topics(resolve(settings).kafka_bootstrap, settings))
    click.echo("created: " + (", ".join(created) if created else "nothing (all exist)"))


@topics.command("describe")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@settings_options
def topics_describe(fmt: str, **options: Any) -> None:
    """Show every Pulse topic as the broker reports it: partitions, replicas, retention,
    cleanup policy. Exit status 1 when a topic is missing or differs from what `topics create`
    asks for."""
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from streams.connections import resolve
    from streams.topics import describe_topics, human_ms

    settings = make_settings(options)
    try:
        conn = resolve(settings)
    except PulseError as err:
        _fail(err)
        return
    states = asyncio.run(describe_topics(conn.kafka_bootstrap, settings))
    if fmt == "json":
        click.echo(orjson.dumps([s.as_dict() for s in states], option=orjson.OPT_INDENT_2))
    else:
        table = Table(title=f"Pulse topics on {conn.kafka_bootstrap}")
        table.add_column("topic")
        table.add_column("partitions", justify="right")
        table.add_column("replicas", justify="right")
        table.add_column("retention", justify="right")
        table.add_column("cleanup.policy")
        table.add_column("status")
        for state in states:
            problems = state.problems()
            table.add_row(
                state.spec.name,
                str(state.partitions) if state.exists else "-",
                str(state.replication_factor) if state.exists else "-",
                human_ms(state.configs.get("retention.ms")) if state.exists else "-",
                (state.configs.get("cleanup.policy", "not reported") if state.exists
                 else "-"),
                "[red]" + "; ".join(problems) + "[/]" if problems else "[green]ok[/]")
        console = Console()
        console.print(table)
        notes = sorted({s.configs_note for s in states if s.configs_note})
        unreported = [s.spec.name for s in states
                      if s.exists and not s.configs_note and set(s.spec.configs) - set(s.configs)]
        for note in notes:
            console.print(f"note: {note}", markup=False)
        if unreported:
            console.print("note: the broker does not report every config of "
                          f"{', '.join(unreported)} (the embedded broker, Tansu, reports only "
                          "configs set at creation)", markup=False)
    if any(state.problems() for state in states):
        sys.exit(1)


@main.group(invoke_without_command=True)
@settings_options
@click.pass_context
def gateway(ctx: click.Context, **options: Any) -> None:
    """Run the HTTP ingestion gateway (seed 001 batch API, Segment, PostHog, Amplitude)."""
    if ctx.invoked_subcommand is not None:
        return
    from streams.gateway.server import run_gateway

    try:
        run_gateway(make_settings(options))
    except PulseError as err:
        _fail(err)


@gateway.command("hash-key")
@click.argument("key")
def gateway_hash_key(key: str) -> None:
    """Print the SHA-256 digest of a write KEY, for PULSE_GATEWAY_KEYS."""
    from streams.gateway.auth import hash_key

    click.echo(hash_key(key))


@main.group()
def deadletters() -> None:
    """Dead letters: counts by reason, safe previews, replay after a plan fix."""


def deadletter_filters(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--since", default=None,
                        help="written since: 30m, 12h, 7d, 2w or an ISO 8601 time")(func)
    func = click.option("--reason", "reasons", multiple=True,
                        help="reason code, e.g. unknown_event (repeatable)")(func)
    return click.option("--app", "apps", multiple=True, help="app id (repeatable)")(func)


def _deadletter_filter(apps: tuple[str, ...], reasons: tuple[str, ...],
                       since: str | None) -> Any:
    from streams.deadletters import Filter, parse_since

    try:
        when = parse_since(since, datetime.now(UTC)) if since else None
    except PulseError as err:
        raise click.BadParameter(str(err)) from None
    return Filter(frozenset(apps), frozenset(reasons), when)


@deadletters.command("list")
@deadletter_filters
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@settings_options
def deadletters_list(apps: tuple[str, ...], reasons: tuple[str, ...], since: str | None,
                     fmt: str, **options: Any) -> None:
    """Count dead letters by app and reason (and how many were replayed)."""
    from rich.console import Console

    from streams.connections import resolve
    from streams.deadletters import Summary, read_deadletters, read_replayed, render_summary

    settings = make_settings(options)
    wanted = _deadletter_filter(apps, reasons, since)
    try:
        bootstrap = resolve(settings).kafka_bootstrap
        replayed = read_replayed(bootstrap, settings.deadletter_topic)
        summary = Summary()
        for letter in read_deadletters(bootstrap, settings.deadletter_topic):
            if wanted.matches(letter):
                summary.add(letter, letter.ref in replayed)
    except PulseError as err:
        _fail(err)
        return
    if fmt == "json":
        click.echo(orjson.dumps({"groups": summary.rows(),
                                 "total": sum(summary.counts.values()),
                                 "replayed": sum(summary.replayed.values())}).decode())
    else:
        render_summary(summary, Console())


@deadletters.command("show")
@deadletter_filters
@click.option("--limit", default=20, show_default=True, help="most dead letters shown")
@click.option("--raw", is_flag=True,
              help="also print each payload as sent: it may hold message text or personal "
                   "data, so only when the preview is not enough")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="json: one object per line")
@settings_options
def deadletters_show(apps: tuple[str, ...], reasons: tuple[str, ...], since: str | None,
                     limit: int, raw: bool, fmt: str, **options: Any) -> None:
    """Print dead letters: place, reasons, source and a preview without any free text."""
    from rich.console import Console

    from streams.connections import resolve
    from streams.deadletters import describe, read_deadletters, render_letter

    settings = make_settings(options)
    wanted = _deadletter_filter(apps, reasons, since)
    console = Console()
    if raw:
        click.echo("warning: --raw prints payloads as sent; they may hold message text or "
                   "personal data (seed 000 §7): do not copy them elsewhere", err=True)
    shown = 0
    try:
        bootstrap = resolve(settings).kafka_bootstrap
        for letter in read_deadletters(bootstrap, settings.deadletter_topic):
            if shown >= limit:
                break
            if not wanted.matches(letter):
                continue
            item = describe(letter, raw)
            if fmt == "json":
                click.echo(orjson.dumps(item).decode())
            else:
                render_letter(item, console)
            shown += 1
    except PulseError as err:
        _fail(err)


@deadletters.command("replay")
@deadletter_filters
@click.option("--dry-run", is_flag=True, help="count what would be replayed, send nothing")
@click.option("--historical", is_flag=True,
              help="mark each replayed event historical, for events now older than "
                   "PULSE_LATENESS_DAYS")
@click.option("--include-replayed", is_flag=True,
              help="send again what was replayed before (the worker drops duplicates within "
                   "PULSE_DEDUPE_DAYS)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@settings_options
def deadletters_replay(apps: tuple[str, ...], reasons: tuple[str, ...], since: str | None,
                       dry_run: bool, historical: bool, include_replayed: bool, fmt: str,
                       **options: Any) -> None:
    """Re-publish dead letters that the current plans accept to the ingest topic, once each."""
    import asyncio

    from streams.connections import resolve
    from streams.deadletters import (
        ReplayResult,
        plan_replay,
        read_deadletters,
        read_replayed,
        send_replay,
    )
    from streams.plan import load_plans
    from streams.privacy import pseudonymizer_for
    from streams.topics import create_topics
    from streams.validate import Limits

    settings = make_settings(options)
    wanted = _deadletter_filter(apps, reasons, since)
    try:
        plans_loaded = load_plans(directory=settings.plans_dir)
        # Validated as the worker will (raw ids of a raw-id plan are pseudonymized there).
        limits = Limits(max_record_bytes=settings.max_record_bytes,
                        lateness=timedelta(days=settings.lateness_days),
                        future_tolerance=timedelta(seconds=settings.future_tolerance_seconds),
                        ids=pseudonymizer_for(plans_loaded, settings.user_id_key()))
        bootstrap = resolve(settings).kafka_bootstrap
        replayed = read_replayed(bootstrap, settings.deadletter_topic)
        letters = [letter for letter in read_deadletters(bootstrap, settings.deadletter_topic)
                   if wanted.matches(letter)]
        plan = plan_replay(letters, replayed, plans_loaded, datetime.now(UTC), limits,
                           historical=historical, include_replayed=include_replayed)
        result = ReplayResult(matched=len(letters), skipped=dict(sorted(plan.skipped.items())))
        if dry_run:
            result.skipped["dry_run"] = len(plan.send)
        elif plan.send:
            asyncio.run(create_topics(bootstrap, settings))
            result.published, result.failed = send_replay(
                bootstrap, settings.ingest_topic, settings.deadletter_topic, plan)
    except PulseError as err:
        _fail(err)
        return
    if fmt == "json":
        click.echo(orjson.dumps(result.as_dict()).decode())
    else:
        skipped = ", ".join(f"{k} {v}" for k, v in result.skipped.items()) or "none"
        click.echo(f"matched {result.matched}, published {result.published}, failed "
                   f"{result.failed}; skipped: {skipped}")
    if result.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
