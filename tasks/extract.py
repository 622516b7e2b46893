"""Extract and age: raw source rows -> typed frames, due dates from terms, days past due, bucket, lane.

Pure functions on DataFrames. Parsing never guesses: a value that does not parse becomes NA (with a
``*_state`` column saying why), and the hop's expectation suite turns those into quarantine reasons.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from arflow.money import parse_minor
from arflow.policy import Policy

BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "d91_plus")
_EMAIL_RE = r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$"


def parse_dates(text: pd.Series) -> pd.Series:
    """Strict ISO YYYY-MM-DD; anything else (or an impossible date) is NaT."""
    text = text.astype("string").str.strip()
    ok = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False)
    parsed = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
    return parsed.astype("datetime64[s]")


def _optional_date(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(parsed date or NaT, valid flag): empty text is valid and NaT."""
    text = text.astype("string").fillna("").str.strip()
    parsed = parse_dates(text)
    return parsed, (text == "") | parsed.notna()


def _bool(text: pd.Series, default: bool = False) -> tuple[pd.Series, pd.Series]:
    t = text.astype("string").fillna("").str.strip().str.lower()
    valid = t.isin(["true", "false", ""])
    return t.map({"true": True, "false": False, "": default}).fillna(default).astype(bool), valid


def normalize_terms(terms: pd.Series) -> pd.Series:
    """'Net 30', 'NET_30', 'net30' -> 'net30'; 'Due on receipt' -> 'dueonreceipt'."""
    return terms.astype("string").fillna("").str.lower().str.replace(r"[\s_\-]", "", regex=True)


