"""`o2c import bank-statement`: ISO 20022 camt.053 and CSV exports, written here as a bank
would deliver them, imported through the matching engine; re-importing changes nothing."""

from __future__ import annotations

import tracemalloc
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.cli import main as o2c
from models import Allocation, AuditEvent, Invoice, OutboxMessage, Payment, WriteOff
from tests.support import factories as f
from tests.support import meanwhile
from workflows import bank_statements, invariants
from workflows.bank_statements import import_statement, parse_amount, parse_statement

IBAN = "DE89370400440532013000"

CAMT053 = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <BkToCstmrStmt>
    <GrpHdr>
      <MsgId>STMT-20261120-0001</MsgId>
      <CreDtTm>2026-11-20T18:00:00+01:00</CreDtTm>
    </GrpHdr>
    <Stmt>
      <Id>20261120-0001</Id>
      <ElctrncSeqNb>311</ElctrncSeqNb>
      <CreDtTm>2026-11-20T18:00:00+01:00</CreDtTm>
      <Acct>
        <Id><IBAN>{IBAN}</IBAN></Id>
        <Ccy>USD</Ccy>
        <Svcr><FinInstnId><BIC>COBADEFFXXX</BIC></FinInstnId></Svcr>
      </Acct>
      <Bal>
        <Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>
        <Amt Ccy="USD">10000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Dt><Dt>2026-11-20</Dt></Dt>
      </Bal>
      <Ntry>
        <NtryRef>1</NtryRef>
        <Amt Ccy="USD">1000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>2026112000001</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs>
              <EndToEndId>GLOBEX-PMT-7781</EndToEndId>
            </Refs>
            <AmtDtls><TxAmt><Amt Ccy="USD">1000.00</Amt></TxAmt></AmtDtls>
            <RltdPties>
              <Dbtr><Nm>GLOBEX CORPORATION</Nm></Dbtr>
              <DbtrAcct><Id><IBAN>US12300000000000004711</IBAN></Id></DbtrAcct>
            </RltdPties>
            <RmtInf><Ustrd>PAYMENT INV 2026/123 THANK YOU</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <NtryRef>2</NtryRef>
        <Amt Ccy="USD">120.00</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>2026112000002</AcctSvcrRef>
        <AddtlNtryInf>BANK CHARGES NOVEMBER</AddtlNtryInf>
      </Ntry>
      <Ntry>
        <Amt Ccy="USD">1058.75</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <ValDt><Dt>2026-11-21</Dt></ValDt>
        <AcctSvcrRef>2026112000003</AcctSvcrRef>
        <NtryDtls>
          <Btch><NbOfTxs>2</NbOfTxs></Btch>
          <TxDtls>
            <Refs><AcctSvcrRef>2026112000003-1</AcctSvcrRef><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
            <AmtDtls><TxAmt><Amt Ccy="USD">248.75</Amt></TxAmt></AmtDtls>
            <RltdPties><Dbtr><Nm>Globex Corp.</Nm></Dbtr></RltdPties>
            <RmtInf>
              <Strd>
                <RfrdDocInf><Tp><CdOrPrtry><Cd>CINV</Cd></CdOrPrtry></Tp><Nb>INV2026000124</Nb></RfrdDocInf>
                <CdtrRefInf><Ref>RF18539007547034</Ref></CdtrRefInf>
              </Strd>
            </RmtInf>
          </TxDtls>
          <TxDtls>
            <Refs><AcctSvcrRef>2026112000003-2</AcctSvcrRef></Refs>
            <AmtDtls><TxAmt><Amt Ccy="USD">810.00</Amt></TxAmt></AmtDtls>
            <RltdPties><Dbtr><Nm>INITECH</Nm></Dbtr></RltdPties>
            <RmtInf><Ustrd>AP RUN 4471</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="USD">55.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>PDNG</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <AcctSvcrRef>2026112000004</AcctSvcrRef>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""

# A typical online-banking export: semicolons, decimal commas, day-first dates, debits negative.
CSV_EXPORT = (
    "Booking date;Value date;Payer name;Remittance information;Amount;Currency;"
    "Transaction ID\r\n"
    "20.11.2026;20.11.2026;GLOBEX CORPORATION;INV-2026-000123;1.000,00;USD;TX-9001\r\n"
    "20.11.2026;20.11.2026;Office rent;November;-2.500,00;USD;TX-9002\r\n"
    "21.11.2026;21.11.2026;INITECH;AP RUN;810,00;USD;\r\n"
    "21.11.2026;21.11.2026;INITECH;AP RUN;810,00;USD;\r\n"
)


