"""Bank statements: `o2c import bank-statement FILE` for CSV exports and ISO 20022 camt.053.

Each incoming credit becomes a payment through the cash-application engine (a `CashRun`, as
every other payment goes), so it is matched like any other. Three promises:

* **Re-importing changes nothing.** Every line gets a stable external id: the bank's own
  reference for the entry (camt `AcctSvcrRef`, `NtryRef`; a CSV's transaction id column)
  prefixed with the account, or else a hash of account, date, amount, currency, payer,
  reference and the payer's own `EndToEndId` plus its occurrence number in the file (two
  identical lines on one day are two payments). Overlapping statements are therefore safe to
  import. The payer's `EndToEndId` alone is no id: the payer chooses it (`PAYMENT`, `1`), so
  two payers' credits could share it — one of them was taken for the other and lost. Lines
  that an earlier version did identify by it keep that id when it is theirs (same amount,
  currency, day and payer: `_Ids`), so statements imported before still change nothing.
* **All or nothing.** A file that cannot be read, or a line that is refused, imports nothing
  and every problem is reported by line (CSV row number, or `Stmt/Ntry/TxDtls` position).
* **Only money in.** Debits, reversals and entries not yet booked (`PDNG`) are skipped.

Files are read as a stream, so a statement of 100,000 entries takes the memory of a few
hundred: camt.053 with `defusedxml`'s `iterparse` (each entry dropped once read), CSV row by
row (read twice: once to learn the file's encoding, date order and decimal mark, once to
import). Lines go to the engine in chunks (`CashRun`); the whole file is still one
transaction — a line refused late in the file means nothing is imported (the caller rolls
back).

Each payment is received on the line's booking date and valued on its **value date** (camt
`ValDt`, a CSV's value-date column; the booking date when there is none): the day the money
moved, which dates its allocations in the as-of reports (`workflows.receivables`).

XML is parsed with `defusedxml`, which refuses DTDs, entity expansion ("billion laughs") and
external entities: a statement file comes from outside and must not be able to read local
files or exhaust memory. The stdlib parser alone does not forbid entity declarations.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import Element

import sqlalchemy as sa
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from sqlmodel import Session

from models import Payment, PaymentStatus
from models.money import exponent
from workflows.cash_candidates import CustomerNames
from workflows.cash_runs import CashRun, Ticket, checked
from workflows.content_ids import Occurrences, digest_id
from workflows.errors import DomainError
from workflows.inputs import PaymentIn, build

ACTOR = "import"
SOURCE = "bank"


class StatementError(Exception):
    """The file as a whole cannot be read."""


@dataclass
class StatementLine:
    where: str  # "row 4" or "Stmt 1, Ntry 3, TxDtls 2"
    booked_on: date
    amount: str  # decimal string, major units
    currency: str
    payer_name: str | None
    reference: str | None
    entry_ref: str | None  # the bank's reference for this line
    account: str | None
    external_id: str = ""
    value_on: date | None = None  # the value date, when the bank gives one apart
    payer_ref: str | None = None  # the payer's EndToEndId: part of the hashed id, never alone
    # what identified the line before the payer's EndToEndId stopped being an id on its own
    # (`bank:<account>:<legacy_ref>`): kept by a payment imported then that is this line's
    legacy_ref: str | None = None

    @property
    def value_date(self) -> date:
        return self.value_on or self.booked_on

    @property
    def received_at(self) -> datetime:
        return datetime.combine(self.booked_on, time(12, 0), tzinfo=UTC)


@dataclass
class StatementReport:
    format: str = ""
    lines: int = 0
    created: int = 0
    unchanged: int = 0
    skipped: int = 0  # debits, reversals, pending entries
    outcomes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"format": self.format, "lines": self.lines, "created": self.created,
                "unchanged": self.unchanged, "skipped": self.skipped,
                **{str(k): v for k, v in sorted(self.outcomes.items())}}


# -- helpers -------------------------------------------------------------------------------------
def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text or None


OTHER_MARK = {".": ",", ",": "."}


class AmbiguousAmount(ValueError):
    """One separator followed by exactly three digits ("1,500", "1.500"): thousands or
    decimals, as the file and the currency tell (`parse_amount`)."""

    def __init__(self, text: str, negative: bool) -> None:
        super().__init__(f"ambiguous amount: {text!r}")
        self.text, self.negative = text, negative


def _written(text: str) -> tuple[bool, str]:
    """(negative, digits and separators) of an amount as a bank writes it."""
    raw = (text or "").strip().replace("\u00a0", "").replace(" ", "").replace("'", "")
    negative = raw.startswith("-") or (raw.startswith("(") and raw.endswith(")"))
    return negative, raw.strip("()+-")


def decimal_mark_shown(text: str) -> str | None:
    """The decimal mark an amount shows by itself: the last separator when it has both, the
    other one when one is repeated ("1.234.567"), the only one when what follows it cannot
    be a group of thousands (not three digits, or after "0" or four digits); None when it has
    no separator, or one that could be either ("1,500")."""
    _, raw = _written(text)
    if "," in raw and "." in raw:
        return "," if raw.rfind(",") > raw.rfind(".") else "."
    for mark in OTHER_MARK:
        if raw.count(mark) > 1:
            return OTHER_MARK[mark]
        if mark in raw:
            head, _, tail = raw.partition(mark)
            return None if len(tail) == 3 and _THOUSANDS_HEAD.fullmatch(head) else mark
    return None


_THOUSANDS_HEAD = re.compile(r"[1-9][0-9]{0,2}")


def parse_amount(text: str, *, decimal_mark: str | None = None,
                 places: int | None = None) -> Decimal:
    """Bank formats: "1,234.56", "1.234,56", "1234,56", "-12.00", "(12.00)", "+500".

    One separator followed by exactly three digits ("1,500", "1.500") is read with
    `decimal_mark`, the file's (`_Marks`), or else as thousands when the currency has fewer
    than three decimals (`places`: "1.500" EUR cannot be 1.500); otherwise it raises
    AmbiguousAmount: money is never guessed."""
    negative, raw = _written(text)
    mark = decimal_mark_shown(text)
    if mark is None and ("," in raw or "." in raw):  # "1,500": thousands or decimals
        sep = "," if "," in raw else "."
        if decimal_mark is not None:
            mark = decimal_mark
        elif places is not None and places < 3:
            mark = OTHER_MARK[sep]
        else:
            raise AmbiguousAmount(text, negative)
    whole, fraction = raw, ""
    if mark is not None and mark in raw:
        whole, _, fraction = raw.rpartition(mark)
        fraction = "." + fraction
    group = re.escape(OTHER_MARK.get(mark or ".", ","))
    if not re.fullmatch(rf"[0-9]+|[0-9]{{1,3}}({group}[0-9]{{2}})*({group}[0-9]{{3}})+",
                        whole) or not re.fullmatch(r"(\.[0-9]+)?", fraction):  # ASCII only
        raise ValueError(f"not an amount: {text!r}")
    try:
        value = Decimal(re.sub(r"[^0-9]", "", whole) + fraction)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    return -value if negative else value


def _ref_id(line: StatementLine) -> str | None:
    """The line's id from the bank's own reference, when it has one that fits."""
    if line.entry_ref:
        ident = f"bank:{line.account or '-'}:{line.entry_ref}"
        if len(ident) <= 200:
            return ident
    return None


def _external_id(line: StatementLine, occurrence: int) -> str:
    account = line.account or "-"
    ident = _ref_id(line)
    if ident:
        return ident
    parts = [account, line.booked_on.isoformat(), line.amount, line.currency,
             line.payer_name or "", line.reference or "", str(occurrence)]
    if line.payer_ref:  # (a line without one hashes as it always did)
        parts.append(f"e2e:{line.payer_ref}")
    return digest_id("bank:h:", parts)


Claim = Callable[[StatementLine, str], bool]


class _Ids:
    """Stable external ids, line by line: two identical lines of a file (same account, day,
    amount, currency, payer, reference, entry reference, payer's reference) are its first and
    second occurrence (`content_ids.Occurrences`; only lines without a reference of the
    bank's are counted: the others are identified by that reference).

    `claim(line, id)`: whether a payment already recorded under the id an earlier version gave
    the line (`legacy_ref`) is this line's (`import_statement` asks the database); each such id
    is claimed by one line of the file at most."""

    def __init__(self, claim: Claim | None = None) -> None:
        self.occurrences = Occurrences()
        self.claim = claim
        self.claimed: set[str] = set()

    def assign(self, line: StatementLine) -> StatementLine:
        if line.legacy_ref and self.claim is not None:
            legacy = f"bank:{line.account or '-'}:{line.legacy_ref}"
            if legacy not in self.claimed and self.claim(line, legacy):
                self.claimed.add(legacy)
                line.external_id = legacy
                return line
        ident = _ref_id(line)
        if ident:
            line.external_id = ident
            return line
        occurrence = self.occurrences.next(
            line.account, line.booked_on, line.amount, line.currency, line.payer_name,
            line.reference, line.entry_ref, line.payer_ref)
        line.external_id = _external_id(line, occurrence)
        return line


def _assign_ids(lines: list[StatementLine]) -> None:
    ids = _Ids()
    for line in lines:
        ids.assign(line)


def read_text(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


Source = Path | bytes


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else Path(source).open("rb")


def _encoding(source: Source) -> str:
    """UTF-16 by its BOM, else UTF-8 if the whole file decodes as such (read as a stream),
    else Windows-1252 (what spreadsheets on Windows save)."""
    with _open(source) as raw:
        head = raw.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        raw.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        try:
            while chunk := raw.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig"


def _text_rows(source: Source, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(record number, cells) of every CSV record, the delimiter sniffed from the start."""
    with _open(source) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        sample = text.read(4096)
        delimiter = max(",;\t", key=sample.count)
        text.seek(0)
        yield from enumerate(csv.reader(text, delimiter=delimiter), start=1)


# -- CSV -----------------------------------------------------------------------------------------
CSV_COLUMNS = {
    "date": ("bookingdate", "bookdate", "postingdate", "date", "transactiondate",
             "valuedate", "valuta", "buchungstag", "datum", "booked"),
    # only when another column is the booking date (a file with one date column books and
    # values on it)
    "value_date": ("valuedate", "valuta", "valdt", "wertstellung", "valuedatum"),
    "amount": ("amount", "creditamount", "credit", "betrag", "amt", "value"),
    "debit": ("debit", "debitamount"),
    "currency": ("currency", "ccy", "currencycode", "waehrung", "wahrung"),
    "payer": ("payername", "payer", "counterpartyname", "counterparty", "debtorname",
              "debtor", "remitter", "orderingparty", "name", "from"),
    "reference": ("remittanceinformation", "remittance", "reference", "paymentreference",
                  "description", "details", "purpose", "memo", "narrative",
                  "verwendungszweck", "text"),
    "entry_ref": ("entryreference", "ntryref", "acctsvcrref", "bankreference",
                  "transactionid", "transactionreference", "id"),
    "payer_ref": ("endtoendid", "endtoendreference", "e2eid"),
    "account": ("iban", "account", "accountnumber", "accountiban"),
    "indicator": ("creditdebit", "cdtdbtind", "creditdebitindicator", "dc", "direction",
                  "type"),
}
DATE_ORDERS = ("auto", "dmy", "mdy")  # `O2C_BANK_CSV_DATE_ORDER`, `--date-order`
_NUMERIC_DATE = re.compile(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})")


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _parse_date(text: str, day_first: bool) -> date:
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text):
        return date.fromisoformat(text[:10])
    match = _NUMERIC_DATE.fullmatch(text)
    if not match:
        raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD or DD.MM.YYYY)")
    a, b, year = (int(g) for g in match.groups())
    day, month = (a, b) if day_first else (b, a)
    return date(year, month, day)


