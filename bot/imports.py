"""CSV import: `o2c import <customers|products|orders|invoices|payments> FILE.csv` (SPEC §4).

Finance teams move data around in spreadsheets, so a CSV file is treated like one batch of API
requests with three promises:

* **All or nothing.** The whole file runs in one transaction; one bad row rolls everything
  back. A half-imported file is worse than none: nobody can tell which rows to send again.
* **Every error at once, by row and column** (`row 4, column quantity: must be greater than
  0`), numbered as a spreadsheet shows them (header = row 1), so the user fixes the file in one
  pass instead of one error per attempt. Each row runs in a SAVEPOINT, so a row the workflows
  refuse is undone and the rows after it are still checked.
* **The same rules as the REST API.** Cells are converted to the input models the API takes
  as request bodies (`workflows.inputs`) and then handed to the same workflows the API calls,
  so a row the API would refuse is refused here with the same reason.

Real-world files are accepted as spreadsheets save them: UTF-8 with or without a BOM (or
UTF-16 with a BOM), `,` `;` or tab delimiters, CRLF, quoted cells holding delimiters or line
breaks, blank lines, and whitespace around values.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.clock import Clock
from bot.db import Database
from workflows import cash_application, inputs, invoicing, masterdata, orders
from workflows.content_ids import Occurrences, digest_id
from workflows.errors import Conflict, DomainError

ACTOR = "import"
SOURCE = "csv"


@dataclass
class ImportReport:
    """What an import did: `count` records created or updated, or `errors` and nothing."""

    kind: str
    count: int = 0
    unchanged: int = 0  # rows already stored (payments re-sent with their external_id)
    errors: list[str] = field(default_factory=list)  # at most MAX_ERRORS + "and N more"
    error_count: int = 0  # all of them

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Columns:
    """A kind's columns: the REST API fields of SPEC §4, flattened to one row."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    integers: frozenset[str] = frozenset()
    booleans: frozenset[str] = frozenset()
    key: str = ""  # the column blamed when a row clashes with a stored record

    @property
    def all(self) -> tuple[str, ...]:
        return self.required + self.optional


COLUMNS = {
    "customers": Columns(
        ("external_id", "name", "currency", "credit_limit", "payment_terms"),
        ("billing_email", "billing_address", "shipping_address", "collector", "sales_rep",
         "credit_reviewed", "tax_rate_pct"),
        booleans=frozenset({"credit_reviewed"}), key="external_id"),
    "products": Columns(
        ("sku", "name", "unit_price", "currency", "on_hand"),
        ("max_discount_pct", "revenue_type", "cost", "service_months", "ssp"),
        integers=frozenset({"on_hand", "service_months"}), key="sku"),
    "orders": Columns(
        ("customer", "sales_rep", "currency", "sku", "quantity"),
        ("order_ref", "external_id", "order_date", "unit_price", "discount_pct", "notes",
         "service_start", "service_end", "billing"),
        integers=frozenset({"quantity"}), key="external_id"),
    "invoices": Columns(
        ("number", "customer", "currency", "issue_date", "due_date", "total"),
        ("order", "payment_terms"),
        key="number"),
    "payments": Columns(
        ("amount", "currency", "received_at"),
        ("payer_name", "reference", "customer", "method", "external_id"), key="external_id"),
}
ORDER_FIELDS = ("customer", "sales_rep", "currency", "order_date", "external_id", "notes")
LINE_FIELDS = ("sku", "quantity", "unit_price", "discount_pct", "service_start", "service_end",
               "billing")

MAX_ERRORS = 100  # errors listed in a report; the rest are counted
TRUE = {"true", "yes", "y", "1"}
FALSE = {"false", "no", "n", "0"}
WHOLE = re.compile(r"^[+-]?[0-9]{1,20}$")  # ASCII digits; the bound is checked later
SEP_HINT = re.compile(r"^sep=(.)\r?\n", re.IGNORECASE)
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")
PATTERN_HINTS = {
    "amount": "must be a decimal amount like 1250.00 (a dot for decimals, no thousands "
              "separators or currency symbols)",
    "percent": "must be a percentage like 12.5",
    "currency": "must be a 3-letter currency code like USD",
    "user": "must be a Slack user id such as U012AB3CD",
}
HINT_OF = {"credit_limit": "amount", "unit_price": "amount", "total": "amount",
           "amount": "amount", "cost": "amount", "ssp": "amount", "tax_rate_pct": "percent",
           "max_discount_pct": "percent", "discount_pct": "percent", "currency": "currency",
           "collector": "user", "sales_rep": "user"}


