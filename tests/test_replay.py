"""The demo, day after day for 60 days (the flow's hops in order, the ledger between days): every
invoice's touches come in cadence order, nothing is queued twice, one e-mail per customer per day
with the policy's gap, and nothing reaches an invoice on a day it is disputed, opted out or paused."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from arflow import demo
from arflow.businessdays import company_business_day
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from connectors.sources import DemoSource
from tasks import hops
from tasks.touches import outbox_rows

START = dt.date(2026, 11, 2)
DAYS = 60


def _inputs(src, ledger, as_of):
    return hops.Inputs(source=src.name, invoices=src.invoices(), customers=src.customers(), payments=src.payments(),
                       aging_report=None, reflected_payment_ids=set(), stops=ledger.stop_records(as_of),
                       history=ledger.payment_history(as_of), applied=ledger.applied_payments(as_of))


@pytest.mark.slow
def test_sixty_days_of_the_demo(tmp_path, policy):
    folder = demo.generate(tmp_path / "demo", anchor=START, seed=42)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    src = DemoSource(folder)
    src.prepare_ledger(ledger)
    inv = src.invoices()
    cust = src.customers().set_index("customer_id")
    # Records a clerk adds along the way, each on an invoice that would otherwise be touched soon
    # after (due a week later, a US customer not on autopay, nothing holding it): they must stop
    # its touches from the day they start.
    ok = (inv["status"] == "open") & (inv["autopay"] == "false") & inv["customer_id"].map(
        lambda c: c in cust.index and cust.at[c, "country"] == "US" and cust.at[c, "opt_out"] == "false"
        and cust.at[c, "paused_until"] == "")
    seeded = ledger.stop_records(START)
    ok &= ~inv["invoice_id"].isin(set(seeded["disputes"]["invoice_id"]) | set(seeded["promises"]["invoice_id"]))

    def target(day_offset: int):
        window = [(START + dt.timedelta(days=day_offset + d)).isoformat() for d in range(5, 10)]
        pick = inv[ok & inv["due_date"].isin(window)]
        assert not pick.empty, window
        return pick.iloc[0]

    stops_added = {
        START + dt.timedelta(days=10): ("dispute", target(10)),
        START + dt.timedelta(days=22): ("opt_out", target(22)),
        START + dt.timedelta(days=31): ("pause", target(31)),
    }
    held_reasons: dict[str, set] = {}
    for k in range(DAYS):
        day = START + dt.timedelta(days=k)
        if day in stops_added:
            kind, row = stops_added[day]
            if kind == "dispute":
                ledger.insert_rows(m.Dispute, [{"invoice_id": row.invoice_id, "customer_id": row.customer_id,
                                                "opened_on": day}])
            elif kind == "opt_out":
                ledger.insert_rows(m.OptOut, [{"customer_id": row.customer_id, "recorded_on": day}])
            else:
                ledger.insert_rows(m.Pause, [{"customer_id": row.customer_id, "starts_on": day,
                                              "until": day + dt.timedelta(days=14), "reason": "AP on leave"}])
        inputs = _inputs(src, ledger, day)
        extracted, customers = hops.extract_aging(inputs, day, policy)
        enriched = hops.enrich_context(extracted.frame, customers, inputs, day, policy)
        scored = hops.score(enriched.frame, policy)
        planned, actions = hops.plan_actions(scored.frame, day, policy, mismatched=set(),
                                             touches=ledger.touch_history("dry-run"),
                                             installments=ledger.plan_schedule(day))
        outcome = planned.frame.set_index("invoice_id")
        for kind, row in stops_added.values():
            if row.invoice_id in outcome.index:
                held_reasons.setdefault(row.invoice_id, set()).add(outcome.at[row.invoice_id, "reason"])
        rows = outbox_rows(actions, planned.frame, mode="dry-run", run_id=f"day{k}", as_of=day, policy=policy)
        new, _ = ledger.queue_touches(rows, [])
        assert new == len(rows)  # the planner never proposes a touch that is already in the outbox

    box = ledger.frame(m.Outbox)
    assert len(box) > 500 and box["idempotency_key"].is_unique
    box["as_of"] = pd.to_datetime(box["as_of"]).dt.date
    assert all(company_business_day(d, policy.company_country) for d in box["as_of"].unique())

    # Cadence order: each invoice's e-mails move forward, never back (so do its owner touches; an
    # owner alert may go before the e-mail that steps down to an earlier, friendlier step).
    box["step_day"] = box["context"].map(lambda c: json.loads(c)["step_day"])
    box["is_mail"] = box["channel"] == "email"
    per_invoice = box[~box["step"].str.startswith("installment")].sort_values(["invoice_id", "as_of", "step_day"])
    assert (per_invoice.groupby(["invoice_id", "is_mail"])["step_day"].diff().dropna() >= 0).all()
    firsts = per_invoice.groupby("invoice_id")["as_of"].apply(lambda s: s.is_monotonic_increasing)
    assert firsts.all()

    # The demo's own messages pass the guardrails (the company's remittance line once read as another
    # customer's invoice number and blocked 105 of 365).
    mail = box[box["channel"] == "email"]
    assert not (mail["status"] == "blocked").any(), mail.loc[mail["status"] == "blocked", "closed_reason"].value_counts()
    # One customer, one e-mail a day, and the policy's gap between e-mails.
    assert (mail.groupby(["customer_id", "as_of"])["message_key"].nunique() == 1).all()
    days = mail.drop_duplicates(["customer_id", "as_of"]).sort_values(["customer_id", "as_of"])
    gaps = days.groupby("customer_id")["as_of"].diff().dropna().map(lambda d: d.days)
    assert (gaps >= policy.delivery.min_gap_days).all()
    # A firmer e-mail only after the one before it went out (dry-run: recorded as planned).
    steps = {s.name: s for s in policy.steps}
    for r in mail[mail["step"].isin(["follow_up", "firm_reminder"])].itertuples():
        prev = policy.previous_email_step(steps[r.step], json.loads(r.context)["segment"])
        before = box[(box["idempotency_key"] == f"{r.invoice_id}:{prev.name}:email")]
        assert before.empty or before["as_of"].iloc[0] < r.as_of

    # No touch on a day the invoice is disputed, opted out or paused.
    for day, (kind, row) in stops_added.items():
        if kind == "dispute":
            hit = box[(box["invoice_id"] == row.invoice_id) & (box["as_of"] >= day)]
        elif kind == "opt_out":
            hit = box[(box["customer_id"] == row.customer_id) & (box["as_of"] >= day)]
        else:
            hit = box[(box["customer_id"] == row.customer_id) & (box["as_of"] >= day)
                      & (box["as_of"] <= day + dt.timedelta(days=14))]
        assert hit.empty, (kind, hit[["invoice_id", "step", "as_of"]])
        # Not vacuous: on its due dates the invoice was held for exactly that reason.
        assert {"dispute": "dispute", "opt_out": "opt_out", "pause": "paused"}[kind] in held_reasons[row.invoice_id]
    # Nor for the ones the demo starts with.
    seeded = ledger.stop_records(START)
    assert box[box["invoice_id"].isin(set(seeded["disputes"]["invoice_id"]))
               & (box["as_of"] < START + dt.timedelta(days=1))].empty
