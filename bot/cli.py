"""The `o2c` command line (SPEC §4)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TypeVar

from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("o2c")


def _settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


def cmd_migrate(args: argparse.Namespace) -> int:
    from bot.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.server import create_app

    settings = _settings().require_for_serve()
    from bot.observability import configure_logging

    configure_logging(settings.o2c_log_format)
    if settings.o2c_sandbox:  # the local sandbox never listens beyond this computer
        from sandbox.web import check_bind_host

        check_bind_host(args.host)
    app = create_app(settings)
    if settings.socket_mode:
        _start_socket_mode(app.state.runtime, settings)
    # JSON logs: uvicorn's own loggers go through the root handler too (one format)
    extra = {"log_config": None} if settings.o2c_log_format == "json" else {}
    uvicorn.run(app, host=args.host, port=settings.port, log_level="info",
                proxy_headers=True, **extra)
    return 0


def _start_socket_mode(runtime, settings: Settings) -> None:
    """With SLACK_APP_TOKEN, Slack talks over a WebSocket; HTTP still serves the API."""
    import threading

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(runtime.bolt, settings.slack_app_token.get_secret_value())
    threading.Thread(target=handler.start, name="socket-mode", daemon=True).start()
    log.info("Socket Mode connected")


def cmd_seed(args: argparse.Namespace) -> int:
    if not args.demo:
        print("nothing to do: use `o2c seed --demo`", file=sys.stderr)
        return 2
    from bot.clock import Clock
    from bot.db import Database
    from bot.seed import SeedError, seed_demo

    settings = _settings()
    db = Database(settings.database_url, policy=settings.policy())
    try:
        summary = seed_demo(db, today=args.as_of
                            or Clock(settings.o2c_business_timezone).business_today())
    except SeedError as exc:
        print(f"o2c: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


# Python's cyclic garbage collector looks at the young objects every 700 allocations and,
# every few hundred thousand, at every object the process holds. A statement's import holds
# millions (the customer directory, up to `cash_runs.BOOK_ITEMS` open invoices, the engine's
# caches) and allocates millions more per chunk, nearly all freed by reference counting: at
# 20,000 entries of 25,000 customers those scans were 13 % of the import's CPU, and found
# almost nothing (the few cycles die young). This command is its own short-lived process, so
# it scans less often while it imports; young cycles are still collected.
IMPORT_GC_THRESHOLD = (100_000, 50, 1_000)


@contextmanager
def _import_gc() -> Iterator[None]:
    """Fewer garbage-collector scans for one import (see `IMPORT_GC_THRESHOLD`): what the
    process holds before it (modules, settings) is frozen out of every scan, young objects are
    scanned every 100,000 allocations instead of 700, the whole heap practically never."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*IMPORT_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


IMPORT_ATTEMPTS = 3  # an import PostgreSQL rolled back as a deadlock is run again, whole
T = TypeVar("T")


def lost_race(exc: BaseException) -> str:
    """What happened to a transaction PostgreSQL rolled back as lost to another writer."""
    from bot.db import LOST_A_RACE

    return ("another writer changed the same rows at the same moment "
            f"({LOST_A_RACE[exc.orig.sqlstate]})")


def _imported(run: Callable[[], T]) -> T:
    """`run()` (one whole import, one transaction), again when PostgreSQL rolled it back
    because it lost a race with another writer (a deadlock: nothing of it was kept), up to
    `IMPORT_ATTEMPTS` times; each attempt starts afresh (its own engine and caches)."""
    from bot.db import lost_a_race

    for attempt in range(1, IMPORT_ATTEMPTS + 1):
        try:
            return run()
        except Exception as exc:
            if not lost_a_race(exc) or attempt == IMPORT_ATTEMPTS:
                raise
            print(f"o2c: {lost_race(exc)}: nothing was kept; importing again "
                  f"(attempt {attempt + 1} of {IMPORT_ATTEMPTS})", file=sys.stderr)
    raise AssertionError("unreachable")


