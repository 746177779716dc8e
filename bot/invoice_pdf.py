"""The invoice as a PDF (fpdf2), attached to the invoice e-mail (SPEC §3: invoice number,
order and ship dates, billing and shipping addresses, lines with quantities, unit prices and
discounts, fees, taxes, totals, payment terms, due date and payment details).

Uses the PDF core font (Helvetica), which covers Latin-1: other Latin letters print as their
base letter, dashes and quotes in their plain form, and anything else (other scripts, emoji)
as "?" rather than failing the e-mail (`_latin1`). Content streams are left uncompressed:
invoices are small, and the text stays searchable by tools and tests.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fpdf import FPDF

from models import money

# What Latin-1 lacks but the core font can print near enough: letters with no decomposition
# to a base letter, and typographic signs (names, addresses and reasons are typed anywhere)
_PLAIN = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h",
                        "ı": "i", "Ŧ": "T", "ŧ": "t", "Œ": "OE", "œ": "oe", "ĸ": "k",
                        "Ŋ": "N", "ŋ": "n", "–": "-", "—": "-", "‐": "-", "‑": "-",
                        "−": "-", "‘": "'", "’": "'", "‚": ",", "“": '"', "”": '"',
                        "„": '"', "…": "...", "•": "-", "€": "EUR", "\u2009": " ",
                        "\u202f": " "})


def _latin1(value: object) -> str:
    """`value` as the core font can print it: Latin-1 as is; another Latin letter as its
    base letter ("Łódź" -> "Lódz"), a dash or quote in its plain form; anything else (other
    scripts, emoji) as a visible "?" — never a failed render."""
    text = unicodedata.normalize("NFC", str(value if value is not None else ""))
    out = []
    for char in text.translate(_PLAIN):
        if ord(char) < 256:
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char)
                       if not unicodedata.combining(c))
        out.append(base if base and max(map(ord, base)) < 256 else "?")
    return "".join(out)


def _day(value: Any) -> str:
    return value.strftime("%d %b %Y") if value else "-"


def early_payment_text(invoice: Any) -> str | None:
    """The `d/n NETm` offer as the invoice states it (PDF and e-mail), or None: the discount
    cash application takes (`matching.early_payment_offer`), in the invoice currency."""
    from workflows.matching import early_payment_offer

    offer = early_payment_offer(invoice)
    if offer is None:
        return None
    discount, last_day, pct = offer
    cur, total = invoice.currency, invoice.total_minor
    return (f"Pay {money.format_money(total - discount, cur)} by {_day(last_day)} "
            f"({pct.normalize():f} % "
            f"early-payment discount of {money.format_money(discount, cur)}), else "
            f"{money.format_money(total, cur)} by {_day(invoice.due_date)}")


def _document(title: str, *, seller: str, from_email: str, heading: str | None = None
              ) -> FPDF:
    """A new A4 PDF (uncompressed) with its title and author, and the first page begun with
    the heading (default: the title) and who it is from."""
    pdf = FPDF(format="A4")
    pdf.set_compression(False)
    pdf.set_title(title)
    pdf.set_author(_latin1(seller))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, _latin1(heading or title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(0, 6, _latin1(f"From {seller} <{from_email}>"), new_x="LMARGIN", new_y="NEXT")
    return pdf


def _facts(pdf: FPDF, facts: list[tuple[str, object]]) -> None:
    """Label (bold) and value rows; a value may run over several lines."""
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(35, 6, _latin1(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")


def render_invoice_pdf(invoice: Any, lines: list[Any], customer: Any, *, seller: str,
                       from_email: str) -> bytes:
    cur = invoice.currency

    def amount(minor: int) -> str:
        return money.format_money(int(minor), cur)

    pdf = _document(f"Invoice {invoice.number}", seller=seller, from_email=from_email)
    pdf.ln(4)
    _facts(pdf, [("Customer", customer.name), ("Issue date", _day(invoice.issue_date)),
             ("Order date", _day(invoice.order_date)), ("Ship date", _day(invoice.ship_date)),
             ("Payment terms", invoice.payment_terms), ("Due date", _day(invoice.due_date)),
             ("Bill to", invoice.billing_address or "-"),
             ("Ship to", invoice.shipping_address or "-")])
    pdf.ln(4)
    widths = (10, 80, 15, 30, 15, 40)
    pdf.set_font("Helvetica", "B", 9)
    for width, title in zip(widths, ("#", "Description", "Qty", "Unit price", "Disc.",
                                     "Line total"), strict=True):
        pdf.cell(width, 7, title, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for line in lines:
        discount = f"{money.bp_to_pct(line.discount_bp)}%" if line.discount_bp else ""
        description = line.description + (f" ({line.sku})" if line.sku else "")
        cells = (str(line.line_no), description[:60], str(line.quantity),
                 amount(line.unit_price_minor), discount, amount(line.line_total_minor))
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 6, _latin1(text))
        pdf.ln()
    pdf.ln(3)
    settled = invoice.total_minor - invoice.balance_minor
    rows = [("Subtotal", invoice.subtotal_minor), ("Discount", invoice.discount_minor),
            ("Fees", invoice.fees_minor), ("Tax", invoice.tax_minor),
            ("Total", invoice.total_minor)]
    if settled:  # say why the amount due is less than the total (issue 13)
        rows.append(("Paid or credited", -settled))
    rows.append(("Amount due", invoice.balance_minor))
    for label, minor in rows:
        pdf.set_font("Helvetica", "B" if label in ("Total", "Amount due") else "", 10)
        pdf.cell(150, 6, label, align="R")
        pdf.cell(40, 6, _latin1(amount(minor)), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 9)
    if invoice.balance_minor <= 0:
        pdf.multi_cell(0, 5, _latin1(
            f"Nothing is due: this invoice was settled in full ({amount(settled)} paid or "
            f"credited). This copy is for your records. Questions: {from_email}."))
        return bytes(pdf.output())
    pdf.multi_cell(0, 5, _latin1(
        f"Payment details: pay by bank transfer by {_day(invoice.due_date)}, quoting "
        f"{invoice.number}. Questions: {from_email}."), new_x="LMARGIN", new_y="NEXT")
    early = early_payment_text(invoice)
    if early:
        pdf.multi_cell(0, 5, _latin1(early + "."), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def render_credit_note_pdf(note: Any, invoice: Any, lines: list[Any], customer: Any, *,
                           seller: str, from_email: str) -> bytes:
    """A credit note (SPEC §3 "Back office"): its number and date, the invoice it corrects,
    the reason, what it takes off each line, its total, and how much of it reduced the
    invoice and how much became credit on the customer's account."""
    cur = note.currency

    def amount(minor: int) -> str:
        return money.format_money(int(minor), cur)

    pdf = _document(f"Credit note {note.number}", seller=seller, from_email=from_email)
    pdf.ln(4)
    _facts(pdf, [("Customer", customer.name), ("Issue date", _day(note.value_date)),
             ("For invoice", f"{invoice.number} of {_day(invoice.issue_date)}"),
             ("Reason", note.reason), ("Bill to", invoice.billing_address or "-")])
    if lines:
        pdf.ln(4)
        widths = (20, 30, 50, 40, 50)
        pdf.set_font("Helvetica", "B", 9)
        for width, title in zip(widths, ("Line", "Qty", "Net", "Tax", "Credited"), strict=True):
            pdf.cell(width, 7, title, border="B")
        pdf.ln()
        pdf.set_font("Helvetica", "", 9)
        for line in lines:
            cells = (str(line.line_no), str(line.quantity or ""), amount(line.net_minor),
                     amount(line.tax_minor), amount(line.amount_minor))
            for width, text in zip(widths, cells, strict=True):
                pdf.cell(width, 6, _latin1(text))
            pdf.ln()
    pdf.ln(3)
    for label, minor in (("Credit total", note.amount_minor + note.customer_credit_minor),
                         ("Taken off the invoice", note.amount_minor),
                         ("Credit on your account", note.customer_credit_minor)):
        pdf.set_font("Helvetica", "B" if label == "Credit total" else "", 10)
        pdf.cell(150, 6, label, align="R")
        pdf.cell(40, 6, _latin1(amount(minor)), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


STATEMENT_KINDS = {"invoice": "Invoice", "payment": "Payment", "credit_note": "Credit note",
                   "write_off": "Write-off"}


def render_statement_pdf(statement: Any, *, seller: str, from_email: str) -> bytes:
    """A statement of account (issue 19, `workflows.statements`): opening balance, every
    invoice, payment, credit note and write-off of the period with the running balance,
    closing balance, aging at the period's end, and what is held for the customer apart from
    the balance (unapplied cash, credit on account from credit notes) with the net position."""
    cur = statement.currency

    def amount(minor: int) -> str:
        return money.format_money(int(minor), cur)

    customer = statement.customer
    pdf = _document(f"Statement of account {customer.name}", heading="Statement of account",
                    seller=seller, from_email=from_email)
    pdf.ln(2)
    _facts(pdf, [("Customer", f"{customer.name} ({customer.external_id})"),
                 ("Period", f"{_day(statement.start)} to {_day(statement.end)}"),
                 ("Bill to", customer.billing_address or "-")])
    pdf.ln(3)
    widths = (28, 28, 74, 30, 30)
    pdf.set_font("Helvetica", "B", 9)
    for width, title in zip(widths, ("Date", "Type", "Reference", "Amount", "Balance"),
                            strict=True):
        pdf.cell(width, 7, title, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(sum(widths[:4]), 6, _latin1(f"Opening balance on {_day(statement.start)}"))
    pdf.cell(widths[4], 6, _latin1(amount(statement.opening_minor)), new_x="LMARGIN",
             new_y="NEXT")
    for line in statement.lines:
        cells = (_day(line.day), STATEMENT_KINDS[line.kind], line.reference,
                 amount(line.amount_minor), amount(line.balance_minor))
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 6, _latin1(text)[:60])
        pdf.ln()
        if line.credit_minor:  # the rest of a credit note: credit on account, not here
            pdf.cell(sum(widths[:2]), 6, "")
            pdf.cell(sum(widths[2:]), 6, _latin1(
                f"of which {amount(line.credit_minor)} to your account (not in the balance)"),
                new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(sum(widths[:4]), 8, _latin1(f"Closing balance on {_day(statement.end)}"),
             border="T")
    pdf.cell(widths[4], 8, _latin1(amount(statement.closing_minor)), border="T",
             new_x="LMARGIN", new_y="NEXT")
    credit = statement.customer_credit_minor
    pdf.set_font("Helvetica", "", 9)
    if statement.unapplied_minor:
        pdf.cell(0, 6, _latin1(f"Unapplied payments on account (not in the balance): "
                               f"{amount(statement.unapplied_minor)}"),
                 new_x="LMARGIN", new_y="NEXT")
    if credit:
        pdf.cell(0, 6, _latin1(f"Credit on your account from credit notes (not in the "
                               f"balance): {amount(credit)}"), new_x="LMARGIN", new_y="NEXT")
    if statement.unapplied_minor or credit:
        net = statement.closing_minor - statement.unapplied_minor - credit
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 7, _latin1(f"Net {'owed by you' if net >= 0 else 'owed to you'} on "
                               f"{_day(statement.end)}: {amount(abs(net))}"),
                 new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 7, _latin1(f"Aging on {_day(statement.end)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    labels = {"current": "Current", "1-30": "1-30 days", "31-60": "31-60 days",
              "61-90": "61-90 days", "90+": "over 90 days"}
    for bucket, label in labels.items():
        pdf.cell(36, 6, _latin1(f"{label}: {amount(statement.aging.get(bucket, 0))}"))
    pdf.ln()
    return bytes(pdf.output())
