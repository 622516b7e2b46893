"""Receivables as the books keep them, over several checkpoints and days (issue 22): a second
payment against what is left, credits before and after payments, aging of what is still owed."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests import pipeline
from tests.cli import arflow
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


# ---- 7. a never-contacted customer is told before anything harder ---------------------------------------

def _queue(out, ledger, as_of, mode="send"):
    import json

    from tasks.decisions import decision_rows
    from tasks.touches import outbox_rows

    rows = outbox_rows(out["actions"], out["planned"], mode=mode, run_id=f"r{as_of}", as_of=as_of)
    waiting = rows[rows["status"] == "awaiting_decision"] if not rows.empty else rows
    decisions = decision_rows(rows, ledger.touch_history("live", set(waiting["invoice_id"])), f"r{as_of}", as_of) \
        if not waiting.empty else []
    ledger.queue_touches(rows, decisions)
    return rows, [d | {"context": json.loads(d["context"])} for d in decisions]


@pytest.mark.slow
def test_a_year_overdue_invoice_never_chased_gets_a_reminder_before_the_plan_or_write_off(tmp_path, policy, ledger):
    folder = make_source(tmp_path / "src", [invoice("I1", issue_date="2025-10-01", due_date="2025-10-31")],
                         [customer("C1")])
    out = pipeline.run(folder, DAY1, policy, ledger)
    steps = set(out["actions"]["step"])
    assert "payment_plan_or_write_off" not in steps and "follow_up" in steps
    rows, decisions = _queue(out, ledger, DAY1)
    mail = rows[rows["channel"] == "email"]
    assert len(mail) == 1 and mail["tone"].item() == "friendly" and mail["status"].item() == "queued"
    # While the reminder has not gone, the decision waits (it is not opened in the dark).
    out2 = pipeline.run(folder, DAY2, policy, ledger)
    assert "payment_plan_or_write_off" not in set(out2["actions"]["step"])
    assert out2["planned"].set_index("invoice_id").loc["I1", "reason"] == "previous_step_not_delivered"
    sent = ledger.frame(m.Outbox, m.Outbox.channel == "email")
    (key,) = set(sent["message_key"])
    taken = ledger.claim(key, sent["id"].tolist(), "delivery-run")   # queued -> sending, as a send takes it
    assert ledger.mark(taken, "sent", delivered_on=DAY2) == len(sent)
    # Delivered yesterday: the customer has the policy's gap (3 days) to answer before a person decides.
    out3 = pipeline.run(folder, DAY3, policy, ledger)
    assert out3["planned"].set_index("invoice_id").loc["I1", "reason"] == "min_gap"
    later = dt.date(2026, 11, 30)
    out4 = pipeline.run(folder, later, policy, ledger)
    assert "payment_plan_or_write_off" in set(out4["actions"]["step"])
    _, decisions = _queue(out4, ledger, later)
    plan = next(d for d in decisions if d["kind"] == "payment_plan_or_write_off")
    assert plan["context"]["customer_reminded"] == {"on": str(DAY2), "step": "follow_up", "reminders": 1}


# ---- 3 and 4. credit notes: told apart from payments by what the source says it applied ------------------

CN = ("credit_note_id", "customer_id", "credit_note_number", "issue_date", "currency", "amount", "invoice_id",
      "allocated", "allocated_date")


def _cn(cid_note, amount, invoice_id="", allocated="", cid="C1", number=None, issued="2026-11-20", currency="USD"):
    return {"credit_note_id": cid_note, "customer_id": cid, "credit_note_number": number or f"CN-{cid_note}",
            "issue_date": issued, "currency": currency, "amount": amount, "invoice_id": invoice_id,
            "allocated": allocated, "allocated_date": issued if invoice_id else ""}


def _owed(folder, as_of, policy, ledger):
    out = pipeline.run(folder, as_of, policy, ledger)
    return out, dict(zip(out["planned"]["invoice_id"], out["planned"]["effective_balance_minor"]))


def test_a_credit_note_after_a_payment_is_not_the_payment_arriving(tmp_path, policy, ledger):
    inv = lambda bal: [invoice("I1", amount="200.00", balance=bal, invoice_number="1001")]  # noqa: E731
    pay = [_pay("P1", "40.00", DAY1, "INV 1001")]
    _day(tmp_path, "d1", inv("200.00"), pay, policy, ledger, DAY1)
    # The books issue a credit note of 100 against the invoice: their balance drops to 100.
    credit = {"credit_notes": (CN, [_cn("K1", "100.00", "I1", "100.00", issued="2026-11-24")])}
    folder = make_source(tmp_path / "d2", inv("100.00"), [customer("C1")], payments=pay)
    from tests.conftest import write_csv

    write_csv(folder / "credit_notes.csv", *credit["credit_notes"])
    _, owed = _owed(folder, DAY2, policy, ledger)
    assert owed == {"I1": 6000}                      # 200 - 40 paid - 100 credited
    # Then the books record the 40 as well: still 60, never 20.
    folder3 = make_source(tmp_path / "d3", inv("60.00"), [customer("C1")], payments=pay)
    write_csv(folder3 / "credit_notes.csv", *credit["credit_notes"])
    _, owed = _owed(folder3, DAY3, policy, ledger)
    assert owed == {"I1": 6000}


def test_a_credit_note_before_the_payments_then_the_rest_closes_it(tmp_path, policy, ledger):
    from tests.conftest import write_csv

    inv = [invoice("I1", amount="200.00", balance="100.00", invoice_number="1001")]
    notes = [_cn("K1", "100.00", "I1", "100.00")]
    pays = [_pay("P1", "40.00", DAY1, "1001")]
    s1, _ = _day(tmp_path, "d1", inv, pays, policy, ledger, DAY1, credit_notes=(CN, notes))
    assert s1["applied"] == {"reference_partial": 1}
    folder = make_source(tmp_path / "d2", [invoice("I1", amount="200.00", balance="60.00", invoice_number="1001")],
                         [customer("C1")], payments=pays)
    write_csv(folder / "credit_notes.csv", CN, notes)
    assert _owed(folder, DAY2, policy, ledger)[1] == {"I1": 6000}
    pays.append(_pay("P2", "60.00", DAY3, "1001"))
    s3, _ = _day(tmp_path, "d3", inv, pays, policy, ledger, DAY3, credit_notes=(CN, notes))
    assert s3["applied"] == {"exact": 1} and s3["invoices_closed"] == 1


def test_unallocated_credit_holds_the_invoices_it_could_cover_and_is_offered_for_application(tmp_path, policy, ledger):
    from tests.conftest import write_csv

    inv = [invoice("I1", amount="100.00", balance="100.00", due_date="2026-11-10"),
           invoice("I2", amount="300.00", balance="300.00", due_date="2026-11-19"),
           invoice("I3", amount="90.00", balance="90.00", due_date="2026-11-13")]
    folder = make_source(tmp_path / "src", inv, [customer("C1")])
    write_csv(folder / "credit_notes.csv", CN, [_cn("K9", "150.00", number="CN-0009")])
    out = pipeline.run(folder, DAY1, policy, ledger)
    p = out["planned"].set_index("invoice_id")
    assert (p["customer_credit_minor"] == 15000).all()
    a = out["actions"].set_index("invoice_id")
    # One decision for the credit, on the oldest invoice it could cover; the other it could cover waits.
    assert a.loc["I1", "step"] == "apply_credit" and a.loc["I1", "channel"] == "decision"
    assert a.loc["I1", "idempotency_key"] == "I1:apply_credit_CN-0009:decision"
    assert p.loc["I3", "outcome"] == "held" and p.loc["I3", "reason"] == "unapplied_credit"
    # The invoice the credit cannot cover is chased as before, and the message shows the credit.
    assert a.loc["I2", "step"] == "nudge"
    rows, _ = _queue(out, ledger, DAY1)
    body = rows.set_index("invoice_id").loc["I2", "body"]
    assert "$150.00" in body and "CN-0009" in body


def test_bad_credit_notes_are_quarantined_with_their_reason(tmp_path, policy):
    from tasks import credits

    raw = pipeline.pd.DataFrame([_cn("K1", "100.00", "I1", "60.00"), _cn("K1", "100.00", "I2", "50.00"),  # 110 > 100
                                 _cn("K2", "abc"), _cn("K3", "10.00", currency="XXQ"), _cn("K4", "10.00", "I1", ""),
                                 _cn("K5", "25.00", "", "5.00"), _cn("K6", "40.00", "I1", "40.00")]).astype(str)
    raw.insert(0, "source_row", range(2, 2 + len(raw)))
    good, q = credits.parse(raw)
    assert good["credit_note_id"].tolist() == ["K6"]
    assert dict(zip(q["record_id"], q["reason"])) == {
        "K1": "over_allocated", "K2": "bad_amount", "K3": "unknown_currency", "K4": "allocation_without_amount",
        "K5": "allocation_without_invoice"}
    assert len(q) + len(good) == len(raw)    # nothing lost


def test_a_balance_that_does_not_net_its_credits_is_quarantined(tmp_path, policy):
    from tests.conftest import write_csv

    good = [invoice(f"G{n}") for n in range(30)]   # the hop fails above 5% quarantined
    folder = make_source(tmp_path / "src", [invoice("I1", amount="200.00", balance="200.00")] + good, [customer("C1")])
    write_csv(folder / "credit_notes.csv", CN, [_cn("K1", "100.00", "I1", "100.00")])
    out = pipeline.run(folder, DAY1, policy)
    assert "I1" not in set(out["planned"]["invoice_id"]) and len(out["planned"]) == 30
    assert out["quarantine"][["invoice_id", "reason"]].values.tolist() == [["I1", "credits_exceed_amount"]]


@settings(max_examples=200, deadline=None)
@given(st.integers(1_000, 100_000), st.lists(st.tuples(st.sampled_from(["pay", "reflect", "credit"]),
                                                       st.integers(1, 30_000)), max_size=12))
def test_effective_balance_is_amount_less_credits_less_payments_never_below_zero(amount, events):
    """The books reflect the ledger's payments in order, some later than others, and issue credit
    notes in between: what is owed is always the amount less credits less payments."""
    import pandas as pd

    from tasks.extract import effective_balance

    balance, credited, paid, pending, apps = amount, 0, 0, [], []
    for n, (kind, x) in enumerate(events):
        room = amount - credited - paid
        if kind == "pay" and room > 0:
            x = min(x, room)
            apps.append({"id": n, "payment_id": f"P{n}", "invoice_id": "I1", "amount_minor": x,
                         "applied_on": dt.date(2026, 11, 1) + dt.timedelta(days=n), "source_balance_minor": balance,
                         "source_credit_minor": credited})
            paid += x
            pending.append(x)
        elif kind == "reflect" and pending:
            balance -= pending.pop(0)
        elif kind == "credit" and room > 0:
            x = min(x, room)
            credited += x
            balance -= x
    inv = pd.DataFrame({"invoice_id": ["I1"], "balance_minor": [balance], "credited_minor": [credited]})
    got = effective_balance(inv, pd.DataFrame(apps), set()).item()
    assert got == amount - credited - paid >= 0


# ---- 8. one message covers everything the customer owes -------------------------------------------------

def test_a_reminder_lists_every_open_overdue_invoice_marking_the_ones_under_review(tmp_path, policy, ledger):
    inv = [invoice("I1", invoice_number="A-1", amount="700.00", balance="700.00", issue_date="2026-08-31",
                   due_date="2026-09-30"),
           invoice("I2", invoice_number="A-2", amount="120.00", balance="120.00", due_date="2026-11-19"),
           invoice("I3", invoice_number="A-3", amount="50.00", balance="50.00", due_date="2026-12-20")]  # not due
    folder = make_source(tmp_path / "src", inv, [customer("C1")])
    ledger.record(m.Dispute, {"invoice_id": "I1", "customer_id": "C1", "opened_on": DAY1, "reason": "wrong qty"},
                  "dispute.opened", "clerk", "I1")
    out = pipeline.run(folder, DAY1, policy, ledger)
    a = out["actions"]
    assert a[a["channel"] == "email"][["invoice_id", "step", "tone"]].values.tolist() == [["I2", "nudge", "friendly"]]
    rows, _ = _queue(out, ledger, DAY1)
    body = rows.loc[rows["channel"] == "email", "body"].item()
    assert rows.loc[rows["channel"] == "email", "status"].item() == "queued"   # the guardrails let it go
    assert "A-1: $700.00, due September 30, 2026 (under review)" in body
    assert "A-3" not in body and "A-2" in body
    # The invoice under review is listed, never chased: it has no touch of its own.
    assert set(rows["invoice_id"]) == {"I2"}


# ---- 5. instalments --------------------------------------------------------------------------------------

SCHEDULE = ("invoice_id", "due_date", "amount")


def _scheduled(tmp_path, name, balance="1000.00", rows=None, extra=()):
    from tests.conftest import write_csv

    inv = [invoice("I1", invoice_number="S-1", amount="1000.00", balance=balance, issue_date="2026-09-15",
                   due_date="2026-12-15")] + list(extra)
    folder = make_source(tmp_path / name, inv, [customer("C1")])
    write_csv(folder / "payment_schedule.csv", SCHEDULE, rows or [
        {"invoice_id": "I1", "due_date": "2026-10-01", "amount": "300.00"},
        {"invoice_id": "I1", "due_date": "2026-11-01", "amount": "500.00"},
        {"invoice_id": "I1", "due_date": "2026-12-15", "amount": "200.00"}])
    return folder


def test_instalments_age_by_their_own_due_dates_and_are_chased_for_what_is_due(tmp_path, policy, ledger):
    import json

    from tasks.report import bucket_totals

    folder = _scheduled(tmp_path, "s")
    out = pipeline.run(folder, DAY1, policy, ledger)
    p = out["planned"].set_index("invoice_id")
    assert p.loc["I1", "due_date"].date() == dt.date(2026, 10, 1) and p.loc["I1", "days_past_due"] == 53
    assert p.loc["I1", "amount_due_minor"] == 80000            # 300 + 500 due; the 200 is not yet
    by_bucket, _ = bucket_totals(out["planned"])
    assert {b: v["amount"] for b, v in by_bucket.items()} == {
        "current": "200.00", "d1_30": "500.00", "d31_60": "300.00", "d61_90": "0.00", "d91_plus": "0.00"}
    # A payment of the first instalment: the next one is the oldest due, 22 days late, 500 asked.
    (folder / "payments.csv").write_text("payment_id,customer_id,amount,currency,received_date,reference\n"
                                         "P1,C1,300.00,USD,2026-11-23,S-1\n")
    s, _ = pipeline.checkpoint(folder, DAY1, policy, ledger)
    assert s["applied"] == {"reference_partial": 1}
    out = pipeline.run(folder, DAY2, policy, ledger)
    p = out["planned"].set_index("invoice_id")
    assert p.loc["I1", "due_date"].date() == dt.date(2026, 11, 1) and p.loc["I1", "lane"] == "late"
    assert p.loc["I1", "amount_due_minor"] == 50000 and p.loc["I1", "effective_balance_minor"] == 70000
    left = [i["left_minor"] for i in json.loads(p.loc["I1", "schedule"])]
    assert left == [0, 50000, 20000]
    rows, _ = _queue(out, ledger, DAY2)
    assert "$500.00" in rows.loc[rows["channel"] == "email", "body"].item()


def test_a_schedule_that_does_not_add_up_quarantines_its_invoice(tmp_path, policy):
    bad = [{"invoice_id": "I1", "due_date": "2026-10-01", "amount": "300.00"},
           {"invoice_id": "I1", "due_date": "2026-11-01", "amount": "500.00"}]
    folder = _scheduled(tmp_path, "s", rows=bad, extra=[invoice(f"G{n}") for n in range(30)])
    out = pipeline.run(folder, DAY1, policy)
    assert "I1" not in set(out["planned"]["invoice_id"])
    assert out["quarantine"][["invoice_id", "reason"]].values.tolist() == [["I1", "schedule_does_not_add_up"]]


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 50_000), min_size=1, max_size=6), st.integers(0, 400_000), st.integers(0, 200))
def test_instalments_add_up_to_the_invoice_and_take_payments_oldest_first(parts, paid, day):
    import json

    import pandas as pd

    from tasks import schedule

    amount = sum(parts)
    paid = min(paid, amount)
    inv = pd.DataFrame({"invoice_id": ["I1"], "currency": ["USD"], "amount_minor": [amount],
                        "effective_balance_minor": [amount - paid]})
    raw = pd.DataFrame({"invoice_id": "I1", "amount": [f"{p / 100:.2f}" for p in parts],
                        "due_date": [(dt.date(2026, 1, 1) + dt.timedelta(days=30 * k)).isoformat()
                                     for k in range(len(parts))]})
    inst, bad = schedule.parse(raw, inv)
    assert bad.empty and inst["amount_minor"].sum() == amount          # the instalments are the invoice
    got = schedule.allocate(inv, inst, dt.date(2026, 1, 1) + dt.timedelta(days=day))
    left = [i["left_minor"] for i in json.loads(got.loc[0, "schedule"])]
    assert sum(left) == amount - paid and all(x >= 0 for x in left)     # never below zero
    first_open = next((k for k, x in enumerate(left) if x), len(left))
    assert all(x == 0 for x in left[:first_open]) and all(x == p for x, p in zip(left[first_open + 1:],
                                                                              parts[first_open + 1:]))
    raw.loc[0, "amount"] = f"{parts[0] / 100 + 0.01:.2f}"                # a cent off: quarantined, not guessed
    assert schedule.parse(raw, inv)[1].tolist() == ["schedule_does_not_add_up"]


# ---- 6. the aging basis the books use -------------------------------------------------------------------

def _with(policy, **rec):
    return policy.model_copy(update={"reconciliation": policy.reconciliation.model_copy(update=rec)})


@pytest.mark.parametrize("basis, expected", [("due_date", "mismatched"), ("invoice_date", "matched")])
def test_reconciliation_ages_as_the_books_report_does(tmp_path, policy, basis, expected):
    inv = [invoice("I1", amount="500.00", balance="500.00", issue_date="2026-10-01", due_date="2026-11-15")]
    # The books age by invoice date: 53 days since the invoice is 31-60, though it is 8 days past due.
    report = [{"customer_id": "C1", "current": "", "d1_30": "", "d31_60": "500.00", "d61_90": "", "d91_plus": "",
               "total": "500.00"}]
    folder = make_source(tmp_path / "src", inv, [customer("C1")], aging=report)
    out = pipeline.run(folder, DAY1, _with(policy, report_basis=basis))
    rec = out["reconciliation"]
    assert rec.status == expected and rec.basis == basis
    assert out["planned"]["lane"].tolist() == ["early"]     # chasing still goes by the due date


@pytest.mark.parametrize("nets, expected", [(False, "mismatched"), (True, "matched")])
def test_a_books_report_that_nets_credits_is_compared_net(tmp_path, policy, nets, expected):
    from tests.conftest import write_csv

    inv = [invoice("I1", amount="500.00", balance="500.00", due_date="2026-11-30")]
    report = [{"customer_id": "C1", "current": "380.00", "d1_30": "", "d31_60": "", "d61_90": "", "d91_plus": "",
               "total": "380.00"}]   # 500 open less a credit note of 120 nobody applied yet
    folder = make_source(tmp_path / "src", inv, [customer("C1")], aging=report)
    write_csv(folder / "credit_notes.csv", CN, [_cn("K1", "120.00")])
    out = pipeline.run(folder, DAY1, _with(policy, report_nets_credits=nets))
    assert out["reconciliation"].summary()["status"] == expected


# ---- 9. statements of account ----------------------------------------------------------------------------

def _statement_source(tmp_path, policy, ledger, language=""):
    from tests.conftest import write_csv

    inv = [invoice("I1", invoice_number="1001", amount="400.00", balance="400.00", issue_date="2026-10-10",
                   due_date="2026-11-09"),
           invoice("I2", invoice_number="1002", amount="250.00", balance="250.00", issue_date="2026-11-05",
                   due_date="2026-12-05"),
           invoice("I3", invoice_number="1003", amount="100.00", balance="0.00", issue_date="2026-11-02",
                   due_date="2026-12-02", status="paid")]
    folder = make_source(tmp_path / "src", inv, [customer("C1", name="Müller GmbH", country="DE", language=language)],
                         payments=[_pay("P1", "150.00", dt.date(2026, 11, 20), "1001")])
    write_csv(folder / "credit_notes.csv", CN, [_cn("K1", "30.00", number="GS-7", issued="2026-11-12")])
    if language:  # the customer file's optional language column wins over the country's
        from connectors.sources import CUSTOMER_COLUMNS

        write_csv(folder / "customers.csv", CUSTOMER_COLUMNS + ("language",),
                  [customer("C1", name="Müller GmbH", country="DE", language=language)])
    pipeline.checkpoint(folder, DAY1, policy, ledger)
    return folder


def test_a_statement_runs_the_period_to_the_balance_due_with_open_items_and_aging(tmp_path, policy, ledger):
    from tasks import credits, statement

    folder = _statement_source(tmp_path, policy, ledger)
    inputs = pipeline.inputs_from(folder, DAY1, ledger)
    from tasks import hops

    extracted, custs = hops.extract_aging(inputs, DAY1, policy)
    st = statement.build("C1", as_of=DAY1, aged=extracted.frame, raw_invoices=inputs.invoices, customers=custs,
                         payments=ledger.frame(m.PaymentReceived), credit_notes=credits.parse(inputs.credit_notes)[0])
    usd = st.currencies["USD"]
    # Owed 250 (I1 after the 150 paid) + 250 (I2), less the 30 credit held: 470.
    assert usd["closing"] == "470.00"
    assert [(x["kind"], x["item"], x["charge"], x["credit"], x["balance"]) for x in usd["lines"]] == [
        ("invoice", "1002", "250.00", "", "650.00"), ("credit_note", "GS-7", "", "30.00", "620.00"),
        ("payment", "1001", "", "150.00", "470.00")]
    # The opening balance on 1 November: invoice 1001 alone (1003 was settled in the books, not a line).
    assert usd["opening"] == "400.00" and usd["credit_held"] == "30.00"
    assert [i["invoice_number"] for i in usd["open_items"]] == ["1001", "1002"]
    assert usd["aging"]["d1_30"] == "250.00" and usd["aging"]["current"] == "250.00"


@pytest.mark.parametrize("language, words", [("", ("Kontoauszug", "Offener Betrag", "Gutschrift GS-7")),
                                             ("en", ("Statement of account", "Balance due", "Credit note GS-7"))])
@pytest.mark.usefixtures("prefect_server")
def test_arflow_statement_writes_a_pdf_whose_text_reads_back(tmp_path, policy, ledger, language, words):
    import io

    import pypdf

    folder = _statement_source(tmp_path, policy, ledger, language=language)
    env = {"ARFLOW_DB_URL": ledger.url, "ARFLOW_DATA_DIR": str(tmp_path)}
    pdf, html = tmp_path / "s.pdf", tmp_path / "s.html"
    cmd = ["statement", "C1", "--as-of", DAY1.isoformat(), "--source", f"csv:{folder}", "--pdf", str(pdf),
           "--html", str(html), "--json"]
    done = arflow(cmd, env)
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads(done.stdout)["currencies"]["USD"]["closing"] == "470.00"
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    for w in words + ("Müller GmbH", "470.00 USD", "1001", "1002"):
        assert w in text, (w, text)
    assert "470.00" in html.read_text()
    bad = arflow(cmd[:1] + ["NOPE"] + cmd[2:], env)
    assert bad.returncode == 2 and "no customer 'NOPE'" in bad.stderr


@pytest.mark.parametrize("day_of_month, day, carried_on, expected", [
    (1, DAY1, None, ["C1"]),                          # the month's first reminder carries it
    (1, DAY2, DAY1, []),                              # a later reminder of the month does not
    (25, DAY2, None, []),                             # before the policy's day of the month: none
    (25, DAY3, DAY1, ["C1"]),                         # the first one from that day on (the 23rd's was before it)
    (1, dt.date(2026, 12, 1), None, ["C1"]),          # the next month's first reminder carries it again
])
def test_the_statement_goes_with_the_first_reminder_of_the_month_from_the_policys_day(
        tmp_path, policy, ledger, day_of_month, day, carried_on, expected):
    from flows import prefect_tasks as t
    from tasks import hops

    rule = policy.statements.model_copy(update={"with_reminder": True, "day_of_month": day_of_month})
    pol = policy.model_copy(update={"statements": rule})
    folder = make_source(tmp_path / "src", [invoice("I1", amount="200.00", balance="200.00", invoice_number="1001")],
                         [customer("C1")])
    if carried_on is not None:  # an earlier reminder that carried a statement
        ledger.insert_rows(m.Outbox, [{
            "idempotency_key": "I1:nudge:email", "mode": "live", "run_id": "earlier", "as_of": carried_on,
            "invoice_id": "I1", "customer_id": "C1", "lane": "early", "step": "nudge", "channel": "email",
            "status": "sent", "delivered_on": carried_on, "message_key": f"C1:{carried_on}:email",
            "needs_approval": False, "context": '{"statement": "/x/statement-C1.pdf"}'}])
    inputs = pipeline.inputs_from(folder, day, ledger)
    extracted, custs = hops.extract_aging(inputs, day, pol)
    import pandas as pd

    actions = pd.DataFrame({"customer_id": ["C1", "C1"], "invoice_id": ["I1", "I1"], "channel": ["email", "crm_task"],
                            "step": ["follow_up", "owner_loop_in"]})
    out = t.attach_statements.fn(actions, extracted.frame, custs, inputs, ledger, day, pol, "send", tmp_path / "run")
    files = out["statement"].dropna().tolist() if "statement" in out else []
    assert (["C1"] if files else []) == expected
    if expected:   # on the e-mail only, a PDF of the customer's statement
        assert out["statement"].notna().tolist() == [True, False] and files[0].endswith(f"-{day}.pdf")
        assert (tmp_path / "run" / "statements" / f"statement-C1-{day}.pdf").read_bytes()[:5] == b"%PDF-"


# ---- the properties over several checkpoints: cash, credits, instalments -----------------------------------

_DAY = st.tuples(st.lists(st.tuples(st.integers(1, 60_000), st.sampled_from(["1001", "1002", ""])), max_size=3),
                 st.sampled_from(["none", "reflect", "credit"]), st.sampled_from(["I1", "I2"]), st.integers(1, 40_000))


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(1_000, 30_000), min_size=1, max_size=4), st.integers(5_000, 90_000),
       st.lists(_DAY, min_size=1, max_size=5))
@pytest.mark.slow
def test_across_checkpoints_cash_is_conserved_owed_is_amount_less_credits_less_cash_and_instalments_add_up(
        parts, other, days):
    """Each day the books may record one of the ledger's earlier applications, or issue a credit note
    on an invoice, and new payments arrive (by invoice number or none) for the checkpoint: what it
    applied + left unapplied + kept as the customer's credit is the cash it read; what is owed on each
    invoice is its amount less its credit notes less the cash applied to it, never below zero; and
    I1's instalments (its amount, split) always add up to what is left on it."""
    import json

    import pandas as pd

    from connectors.bank import PAYMENT_FRAME
    from tasks import schedule
    from tasks.checkpoint import run_checkpoint
    from tasks.extract import effective_balance

    amount = {"I1": sum(parts), "I2": other}
    books = dict(amount)                  # the billing system's balance
    credited = {"I1": 0, "I2": 0}         # its credit notes' allocations
    applied, received, pending, seen = [], [], [], []
    inv = pd.DataFrame({"invoice_id": ["I1", "I2"], "invoice_number": ["1001", "1002"], "customer_id": "C1",
                        "currency": "USD", "amount_minor": [amount["I1"], amount["I2"]], "due_date": pd.to_datetime(["2026-10-01", "2026-10-15"]),
                        "issue_date": pd.to_datetime(["2026-09-01", "2026-09-15"])})
    inst = pd.DataFrame({"invoice_id": "I1", "seq": range(1, len(parts) + 1), "amount_minor": parts,
                         "due_date": pd.to_datetime([dt.date(2026, 10, 1) + dt.timedelta(days=30 * k)
                                                     for k in range(len(parts))])})
    for n, (pays, event, target, x) in enumerate(days):
        day = dt.date(2026, 11, 2) + dt.timedelta(days=n)
        cash_applied = {i: sum(a["amount_minor"] for a in applied if a["invoice_id"] == i) for i in amount}
        if event == "reflect" and pending:
            a = pending.pop(0)
            books[a["invoice_id"]] -= a["amount_minor"]
        elif event == "credit":
            x = min(x, amount[target] - credited[target] - cash_applied[target])
            if x > 0:
                credited[target] += x
                books[target] -= x
        frame = inv.assign(balance_minor=[books["I1"], books["I2"]], credited_minor=[credited["I1"], credited["I2"]])
        ledger_apps = pd.DataFrame(applied, columns=["id", "payment_id", "invoice_id", "amount_minor", "applied_on",
                                                     "source_balance_minor", "source_credit_minor"])
        frame["effective_balance_minor"] = effective_balance(frame, ledger_apps, set()).to_numpy()
        for i in amount:   # owed: the amount less credit notes less cash, never below zero
            assert frame.set_index("invoice_id").loc[i, "effective_balance_minor"] == \
                amount[i] - credited[i] - cash_applied[i] >= 0
        split = schedule.allocate(frame, inst, day)
        left = [s["left_minor"] for s in json.loads(split.iloc[0]["schedule"])]
        assert sum(s["amount_minor"] for s in json.loads(split.iloc[0]["schedule"])) == amount["I1"]
        assert sum(left) == amount["I1"] - credited["I1"] - cash_applied["I1"] and min(left) >= 0
        new = [{"payment_id": f"P{n}.{k}", "source": "billing", "source_file": None, "customer_id": "C1",
                "payer_name": None, "amount_minor": amt, "currency": "USD", "received_date": pd.Timestamp(day),
                "reference": f"INV {ref}" if ref else ""} for k, (amt, ref) in enumerate(pays)]
        seen += new   # the billing system lists every payment again each day
        known = pd.DataFrame(received, columns=["payment_id", "source_file", "status", "customer_id"])
        res = run_checkpoint(pd.DataFrame(seen, columns=PAYMENT_FRAME), known, frame, pd.DataFrame(), day)
        assert res.already_recorded == len(seen) - len(new)
        read = sum(p["amount_minor"] for p in new)
        unapplied = sum(r["amount_minor"] for r in res.received if r["status"] == "unapplied")
        assert sum(a["amount_minor"] for a in res.applications) + unapplied + \
            sum(c["amount_minor"] for c in res.credits) == read
        for a in res.applications:
            row = {**a, "id": len(applied)}
            applied.append(row)
            pending.append(row)
        received += res.received
