"""Enrich: customer context from the customer file and the ledger, and payment-history features."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from arflow.policy import Policy

CUSTOMER_FIELDS = ["segment", "arr_minor", "tenure_months", "nps", "health", "renewal_date", "owner_ae_email",
                   "owner_csm_email", "billing_contact_name", "billing_contact_email", "country", "name"]
# Columns a customer file may add: the template language, and the CFO's address (copied on a
# service-pause warning once a person approves it).
OPTIONAL_CUSTOMER_FIELDS = ["language", "cfo_email", "account_number"]


def history_features(history: pd.DataFrame, as_of: dt.date, policy: Policy) -> pd.DataFrame:
    """Per customer: paid_count, avg_days_late (late payments count their days, on-time 0),
    late_count_12m, max_days_late, chronic_late."""
    cols = ["customer_id", "paid_count", "avg_days_late", "late_count_12m", "max_days_late", "chronic_late"]
    if history is None or history.empty:
        return pd.DataFrame(columns=cols)
    h = history.copy()
    paid = pd.to_datetime(h["paid_date"])
    due = pd.to_datetime(h["due_date"])
    h["days_late"] = (paid - due).dt.days.clip(lower=0)
    h["recent"] = paid > pd.Timestamp(as_of) - pd.Timedelta(days=365)
    h["late_recent"] = h["recent"] & (h["days_late"] > 0)
    g = h.groupby("customer_id")
    out = pd.DataFrame({
        "paid_count": g.size(),
        "avg_days_late": g["days_late"].mean().round(2),
        "late_count_12m": g["late_recent"].sum().astype("int64"),
        "max_days_late": g["days_late"].max().astype("int64"),
    }).reset_index()
    s = policy.scoring
    out["chronic_late"] = (out["late_count_12m"] >= s.chronic_late_count) | (out["avg_days_late"] >= s.chronic_avg_days_late)
    return out[cols]


def enrich(invoices: pd.DataFrame, customers: pd.DataFrame, stops: dict[str, pd.DataFrame],
           history: pd.DataFrame, as_of: dt.date, policy: Policy, late_model="fit") -> pd.DataFrame:
    """`late_model`: "fit" trains the learned late-payment model on `history` here; otherwise the
    model fitted already on the whole history (or None: no model), as a partition of a run gets it."""
    today = pd.Timestamp(as_of)
    cust = customers.set_index("customer_id")
    optional = [c for c in OPTIONAL_CUSTOMER_FIELDS if c in cust.columns]
    out = invoices.join(cust[CUSTOMER_FIELDS + optional + ["opt_out", "paused_until"]], on="customer_id")
    for col in OPTIONAL_CUSTOMER_FIELDS:
        if col not in out:
            out[col] = pd.NA
    out = out.rename(columns={"name": "customer_name", "opt_out": "opt_out_file"})

    days_to_renewal = (out["renewal_date"] - today).dt.days
    out["renewal_soon"] = days_to_renewal.between(0, policy.renewal_window_days).fillna(False)
    out["at_risk"] = (out["health"] == "at_risk").fillna(False) | out["renewal_soon"]
    out["high_arr"] = out["arr_minor"].fillna(0).astype("int64") >= policy.scoring.high_arr_minor

    feats = history_features(history, as_of, policy)
    out = out.merge(feats, on="customer_id", how="left").set_axis(out.index)
    out["paid_count"] = out["paid_count"].fillna(0).astype("int64")
    out["late_count_12m"] = out["late_count_12m"].fillna(0).astype("int64")
    out["avg_days_late"] = out["avg_days_late"].astype("float64").fillna(0.0)
    out["max_days_late"] = out["max_days_late"].fillna(0).astype("int64")
    out["chronic_late"] = out["chronic_late"].fillna(False).astype(bool)
    # First time late (policy.first_time_late): a history of on-time payments and not one late, so
    # the first overdue e-mail is the gentler one; a chronic late payer never qualifies.
    out["first_time_late"] = (out["days_past_due"] > 0) & (out["max_days_late"] == 0) \
        & (out["paid_count"] >= policy.first_time_late.min_on_time_payments) & ~out["chronic_late"]

    # The learned late-payment model (tasks.late_model), where the history is enough to train it.
    from tasks import late_model as late

    rows = out[["customer_id", "issue_date", "due_date", "amount_minor"]]
    if history is None or not len(history) or not len(out):
        pred = None
    elif isinstance(late_model, str) and late_model == "fit":
        pred = late.predict_open(rows, history, as_of)
    else:
        pred = late.predict_with(late_model, rows, history)
    out["p_late"] = pred["p_late"].astype("float64") if pred is not None else np.nan
    out["expected_days_late"] = pred["expected_days_late"].astype("float64") if pred is not None else np.nan

    # Stop records, as of today.
    flags = stop_flags(out, stops, as_of, file_opt_out="opt_out_file")
    for col in flags:
        out[col] = flags[col]
    for col, values in charge_retries(out, stops, policy).items():
        out[col] = values
    for col, values in broken_promises(out, stops, as_of).items():
        out[col] = values

    # A failed auto-charge: the invoice joins the early lane on its due date, flagged, so the
    # customer hears "please update your payment method" and not silence until day 15 (its
    # reminders wait while the processor's retries are still to come: tasks.plan).
    out.loc[out["payment_failed"] & (out["lane"] == "current") & (out["days_past_due"] >= 0), "lane"] = "early"

    # Template language: the customer file's own `language`, else the policy's map by country.
    by_country = out["country"].map(lambda c: policy.language_for(c if isinstance(c, str) else None))
    lang = out["language"] if "language" in out else pd.Series(pd.NA, index=out.index)
    out["language"] = lang.where(lang.notna() & (lang.astype("string").str.len() > 0), by_country).astype(str).str.lower()
    return out.drop(columns=["opt_out_file", "paused_until"])


STOP_FLAGS = ("open_dispute", "opt_out", "paused", "promise_to_pay", "payment_plan", "unapplied_cash", "written_off",
              "payment_failed", "question")


def stop_flags(frame: pd.DataFrame, stops: dict[str, pd.DataFrame], as_of: dt.date, *,
               file_opt_out: str = "opt_out") -> pd.DataFrame:
    """The stop records (Ledger.stop_records) as flags per invoice row of `frame`: its invoice_id,
    customer_id, the customer file's opt-out (column `file_opt_out`) and paused_until. One
    column per STOP_FLAGS, on frame's index."""
    today = pd.Timestamp(as_of)
    inv, cust = frame["invoice_id"], frame["customer_id"]

    def ids(name: str, column: str, rows=None) -> set:
        table = stops.get(name)
        if table is None or table.empty or column not in table:
            return set()
        return set((table if rows is None else table[rows(table)])[column].dropna())

    flags = pd.DataFrame(index=frame.index)
    # A dispute of part of an invoice (an amount less than what is owed) holds only that part: the
    # rest keeps its cadence, chased without it (disputed_minor). A dispute with no amount, or of
    # the whole balance or more, holds the invoice.
    disputed = partial_disputes(frame, stops.get("disputes"))
    flags["disputed_minor"] = disputed.reindex(frame.index).fillna(0).astype("int64")
    flags["open_dispute"] = inv.isin(ids("disputes", "invoice_id")) & (flags["disputed_minor"] == 0)
    flags["opt_out"] = frame[file_opt_out].fillna(False).astype(bool) | cust.isin(ids("opt_outs", "customer_id"))
    # A pause holds one invoice where it names one, else the customer's account.
    # A customer's open question (pause kind `question`) holds all their reminders until a person answers it.
    def asked(t):
        return t["kind"].astype("string").fillna("").eq("question") if "kind" in t else pd.Series(False, index=t.index)

    flags["question"] = cust.isin(ids("pauses", "customer_id", asked))
    dated = (lambda t: ~asked(t))
    on_invoice = ids("pauses", "invoice_id", dated)
    whole_account = ids("pauses", "customer_id",
                        lambda t: dated(t) & (t["invoice_id"].isna() if "invoice_id" in t else True))
    flags["paused"] = (frame["paused_until"] >= today).fillna(False) | cust.isin(whole_account) | inv.isin(on_invoice)
    # A promise holds reminders through its date; the business day after a broken promise they resume.
    flags["promise_to_pay"] = inv.isin(ids("promises", "invoice_id",
                                           lambda t: pd.to_datetime(t["promised_date"]) >= today))
    flags["payment_plan"] = cust.isin(ids("payment_plans", "customer_id", lambda t: t["invoice_id"].isna())) \
        | inv.isin(ids("payment_plans", "invoice_id"))
    flags["unapplied_cash"] = cust.isin(ids("unapplied_cash", "customer_id"))
    flags["written_off"] = inv.isin(ids("write_offs", "invoice_id"))
    # A failed auto-charge (the billing system refused it).
    flags["payment_failed"] = inv.isin(ids("failed_charges", "invoice_id"))
    return flags


