"""Plan: each invoice's outcome today and the touches it is due, from the policy.

Order of decisions for an aged, enriched, scored invoice:
1. nothing left to collect (the ledger applied payments the source does not show yet) -> no_action_due
2. a stop condition, the first in ``policy.hold_order`` -> held (reason)
3. an open balance below the policy's minimum for its currency -> no_action_due (below_minimum)
   today is a weekend or a holiday of ours or of the customer's country -> no_action_due
4. the most advanced step of its lane (and segment) whose contact date has come -> action_today,
   unless that step's touch is already in the outbox -> no_action_due (step_done)
5. a customer e-mail waits (no_action_due) while the e-mail step before it in the cadence sits in
   the outbox undelivered (previous_step_not_delivered: awaiting a decision, queued, failed or
   blocked), and while the customer had an e-mail fewer than ``delivery.min_gap_days`` ago
   (min_gap). It stays due, so it goes out on the first day both clear.
6. a refused auto-charge is tried again on the policy's days after the failure (auto_charge_retries)
   before any reminder: until the last retry is refused the invoice waits (charge_retry_pending).
7. the business day after a promise to pay passed unkept, a promise_broken e-mail says so and the
   cadence resumes after it.
8. an invoice on a payment plan is held, except for the reminder a few business days before each
   installment; a missed installment lifts the hold and re-escalates to a person.

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
from arflow.policy import SEGMENTS, Policy, Step

HOLD_FLAGS = {"dispute": "open_dispute", "opt_out": "opt_out", "paused": "paused", "payment_plan": "payment_plan",
              "promise_to_pay": "promise_to_pay", "unapplied_cash": "unapplied_cash",
              "reconciliation_mismatch": "reconciliation_mismatch", "written_off": "written_off",
              "unapplied_credit": "unapplied_credit", "billing_dunning": "billing_dunning", "question": "question"}
# Outbox statuses: a touch that reached its recipient (dry-run: rendered and recorded), one still on
# its way, and one that did not go and must not be followed by a firmer step.
DELIVERED = ("sent", "planned")
PENDING = ("awaiting_decision", "queued", "sending", "delivery_unknown")
NOT_DELIVERED = PENDING + ("failed", "blocked")
TOUCH_COLUMNS = ["idempotency_key", "invoice_id", "customer_id", "step", "channel", "status", "as_of", "delivered_on"]
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
         done_keys: set[str] | None = None, touches: pd.DataFrame | None = None,
         installments: pd.DataFrame | None = None) -> Plan:
    """`touches`: the outbox as it stands (TOUCH_COLUMNS); `done_keys` alone is enough for tests
    that only care which keys exist. `installments`: open payment plans' schedule (see
    `Ledger.plan_schedule`)."""
    today = pd.Timestamp(as_of)
    if touches is None:
        touches = pd.DataFrame({"idempotency_key": sorted(done_keys or ())}).reindex(columns=TOUCH_COLUMNS)
    done_keys = set(touches["idempotency_key"])
    work = df.copy()
    work["reconciliation_mismatch"] = work["customer_id"].isin(mismatched_customers)
    outcome = pd.Series("", index=work.index, dtype=object)
    reason = pd.Series("", index=work.index, dtype=object)

    nothing_owed = work["effective_balance_minor"] <= 0
    outcome[nothing_owed] = "no_action_due"
    reason[nothing_owed] = "nothing_owed"

    # A missed installment lifts the plan's hold: the invoice is back in its lane and a person
    # decides again (re-escalation below).
    missed = _missed_plans(work, installments, as_of, policy)
    work.loc[work.index.isin(missed.index), "payment_plan"] = False
    work["_hold_plan"] = work["payment_plan"].fillna(False).astype(bool)

    for name in policy.hold_order:
        if HOLD_FLAGS[name] not in work:  # a frame from before the flag existed (credits: tasks/credits.py)
            continue
        if name == "billing_dunning" and policy.connectors.chargebee.email_while_dunning:
            # The policy lets arflow e-mail beside the billing system's own dunning, never charge
            # beside its retries: no autopay step for these invoices.
            work.loc[work["billing_dunning"].fillna(False).astype(bool), "autopay"] = False
            continue
        flag = work[HOLD_FLAGS[name]].fillna(False).astype(bool) & (outcome == "")
        outcome[flag] = "held"
        reason[flag] = name

    minimum = work["currency"].map(policy.minimum_minor()).fillna(0).astype("int64")  # int also when no rows
    too_small = (outcome == "") & (work["effective_balance_minor"] < minimum)
    outcome[too_small] = "no_action_due"
    reason[too_small] = "below_minimum"

    open_rows = outcome == ""
    business = bd.is_business_day(as_of, work["country"], policy.company_country)
    closed_today = open_rows & ~business
    outcome[closed_today] = "no_action_due"
    reason[closed_today] = "not_a_business_day"

    # A refused auto-charge: the processor's retries come before any reminder.
    retrying = open_rows & work.get("payment_failed", pd.Series(False, index=work.index)).fillna(False).astype(bool) \
        & (work.get("charge_retry_next", pd.Series(0, index=work.index)).fillna(0) > 0)
    retry_actions, retry_dates = _charge_retries(work[retrying & business], as_of, policy)
    outcome[retrying & business] = "no_action_due"
    reason[retrying & business] = "charge_retry_pending"
    open_rows = open_rows & ~retrying

    # Most advanced due step per invoice; several steps on the same day all run (e.g. email + Slack).
    # Positional numpy masks: a policy has a score of steps, and pandas' per-operation cost on
    # each of them would outweigh the work on a portfolio's frame.
    candidates = open_rows & business
    lanes = work["lane"].to_numpy(dtype=object)
    segments = work["segment"].fillna("").to_numpy(dtype=object)
    autopay = work["autopay"].fillna(False).astype(bool).to_numpy()
    open_now = candidates.to_numpy(dtype=bool)
    best = np.full(len(work), np.nan)
    upcoming = np.full(len(work), np.datetime64("NaT"), dtype="datetime64[s]")
    chosen: list[tuple[Step, np.ndarray]] = []
    for step in policy.steps:
        applies = open_now & (lanes == step.lane) & np.isin(segments, list(step.segments))
        if step.autopay_only:
            applies &= autopay
        if not applies.any():
            continue
        at = np.flatnonzero(applies)
        when = contact_dates(work.iloc[at], step, policy).to_numpy(dtype="datetime64[s]")
        is_due = when <= today.to_datetime64().astype("datetime64[s]")
        later, now = at[~is_due], at[is_due]
        current = upcoming[later]
        upcoming[later] = np.where(~np.isnat(current) & (current <= when[~is_due]), current, when[~is_due])
        if len(now):
            chosen.append((step, now))
            best[now] = np.fmax(best[now], step.sort_day)
    best_day = pd.Series(best, index=work.index)
    next_date = pd.Series(upcoming, index=work.index, dtype="datetime64[s]")
    next_date.loc[retry_dates.index] = retry_dates.to_numpy()

    rows = []
    for step, at in chosen:
        idx = work.index[at[best[at] == step.sort_day]]
        if len(idx):
            rows.append(_actions_for(work.loc[idx], step, policy))
    extra = _plan_touches(work, installments, missed, as_of, policy, business)
    extra.append(_credit_decisions(work, reason, business, policy))
    extra.append(retry_actions)
    rows.extend(x for x in extra if not x.empty)
    actions = pd.concat(rows) if rows else _empty_actions()
    actions = _broken_promises(actions, work, open_rows & business, done_keys, policy)
    # A touch already in the outbox (an earlier run, or a re-run of today) is not planned again.
    actions = actions[~actions["idempotency_key"].isin(done_keys)]
    actions, reminding = _remind_first(actions, work, touches, as_of, policy)
    actions = actions[~actions["idempotency_key"].isin(done_keys)]
    actions = _step_down(actions, work, done_keys, policy)
    actions, waiting = _delivery_gates(actions, work, touches, as_of, policy)
    actions, unfit = _pre_due_fits(actions, work, as_of, policy)
    waiting = pd.concat([waiting, unfit[~unfit.index.isin(waiting.index)]])
    actions = _one_lane_per_message(actions)
    acting = actions["row"].unique()
    outcome[acting] = "action_today"
    reason[acting] = None
    rest = outcome == ""
    outcome[rest] = "no_action_due"
    reason[rest] = np.where(best_day[rest].isna(), "next_step_not_due", "step_done")
    waiting = pd.concat([waiting, reminding[~reminding.index.isin(waiting.index)]])
    waiting = waiting[~waiting.index.isin(acting)]
    waiting = waiting[(outcome[waiting.index] == "no_action_due").to_numpy()]  # a held invoice keeps its hold reason
    reason[waiting.index] = waiting
    outcomes = pd.DataFrame({"outcome": outcome, "reason": reason.replace("", None),
                             "next_contact": next_date}, index=work.index)
    return Plan(outcomes=outcomes, actions=actions.reset_index(drop=True))


def _charge_retries(rows: pd.DataFrame, as_of: dt.date, policy: Policy) -> tuple[pd.DataFrame, pd.Series]:
    """The retry due today of each refused auto-charge (auto_charge_retry_<n>, billing, its own
    idempotency key so each attempt is made once), and the date of the next retry per row."""
    days = policy.auto_charge_retries.days_after_failure
    if rows.empty or not days:
        return _empty_actions(), pd.Series(dtype="datetime64[s]")
    n = rows["charge_retry_next"].astype("int64")
    when = pd.to_datetime(rows["charge_failed_on"]) + pd.to_timedelta(n.map(lambda k: days[k - 1]), unit="D")
    due = when <= pd.Timestamp(as_of)
    out = []
    for k in sorted(set(n[due])):
        sub = rows[due & (n == k)]
        step = Step(name=f"auto_charge_retry_{k}", lane="current", day=0, channel="billing", tone="friendly",
                    recipients=())
        a = _actions_for(sub, step, policy)
        a["lane"] = sub["lane"].to_numpy()
        a["step_day"] = sub["days_past_due"].clip(lower=0).astype("int64").to_numpy()
        out.append(a)
    return (pd.concat(out, ignore_index=True) if out else _empty_actions()), when.astype("datetime64[s]")


PROMISE_BROKEN = "promise_broken"


def _broken_promises(actions: pd.DataFrame, work: pd.DataFrame, open_now: pd.Series, done_keys: set[str],
                     policy: Policy) -> pd.DataFrame:
    """The business day after a promise to pay passed unkept, the customer is told so (a
    promise_broken e-mail, once per promise) before the cadence goes on: that invoice's cadence
    e-mail of the day waits (it stays due and follows the policy's gap)."""
    if "broken_promise_id" not in work:
        return actions
    broken = work[open_now & work["broken_promise_id"].notna() & (work["days_past_due"] > 0)]
    if broken.empty:
        return actions
    keys = broken["invoice_id"].astype(str) + ":" + PROMISE_BROKEN + "_" + broken["broken_promise_id"].astype(str) + ":email"
    broken = broken[~keys.isin(done_keys)]
    if broken.empty:
        return actions
    step = Step(name=PROMISE_BROKEN, lane="current", day=0, channel="email", tone="friendly")
    a = _actions_for(broken, step, policy)
    a["lane"] = broken["lane"].to_numpy()
    a["idempotency_key"] = keys[broken.index].to_numpy()
    # Its place in the invoice's cadence: where the invoice had got to (the e-mail steps done).
    sort_day = {s.name: s.sort_day for s in policy.steps if s.channel == "email"}
    reached: dict[str, int] = {}
    for k in done_keys:
        inv, _, rest = str(k).partition(":")
        name = rest.removesuffix(":email")
        if name in sort_day:
            reached[inv] = max(reached.get(inv, -99), sort_day[name])
    a["step_day"] = [reached.get(i, 0) for i in a["invoice_id"]]
    mail_of_it = (actions["channel"] == "email") & actions["invoice_id"].isin(set(a["invoice_id"]))
    return pd.concat([actions[~mail_of_it], a], ignore_index=True)


def _previous_email_steps(actions: pd.DataFrame, work: pd.DataFrame, policy: Policy) -> list[str | None]:
    """Per action (positionally): the name of the e-mail step before it in the cadence of its
    invoice's segment; None for other channels, the first e-mail step, and steps outside the
    policy's cadence (installment reminders, ...)."""
    prev_name = {(s.name, seg): p.name for s in policy.steps for seg in SEGMENTS
                 for p in [policy.previous_email_step(s, seg)] if p is not None}
    segment = work.loc[actions["row"], "segment"].to_numpy()
    return [prev_name.get((name, seg)) if channel == "email" else None
            for name, seg, channel in zip(actions["step"], segment, actions["channel"])]


def _step_down(actions: pd.DataFrame, work: pd.DataFrame, done_keys: set[str], policy: Policy) -> pd.DataFrame:
    """A firm or escalating e-mail step never comes first: where the e-mail step before it in the
    cadence was never sent to this invoice (first sight of an old invoice, a hold just lifted), that
    earlier step goes instead, and the firmer one follows once it was delivered."""
    actions = actions.reset_index(drop=True)
    if not (actions["channel"] == "email").any():
        return actions
    steps = {s.name: s for s in policy.steps}
    prev = _previous_email_steps(actions, work, policy)
    swap: dict[str, list[int]] = {}
    for i, (inv, name, p) in enumerate(zip(actions["invoice_id"], actions["step"], prev)):
        if p is not None and TONE_ORDER[steps[name].tone] > 0 and f"{inv}:{p}:email" not in done_keys:
            swap.setdefault(p, []).append(i)
    if not swap:
        return actions
    out = [actions.drop(index=[i for idx in swap.values() for i in idx])]
    for name, idx in swap.items():
        earlier = _actions_for(work.loc[actions.loc[idx, "row"]], steps[name], policy)
        earlier["lane"] = actions.loc[idx, "lane"].to_numpy()  # handled in the invoice's own lane
        out.append(earlier)
    return pd.concat(out, ignore_index=True)


HARD_DECISIONS = ("service_pause", "payment_plan_or_write_off")


def _remind_first(actions: pd.DataFrame, work: pd.DataFrame, touches: pd.DataFrame, as_of: dt.date,
                  policy: Policy) -> tuple[pd.DataFrame, pd.Series]:
    """A customer is told before anything harder: where a pause, plan or write-off decision is due
    for an invoice that never had a customer e-mail, the e-mail the cadence allows first goes today
    instead (the decision's context will say it went), and the decision waits until it was
    delivered and the policy's gap between e-mails has passed (a re-run of the day plans nothing
    new; the customer has a few days to answer). Returns (actions, reason per invoice row whose
    decision waits)."""
    actions = actions.reset_index(drop=True)
    hard = actions["step"].isin(HARD_DECISIONS) & (actions["channel"] == "decision")
    if not hard.any():
        return actions, pd.Series(dtype=object)
    keys = touches["idempotency_key"].astype(str) if not touches.empty else pd.Series(dtype=str)
    mail = touches[keys.str.endswith(":email")] if not touches.empty else touches
    inv_of = mail["invoice_id"].where(mail["invoice_id"].notna(), keys[mail.index].str.split(":").str[0]) \
        if not mail.empty else pd.Series(dtype=object)
    ever = set(inv_of)
    # Delivered (or, for a planner told only which keys exist, recorded: tests' done_keys).
    went = mail["status"].isin(DELIVERED) | mail["status"].isna() if not mail.empty else mail
    delivered = set(inv_of[went]) if not mail.empty else set()
    recent = set()
    if not mail.empty and "as_of" in mail:
        when = pd.to_datetime(mail["delivered_on"].where(mail["delivered_on"].notna(), mail["as_of"]))
        window = max(policy.delivery.min_gap_days, 1)
        recent = set(inv_of[went & (when > pd.Timestamp(as_of) - pd.Timedelta(days=window))])
    emailed_today = set(actions.loc[actions["channel"] == "email", "invoice_id"])
    steps = {s.name: s for s in policy.steps}
    drop, why = [], {}
    first: dict[str, list] = {}  # the e-mail step that goes first -> [(order, row, lane)]
    invoices, rows, names, lanes = (actions[c].to_numpy() for c in ("invoice_id", "row", "step", "lane"))
    segment = work["segment"]
    for n, i in enumerate(np.flatnonzero(hard.to_numpy())):
        inv, row = invoices[i], rows[i]
        if inv in delivered and inv not in recent:
            continue
        drop.append(i)
        why[row] = "min_gap" if inv in recent else \
            "previous_step_not_delivered" if inv in ever else "reminder_first"
        if inv in ever or inv in emailed_today:
            continue  # a reminder is on its way (or goes today): the decision follows once it was delivered
        seg = segment.at[row]
        last = [s for s in policy.steps if s.channel == "email" and seg in s.segments and not s.approval
                and s.sort_day <= steps[names[i]].sort_day and s.business_days_before_due is None]
        if not last:
            continue
        # The last e-mail the cadence has by then; _step_down makes it the one that may go first.
        first.setdefault(max(last, key=lambda s: s.sort_day).name, []).append((n, row, lanes[i]))
        emailed_today.add(inv)
    add = []
    for name, picked in first.items():  # one frame per step (a frame per invoice was most of the hop's time)
        order, picked_rows, picked_lanes = zip(*picked)
        e = _actions_for(work.loc[list(picked_rows)], steps[name], policy)
        add.append(e.assign(lane=list(picked_lanes), _order=list(order)))
    if add:  # in the order of the decisions they go first for, as one at a time gave them
        add = [pd.concat(add, ignore_index=True).sort_values("_order", kind="stable").drop(columns="_order")]
    kept = actions.drop(index=drop)
    out = pd.concat([kept] + add, ignore_index=True) if add else kept.reset_index(drop=True)
    return out, pd.Series(why, dtype=object)


def _credit_decisions(work: pd.DataFrame, reason: pd.Series, business: pd.Series, policy: Policy) -> pd.DataFrame:
    """Credit a customer holds that could cover invoices held for it: one decision per customer
    and currency (on its oldest such invoice), offering a person to apply it in the books."""
    held = work[(reason == "unapplied_credit") & business]
    if held.empty:
        return _empty_actions()
    lead = held.sort_values(["due_date", "invoice_id"]).drop_duplicates(["customer_id", "currency"])
    step = Step(name="apply_credit", lane="current", day=0, channel="decision", tone="friendly",
                recipients=("finance",), approval=True)
    a = _actions_for(lead, step, policy)
    a["lane"] = lead["lane"].to_numpy()
    notes = lead["credit_notes"].astype(str).str.replace(r"[^A-Za-z0-9,_\-]", "", regex=True).to_numpy()
    a["idempotency_key"] = a["invoice_id"].astype(str) + ":apply_credit_" + notes + ":decision"
    return a


def _delivery_gates(actions: pd.DataFrame, work: pd.DataFrame, touches: pd.DataFrame, as_of: dt.date,
                    policy: Policy) -> tuple[pd.DataFrame, pd.Series]:
    """Drop customer e-mails whose previous e-mail step is not delivered, and e-mails to a customer
    who had one fewer than min_gap_days ago. Returns (actions kept, reason per invoice row held back)."""
    actions = actions.reset_index(drop=True)
    email = actions["channel"] == "email"
    if not email.any():
        return actions, pd.Series(dtype=object)
    status = dict(zip(touches["idempotency_key"], touches["status"]))
    prev = _previous_email_steps(actions, work, policy)
    blocked_prev = pd.Series([p is not None and status.get(f"{inv}:{p}:email") in NOT_DELIVERED
                              for inv, p in zip(actions["invoice_id"], prev)], index=actions.index)
    gap = pd.Series(False, index=actions.index)
    if not touches.empty:
        mail = touches[(touches["channel"] == "email") & touches["status"].isin(DELIVERED + PENDING)]
        if not mail.empty:
            when = pd.to_datetime(mail["delivered_on"].where(mail["delivered_on"].notna(), mail["as_of"]))
            last = when.groupby(mail["customer_id"]).max()
            today = pd.Timestamp(as_of)
            # Today's e-mail counts too: a re-run of the day never sends a customer a second message.
            window = max(policy.delivery.min_gap_days, 1)
            recent = last[(last <= today) & (last > today - pd.Timedelta(days=window))]
            gap = email & actions["customer_id"].isin(set(recent.index))
    drop = (email & blocked_prev) | gap
    why = pd.Series(np.where(blocked_prev[drop], "previous_step_not_delivered", "min_gap"),
                    index=actions.loc[drop, "row"].to_numpy(), dtype=object)
    return actions[~drop], why[~why.index.duplicated()]


def _pre_due_fits(actions: pd.DataFrame, work: pd.DataFrame, as_of: dt.date,
                  policy: Policy) -> tuple[pd.DataFrame, pd.Series]:
    """A pre-due reminder only says what is true: none after the due date (on it, the message says
    "due today": tasks.touches), and none to lead a message to a customer who is already overdue
    ("coming due" to an account owed for months); it still goes beside an overdue reminder of the
    same day, listed as not yet due."""
    pre = {s.name for s in policy.steps if s.business_days_before_due is not None}
    actions = actions.reset_index(drop=True)
    is_pre = actions["step"].isin(pre) & (actions["channel"] == "email")
    if not is_pre.any():
        return actions, pd.Series(dtype=object)
    due = work.loc[actions["row"], "due_date"].to_numpy()
    late = is_pre & (pd.Series(due) < pd.Timestamp(as_of)).to_numpy()
    owed = (work["days_past_due"] > 0) & (work["effective_balance_minor"] > 0)
    if "written_off" in work:
        owed &= ~work["written_off"].fillna(False).astype(bool)
    overdue = set(work.loc[owed, "customer_id"])
    other_mail = set(actions.loc[(actions["channel"] == "email") & ~is_pre, "customer_id"])
    leads = is_pre & actions["customer_id"].isin(overdue - other_mail)
    drop = late | leads
    why = pd.Series(np.where(late[drop], "due_date_reached", "account_overdue"),
                    index=actions.loc[drop, "row"].to_numpy(), dtype=object)
    return actions[~drop], why[~why.index.duplicated()]


def _one_lane_per_message(actions: pd.DataFrame) -> pd.DataFrame:
    """A customer's e-mails of the day become one message (tasks.touches); it is handled by the lane
    of its most advanced step, so all its touches move to that lane."""
    email = actions["channel"] == "email"
    if email.sum() < 2:
        return actions
    mail = actions[email]
    lead = mail.sort_values("step_day", kind="stable").groupby("customer_id")["lane"].last()
    actions = actions.copy()
    actions.loc[email, "lane"] = mail["customer_id"].map(lead).to_numpy()
    return actions


def _missed_plans(work: pd.DataFrame, schedule: pd.DataFrame | None, as_of: dt.date, policy: Policy) -> pd.Series:
    """plan_id per invoice row whose plan missed an installment: the grace after an installment's
    due date has passed and less than the installments due so far has been paid."""
    if schedule is None or schedule.empty:
        return pd.Series(dtype="int64")
    s = schedule.merge(work[["invoice_id", "country", "effective_balance_minor"]].reset_index(), on="invoice_id")
    if s.empty:
        return pd.Series(dtype="int64")
    rolled = bd.roll_forward(s["due_on"], s["country"], policy.company_country)
    late_from = bd.add_business_days(rolled, policy.grace_business_days, s["country"], policy.company_country)
    paid = s["balance_at_start_minor"].fillna(s["effective_balance_minor"]) - s["effective_balance_minor"]
    short = (late_from < pd.Timestamp(as_of)) & (paid < s["cumulative_minor"])
    missed = s[short].drop_duplicates("index")
    return pd.Series(missed["plan_id"].to_numpy(), index=missed["index"].to_numpy())


def _plan_touches(work, schedule, missed: pd.Series, as_of: dt.date, policy: Policy, business: pd.Series):
    """Touches of payment plans: a friendly reminder before each installment; a decision when an
    installment was missed."""
    out = []
    if schedule is not None and not schedule.empty:
        held = work[work["_hold_plan"] & (work["effective_balance_minor"] > 0) & business]
        s = schedule.merge(held[["invoice_id", "country"]].reset_index(), on="invoice_id")
        if not s.empty:
            remind_on = bd.add_business_days(s["due_on"], -policy.payment_plans.reminder_business_days_before,
                                             s["country"], policy.company_country)
            due_now = s[(remind_on <= pd.Timestamp(as_of)) & (s["due_on"] >= pd.Timestamp(as_of))]
            due_now = due_now.sort_values("seq").drop_duplicates("index")
            if not due_now.empty:
                step = Step(name="installment_reminder", lane="current", day=0, channel="email", tone="friendly")
                a = _actions_for(work.loc[due_now["index"]], step, policy)
                a["lane"] = work.loc[due_now["index"], "lane"].to_numpy()
                a["tone"] = "friendly"
                a["idempotency_key"] = (a["invoice_id"].astype(str) + ":installment_" + due_now["seq"].astype(str).to_numpy()
                                        + "_reminder:email")
                out.append(a)
    if len(missed):
        rows = work.loc[missed.index]
        rows = rows[business.loc[missed.index]]
        if not rows.empty:
            step = Step(name="payment_plan_missed", lane="critical", day=60, channel="decision", tone="escalating",
                        recipients=("finance",), approval=True)
            a = _actions_for(rows, step, policy)
            a["lane"] = rows["lane"].to_numpy()
            a["idempotency_key"] = (a["invoice_id"].astype(str) + ":payment_plan_missed_"
                                    + missed.loc[rows.index].astype(str).to_numpy() + ":decision")
            out.append(a)
    return out


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
        "recipients": [",".join(_recipients(step, r, policy)) for r in sub[_contacts(sub)].itertuples()],
        "step_day": step.sort_day,
    })
    a["idempotency_key"] = a["invoice_id"].astype(str) + ":" + step.name + ":" + step.channel
    return a


