"""KPIs and the cash forecast, from the ledger, for any as_of (docs/kpis.md: every formula).

Pure functions on DataFrames; `connectors/ledger/store.py` reads the frames (`Ledger.kpi_frames`).
Money stays integer minor units per currency: every amount KPI is computed per currency and no
two currencies are ever added. Ratios (DSO, rates) are floats; amounts never are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from arflow.money import format_minor
from arflow.policy import Kpis, LaneBounds
from tasks.extract import BUCKETS
from tasks.plan import DELIVERED

PERIOD_DAYS = 30  # one "month" of the countback method and of the worked examples
TIERS = ("current", "early", "late", "critical")


# ---- the formulas, on plain numbers ------------------------------------------------------------

def dso_standard(ar_minor: int, credit_sales_minor: int, days: int) -> float | None:
    """Receivables over the credit sales of the last `days` days, times `days`."""
    if credit_sales_minor <= 0:
        return None
    return round(ar_minor / credit_sales_minor * days, 1)


def dso_countback(ar_minor: int, sales_newest_first: list[int], days_per_period: int = PERIOD_DAYS) -> float | None:
    """Countback: walk back through the periods' credit sales, newest first, taking a whole period
    for each period whose sales the receivables still cover and the covered share of the last one.
    AR 212,000 against 100,000, 80,000 and 70,000 gives 30 + 30 + 32/70 x 30 = 73.7 days.
    None when the receivables outlast every period given (DSO beyond the look-back)."""
    remaining, days = ar_minor, 0.0
    if remaining <= 0:
        return 0.0
    for sales in sales_newest_first:
        if sales <= 0:
            days += days_per_period
            continue
        if remaining <= sales:
            return round(days + remaining / sales * days_per_period, 1)
        remaining -= sales
        days += days_per_period
    return None


def cei(beginning_ar: int, credit_sales: int, ending_ar: int, ending_current_ar: int) -> float | None:
    """Collection effectiveness index, the common variant:
    (beginning AR + credit sales - ending AR) / (beginning AR + credit sales - ending current AR) x 100."""
    collectible = beginning_ar + credit_sales - ending_current_ar
    if collectible <= 0:
        return None
    return round((beginning_ar + credit_sales - ending_ar) / collectible * 100, 1)


def tier_of(days_late: pd.Series, lanes: LaneBounds) -> pd.Series:
    d = days_late.to_numpy()
    return pd.Series(np.select([d < lanes.early_from, d < lanes.late_from, d < lanes.critical_from],
                               list(TIERS[:3]), TIERS[3]), index=days_late.index)


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _money(minor: int, currency: str) -> dict:
    return {"minor": int(minor), "amount": format_minor(int(minor), currency)}


# ---- the inputs, as the ledger holds them ---------------------------------------------------

@dataclass
class Frames:
    """What the KPIs read, each as of the report's day (the store filters by date)."""
    as_of: dt.date
    run_id: str | None                  # the daily run whose open invoices are "today's AR"
    run_as_of: dt.date | None
    run_mode: str | None
    open_invoices: pd.DataFrame         # invoice_outcomes of that run
    register: pd.DataFrame              # invoice_register
    history: pd.DataFrame               # payment_history, paid on or before as_of
    write_offs: pd.DataFrame
    outbox: pd.DataFrame                # the run's namespace, as_of on or before the day
    owner_tasks: pd.DataFrame
    decisions: pd.DataFrame
    payments: pd.DataFrame              # payments_received
    applications: pd.DataFrame          # payment_applications
    disputes: pd.DataFrame
    promises: pd.DataFrame
    opt_outs: pd.DataFrame
    installments: pd.DataFrame          # of active plans
    beginning_ar: dict[str, int] = field(default_factory=dict)  # per currency, window_days before (a run's)
    notes: list[str] = field(default_factory=list)
    replies: pd.DataFrame = field(default_factory=pd.DataFrame)  # triaged inbound replies (tasks.triage)


