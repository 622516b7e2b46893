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
OPTIONAL_CUSTOMER_FIELDS = ["language", "cfo_email"]


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
           history: pd.DataFrame, as_of: dt.date, policy: Policy) -> pd.DataFrame:
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
    out["first_time_late"] = (out["days_past_due"] > 0) & (out["late_count_12m"] == 0)

    # The learned late-payment model (tasks.late_model), where the history is enough to train it.
    from tasks import late_model

    pred = late_model.predict_open(out[["customer_id", "issue_date", "due_date", "amount_minor"]], history, as_of) \
        if history is not None and len(history) and len(out) else None
    out["p_late"] = pred["p_late"].astype("float64") if pred is not None else np.nan
    out["expected_days_late"] = pred["expected_days_late"].astype("float64") if pred is not None else np.nan

    # Stop records, as of today.
    disputes = stops.get("disputes", pd.DataFrame(columns=["invoice_id"]))
    out["open_dispute"] = out["invoice_id"].isin(set(disputes["invoice_id"]))
    opt = stops.get("opt_outs", pd.DataFrame(columns=["customer_id"]))
    out["opt_out"] = out["opt_out_file"].fillna(False).astype(bool) | out["customer_id"].isin(set(opt["customer_id"]))
    pauses = stops.get("pauses", pd.DataFrame(columns=["customer_id", "invoice_id", "until", "reason"]))
    cust_pause = pauses[pauses["invoice_id"].isna()] if "invoice_id" in pauses else pauses
    inv_pause = pauses[pauses["invoice_id"].notna()] if "invoice_id" in pauses else pauses.iloc[:0]
    out["paused"] = ((out["paused_until"] >= today).fillna(False)
                     | out["customer_id"].isin(set(cust_pause["customer_id"]))
                     | out["invoice_id"].isin(set(inv_pause["invoice_id"])))
    promises = stops.get("promises", pd.DataFrame(columns=["invoice_id", "promised_date"]))
    # A promise holds reminders through its date; the business day after a broken promise they resume.
    active = promises[pd.to_datetime(promises["promised_date"]) >= today] if not promises.empty else promises
    out["promise_to_pay"] = out["invoice_id"].isin(set(active["invoice_id"]))
    plans = stops.get("payment_plans", pd.DataFrame(columns=["customer_id", "invoice_id"]))
    plan_customers = set(plans.loc[plans["invoice_id"].isna(), "customer_id"]) if not plans.empty else set()
    plan_invoices = set(plans["invoice_id"].dropna()) if not plans.empty else set()
    out["payment_plan"] = out["customer_id"].isin(plan_customers) | out["invoice_id"].isin(plan_invoices)
    cash = stops.get("unapplied_cash", pd.DataFrame(columns=["customer_id"]))
    out["unapplied_cash"] = out["customer_id"].isin(set(cash["customer_id"]))
    written = stops.get("write_offs", pd.DataFrame(columns=["invoice_id"]))
    out["written_off"] = out["invoice_id"].isin(set(written["invoice_id"]))

    # A failed auto-charge: the invoice joins the early lane on its due date, flagged, so the
    # customer hears "please update your payment method" and not silence until day 15.
    failed = stops.get("failed_charges", pd.DataFrame(columns=["invoice_id"]))
    out["payment_failed"] = out["invoice_id"].isin(set(failed["invoice_id"]))
    out.loc[out["payment_failed"] & (out["lane"] == "current") & (out["days_past_due"] >= 0), "lane"] = "early"

    # Template language: the customer file's own `language`, else the policy's map by country.
    by_country = out["country"].map(lambda c: policy.language_for(c if isinstance(c, str) else None))
    lang = out["language"] if "language" in out else pd.Series(pd.NA, index=out.index)
    out["language"] = lang.where(lang.notna() & (lang.astype("string").str.len() > 0), by_country).astype(str).str.lower()
    return out.drop(columns=["opt_out_file", "paused_until"])


def customer_currency(invoices: pd.DataFrame) -> pd.Series:
    """The currency of each customer's invoices (the first seen, for customers with several)."""
    if invoices.empty:
        return pd.Series(dtype="string")
    return invoices.drop_duplicates("customer_id").set_index("customer_id")["currency"]
