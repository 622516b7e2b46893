"""Column parsing every layer shares: strict dates, and the distribution draws of the simulator's
calibrated model. Pure pandas/numpy, no arflow imports above `arflow.money`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from arflow.money import parse_minor

QUANTILES = np.linspace(0.0, 1.0, 21)  # the calibrated distributions are stored as these quantiles


def parse_dates(text: pd.Series) -> pd.Series:
    """Strict ISO YYYY-MM-DD; anything else (or an impossible date) is NaT."""
    text = text.astype("string").str.strip()
    ok = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False)
    parsed = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
    return parsed.astype("datetime64[s]")


def draw(quantiles: list[float], u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from a distribution stored as evenly spaced quantiles (QUANTILES)."""
    return np.interp(u, QUANTILES, np.asarray(quantiles, dtype=float))


def settled_rows(settled) -> list[dict]:
    """The source's settled invoices (CSV-format text) as payment-history rows; an unreadable row
    is left out (it is not an open invoice: nothing is chased on its account)."""
    if settled is None or settled.empty:
        return []
    df = settled.copy()
    for col in ("issue_date", "due_date", "paid_date"):
        df[col] = parse_dates(df[col])
    df["amount_minor"] = parse_minor(df["amount"], df["currency"])
    df = df.dropna(subset=["issue_date", "due_date", "paid_date", "amount_minor"])
    return [{"invoice_id": r.invoice_id, "customer_id": r.customer_id, "issue_date": r.issue_date.date(),
             "due_date": r.due_date.date(), "paid_date": r.paid_date.date(), "amount_minor": int(r.amount_minor),
             "currency": r.currency.upper(), "payment_id": r.payment_id or None} for r in df.itertuples()]