def _d(series: pd.Series) -> pd.Series:
    """Dates as datetime64 (a column of None included), to compare with _t(day)."""
    return pd.to_datetime(series).astype("datetime64[s]")


def _t(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day)


def _in_window(dates: pd.Series, as_of: dt.date, days: int) -> pd.Series:
    d = _d(dates)
    start = as_of - dt.timedelta(days=days)
    return (d > _t(start)) & (d <= _t(as_of))


def open_ar(f: Frames) -> pd.DataFrame:
    """Today's receivables: the run's open invoices with a balance left to pay (quarantined rows
    have none and are counted under skipped records; one the ledger's payments settled is not open)."""
    o = f.open_invoices
    if o.empty:
        return o.assign(balance_minor=pd.Series(dtype="int64"))
    o = o[o["balance_minor"].notna() & o["currency"].notna()]
    o = o[o["balance_minor"].astype("int64") > 0].copy()  # nothing left to pay: not open
    o["balance_minor"] = o["balance_minor"].astype("int64")
    o["days_past_due"] = o["days_past_due"].astype("int64")
    return o


def credit_sales(register: pd.DataFrame, currency: str, as_of: dt.date, days_back_from: int, days_back_to: int) -> int:
    """Invoiced amount with an issue date in (as_of - days_back_to, as_of - days_back_from]."""
    if register.empty:
        return 0
    r = register[register["currency"] == currency]
    end = as_of - dt.timedelta(days=days_back_from)
    return int(r.loc[_in_window(r["issue_date"], end, days_back_to - days_back_from), "amount_minor"].sum())


def reconstructed_ar(f: Frames, currency: str, on: dt.date) -> int:
    """Receivables on an earlier day rebuilt from the register and the payment history (invoices
    issued by then, not yet paid or written off then), where no run of that day exists."""
    r = f.register[(f.register["currency"] == currency)]
    r = r[_d(r["issue_date"]) <= _t(on)]
    paid = f.history[_d(f.history["paid_date"]) <= _t(on)]["invoice_id"] if not f.history.empty else []
    wo = f.write_offs[_d(f.write_offs["approved_on"]) <= _t(on)]["invoice_id"] if not f.write_offs.empty else []
    return int(r.loc[~r["invoice_id"].isin(set(paid) | set(wo)), "amount_minor"].sum())


# ---- the KPIs ---------------------------------------------------------------------------------

def with_days(history: pd.DataFrame) -> pd.DataFrame:
    """days_to_pay (issue to payment) and days_after_due (due to payment) from the dates where a
    row does not carry them (seeded or imported history)."""
    if history.empty:
        return history
    paid = _d(history["paid_date"])
    h = history.copy()
    h["days_to_pay"] = pd.to_numeric(h["days_to_pay"]).fillna((paid - _d(h["issue_date"])).dt.days)
    h["days_after_due"] = pd.to_numeric(h["days_after_due"]).fillna((paid - _d(h["due_date"])).dt.days)
    return h


def compute(f: Frames, cfg: Kpis, lanes: LaneBounds, high_value_minor: int) -> dict:
    f = replace(f, history=with_days(f.history))
    ar = open_ar(f)
    currencies = sorted(set(ar["currency"]) | set(f.register["currency"] if not f.register.empty else []))
    per_currency = {cur: _currency_kpis(f, ar[ar["currency"] == cur], cur, cfg, lanes, high_value_minor)
                    for cur in currencies}
    return {
        "as_of": f.as_of.isoformat(),
        "run_id": f.run_id,
        "run_as_of": f.run_as_of.isoformat() if f.run_as_of else None,
        "window_days": cfg.window_days,
        "currencies": per_currency,
        "operating": operating(f, ar, cfg, lanes),
        "forecast": forecast(f, ar, cfg),
        "notes": f.notes,
    }