def _date_order_shown(text: str) -> str | None:
    """"dmy" or "mdy" when a date shows its order (a day above 12; or, written with dots,
    05.11.2026, day first: the dotted form is the day-first one of German, Swiss, Nordic and
    other European exports, never a US one's), "either" when it reads as two dates, None when
    it reads one way only (ISO, 05/05/2026) or not at all."""
    text = text.strip()
    match = _NUMERIC_DATE.fullmatch(text)
    if not match:
        return None
    a, b = int(match.group(1)), int(match.group(2))
    if (a > 12) != (b > 12):
        return "dmy" if a > 12 else "mdy"
    if a != b and a <= 12:
        return "dmy" if text.count(".") == 2 else "either"
    return None


def _day(text: str, day_first: bool) -> str:
    day = _parse_date(text, day_first)
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


@dataclass
class _Shown:
    """What a CSV export shows of how it writes amounts and dates (its first pass): each
    decimal mark and date order, with the first row showing it (row number, cell)."""

    marks: dict[str, int] = field(default_factory=dict)
    orders: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def see(self, number: int, amounts: list[str], dates: list[tuple[str, str]]) -> None:
        for text in amounts:
            mark = decimal_mark_shown(text)
            if mark is not None:
                self.marks.setdefault(mark, number)
        for column, text in dates:
            order = _date_order_shown(text)
            if order is not None:
                self.orders.setdefault(order, (number, column, text.strip()))

    @property
    def decimal_mark(self) -> str | None:
        return next(iter(self.marks)) if len(self.marks) == 1 else None

    def ambiguous(self, text: str, currency: str) -> str:
        """Why an amount like "1,500" cannot be read (`AmbiguousAmount`)."""
        sep = "," if "," in text else "."
        readings = [parse_amount(text, decimal_mark=m) for m in (OTHER_MARK[sep], sep)]
        said = f"{text!r} could be {abs(readings[0])} or {abs(readings[1])} {currency}"
        if len(self.marks) > 1:
            return (f"{said}, and the file writes decimals both with "
                    + " and with ".join(f"{m!r} (row {n})" for m, n in self.marks.items()))
        return (f"{said}, and no other amount in the file shows whether ',' or '.' is its "
                "decimal mark")

    def day_first(self, date_order: str) -> bool:
        """Whether the file's dates are read day first: as `date_order` says, else as the
        file shows; a file that does not show it, yet has a date that reads both ways
        (11/05/2026), is refused: a day is never guessed."""
        if date_order not in DATE_ORDERS:
            raise StatementError(f"date order {date_order!r}: use one of "
                                 f"{', '.join(DATE_ORDERS)}")
        if date_order != "auto":
            return date_order == "dmy"
        if "dmy" in self.orders and "mdy" in self.orders:
            (dn, _, dt), (mn, _, mt) = self.orders["dmy"], self.orders["mdy"]
            raise StatementError(f"the file writes dates day first (row {dn}: {dt!r}) and "
                                 f"month first (row {mn}: {mt!r}); fix the file")
        if "mdy" in self.orders:
            return False
        if "dmy" not in self.orders and "either" in self.orders:
            number, column, text = self.orders["either"]
            raise StatementError(
                f"row {number}, column {column}: {text!r} could be {_day(text, True)} or "
                f"{_day(text, False)}, and no date in the file has a day above 12 to tell; "
                "give the date order: dmy or mdy (--date-order, or the setting "
                "O2C_BANK_CSV_DATE_ORDER)")
        return True