def cmd_import_bank_statement(args: argparse.Namespace) -> int:
    """`o2c import bank-statement FILE [--date-order auto|dmy|mdy]`: CSV or camt.053; every
    credit is matched. The date order of a CSV is the option's, else the setting's
    (`O2C_BANK_CSV_DATE_ORDER`)."""
    from bot.db import Database
    from workflows.bank_statements import import_statement

    settings = _settings()

    def run():
        db = Database(settings.database_url, policy=settings.policy())
        try:
            with db.session() as session, _import_gc():
                report = import_statement(session, Path(args.file), names=db.customer_names,
                                          date_order=args.date_order
                                          or settings.o2c_bank_csv_date_order)
                if report.errors:
                    session.rollback()
                else:
                    session.commit()
            return report
        finally:
            db.dispose()

    report = _imported(run)
    if report.errors:
        return _refused(args.file, report.errors)
    print(f"{args.file}: {json.dumps(report.summary())}")
    return 0


def _refused(path: str, errors: list[str], count: int | None = None) -> int:
    """An import is all or nothing: list the errors (row and column; the first 100, then how
    many more) and store nothing."""
    from bot.imports import MAX_ERRORS

    print(f"{path}: {count or len(errors)} error(s); nothing was imported", file=sys.stderr)
    if count is None and len(errors) > MAX_ERRORS:  # a bank statement's list, not yet capped
        errors = [*errors[:MAX_ERRORS], f"and {len(errors) - MAX_ERRORS} more error(s)"]
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return 1


