"""Plan: each invoice's outcome today and the touches it is due, from the policy.

Order of decisions for an aged, enriched, scored invoice:
1. nothing left to collect (the ledger applied payments the source does not show yet) -> no_action_due
2. a stop condition, the first in ``policy.hold_order`` -> held (reason)
3. an open balance below the policy's minimum for its currency -> no_action_due (below_minimum)
   today is a weekend or a holiday of ours or of the customer's country -> no_action_due
4. the most advanced step of its lane (and segment) whose contact date has come -> action_today,
   unless that step's touch is already in the outbox -> no_action_due (step_done)

A step's contact date: pre-due steps N business days before the due date; day 0 on the due date
rolled to a business day; day N >= 1 on due date + N calendar days, but not before the rolled due
date plus the grace in business days, rolled to a business day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arflow import businessdays as bd
from arflow.policy import Policy, Step

HOLD_FLAGS = {"dispute": "open_dispute", "opt_out": "opt_out", "paused": "paused", "payment_plan": "payment_plan",
              "promise_to_pay": "promise_to_pay", "unapplied_cash": "unapplied_cash",
              "reconciliation_mismatch": "reconciliation_mismatch"}
TONE_ORDER = {"friendly": 0, "firm": 1, "escalating": 2}


@dataclass
class Plan:
    outcomes: pd.DataFrame  # index of the scored frame; outcome, reason, next_step
    actions: pd.DataFrame   # one row per touch due today


def contact_dates(df: pd.DataFrame, step: Step, policy: Policy) -> pd.Series:
    due = df["due_date"]
    country = df["country"]
    cc = policy.company_country
    if step.business_days_before_due is not None:
        return bd.add_business_days(due, -step.business_days_before_due, country, cc)
    rolled = bd.roll_forward(due, country, cc)
    if step.day == 0:
        return rolled
    after_grace = bd.add_business_days(rolled, policy.grace_business_days, country, cc)
    nominal = due + pd.Timedelta(days=int(step.day))
    return bd.roll_forward(nominal.where(nominal > after_grace, after_grace), country, cc)


def plan(df: pd.DataFrame, as_of: dt.date, policy: Policy, *, mismatched_customers: set[str],
         done_keys: set[str]) -> Plan:
    today = pd.Timestamp(as_of)
    work = df.copy()
    work["reconciliation_mismatch"] = work["customer_id"].isin(mismatched_customers)
    outcome = pd.Series("", index=work.index, dtype=object)
    reason = pd.Series("", index=work.index, dtype=object)

    nothing_owed = work["effective_balance_minor"] <= 0
    outcome[nothing_owed] = "no_action_due"
    reason[nothing_owed] = "nothing_owed"

    for name in policy.hold_order:
        flag = work[HOLD_FLAGS[name]].fillna(False).astype(bool) & (outcome == "")
        outcome[flag] = "held"
        reason[flag] = name

    minimum = work["currency"].map(policy.minimum_minor()).fillna(0)
    too_small = (outcome == "") & (work["effective_balance_minor"] < minimum)
    outcome[too_small] = "no_action_due"
    reason[too_small] = "below_minimum"

    open_rows = outcome == ""
    business = bd.is_business_day(as_of, work["country"], policy.company_country)
    closed_today = open_rows & ~business
    outcome[closed_today] = "no_action_due"
    reason[closed_today] = "not_a_business_day"

    # Most advanced due step per invoice; several steps on the same day all run (e.g. email + Slack).
    candidates = open_rows & business
    best_day = pd.Series(np.nan, index=work.index)
    chosen: list[tuple[Step, pd.Series]] = []
    next_date = pd.Series(pd.NaT, index=work.index, dtype="datetime64[s]")
    for step in policy.steps:
        applies = candidates & (work["lane"] == step.lane) & work["segment"].isin(step.segments)
        if step.autopay_only:
            applies &= work["autopay"].astype(bool)
        if not applies.any():
            continue
        sub = work[applies]
        when = contact_dates(sub, step, policy)
        is_due = when <= today
        due_idx = is_due[is_due].index
        upcoming = when[~is_due]
        next_date.loc[upcoming.index] = next_date.loc[upcoming.index].where(
            next_date.loc[upcoming.index] <= upcoming, upcoming)
        if len(due_idx):
            chosen.append((step, pd.Series(True, index=due_idx)))
            best_day.loc[due_idx] = np.fmax(best_day.loc[due_idx], step.sort_day)

    rows = []
    for step, mask in chosen:
        idx = mask.index[best_day.loc[mask.index] == step.sort_day]
        if len(idx):
            rows.append(_actions_for(work.loc[idx], step, policy))
    actions = pd.concat(rows) if rows else _empty_actions()
    # A touch already in the outbox (an earlier run, or a re-run of today) is not planned again.
    actions = actions[~actions["idempotency_key"].isin(done_keys)]
    acting = actions["row"].unique()
    outcome[acting] = "action_today"
    rest = outcome == ""
    outcome[rest] = "no_action_due"
    reason[rest] = np.where(best_day[rest].isna(), "next_step_not_due", "step_done")
    outcomes = pd.DataFrame({"outcome": outcome, "reason": reason.replace("", None),
                             "next_contact": next_date}, index=work.index)
    return Plan(outcomes=outcomes, actions=actions.reset_index(drop=True))


def _actions_for(sub: pd.DataFrame, step: Step, policy: Policy) -> pd.DataFrame:
    tone = np.where(sub["tone"].map(TONE_ORDER) < TONE_ORDER[step.tone], sub["tone"], step.tone)
    a = pd.DataFrame({
        "row": sub.index,
        "invoice_id": sub["invoice_id"].to_numpy(),
        "customer_id": sub["customer_id"].to_numpy(),
        "lane": step.lane,
        "step": step.name,
        "channel": step.channel,
        "tone": tone,
        "needs_approval": step.approval,
        "recipients": [",".join(_recipients(step, r)) for r in sub.itertuples()],
    })
    a["idempotency_key"] = a["invoice_id"].astype(str) + ":" + step.name + ":" + step.channel
    return a


def _recipients(step: Step, r) -> list[str]:
    out = []
    for role in step.recipients:
        if role == "billing_contact":
            out.append(str(r.billing_contact_email))
        elif role == "owner":
            owner = r.owner_ae_email if isinstance(r.owner_ae_email, str) else r.owner_csm_email
            out.append(str(owner) if isinstance(owner, str) else "finance")
        elif role == "csm":
            out.append(str(r.owner_csm_email) if isinstance(r.owner_csm_email, str) else "finance")
        else:
            out.append(role)  # cfo / finance: resolved by the lanes issue's designated contacts
    return out


def _empty_actions() -> pd.DataFrame:
    return pd.DataFrame(columns=["row", "invoice_id", "customer_id", "lane", "step", "channel", "tone",
                                 "needs_approval", "recipients", "idempotency_key"])