def _decimals(value: Decimal) -> int:
    """The decimals an amount needs: 1500.00 needs none (banks pad "1500.00" in JPY)."""
    return max(-value.normalize().as_tuple().exponent, 0)


# the entry reference column as versions before `payer_ref` chose it: `legacy_ref`
_LEGACY_ENTRY_REF = ("entryreference", "ntryref", "acctsvcrref", "bankreference",
                     "transactionid", "transactionreference", "endtoendid", "id")


def _csv_columns(header: list[str]) -> dict[str, int]:
    headers = [_key(h) for h in header]
    index: dict[str, int] = {}
    for name, aliases in CSV_COLUMNS.items():
        for alias in aliases:
            if alias in headers and headers.index(alias) not in index.values():
                index[name] = headers.index(alias)
                break
    legacy = next((headers.index(a) for a in _LEGACY_ENTRY_REF if a in headers), None)
    if legacy is not None and legacy != index.get("entry_ref"):
        index["legacy_ref"] = legacy
    missing = [n for n in ("date", "amount", "currency") if n not in index]
    if missing:
        raise StatementError(f"header: missing column(s) {', '.join(missing)}; found "
                             f"{', '.join(header)}")
    return index


def _csv_lines(source: Source, reading: Reading, date_order: str = "auto",
               ) -> Iterator[StatementLine | str]:
    """Credit lines of a bank's CSV export, or "row N, column X: ..." errors, as a stream.
    The first pass learns the encoding, the date order and the decimal mark, each as the file
    shows it (`_Shown`): "1,500" is read as the file's other amounts write decimals, else as
    its currency allows, else refused; 11/05/2026 is read as the file's dates with a day
    above 12 are written (or as `date_order`: "dmy", "mdy"), else the file is refused."""
    encoding = _encoding(source)
    index: dict[str, int] | None = None
    shown = _Shown()

    def cell(row: list[str], name: str) -> str | None:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) and row[i].strip() else None

    for number, row in _text_rows(source, encoding):
        if not any(c.strip() for c in row):
            continue
        if index is None:
            index = _csv_columns(row)
            continue
        shown.see(number, [t for t in (cell(row, "amount"), cell(row, "debit")) if t],
                  [(c, t) for c, t in (("date", cell(row, "date")),
                                       ("value date", cell(row, "value_date"))) if t])
    if index is None:
        raise StatementError("the file is empty")
    day_first = shown.day_first(date_order)

    header_seen = False
    for number, row in _text_rows(source, encoding):
        if not any(c.strip() for c in row):
            continue
        if not header_seen:
            header_seen = True
            continue
        where = f"row {number}"
        try:
            amount_text = cell(row, "amount")
            if not amount_text and cell(row, "debit"):
                reading.skipped += 1
                continue
            if not amount_text:
                raise ValueError("column amount: missing")
            currency = (cell(row, "currency") or "").upper()
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise ValueError("column currency: must be a 3-letter code like EUR")
            indicator = (cell(row, "indicator") or "").upper()
            debit = indicator in ("DBIT", "D", "DEBIT", "DR", "OUT")
            places = exponent(currency)
            try:
                amount = parse_amount(amount_text, decimal_mark=shown.decimal_mark,
                                      places=places)
            except AmbiguousAmount as exc:
                if exc.negative or debit:  # not money in: skipped however it reads
                    reading.skipped += 1
                    continue
                raise ValueError(f"column amount: {shown.ambiguous(amount_text, currency)}"
                                 ) from None
            except ValueError as exc:
                raise ValueError(f"column amount: {exc}") from None
            if amount < 0 or debit:
                reading.skipped += 1
                continue
            if amount == 0:
                raise ValueError("column amount: must not be zero")
            if _decimals(amount) > places:  # refused, never rounded
                raise ValueError(f"column amount: {amount_text!r} is {amount}, more decimals "
                                 f"than {currency} has ({places})")
            try:
                booked = _parse_date(cell(row, "date") or "", day_first)
            except ValueError as exc:
                raise ValueError(f"column date: {exc}") from None
            valued = None
            if cell(row, "value_date"):
                try:
                    valued = _parse_date(cell(row, "value_date"), day_first)
                except ValueError as exc:
                    raise ValueError(f"column value date: {exc}") from None
        except ValueError as exc:
            yield f"{where}, {exc}"
            continue
        yield StatementLine(
            where=where, booked_on=booked, amount=str(amount), currency=currency,
            payer_name=_clean(cell(row, "payer")), reference=_clean(cell(row, "reference")),
            entry_ref=_clean(cell(row, "entry_ref")), account=_clean(cell(row, "account")),
            value_on=valued, payer_ref=_clean(cell(row, "payer_ref")),
            legacy_ref=_clean(cell(row, "legacy_ref")))


