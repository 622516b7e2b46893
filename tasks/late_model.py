"""A learned late-payment model next to the rules and the LLM: trained on payment history, it gives
each open invoice the probability of being paid more than N days after its due date (``p_late``)
and an expected number of days late (for the expected payment date of the cash forecast).

Features are what is known while the invoice is open, never how it settled: the amount, the terms,
and the customer's record from invoices paid *before this invoice was issued* (count, mean and max
days late, share late, the last one's days late). Training rows get their features the same way,
so an invoice's own payment never informs its features.

Logistic regression on standardised features: on the public IBM data set (benchmarks/late_payment_eval.py,
time-ordered split) it scores as well as gradient boosting and gives calibrated probabilities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

LATE_DAYS = 0          # p_late: paid more than this many days after the due date
MIN_ROWS = 200         # fewer paid invoices than this: no model (the rules and medians stand)
MIN_CLASS = 20         # and at least this many on time and this many late
PRIOR = ["prior_n", "prior_mean_late", "prior_share_late", "prior_max_late", "prior_last_late"]
BASE = ["log_amount", "terms_days", "has_prior"]


def prior_record(targets: pd.DataFrame, history: pd.DataFrame, late_days: int = LATE_DAYS) -> pd.DataFrame:
    """Per target row (customer_id, issue_date): the customer's record over history rows
    (customer_id, paid_date, days_late) paid strictly before the target's issue date."""
    t = targets[["customer_id", "issue_date"]].copy()
    t["_row"] = np.arange(len(t))
    t["issue_date"] = pd.to_datetime(t["issue_date"]).astype("datetime64[us]")
    t["customer_id"] = t["customer_id"].astype(str)
    h = history[["customer_id", "paid_date", "days_late"]].dropna().copy()
    h["paid_date"] = pd.to_datetime(h["paid_date"]).astype("datetime64[us]")
    h["customer_id"] = h["customer_id"].astype(str)
    h = h.sort_values(["paid_date"], kind="stable")
    g = h.groupby("customer_id")
    h["prior_n"] = g.cumcount() + 1
    h["_sum"] = g["days_late"].cumsum()
    h["_late"] = (h["days_late"] > late_days).astype(int).groupby(h["customer_id"]).cumsum()
    h["prior_max_late"] = g["days_late"].cummax()
    h["prior_last_late"] = h["days_late"]
    h["prior_mean_late"] = h["_sum"] / h["prior_n"]
    h["prior_share_late"] = h["_late"] / h["prior_n"]
    # A payment on the issue date itself is not yet known when the invoice is issued: strictly before.
    h["_key"] = h["paid_date"] + pd.Timedelta(microseconds=1)
    merged = pd.merge_asof(t.sort_values("issue_date"), h[["customer_id", "_key"] + PRIOR].sort_values("_key"),
                           left_on="issue_date", right_on="_key", by="customer_id", direction="backward")
    merged = merged.sort_values("_row").set_index(targets.index)
    out = merged[PRIOR].astype(float)
    out["has_prior"] = out["prior_n"].notna().astype(float)
    return out.fillna(0.0)


def design(rows: pd.DataFrame, history: pd.DataFrame, late_days: int = LATE_DAYS,
           extra: list[str] | None = None) -> pd.DataFrame:
    """The feature matrix: rows need customer_id, issue_date, due_date, amount_minor."""
    X = prior_record(rows, history, late_days)
    X["log_amount"] = np.log1p(rows["amount_minor"].astype(float).clip(lower=0) / 100.0)
    X["terms_days"] = (pd.to_datetime(rows["due_date"]) - pd.to_datetime(rows["issue_date"])).dt.days.astype(float)
    for c in extra or []:
        X[c] = rows[c].astype(float)
    return X[BASE + PRIOR + list(extra or [])]


@dataclass
class LateModel:
    classifier: object
    regressor: object
    late_days: int
    trained_on: int

    def predict(self, rows: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
        """p_late and expected_days_late (>= 0) per row (customer_id, issue_date, due_date, amount_minor)."""
        if rows.empty:
            return pd.DataFrame({"p_late": pd.Series(dtype=float), "expected_days_late": pd.Series(dtype=float)})
        X = design(rows, history, self.late_days)
        return pd.DataFrame({"p_late": self.classifier.predict_proba(X)[:, 1],
                             "expected_days_late": np.clip(self.regressor.predict(X), 0, None)}, index=rows.index)


def make_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))


def training_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The ledger's payment history as rows with days_late (early payments count 0)."""
    h = history.copy()
    h["days_late"] = (pd.to_datetime(h["paid_date"]) - pd.to_datetime(h["due_date"])).dt.days.clip(lower=0)
    return h


_FITTED: dict[int, tuple[pd.DataFrame, LateModel | None]] = {}  # late_days -> (trained on, model)
REFIT_GROWTH = 1.2  # a history that only grew, by less than this factor, keeps the model trained on it


def fit(history: pd.DataFrame, late_days: int = LATE_DAYS) -> LateModel | None:
    """Train on paid invoices (customer_id, issue_date, due_date, paid_date, amount_minor); None when
    there is too little history, or too few of either class, to learn from.

    A history that extends the one the last model was trained on (the same rows first, by payment
    date) by less than a fifth keeps that model: the features of today's invoices are computed
    afresh, the weights wait for more evidence. Any other history is trained on anew."""
    if history is None or len(history) < MIN_ROWS:
        return None
    keyed = history[["invoice_id", "customer_id", "paid_date", "due_date", "amount_minor"]].astype(str) \
        .sort_values(["paid_date", "invoice_id"], kind="stable").reset_index(drop=True)
    cached = _FITTED.get(late_days)
    if cached is not None:
        seen, model = cached
        if len(seen) <= len(keyed) < REFIT_GROWTH * len(seen) and keyed.iloc[:len(seen)].equals(seen):
            return model
    model = _fit(history, late_days)
    _FITTED[late_days] = (keyed, model)
    return model


def _fit(history: pd.DataFrame, late_days: int) -> LateModel | None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    h = training_rows(history)
    y = (h["days_late"] > late_days).astype(int)
    if y.sum() < MIN_CLASS or (len(y) - y.sum()) < MIN_CLASS:
        return None
    X = design(h, h, late_days)
    clf = make_classifier().fit(X, y)
    reg = HistGradientBoostingRegressor(loss="absolute_error", max_iter=100, random_state=0).fit(X, h["days_late"])
    return LateModel(clf, reg, late_days, len(h))


def predict_open(invoices: pd.DataFrame, history: pd.DataFrame, as_of: dt.date) -> pd.DataFrame | None:
    """For open invoices (customer_id, issue_date, due_date, and amount_minor or
    effective_balance_minor): p_late and expected_days_late, or None without a model."""
    return predict_with(fit(history), invoices, history)


def predict_with(model: LateModel | None, invoices: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame | None:
    """predict_open with a model fitted already (a partitioned run fits once, in the flow's
    process, and each partition predicts its customers' invoices from their own history)."""
    if model is None:
        return None
    rows = invoices.copy()
    if "amount_minor" not in rows:
        rows["amount_minor"] = rows["effective_balance_minor"]
    return model.predict(rows, training_rows(history))