def partial_disputes(frame: pd.DataFrame, disputes: pd.DataFrame | None) -> pd.Series:
    """Per row of `frame` (index) whose open disputes all name an amount in its currency adding up
    to less than its balance: the amount disputed. Rows not in the result are held whole (or not
    disputed)."""
    if disputes is None or disputes.empty or "amount_minor" not in disputes or "effective_balance_minor" not in frame:
        return pd.Series(dtype="int64")
    d = disputes[disputes["invoice_id"].isin(set(frame["invoice_id"]))]
    if d.empty:
        return pd.Series(dtype="int64")
    cur = dict(zip(frame["invoice_id"], frame["currency"])) if "currency" in frame else {}
    same = d["currency"].isna() | (d["currency"] == d["invoice_id"].map(cur))
    named = d["amount_minor"].notna() & same & (pd.to_numeric(d["amount_minor"], errors="coerce") > 0)
    whole = set(d.loc[~named, "invoice_id"])
    part = pd.to_numeric(d.loc[named, "amount_minor"]).groupby(d.loc[named, "invoice_id"]).sum()
    amount = frame["invoice_id"].map(part)
    ok = amount.notna() & ~frame["invoice_id"].isin(whole) & (amount < frame["effective_balance_minor"])
    return amount[ok].astype("int64")


