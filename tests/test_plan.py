"""Timing, holds and step choice: what an AR clerk would expect on a given day."""

import datetime as dt

import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests.conftest import AS_OF, customer, invoice, make_source
from tests.pipeline import run

D = dt.date


def _plan(tmp_path, policy, invoices, customers=None, as_of=AS_OF, ledger=None, done=()):
    folder = make_source(tmp_path / "src", invoices, customers or [customer("C1")])
    out = run(folder, as_of, policy, ledger=ledger, done_keys=done)
    return out["planned"].set_index("invoice_id"), out["actions"]


def test_grace_holds_the_first_nudge(tmp_path, policy):
    # Due Friday 2026-11-20; grace of 2 business days: nothing Monday, the nudge on Tuesday.
    inv = [invoice("I1", due_date="2026-11-20")]
    p, a = _plan(tmp_path, policy, inv, as_of=D(2026, 11, 23))
    assert p.loc["I1", "outcome"] == "no_action_due" and p.loc["I1", "reason"] == "next_step_not_due"
    assert p.loc["I1", "next_contact"].date() == D(2026, 11, 24)
    p, a = _plan(tmp_path, policy, inv, as_of=D(2026, 11, 24))
    assert a["step"].tolist() == ["nudge"] and p.loc["I1", "outcome"] == "action_today"


def test_due_date_on_a_holiday_rolls_before_the_first_nudge(tmp_path, policy):
    # Due on Thanksgiving (Thu 26th): rolled to Fri 27th, + 2 business days = Tue 1 Dec.
    inv = [invoice("I1", due_date="2026-11-26")]
    _, a = _plan(tmp_path, policy, inv, as_of=D(2026, 11, 30))
    assert a.empty
    _, a = _plan(tmp_path, policy, inv, as_of=D(2026, 12, 1))
    assert a["step"].tolist() == ["nudge"]


def test_pre_due_reminder_three_business_days_before(tmp_path, policy):
    # Due Fri 27th; three business days before, skipping Thanksgiving: Mon 23rd.
    _, a = _plan(tmp_path, policy, [invoice("I1", due_date="2026-11-27")], as_of=D(2026, 11, 23))
    assert a["step"].tolist() == ["pre_due_reminder"] and a["tone"].tolist() == ["friendly"]