def _currency_kpis(f: Frames, ar: pd.DataFrame, cur: str, cfg: Kpis, lanes: LaneBounds, high_value: int) -> dict:
    total = int(ar["balance_minor"].sum())
    current = int(ar.loc[ar["days_past_due"] <= 0, "balance_minor"].sum())
    overdue = ar[ar["days_past_due"] > 0]
    sales_n = credit_sales(f.register, cur, f.as_of, 0, cfg.dso_days)
    periods = [credit_sales(f.register, cur, f.as_of, k * PERIOD_DAYS, (k + 1) * PERIOD_DAYS)
               for k in range(cfg.countback_periods)]
    dso = dso_standard(total, sales_n, cfg.dso_days)
    best = dso_standard(current, sales_n, cfg.dso_days)
    begin_source = "run" if cur in f.beginning_ar else "reconstructed"
    begin = f.beginning_ar.get(cur)
    if begin is None:
        begin = reconstructed_ar(f, cur, f.as_of - dt.timedelta(days=cfg.window_days))
    sales_w = credit_sales(f.register, cur, f.as_of, 0, cfg.window_days)
    aging = {b: {"count": int((ar["bucket"] == b).sum()), **_money(ar.loc[ar["bucket"] == b, "balance_minor"].sum(), cur)}
             for b in BUCKETS}
    year_sales = credit_sales(f.register, cur, f.as_of, 0, 365)
    wo = f.write_offs
    wo_year = wo[(wo["currency"] == cur) & _in_window(wo["approved_on"], f.as_of, 365)] if not wo.empty else wo
    written_off = int(wo_year["amount_minor"].sum()) if not wo_year.empty else 0
    top = ar[ar["balance_minor"] >= high_value].sort_values("balance_minor", ascending=False)
    return {
        "ar": _money(total, cur),
        "current_ar": _money(current, cur),
        "overdue": {"count": int(len(overdue)), **_money(overdue["balance_minor"].sum(), cur)},
        "credit_sales_dso_days": _money(sales_n, cur),
        "dso_standard": dso,
        "dso_countback": dso_countback(total, periods),
        "best_possible_dso": best,
        "average_days_delinquent": round(dso - best, 1) if dso is not None and best is not None else None,
        "cei": cei(begin, sales_w, total, current),
        "cei_beginning_ar": {**_money(begin, cur), "source": begin_source},
        "aging": aging,
        "recovery_rate_by_tier": recovery_by_tier(f, cur, lanes),
        "days_to_pay_by_tier": days_to_pay_by_tier(f, cur, lanes),
        "bad_debt_rate": _rate(written_off, year_sales),
        "written_off_365d": _money(written_off, cur),
        "credit_sales_365d": _money(year_sales, cur),
        "recovered_value": _money(_recovered(f, cur, cfg.window_days), cur),
        "high_value_balances": {
            "threshold": _money(high_value, cur), "count": int(len(top)), **_money(top["balance_minor"].sum(), cur),
            "largest": [{"invoice_id": r.invoice_id, "customer_id": r.customer_id,
                         "amount": format_minor(int(r.balance_minor), cur), "days_past_due": int(r.days_past_due)}
                        for r in top.head(10).itertuples()]},
    }


