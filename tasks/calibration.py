"""Fit the simulator's payment-timing model to the public IBM late-payment data set (docs/simulator.md).
Pure pandas/numpy; `arflow simulate --calibrate FILE` prints the result, and
``simulation.yaml`` holds the numbers it printed (a test checks they still match the file).

The model, per invoice under net 30: days from the due date to settlement =
customer effect + paper effect (paper bill) + dispute effect (disputed) + residual, fitted by
least squares with one effect per customer. The customer effects and the residuals are kept as
quantiles, so the simulator draws customers and invoices from the data's own distributions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arflow.frames import QUANTILES


def read_ibm(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    needed = {"customerID", "InvoiceDate", "DueDate", "SettledDate", "Disputed", "PaperlessBill", "DaysToSettle"}
    missing = needed - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not the IBM late-payment file (missing columns {sorted(missing)})")
    for c in ("InvoiceDate", "DueDate", "SettledDate"):
        df[c] = pd.to_datetime(df[c], format="%d/%m/%Y")
    df["offset"] = (df["SettledDate"] - df["DueDate"]).dt.days
    df["terms_days"] = (df["DueDate"] - df["InvoiceDate"]).dt.days
    return df


def fit(path: str | Path) -> dict:
    df = read_ibm(path)
    paper = (df["PaperlessBill"] == "Paper").astype(float).to_numpy()
    disputed = (df["Disputed"] == "Yes").astype(float).to_numpy()
    customers = pd.Categorical(df["customerID"])
    dummies = np.eye(len(customers.categories))[customers.codes]
    x = np.column_stack([dummies, paper, disputed])
    y = df["offset"].to_numpy(dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    effects = coef[:-2]
    residual = y - x @ coef
    r = lambda v: [round(float(q), 2) for q in v]  # noqa: E731
    return {
        "source": "IBM Watson Analytics 'Finance Factoring: late payment histories' (../shared/data/ibm_ar)",
        "invoices": int(len(df)), "customers": int(len(effects)),
        "terms_days": int(df["terms_days"].median()),
        "mean_days_to_settle": round(float(df["DaysToSettle"].mean()), 2),
        "late_share": round(float((df["offset"] > 0).mean()), 3),
        "paper_share": round(float(paper.mean()), 3),
        "dispute_rate": round(float(disputed.mean()), 3),
        "paper_effect_days": round(float(coef[-2]), 2),
        "dispute_effect_days": round(float(coef[-1]), 2),
        "customer_effect_quantiles": r(np.quantile(effects, QUANTILES)),
        "residual_quantiles": r(np.quantile(residual, QUANTILES)),
    }