def test_no_touch_on_a_weekend_or_a_customer_holiday(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-10-01")]
    p, a = _plan(tmp_path, policy, inv, as_of=D(2026, 11, 28))
    assert a.empty and p.loc["I1", "reason"] == "not_a_business_day"
    p, a = _plan(tmp_path, policy, inv, customers=[customer("C1", country="JP")], as_of=D(2026, 11, 23))
    assert a.empty and p.loc["I1", "reason"] == "not_a_business_day"


def test_auto_charge_on_the_due_date_only_for_autopay(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-23", autopay="true"), invoice("I2", due_date="2026-11-23")]
    _, a = _plan(tmp_path, policy, inv)
    assert dict(zip(a["invoice_id"], a["step"])) == {"I1": "auto_charge", "I2": "pre_due_reminder"}


def test_first_sight_of_an_old_invoice_takes_the_most_advanced_step_but_tells_the_customer_first(tmp_path, policy):
    _, a = _plan(tmp_path, policy, [invoice("I1", due_date="2026-10-05")])  # 49 days, never contacted
    # The owner call (internal) goes to a person; the service pause waits until a reminder reached
    # the customer, and the reminder is the friendly one the cadence allows first.
    assert sorted(a["step"]) == ["finance_owner_call", "follow_up"]
    assert a.set_index("step").loc["follow_up", "tone"] == "friendly"
    _, a = _plan(tmp_path / "b", policy, [invoice("I1", due_date="2026-10-05")], done=["I1:follow_up:email"])
    assert sorted(a["step"]) == ["finance_owner_call", "service_pause"] and a["needs_approval"].all()


def test_strategic_account_gets_an_owner_heads_up_not_a_firm_email(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-06")]  # 17 days: late lane
    _, a = _plan(tmp_path, policy, inv, customers=[customer("C1", segment="strategic")])
    assert sorted(a["step"]) == ["owner_alert", "owner_heads_up"]
    _, a = _plan(tmp_path / "b", policy, inv, done=["I1:follow_up:email"])
    assert sorted(a["step"]) == ["firm_reminder", "owner_alert"]
    assert a.set_index("step").loc["firm_reminder", "tone"] == "firm"


def test_a_firm_email_never_comes_first(tmp_path, policy):
    # First sight of an invoice 17 days late: the friendly follow-up goes, not the firm reminder,
    # in the late lane (the owner's Slack alert still goes today).
    inv = [invoice("I1", due_date="2026-11-06")]
    _, a = _plan(tmp_path, policy, inv)
    assert sorted(a["step"]) == ["follow_up", "owner_alert"]
    assert a.set_index("step").loc["follow_up", "tone"] == "friendly"
    assert set(a["lane"]) == {"late"}
    # A service-pause warning never comes before a firm reminder was sent.
    _, a = _plan(tmp_path / "b", policy, [invoice("I1", due_date="2026-10-21")])  # day 33
    assert a["step"].tolist() == ["firm_reminder"] and not a["needs_approval"].any()


def test_at_risk_account_never_gets_a_firm_email(tmp_path, policy):
    _, a = _plan(tmp_path, policy, [invoice("I1", due_date="2026-11-06")],
                 customers=[customer("C1", health="at_risk")], done=["I1:follow_up:email"])
    assert a.set_index("step").loc["firm_reminder", "tone"] == "friendly"


def test_a_touch_already_in_the_outbox_is_not_planned_again(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-18")]
    _, a = _plan(tmp_path, policy, inv)
    key = a["idempotency_key"].tolist()
    assert key == ["I1:nudge:email"]
    p, a = _plan(tmp_path, policy, inv, done=key)
    assert a.empty and p.loc["I1", "reason"] == "step_done"


@pytest.fixture
def ledger(tmp_path):
    return Ledger(f"sqlite:///{tmp_path / 'l.db'}")


def test_stop_conditions_hold_with_the_first_reason_in_policy_order(tmp_path, policy, ledger):
    inv = [invoice(f"I{i}", due_date="2026-11-01") for i in range(1, 8)] + [invoice("J1", "C2", due_date="2026-11-01"),
                                                                            invoice("K1", "C3", due_date="2026-11-01")]
    customers = [customer("C1"), customer("C2", opt_out="true"), customer("C3", paused_until="2026-12-01")]
    ledger.insert_rows(m.Dispute, [{"invoice_id": "I1", "customer_id": "C1", "opened_on": D(2026, 11, 2)},
                                   {"invoice_id": "J1", "customer_id": "C2", "opened_on": D(2026, 11, 2)},
                                   {"invoice_id": "I6", "customer_id": "C1", "opened_on": D(2026, 11, 2),
                                    "resolved_on": D(2026, 11, 10)}])
    ledger.insert_rows(m.PromiseToPay, [
        {"invoice_id": "I2", "customer_id": "C1", "recorded_on": D(2026, 11, 20), "promised_date": D(2026, 11, 25)},
        {"invoice_id": "I3", "customer_id": "C1", "recorded_on": D(2026, 11, 10), "promised_date": D(2026, 11, 20)}])
    ledger.insert_rows(m.Pause, [{"customer_id": "C1", "invoice_id": "I4", "starts_on": D(2026, 11, 1),
                                  "until": D(2026, 11, 30), "reason": "AP on leave"}])
    ledger.insert_rows(m.PaymentPlan, [{"customer_id": "C1", "invoice_id": "I5", "starts_on": D(2026, 11, 1)}])
    p, a = _plan(tmp_path, policy, inv, customers=customers, ledger=ledger)
    held = p[p["outcome"] == "held"]["reason"].to_dict()
    assert held == {"I1": "dispute", "J1": "dispute", "I2": "promise_to_pay", "I4": "paused", "I5": "payment_plan",
                    "K1": "paused"}
    # A broken promise (date passed) and a resolved dispute no longer hold: reminders resume.
    assert p.loc["I3", "outcome"] == "action_today" and p.loc["I6", "outcome"] == "action_today"
    assert not set(a["invoice_id"]) & set(held)


def test_every_invoice_gets_exactly_one_outcome(tmp_path, policy):
    dues = [D(2026, 8, 1) + dt.timedelta(days=7 * i) for i in range(30)]
    inv = [invoice(f"I{i}", issue_date=(d - dt.timedelta(days=30)).isoformat(), due_date=d.isoformat())
           for i, d in enumerate(dues)]
    p, _ = _plan(tmp_path, policy, inv)
    assert p.index.is_unique and len(p) == 30
    assert set(p["outcome"]) <= {"action_today", "no_action_due", "held"}


def test_an_open_invoice_with_nothing_owed_gets_no_touch(tmp_path, policy, ledger):
    inv = [invoice("I1", due_date="2026-11-18", balance="0.00"), invoice("I2", due_date="2026-11-18")]
    ledger.insert_rows(m.PaymentApplication, [{"payment_id": "P1", "invoice_id": "I2", "customer_id": "C1",
                                               "amount_minor": 100000, "currency": "USD",
                                               "applied_on": D(2026, 11, 21), "rule": "exact"}])
    p, a = _plan(tmp_path, policy, inv, ledger=ledger)
    assert a.empty
    assert p["reason"].to_dict() == {"I1": "nothing_owed", "I2": "nothing_owed"}
    # Before the payment was applied, I2 was due its nudge.
    p, a = _plan(tmp_path, policy, inv, ledger=ledger, as_of=D(2026, 11, 20))
    assert a["invoice_id"].tolist() == ["I2"]


def test_nobody_is_chased_below_the_minimum_for_the_currency(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-18", amount="4.99", balance="4.99"),
           invoice("I2", due_date="2026-11-18", amount="5.00", balance="5.00"),
           invoice("I3", due_date="2026-11-18", currency="JPY", amount="499", balance="499")]
    p, a = _plan(tmp_path, policy, inv)
    assert p["reason"].to_dict() == {"I1": "below_minimum", "I2": None, "I3": "below_minimum"}
    assert a["invoice_id"].tolist() == ["I2"]


def _touch(invoice_id, step, status, on, channel="email", customer_id="C1", delivered_on=None):
    return {"idempotency_key": f"{invoice_id}:{step}:{channel}", "invoice_id": invoice_id, "customer_id": customer_id,
            "step": step, "channel": channel, "status": status, "as_of": on, "delivered_on": delivered_on}


def _plan_with(tmp_path, policy, invoices, touches, as_of=AS_OF, customers=None):
    import pandas as pd

    folder = make_source(tmp_path / "src", invoices, customers or [customer("C1")])
    out = run(folder, as_of, policy, touches=pd.DataFrame(touches))
    return out["planned"].set_index("invoice_id"), out["actions"]


@pytest.mark.slow
def test_a_firmer_step_waits_until_the_previous_one_was_delivered(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-06")]  # day 17: the firm reminder is due
    for status in ("awaiting_decision", "queued", "failed", "blocked", "delivery_unknown"):
        p, a = _plan_with(tmp_path / status, policy, inv, [_touch("I1", "follow_up", status, D(2026, 11, 13))])
        assert "firm_reminder" not in set(a["step"]), status
        assert p.loc["I1", "reason"] != "previous_step_not_delivered" or p.loc["I1", "outcome"] == "no_action_due"
    # The owner's Slack alert is not a customer message: it still goes.
    assert "owner_alert" in set(a["step"])
    p, a = _plan_with(tmp_path / "sent", policy, inv, [_touch("I1", "follow_up", "sent", D(2026, 11, 13),
                                                              delivered_on=D(2026, 11, 13))])
    assert "firm_reminder" in set(a["step"])


def test_previous_step_not_delivered_is_the_reason_when_nothing_else_is_due(tmp_path, policy):
    inv = [invoice("I1", due_date="2026-11-16")]  # day 7: follow-up due; the nudge still awaits a decision
    p, a = _plan_with(tmp_path, policy, inv, [_touch("I1", "nudge", "awaiting_decision", D(2026, 11, 18))])
    assert a.empty and p.loc["I1", "outcome"] == "no_action_due"
    assert p.loc["I1", "reason"] == "previous_step_not_delivered"


def test_minimum_gap_between_two_emails_to_one_customer(tmp_path, policy):
    # I2's nudge is due today, but C1 had an e-mail (about I1) two days ago: the nudge waits.
    inv = [invoice("I1", due_date="2026-11-26"), invoice("I2", due_date="2026-11-16")]
    recent = [_touch("I1", "pre_due_reminder", "sent", D(2026, 11, 21), delivered_on=D(2026, 11, 21))]
    p, a = _plan_with(tmp_path / "a", policy, inv, recent)
    assert a.empty and p.loc["I2", "reason"] == "min_gap"
    # Three days on (min_gap_days: 3), it goes.
    p, a = _plan_with(tmp_path / "b", policy, inv, recent, as_of=D(2026, 11, 24))
    assert a["invoice_id"].tolist() == ["I2"]
    # Another customer's e-mail does not count.
    other = [_touch("X1", "nudge", "sent", D(2026, 11, 21), customer_id="C9", delivered_on=D(2026, 11, 21))]
    _, a = _plan_with(tmp_path / "c", policy, inv, other)
    assert "I2" in set(a["invoice_id"])


@pytest.mark.slow
def test_payment_plan_reminds_before_each_installment_and_a_missed_one_re_escalates(tmp_path, policy, ledger):
    inv = [invoice("I1", issue_date="2026-08-02", due_date="2026-09-01", balance="900.00", amount="900.00")]
    ledger.insert_rows(m.PaymentPlan, [{"customer_id": "C1", "invoice_id": "I1", "starts_on": D(2026, 11, 2),
                                        "status": "active", "balance_at_start_minor": 90000, "currency": "USD"}])
    ledger.insert_rows(m.Installment, [{"plan_id": 1, "seq": k + 1, "due_on": d, "amount_minor": 30000,
                                        "currency": "USD"}
                                       for k, d in enumerate([D(2026, 11, 26), D(2026, 12, 28), D(2027, 1, 27)])])
    # Three business days before the first installment (Thanksgiving on the 26th: Fri 20, Mon 23, Tue 24 -> Mon 23).
    p, a = _plan(tmp_path / "a", policy, inv, ledger=ledger, as_of=D(2026, 11, 23))
    assert a["idempotency_key"].tolist() == ["I1:installment_1_reminder:email"]
    assert p.loc["I1", "outcome"] == "action_today"
    p, a = _plan(tmp_path / "b", policy, inv, ledger=ledger, as_of=D(2026, 11, 30))
    assert p.loc["I1", "outcome"] == "held" and p.loc["I1", "reason"] == "payment_plan"  # grace after the due date
    # Nothing paid by the grace's end: the hold lifts and a person decides again.
    p, a = _plan(tmp_path / "c", policy, inv, ledger=ledger, as_of=D(2026, 12, 2))
    assert p.loc["I1", "outcome"] == "action_today"
    assert "I1:payment_plan_missed_1:decision" in set(a["idempotency_key"])
    # Paid on time (the ledger applied 300.00): still held.
    ledger.insert_rows(m.PaymentApplication, [{"payment_id": "P1", "invoice_id": "I1", "customer_id": "C1",
                                               "amount_minor": 30000, "currency": "USD",
                                               "applied_on": D(2026, 11, 25), "rule": "exact"}])
    p, a = _plan(tmp_path / "d", policy, inv, ledger=ledger, as_of=D(2026, 12, 2))
    assert p.loc["I1", "outcome"] == "held" and a.empty


def test_a_rerun_of_the_day_never_sends_a_customer_a_second_email(tmp_path, policy):
    # The follow-up went out this morning; by the cadence the firm reminder is also due (day 17),
    # but one customer gets one e-mail a day, whatever the gap setting.
    inv = [invoice("I1", due_date="2026-11-06")]
    today = [_touch("I1", "follow_up", "sent", AS_OF, delivered_on=AS_OF)]
    p, a = _plan_with(tmp_path, policy, inv, today)
    assert "firm_reminder" not in set(a["step"]) and p.loc["I1", "reason"] in ("min_gap", None)
    _, a = _plan_with(tmp_path / "b", policy, inv, today, as_of=D(2026, 11, 26) + dt.timedelta(days=1))
    assert "firm_reminder" in set(a["step"])