def _contacts(sub: pd.DataFrame) -> list[str]:
    """The columns _recipients reads (a narrow frame iterates much faster than an enriched one)."""
    return [c for c in ("billing_contact_email", "owner_ae_email", "owner_csm_email", "cfo_email") if c in sub]


def _recipients(step: Step, r, policy: Policy) -> list[str]:
    out = []
    for role in step.recipients:
        if role == "billing_contact":
            out.append(str(r.billing_contact_email))
        elif role == "owner":
            owner = r.owner_ae_email if isinstance(r.owner_ae_email, str) else r.owner_csm_email
            out.append(str(owner) if isinstance(owner, str) else "finance")
        elif role == "csm":
            out.append(str(r.owner_csm_email) if isinstance(r.owner_csm_email, str) else "finance")
        elif role == "cfo":
            # Only a designated CFO address (the customer file's cfo_email); none, no copy.
            cfo = getattr(r, "cfo_email", None)
            if isinstance(cfo, str) and cfo:
                out.append(cfo)
        elif role == "finance":
            out.append(policy.delivery.finance_team)
        else:
            out.append(role)
    return out


def _empty_actions() -> pd.DataFrame:
    return pd.DataFrame(columns=["row", "invoice_id", "customer_id", "lane", "step", "channel", "tone",
                                 "needs_approval", "recipients", "step_day", "idempotency_key"])
