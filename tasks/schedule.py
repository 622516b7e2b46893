"""Instalment payment terms: an invoice with a payment schedule (for example 30% / 50% / 20% at
different dates) is aged instalment by instalment, chased for what is due, and paid oldest
instalment first. Pure functions, no Prefect.

`payment_schedule.csv` (optional in the CSV format, docs/operating.md): ``invoice_id, due_date, amount``, one
row per instalment. The instalments of an invoice must add up to its amount; a schedule that does
not (or has an unreadable row) quarantines its invoice with the reason, nothing is guessed.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from arflow.money import parse_minor
from tasks.extract import bucket_of, parse_dates, text_or_na


def parse(raw: pd.DataFrame | None, invoices: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """payment_schedule.csv rows -> (instalments: invoice_id, seq, due_date, amount_minor, of the
    invoices whose schedule is good), and a reason per invoice row whose schedule is bad (index of
    `invoices`)."""
    cols = ["invoice_id", "seq", "due_date", "amount_minor"]
    if raw is None or raw.empty or invoices.empty:
        return pd.DataFrame(columns=cols), pd.Series(dtype=object)
    cur = dict(zip(invoices["invoice_id"], invoices["currency"]))
    df = pd.DataFrame({"invoice_id": text_or_na(raw["invoice_id"])}, index=raw.index)
    df = df[df["invoice_id"].isin(set(cur))]
    df["due_date"] = parse_dates(raw.loc[df.index, "due_date"])
    df["amount_minor"] = parse_minor(raw.loc[df.index, "amount"], df["invoice_id"].map(cur))
    bad_row = df["due_date"].isna() | ~(df["amount_minor"] > 0).fillna(False)
    amount = dict(zip(invoices["invoice_id"], invoices["amount_minor"]))
    total = df.groupby("invoice_id")["amount_minor"].sum(min_count=1)
    reason = {}
    for iid in set(df.loc[bad_row, "invoice_id"]):
        reason[iid] = "bad_schedule_row"
    for iid, t in total.items():
        if iid not in reason and (pd.isna(t) or int(t) != int(amount[iid])):
            reason[iid] = "schedule_does_not_add_up"
    good = df[~df["invoice_id"].isin(set(reason))].sort_values(["invoice_id", "due_date"], kind="stable")
    good = good.assign(amount_minor=good["amount_minor"].astype("int64"),
                       seq=good.groupby("invoice_id").cumcount() + 1)
    why = invoices["invoice_id"].map(reason).dropna()
    return good[cols].reset_index(drop=True), why


def allocate(invoices: pd.DataFrame, instalments: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """What was paid or credited (amount less what is owed) goes to the instalments oldest first.
    Per scheduled invoice row: `due_date` of its oldest instalment with something left,
    `amount_due_minor` (left on instalments due by as_of; the next instalment's part where none is
    due yet) and `schedule` (JSON: each instalment's due date, amount, what is left and its bucket).
    Rows without a schedule are not in the result."""
    if instalments is None or instalments.empty:
        return pd.DataFrame(columns=["due_date", "amount_due_minor", "schedule"])
    inv = invoices[invoices["invoice_id"].isin(set(instalments["invoice_id"]))]
    today = pd.Timestamp(as_of)
    by_invoice = {k: g for k, g in instalments.groupby("invoice_id")}
    rows = {}
    for idx, r in zip(inv.index, inv[["invoice_id", "amount_minor", "effective_balance_minor"]].itertuples(index=False)):
        g = by_invoice[r.invoice_id]
        settled = max(0, int(r.amount_minor) - int(r.effective_balance_minor))
        amounts = g["amount_minor"].to_numpy(dtype="int64")
        before = np.concatenate([[0], np.cumsum(amounts)[:-1]])
        left = np.clip(amounts - np.clip(settled - before, 0, None), 0, None)
        dues = g["due_date"].tolist()
        open_at = [i for i in range(len(left)) if left[i] > 0]
        due_now = int(sum(left[i] for i in open_at if dues[i] <= today))
        first = open_at[0] if open_at else len(left) - 1
        if not due_now and open_at:
            due_now = int(left[first])   # nothing due yet: what the next instalment asks
        dpd = pd.Series([(today - d).days for d in dues])
        buckets = bucket_of(dpd).tolist()
        rows[idx] = {"due_date": dues[first], "amount_due_minor": due_now,
                     "schedule": json.dumps([{"seq": int(i + 1), "due_date": dues[i].date().isoformat(),
                                              "amount_minor": int(amounts[i]), "left_minor": int(left[i]),
                                              "bucket": buckets[i]} for i in range(len(left))])}
    out = pd.DataFrame.from_dict(rows, orient="index")
    if not out.empty:
        out["due_date"] = pd.to_datetime(out["due_date"]).astype("datetime64[s]")
    return out


def aging_rows(frame: pd.DataFrame, balance: str = "effective_balance_minor") -> pd.DataFrame:
    """The frame with each scheduled invoice split into its instalments (what `balance` leaves on
    each, oldest paid first, in the instalment's own bucket), for aging totals; other rows as they are."""
    if frame.empty or "schedule" not in frame or frame["schedule"].isna().all():
        return frame
    plain = frame[frame["schedule"].isna()]
    parts = []
    for r in frame[frame["schedule"].notna()].itertuples():
        items = json.loads(r.schedule)
        settled = max(0, int(r.amount_minor) - int(getattr(r, balance)))
        before = 0
        for i in items:
            left = max(0, i["amount_minor"] - max(0, settled - before))
            before += i["amount_minor"]
            if left > 0:
                parts.append({"customer_id": r.customer_id, "currency": r.currency, "invoice_id": r.invoice_id,
                              "bucket": i["bucket"], balance: left})
    if not parts:
        return plain
    return pd.concat([plain, pd.DataFrame(parts)], ignore_index=True)
