"""Sixty simulated days in send mode (the simulator runs the flows' tasks against a world that pays,
disputes, promises and replies), and every customer e-mail that left read against the account's
state the day it left (issue 23, item 4): the subject's count is the invoices it lists as past due;
nothing "coming due" to a customer who is overdue; no "is due <date>" for today or a past date; one
message a customer a day; no first e-mail at a firm tone; nothing on a plan, in dispute or promised
merged into a firmer message."""

from __future__ import annotations

import datetime as dt
import json
import re

import pandas as pd
import pytest

from connectors.ledger import models as m
from flows import simulate as sim

COUNTED = re.compile(r"(\d+) (?:invoices are past due|open invoices|overdue invoices|offene Rechnungen|"
                     r"überfällige Rechnungen|Rechnungen sind überfällig|factures en attente|factures échues|"
                     r"factures sont échues)")
PAST_DUE = ("(past due)", "(überfällig)", "(échue)")
IS_DUE = re.compile(r"\bis due (\d{4}-\d\d-\d\d)")
HELD_SOFT = {"payment_plan", "dispute", "promise_to_pay"}


def _listed(body: str) -> list[str]:
    """The invoice lines of a message's own list (before the rest of the account)."""
    head = re.split(r"\n(?:Also open on your account|Außerdem offen|Également ouvert)", body)[0]
    return [ln for ln in head.splitlines() if ln.startswith("- ")]


@pytest.mark.slow
def test_sixty_days_in_send_mode_every_message_matches_the_account():
    days: list[tuple[dt.date, pd.DataFrame, pd.DataFrame]] = []

    def observe(day, ledger, planned):
        sent = ledger.frame(m.Outbox, (m.Outbox.delivered_on == day) & (m.Outbox.status == "sent")
                            & (m.Outbox.channel == "email"))
        cols = ["invoice_id", "customer_id", "days_past_due", "effective_balance_minor", "outcome", "reason"]
        days.append((day, sent, planned[cols].copy()))

    sim.simulate(days=60, customers=150, seed=3, observe=observe)
    everything = pd.concat([s for _, s, _ in days], ignore_index=True)
    reminders = everything[everything["step"] != "receipt"]
    assert reminders["message_key"].nunique() > 50  # not vacuous: a portfolio's worth of mail

    problems: list[str] = []
    mailed_before: set[str] = set()
    for day, sent, state in days:
        overdue = state[(state["days_past_due"] > 0) & (state["effective_balance_minor"] > 0)]
        overdue_customers = set(overdue["customer_id"])
        soft = set(state.loc[(state["outcome"] == "held") & state["reason"].isin(HELD_SOFT), "invoice_id"])
        per_customer = sent.groupby("customer_id")["message_key"].nunique()
        problems += [f"{day} {c}: {n} messages" for c, n in per_customer.items() if n > 1]
        for key, g in sent.groupby("message_key"):
            subject, body, cid = g["subject"].iloc[0], g["body"].iloc[0], g["customer_id"].iloc[0]
            where = f"{day} {key} {subject!r}"
            counted = COUNTED.search(subject)
            if counted:
                listed = _listed(body)
                past_due = [ln for ln in listed if any(w in ln for w in PAST_DUE)]
                if not int(counted.group(1)) == len(past_due) == len(listed):
                    problems.append(f"{where}: lists {len(listed)}, {len(past_due)} of them past due")
            if "coming due" in body and cid in overdue_customers:
                problems.append(f"{where}: coming due to an overdue customer")
            for when in IS_DUE.findall(subject + "\n" + body):
                if dt.date.fromisoformat(when) <= day:
                    problems.append(f"{where}: is due {when}")
            tones = set(g["tone"])
            if tones & {"firm", "escalating"}:
                for inv in g.loc[~g["step"].str.startswith("installment"), "invoice_id"]:
                    if inv not in mailed_before:
                        problems.append(f"{where}: first e-mail to {inv} is firm")
                    if inv in soft:
                        problems.append(f"{where}: {inv} held soft but merged into a firm message")
        mailed_before |= set(sent["invoice_id"])
    assert not problems, "\n".join(problems[:30]) + f"\n({len(problems)} in all)"
