"""A refused auto-charge is tried again on the processor's schedule (policy auto_charge_retries:
days 3, 5 and 7 after the failure) before any reminder: each retry once, under its own
idempotency key, in the ledger and in the run's summary."""

from __future__ import annotations

import datetime as dt
import hashlib

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from tests.flows.helpers import autopay_source as _autopay_source

D = dt.date
MON = D(2026, 11, 23)   # I4 and I5 due; C3's card has expired


def _box(env):
    return Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.Outbox).set_index("idempotency_key")


def test_a_refused_charge_is_retried_on_days_3_5_and_7_before_any_reminder(env, smtp, slack):
    src = _autopay_source(env)
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["charges_failed"] == 1 and len(smtp.to("ap@c3.example.com")) == 1  # told the same run, as before

    s = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="send")
    assert s["charges"] == 0 and s["no_action_due"].get("charge_retry_pending") == 1
    assert len(smtp.to("ap@c3.example.com")) == 1  # no reminder while the retries are still to come

    # Day 3 is Thanksgiving: the first retry goes the next business day, once, re-run or not.
    s = daily_ar(as_of=D(2026, 11, 27), source=f"csv:{src}", mode="send")
    assert (s["charges"], s["charge_retries"], s["charge_retries_failed"]) == (1, 1, 1)
    assert s["actions"].get("auto_charge_retry_1") == 1
    again = daily_ar(as_of=D(2026, 11, 27), source=f"csv:{src}", mode="send")
    assert again["charges"] == 0
    box = _box(env)
    assert box.loc["I4:auto_charge_retry_1:billing", "closed_reason"] == "charge_failed: card_expired"

    # The customer updates the card; the second retry (day 5, a Saturday: Monday) collects.
    (src / "payment_methods.csv").write_text("customer_id,method,status\nC3,card,valid\nC4,card,valid\n")
    s = daily_ar(as_of=D(2026, 11, 30), source=f"csv:{src}", mode="send")
    assert (s["charges"], s["charge_retries"], s["charges_failed"]) == (1, 1, 0)
    box = _box(env)
    assert box.loc["I4:auto_charge_retry_2:billing", "status"] == "sent"
    # Its own idempotency key at the processor: a new charge, not the first attempt's answer.
    charge = "ch_" + hashlib.sha256(b"I4:auto_charge_retry_2:billing").hexdigest()[:16]
    assert f"{charge},C3,49.00,USD,2026-11-30,Invoice N-I4 auto-charge" in (src / "payments.csv").read_text()
    assert len(smtp.to("ap@c3.example.com")) == 1  # no reminder went out on the way


def test_when_the_retries_are_spent_the_reminders_begin(env, smtp, slack):
    src = _autopay_source(env)
    daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    steps = []
    for day in (D(2026, 11, 27), D(2026, 11, 30), D(2026, 12, 1)):
        s = daily_ar(as_of=day, source=f"csv:{src}", mode="send")
        steps.append(sorted(k for k in s["actions"] if k.startswith("auto_charge")))
    assert steps == [["auto_charge_retry_1"], ["auto_charge_retry_2"], ["auto_charge_retry_3"]]
    assert len(smtp.to("ap@c3.example.com")) == 1
    s = daily_ar(as_of=D(2026, 12, 2), source=f"csv:{src}", mode="send")
    assert s["charges"] == 0 and "charge_retry_pending" not in s["no_action_due"]
    mails = smtp.to("ap@c3.example.com")
    assert len(mails) == 2 and "N-I4" in mails[-1]["Subject"]  # the early lane's reminder, at last