def parse_csv(text: str, date_order: str = "auto",
              ) -> tuple[list[StatementLine], int, list[str]]:
    """(credit lines, skipped debit lines, errors by row) of a CSV export held in memory."""
    reading = Reading("csv")
    lines, errors = _split(_csv_lines(text.encode("utf-8"), reading, date_order))
    return lines, reading.skipped, errors


# -- camt.053 ------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# (`_camt_lines` strips every tag of its namespace as it is read, so a child is found by its
# local name with ElementTree's own `find`/`findall`, in C)
def _children(el: Element | None, name: str) -> list[Element]:
    return [] if el is None else el.findall(name)


def _at(el: Element | None, path: str) -> Element | None:
    """The first child named like the path's first step, its first child named like the
    second... (not the first match of the whole path anywhere)."""
    for name in path.split("/"):
        if el is None:
            return None
        el = el.find(name)
    return el


def _text(el: Element | None, path: str) -> str | None:
    found = _at(el, path)
    return _clean(found.text) if found is not None and found.text else None


def _date_of(el: Element | None) -> date | None:
    text = _text(el, "Dt") or _text(el, "DtTm")
    return date.fromisoformat(text[:10]) if text else None


def _remittance(tx: Element | None) -> str | None:
    rmt = _at(tx, "RmtInf")
    parts = [c.text.strip() for c in _children(rmt, "Ustrd") if c.text and c.text.strip()]
    for strd in _children(rmt, "Strd"):
        for path in ("RfrdDocInf/Nb", "CdtrRefInf/Ref", "AddtlRmtInf"):
            value = _text(strd, path)
            if value:
                parts.append(value)
    if not parts:
        value = _text(tx, "AddtlTxInf")
        if value:
            parts.append(value)
    return _clean(" ".join(parts))


