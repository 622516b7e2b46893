"""Credit notes as documents: what the source says credits took off each invoice, and the credit a
customer holds that no invoice has taken yet. Pure functions, no Prefect.

`credit_notes.csv` (optional in the CSV format, docs/operating.md): one row per credit note and allocation,
``credit_note_id, customer_id, credit_note_number, issue_date, currency, amount, invoice_id,
allocated, allocated_date``. ``amount`` is the note's total (repeated on each of its rows);
``invoice_id``/``allocated`` name an invoice it was allocated to and how much (empty on a row of a
note nobody allocated). What is not allocated is the customer's credit. The invoices' ``balance``
is the billing system's, after the credits it allocated (as QuickBooks, Xero and Stripe report it):
the allocations say which part of a drop in balance was a credit and not a payment.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from arflow.money import known_currencies, parse_minor
from tasks.extract import parse_dates, text_or_na

COLUMNS = ("credit_note_id", "customer_id", "credit_note_number", "issue_date", "currency", "amount", "invoice_id",
           "allocated", "allocated_date")
NOTE_FRAME = ["credit_note_id", "customer_id", "credit_note_number", "issue_date", "currency", "amount_minor",
              "invoice_id", "allocated_minor", "allocated_date"]
UNALLOCATED = ["credit_note_id", "credit_note_number", "customer_id", "currency", "issue_date", "unallocated_minor"]


def parse(raw: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of credit_notes.csv -> (typed allocation rows of the good notes, quarantine rows with
    the reason). A note with any bad row is quarantined whole: its credit is not guessed at."""
    empty_q = pd.DataFrame(columns=["source_row", "record_id", "customer_id", "reason", "raw"])
    if raw is None or raw.empty:
        return pd.DataFrame(columns=NOTE_FRAME), empty_q
    df = pd.DataFrame(index=raw.index)
    df["credit_note_id"] = text_or_na(raw["credit_note_id"])
    df["customer_id"] = text_or_na(raw["customer_id"])
    df["credit_note_number"] = text_or_na(raw["credit_note_number"]).fillna(df["credit_note_id"])
    df["currency"] = raw["currency"].astype("string").str.strip().str.upper()
    df["issue_date"] = parse_dates(raw["issue_date"])
    df["amount_minor"] = parse_minor(raw["amount"], df["currency"])
    df["invoice_id"] = text_or_na(raw["invoice_id"])
    allocated_text = raw["allocated"].astype("string").fillna("").str.strip()
    df["allocated_minor"] = parse_minor(allocated_text.replace("", "0"), df["currency"])
    alloc_date_text = raw["allocated_date"].astype("string").fillna("").str.strip()
    df["allocated_date"] = parse_dates(alloc_date_text)
    reason = pd.Series(None, index=df.index, dtype=object)
    checks = [  # the last that applies wins: most basic last
        ((alloc_date_text != "") & df["allocated_date"].isna(), "bad_date"),
        (df["invoice_id"].notna() & ~(df["allocated_minor"] > 0).fillna(False), "allocation_without_amount"),
        (df["invoice_id"].isna() & (df["allocated_minor"] > 0).fillna(False), "allocation_without_invoice"),
        (df["allocated_minor"].isna() | (df["allocated_minor"] < 0).fillna(False), "bad_amount"),
        (~(df["amount_minor"] > 0).fillna(False), "bad_amount"),
        (df["issue_date"].isna(), "bad_date"),
        (~df["currency"].isin(known_currencies()), "unknown_currency"),
        (df["customer_id"].isna(), "unknown_customer"),
        (df["credit_note_id"].isna(), "missing_credit_note_id"),
    ]
    for mask, why in checks:
        reason = reason.mask(mask.fillna(True).astype(bool), why)
    # Per note: one customer, currency and amount on all its rows; no more allocated than its amount.
    ok = reason.isna() & df["credit_note_id"].notna()
    g = df[ok].groupby("credit_note_id")
    inconsistent = (g["customer_id"].nunique() > 1) | (g["currency"].nunique() > 1) | (g["amount_minor"].nunique() > 1)
    over = g["allocated_minor"].sum() > g["amount_minor"].max()
    per_note = pd.Series(None, index=inconsistent.index, dtype=object)
    per_note = per_note.mask(over, "over_allocated").mask(inconsistent, "inconsistent_credit_note")
    reason = reason.fillna(df["credit_note_id"].map(per_note.dropna()))
    bad_notes = set(df.loc[reason.notna(), "credit_note_id"].dropna())
    spill = reason.isna() & df["credit_note_id"].isin(bad_notes)
    reason = reason.mask(spill, "credit_note_has_a_bad_row")
    bad = reason.notna()
    quarantine = pd.DataFrame({"source_row": raw.loc[bad, "source_row"].to_numpy() if "source_row" in raw else None,
                               "record_id": df.loc[bad, "credit_note_id"].astype(object).to_numpy(),
                               "customer_id": df.loc[bad, "customer_id"].astype(object).to_numpy(),
                               "reason": reason[bad].to_numpy(),
                               "raw": raw.loc[bad].drop(columns="source_row", errors="ignore").to_dict("records")})
    good = df[~bad].copy()
    good["amount_minor"] = good["amount_minor"].astype("int64")
    good["allocated_minor"] = good["allocated_minor"].astype("int64")
    return good[NOTE_FRAME].reset_index(drop=True), quarantine