def recovery_by_tier(f: Frames, cur: str, lanes: LaneBounds) -> dict:
    """Of the invoices due in the last 365 days that reached a tier (their days late at payment,
    at write-off or today reached its first day), the share of their amount recovered (paid; an
    open invoice counts what was paid of it). Recent invoices weigh on the early tiers before they
    had time to pay: read the rate next to the count."""
    reg = f.register[(f.register["currency"] == cur) & f.register["due_date"].notna()]
    if reg.empty:
        return {t: {"invoices": 0, "rate": None} for t in TIERS}
    reg = reg[_in_window(reg["due_date"], f.as_of, 365)].copy()
    due = pd.to_datetime(reg["due_date"])
    paid = f.history.drop_duplicates("invoice_id", keep="last").set_index("invoice_id")["paid_date"] \
        if not f.history.empty else pd.Series(dtype=object)
    wo = f.write_offs.set_index("invoice_id")["approved_on"] if not f.write_offs.empty else pd.Series(dtype=object)
    open_bal = dict(zip(f.open_invoices["invoice_id"], f.open_invoices["balance_minor"])) if not f.open_invoices.empty else {}
    end = pd.to_datetime(reg["invoice_id"].map(paid)).fillna(pd.to_datetime(reg["invoice_id"].map(wo)))
    end = end.fillna(pd.Timestamp(f.as_of))
    late = (end - due).dt.days.astype("int64")
    outstanding = reg["invoice_id"].map(open_bal).fillna(0).astype("int64")
    written = reg["invoice_id"].isin(wo.index)
    recovered = np.where(written, 0, np.where(reg["invoice_id"].isin(paid.index), reg["amount_minor"],
                                              (reg["amount_minor"] - outstanding).clip(lower=0)))
    reg = reg.assign(late=late.to_numpy(), recovered=recovered)
    starts = {"current": -10**9, "early": lanes.early_from, "late": lanes.late_from, "critical": lanes.critical_from}
    out = {}
    for t in TIERS:
        r = reg[reg["late"] >= starts[t]]
        amount = int(r["amount_minor"].sum())
        out[t] = {"invoices": int(len(r)), "amount": format_minor(amount, cur),
                  "recovered": format_minor(int(r["recovered"].sum()), cur),
                  "rate": _rate(int(r["recovered"].sum()), amount)}
    return out


def days_to_pay_by_tier(f: Frames, cur: str, lanes: LaneBounds) -> dict:
    """Invoices paid in the last 365 days, by the tier they were paid in (days late at payment):
    mean days from issue to payment and mean days after the due date."""
    h = f.history
    if h.empty:
        return {t: {"paid": 0, "days_to_pay": None, "days_after_due": None} for t in TIERS}
    h = h[(h["currency"] == cur) & _in_window(h["paid_date"], f.as_of, 365) & h["days_after_due"].notna()]
    tiers = tier_of(h["days_after_due"].astype("int64"), lanes) if not h.empty else pd.Series(dtype=str)
    out = {}
    for t in TIERS:
        r = h[tiers == t] if not h.empty else h
        out[t] = {"paid": int(len(r)),
                  "days_to_pay": round(float(r["days_to_pay"].mean()), 1) if len(r) else None,
                  "days_after_due": round(float(r["days_after_due"].mean()), 1) if len(r) else None}
    return out


def _recovered(f: Frames, cur: str, days: int) -> int:
    """Cash applied in the last `days` days and not reversed since."""
    a = f.applications
    if a.empty:
        return 0
    a = a[(a["currency"] == cur) & _in_window(a["applied_on"], f.as_of, days)]
    a = a[a["reversed_on"].isna() | (_d(a["reversed_on"]) > _t(f.as_of))] if not a.empty else a
    return int(a["amount_minor"].sum()) if not a.empty else 0


def _delivered(outbox: pd.DataFrame) -> pd.DataFrame:
    """Touches that went out (the plan's DELIVERED: `sent` in live runs, `planned` in dry-run, whose
    namespace holds nothing else), on the day they went (dry-run rows have no delivered_on)."""
    if outbox.empty:
        return outbox
    s = outbox[outbox["status"].isin(DELIVERED)]
    return s.assign(day=_d(s["delivered_on"].fillna(s["as_of"])))


CUSTOMER_EMAIL_EXCLUDED = ("receipt",)