def _payer(tx: Element | None) -> str | None:
    for path in ("RltdPties/Dbtr/Nm", "RltdPties/Dbtr/Pty/Nm", "RltdPties/UltmtDbtr/Nm",
                 "RltdPties/UltmtDbtr/Pty/Nm"):
        value = _text(tx, path)
        if value:
            return value
    return None


# where a batch's transaction states an amount (ISO 20022 camt.053 `TxDtls`), in order
_TX_AMOUNTS = ("AmtDtls/TxAmt/Amt", "Amt", "AmtDtls/CntrValAmt/Amt")


def _entry_lines(entry: Element, s: int, n: int, account: str | None,
                 reading: Reading) -> list[StatementLine | str]:
    """The credit lines of one `Ntry` (one, or one per `TxDtls` of a batch), or errors."""
    where = f"Stmt {s}, Ntry {n}"
    status = _text(entry, "Sts/Cd") or _text(entry, "Sts") or "BOOK"
    if (_text(entry, "CdtDbtInd") != "CRDT" or status.upper() != "BOOK"
            or (_text(entry, "RvslInd") or "").lower() in ("true", "1")):  # xs:boolean
        reading.skipped += 1
        return []
    amt = _at(entry, "Amt")
    valued = _date_of(_at(entry, "ValDt"))
    booked = _date_of(_at(entry, "BookgDt")) or valued
    if amt is None or not amt.get("Ccy") or booked is None:
        return [f"{where}: needs Amt with Ccy and BookgDt (or ValDt)"]
    txs = [tx for d in _children(entry, "NtryDtls") for tx in _children(d, "TxDtls")]
    entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
    per_tx = len(txs) > 1 and all(
        _at(tx, "AmtDtls/TxAmt/Amt") is not None or _at(tx, "Amt") is not None for tx in txs)
    lines: list[StatementLine] = []
    if not per_tx:  # one payment for the entry
        tx = txs[0] if len(txs) == 1 else None
        refs = [_remittance(t) for t in txs] if txs else [_text(entry, "AddtlNtryInf")]
        ref = (_text(tx, "Refs/AcctSvcrRef") if tx is not None else None) or entry_ref
        e2e = _text(tx, "Refs/EndToEndId") if tx is not None else None
        lines.append(_camt_line(where, booked, amt, account, _payer(tx),
                                _clean(" ".join(r for r in refs if r)), ref, e2e, valued))
    else:
        net = Decimal(0)  # what the batch's transactions add up to, against the entry's Amt
        currency = (amt.get("Ccy") or "").upper()
        for t, tx in enumerate(txs, start=1):
            # the transaction's amount in the account's currency, as the entry's: a foreign
            # transfer states its instructed amount too (and some banks the transaction
            # amount in the payer's currency), with the converted one beside it
            stated = [a for a in (_at(tx, path) for path in _TX_AMOUNTS) if a is not None]
            tx_amt = next((a for a in stated if (a.get("Ccy") or "").upper() == currency),
                          None)
            credit = (_text(tx, "CdtDbtInd") or "CRDT") == "CRDT"
            if tx_amt is None:
                others = ", ".join(dict.fromkeys(str(a.get("Ccy")) for a in stated))
                return [f"{where}, TxDtls {t}: no amount in {currency}, the entry's currency "
                        f"({others} only): a batch is imported in the entry's currency"]
            try:
                net += _xml_amount(tx_amt.text or "") * (1 if credit else -1)
            except ValueError as exc:
                return [f"{where}, TxDtls {t}: Amt {exc}"]
            if not credit:
                reading.skipped += 1
                continue
            ref = _text(tx, "Refs/AcctSvcrRef") or (f"{entry_ref}/{t}" if entry_ref else None)
            lines.append(_camt_line(f"{where}, TxDtls {t}", booked, tx_amt, account,
                                    _payer(tx), _remittance(tx), ref,
                                    _text(tx, "Refs/EndToEndId"), valued))
        try:
            entry_amount = _xml_amount(amt.text or "")
        except ValueError as exc:
            return [f"{where}: Amt {exc}"]
        if net != entry_amount:  # the bank credited Amt: no more, no less is recorded
            return [f"{where}: its transactions add up to {net}, not the entry's {entry_amount}"]
    out: list[StatementLine | str] = []
    for line in lines:
        try:
            out.append(line if _xml_amount(line.amount) > 0
                       else f"{line.where}: Amt must be positive")
        except ValueError as exc:
            out.append(f"{line.where}: Amt {exc}")
    return out