class FileProblem(Exception):
    """The file as a whole cannot be read; nothing row by row is worth reporting."""


@dataclass
class Row:
    number: int  # as a spreadsheet shows it: the header is row 1
    values: dict[str, str]  # column -> stripped text, empty cells left out


class Problems:
    """Errors by (row, column); the first one reported for a cell wins, so a bad cell is not
    reported twice (once by the conversion, once as "missing" by the model)."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str | None, str]] = []
        self._cells: set[tuple[int, str]] = set()

    def add(self, row: int, column: str | None, detail: str) -> None:
        if column is not None:
            if (row, column) in self._cells:
                return
            self._cells.add((row, column))
        self._items.append((row, column, detail))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def messages(self, limit: int = MAX_ERRORS) -> list[str]:
        """The first `limit` errors in row order, then "and N more errors" if there are more:
        a file of a million bad rows gets a report a person can read, not megabytes."""
        def text(row: int, column: str | None, detail: str) -> str:
            where = "header" if row == 0 else f"row {row}"
            return f"{where}, column {column}: {detail}" if column else f"{where}: {detail}"
        items = sorted(self._items, key=lambda item: item[0])
        shown = [text(*item) for item in items[:limit]]
        if len(items) > limit:
            shown.append(f"and {len(items) - limit} more error(s)")
        return shown


def import_csv(db: Database, kind: str, path: Path, *, clock: Clock | None = None
               ) -> ImportReport:
    """Import one file of `kind`: everything in it, or (with `errors`) nothing. Every row is
    imported at one moment of `clock` (an order without a date is dated that day)."""
    now = (clock or Clock()).now()
    report = ImportReport(kind)
    columns = COLUMNS.get(kind)
    if columns is None:
        report.errors.append(f"unknown kind {kind!r}; use one of {', '.join(COLUMNS)}")
        return report
    problems = Problems()
    try:
        rows = read_rows(Path(path), columns, problems)
    except FileProblem as exc:
        report.errors.append(str(exc))
        return report
    units = UNITS[kind](rows, columns, problems)
    if kind == "payments":
        units = keyed_payments(units)
    if kind in ONCE_PER_KEY:
        units = once_per_key(units, kind, columns, problems, report)
    with db.session() as session:
        try:
            if kind == "payments":
                _run_payments(session, db, units, columns, problems, report)
            elif kind == "invoices":
                _run_invoices(session, units, columns, problems, report)
            else:
                for unit in units:
                    _run(session, kind, unit, columns, problems, report, now)
            if problems:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
    if problems:
        report.errors, report.error_count = problems.messages(), len(problems)
        report.count = report.unchanged = 0
    return report


# -- reading the file -----------------------------------------------------------------------------
def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileProblem(f"file not found: {path}") from None
    except IsADirectoryError:
        raise FileProblem(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise FileProblem("this is a spreadsheet workbook (e.g. .xlsx), not CSV; save it as "
                          "\"CSV UTF-8\" first")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise FileProblem("the file starts like UTF-16 text but is not") from None
    if b"\x00" in raw:
        raise FileProblem("this is a binary file, not CSV text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"the file is not UTF-8 text (invalid byte at position {exc.start});"
                          " save it as \"CSV UTF-8\"") from None


def sniff_delimiter(text: str) -> str:
    """`,` unless the header line holds more `;` (European spreadsheets) or tabs."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: header.count(d) for d in ",;\t"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def normalise_column(name: str) -> str:
    """`" External ID "` -> `external_id`: headers are typed by people."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_rows(path: Path, columns: Columns, problems: Problems) -> list[Row]:
    """Rows of the file keyed by column; header problems are reported with row 0."""
    text = read_text(path)
    delimiter = sniff_delimiter(text)
    hint = SEP_HINT.match(text)
    if hint:  # Excel's "sep=;" first line: it names the delimiter and is not shown as a row
        delimiter, text = hint.group(1), text[hint.end():]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    number = 0
    try:
        for number, record in enumerate(reader, start=1):
            if any(cell.strip() for cell in record):
                records.append((number, record))
    except csv.Error as exc:
        raise FileProblem(f"row {number + 1}: cannot be read as CSV ({exc})") from None
    if not records:
        raise FileProblem(f"the file is empty; the first row must name the columns: "
                          f"{', '.join(columns.all)}")
    _, header = records[0]  # blank lines above the header still count as spreadsheet rows
    names = [normalise_column(cell) for cell in header]
    known = [n for n in names if n in columns.all]
    if not known:
        raise FileProblem("no known column names in the first row; it must name the "
                          f"columns: {', '.join(columns.all)}")
    missing = [c for c in columns.required if c not in names]
    for name, original in zip(names, header, strict=True):
        if name and name not in columns.all:
            problems.add(0, original.strip(), "unknown column; the columns are "
                         + ", ".join(columns.all))
    for name in {n for n in names if n and names.count(n) > 1}:
        problems.add(0, name, "appears more than once")
    for name in missing:
        problems.add(0, name, "required column is missing")
    if missing:
        return []
    rows = []
    for number, record in records[1:]:
        if len(record) > len(names) and any(c.strip() for c in record[len(names):]):
            problems.add(number, None,
                         f"has {len(record)} values but the header has {len(names)} columns")
            continue
        unnamed = [i + 1 for i, (name, cell) in enumerate(zip(names, record, strict=False))
                   if not name and cell.strip()]
        if unnamed:
            problems.add(number, None, f"has a value in column #{unnamed[0]}, which has no "
                         "name in the header")
        values = {name: cell.strip() for name, cell in zip(names, record, strict=False)
                  if name in columns.all and cell.strip()}
        rows.append(Row(number, values))
    return rows


# -- cells -> input models ------------------------------------------------------------------------
def typed_cells(row: Row, columns: Columns, problems: Problems,
                only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Text cells -> the JSON types the API takes: ints and booleans parsed, amounts stay
    strings (the API refuses floats for money)."""
    out: dict[str, Any] = {}
    for name, text in row.values.items():
        if only is not None and name not in only:
            continue
        if name in columns.integers:
            if not WHOLE.match(text):
                problems.add(row.number, name, f"must be a whole number, not {text!r}")
                continue
            out[name] = int(text)
        elif name in columns.booleans:
            if text.lower() not in TRUE | FALSE:
                problems.add(row.number, name, "must be true or false (yes/no, 1/0)")
                continue
            out[name] = text.lower() in TRUE
        elif name == "received_at" and DATE_ONLY.match(text):
            out[name] = f"{text}T00:00:00+00:00"  # a bank export's booking date, taken as UTC
        else:
            out[name] = text
    return out