def operating(f: Frames, ar: pd.DataFrame, cfg: Kpis, lanes: LaneBounds) -> dict:
    w = cfg.window_days
    ob = f.outbox
    sent = _delivered(ob)
    in_w = sent[(sent["day"] > _t(f.as_of - dt.timedelta(days=w))) & (sent["day"] <= _t(f.as_of))] \
        if not sent.empty else sent
    emails = in_w[(in_w["channel"] == "email") & ~in_w["step"].isin(CUSTOMER_EMAIL_EXCLUDED)] if not in_w.empty else in_w
    # Escalation rate: of the overdue invoices touched in the window, the share a person was
    # brought in on (an owner task, a Slack alert or a decision).
    overdue_touched = in_w[in_w["lane"] != "current"] if not in_w.empty else in_w
    escalated = overdue_touched[overdue_touched["channel"].isin(["crm_task", "slack", "decision"])
                                | overdue_touched["needs_approval"].astype(bool)] if not in_w.empty else in_w
    ob_w = ob[_in_window(ob["as_of"], f.as_of, w)] if not ob.empty else ob
    failed = ob_w[(ob_w["status"] == "failed")] if not ob_w.empty else ob_w
    charge_failed = failed[failed["channel"] == "billing"] if not failed.empty else failed
    skipped = ob_w[ob_w["status"] == "skipped"] if not ob_w.empty else ob_w
    repeated = 0
    if not sent.empty:
        all_emails = sent[sent["channel"] == "email"]
        repeated = int((all_emails.groupby(["invoice_id", "step"]).size() > 1).sum())
    quarantined = f.open_invoices[f.open_invoices["outcome"] == "quarantined"] if not f.open_invoices.empty \
        else f.open_invoices
    pending_tasks = f.owner_tasks[f.owner_tasks["status"] == "open"] if not f.owner_tasks.empty else f.owner_tasks
    pending_decisions = f.decisions[f.decisions["status"] == "open"] if not f.decisions.empty else f.decisions
    replies = {
        "disputes": int(_in_window(f.disputes["opened_on"], f.as_of, w).sum()) if not f.disputes.empty else 0,
        "promises": int(_in_window(f.promises["recorded_on"], f.as_of, w).sum()) if not f.promises.empty else 0,
        "opt_outs": int(_in_window(f.opt_outs["recorded_on"], f.as_of, w).sum()) if not f.opt_outs.empty else 0,
    }
    overdue_by_cur = {cur: {"count": int(len(g)), **_money(g["balance_minor"].sum(), cur)}
                      for cur, g in ar[ar["days_past_due"] > 0].groupby("currency")} if not ar.empty else {}
    return {
        "overdue": overdue_by_cur,
        "reminders_sent": {"messages": int(emails["message_key"].fillna(emails["idempotency_key"]).nunique())
                           if not emails.empty else 0, "invoices_touched": int(emails["invoice_id"].nunique())
                           if not emails.empty else 0, "counted_as": "planned (dry-run)" if f.run_mode == "dry-run"
                           else "sent"},
        "replies_received": {"total": sum(replies.values()), **replies,
                             "triaged_by_class": _by_class(f.replies, f.as_of, w)},
        "disputes_open": int((f.disputes["resolved_on"].isna() | (_d(f.disputes["resolved_on"]) > _t(f.as_of))).sum())
        if not f.disputes.empty else 0,
        "stalled_accounts": stalled_accounts(f, ar, sent, cfg.stalled_after_touches),
        "owner_actions_pending": {"owner_tasks": int(len(pending_tasks)), "decisions": int(len(pending_decisions))},
        "escalation_rate": _rate(escalated["invoice_id"].nunique() if not escalated.empty else 0,
                                 overdue_touched["invoice_id"].nunique() if not overdue_touched.empty else 0),
        "failed_sends": int(len(failed) - len(charge_failed)),
        "failed_payments": int(len(charge_failed)),
        "failed_payment_recovery_rate": failed_payment_recovery(f),
        "auto_match_rate": auto_match_rate(f, w),
        "skipped_records": {
            "quarantined": {str(k): int(v) for k, v in quarantined["reason"].value_counts().sort_index().items()},
            "skipped_at_send": {str(k): int(v) for k, v in
                                skipped["closed_reason"].fillna("").str.split(":").str[0].value_counts().items()}
            if not skipped.empty else {}},
        "repeated_reminders": repeated,
    }