def _xml_amount(text: str) -> Decimal:
    """A camt.053 amount is an xs:decimal: '.' is its decimal mark, always."""
    return parse_amount(text, decimal_mark=".")


def _camt_lines(source: Source, reading: Reading) -> Iterator[StatementLine | str]:
    """Credit lines of a camt.053 statement, or errors by `Stmt/Ntry/TxDtls` position, read
    with `defusedxml`'s iterparse (no DTD, no entities): each `Ntry` is handled when it ends
    and then dropped, so memory stays flat whatever the number of entries."""
    path: list[Element] = []
    s = n = 0
    seen_statement = False
    try:
        with _open(source) as raw:
            for event, el in SafeET.iterparse(raw, events=("start", "end"), forbid_dtd=True):
                if event == "start":
                    if "}" in el.tag:
                        el.tag = _local(el.tag)
                    path.append(el)
                    if len(path) == 2:
                        if path[0].tag != "Document" or el.tag != "BkToCstmrStmt":
                            raise StatementError("not a camt.053 statement (Document/"
                                                 f"BkToCstmrStmt); found {el.tag}")
                        seen_statement = True
                    elif len(path) == 3 and el.tag == "Stmt":
                        s, n = s + 1, 0
                    continue
                path.pop()
                name = el.tag
                if len(path) == 3 and name == "Ntry" and path[-1].tag == "Stmt":
                    n += 1
                    stmt = path[-1]
                    account = _text(stmt, "Acct/Id/IBAN") or _text(stmt, "Acct/Id/Othr/Id")
                    yield from _entry_lines(el, s, n, account, reading)
                    stmt.remove(el)  # what was read is not kept
                elif len(path) == 2 and name == "Stmt":
                    path[-1].remove(el)
                elif not path and not seen_statement:
                    raise StatementError("not a camt.053 statement (Document/BkToCstmrStmt); "
                                         f"found {name}")
    except DefusedXmlException as exc:
        raise StatementError(f"refused unsafe XML ({type(exc).__name__}): DTDs and entities "
                             "are not allowed in a bank statement") from None
    except SafeET.ParseError as exc:
        raise StatementError(f"not well-formed XML: {exc}") from None