def friendly(error: dict, column: str) -> str:
    """pydantic's messages, rephrased for someone holding a spreadsheet."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return "must not be negative" if ctx.get("ge") == 0 else f"must be {ctx.get('ge')} or more"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return PATTERN_HINTS.get(HINT_OF.get(column, ""), error.get("msg", "is invalid"))
    if kind.startswith("date_"):
        return "must be a date like 2026-11-23"
    if kind == "timezone_aware":
        return "needs a time zone, e.g. 2026-11-23T10:00:00Z"
    if kind.startswith("datetime_"):
        return "must be a date, or a date and time like 2026-11-23T10:00:00Z"
    return error.get("msg", "is invalid")


def validate(model: type[BaseModel], data: dict, problems: Problems,
             locate: Callable[[tuple], tuple[int, str]]) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            row, column = locate(tuple(error.get("loc", ())))
            problems.add(row, column, friendly(error, column))
        return None


@dataclass
class Unit:
    """One workflow call: a row, or (for orders) the rows of one order."""

    rows: list[Row]
    model: BaseModel
    blame: dict[str, int] = field(default_factory=dict)  # order field -> row that gave it
    column_of: dict[str, str] = field(default_factory=dict)  # field -> the column giving it


def single_rows(model: type[BaseModel]) -> Callable[[list[Row], Columns, Problems], list[Unit]]:
    def build(rows: list[Row], columns: Columns, problems: Problems) -> list[Unit]:
        units = []
        for row in rows:
            data = typed_cells(row, columns, problems)
            checked = validate(model, data, problems,
                               lambda loc, row=row: (row.number, str(loc[0]) if loc else "row"))
            if checked is not None:
                units.append(Unit([row], checked))
        return units
    return build


ORDER_KEY_MISSING = ("is required (or order_ref): the order's id in your system, so that "
                     "importing the file again cannot create the order twice")


def order_units(rows: list[Row], columns: Columns, problems: Problems) -> list[Unit]:
    """One order per `order_ref` (or `external_id`). Order-level cells may be repeated on
    every line or given once, but never disagree.

    Every order needs a key the database keeps (`Order.external_id`): its `external_id`, else
    its `order_ref`. A row with neither is refused: nothing would tell the same order
    imported again from a second order of the same goods (repeat orders are common, and an
    order without a date is dated on the day it is imported), so no key can be derived from
    its content as payments' are (`keyed_payments`)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        ref = row.values.get("order_ref") or row.values.get("external_id")
        if not ref:
            problems.add(row.number, "external_id", ORDER_KEY_MISSING)
            continue
        groups.setdefault(ref, []).append(row)
    units = []
    for ref, group in groups.items():
        data: dict[str, Any] = {}
        blame: dict[str, int] = {}
        for row in group:
            cells = typed_cells(row, columns, problems, only=ORDER_FIELDS)
            for name, value in cells.items():
                if name not in data:
                    data[name], blame[name] = value, row.number
                elif data[name] != value:
                    problems.add(row.number, name, f"order {ref!r} has {data[name]!r} on row "
                                 f"{blame[name]}; all lines of an order must agree")
        data["lines"] = [typed_cells(row, columns, problems, only=LINE_FIELDS)
                         for row in group]
        column_of = {}
        if "external_id" not in data:  # the order_ref is the order's key
            data["external_id"], column_of["external_id"] = ref, "order_ref"

        def locate(loc: tuple, group: list[Row] = group, blame: dict = blame) -> tuple[int, str]:
            if len(loc) >= 3 and loc[0] == "lines" and isinstance(loc[1], int):
                return group[loc[1]].number, str(loc[2])
            name = str(loc[0]) if loc else "row"
            return blame.get(name, group[0].number), "sku" if name == "lines" else name

        checked = validate(inputs.OrderIn, data, problems, locate)
        if checked is not None:
            units.append(Unit(group, checked, blame, column_of))
    return units


