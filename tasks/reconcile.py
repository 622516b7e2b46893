"""Reconcile our aging with the books' aging report, per customer and bucket.

The books report one row per customer in the customer's currency (as QuickBooks' AgedReceivables
does). We compare the source balance (what the books hold), not the ledger's effective balance. A
customer whose any bucket or total differs by more than the tolerance is mismatched: all its
invoices are held from outreach today. A report row we cannot read counts as a mismatch for that
customer (we cannot vouch for it) and is quarantined with its reason. No report: status `skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd

from arflow.money import format_minor, is_currency, minor_digits, parse_minor
from tasks.extract import BUCKETS

COMPARED = BUCKETS + ("total",)


@dataclass
class Reconciliation:
    status: str  # matched | mismatched | skipped
    tolerance: str
    mismatched_customers: list[str] = field(default_factory=list)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)  # customer, bucket, ours, books, status
    report_rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # parsed report, for the DQ suite

    basis: str = "due_date"
    nets_credits: bool = False

    def summary(self) -> dict:
        return {"status": self.status, "mismatched_customers": self.mismatched_customers,
                "tolerance": self.tolerance}


def our_aging(invoices: pd.DataFrame, basis: str = "due_date", credits: pd.DataFrame | None = None,
              as_of=None) -> pd.DataFrame:
    """customer_id x currency -> minor units per bucket and total (source balances), aged as the
    books' report is (`basis`), less `credits` (customer_id, currency, amount_minor: what the
    report nets) in the current bucket."""
    if invoices.empty:
        return pd.DataFrame(columns=["customer_id", "currency", *COMPARED])
    from tasks.extract import bucket_of
    from tasks.schedule import aging_rows

    if basis == "invoice_date":
        if as_of is None:
            raise ValueError("aging by invoice date needs the day (as_of)")
        invoices = invoices.assign(bucket=bucket_of((pd.Timestamp(as_of)
                                                     - invoices["issue_date"]).dt.days.astype("int64")),
                                   schedule=None)
    else:
        invoices = aging_rows(invoices, "balance_minor")  # an invoice's instalments in their own buckets
    if credits is not None and not credits.empty:
        netted = credits.assign(bucket="current", balance_minor=-credits["amount_minor"].astype("int64"))
        netted = netted[netted["customer_id"].isin(set(invoices["customer_id"]))]
        invoices = pd.concat([invoices[["customer_id", "currency", "bucket", "balance_minor"]],
                              netted[["customer_id", "currency", "bucket", "balance_minor"]]], ignore_index=True)
    pivot = invoices.pivot_table(index=["customer_id", "currency"], columns="bucket", values="balance_minor",
                                 aggfunc="sum", fill_value=0, observed=True)
    pivot = pivot.reindex(columns=list(BUCKETS), fill_value=0).astype("int64")
    pivot["total"] = pivot.sum(axis=1)
    return pivot.reset_index()


def parse_report(report: pd.DataFrame, currency_of: pd.Series, default_currency: str) -> pd.DataFrame:
    """Report amounts to minor units in each customer's currency. Empty cells are zero (QuickBooks
    leaves zero buckets empty). Adds `amounts_valid` and `total_consistent`."""
    df = pd.DataFrame(index=report.index)
    df["source_row"] = report["source_row"].astype("int64")
    df["customer_id"] = report["customer_id"].astype("string").replace("", pd.NA)
    cur = df["customer_id"].map(currency_of).fillna(default_currency).astype("string")
    df["currency"] = cur
    valid = pd.Series(True, index=report.index)
    for col in COMPARED:
        text = report[col].astype("string").fillna("").str.replace(",", "", regex=False).replace("", "0")
        df[col] = parse_minor(text, cur)
        valid &= df[col].notna()
    df["amounts_valid"] = valid
    bucket_sum = df[list(BUCKETS)].sum(axis=1, min_count=len(BUCKETS))
    df["total_consistent"] = (~valid) | (bucket_sum == df["total"]).fillna(False)
    return df


def reconcile(invoices: pd.DataFrame, report: pd.DataFrame | None, *, tolerance: str,
              rejected_report_rows: pd.Index | None = None, basis: str = "due_date",
              credits: pd.DataFrame | None = None, as_of=None) -> Reconciliation:
    """Compare. `report` is the parsed report (parse_report) less nothing; `rejected_report_rows`
    are the report rows the DQ suite quarantined: their customers count as mismatched. `basis` and
    `credits`: how the report ages and what it nets (our_aging)."""
    nets = credits is not None
    if report is None:
        return Reconciliation(status="skipped", tolerance=tolerance, basis=basis, nets_credits=nets)
    ours = our_aging(invoices, basis, credits, as_of)
    multi = ours.groupby("customer_id")["currency"].nunique()
    multi_currency = set(multi[multi > 1].index)
    bad_rows = report.loc[rejected_report_rows] if rejected_report_rows is not None else report.iloc[:0]
    unreadable = set(bad_rows["customer_id"].dropna())
    books = report.drop(index=bad_rows.index)

    ours_single = ours[~ours["customer_id"].isin(multi_currency)]
    merged = ours_single.merge(books[["customer_id", *COMPARED]], on="customer_id", how="outer",
                               suffixes=("_ours", "_books"))
    merged["currency"] = merged["currency"].fillna(merged["customer_id"].map(books.set_index("customer_id")["currency"]))
    merged = merged[~merged["customer_id"].isin(multi_currency | unreadable)]
    rows = []
    for col in COMPARED:
        part = pd.DataFrame({"customer_id": merged["customer_id"], "currency": merged["currency"], "bucket": col,
                             "ours_minor": merged[f"{col}_ours"].fillna(0).astype("int64"),
                             "books_minor": merged[f"{col}_books"].fillna(0).astype("int64")})
        rows.append(part)
    results = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["customer_id", "currency", "bucket", "ours_minor", "books_minor"])
    tol = _tolerance_minor(results["currency"], tolerance)
    diff = (results["ours_minor"] - results["books_minor"]).abs()
    results["status"] = np.where(diff > tol, "mismatched", "matched")
    extra = [{"customer_id": c, "currency": None, "bucket": "total", "ours_minor": None, "books_minor": None,
              "status": "mismatched"} for c in sorted(multi_currency | unreadable)]
    if extra:
        results = pd.concat([results, pd.DataFrame(extra)], ignore_index=True)
    mismatched = sorted(set(results.loc[results["status"] == "mismatched", "customer_id"].astype(str)))
    return Reconciliation(status="mismatched" if mismatched else "matched", tolerance=tolerance,
                          mismatched_customers=mismatched, results=results, report_rows=report, basis=basis,
                          nets_credits=nets)


def _tolerance_minor(currencies: pd.Series, tolerance: str) -> pd.Series:
    tol = Decimal(tolerance)

    def per(cur) -> int:
        digits = minor_digits(cur) if is_currency(cur) else 2
        return int((tol * (10 ** digits)).to_integral_value())

    return currencies.map(per).astype("int64") if len(currencies) else pd.Series([], dtype="int64")


def describe_mismatch(results: pd.DataFrame, customer_id: str) -> str:
    rows = results[(results["customer_id"] == customer_id) & (results["status"] == "mismatched")]
    parts = []
    for r in rows.itertuples():
        if r.currency is None or pd.isna(r.ours_minor):
            parts.append(f"{r.bucket}: not comparable")
        else:
            parts.append(f"{r.bucket}: ours {format_minor(r.ours_minor, r.currency)} vs books "
                         f"{format_minor(r.books_minor, r.currency)} {r.currency}")
    return "; ".join(parts)