def _by_class(replies: pd.DataFrame, as_of: dt.date, days: int) -> dict[str, int]:
    """Inbound replies triaged in the window, per class (the disputes and promises they opened are
    also in the counts beside this one)."""
    if replies is None or replies.empty:
        return {}
    r = replies[_in_window(replies["received_on"], as_of, days)]
    return {str(k): int(v) for k, v in r["category"].value_counts().sort_index().items()}


def stalled_accounts(f: Frames, ar: pd.DataFrame, sent: pd.DataFrame, after: int) -> dict:
    """Customers with an overdue balance who got `after` or more e-mails since their last payment or
    reply (a dispute, a promise) and answered none of them."""
    if ar.empty or sent.empty:
        return {"count": 0, "customers": []}
    overdue_customers = set(ar.loc[ar["days_past_due"] > 0, "customer_id"])
    seen = [pd.DataFrame({"customer_id": frame["customer_id"], "day": _d(frame[col])})
            for frame, col in ((f.history, "paid_date"), (f.disputes, "opened_on"), (f.promises, "recorded_on"),
                               (f.payments, "received_date"))
            if not frame.empty and "customer_id" in frame]
    seen = [s for s in seen if not s.empty]
    last = pd.concat(seen).dropna().groupby("customer_id")["day"].max() if seen else pd.Series(dtype="datetime64[s]")
    e = sent[(sent["channel"] == "email") & sent["customer_id"].isin(overdue_customers)]
    if e.empty:
        return {"count": 0, "customers": []}
    since = pd.to_datetime(e["customer_id"].map(last.to_dict()).astype(object))
    e = e[since.isna() | (pd.to_datetime(e["day"]) > since)]
    counts = e.groupby("customer_id")["message_key"].nunique()
    stalled = sorted(counts[counts >= after].index)
    return {"count": len(stalled), "customers": stalled[:50]}


def failed_payment_recovery(f: Frames) -> dict:
    """Invoices whose auto-charge failed, and the share of them paid since."""
    ob = f.outbox
    if ob.empty:
        return {"failed": 0, "recovered": 0, "rate": None}
    failed = set(ob.loc[(ob["channel"] == "billing") & (ob["status"] == "failed"), "invoice_id"])
    paid = set(f.history["invoice_id"]) if not f.history.empty else set()
    rec = len(failed & paid)
    return {"failed": len(failed), "recovered": rec, "rate": _rate(rec, len(failed))}


def auto_match_rate(f: Frames, days: int) -> dict:
    """Payments recorded in the window that cash application placed by itself (applied, partial
    or overpaid, no review asked) over all payments recorded, reversals left out."""
    p = f.payments
    if p.empty:
        return {"payments": 0, "auto_matched": 0, "rate": None}
    p = p[_in_window(p["recorded_on"], f.as_of, days) & ~p["status"].isin(["reversal"])]
    auto = p[p["status"].isin(["applied", "partial", "overpaid", "reversed"]) & ~p["needs_review"].astype(bool)]
    return {"payments": int(len(p)), "auto_matched": int(len(auto)), "rate": _rate(len(auto), len(p))}


# ---- the cash forecast ------------------------------------------------------------------------