def credited(notes: pd.DataFrame) -> pd.Series:
    """invoice_id -> what credit notes took off it at the source (minor units)."""
    if notes is None or notes.empty:
        return pd.Series(dtype="int64")
    a = notes[notes["invoice_id"].notna()]
    return a.groupby("invoice_id")["allocated_minor"].sum().astype("int64")


def unallocated(notes: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Per credit note issued by as_of: what no invoice has taken yet (only notes with some left)."""
    if notes is None or notes.empty:
        return pd.DataFrame(columns=UNALLOCATED)
    n = notes[notes["issue_date"] <= pd.Timestamp(as_of)]
    g = n.groupby("credit_note_id")
    out = pd.DataFrame({"credit_note_number": g["credit_note_number"].first(), "customer_id": g["customer_id"].first(),
                        "currency": g["currency"].first(), "issue_date": g["issue_date"].first(),
                        "unallocated_minor": (g["amount_minor"].first() - g["allocated_minor"].sum()).astype("int64")})
    out = out[out["unallocated_minor"] > 0].reset_index()
    return out[UNALLOCATED].sort_values(["customer_id", "issue_date", "credit_note_id"]).reset_index(drop=True)


def customer_credit(invoices: pd.DataFrame, free: pd.DataFrame) -> pd.DataFrame:
    """Per invoice row: the unallocated credit its customer holds in its currency
    (`customer_credit_minor`), the notes it is on (`credit_notes`, numbers comma-separated), and
    whether that credit could cover what is left on the invoice (`unapplied_credit`: then chasing
    it waits until the credit is applied)."""
    out = pd.DataFrame({"customer_credit_minor": 0, "credit_notes": "", "unapplied_credit": False},
                       index=invoices.index)
    if free is None or free.empty or invoices.empty:
        return out
    g = free.groupby(["customer_id", "currency"])
    total = g["unallocated_minor"].sum()
    numbers = g["credit_note_number"].agg(lambda x: ",".join(map(str, x)))
    key = pd.MultiIndex.from_arrays([invoices["customer_id"].astype(object), invoices["currency"].astype(object)])
    held = pd.Series(total.reindex(key).fillna(0).to_numpy(dtype="int64"), index=invoices.index)
    owed = invoices["effective_balance_minor"].astype("int64")
    out["customer_credit_minor"] = held
    out["credit_notes"] = numbers.reindex(key).fillna("").to_numpy()
    out["unapplied_credit"] = np.asarray((owed > 0) & (held > 0) & (owed <= held))
    return out