def cmd_import(args: argparse.Namespace) -> int:
    if args.kind == "bank-statement":
        return cmd_import_bank_statement(args)
    if args.date_order:
        print("o2c: --date-order is for a bank statement (CSV) only", file=sys.stderr)
        return 2
    from bot.clock import Clock
    from bot.db import Database
    from bot.imports import import_csv

    settings = _settings()

    def run():
        db = Database(settings.database_url, policy=settings.policy())
        try:
            return import_csv(db, args.kind, Path(args.file),
                              clock=Clock(settings.o2c_business_timezone))
        finally:
            db.dispose()

    report = _imported(run)
    if report.errors:
        return _refused(args.file, report.errors, report.error_count)
    unchanged = f", {report.unchanged} already stored as is" if report.unchanged else ""
    print(f"{args.file}: imported {report.count} {args.kind}{unchanged}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bot.deps import build_deps

    settings = _settings()
    options = {}
    if args.period is not None:
        if args.job != "revenue-close":
            print("--period is an option of revenue-close only", file=sys.stderr)
            return 2
        options["period"] = args.period
    deps = build_deps(settings)
    try:
        return _run_job(args, deps, options)
    finally:  # its connections close with the command (`main` also runs inside tests)
        deps.db.dispose()


def _run_job(args: argparse.Namespace, deps, options: dict) -> int:
    from bot import jobs
    from bot.scheduler import run_exclusive
    from workflows.errors import DomainError

    try:
        # as_of None: today, by deps.clock
        summary = run_exclusive(deps, args.job, args.as_of, **options)
    except jobs.UnknownJob:
        known = ", ".join(sorted(jobs.JOBS))
        print(f"unknown job {args.job!r}; known jobs: {known}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"o2c: {exc.detail}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    if args.deliver:
        from bot.outbox import make_integrations_worker, make_worker

        deps.settings.require("slack_bot_token")
        make_worker(deps, deps.settings).drain()
        make_integrations_worker(deps, deps.settings).drain()
    else:
        print("notifications are queued; a running `o2c serve` delivers them "
              "(or pass --deliver)", file=sys.stderr)
    return 0


def cmd_close_period(args: argparse.Namespace) -> int:
    """`o2c close-period 2026-06`: close AR for that month and every month before it (see
    `workflows.periods`); closing a month already closed changes nothing."""
    from api.serialize import period_close_out
    from bot.server import build_deps
    from workflows import periods
    from workflows.errors import DomainError

    deps = build_deps(_settings())
    try:
        with deps.db.transaction() as session:
            row, created = periods.close_period(session, period=args.period, actor=args.by,
                                                now=deps.clock.now())
            data = period_close_out(row, requested=args.period,
                                    created=created).model_dump(mode="json")
    except DomainError as exc:
        print(f"o2c: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        deps.db.dispose()
    print(json.dumps(data, indent=2))
    if not created:
        print(f"{args.period} was already closed (through {row.period}); nothing changed",
              file=sys.stderr)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from bot.db import Database
    from models.limits import record_id
    from workflows import outbox

    db = Database(_settings().database_url)
    if args.retry:
        row_id = None if args.retry == "all" else record_id(args.retry)
        if args.retry != "all" and row_id is None:
            print(f"--retry takes a message id or 'all', not {args.retry!r}", file=sys.stderr)
            return 2
        with db.transaction() as session:
            count = outbox.requeue_failed(session, row_id)
        print(f"{count} message(s) queued again")
        return 0
    with db.read_session() as session:
        listed = (("failed", outbox.failed(session)), ("waiting", outbox.queued(session)))
    for title, rows in listed:
        if not rows:
            print(f"no {title} messages")
        for row in rows:
            payload = row.payload or {}
            target = payload.get("to") or payload.get("channel") or ""
            what = payload.get("template")
            if row.transport == "webhook":  # o2c webhooks replay sends it again
                what = f"event #{payload.get('event_id')}"
                target = f"subscription #{payload.get('subscription_id')}"
            elif row.transport in ("hubspot", "stripe"):
                what = ", ".join(f"{k}={v}" for k, v in sorted(payload.items()))[:120]
            print(f"{title} #{row.id} {row.transport} {row.method} "
                  f"{what} -> {target} attempts={row.attempts} "
                  f"created={row.created_at:%Y-%m-%d %H:%M} error={row.last_error}")
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    """`o2c webhooks list | deliveries ID | replay ID (--event N... | --failed | --since T) |
    enable ID | rotate ID`: outbound webhook subscriptions (created through the REST API)."""
    from datetime import datetime, timedelta

    from bot.clock import Clock
    from bot.db import Database
    from workflows import webhooks
    from workflows.errors import DomainError

    settings = _settings()
    db = Database(settings.database_url)
    try:
        if args.action == "list":
            with db.read_session() as session:
                rows = webhooks.subscriptions(session)
            if not rows:
                print("no webhook subscriptions")
            for row in rows:
                failing = f" failing since {row.failing_since:%Y-%m-%d %H:%M}" \
                    if row.failing_since else ""
                print(f"#{row.id} {row.status} {row.url} events={','.join(row.events)}"
                      f"{failing}")
            return 0
        if args.id is None:
            print(f"o2c webhooks {args.action} needs a subscription id", file=sys.stderr)
            return 2
        if args.action == "deliveries":
            with db.read_session() as session:
                log_rows = webhooks.deliveries(session, args.id, limit=args.limit)
            for delivery, event in log_rows:
                print(f"{delivery.attempted_at:%Y-%m-%d %H:%M:%S} event #{event.id} "
                      f"{event.type} {event.uid} attempt {delivery.attempt} "
                      f"{'ok' if delivery.ok else 'FAILED'} {delivery.status_code or '-'} "
                      f"{delivery.duration_ms}ms {delivery.error or ''}".rstrip())
            return 0
        if args.action == "rotate":
            grace = timedelta(hours=settings.o2c_webhooks_secret_grace_hours)
            with db.transaction() as session:
                row = webhooks.rotate_secret(
                    session, subscription_id=args.id, actor="cli", grace=grace,
                    now=Clock(settings.o2c_business_timezone).now())
                secret, until = row.secret, row.previous_secret_until
            print(f"new signing secret of webhook subscription #{args.id} (shown this once: "
                  f"give it to the receiver):\n{secret}\nthe previous secret signs beside it "
                  f"until {until:%Y-%m-%d %H:%M} UTC (O2C_WEBHOOKS_SECRET_GRACE_HOURS)")
            return 0
        with db.transaction() as session:
            if args.action == "enable":
                changed = webhooks.enable_subscription(session, subscription_id=args.id,
                                                       actor="cli")
                print(f"webhook subscription #{args.id} "
                      f"{'enabled' if changed else 'was already active'}")
                return 0
            if not (args.event or args.failed or args.since):
                print("say what to replay: --event ID (repeatable), --failed, or --since "
                      "YYYY-MM-DDTHH:MM:SSZ", file=sys.stderr)
                return 2
            since = None
            if args.since:
                since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
                if since.tzinfo is None:
                    print("--since needs a time zone, e.g. 2026-06-01T00:00:00Z",
                          file=sys.stderr)
                    return 2
            count = webhooks.replay(session, subscription_id=args.id, event_ids=args.event,
                                    failed=args.failed, since=since, actor="cli")
        print(f"{count} event(s) queued again for webhook subscription #{args.id} (same "
              "webhook-id as before); a running `o2c serve` delivers them")
        return 0
    except DomainError as exc:
        print(f"o2c: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        db.dispose()


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(port=demo_port(args.port), database=args.database,
                    oauth=args.oauth)


def demo_port(given: int | None) -> int:
    """`--port`, else the PORT variable `o2c serve` honours too, else 3000."""
    if given is not None:
        return given
    value = os.environ.get("PORT", "").strip()
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 65536 \
        else 3000


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="o2c", description="Order-to-cash in Slack.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (Slack, REST API, health checks)")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server listens on all
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="upgrade the database to the latest schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load data")
    p.add_argument("--demo", action="store_true", help="a realistic demo company")
    p.add_argument("--as-of", type=_date, help="treat this date as today")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("import", help="import a CSV file (all rows or none), or a bank "
                       "statement (CSV or camt.053 XML)")
    p.add_argument("kind", choices=["customers", "products", "orders", "invoices", "payments",
                                    "bank-statement"])
    p.add_argument("file")
    p.add_argument("--date-order", choices=["auto", "dmy", "mdy"],
                   help="bank-statement: how a CSV writes its dates (day/month/year or "
                   "month/day/year) when no day above 12 shows it; default "
                   "O2C_BANK_CSV_DATE_ORDER (auto: such a file is refused)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("run", help="run a scheduled job now")
    p.add_argument("job", help="digest, digest-schedule, dunning, approval-reminders, "
                   "dispute-reminders, statements, kpi-report, kpi-snapshot, kpi-rollup-merge, "
                   "subscription-billing, revenue-close, idempotency-keys, log-retention")
    p.add_argument("--as-of", type=_date, help="evaluate as of this date (YYYY-MM-DD)")
    p.add_argument("--period", help="revenue-close: the month to close, YYYY-MM (and every "
                   "month before it)")
    p.add_argument("--deliver", action="store_true",
                   help="also deliver the queued notifications now (needs SLACK_BOT_TOKEN)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("close-period", help="close AR for a month (and every month before "
                       "it): later settlements dated inside it are booked in the first open "
                       "month")
    p.add_argument("period", help="the month, YYYY-MM")
    p.add_argument("--by", default="cli", help="who closes it, for the audit log (e.g. your "
                   "Slack user id)")
    p.set_defaults(func=cmd_close_period)

    p = sub.add_parser("outbox", help="show failed and waiting notifications (e-mails wait "
                       "here without SMTP_URL), or queue failed ones again")
    p.add_argument("--retry", metavar="ID|all")
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("webhooks", help="outbound webhook subscriptions: list, delivery "
                       "log, replay events, enable a disabled one, rotate the signing secret")
    p.add_argument("action", choices=["list", "deliveries", "replay", "enable", "rotate"])
    p.add_argument("id", type=int, nargs="?", help="the subscription id")
    p.add_argument("--event", type=int, action="append", help="replay this event id")
    p.add_argument("--failed", action="store_true", help="replay every event it failed to get")
    p.add_argument("--since", help="replay every event queued for it since (ISO time)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("demo", help="fresh demo database + server + local Slack sandbox")
    p.add_argument("--port", type=int, default=None,
                   help="default: $PORT, as for `o2c serve`, else 3000")
    p.add_argument("--database", default="o2c-demo.db")
    p.add_argument("--oauth", action="store_true",
                   help="no bot token: install the app into the sandbox through the OAuth "
                        "flow first (/slack/install)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"o2c: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from bot.db import lost_a_race, unavailable

        if lost_a_race(exc):  # PostgreSQL rolled the whole transaction back
            print(f"o2c: {lost_race(exc)}: everything this command did was rolled back; run "
                  "it again", file=sys.stderr)
            return 3
        if not unavailable(exc):
            raise
        print(f"o2c: {database_problem(exc)}", file=sys.stderr)
        return 3


def database_problem(exc: BaseException) -> str:
    """One line for a database that cannot be reached: where, and what the driver said."""
    from bot.db import describe

    try:
        where = describe(_settings().database_url)
    except SettingsError:
        where = "the database"
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (f"cannot reach the database {where}: {reason[0] if reason else type(exc).__name__}"
            "; is it running? (nothing was changed)")


if __name__ == "__main__":
    sys.exit(main())