def parse_camt053(raw: bytes) -> tuple[list[StatementLine], int, list[str]]:
    """(credit lines, skipped entries, errors) of a camt.053 statement held in memory."""
    reading = Reading("camt.053")
    lines, errors = _split(_camt_lines(raw, reading))
    return lines, reading.skipped, errors


def _camt_line(where: str, booked: date, amt: Element, account: str | None,
               payer: str | None, reference: str | None, ref: str | None,
               e2e: str | None, valued: date | None = None) -> StatementLine:
    e2e = e2e if e2e and e2e.upper() != "NOTPROVIDED" else None
    return StatementLine(where=where, booked_on=booked, amount=(amt.text or "").strip(),
                         currency=(amt.get("Ccy") or "").upper(), payer_name=payer,
                         reference=reference, entry_ref=ref, account=account,
                         value_on=valued, payer_ref=e2e,
                         legacy_ref=f"e2e:{e2e}" if e2e and not ref else None)


# -- import --------------------------------------------------------------------------------------
@dataclass
class Reading:
    """What reading a statement found out besides its lines."""

    format: str = ""
    skipped: int = 0  # debits, reversals, pending entries


def _split(items: Iterator[StatementLine | str]) -> tuple[list[StatementLine], list[str]]:
    lines: list[StatementLine] = []
    errors: list[str] = []
    for item in items:
        (errors if isinstance(item, str) else lines).append(item)
    return lines, errors


def read_statement(source: Source, claim: Claim | None = None, date_order: str = "auto",
                   ) -> tuple[Reading, Iterator[StatementLine | str]]:
    """The statement's format, and its credit lines (with external ids) or errors, as a
    stream; a file that cannot be read at all raises StatementError while it is read.
    `claim`: see `_Ids`; `date_order`: a CSV's (`DATE_ORDERS`; camt.053 dates are ISO)."""
    with _open(source) as raw:
        head = raw.read(512).lstrip(codecs.BOM_UTF8).lstrip()
    reading = Reading("camt.053" if head.startswith(b"<") else "csv")
    lines = (_camt_lines(source, reading) if reading.format == "camt.053"
             else _csv_lines(source, reading, date_order))
    ids = _Ids(claim)
    return reading, (item if isinstance(item, str) else ids.assign(item) for item in lines)