def due_from_terms(issue: pd.Series, terms: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Due dates from terms. Returns (due or NaT, state) with state 'terms', 'missing' (no terms)
    or 'unknown_terms' (terms we cannot read)."""
    t = normalize_terms(terms)
    net = t.str.fullmatch(r"net\d{1,3}").fillna(False).astype(bool)
    eom = t.str.fullmatch(r"eom\d{1,3}").fillna(False).astype(bool)
    receipt = (t == "dueonreceipt").fillna(False).astype(bool)
    net_days = pd.to_numeric(t.str.slice(3).where(net), errors="coerce")
    eom_days = pd.to_numeric(t.str.slice(3).where(eom), errors="coerce")
    due = pd.Series(pd.NaT, index=issue.index, dtype="datetime64[s]")
    due = due.mask(net_days.notna(), issue + pd.to_timedelta(net_days.fillna(0), unit="D"))
    month_end = (issue + pd.offsets.MonthEnd(0)).astype("datetime64[s]")
    due = due.mask(eom_days.notna(), month_end + pd.to_timedelta(eom_days.fillna(0), unit="D"))
    due = due.mask(receipt, issue)
    state = pd.Series("terms", index=issue.index, dtype="string")
    state = state.mask(t == "", "missing")
    state = state.mask((t != "") & net_days.isna() & eom_days.isna() & ~receipt, "unknown_terms")
    return due.astype("datetime64[s]"), state


def parse_customers(raw: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    df = pd.DataFrame(index=raw.index)
    df["source_row"] = raw["source_row"].astype("int64")
    df["customer_id"] = raw["customer_id"].astype("string").replace("", pd.NA)
    df["name"] = raw["name"].astype("string")
    df["segment"] = raw["segment"].astype("string").str.lower()
    df["arr_minor"] = parse_minor(raw["arr"].replace("", "0"), pd.Series(policy.reporting_currency, index=raw.index))
    df["tenure_months"] = pd.to_numeric(raw["tenure_months"].where(raw["tenure_months"].str.fullmatch(r"\d+")),
                                        errors="coerce").astype("Int64")
    nps_text = raw["nps"].astype("string").fillna("")
    df["nps"] = pd.to_numeric(nps_text.where(nps_text.str.fullmatch(r"-?\d+")), errors="coerce").astype("Int64")
    df["nps_valid"] = (nps_text == "") | df["nps"].between(-100, 100).fillna(False)
    health = raw["health"].astype("string").str.lower()
    df["health"] = health.replace("", pd.NA)
    df["renewal_date"], df["renewal_date_valid"] = _optional_date(raw["renewal_date"])
    df["paused_until"], df["paused_until_valid"] = _optional_date(raw["paused_until"])
    for col in ("owner_ae_email", "owner_csm_email", "billing_contact_name", "billing_contact_email"):
        df[col] = raw[col].astype("string").replace("", pd.NA)
    df["billing_email_valid"] = df["billing_contact_email"].str.fullmatch(_EMAIL_RE).fillna(False)
    df["country"] = raw["country"].astype("string").str.upper().replace("", pd.NA)
    df["opt_out"], df["opt_out_valid"] = _bool(raw["opt_out"])
    for col in ("language", "cfo_email"):  # optional columns (DESIGN.md CSV format plus these)
        if col in raw:
            df[col] = raw[col].astype("string").str.strip().replace("", pd.NA)
    return df


def parse_invoices(raw: pd.DataFrame, exclude: tuple[str, ...] = ("paid", "void")) -> pd.DataFrame:
    """Typed invoices, open (or of unreadable status) only. Paid and void rows are not open
    invoices and do not enter the run (the KPIs' invoice register keeps the paid ones)."""
    status = raw["status"].astype("string").str.strip().str.lower()
    raw = raw[~status.isin(list(exclude))]
    status = status[raw.index]
    df = pd.DataFrame(index=raw.index)
    df["source_row"] = raw["source_row"].astype("int64")
    df["invoice_id"] = raw["invoice_id"].astype("string").replace("", pd.NA)
    df["customer_id"] = raw["customer_id"].astype("string").replace("", pd.NA)
    df["invoice_number"] = raw["invoice_number"].astype("string")
    df["status"] = status
    df["currency"] = raw["currency"].astype("string").str.strip().str.upper()
    df["issue_date"] = parse_dates(raw["issue_date"])
    given_text = raw["due_date"].astype("string").fillna("").str.strip()
    given = parse_dates(given_text)
    from_terms, terms_state = due_from_terms(df["issue_date"], raw["terms"])
    df["terms"] = normalize_terms(raw["terms"])
    df["due_date"] = given.where(given_text != "", from_terms).astype("datetime64[s]")
    state = pd.Series("invoice", index=raw.index, dtype="string")
    state = state.mask(given_text == "", terms_state)
    state = state.mask((given_text != "") & given.isna(), "bad_date")
    state = state.mask((given_text == "") & (terms_state == "terms") & df["issue_date"].isna(), "bad_date")
    df["due_state"] = state
    df["amount_minor"] = parse_minor(raw["amount"], df["currency"])
    df["balance_minor"] = parse_minor(raw["balance"], df["currency"])
    df["autopay"], df["autopay_valid"] = _bool(raw["autopay"])
    df["payment_link"] = raw["payment_link"].astype("string").replace("", pd.NA)
    df["po_number"] = raw["po_number"].astype("string").replace("", pd.NA)
    return df


def age(invoices: pd.DataFrame, as_of: dt.date, policy: Policy) -> pd.DataFrame:
    """days_past_due = as_of - due_date in calendar days; bucket and lane from it."""
    out = invoices.copy()
    dpd = (pd.Timestamp(as_of) - out["due_date"]).dt.days.astype("int64")
    out["days_past_due"] = dpd
    out["bucket"] = bucket_of(dpd)
    b = policy.lanes
    out["lane"] = np.select([dpd < b.early_from, dpd < b.late_from, dpd < b.critical_from],
                            ["current", "early", "late"], "critical")
    return out


def bucket_of(days_past_due: pd.Series) -> pd.Series:
    d = days_past_due.to_numpy()
    return pd.Series(np.select([d <= 0, d <= 30, d <= 60, d <= 90], list(BUCKETS[:4]), BUCKETS[4]),
                     index=days_past_due.index)


def effective_balance(invoices: pd.DataFrame, applied: pd.DataFrame, reflected_ids: set[str]) -> pd.Series:
    """The source's balance less what the ledger applied that the source does not show yet.

    A payment the source reports (by payment id) is not subtracted. Otherwise each application
    carries the source's balance when it was applied, so once the source's balance has dropped by
    the applied amount the payment is not counted twice:
    effective = min(source balance now, min over applications a of
                    (source balance at a - everything applied from a on)), never below zero.
    """
    balance = invoices["balance_minor"].astype("int64")
    if applied is None or applied.empty:
        return balance
    a = applied[~applied["payment_id"].isin(reflected_ids) & applied["invoice_id"].isin(invoices["invoice_id"])]
    if a.empty:
        return balance
    a = a.sort_values(["invoice_id", "applied_on", "id"], kind="stable")
    amount = a["amount_minor"].astype("int64")
    since = amount.iloc[::-1].groupby(a["invoice_id"].iloc[::-1]).cumsum().iloc[::-1]
    now = a["invoice_id"].map(dict(zip(invoices["invoice_id"], balance)))
    base = pd.to_numeric(a["source_balance_minor"], errors="coerce").fillna(now).astype("int64")
    cap = (base - since).groupby(a["invoice_id"]).min()
    capped = invoices["invoice_id"].map(cap)
    return balance.where(capped.isna(), np.minimum(balance, capped.fillna(0).astype("int64"))).clip(lower=0)