def expected_dates(f: Frames, ar: pd.DataFrame) -> pd.Series:
    """When each open invoice is expected to be paid: a promise's date where one is active;
    otherwise the due date plus the days late the learned model (tasks.late_model) expects, or
    without one the customer's median days late (history; the portfolio's median where the customer
    has fewer than 2 payments). An invoice already past that date is expected
    after the median remaining delay of past invoices that were at least as late (never today)."""
    due = pd.Timestamp(f.as_of) - pd.to_timedelta(ar["days_past_due"], unit="D")
    h = f.history[f.history["days_after_due"].notna()] if not f.history.empty else f.history
    late_hist = h["days_after_due"].astype("int64") if not h.empty else pd.Series(dtype="int64")
    portfolio = float(late_hist.median()) if len(late_hist) else 0.0
    by_cust = h.groupby("customer_id")["days_after_due"].agg(["median", "size"]) if not h.empty else None
    lateness = pd.Series(portfolio, index=ar.index)
    if by_cust is not None:
        ok = by_cust[by_cust["size"] >= 2]["median"]
        lateness = ar["customer_id"].map(ok).fillna(portfolio).astype(float)
    model = _model_lateness(f, ar, due)
    if model is not None:  # the learned late-payment model, where the history trains one
        lateness = model
    expected = due + pd.to_timedelta(lateness.round(), unit="D")
    expected.attrs["method"] = "late_payment_model" if model is not None else "history_medians"
    sorted_late = np.sort(late_hist.to_numpy())
    past = expected <= pd.Timestamp(f.as_of)
    if past.any():
        def remaining(d: int) -> int:
            later = sorted_late[sorted_late > d]
            return max(1, int(np.median(later) - d)) if len(later) else PERIOD_DAYS
        extra = ar.loc[past, "days_past_due"].map(remaining)
        expected[past] = pd.Timestamp(f.as_of) + pd.to_timedelta(extra, unit="D")
    if not f.promises.empty:
        active = f.promises[f.promises["closed_on"].isna() | (_d(f.promises["closed_on"]) > _t(f.as_of))]
        promised = pd.to_datetime(active.set_index("invoice_id")["promised_date"])
        promised = promised[~promised.index.duplicated(keep="last")]
        p = ar["invoice_id"].map(promised)
        use = p.notna() & (p > pd.Timestamp(f.as_of))
        expected[use] = p[use]
    return expected


def _model_lateness(f: Frames, ar: pd.DataFrame, due: pd.Series) -> pd.Series | None:
    """Expected days late per open invoice from tasks.late_model, or None (too little history, or
    invoices the register does not know)."""
    from tasks import late_model

    if f.history.empty or f.register.empty or ar.empty:
        return None
    reg = f.register.drop_duplicates("invoice_id").set_index("invoice_id")
    rows = pd.DataFrame({"customer_id": ar["customer_id"], "due_date": due,
                         "issue_date": ar["invoice_id"].map(reg["issue_date"]),
                         "amount_minor": ar["invoice_id"].map(reg["amount_minor"])}, index=ar.index)
    if rows["issue_date"].isna().any():
        return None
    pred = late_model.predict_open(rows, f.history, f.as_of)
    return None if pred is None else pred["expected_days_late"]


def forecast(f: Frames, ar: pd.DataFrame, cfg: Kpis) -> dict:
    """Expected collections by week for the next `forecast_weeks` weeks, per currency: each open
    invoice's balance times the collection probability of its bucket, in the week of its expected
    payment date. Disputed invoices are shown apart, not forecast. Payment-plan installments
    fall on their own due dates."""
    weeks = cfg.forecast_weeks
    out: dict = {"weeks": weeks, "method": "history_medians", "currencies": {}}
    if ar.empty:
        return out
    ar = ar[ar["balance_minor"] > 0]
    disputed = ar["reason"].eq("dispute") if "reason" in ar else pd.Series(False, index=ar.index)
    plans = ar["reason"].eq("payment_plan") if "reason" in ar else pd.Series(False, index=ar.index)
    base = ar[~disputed & ~plans]
    expected = expected_dates(f, base)
    out["method"] = expected.attrs.get("method", "history_medians")
    prob = base["bucket"].map(cfg.collect_probability).astype(float)
    amount = (base["balance_minor"] * prob).round().astype("int64")
    days = (expected - pd.Timestamp(f.as_of)).dt.days
    week = np.ceil(days / 7).clip(lower=1).astype("int64")
    rows = pd.DataFrame({"currency": base["currency"], "week": week, "amount": amount})
    inst = f.installments
    if not inst.empty:
        due = _d(inst["due_on"])
        inst = inst[due > _t(f.as_of)]
        iw = np.ceil((pd.to_datetime(inst["due_on"]) - pd.Timestamp(f.as_of)).dt.days / 7).astype("int64")
        rows = pd.concat([rows, pd.DataFrame({"currency": inst["currency"], "week": iw,
                                              "amount": inst["amount_minor"].astype("int64")})])
    for cur in sorted(set(ar["currency"])):
        r = rows[rows["currency"] == cur]
        by_week = r.groupby("week")["amount"].sum()
        series = []
        for k in range(1, weeks + 1):
            start = f.as_of + dt.timedelta(days=7 * (k - 1) + 1)
            series.append({"week": k, "start": start.isoformat(), "end": (start + dt.timedelta(days=6)).isoformat(),
                           **_money(int(by_week.get(k, 0)), cur)})
        later = int(r.loc[r["week"] > weeks, "amount"].sum())
        d = ar[disputed & (ar["currency"] == cur)]
        out["currencies"][cur] = {
            "by_week": series, "total": _money(sum(s["minor"] for s in series), cur),
            "after_horizon": _money(later, cur),
            "disputed_not_forecast": {"count": int(len(d)), **_money(d["balance_minor"].sum(), cur)},
            "open_balance": _money(ar.loc[ar["currency"] == cur, "balance_minor"].sum(), cur)}
    return out