UNITS: dict[str, Callable[[list[Row], Columns, Problems], list[Unit]]] = {
    "customers": single_rows(inputs.CustomerIn),
    "products": single_rows(inputs.ProductIn),
    "orders": order_units,
    "invoices": single_rows(inputs.InvoiceIn),
    "payments": single_rows(inputs.PaymentIn),
}

KEYED = "csv:h:"  # the external_id of a payment row keyed by its content


def keyed_payments(units: list[Unit]) -> list[Unit]:
    """A payment row without an `external_id` gets one from what it says (amount, currency,
    moment received, payer, reference, customer, method) and its occurrence among the
    identical rows of the file (`workflows.content_ids`): importing the file again records
    nothing twice, and two identical rows are still two payments. The same row in another
    file is taken for the same payment, as a bank statement's line is."""
    occurrences = Occurrences()
    for unit in units:
        payment = unit.model
        if payment.external_id is not None:
            continue
        parts = (format(Decimal(payment.amount).normalize(), "f"), payment.currency.upper(),
                 payment.received_at.astimezone(UTC).isoformat(), payment.payer_name or "",
                 payment.reference or "", payment.customer or "", payment.method or "")
        ident = digest_id(KEYED, [*parts, str(occurrences.next(*parts))])
        unit.model = payment.model_copy(update={"external_id": ident})
    return units


# Master data is upserted by its key: a key twice in one file would make the last row silently
# win. (Orders group their rows by key, invoices refuse a number twice, payments compare the
# money of an external_id given twice.)
ONCE_PER_KEY = ("customers", "products")


def once_per_key(units: list[Unit], kind: str, columns: Columns, problems: Problems,
                 report: ImportReport) -> list[Unit]:
    """Each record once per file: a row repeating an earlier one cell for cell is skipped
    (counted unchanged); one with the same key and other values is refused, naming both rows,
    since nobody can tell which of the two is meant."""
    first: dict[str, Row] = {}
    kept = []
    for unit in units:
        row, key = unit.rows[0], getattr(unit.model, columns.key)
        earlier = first.setdefault(key, row)
        if earlier is row:
            kept.append(unit)
        elif earlier.values == row.values:
            report.unchanged += 1
        else:
            problems.add(row.number, columns.key, f"{key} is also on row {earlier.number} "
                         f"with other values; give each {kind[:-1]} once")
    return kept


