"""CSV import (`o2c import`): all or nothing per file, every error by row and column, the same
rules as the REST API, and files as spreadsheets really save them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from bot import cli
from bot.db import Database
from bot.imports import import_csv
from models import (
    AuditEvent,
    Customer,
    Invoice,
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    Product,
)
from tests.support import factories as f
from workflows import invariants


def write(tmp_path: Path, text: str, name: str = "data.csv", *, encoding: str = "utf-8"
          ) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def count(db: Database, model: type) -> int:
    with db.read_session() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def company(db: Database, *, with_products: bool = True) -> None:
    """Users, two customers and two products, made through the workflows."""
    with db.transaction() as session:
        f.user(session, "USALES01", "sales")
        f.user(session, "UCOLL001", "collector")
        f.customer(session, "C-GLOBEX", "Globex Corporation")
        f.customer(session, "C-INITECH", "Initech")
        if with_products:
            f.product(session, "WID-1", price="19.99")
            f.product(session, "GADGET", price="250.00")


CUSTOMERS = (
    "external_id,name,currency,credit_limit,payment_terms,billing_email,collector,sales_rep,"
    "credit_reviewed\n"
    "C-1001,Acme Corp,USD,50000.00,NET30,ap@acme.example.com,UCOLL001,USALES01,yes\n"
    "C-1002,Hooli,EUR,1200,2/10 NET30,,,,false\n")


def test_customers_import(db: Database, tmp_path: Path) -> None:
    # given
    company(db)
    # when
    report = import_csv(db, "customers", write(tmp_path, CUSTOMERS))
    # then
    assert report.errors == []
    assert report.count == 2
    with db.read_session() as session:
        acme = session.exec(select(Customer).where(Customer.external_id == "C-1001")).one()
        hooli = session.exec(select(Customer).where(Customer.external_id == "C-1002")).one()
    assert (acme.credit_limit_minor, acme.collector_id, acme.credit_reviewed) == (
        5000000, "UCOLL001", True)
    assert (hooli.currency, hooli.payment_terms, hooli.credit_reviewed) == (
        "EUR", "2/10 NET30", False)
    assert hooli.billing_email is None


def test_a_customer_twice_in_one_file_with_other_values_is_refused(db: Database,
                                                                   tmp_path: Path) -> None:
    # given a file naming C-1001 twice with two credit limits (which one is meant?)
    company(db)
    path = write(tmp_path, "external_id,name,currency,credit_limit,payment_terms\n"
                 "C-1001,Acme Corp,USD,10000.00,NET30\n"
                 "C-1002,Hooli,USD,500.00,NET30\n"
                 "C-1001,Acme Corp,USD,100000.00,NET30\n")
    # when
    report = import_csv(db, "customers", path)
    # then the second one is named and nothing is stored (not the last one silently winning)
    assert report.errors == ["row 4, column external_id: C-1001 is also on row 2 with other "
                             "values; give each customer once"]
    assert count(db, Customer) == 2  # Globex and Initech only


def test_a_row_repeated_as_is_is_imported_once(db: Database, tmp_path: Path) -> None:
    # given a stock file with one row pasted twice
    path = write(tmp_path, "sku,name,unit_price,currency,on_hand\n"
                 "WID-9,Widget Nine,12.50,USD,40\n"
                 "WID-9,Widget Nine,12.50,USD,40\n")
    # when
    report = import_csv(db, "products", path)
    # then
    assert (report.errors, report.count, report.unchanged) == ([], 1, 1)
    assert count(db, Product) == 1


def test_products_import(db: Database, tmp_path: Path) -> None:
    # given
    path = write(tmp_path, "sku,name,unit_price,currency,on_hand,max_discount_pct,revenue_type\n"
                 "WID-9,Widget Nine,12.50,USD,40,10,goods\n"
                 "SVC-1,Installation,900,USD,0,,service\n")
    # when
    report = import_csv(db, "products", path)
    # then
    assert (report.errors, report.count) == ([], 2)
    with db.read_session() as session:
        widget = session.exec(select(Product).where(Product.sku == "WID-9")).one()
        service = session.exec(select(Product).where(Product.sku == "SVC-1")).one()
    assert (widget.unit_price_minor, widget.on_hand, widget.max_discount_bp) == (1250, 40, 1000)
    assert (service.revenue_type, service.max_discount_bp) == ("service", None)


def test_a_stock_file_keeps_what_it_leaves_out(db: Database, tmp_path: Path) -> None:
    # given a service product with its own discount cap and SSP
    import_csv(db, "products", write(
        tmp_path, "sku,name,unit_price,currency,on_hand,max_discount_pct,revenue_type,ssp\n"
        "SVC-1,Installation,900,USD,0,5,service,800\n"))
    # when a stock file re-sends it with only the required columns (and one empty cell)
    report = import_csv(db, "products", write(
        tmp_path, "sku,name,unit_price,currency,on_hand,max_discount_pct\n"
        "SVC-1,Installation,950,USD,0,\n", name="stock.csv"))
    # then the price changes and the rest is kept: still a service, recognised over time
    assert (report.errors, report.count) == ([], 1)
    with db.read_session() as session:
        service = session.exec(select(Product).where(Product.sku == "SVC-1")).one()
    assert (service.unit_price_minor, service.revenue_type, service.max_discount_bp,
            service.ssp_minor) == (95000, "service", 500, 80000)


def test_orders_are_grouped_into_multi_line_orders(db: Database, tmp_path: Path) -> None:
    # given
    company(db)
    path = write(tmp_path,
                 "order_ref,customer,sales_rep,currency,order_date,sku,quantity,discount_pct\n"
                 "A,C-GLOBEX,USALES01,USD,2026-01-05,WID-1,3,\n"
                 "B,C-INITECH,USALES01,USD,,GADGET,1,5\n"
                 "A,,,,,GADGET,2,\n")
    # when
    report = import_csv(db, "orders", path)
    # then
    assert (report.errors, report.count) == ([], 2)
    with db.read_session() as session:
        found = session.exec(select(Order).order_by(Order.id)).all()
        lines = session.exec(select(OrderLine).where(OrderLine.order_id == found[0].id)
                             .order_by(OrderLine.line_no)).all()
        assert invariants.validate_all(session) == []
    assert [(li.sku, li.quantity) for li in lines] == [("WID-1", 3), ("GADGET", 2)]
    assert found[0].order_date == date(2026, 1, 5)
    assert found[0].total_minor == 3 * 1999 + 2 * 25000
    assert found[0].source == "csv"
    assert {o.status for o in found} == {OrderStatus.APPROVED}


def test_order_lines_carry_service_periods_and_billing(db: Database, tmp_path: Path) -> None:
    # given: a subscription and a service, with an SSP, from a products file
    company(db)
    products = write(tmp_path, "sku,name,unit_price,currency,on_hand,revenue_type,ssp\n"
                     "SUB-1,Support,120.00,USD,100,subscription,100.00\n"
                     "SVC-1,Installation,900,USD,100,service,\n", "products.csv")
    path = write(tmp_path,
                 "order_ref,customer,sales_rep,currency,sku,quantity,service_start,"
                 "service_end,billing\n"
                 "A,C-GLOBEX,USALES01,USD,SUB-1,2,2026-01-01,2026-12-31,quarterly\n"
                 "A,,,,SVC-1,1,2026-01-10,2026-02-09,\n"
                 "B,C-INITECH,USALES01,USD,SVC-1,1,2026-03-01,,\n"
                 "C,C-INITECH,USALES01,USD,SUB-1,1,2026-01-01,2026-12-31,weekly\n")
    # when
    assert import_csv(db, "products", products).errors == []
    report = import_csv(db, "orders", path)
    # then: the rows without an end or with an unknown frequency are named; nothing stored
    assert report.errors == ["row 4, column service_end: SVC-1 is a service: give the last "
                             "day of the period it covers",
                             "row 5, column billing: Input should be 'monthly', 'quarterly' "
                             "or 'annual'"]
    assert count(db, Order) == 0
    # and without them it goes in
    fixed = write(tmp_path, "\n".join(path.read_text().splitlines()[:3]) + "\n", "ok.csv")
    assert import_csv(db, "orders", fixed).errors == []
    with db.read_session() as session:
        lines = session.exec(select(OrderLine).order_by(OrderLine.line_no)).all()
        ssp = session.exec(select(Product.ssp_minor).where(Product.sku == "SUB-1")).one()
    assert [(li.sku, li.service_start, li.service_end, li.billing, li.ssp_minor)
            for li in lines] == [
        ("SUB-1", date(2026, 1, 1), date(2026, 12, 31), "quarterly", 10000),
        ("SVC-1", date(2026, 1, 10), date(2026, 2, 9), None, 90000)]
    assert ssp == 10000


def test_order_lines_that_disagree_on_the_customer_are_refused(db: Database,
                                                               tmp_path: Path) -> None:
    # given
    company(db)
    path = write(tmp_path, "external_id,customer,sales_rep,currency,sku,quantity\n"
                 "PO-1,C-GLOBEX,USALES01,USD,WID-1,1\n"
                 "PO-1,C-INITECH,USALES01,USD,WID-1,1\n")
    # when
    report = import_csv(db, "orders", path)
    # then
    assert report.errors == ["row 3, column customer: order 'PO-1' has 'C-GLOBEX' on row 2; "
                             "all lines of an order must agree"]
    assert count(db, Order) == 0


def test_invoices_import(db: Database, tmp_path: Path) -> None:
    # given
    company(db)
    path = write(tmp_path, "number,customer,currency,issue_date,due_date,total\n"
                 "ERP-1,C-GLOBEX,USD,2026-01-01,2026-01-31,1250.00\n"
                 "ERP-2,C-INITECH,USD,2026-02-01,2026-03-03,99.95\n")
    # when
    report = import_csv(db, "invoices", path)
    # then
    assert (report.errors, report.count) == ([], 2)
    with db.read_session() as session:
        erp1 = session.exec(select(Invoice).where(Invoice.number == "ERP-1")).one()
    assert (erp1.total_minor, erp1.balance_minor, erp1.source) == (125000, 125000, "erp")


def test_invoices_carry_their_own_payment_terms(db: Database, tmp_path: Path) -> None:
    # given an ERP export with the invoices' terms, one with an early-payment discount
    company(db)
    path = write(tmp_path, "number,customer,currency,issue_date,due_date,total,payment_terms\n"
                 "ERP-1,C-GLOBEX,USD,2026-01-01,2026-01-31,1250.00,2/10 NET30\n"
                 "ERP-2,C-INITECH,USD,2026-02-01,2026-03-03,99.95,\n"
                 "ERP-3,C-INITECH,USD,2026-02-01,2026-03-03,99.95,NET 30 days\n")
    # when
    report = import_csv(db, "invoices", path)
    # then the terms are the API's field, checked as the API checks them
    assert report.errors == ["row 4, column payment_terms: use NET<n>, <d>/<n> NET<m> "
                             "(e.g. 2/10 NET30) or DUE_ON_RECEIPT"]
    # and without the bad row the discount terms are the invoice's, not NET<days>
    fixed = write(tmp_path, "\n".join(path.read_text().splitlines()[:3]) + "\n", "ok.csv")
    assert import_csv(db, "invoices", fixed).errors == []
    with db.read_session() as session:
        terms = dict(session.exec(select(Invoice.number, Invoice.payment_terms)).all())
    assert terms == {"ERP-1": "2/10 NET30", "ERP-2": "NET30"}


def test_invoices_are_refused_by_the_rules_of_the_api_row_by_row(db: Database,
                                                                  tmp_path: Path) -> None:
    # given an invoice already stored, and a file breaking each rule once among good rows
    company(db)
    with db.transaction() as session:
        f.invoice(session, "ERP-7", total="500.00")
    path = write(tmp_path, "number,customer,currency,issue_date,due_date,total,order\n"
                 "ERP-1,C-GLOBEX,USD,2026-01-01,2026-01-31,1250.00,\n"
                 "ERP-7,C-GLOBEX,USD,2026-01-01,2026-01-31,10.00,\n"
                 "ERP-1,C-INITECH,USD,2026-01-01,2026-01-31,10.00,\n"
                 "ERP-3,C-NOBODY,USD,2026-01-01,2026-01-31,10.00,\n"
                 "ERP-4,C-GLOBEX,EUR,2026-01-01,2026-01-31,10.00,\n"
                 "ERP-5,C-GLOBEX,USD,2026-02-01,2026-01-31,10.00,\n"
                 "ERP-6,C-GLOBEX,USD,2026-01-01,2026-01-31,10.00,SO-404\n"
                 "ERP-8,C-INITECH,USD,2026-01-01,2026-01-01,10.00,\n")
    # when
    report = import_csv(db, "invoices", path)
    # then every refusal is named by row, as the API names it, and nothing is stored
    assert report.errors == [
        "row 3, column number: invoice ERP-7 already exists; issued invoices are immutable, "
        "send a credit note instead",
        "row 4, column number: invoice ERP-1 already exists; issued invoices are immutable, "
        "send a credit note instead",
        "row 5, column customer: unknown customer 'C-NOBODY'",
        "row 6, column currency: Globex Corporation is billed in USD, not EUR",
        "row 7, column due_date: must not be before issue_date",
        "row 8, column order: unknown order 'SO-404' for this customer"]
    assert report.count == 0
    assert count(db, Invoice) == 1


def test_payments_apply_by_reference_and_reimport_changes_nothing(db: Database,
                                                                   tmp_path: Path) -> None:
    # given
    company(db)
    with db.transaction() as session:
        f.invoice(session, "ERP-7", total="500.00")
    path = write(tmp_path, "amount,currency,received_at,payer_name,reference,method,external_id\n"
                 "500.00,USD,2026-02-10,GLOBEX CORP,Invoice ERP-7,ach,BANK-1\n"
                 "20.00,USD,2026-02-11T09:30:00Z,Someone,,wire,BANK-2\n")
    # when
    first = import_csv(db, "payments", path)
    again = import_csv(db, "payments", path)
    # then
    assert (first.errors, first.count) == ([], 2)
    assert (again.errors, again.count, again.unchanged) == ([], 0, 2)
    assert count(db, Payment) == 2
    with db.read_session() as session:
        invoice = session.exec(select(Invoice).where(Invoice.number == "ERP-7")).one()
        bank1 = session.exec(select(Payment).where(Payment.external_id == "BANK-1")).one()
        assert invariants.validate_all(session) == []
    assert invoice.balance_minor == 0
    assert (bank1.status, bank1.source) == ("applied", "csv")


def test_three_bad_rows_are_all_reported_and_nothing_is_stored(db: Database,
                                                              tmp_path: Path) -> None:
    # given: one good order between three bad ones (a model error and two workflow errors)
    company(db)
    path = write(tmp_path, "order_ref,customer,sales_rep,currency,sku,quantity\n"
                 "1,C-GLOBEX,USALES01,USD,WID-1,2\n"
                 "2,C-NOBODY,USALES01,USD,WID-1,1\n"
                 "3,C-GLOBEX,USALES01,USD,WID-1,0\n"
                 "4,C-GLOBEX,USALES01,USD,NO-SUCH-SKU,1\n")
    # when
    report = import_csv(db, "orders", path)
    # then
    assert report.errors == [
        "row 3, column customer: unknown customer 'C-NOBODY'",
        "row 4, column quantity: must be greater than 0",
        "row 5, column sku: unknown SKU 'NO-SUCH-SKU'",
    ]
    assert report.count == 0
    assert count(db, Order) == 0
    assert count(db, OrderLine) == 0


def test_bad_numbers_are_named_by_row_and_column(db: Database, tmp_path: Path) -> None:
    # given
    path = write(tmp_path, "sku,name,unit_price,currency,on_hand\n"
                 "A,Alpha,1.00,USD,1.5\n"
                 "B,Beta,12,USD,abc\n"
                 "C,Gamma,\"1,250.00\",USD,3\n"
                 "D,Delta,5.00,XX,3\n")
    # when
    report = import_csv(db, "products", path)
    # then
    assert report.errors == [
        "row 2, column on_hand: must be a whole number, not '1.5'",
        "row 3, column on_hand: must be a whole number, not 'abc'",
        "row 4, column unit_price: must be a decimal amount like 1250.00 (a dot for decimals, "
        "no thousands separators or currency symbols)",
        "row 5, column currency: must be a 3-letter currency code like USD",
    ]
    assert count(db, Product) == 0


def test_bom_semicolons_crlf_quotes_and_blank_lines(db: Database, tmp_path: Path) -> None:
    # given: what a European spreadsheet saves as "CSV UTF-8"
    company(db)
    text = ("\ufeffexternal_id;name;currency;credit_limit;payment_terms;billing_address\r\n"
            " C-2001 ; \"Wayne Enterprises; Gotham\" ;USD; 1000.00 ;NET45;"
            "\"1007 Mountain Drive,\r\nGotham\"\r\n"
            "C-2002;\"Stark, Industries\";USD;5;DUE_ON_RECEIPT;\r\n"
            "\r\n\r\n")
    # when
    report = import_csv(db, "customers", write(tmp_path, text))
    # then
    assert (report.errors, report.count) == ([], 2)
    with db.read_session() as session:
        wayne = session.exec(select(Customer).where(Customer.external_id == "C-2001")).one()
        stark = session.exec(select(Customer).where(Customer.external_id == "C-2002")).one()
    assert wayne.name == "Wayne Enterprises; Gotham"
    assert wayne.billing_address == "1007 Mountain Drive,\r\nGotham"
    assert (wayne.credit_limit_minor, wayne.payment_terms) == (100000, "NET45")
    assert stark.name == "Stark, Industries"


def test_excel_sep_line_names_the_delimiter(db: Database, tmp_path: Path) -> None:
    # given: Excel's "sep=" hint line, and commas inside unquoted cells of a ;-file
    path = write(tmp_path, "sep=;\nsku;name;unit_price;currency;on_hand\n"
                 "A;Nuts, bolts and washers;1.00;USD;7\n")
    # when
    report = import_csv(db, "products", path)
    # then
    assert (report.errors, report.count) == ([], 1)
    with db.read_session() as session:
        assert session.exec(select(Product.name)).one() == "Nuts, bolts and washers"


def test_rows_after_a_multi_line_cell_keep_spreadsheet_numbers(db: Database,
                                                               tmp_path: Path) -> None:
    # given: row 2 spans two physical lines; the bad row is row 3 in a spreadsheet
    text = ("external_id,name,currency,credit_limit,payment_terms,billing_address\n"
            "C-1,One,USD,10,NET30,\"line 1\nline 2\"\n"
            "C-2,Two,USD,10,NET 30 DAYS,\n")
    # when
    report = import_csv(db, "customers", write(tmp_path, text))
    # then
    assert report.errors == ["row 3, column payment_terms: use NET<n>, <d>/<n> NET<m> "
                             "(e.g. 2/10 NET30) or DUE_ON_RECEIPT"]
    assert count(db, Customer) == 0


def test_early_payment_discounts_out_of_bounds_are_refused(db: Database,
                                                          tmp_path: Path) -> None:
    # given: a 99.99 % discount (a payment of 0.10 would settle 1,000.00) and discount days
    # past the net days
    text = ("external_id,name,currency,credit_limit,payment_terms\n"
            "C-1,One,USD,10,10/10 NET30\n"
            "C-2,Two,USD,10,99.99/10 NET30\n"
            "C-3,Three,USD,10,2/45 NET30\n")
    # when
    report = import_csv(db, "customers", write(tmp_path, text))
    # then
    why = ("column payment_terms: an early-payment discount is at most 10 % and its days "
           "within the net days (e.g. 2/10 NET30)")
    assert report.errors == [f"row 3, {why}", f"row 4, {why}"]
    assert count(db, Customer) == 0


def test_missing_required_column_is_named(db: Database, tmp_path: Path) -> None:
    # given
    path = write(tmp_path, "external_id,name,currency,payment_terms\nC-1,One,USD,NET30\n")
    # when
    report = import_csv(db, "customers", path)
    # then
    assert report.errors == ["header, column credit_limit: required column is missing"]
    assert count(db, Customer) == 0


def test_unknown_column_is_named(db: Database, tmp_path: Path) -> None:
    # given
    path = write(tmp_path, "sku,name,unit_price,currency,on_hand,colour\n"
                 "A,Alpha,1.00,USD,1,red\n")
    # when
    report = import_csv(db, "products", path)
    # then
    assert len(report.errors) == 1
    assert report.errors[0].startswith("header, column colour: unknown column")
    assert count(db, Product) == 0


@pytest.mark.parametrize(("content", "expected"), [
    (None, "file not found"),
    (b"", "the file is empty"),
    (b"PK\x03\x04\x14\x00\x06\x00binary", "spreadsheet workbook"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    (b"caf\xe9,bar\n", "not UTF-8"),
    (b"hello world\n1,2\n", "no known column names"),
])
def test_unreadable_files_get_a_clear_error(db: Database, tmp_path: Path,
                                            content: bytes | None, expected: str) -> None:
    # given
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    # when
    report = import_csv(db, "customers", path)
    # then
    assert len(report.errors) == 1
    assert expected in report.errors[0]


def test_cli_imports_a_file(db: Database, database_url: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    # given
    company(db)
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = write(tmp_path, CUSTOMERS)
    # when
    code = cli.main(["import", "customers", str(path)])
    # then
    assert code == 0
    assert "imported 2 customers" in capsys.readouterr().out
    assert count(db, Customer) == 4
    # and the same file again the next night changes nothing, and says so
    assert cli.main(["import", "customers", str(path)]) == 0
    assert "imported 0 customers, 2 already stored as is" in capsys.readouterr().out


def test_cli_lists_errors_and_exits_1(db: Database, database_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # given
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = write(tmp_path, "sku,name,unit_price,currency,on_hand\n"
                 "A,Alpha,-1,USD,1\n"
                 "B,Beta,1.00,USD,-4\n")
    # when
    code = cli.main(["import", "products", str(path)])
    # then
    assert code == 1
    err = capsys.readouterr().err
    assert "2 error(s); nothing was imported" in err
    assert "row 2, column unit_price:" in err
    assert "row 3, column on_hand: must not be negative" in err
    with Session(db.engine) as session:
        assert session.exec(select(func.count()).select_from(Product)).one() == 0


def test_amounts_quantities_and_dates_beyond_the_bounds_are_named_by_row_and_column(
        db: Database, tmp_path: Path) -> None:
    # given a spreadsheet with values the API would refuse
    company(db)
    products = write(tmp_path, "sku,name,unit_price,currency,on_hand\n"
                     "A,Alpha,10000000000000.00,USD,1\n"
                     "B,Beta,１２３.45,USD,1\n"
                     "C,Gamma,1.00,USD,9223372036854775808\n"
                     "D,Delta,1.00,USD,１２\n"
                     "E,Epsilon,1.00,USD,1\n", name="products.csv")
    customers = write(tmp_path, "external_id,name,currency,credit_limit,payment_terms,"
                      "billing_email\n"
                      "C-JKT,PT Jakarta,IDR,1000000000.00,NET30,ap@jakarta.example\n"
                      "C-BAD,Bad Mail,USD,1.00,NET30,\"ap@x.example\r\nBcc: y@z.example\"\n",
                      name="customers.csv")
    payments = write(tmp_path, "amount,currency,received_at\n"
                     "9000000000000.00,USD,2026-11-20\n"
                     "5.00,USD,0001-01-01T00:00:00+14:00\n", name="payments.csv")
    # when
    product_report = import_csv(db, "products", products)
    customer_report = import_csv(db, "customers", customers)
    payment_report = import_csv(db, "payments", payments)
    # then
    assert [e.split(":")[0] for e in product_report.errors] == [
        "row 2, column unit_price", "row 3, column unit_price", "row 4, column on_hand",
        "row 5, column on_hand"]
    assert [e.split(":")[0] for e in customer_report.errors] == ["row 3, column billing_email"]
    assert payment_report.errors == [
        "row 3, column received_at: Value error, year must be between 1900 and 2999"]
    assert count(db, Product) == 2 and count(db, Payment) == 0  # the company's two products


def test_a_million_bad_rows_report_the_first_100_errors_and_how_many_more(
        db: Database, tmp_path: Path) -> None:
    # given 2,500 rows, each with a bad amount
    path = write(tmp_path, "amount,currency,received_at\n"
                 + "1e5,USD,2026-11-20\n" * 2500)
    # when
    report = import_csv(db, "payments", path)
    # then
    assert report.error_count == 2500
    assert len(report.errors) == 101
    assert report.errors[0].startswith("row 2, column amount:")
    assert report.errors[-1] == "and 2400 more error(s)"
    assert count(db, Payment) == 0


# -- rows without a key: importing the file again changes nothing ---------------------------------
# a bank export saved as a payments file: no external_id column, two identical rows
UNKEYED_PAYMENTS = ("amount,currency,received_at,payer_name,reference\n"
                    "20.00,USD,2026-02-11,Someone,\n"
                    "20.00,USD,2026-02-11,Someone,\n"
                    "35.00,USD,2026-02-11T09:30:00Z,Other,Invoice 7\n")


def test_payments_without_an_external_id_are_recorded_once_however_often_imported(
        db: Database, tmp_path: Path) -> None:
    # given a bank export saved as a payments file: no external_id column, two identical rows
    company(db)
    rows = UNKEYED_PAYMENTS
    path = write(tmp_path, rows)
    # when it is imported twice
    first = import_csv(db, "payments", path)
    again = import_csv(db, "payments", path)
    # then the two identical rows are two payments, and the second import changes nothing
    assert (first.errors, first.count) == ([], 3)
    assert (again.errors, again.count, again.unchanged) == ([], 0, 3)
    with db.read_session() as session:
        payments = session.exec(select(Payment).order_by(Payment.id)).all()
    assert [p.amount_minor for p in payments] == [2000, 2000, 3500]
    assert len({p.external_id for p in payments}) == 3
    # and a longer file holding the same rows and one more identical row adds that one only
    more = write(tmp_path, rows + "20.00,USD,2026-02-11,Someone,\n", "more.csv")
    third = import_csv(db, "payments", more)
    assert (third.errors, third.count, third.unchanged) == ([], 1, 3)
    assert count(db, Payment) == 4


def test_payments_imported_before_rows_were_keyed_are_not_recorded_again(
        db: Database, tmp_path: Path) -> None:
    # given a payments file without external_ids imported by an earlier version, which
    # stored its payments with no external_id (two identical rows: two payments)
    company(db)
    rows = UNKEYED_PAYMENTS
    path = write(tmp_path, rows)
    assert import_csv(db, "payments", path).count == 3
    with db.transaction() as session:
        session.execute(sa.update(Payment.__table__).values(external_id=None))
    # when the same file, with one more identical row, is imported after the upgrade
    more = write(tmp_path, rows + "20.00,USD,2026-02-11,Someone,\n", "more.csv")
    report = import_csv(db, "payments", more)
    # then the three earlier payments are taken for its first three rows, the fourth is new
    assert (report.errors, report.count, report.unchanged) == ([], 1, 3)
    with db.read_session() as session:
        payments = session.exec(select(Payment).order_by(Payment.id)).all()
        keyed = session.exec(select(AuditEvent).where(AuditEvent.action == "payment.keyed")
                             ).all()
    assert [p.amount_minor for p in payments] == [2000, 2000, 3500, 2000]
    assert all(p.external_id for p in payments) and len({p.external_id for p in payments}) == 4
    assert sorted(int(e.entity_id) for e in keyed) == [p.id for p in payments[:3]]
    # and importing it again changes nothing
    again = import_csv(db, "payments", more)
    assert (again.errors, again.count, again.unchanged, count(db, Payment)) == ([], 0, 4, 4)


def test_a_payment_row_with_an_empty_external_id_gets_one_from_its_content(
        db: Database, tmp_path: Path) -> None:
    company(db)
    path = write(tmp_path, "amount,currency,received_at,payer_name,external_id\n"
                 "500.00,USD,2026-02-10,GLOBEX CORP,BANK-1\n"
                 "20.00,USD,2026-02-11,Someone,\n")
    assert import_csv(db, "payments", path).count == 2
    assert (import_csv(db, "payments", path).unchanged, count(db, Payment)) == (2, 2)


def test_an_order_row_without_a_key_is_refused(db: Database, tmp_path: Path) -> None:
    # given an order with neither order_ref nor external_id: nothing could tell it from a
    # second order of the same goods, so importing the file again would order them again
    company(db)
    path = write(tmp_path, "customer,sales_rep,currency,sku,quantity\n"
                 "C-GLOBEX,USALES01,USD,WID-1,3\n")
    # when
    report = import_csv(db, "orders", path)
    # then
    assert report.errors == [
        "row 2, column external_id: is required (or order_ref): the order's id in your "
        "system, so that importing the file again cannot create the order twice"]
    assert count(db, Order) == 0


def test_an_orders_file_imported_again_creates_no_order(db: Database, tmp_path: Path) -> None:
    # given orders keyed by order_ref only
    company(db)
    path = write(tmp_path, "order_ref,customer,sales_rep,currency,sku,quantity\n"
                 "SO-1,C-GLOBEX,USALES01,USD,WID-1,3\n"
                 "SO-2,C-INITECH,USALES01,USD,GADGET,1\n")
    assert (import_csv(db, "orders", path).errors, count(db, Order)) == ([], 2)
    # when
    again = import_csv(db, "orders", path)
    # then each order is named and none is created twice
    assert again.errors == ["row 2, column order_ref: order 'SO-1' already exists",
                            "row 3, column order_ref: order 'SO-2' already exists"]
    assert count(db, Order) == 2
    with db.read_session() as session:
        assert set(session.exec(select(Order.external_id)).all()) == {"SO-1", "SO-2"}


def test_a_key_of_spaces_is_a_row_error(db: Database, tmp_path: Path) -> None:
    # given keys typed as spaces (quoted, so the spreadsheet kept them)
    company(db)
    orders = write(tmp_path, "external_id,customer,sales_rep,currency,sku,quantity\n"
                   '"   ",C-GLOBEX,USALES01,USD,WID-1,3\n', "orders.csv")
    customers = write(tmp_path, "external_id,name,currency,credit_limit,payment_terms\n"
                      '"  ",Acme,USD,10.00,NET30\n', "customers.csv")
    # when / then: each is refused by row and column, nothing stored
    assert import_csv(db, "orders", orders).errors == [
        "row 2, column external_id: is required (or order_ref): the order's id in your "
        "system, so that importing the file again cannot create the order twice"]
    assert import_csv(db, "customers", customers).errors == [
        "row 2, column external_id: is required"]
    assert (count(db, Order), count(db, Customer)) == (0, 2)


def test_master_data_imported_again_changes_nothing_and_says_so(db: Database,
                                                               tmp_path: Path) -> None:
    # given the nightly customers and products files, imported once
    company(db)
    products = ("sku,name,unit_price,currency,on_hand,revenue_type\n"
                "WID-9,Widget Nine,12.50,USD,40,goods\n"
                "SVC-1,Installation,900,USD,0,service\n")
    assert import_csv(db, "customers", write(tmp_path, CUSTOMERS)).count == 2
    assert import_csv(db, "products", write(tmp_path, products, "p.csv")).count == 2
    audited = count(db, AuditEvent)
    # when the same files come again the next night
    again = import_csv(db, "customers", write(tmp_path, CUSTOMERS))
    again_products = import_csv(db, "products", write(tmp_path, products, "p.csv"))
    # then nothing is stored, and the report says nothing was
    assert (again.errors, again.count, again.unchanged) == ([], 0, 2)
    assert (again_products.errors, again_products.count, again_products.unchanged) == (
        [], 0, 2)
    assert count(db, AuditEvent) == audited
    assert count(db, Customer) == 4


def test_a_row_changing_a_customers_currency_is_refused_by_row_and_column(
        db: Database, tmp_path: Path) -> None:
    # given Globex, billed in USD
    company(db)
    # when the ERP file sends it in EUR, next to a good new customer
    report = import_csv(db, "customers", write(
        tmp_path, "external_id,name,currency,credit_limit,payment_terms\n"
        "C-1001,Acme Corp,USD,100.00,NET30\n"
        " C-GLOBEX ,Globex Corporation,EUR,50000.00,NET30\n"))
    # then the row and column are named and nothing is stored
    assert report.errors == ["row 3, column currency: customer C-GLOBEX bills in USD; a "
                             "currency change needs a new customer"]
    assert count(db, Customer) == 2