def snapshot_rows(kpis: dict) -> list[dict]:
    """One kpi_snapshots row per currency (its document carries the day's escalation rate too)."""
    import json

    rows = []
    for cur, k in kpis["currencies"].items():
        rows.append({"as_of": dt.date.fromisoformat(kpis["as_of"]), "currency": cur, "run_id": kpis["run_id"] or "",
                     "ar_minor": k["ar"]["minor"], "overdue_minor": k["overdue"]["minor"],
                     "dso_standard": k["dso_standard"], "dso_countback": k["dso_countback"],
                     "best_possible_dso": k["best_possible_dso"],
                     "kpis": json.dumps({**k, "escalation_rate": kpis["operating"]["escalation_rate"]}, default=str)})
    return rows


def week_over_week(snapshots: pd.DataFrame, as_of: dt.date) -> dict:
    """Per currency: today's AR, overdue and DSO against the snapshot a week earlier (the latest
    on or before as_of - 7)."""
    out = {}
    if snapshots.empty:
        return out
    s = snapshots.assign(day=_d(snapshots["as_of"]))
    for cur, g in s.groupby("currency"):
        now = g[g["day"] == _t(as_of)]
        before = g[g["day"] <= _t(as_of - dt.timedelta(days=7))].sort_values("day")
        if now.empty or before.empty:
            continue
        a, b = now.iloc[-1], before.iloc[-1]

        def delta(col):
            x, y = a[col], b[col]
            return None if pd.isna(x) or pd.isna(y) else round(float(x) - float(y), 1)
        out[cur] = {"compared_with": b["day"].date().isoformat(),
                    "ar_change": format_minor(int(a["ar_minor"]) - int(b["ar_minor"]), cur),
                    "overdue_change": format_minor(int(a["overdue_minor"]) - int(b["overdue_minor"]), cur),
                    "dso_standard_change": delta("dso_standard"), "dso_countback_change": delta("dso_countback")}
    return out


def register_rows(raw_invoices: pd.DataFrame, known: set[str], as_of: dt.date) -> pd.DataFrame:
    """invoice_register rows for the source's invoices not registered yet: open and paid ones
    (credit sales count both), void ones and rows without a readable id, date or amount left out."""
    from tasks.extract import parse_invoices

    inv = parse_invoices(raw_invoices, exclude=("void",))
    inv = inv[inv["invoice_id"].notna() & inv["customer_id"].notna() & inv["issue_date"].notna()
              & inv["amount_minor"].notna() & ~inv["invoice_id"].isin(known)]
    inv = inv.drop_duplicates("invoice_id")
    return pd.DataFrame({"invoice_id": inv["invoice_id"].astype(str), "customer_id": inv["customer_id"].astype(str),
                         "issue_date": inv["issue_date"], "due_date": inv["due_date"],
                         "amount_minor": inv["amount_minor"].astype("int64"), "currency": inv["currency"].astype(str),
                         "first_seen_on": as_of})