# -- models -> workflows --------------------------------------------------------------------------
def store(session: Session, kind: str, model: Any, now: datetime) -> bool:
    """Call the workflow the REST API calls for this kind; True if something changed."""
    if kind == "customers":
        return masterdata.upsert_customer(session, model, actor=ACTOR).changed
    if kind == "products":
        return masterdata.upsert_product(session, model, actor=ACTOR).changed
    if kind == "orders":
        orders.create_order(session, model, actor=ACTOR, source=SOURCE, now=now)
    elif kind == "invoices":
        invoicing.ingest_erp_invoice(session, model, actor=ACTOR)
    else:
        _, created = cash_application.record_payment(session, model, actor=ACTOR,
                                                     source=SOURCE)
        return created
    return True


def _run(session: Session, kind: str, unit: Unit, columns: Columns, problems: Problems,
         report: ImportReport, now: datetime) -> None:
    first = unit.rows[0].number
    try:
        with session.begin_nested():
            changed = store(session, kind, unit.model, now)
    except DomainError as exc:
        if not exc.errors:
            problems.add(first, columns.key if isinstance(exc, Conflict) else None, exc.detail)
        for error in exc.errors:
            row, column = _blame(error.field, unit, columns)
            problems.add(row, column, error.detail if column else
                         f"{error.field}: {error.detail}")
        return
    except IntegrityError as exc:
        problems.add(first, None, "clashes with data already stored "
                     f"({str(exc.orig).splitlines()[0] if exc.orig else exc})")
        return
    if changed:
        report.count += 1
    else:
        report.unchanged += 1


def _run_payments(session: Session, db: Database, units: list[Unit], columns: Columns,
                  problems: Problems, report: ImportReport) -> None:
    """Payments go through one cash-application run for the whole file: matched and written
    in batches (`workflows.cash_runs.CashRun`), each row's refusal reported by row and column
    like any other."""
    cash_application.claim_unkeyed(
        session, [u.model for u in units if (u.model.external_id or "").startswith(KEYED)],
        source=SOURCE, actor=ACTOR)  # payments imported before rows were keyed
    run = cash_application.CashRun(session, actor=ACTOR, source=SOURCE,
                                   names=db.customer_names)
    tickets = [(unit, run.add(unit.model)) for unit in units]
    run.flush()
    for unit, ticket in tickets:
        if ticket.error is not None:
            _report(ticket.error, unit, columns, problems)
        elif ticket.created:
            report.count += 1
        else:
            report.unchanged += 1


def _run_invoices(session: Session, units: list[Unit], columns: Columns, problems: Problems,
                  report: ImportReport) -> None:
    """Invoices go in with one call for the whole file (`invoicing.ingest_erp_invoices`: the
    same rules as the API, what they need read once, rows written together); each row's
    refusal is reported by row and column like any other."""
    results = invoicing.ingest_erp_invoices(session, [unit.model for unit in units],
                                            actor=ACTOR)
    for unit, outcome in zip(units, results, strict=True):
        if isinstance(outcome, DomainError):
            _report(outcome, unit, columns, problems)
        else:
            report.count += 1


def _report(error: DomainError, unit: Unit, columns: Columns, problems: Problems) -> None:
    first = unit.rows[0].number
    if not error.errors:
        problems.add(first, columns.key if isinstance(error, Conflict) else None, error.detail)
    for e in error.errors:
        row, column = _blame(e.field, unit, columns)
        problems.add(row, column, e.detail if column else f"{e.field}: {e.detail}")


def _blame(field_name: str, unit: Unit, columns: Columns) -> tuple[int, str | None]:
    """A workflow's field name (`lines[2].quantity`, `customer`) -> (row, CSV column)."""
    match = LINE_FIELD.match(field_name)
    if match and int(match.group(1)) < len(unit.rows):
        return unit.rows[int(match.group(1))].number, match.group(2)
    row = unit.blame.get(field_name, unit.rows[0].number)
    if field_name in unit.column_of:
        return row, unit.column_of[field_name]
    return row, field_name if field_name in columns.all else None
