"""Receivables as the books keep them, over several checkpoints and days (issue 22): a second
payment against what is left, credits before and after payments, aging of what is still owed."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests import pipeline
from tests.conftest import customer, invoice, make_source

DAY1, DAY2, DAY3 = dt.date(2026, 11, 23), dt.date(2026, 11, 24), dt.date(2026, 11, 25)


def _pay(pid, amount, day, ref="", cid="C1"):
    return {"payment_id": pid, "customer_id": cid, "amount": amount, "currency": "USD",
            "received_date": day.isoformat(), "reference": ref}


@pytest.fixture
def ledger(tmp_path):
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _day(tmp_path, name, invoices, payments, policy, ledger, as_of, customers=None, **files):
    folder = make_source(tmp_path / name, invoices, customers or [customer("C1")], payments=payments)
    for fname, (columns, rows) in files.items():
        from tests.conftest import write_csv

        write_csv(folder / f"{fname}.csv", columns, rows)
    return pipeline.checkpoint(folder, as_of, policy, ledger)


# ---- 1. a second payment is matched against what is left -----------------------------------------------

@pytest.mark.parametrize("source_caught_up", [False, True])
def test_a_second_payment_closes_the_invoice_across_checkpoints(tmp_path, policy, ledger, source_caught_up):
    inv = [invoice("I1", amount="200.00", balance="200.00", invoice_number="1001")]
    s1, _ = _day(tmp_path, "d1", inv, [_pay("P1", "150.00", DAY1, "INV 1001")], policy, ledger, DAY1)
    assert s1["applied"] == {"reference_partial": 1} and s1["invoices_closed"] == 0
    # The next day the billing system may or may not show the 150 yet; the 50 is what is left.
    inv2 = [invoice("I1", amount="200.00", balance="50.00" if source_caught_up else "200.00", invoice_number="1001")]
    s2, res = _day(tmp_path, "d2", inv2, [_pay("P1", "150.00", DAY1, "INV 1001"), _pay("P2", "50.00", DAY2, "INV 1001")],
                   policy, ledger, DAY2)
    assert s2["already_recorded"] == 1 and s2["applied"] == {"exact": 1} and s2["partial"] == 0
    assert s2["invoices_closed"] == 1 and s2["receipts_queued"] == 1
    history = ledger.frame(m.PaymentHistory)
    assert history[["invoice_id", "payment_id", "paid_date"]].values.tolist() == [["I1", "P2", DAY2]]
    receipts = ledger.frame(m.Outbox, m.Outbox.step == "receipt")
    assert receipts["invoice_id"].tolist() == ["I1"] and "200.00" in receipts["body"].item()


def test_every_rule_sees_what_the_earlier_checkpoint_left(tmp_path, policy, ledger):
    """Day 1 takes part of each invoice; day 2's payments carry no reference and equal what is left
    (amount_customer, multi_invoice), or exceed it (reference_overpaid with a credit)."""
    inv = [invoice("I1", amount="300.00", balance="300.00", invoice_number="1001", due_date="2026-10-01"),
           invoice("I2", amount="500.00", balance="500.00", invoice_number="1002", due_date="2026-10-15"),
           invoice("I3", amount="400.00", balance="400.00", invoice_number="1003", due_date="2026-10-20"),
           invoice("I4", amount="900.00", balance="900.00", invoice_number="1004", cid="C2")]
    custs = [customer("C1"), customer("C2")]
    day1 = [_pay("P1", "100.00", DAY1, "1001"), _pay("P2", "250.00", DAY1, "1002"),
            _pay("P3", "850.00", DAY1, "1004", cid="C2")]
    s1, _ = _day(tmp_path, "d1", inv, day1, policy, ledger, DAY1, customers=custs)
    assert s1["applied"] == {"reference_partial": 3}
    # Left: I1 200, I2 250, I3 400, I4 50. 650 = I2 + I3 only (I1 + I3 is 600, I1 + I2 450).
    day2 = day1 + [_pay("P4", "650.00", DAY2), _pay("P5", "80.00", DAY2, "1004", cid="C2")]
    s2, res = _day(tmp_path, "d2", inv, day2, policy, ledger, DAY2, customers=custs)
    assert s2["applied"] == {"multi_invoice": 1, "reference_overpaid": 1}
    by = {o.payment_id: o for o in res.outcomes}
    assert {a["invoice_id"]: a["amount_minor"] for a in by["P4"].applications} == {"I2": 25000, "I3": 40000}
    assert by["P5"].applications[0]["amount_minor"] == 5000 and by["P5"].credit_minor == 3000
    # Day 3: 200 with no reference is the one invoice with 200 left.
    s3, res3 = _day(tmp_path, "d3", inv, day2 + [_pay("P6", "200.00", DAY3)], policy, ledger, DAY3, customers=custs)
    assert s3["applied"] == {"amount_customer": 1} and res3.outcomes[0].applications[0]["invoice_id"] == "I1"
    closed = set(ledger.frame(m.PaymentHistory)["invoice_id"])
    assert closed == {"I1", "I2", "I3", "I4"}


# ---- 2. aging counts what is still owed --------------------------------------------------------------

def test_aging_counts_only_invoices_with_something_left_to_pay(tmp_path, policy, ledger):
    from types import SimpleNamespace

    from tasks import kpis
    from tasks.report import bucket_totals

    inv = [invoice("I1", amount="200.00", balance="200.00", invoice_number="1001", due_date="2026-11-10"),
           invoice("I2", amount="300.00", balance="300.00", invoice_number="1002", due_date="2026-11-12")]
    folder = make_source(tmp_path / "src", inv, [customer("C1")], payments=[_pay("P1", "200.00", DAY1, "1001")])
    pipeline.checkpoint(folder, DAY1, policy, ledger)
    out = pipeline.run(folder, DAY2, policy, ledger)  # the source still shows I1 open with 200
    planned = out["planned"]
    assert planned.set_index("invoice_id").loc["I1", "reason"] == "nothing_owed"
    by_bucket, _ = bucket_totals(planned)
    assert by_bucket["d1_30"] == {"count": 1, "amount": "300.00"}
    outcomes = planned.assign(balance_minor=planned["effective_balance_minor"])
    ar = kpis.open_ar(SimpleNamespace(open_invoices=outcomes))   # the KPIs' aging and overdue count
    assert ar["invoice_id"].tolist() == ["I2"]
