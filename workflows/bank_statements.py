"""Bank statements: `o2c import bank-statement FILE` for CSV exports and ISO 20022 camt.053.

Each incoming credit becomes a payment through `record_payment`, so the matching engine runs
for it like for any other payment. Three promises:

* **Re-importing changes nothing.** Every line gets a stable external id: the bank's own
  reference for the entry (camt `AcctSvcrRef`, `NtryRef`, the payer's `EndToEndId`; a CSV's
  transaction id column) prefixed with the account, or else a hash of account, date, amount,
  currency, payer and reference plus its occurrence number in the file (two identical lines
  on one day are two payments). Overlapping statements are therefore safe to import.
* **All or nothing.** A file that cannot be read, or a line that is refused, imports nothing
  and every problem is reported by line (CSV row number, or `Stmt/Ntry/TxDtls` position).
* **Only money in.** Debits, reversals and entries not yet booked (`PDNG`) are skipped.

Each payment is received on the line's booking date and valued on its **value date** (camt
`ValDt`, a CSV's value-date column; the booking date when there is none): the day the money
moved, which dates its allocations in the as-of reports (`workflows.receivables`).

XML is parsed with `defusedxml`, which refuses DTDs, entity expansion ("billion laughs") and
external entities: a statement file comes from outside and must not be able to read local
files or exhaust memory. The stdlib parser alone does not forbid entity declarations.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from sqlmodel import Session

from models import PaymentStatus
from workflows.cash_application import guard, record_payment
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
    entry_ref: str | None  # the bank's (or payer's) reference for this line
    account: str | None
    external_id: str = ""
    value_on: date | None = None  # the value date, when the bank gives one apart

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


def parse_amount(text: str) -> Decimal:
    """Bank formats: "1,234.56", "1.234,56", "1234,56", "-12.00", "(12.00)", "+500"."""
    raw = (text or "").strip().replace("\u00a0", "").replace(" ", "").replace("'", "")
    negative = raw.startswith("-") or (raw.startswith("(") and raw.endswith(")"))
    raw = raw.strip("()+-")
    if "," in raw and "." in raw:
        decimal_mark = "," if raw.rfind(",") > raw.rfind(".") else "."
        raw = raw.replace("." if decimal_mark == "," else ",", "").replace(",", ".")
    elif "," in raw:
        head, _, tail = raw.rpartition(",")
        raw = f"{head.replace(',', '')}.{tail}" if len(tail) in (1, 2) else raw.replace(",", "")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw):  # ASCII digits only
        raise ValueError(f"not an amount: {text!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    return -value if negative else value


def _external_id(line: StatementLine, occurrence: int) -> str:
    account = line.account or "-"
    if line.entry_ref:
        ident = f"bank:{account}:{line.entry_ref}"
        if len(ident) <= 200:
            return ident
    basis = "|".join([account, line.booked_on.isoformat(), line.amount, line.currency,
                      line.payer_name or "", line.reference or "", str(occurrence)])
    return "bank:h:" + hashlib.sha256(basis.encode()).hexdigest()[:48]


def _assign_ids(lines: list[StatementLine]) -> None:
    seen: Counter = Counter()
    for line in lines:
        basis = (line.account, line.booked_on, line.amount, line.currency, line.payer_name,
                 line.reference, line.entry_ref)
        seen[basis] += 1
        line.external_id = _external_id(line, seen[basis])


def read_text(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


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
                  "transactionid", "transactionreference", "endtoendid", "id"),
    "account": ("iban", "account", "accountnumber", "accountiban"),
    "indicator": ("creditdebit", "cdtdbtind", "creditdebitindicator", "dc", "direction",
                  "type"),
}


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _parse_date(text: str, day_first: bool) -> date:
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text):
        return date.fromisoformat(text[:10])
    match = re.fullmatch(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})", text)
    if not match:
        raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD or DD.MM.YYYY)")
    a, b, year = (int(g) for g in match.groups())
    day, month = (a, b) if day_first else (b, a)
    return date(year, month, day)


def parse_csv(text: str) -> tuple[list[StatementLine], int, list[str]]:
    """(credit lines, skipped debit lines, errors by row)."""
    sample = text[:4096]
    delimiter = max(",;\t", key=sample.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [row for row in reader]
    if not rows:
        raise StatementError("the file is empty")
    headers = [_key(h) for h in rows[0]]
    index: dict[str, int] = {}
    for name, aliases in CSV_COLUMNS.items():
        for alias in aliases:
            if alias in headers and headers.index(alias) not in index.values():
                index[name] = headers.index(alias)
                break
    missing = [n for n in ("date", "amount", "currency") if n not in index]
    if missing:
        raise StatementError(f"header: missing column(s) {', '.join(missing)}; found "
                             f"{', '.join(rows[0])}")
    body = [(n, row) for n, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    dates = [row[index["date"]] for _, row in body if len(row) > index["date"]]
    day_first = not any(re.fullmatch(r"\d{1,2}/(1[3-9]|2\d|3[01])/\d{4}", d.strip())
                        for d in dates)

    def cell(row: list[str], name: str) -> str | None:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) and row[i].strip() else None

    lines, skipped, errors = [], 0, []
    for number, row in body:
        where = f"row {number}"
        try:
            amount_text = cell(row, "amount")
            if not amount_text and cell(row, "debit"):
                skipped += 1
                continue
            if not amount_text:
                raise ValueError("column amount: missing")
            try:
                amount = parse_amount(amount_text)
            except ValueError as exc:
                raise ValueError(f"column amount: {exc}") from None
            indicator = (cell(row, "indicator") or "").upper()
            if amount < 0 or indicator in ("DBIT", "D", "DEBIT", "DR", "OUT"):
                skipped += 1
                continue
            if amount == 0:
                raise ValueError("column amount: must not be zero")
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
            currency = (cell(row, "currency") or "").upper()
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise ValueError("column currency: must be a 3-letter code like EUR")
        except ValueError as exc:
            errors.append(f"{where}, {exc}")
            continue
        lines.append(StatementLine(
            where=where, booked_on=booked, amount=str(amount), currency=currency,
            payer_name=_clean(cell(row, "payer")), reference=_clean(cell(row, "reference")),
            entry_ref=_clean(cell(row, "entry_ref")), account=_clean(cell(row, "account")),
            value_on=valued))
    return lines, skipped, errors


# -- camt.053 ------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: Element | None, name: str) -> list[Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _at(el: Element | None, path: str) -> Element | None:
    for name in path.split("/"):
        if el is None:
            return None
        found = _children(el, name)
        el = found[0] if found else None
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


def parse_camt053(raw: bytes) -> tuple[list[StatementLine], int, list[str]]:
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise StatementError(f"refused unsafe XML ({type(exc).__name__}): DTDs and entities "
                             "are not allowed in a bank statement") from None
    except SafeET.ParseError as exc:
        raise StatementError(f"not well-formed XML: {exc}") from None
    stmt_root = _at(root, "BkToCstmrStmt")
    if _local(root.tag) != "Document" or stmt_root is None:
        kind = _local(next(iter(root), root).tag)
        raise StatementError(f"not a camt.053 statement (Document/BkToCstmrStmt); found {kind}")
    lines, skipped, errors = [], 0, []
    for s, stmt in enumerate(_children(stmt_root, "Stmt"), start=1):
        account = _text(stmt, "Acct/Id/IBAN") or _text(stmt, "Acct/Id/Othr/Id")
        for n, entry in enumerate(_children(stmt, "Ntry"), start=1):
            where = f"Stmt {s}, Ntry {n}"
            status = _text(entry, "Sts/Cd") or _text(entry, "Sts") or "BOOK"
            if (_text(entry, "CdtDbtInd") != "CRDT" or status.upper() != "BOOK"
                    or (_text(entry, "RvslInd") or "").lower() == "true"):
                skipped += 1
                continue
            amt = _at(entry, "Amt")
            valued = _date_of(_at(entry, "ValDt"))
            booked = _date_of(_at(entry, "BookgDt")) or valued
            if amt is None or not amt.get("Ccy") or booked is None:
                errors.append(f"{where}: needs Amt with Ccy and BookgDt (or ValDt)")
                continue
            txs = [tx for d in _children(entry, "NtryDtls") for tx in _children(d, "TxDtls")]
            entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
            per_tx = len(txs) > 1 and all(
                _at(tx, "AmtDtls/TxAmt/Amt") is not None or _at(tx, "Amt") is not None
                for tx in txs)
            if not per_tx:  # one payment for the entry
                tx = txs[0] if len(txs) == 1 else None
                refs = [_remittance(t) for t in txs] if txs else [_text(entry, "AddtlNtryInf")]
                ref = (_text(tx, "Refs/AcctSvcrRef") if tx is not None else None) or entry_ref
                e2e = _text(tx, "Refs/EndToEndId") if tx is not None else None
                lines.append(_camt_line(where, booked, amt, account, _payer(tx),
                                        _clean(" ".join(r for r in refs if r)), ref, e2e,
                                        valued))
                continue
            for t, tx in enumerate(txs, start=1):
                if (_text(tx, "CdtDbtInd") or "CRDT") != "CRDT":
                    skipped += 1
                    continue
                tx_amt = _at(tx, "AmtDtls/TxAmt/Amt")
                tx_amt = tx_amt if tx_amt is not None else _at(tx, "Amt")
                ref = _text(tx, "Refs/AcctSvcrRef") or (f"{entry_ref}/{t}" if entry_ref
                                                        else None)
                lines.append(_camt_line(f"{where}, TxDtls {t}", booked, tx_amt, account,
                                        _payer(tx), _remittance(tx), ref,
                                        _text(tx, "Refs/EndToEndId"), valued))
    for line in lines:
        try:
            if parse_amount(line.amount) <= 0:
                errors.append(f"{line.where}: Amt must be positive")
        except ValueError as exc:
            errors.append(f"{line.where}: Amt {exc}")
    return lines, skipped, errors


def _camt_line(where: str, booked: date, amt: Element, account: str | None,
               payer: str | None, reference: str | None, ref: str | None,
               e2e: str | None, valued: date | None = None) -> StatementLine:
    if not ref and e2e and e2e.upper() != "NOTPROVIDED":
        ref = f"e2e:{e2e}"
    return StatementLine(where=where, booked_on=booked, amount=(amt.text or "").strip(),
                         currency=(amt.get("Ccy") or "").upper(), payer_name=payer,
                         reference=reference, entry_ref=ref, account=account,
                         value_on=valued)


# -- import --------------------------------------------------------------------------------------
def parse_statement(raw: bytes) -> tuple[str, list[StatementLine], int, list[str]]:
    """(format, credit lines with external ids, skipped, errors)."""
    head = raw.lstrip(codecs.BOM_UTF8).lstrip()[:200]
    if head.startswith(b"<"):
        kind, (lines, skipped, errors) = "camt.053", parse_camt053(raw)
    else:
        kind, (lines, skipped, errors) = "csv", parse_csv(read_text(raw))
    _assign_ids(lines)
    return kind, lines, skipped, errors


def import_statement(session: Session, path: Path | str, *, actor: str = ACTOR
                     ) -> StatementReport:
    """Import a statement file into `session` (the caller commits when there are no errors).

    Every credit line goes through `record_payment` (the matching engine runs for each); a
    line already imported (same external id) is counted as unchanged."""
    report = StatementReport()
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        report.errors.append(f"cannot read {path}: {exc.strerror or exc}")
        return report
    try:
        report.format, lines, report.skipped, errors = parse_statement(raw)
    except StatementError as exc:
        report.errors.append(str(exc))
        return report
    report.lines = len(lines)
    if errors:
        report.errors = errors
        return report
    for line in lines:
        # banks pad amounts ("1500.00" in JPY): the zeros beyond the currency's decimals go
        amount = line.amount.rstrip("0").rstrip(".") if "." in line.amount else line.amount
        try:
            data = build(PaymentIn, amount=amount, currency=line.currency,
                         received_at=line.received_at, value_date=line.value_date,
                         payer_name=line.payer_name, reference=line.reference,
                         method="bank transfer", external_id=line.external_id)
            # (a refused line fails the whole file; the savepoint, where one is needed, keeps
            # the session usable so every other line is still checked and reported)
            with guard(session):
                payment, created = record_payment(session, data, actor=actor, source=SOURCE)
        except DomainError as exc:
            report.errors.append(f"{line.where}: {exc.detail}")
            continue
        if created:
            report.created += 1
            report.outcomes[PaymentStatus(payment.status).value] += 1
        else:
            report.unchanged += 1
    return report
