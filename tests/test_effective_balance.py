"""A payment the ledger applied is subtracted until the source shows it, and never twice."""

import datetime as dt

import pandas as pd

from tasks.extract import effective_balance


def _inv(balance):
    return pd.DataFrame({"invoice_id": ["I1"], "balance_minor": [balance]})


def _app(*rows):
    return pd.DataFrame([{"id": n, "payment_id": p, "invoice_id": "I1", "amount_minor": amt,
                          "applied_on": dt.date(2026, 11, d), "source_balance_minor": base}
                         for n, (p, amt, d, base) in enumerate(rows)])


def test_applied_payment_counts_until_the_source_catches_up():
    apps = _app(("P1", 400, 20, 1000))
    assert effective_balance(_inv(1000), apps, set()).tolist() == [600]   # source not caught up
    assert effective_balance(_inv(600), apps, set()).tolist() == [600]    # caught up: not twice
    assert effective_balance(_inv(500), apps, set()).tolist() == [500]    # source knows even more


def test_two_partial_payments_across_days():
    apps = _app(("P1", 400, 20, 1000), ("P2", 600, 21, 600))   # the source caught up with P1 before P2
    assert effective_balance(_inv(600), apps, set()).tolist() == [0]
    apps = _app(("P1", 400, 20, 1000), ("P2", 600, 21, 1000))  # it had not
    assert effective_balance(_inv(1000), apps, set()).tolist() == [0]
    assert effective_balance(_inv(1000), _app(("P1", 400, 20, 1000), ("P2", 100, 21, 1000)), set()).tolist() == [500]


def test_payments_the_source_reports_are_not_subtracted():
    assert effective_balance(_inv(600), _app(("P1", 400, 20, 1000)), {"P1"}).tolist() == [600]


def test_rows_without_a_recorded_source_balance_subtract_from_today():
    assert effective_balance(_inv(1000), _app(("P1", 250, 20, None)), set()).tolist() == [750]