@pytest.fixture
def books(session):
    f.customer(session, "C-GLOBEX", "Globex Corporation")
    f.customer(session, "C-INITECH", "Initech LLC")
    for number, customer, total in [("INV-2026-000123", "C-GLOBEX", "1000.00"),
                                    ("INV-2026-000124", "C-GLOBEX", "250.00"),
                                    ("INV-2026-000200", "C-INITECH", "810.00"),
                                    ("INV-2026-000201", "C-INITECH", "810.00")]:
        f.invoice(session, number, customer, total=total, issued=date(2026, 11, 1),
                  due=date(2026, 12, 1))
    session.commit()
    return session


def write(tmp_path: Path, name: str, content: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    return path


def snapshot(session) -> tuple:
    tables = (Payment, Allocation, WriteOff, AuditEvent, OutboxMessage)
    return (tuple(session.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                  for t in tables),
            tuple(session.execute(sa.select(Invoice.balance_minor).order_by(Invoice.id))
                  .scalars()))


def test_camt053_credits_become_matched_payments(books, tmp_path) -> None:
    # given
    path = write(tmp_path, "camt053.xml", CAMT053)
    # when
    report = import_statement(books, path)
    books.commit()
    # then
    assert report.errors == []
    assert (report.format, report.lines, report.created, report.skipped) == ("camt.053", 3, 3, 2)
    payments = {p.external_id: p for p in books.exec(select(Payment)).all()}
    assert set(payments) == {f"bank:{IBAN}:2026112000001", f"bank:{IBAN}:2026112000003-1",
                             f"bank:{IBAN}:2026112000003-2"}
    first = payments[f"bank:{IBAN}:2026112000001"]
    assert (first.amount_minor, first.payer_name, first.source) == (
        100_000, "GLOBEX CORPORATION", "bank")
    assert first.reference == "PAYMENT INV 2026/123 THANK YOU"
    assert first.received_at.date() == date(2026, 11, 20)
    assert first.status == "applied"
    fee = payments[f"bank:{IBAN}:2026112000003-1"]  # 250.00 invoice paid 248.75 by reference
    assert fee.status == "applied" and fee.match_details["write_off_minor"] == 125
    assert "INV2026000124" in fee.reference
    twins = payments[f"bank:{IBAN}:2026112000003-2"]  # two 810.00 invoices, no number
    assert twins.status == "needs_review"
    assert invariants.validate_all(books) == []


def test_reimporting_a_camt053_statement_changes_nothing(books, tmp_path) -> None:
    # given
    path = write(tmp_path, "camt053.xml", CAMT053)
    import_statement(books, path)
    books.commit()
    before = snapshot(books)
    # when
    again = import_statement(books, path)
    books.commit()
    # then
    assert (again.created, again.unchanged, again.errors) == (0, 3, [])
    assert snapshot(books) == before


def test_csv_export_with_decimal_commas_and_debits(books, tmp_path) -> None:
    # given (Windows-1252 would also be read; this one is UTF-8 with a BOM)
    path = write(tmp_path, "export.csv", "\ufeff" + CSV_EXPORT)
    # when
    report = import_statement(books, path)
    books.commit()
    # then
    assert report.errors == []
    assert (report.format, report.created, report.skipped) == ("csv", 3, 1)
    by_ref = books.exec(select(Payment).order_by(Payment.id)).all()
    assert [p.amount_minor for p in by_ref] == [100_000, 81_000, 81_000]
    assert by_ref[0].external_id == "bank:-:TX-9001" and by_ref[0].status == "applied"
    # two identical lines without a transaction id are two payments, each with a stable id
    assert by_ref[1].external_id != by_ref[2].external_id
    assert by_ref[1].external_id.startswith("bank:h:")
    before = snapshot(books)
    again = import_statement(books, path)
    books.commit()
    assert (again.created, again.unchanged) == (0, 3)
    assert snapshot(books) == before


def test_csv_errors_are_reported_by_row_and_nothing_is_imported(books, tmp_path) -> None:
    bad = write(tmp_path, "bad.csv",
                "Date,Amount,Currency,Payer\n"
                "2026-11-20,100.00,USD,A\n"
                "2026-11-20,ten,USD,B\n"
                "31/31/2026,5.00,USD,C\n"
                "2026-11-20,5.00,US,D\n")
    report = import_statement(books, bad)
    assert len(report.errors) == 3
    assert report.errors[0] == "row 3, column amount: not an amount: 'ten'"
    assert report.errors[1].startswith("row 4, column date:")
    assert report.errors[2] == "row 5, column currency: must be a 3-letter code like EUR"
    assert books.exec(select(Payment)).all() == []
    missing = write(tmp_path, "missing.csv", "Date,Amount,Payer\n2026-11-20,1.00,A\n")
    assert "missing column(s) currency" in import_statement(books, missing).errors[0]


def test_unsafe_xml_is_refused(books, tmp_path) -> None:
    bomb = write(tmp_path, "bomb.xml", """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Document><BkToCstmrStmt>&lol2;</BkToCstmrStmt></Document>""")
    xxe = write(tmp_path, "xxe.xml", """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Document><BkToCstmrStmt><Stmt><Ntry>&secret;</Ntry></Stmt></BkToCstmrStmt></Document>""")
    for path in (bomb, xxe):
        report = import_statement(books, path)
        assert report.errors and "refused unsafe XML" in report.errors[0]
    assert books.exec(select(Payment)).all() == []


def test_a_camt054_notification_is_not_taken_for_a_statement(tmp_path) -> None:
    raw = CAMT053.replace("BkToCstmrStmt", "BkToCstmrDbtCdtNtfctn").encode()
    with pytest.raises(Exception, match="not a camt.053 statement"):
        parse_statement(raw)


@pytest.mark.parametrize(("text", "value"), [
    ("1,234.56", "1234.56"), ("1.234,56", "1234.56"), ("1234,5", "1234.5"), ("-12.00", "-12.00"),
    ("(12.00)", "-12.00"), ("+500", "500"), ("1 234,56", "1234.56"), ("1'234.56", "1234.56"),
])
def test_bank_amount_formats(text: str, value: str) -> None:
    assert str(parse_amount(text)) == value


def test_cli_imports_a_statement_and_a_second_run_changes_nothing(
        books, database_url, tmp_path, monkeypatch, capsys) -> None:
    # given
    path = write(tmp_path, "camt053.xml", CAMT053)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when
    first = o2c(["import", "bank-statement", str(path)])
    out_first = capsys.readouterr().out
    second = o2c(["import", "bank-statement", str(path)])
    out_second = capsys.readouterr().out
    # then
    assert (first, second) == (0, 0)
    assert '"created": 3' in out_first and '"applied": 2' in out_first
    assert '"created": 0' in out_second and '"unchanged": 3' in out_second
    books.expire_all()
    assert len(books.exec(select(Payment)).all()) == 3


def test_the_cli_imports_with_fewer_collector_scans_and_restores_them_after(
        books, database_url, tmp_path, monkeypatch, capsys) -> None:
    # given: a statement, and the collector's thresholds as the process had them
    import gc

    from bot import cli

    path = write(tmp_path, "camt053.xml", CAMT053)
    monkeypatch.setenv("DATABASE_URL", database_url)
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    seen = []
    real = bank_statements.import_statement

    def recording(*args, **kwargs):
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(bank_statements, "import_statement", recording)
    # when
    code = o2c(["import", "bank-statement", str(path)])
    # then: imported with the import's thresholds, the process's own back afterwards
    assert code == 0 and '"created": 3' in capsys.readouterr().out
    assert seen == [cli.IMPORT_GC_THRESHOLD] != [before]
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)