def charge_retries(frame: pd.DataFrame, stops: dict[str, pd.DataFrame], policy: Policy) -> dict[str, pd.Series]:
    """Per invoice row with a refused auto-charge: `charge_failed_on` (the first refusal),
    `charge_attempts_failed` (refusals so far: the first charge and each retry) and
    `charge_retry_next` (the retry due next, 1-based; 0: the policy's retries are spent, the
    reminders take over)."""
    idx = frame.index
    out = {"charge_failed_on": pd.Series(pd.NaT, index=idx, dtype="datetime64[s]"),
           "charge_attempts_failed": pd.Series(0, index=idx, dtype="int64"),
           "charge_retry_next": pd.Series(0, index=idx, dtype="int64")}
    failed = stops.get("failed_charges")
    if failed is None or failed.empty:
        return out
    f = failed[failed["invoice_id"].isin(set(frame["invoice_id"]))]
    if f.empty:
        return out
    first = pd.to_datetime(f["as_of"]).groupby(f["invoice_id"]).min()
    n = f.groupby("invoice_id")["idempotency_key"].nunique()
    retries = len(policy.auto_charge_retries.days_after_failure)
    out["charge_failed_on"] = frame["invoice_id"].map(first).astype("datetime64[s]")
    out["charge_attempts_failed"] = frame["invoice_id"].map(n).fillna(0).astype("int64")
    nxt = out["charge_attempts_failed"]
    out["charge_retry_next"] = nxt.where((nxt >= 1) & (nxt <= retries), 0).astype("int64")
    return out


def broken_promises(frame: pd.DataFrame, stops: dict[str, pd.DataFrame], as_of: dt.date) -> dict[str, pd.Series]:
    """Per invoice row whose latest promise to pay has passed unkept (still open after the
    promised date): `broken_promise_id` and `broken_promise_date` (else NA/NaT)."""
    idx = frame.index
    out = {"broken_promise_id": pd.Series(pd.NA, index=idx, dtype="Int64"),
           "broken_promise_date": pd.Series(pd.NaT, index=idx, dtype="datetime64[s]")}
    p = stops.get("promises")
    if p is None or p.empty or "id" not in p:
        return out
    p = p.assign(promised=pd.to_datetime(p["promised_date"])).sort_values(["promised", "id"])
    latest = p.drop_duplicates("invoice_id", keep="last").set_index("invoice_id")
    latest = latest[latest["promised"] < pd.Timestamp(as_of)]
    ids = {k: int(v) for k, v in latest["id"].items()}
    out["broken_promise_id"] = pd.Series([ids.get(i, pd.NA) for i in frame["invoice_id"]], index=idx, dtype="Int64")
    when = {k: v for k, v in latest["promised"].items()}
    out["broken_promise_date"] = pd.Series([when.get(i, pd.NaT) for i in frame["invoice_id"]], index=idx,
                                           dtype="datetime64[ns]").astype("datetime64[s]")
    return out


def customer_currency(invoices: pd.DataFrame) -> pd.Series:
    """The currency of each customer's invoices (the first seen, for customers with several)."""
    if invoices.empty:
        return pd.Series(dtype="string")
    return invoices.drop_duplicates("customer_id").set_index("customer_id")["currency"]
