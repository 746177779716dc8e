"""The matching engine on its own (no database): each signal, the outcomes, the ranking."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from models.invoices import invoice_number_key
from workflows import matching as m
from workflows import payer_names as pn
from workflows import remittance as r
from workflows import subsets as sub
from workflows.matching import Evidence, OpenItem, PaymentFacts, Rules

ON = date(2026, 11, 20)
RULES = Rules()


def item(id_: int, number: str, balance: int, *, customer: int = 1, total: int | None = None,
         issued: date = date(2026, 10, 1), terms: str = "NET30", currency: str = "USD"
         ) -> OpenItem:
    return OpenItem(id_, number, customer, currency, balance,
                    balance if total is None else total, issued, terms)


def facts(amount: int, *, reference: str | None = None, payer: str | None = None,
          customer: int | None = None, on: date = ON) -> PaymentFacts:
    return PaymentFacts(amount, "USD", on, payer, reference, customer)


def spelled(text: str, number: str) -> str | None:
    return next((kind for w in r.windows(text) if (kind := r.number_matches(w, number))), None)


# -- invoice numbers in text ---------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "INV-2026-000123", "inv 2026/123", "INV2026000123", "Invoice no. INV 2026 000123",
    "payment inv#2026000123 thanks", "INV-2026-123", "Rechnung INV/2026/000123",
])
def test_invoice_number_is_found_in_any_format(text: str) -> None:
    assert spelled(text, "INV-2026-000123") == "full"
    assert "226123" in r.reference_keys(text)


def test_an_erp_number_without_separators_is_found_when_typed_with_them() -> None:
    assert spelled("paid INV 2026 000123", "INV2026000123") == "full"
    assert spelled("inv 2026/123", "INV2026000123") == "full"


def test_number_without_its_prefix_is_a_bare_reference() -> None:
    assert spelled("Invoice 2026-000123", "INV-2026-000123") == "bare"


@pytest.mark.parametrize("text", [
    "INV-2026-001023",  # same non-zero digits, zeros elsewhere: another invoice
    "INV-2026-0001234",  # a longer serial
    "INV-2025-000123",  # another year
    "SO-2026-000123",  # another document type
    "2026",  # only part of it
])
def test_other_numbers_do_not_match(text: str) -> None:
    assert spelled(text, "INV-2026-000123") is None


def test_dates_and_amounts_are_not_read_as_invoice_numbers() -> None:
    assert spelled("paid 2026-11-23", "INV-2026-1123") is None
    assert spelled("amount 1,234.56", "SI-23456") is None


def test_a_digit_group_inside_a_longer_token_is_not_a_bare_reference() -> None:
    # "INV-2026-004322" must not be read as "4322" = SI-0004322
    assert spelled("AP RUN INV-2026-004322", "SI-0004322") is None
    assert spelled("AP RUN 4322", "SI-0004322") == "bare"


def test_one_digit_typo_is_recognised_and_two_are_not() -> None:
    window = next(w for w in r.windows("INV-2026-000124") if len(w.groups) == 3)
    assert r.typo_matches(window, "INV-2026-000123")
    assert not r.typo_matches(window, "INV-2026-000153")  # two digits differ
    assert invoice_number_key("INV-2026-000123") in r.typo_keys("INV-2026-000124")


def test_serial_alone_is_a_partial_reference() -> None:
    inv = item(1, "INV-2026-000123", 1000)
    assert r.partial_references("payment for invoice 123", {1: inv.number}) == {1}
    assert r.partial_references("payment for invoice 1234", {1: inv.number}) == set()


# -- payer names ---------------------------------------------------------------------------------
def test_name_forms_drop_legal_suffixes_and_accents() -> None:
    assert pn.name_form("Société Générale, S.A.") == pn.NameForm("societe generale sa",
                                                                "societe generale", "sa")
    assert pn.name_form("Acme L.L.C.").suffix == "llc"
    assert pn.name_form("The Globex Corporation") == pn.NameForm("globex corporation", "globex",
                                                                "corp")


@pytest.mark.parametrize("payer", [
    "GLOBEX CORPORATION", "Globex Corp.", "GLOBEX CORPORATI",  # case, suffix, truncation
    "GLOBX CORPORATION",  # typo
])
def test_bank_spellings_of_a_name_score_high(payer: str) -> None:
    assert pn.name_similarity(pn.name_form(payer), pn.name_form("Globex Corporation")) >= 90


def test_unrelated_names_score_low() -> None:
    assert pn.name_similarity(pn.name_form("INITECH"), pn.name_form("Globex Corporation")) < 60


def test_a_truncated_name_fits_a_longer_look_alike_but_a_complete_one_does_not() -> None:
    twin = pn.name_form("Vandelay Industries Europe GmbH")
    assert pn.name_similarity(pn.name_form("VANDELAY INDUSTRIES"), twin) >= 90  # could be cut
    assert pn.name_similarity(pn.name_form("VANDELAY INDUSTRIES INC"), twin) < 90  # ends: not cut


def test_directory_ranks_customers_and_keeps_look_alikes_close() -> None:
    directory = pn.CustomerDirectory([
        pn.CustomerName(1, "Vandelay Industries Inc", "C1", "USD"),
        pn.CustomerName(2, "Vandelay Industries Europe GmbH", "C2", "USD"),
        pn.CustomerName(3, "Initech LLC", "C3", "USD"),
        pn.CustomerName(4, "Vandelay Industries Inc", "C4", "EUR")])
    found = directory.match("VANDELAY INDUSTRIES", "USD")
    assert [cid for cid, _ in found[:2]] == [1, 2]
    assert found[0][1] - found[1][1] < m.NAME_AMBIGUITY_MARGIN
    assert 4 not in {cid for cid, _ in found}  # other currency
    assert directory.match("INITEK", "USD")[0][0] == 3


def test_a_statements_payer_lines_prepared_together_match_as_one_at_a_time() -> None:
    # given a directory with look-alikes, duplicates (ties in the typo scan) and many typos'
    # worth of near names
    stems = ["Vandelay Industries", "Initech", "Globex", "Acme Widgets", "Stark Logistics",
             "Wayne Enterprises", "Umbrella Pharma", "Soylent Foods", "Hooli", "Massive Dynamic"]
    suffixes = ["Inc", "LLC", "GmbH", "Europe GmbH", "Holdings Ltd", ""]
    customers = [pn.CustomerName(n, f"{stem} {suffix}".strip(), f"C{n}", "USD")
                 for n, (stem, suffix) in enumerate(
                     ((st, su) for st in stems for su in suffixes), start=1)]
    customers += [pn.CustomerName(100 + n, c.name, f"D{n}", "USD")  # the same names again
                  for n, c in enumerate(customers[:12])]
    payers = [("VANDELAY INDUSTRIE", "USD", None), ("INITEK LLC", "USD", None),
              ("GLOBX HOLDINGS", "USD", None), ("ACH CREDIT ACME WIDGTS CCD", "USD", None),
              ("WIRE", "USD", None), (None, "USD", "PAYMENT FROM STARK LOGSTICS INV 12"),
              ("WAYN ENTERPRISES", "USD", None), ("UMBRELA PHARMA GMBH", "USD", None),
              ("SOYLENT FOOD", "USD", None), ("HOOLI", "USD", None),
              ("MASIVE DYNAMICS", "USD", None), ("J SMITH", "USD", None),
              ("NOBODY KNOWN AT ALL", "USD", None), ("INITEK LLC", "EUR", None)]
    one_at_a_time = pn.CustomerDirectory(customers)
    together = pn.CustomerDirectory(customers)
    # when a statement's chunk prepares its payer lines together (one batched scan)
    together.prepare(payers)
    # then every payer line is matched exactly as it is alone, and the batched typo scan found
    # the same names in the same order (ties in directory order) as one scan each
    for payer, currency, reference in payers:
        assert together.match(payer, currency, limit=10, reference=reference) == \
            one_at_a_time.match(payer, currency, limit=10, reference=reference)
    assert len(together._scans) >= 8
    for core, found in together._scans.items():
        assert found == pn.CustomerDirectory(customers)._scan(core)


def test_a_typo_scan_adds_scores_as_if_the_whole_pool_were_scored_again() -> None:
    # given look-alike names where the indexes (prefix, first word) find some customers and
    # the typo scan others
    names = ["Globex Corporation", "Globex Holdings Ltd", "Glbex Corp", "Initech LLC",
             "Initek Systems", "Acme Widgets Inc", "Acme Widgets Europe GmbH", "Akme Widgets",
             "Hooli", "Hooly Labs", "Stark Logistics", "Stark Logistik GmbH"]
    customers = [pn.CustomerName(n, name, f"C{n}", "EUR" if n % 5 == 0 else "USD")
                 for n, name in enumerate(names * 2, start=1)]
    directory = pn.CustomerDirectory(customers)
    payers = ["GLOBX CORPORATION", "INITEK LLC", "ACH CREDIT AKME WIDGETS CCD", "HOOLI",
              "STARK LOGISTCS", "GLOBEX HOLDINGS", "NOBODY AT ALL"]
    both = 0  # payer lines the indexes and the scan each found customers for
    for payer in payers:
        for currency in ("USD", "EUR", None):
            forms = pn.payer_forms(payer)
            pool, scored = directory._indexed(forms, currency)
            scan = set(directory._scan(forms[-1].core))
            whole = directory._scored(pool | scan, forms, currency)
            both += bool(pool) and bool(scan - pool)
            # when the scan's customers are added to the scores the indexes found
            # then the answer is that of scoring the pool and the scan's customers together
            assert directory._with_scan(set(pool), scored, forms, currency) == whole
    assert both


# -- combinations --------------------------------------------------------------------------------
def test_subset_search_finds_combinations_that_are_not_oldest_first() -> None:
    values = [500, 120, 300, 75, 40]
    search = sub.subsets_summing_to(values, 540)
    assert search.solutions == [(0, 4)] and search.complete


def test_subset_search_reports_rival_combinations() -> None:
    search = sub.subsets_summing_to([250, 250, 500, 130], 500)
    assert (2,) in search.solutions and (0, 1) in search.solutions


def test_subset_search_is_bounded() -> None:
    values = list(range(1000, 1400))
    search = sub.subsets_summing_to(values, 1, budget=1000)
    assert not search.complete
    assert search.pools[3] == sub.POOL_LIMITS[3]


def test_subset_search_finds_five_invoices() -> None:
    values = [101, 203, 307, 409, 503, 10_000, 20_000]
    assert sub.subsets_summing_to(values, 1523).solutions == [(0, 1, 2, 3, 4)]


# -- settling ------------------------------------------------------------------------------------
def test_exact_amount_settles_in_full() -> None:
    fit, lines, rest = m.settle([item(1, "A", 10_000)], 10_000, ON, RULES, allow_partial=False)
    assert (fit, [(ln.allocate_minor, ln.write_offs) for ln in lines], rest) == (
        "exact", [(10_000, [])], 0)


def test_bank_fee_tolerance_is_half_a_percent_or_five_whichever_is_smaller() -> None:
    small, large = item(1, "A", 20_000), item(2, "B", 1_000_000)  # 200.00 and 10,000.00
    assert m.settle([small], 20_000 - 100, ON, RULES, allow_partial=False)[0] == "fee"  # 0.5 %
    assert m.settle([small], 20_000 - 101, ON, RULES, allow_partial=False) is None
    assert m.settle([large], 1_000_000 - 500, ON, RULES, allow_partial=False)[0] == "fee"  # 5.00
    assert m.settle([large], 1_000_000 - 501, ON, RULES, allow_partial=False) is None
    fit, lines, _ = m.settle([large], 1_000_000 - 500, ON, RULES, allow_partial=False)
    assert lines[0].allocate_minor == 999_500 and lines[0].write_offs == [(500, "bank_fee")]


def test_the_fee_tolerance_follows_the_policy() -> None:
    rules = Rules(fee_bp=100, fee_max=Decimal("20.00"))
    assert m.settle([item(1, "A", 20_000)], 19_800, ON, rules, allow_partial=False)[0] == "fee"


def test_short_payment_beyond_tolerance_is_a_deduction_only_behind_a_reference() -> None:
    inv = item(1, "A", 10_000)
    assert m.settle([inv], 6_000, ON, RULES, allow_partial=False) is None
    fit, lines, rest = m.settle([inv], 6_000, ON, RULES, allow_partial=True)
    assert fit == "short" and lines[0].allocate_minor == 6_000
    assert lines[0].deduction_minor == 4_000 and rest == 0


def test_overpayment_leaves_credit() -> None:
    fit, lines, rest = m.settle([item(1, "A", 10_000)], 12_500, ON, RULES, allow_partial=True)
    assert (fit, lines[0].allocate_minor, rest) == ("over", 10_000, 2_500)


def test_early_payment_discount_within_the_window() -> None:
    inv = item(1, "A", 100_000, issued=date(2026, 11, 12), terms="2/10 NET30")
    fit, lines, _ = m.settle([inv], 98_000, date(2026, 11, 22), RULES, allow_partial=False)
    assert fit == "discount"
    assert lines[0].allocate_minor == 98_000
    assert lines[0].write_offs == [(2_000, "early_payment_discount")]


def test_no_discount_after_the_window_or_on_a_part_paid_invoice() -> None:
    late = item(1, "A", 100_000, issued=date(2026, 11, 1), terms="2/10 NET30")
    assert m.discount_of(late, date(2026, 11, 12)) == 0
    part_paid = item(2, "B", 50_000, total=100_000, issued=date(2026, 11, 12),
                     terms="2/10 NET30")
    assert m.discount_of(part_paid, date(2026, 11, 13)) == 0


def test_no_discount_from_terms_out_of_bounds_stored_before_they_were_checked() -> None:
    # a 99.99 % "discount" would let 0.10 settle 1,000.00; discount days past the net days
    # would discount a late payment
    for terms in ("99.99/10 NET30", "10.01/10 NET30", "2/31 NET30"):
        inv = item(1, "A", 100_000, issued=date(2026, 11, 12), terms=terms)
        assert m.discount_of(inv, date(2026, 11, 13)) == 0, terms
        assert m.settle([inv], 10, date(2026, 11, 13), RULES, allow_partial=False) is None
    at_bounds = item(1, "A", 100_000, issued=date(2026, 11, 12), terms="10/30 NET30")
    assert m.discount_of(at_bounds, date(2026, 12, 12)) == 10_000


# -- the engine ----------------------------------------------------------------------------------
def test_reference_and_amount_apply_with_high_confidence() -> None:
    inv = item(1, "INV-2026-000123", 50_000)
    ev = Evidence(refs=[inv], open_items={1: [inv]}, name_scores={1: 100.0})
    result = m.evaluate(facts(50_000, reference="inv 2026/123", payer="GLOBEX"), ev)
    assert result.auto and result.best.invoice_ids == {1} and result.best.fit == "exact"
    assert result.best.confidence > 0.99
    assert {s.name for s in result.best.signals} >= {"reference", "amount", "payer_name"}


def test_exact_amount_of_one_invoice_of_a_named_customer_applies() -> None:
    invs = [item(1, "A", 10_000), item(2, "B", 25_000), item(3, "C", 7_350)]
    ev = Evidence(open_items={1: invs}, name_scores={1: 100.0})
    result = m.evaluate(facts(25_000, payer="GLOBEX CORP"), ev)
    assert result.auto and result.best.invoice_ids == {2}


def test_two_invoices_of_the_same_amount_go_to_a_person() -> None:
    invs = [item(1, "A", 25_000), item(2, "B", 25_000)]
    ev = Evidence(open_items={1: invs}, name_scores={1: 100.0})
    result = m.evaluate(facts(25_000, payer="GLOBEX"), ev)
    assert not result.auto
    assert result.best.confidence <= 0.5  # two equal answers are never more than a coin flip
    assert len(result.suggestions) == 2


def test_a_combination_of_invoices_applies() -> None:
    invs = [item(1, "A", 10_000), item(2, "B", 23_456), item(3, "C", 7_311),
            item(4, "D", 99_999)]
    ev = Evidence(open_items={1: invs}, name_scores={1: 96.0})
    result = m.evaluate(facts(30_767, payer="GLOBEX"), ev)
    assert result.auto and result.best.invoice_ids == {2, 3} and result.best.kind == "subset"


def test_typo_needs_the_amount_to_confirm_it() -> None:
    inv = item(1, "INV-2026-000123", 50_000)
    ev = Evidence(typo_refs=[inv], open_items={})
    confirmed = m.evaluate(facts(50_000, reference="INV-2026-000124"), ev)
    assert confirmed.auto and confirmed.best.invoice_ids == {1}
    unconfirmed = m.evaluate(facts(30_000, reference="INV-2026-000124"), ev)
    assert not unconfirmed.auto


def test_a_short_payment_behind_a_reference_is_applied_and_flagged() -> None:
    inv = item(1, "INV-2026-000123", 50_000)
    ev = Evidence(refs=[inv], open_items={1: [inv]}, name_scores={1: 100.0})
    result = m.evaluate(facts(30_000, reference="INV-2026-000123", payer="GLOBEX"), ev)
    assert result.auto and result.best.fit == "short" and result.best.deduction_minor == 20_000


def test_payer_name_pointing_at_another_customer_stops_a_short_payment() -> None:
    inv = item(1, "INV-2026-000123", 50_000, customer=1)
    ev = Evidence(refs=[inv], open_items={1: [inv]}, name_scores={2: 100.0, 1: 20.0})
    result = m.evaluate(facts(30_000, reference="INV-2026-000123", payer="INITECH"), ev)
    assert not result.auto


def test_an_ambiguous_payer_name_lowers_confidence() -> None:
    inv = item(1, "A", 12_345, customer=1)
    clear = m.evaluate(facts(12_345, payer="X"), Evidence(
        open_items={1: [inv]}, name_scores={1: 97.0}))
    unclear = m.evaluate(facts(12_345, payer="X"), Evidence(
        open_items={1: [inv]}, name_scores={1: 97.0, 2: 95.0}))
    assert unclear.best.confidence < clear.best.confidence
    assert "payer_name_ambiguous" in {s.name for s in unclear.best.signals}


def test_the_customer_given_with_the_payment_counts_and_others_do_not() -> None:
    mine, theirs = item(1, "A", 12_345, customer=1), item(2, "B", 12_345, customer=2)
    ev = Evidence(open_items={1: [mine]}, same_amount=[mine, theirs])
    result = m.evaluate(facts(12_345, customer=1), ev)
    assert result.auto and result.best.invoice_ids == {1}


def test_an_unknown_payer_with_a_matching_amount_is_only_suggested() -> None:
    inv = item(1, "A", 12_345)
    result = m.evaluate(facts(12_345, payer="J SMITH"), Evidence(same_amount=[inv]))
    assert not result.auto and result.best.kind == "global"


def test_a_remittance_naming_a_paid_invoice_holds_the_payment() -> None:
    inv = item(1, "A", 12_345)
    ev = Evidence(open_items={1: [inv]}, name_scores={1: 100.0}, paid_refs=["INV-9"])
    assert not m.evaluate(facts(12_345, payer="GLOBEX", reference="INV-9"), ev).auto


def test_name_alone_is_only_a_suggestion_of_the_oldest_invoices() -> None:
    invs = [item(1, "A", 10_000), item(2, "B", 10_000)]
    result = m.evaluate(facts(15_000, payer="GLOBEX"),
                        Evidence(open_items={1: invs}, name_scores={1: 100.0}))
    assert not result.auto and result.best.kind == "name"
    assert [ln.allocate_minor for ln in result.best.lines] == [10_000, 5_000]


def test_nothing_matches_nothing_is_proposed() -> None:
    result = m.evaluate(facts(12_345, payer="J SMITH"), Evidence())
    assert result.best is None and not result.auto


def test_threshold_comes_from_the_rules() -> None:
    invs = [item(1, "A", 10_000), item(2, "B", 23_456), item(3, "C", 7_311)]
    ev = Evidence(open_items={1: invs}, name_scores={1: 96.0})
    strict = m.evaluate(facts(30_767, payer="G"), ev, Rules(threshold=Decimal("0.999")))
    assert not strict.auto