def test_cli_reports_errors_and_exits_non_zero(database_url, tmp_path, monkeypatch,
                                               capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = write(tmp_path, "bad.csv", "Date,Amount,Currency\n2026-11-20,abc,USD\n")
    assert o2c(["import", "bank-statement", str(path)]) == 1
    assert "row 2, column amount" in capsys.readouterr().err


def long_camt(entries: list[str]) -> str:
    return (f'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.'
            f'001.02"><BkToCstmrStmt><Stmt><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>'
            + "".join(entries) + "</Stmt></BkToCstmrStmt></Document>")


def entry(n: int, amount: str = "1.00", payer: str = "J SMITH") -> str:
    return (f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
            f"<BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>R{n}</AcctSvcrRef>"
            f"<NtryDtls><TxDtls><RltdPties><Dbtr><Nm>{payer}</Nm></Dbtr></RltdPties>"
            "</TxDtls></NtryDtls></Ntry>")


def test_a_line_refused_late_in_a_long_statement_imports_nothing(books, tmp_path) -> None:
    # given a statement longer than a chunk of the engine, whose last entries are broken
    # (earlier chunks were already matched and written when they are read)
    entries = [entry(n) for n in range(1, 1201)]
    entries += [entry(1201, amount="-5.00"), entry(1202, amount="abc")]
    path = write(tmp_path, "long.xml", long_camt(entries))
    # when
    report = import_statement(books, path)
    books.rollback()  # what the CLI does with a report that has errors
    # then every problem is named and nothing is stored
    assert report.errors == ["Stmt 1, Ntry 1201: Amt must be positive",
                             "Stmt 1, Ntry 1202: Amt not an amount: 'abc'"]
    assert report.lines == 1200
    assert books.exec(select(Payment)).all() == []


def test_a_long_statement_is_read_as_a_stream(tmp_path) -> None:
    # given a statement of 1,500 entries (as a whole tree: about 3.4 MB of Python objects)
    path = write(tmp_path, "long.xml", long_camt([entry(n) for n in range(1, 1501)]))
    # when it is read
    tracemalloc.start()
    try:
        reading, items = bank_statements.read_statement(path)
        first = next(items)
        rest = [line.where for line in items]  # (the lines themselves are not kept here)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # then lines come one by one, and what was read is dropped: memory does not grow with
    # the number of entries
    assert (reading.format, first.where, first.external_id) == (
        "camt.053", "Stmt 1, Ntry 1", f"bank:{IBAN}:R1")
    assert len(rest) == 1499 and rest[-1] == "Stmt 1, Ntry 1500"
    assert peak < 1_200_000


def test_one_statement_imported_twice_at_once_is_recorded_once(books, db, tmp_path) -> None:
    # given an import of a statement, not yet committed
    path = write(tmp_path, "camt053.xml", CAMT053)
    first = import_statement(books, path)
    assert first.created == 3

    # when the same statement is imported at the same time, and waits for the first
    report, waited = meanwhile.second_writer(db, books, lambda s: import_statement(s, path))
    # then (on PostgreSQL its batch ran into the first's payments: the clash is retried) the
    # second finds every line recorded, and nothing is doubled
    assert (report.created, report.unchanged, report.errors) == (0, 3, [])
    assert waited == (not db.is_sqlite)
    books.expire_all()
    assert books.execute(sa.select(sa.func.count()).select_from(Payment)).scalar() == 3
    assert invariants.validate_all(books) == []


def _credit(n: int | None, amount: str, payer: str, text: str, *, e2e: str | None = None,
            day: str = "2026-11-20", extra: str = "") -> str:
    """One booked credit; `n` None: no reference of the bank's (AcctSvcrRef), as some banks."""
    ref = f"<AcctSvcrRef>R{n}</AcctSvcrRef>" if n is not None else ""
    refs = f"<Refs><EndToEndId>{e2e}</EndToEndId></Refs>" if e2e else ""
    return (f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>{extra}'
            f"<Sts>BOOK</Sts><BookgDt><Dt>{day}</Dt></BookgDt>{ref}<NtryDtls><TxDtls>{refs}"
            f"<RltdPties><Dbtr><Nm>{payer}</Nm></Dbtr></RltdPties><RmtInf><Ustrd>{text}"
            "</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>")


def _paid(session, number: str) -> int:
    return session.exec(select(Invoice.balance_minor).where(Invoice.number == number)).one()


def test_two_payers_with_the_same_end_to_end_id_are_two_payments(books, tmp_path) -> None:
    # given two credits without a bank reference whose payers both wrote "PAYMENT" as their
    # end-to-end id (it is theirs to choose): one was taken for the other and lost
    path = write(tmp_path, "e2e.xml", long_camt([
        _credit(None, "1000.00", "GLOBEX CORPORATION", "INV-2026-000123", e2e="PAYMENT"),
        _credit(None, "810.00", "INITECH LLC", "INV-2026-000200", e2e="PAYMENT")]))
    # when
    report = import_statement(books, path)
    books.commit()
    # then both are recorded and applied, and importing again changes nothing
    assert (report.errors, report.created, report.unchanged) == ([], 2, 0)
    assert (_paid(books, "INV-2026-000123"), _paid(books, "INV-2026-000200")) == (0, 0)
    before = snapshot(books)
    again = import_statement(books, path)
    assert (again.errors, again.created, again.unchanged) == ([], 0, 2)
    assert snapshot(books) == before
    # and another day's credit from a third party with the same id is a payment of its own,
    # not "already recorded with another amount" (which refused the whole next statement)
    later = write(tmp_path, "next.xml", long_camt([
        _credit(None, "250.00", "GLOBEX CORPORATION", "INV-2026-000124", e2e="PAYMENT",
                day="2026-11-21")]))
    assert (import_statement(books, later).errors, _paid(books, "INV-2026-000124")) == ([], 0)
    assert invariants.validate_all(books) == []


def test_a_statement_imported_before_keeps_the_ids_its_end_to_end_ids_gave(books,
                                                                            tmp_path) -> None:
    # given a credit an earlier version recorded under the payer's end-to-end id alone
    # (bank:<IBAN>:e2e:<id>) from a statement holding it twice: it collapsed the second
    line = _credit(None, "810.00", "INITECH LLC", "AP RUN", e2e="AP-1")
    assert import_statement(books, write(tmp_path, "one.xml", long_camt([line]))).created == 1
    books.exec(select(Payment)).one().external_id = f"bank:{IBAN}:e2e:AP-1"
    books.commit()
    path = write(tmp_path, "old.xml", long_camt([line, line]))
    # when that statement is imported again
    again = import_statement(books, path)
    books.commit()
    # then the payment recorded then is the first line's (nothing new for it), and the second
    # line — lost then — is recorded now, once
    assert (again.errors, again.created, again.unchanged) == ([], 1, 1)
    ids = books.exec(select(Payment.external_id).order_by(Payment.id)).all()
    assert ids[0] == f"bank:{IBAN}:e2e:AP-1" and ids[1].startswith("bank:h:")
    assert (import_statement(books, path).created, len(books.exec(select(Payment)).all())) == (
        0, 2)


def test_a_csv_end_to_end_column_is_no_id_on_its_own(books, tmp_path) -> None:
    # given a CSV export whose only reference column is the payer's end-to-end id
    text = ("Date;Amount;Currency;Payer;Reference;EndToEndId\r\n"
            "20.11.2026;1000,00;USD;GLOBEX CORPORATION;INV-2026-000123;1\r\n"
            "20.11.2026;810,00;USD;INITECH LLC;INV-2026-000200;1\r\n")
    path = write(tmp_path, "e2e.csv", text)
    # when
    report = import_statement(books, path)
    books.commit()
    # then
    assert (report.errors, report.created) == ([], 2)
    assert import_statement(books, path).unchanged == 2


def test_a_reversal_written_as_1_is_skipped(books, tmp_path) -> None:
    # given a credit marked as a reversal the other way xs:boolean allows ("1", not "true")
    path = write(tmp_path, "rvsl.xml", long_camt([
        _credit(1, "1000.00", "GLOBEX CORPORATION", "INV-2026-000123",
                extra="<RvslInd>1</RvslInd>")]))
    # when
    report = import_statement(books, path)
    # then it is no money in
    assert (report.errors, report.created, report.skipped) == ([], 0, 1)
    assert _paid(books, "INV-2026-000123") == 100_000


def test_a_batch_whose_transactions_do_not_add_up_to_the_entry_is_refused(books,
                                                                          tmp_path) -> None:
    def batch(amount: str, *txs: tuple[str, str]) -> str:
        details = "".join(
            f'<TxDtls><AmtDtls><TxAmt><Amt Ccy="USD">{a}</Amt></TxAmt></AmtDtls>'
            f"<CdtDbtInd>{d}</CdtDbtInd><RmtInf><Ustrd>INV-2026-000200</Ustrd></RmtInf>"
            "</TxDtls>" for a, d in txs)
        return (f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK'
                "</Sts><BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>B1</AcctSvcrRef>"
                f"<NtryDtls>{details}</NtryDtls></Ntry>")
    # given a bank credit of 100.00 whose batch lists 500.00 + 700.00 (1,200.00 was recorded)
    path = write(tmp_path, "batch.xml", long_camt([batch("100.00", ("500.00", "CRDT"),
                                                         ("700.00", "CRDT"))]))
    # when
    report = import_statement(books, path)
    books.rollback()
    # then nothing is imported and the entry is named
    assert report.errors == ["Stmt 1, Ntry 1: its transactions add up to 1200.00, not the "
                             "entry's 100.00"]
    assert books.exec(select(Payment)).all() == []
    # and a batch whose credits less its returned debit make the entry is imported
    fine = write(tmp_path, "fine.xml", long_camt([batch("810.00", ("900.00", "CRDT"),
                                                        ("90.00", "DBIT"))]))
    report = import_statement(books, fine)
    assert (report.errors, report.created, report.skipped) == ([], 1, 1)


def test_a_batch_of_foreign_transfers_is_imported_in_the_accounts_currency(books,
                                                                          tmp_path) -> None:
    # given a USD account credited 1,200.00 for a batch of two transfers the payers sent in
    # EUR: each transaction's instructed and transaction amounts are in EUR, its amount in
    # the account's USD (how the bank converted it)
    details = "".join(
        f'<TxDtls><Amt Ccy="USD">{usd}</Amt><AmtDtls><InstdAmt><Amt Ccy="EUR">{eur}</Amt>'
        f'</InstdAmt><TxAmt><Amt Ccy="EUR">{eur}</Amt></TxAmt></AmtDtls>'
        f"<CdtDbtInd>CRDT</CdtDbtInd><RmtInf><Ustrd>{ref}</Ustrd></RmtInf></TxDtls>"
        for usd, eur, ref in (("500.00", "460.00", "INV-2026-000123"),
                              ("700.00", "644.00", "INV-2026-000200")))
    entry = ('<Ntry><Amt Ccy="USD">1200.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
             "<BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>B2</AcctSvcrRef>"
             f"<NtryDtls>{details}</NtryDtls></Ntry>")
    path = write(tmp_path, "fx.xml", long_camt([entry]))
    # when
    report = import_statement(books, path)
    books.commit()
    # then both are money in, in USD, as the account was credited
    assert (report.errors, report.created) == ([], 2)
    assert _amounts(books) == [(50_000, "USD"), (70_000, "USD")]
    # and a transaction with no amount in the account's currency still refuses the file
    only_eur = entry.replace('<Amt Ccy="USD">500.00</Amt>', "").replace(
        "B2", "B3")
    report = import_statement(books, write(tmp_path, "eur.xml", long_camt([only_eur])))
    books.rollback()
    assert report.errors == ["Stmt 1, Ntry 1, TxDtls 1: no amount in USD, the entry's "
                             "currency (EUR only): a batch is imported in the entry's "
                             "currency"]


# -- amounts whose separator is ambiguous ("1,500", "1.500") --------------------------------------
def _amounts(session) -> list[tuple[int, str]]:
    return [(p.amount_minor, p.currency)
            for p in session.exec(select(Payment).order_by(Payment.id)).all()]


@pytest.mark.parametrize(("rows", "expected"), [
    # another amount of the file shows the decimal mark: ',' (1-2 digits after it)
    (["1,500;JOD", "12,75;JOD"], [(1_500, "JOD"), (12_750, "JOD")]),
    # ... or '.' (both separators)
    (["1,500;JOD", "2,250.750;JOD"], [(1_500_000, "JOD"), (2_250_750, "JOD")]),
    # a German export: '.' groups thousands, ',' marks decimals
    (["1.500;EUR", "2.000,00;EUR"], [(150_000, "EUR"), (200_000, "EUR")]),
    # nothing else in the file: EUR has 2 decimals, so "1.500" cannot be 1.500 EUR
    (["1.500;EUR"], [(150_000, "EUR")]),
    (["1,500;USD"], [(150_000, "USD")]),
    (["1.500;JPY"], [(1_500, "JPY")]),
    # no thousands group starts with 0 or has four digits: those are decimals
    (["0,500;KWD", "1234,567;KWD"], [(500, "KWD"), (1_234_567, "KWD")]),
    # thousands repeated: "1.234.567" is a million
    (["1.234.567;JPY"], [(1_234_567, "JPY")]),
])
def test_an_amount_whose_separator_is_ambiguous_is_read_as_the_file_says(
        books, tmp_path, rows, expected) -> None:
    # given
    text = "Date;Amount;Currency;Payer\r\n" + "".join(
        f"2026-11-2{n};{row};Payer {n}\r\n" for n, row in enumerate(rows))
    path = write(tmp_path, "amounts.csv", text)
    # when
    report = import_statement(books, path)
    books.commit()
    # then
    assert report.errors == []
    assert _amounts(books) == expected


def test_an_amount_nothing_disambiguates_is_refused_naming_row_and_value(books,
                                                                          tmp_path) -> None:
    # given a Jordanian dinar statement (3 decimals) with "1,500" and nothing else telling
    path = write(tmp_path, "jod.csv", "Date;Amount;Currency;Payer\r\n"
                 "2026-11-20;250;JOD;A\r\n"
                 "2026-11-20;1,500;JOD;B\r\n")
    # when
    report = import_statement(books, path)
    books.rollback()
    # then nothing is imported and the row and value are named
    assert report.errors == [
        "row 3, column amount: '1,500' could be 1500 or 1.500 JOD, and no other amount in "
        "the file shows whether ',' or '.' is its decimal mark"]
    assert _amounts(books) == []


def test_an_ambiguous_amount_in_a_file_writing_decimals_both_ways_is_refused(books,
                                                                             tmp_path) -> None:
    path = write(tmp_path, "mixed.csv", "Date;Amount;Currency;Payer\r\n"
                 "2026-11-20;1.234,50;KWD;A\r\n"
                 "2026-11-20;1,234.50;KWD;B\r\n"
                 "2026-11-20;1,500;KWD;C\r\n")
    report = import_statement(books, path)
    books.rollback()
    assert report.errors == [
        "row 4, column amount: '1,500' could be 1500 or 1.500 KWD, and the file writes "
        "decimals both with ',' (row 2) and with '.' (row 3)"]
    assert _amounts(books) == []


def test_an_ambiguous_debit_is_skipped_all_the_same(books, tmp_path) -> None:
    path = write(tmp_path, "debit.csv", "Date;Amount;Currency;Payer\r\n"
                 "2026-11-20;-1,500;JOD;Rent\r\n"
                 "2026-11-20;250;JOD;A\r\n")
    report = import_statement(books, path)
    assert (report.errors, report.created, report.skipped) == ([], 1, 1)


@pytest.mark.parametrize(("amount", "currency", "error"), [
    ("12,345", "USD", "row 2, column amount: '12,345' is 12.345, more decimals than USD "
                      "has (2)"),
    ("12,3456", "KWD", "row 2, column amount: '12,3456' is 12.3456, more decimals than KWD "
                       "has (3)"),
    ("1500,50", "JPY", "row 2, column amount: '1500,50' is 1500.50, more decimals than JPY "
                       "has (0)"),
])
def test_an_amount_with_more_decimals_than_its_currency_is_refused_not_rounded(
        books, tmp_path, amount, currency, error) -> None:
    # given a file whose decimal mark is ',' (the second row says so)
    path = write(tmp_path, "cents.csv", "Date;Amount;Currency;Payer\r\n"
                 f"2026-11-20;{amount};{currency};A\r\n"
                 f"2026-11-20;1,50;{'USD' if currency == 'JPY' else currency};B\r\n")
    report = import_statement(books, path)
    books.rollback()
    assert report.errors == [error]
    assert _amounts(books) == []


def test_padded_zeros_beyond_the_currency_are_still_taken(books, tmp_path) -> None:
    path = write(tmp_path, "jpy.csv", "Date;Amount;Currency;Payer\r\n"
                 "2026-11-20;1500.00;JPY;A\r\n")
    report = import_statement(books, path)
    assert report.errors == []
    assert _amounts(books) == [(1_500, "JPY")]


# -- dates whose order is ambiguous (11/05/2026) --------------------------------------------------
US_EXPORT = ("Date,Amount,Currency,Payer,Reference\n"
             "11/05/2026,1000.00,USD,GLOBEX CORPORATION,INV-2026-000123\n"
             "11/06/2026,810.00,USD,INITECH LLC,INV-2026-000200\n")


def _received(session) -> list[date]:
    return [p.received_at.date()
            for p in session.exec(select(Payment).order_by(Payment.id)).all()]


def test_a_file_whose_dates_could_be_either_order_is_refused(books, tmp_path) -> None:
    # given a US export covering only days 1-12 (5 November read day first is 11 May)
    path = write(tmp_path, "us.csv", US_EXPORT)
    # when
    report = import_statement(books, path)
    books.rollback()
    # then nothing is imported, and the message says what to do
    assert report.errors == [
        "row 2, column date: '11/05/2026' could be 11 May 2026 or 5 November 2026, and no "
        "date in the file has a day above 12 to tell; give the date order: dmy or mdy "
        "(--date-order, or the setting O2C_BANK_CSV_DATE_ORDER)"]
    assert _received(books) == []


@pytest.mark.parametrize(("order", "expected"), [
    ("mdy", [date(2026, 11, 5), date(2026, 11, 6)]),
    ("dmy", [date(2026, 5, 11), date(2026, 6, 11)]),
])
def test_the_date_order_given_reads_the_file_and_again_changes_nothing(
        books, tmp_path, order, expected) -> None:
    path = write(tmp_path, "us.csv", US_EXPORT)
    report = import_statement(books, path, date_order=order)
    books.commit()
    assert (report.errors, report.created) == ([], 2)
    assert _received(books) == expected
    before = snapshot(books)
    again = import_statement(books, path, date_order=order)
    books.commit()
    assert (again.errors, again.created, again.unchanged) == ([], 0, 2)
    assert snapshot(books) == before


def test_dates_that_tell_their_order_are_read_as_before(books, tmp_path) -> None:
    # a day above 12 anywhere in the file (either column) tells the order of the others
    us = write(tmp_path, "us.csv", US_EXPORT + "11/13/2026,5.00,USD,X,\n")
    eu = write(tmp_path, "eu.csv", "Date,Value date,Amount,Currency,Payer\n"
               "05/11/2026,13/11/2026,7.00,USD,Y\n")
    same = write(tmp_path, "same.csv", "Date,Amount,Currency,Payer\n05/05/2026,9.00,USD,Z\n")
    assert import_statement(books, us).errors == []
    assert import_statement(books, eu).errors == []
    assert import_statement(books, same).errors == []
    books.commit()
    assert _received(books) == [date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 13),
                                date(2026, 11, 5), date(2026, 5, 5)]