def parse_statement(raw: bytes, date_order: str = "auto",
                    ) -> tuple[str, list[StatementLine], int, list[str]]:
    """(format, credit lines with external ids, skipped, errors) of a statement in memory."""
    reading, items = read_statement(raw, date_order=date_order)
    lines, errors = _split(items)
    return reading.format, lines, reading.skipped, errors


def _payment(line: StatementLine) -> PaymentIn:
    """The line as the payment it is (`inputs.PaymentIn`, as the API takes it: payer name at
    most 300 characters, reference 2000); a refusal is `ValidationFailed` naming the field."""
    # banks pad amounts ("1500.00" in JPY): the zeros beyond the currency's decimals go
    amount = line.amount.rstrip("0").rstrip(".") if "." in line.amount else line.amount
    return build(PaymentIn, amount=amount, currency=line.currency,
                 received_at=line.received_at, value_date=line.value_date,
                 payer_name=line.payer_name, reference=line.reference,
                 method="bank transfer", external_id=line.external_id)


def _count(report: StatementReport, tickets: list[Ticket]) -> None:
    for ticket in tickets:
        if ticket.error is not None:  # a refused line fails the whole file
            report.errors.append(f"{ticket.where}: {ticket.error.detail}")
        elif ticket.created:
            report.created += 1
            report.outcomes[PaymentStatus(ticket.status).value] += 1
        else:
            report.unchanged += 1
    tickets.clear()


_RECORDED = sa.select(Payment.amount_minor, Payment.currency, Payment.received_at,
                      Payment.payer_name).where(Payment.external_id == sa.bindparam("ident"))


def _recorded_before(session: Session) -> Claim:
    """`_Ids`' claim: the payment recorded under `ident` by an earlier version is this line's
    when it has the line's amount, currency, day and payer (another payer's credit that
    happened to carry the same EndToEndId is not)."""
    def claim(line: StatementLine, ident: str) -> bool:
        found = session.connection().execute(_RECORDED, {"ident": ident}).first()
        if found is None:
            return False
        line.external_id = ident  # (what it is if it is this line's; `_Ids` sets it either way)
        try:
            data = _payment(line)
            amount, currency = checked(data)
        except DomainError:
            return False
        return (found.amount_minor, found.currency, found.payer_name) == (
            amount, currency, data.payer_name) and (
            found.received_at.astimezone(UTC).date() == line.booked_on)
    return claim


def import_statement(session: Session, path: Path | str, *, actor: str = ACTOR,
                     names: CustomerNames | None = None, date_order: str = "auto",
                     ) -> StatementReport:
    """Import a statement file into `session` (the caller commits when there are no errors).

    The file is read as a stream and every credit line goes through the cash-application
    engine in chunks (`CashRun`); a line already imported (same external id) is counted as
    unchanged. Once a line is refused, the rest is only checked (every problem is reported)
    and nothing more is matched. `names` is the database's customer-name cache
    (`bot.db.Database.customer_names`); `date_order` a CSV's: "auto" (as its dates show),
    "dmy" or "mdy" (`O2C_BANK_CSV_DATE_ORDER`)."""
    report = StatementReport()
    source = Path(path)
    reading = Reading()
    try:
        reading, items = read_statement(source, claim=_recorded_before(session),
                                        date_order=date_order)
        run = CashRun(session, actor=actor, source=SOURCE, names=names)
        pending: list[Ticket] = []
        for item in items:
            if isinstance(item, str):
                report.errors.append(item)
                continue
            report.lines += 1
            try:
                data = _payment(item)
            except DomainError as exc:
                report.errors.append(f"{item.where}: {exc.detail}")
                continue
            if report.errors:
                continue
            pending.append(run.add(data, item.where))
            if not run.pending:  # the run just matched and wrote a chunk
                _count(report, pending)
        if not report.errors:
            run.flush()
            _count(report, pending)
        else:  # nothing is imported; what was refused before the first error is said too
            report.errors += [f"{t.where}: {t.error.detail}" for t in pending
                              if t.error is not None]
    except StatementError as exc:
        report.errors.append(str(exc))
    except OSError as exc:
        report.errors.append(f"cannot read {path}: {exc.strerror or exc}")
    report.format, report.skipped = reading.format, reading.skipped
    return report
