"""A payer line is scored against a pool of customer names in a few C calls
(`payer_names.payer_similarities`, what `CustomerDirectory` ranks by): the very numbers
`payer_similarity` gives one pair at a time — same floats, so the same ranking, ties and
cut-offs (60, `EXACT_ENOUGH`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cashapp_data import generate
from workflows import payer_names as pn

WORDS = ["globex", "GLOBEX", "corp", "Corporation", "inc", "INC.", "ltd", "Limited", "gmbh",
         "vandelay", "VANDELAY", "industries", "indstries", "europe", "the", "s.a.", "&",
         "ACH", "CREDIT", "PAYMENT", "FROM", "wire", "co", "holdings", "hldgs", "a", "x1",
         "initech", "initec", "corporatio", "incor", ""]
names = st.lists(st.sampled_from(WORDS), min_size=0, max_size=5).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(payer=names, customers=st.lists(names, min_size=1, max_size=12))
def test_batch_scores_are_the_pairwise_scores(payer, customers):
    forms = pn.payer_forms(payer) or (pn.name_form(payer),)
    pool = [pn.name_form(c) for c in customers]
    assert pn.payer_similarities(forms, pool) == [pn.payer_similarity(forms, c) for c in pool]


def test_bank_payer_lines_against_the_generators_customers():
    # given the bench generator's customers (look-alike pairs, suffixes) and its payer lines
    data = generate(7, customers=60, invoices=600, payments=150)
    pool = [pn.name_form(c.name) for c in data.customers]
    lines = [p.payer_name for p in data.payments if p.payer_name]
    assert len(lines) > 100
    for line in lines:
        forms = pn.payer_forms(line)
        if forms:  # then every score is the pairwise one
            assert pn.payer_similarities(forms, pool) == [
                pn.payer_similarity(forms, c) for c in pool], line