def test_dates_written_with_dots_are_day_first(books, tmp_path) -> None:
    # given a German export covering only days 1-12 (dots: the day-first form)
    path = write(tmp_path, "de.csv", "Date;Amount;Currency;Payer\n"
                 "05.11.2026;7,00;EUR;Müller GmbH\n06.11.2026;8,00;EUR;Müller GmbH\n")
    # when it is imported with no date order given
    report = import_statement(books, path)
    books.commit()
    # then it is read day first
    assert report.errors == []
    assert _received(books) == [date(2026, 11, 5), date(2026, 11, 6)]


def test_a_file_writing_dates_both_ways_is_refused(books, tmp_path) -> None:
    path = write(tmp_path, "both.csv", "Date,Amount,Currency,Payer\n"
                 "13/11/2026,1.00,USD,A\n11/14/2026,2.00,USD,B\n")
    report = import_statement(books, path)
    assert report.errors == ["the file writes dates day first (row 2: '13/11/2026') and month "
                             "first (row 3: '11/14/2026'); fix the file"]


def test_the_cli_and_the_setting_give_the_date_order(books, database_url, tmp_path,
                                                     monkeypatch, capsys) -> None:
    # given
    path = write(tmp_path, "us.csv", US_EXPORT)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # when no order is given, the file is refused
    assert o2c(["import", "bank-statement", str(path)]) == 1
    assert "--date-order" in capsys.readouterr().err
    # when the setting gives it (and the option overrides the setting)
    monkeypatch.setenv("O2C_BANK_CSV_DATE_ORDER", "dmy")
    assert o2c(["import", "bank-statement", str(path), "--date-order", "mdy"]) == 0
    assert '"created": 2' in capsys.readouterr().out
    monkeypatch.setenv("O2C_BANK_CSV_DATE_ORDER", "mdy")
    assert o2c(["import", "bank-statement", str(path)]) == 0
    assert '"unchanged": 2' in capsys.readouterr().out
    # then
    books.expire_all()
    assert _received(books) == [date(2026, 11, 5), date(2026, 11, 6)]
