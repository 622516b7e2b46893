"""Against real data written by others: the IBM late-payment sample (tests/data/ibm_ar), 2,466
invoices on net 30 terms with their due, settled and days-late columns."""

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from arflow.config import ROOT
from tasks.extract import due_from_terms
from tests.conftest import customer, make_source
from tests.pipeline import run

IBM = ROOT / "tests" / "data" / "ibm_ar" / "WA_Fn-UseC_-Accounts-Receivable.csv"


@pytest.fixture(scope="module")
def ibm():
    df = pd.read_csv(IBM, dtype=str)
    for col in ("InvoiceDate", "DueDate", "SettledDate"):
        df[col] = pd.to_datetime(df[col], format="%d/%m/%Y")
    df["DaysLate"] = df["DaysLate"].astype(int)
    return df


def test_net30_terms_reproduce_every_published_due_date_and_days_late(ibm):
    due, state = due_from_terms(ibm["InvoiceDate"].astype("datetime64[s]"), pd.Series(["net30"] * len(ibm)))
    assert (state == "terms").all()
    assert (due == ibm["DueDate"]).all()
    days_late = (ibm["SettledDate"] - due).dt.days.clip(lower=0)
    assert (days_late == ibm["DaysLate"]).all()


@pytest.mark.parametrize("as_of", [dt.date(2013, 6, 28), dt.date(2012, 12, 31)])
def test_aging_on_a_real_portfolio_matches_a_hand_count(tmp_path, policy, ibm, as_of):
    """Open at as_of = issued on or before it and settled after it; terms only, no due date given."""
    ts = pd.Timestamp(as_of)
    open_ = ibm[(ibm["InvoiceDate"] <= ts) & (ibm["SettledDate"] > ts)]
    rows = [{"invoice_id": r.invoiceNumber, "customer_id": r.customerID, "invoice_number": r.invoiceNumber,
             "issue_date": r.InvoiceDate.date().isoformat(), "due_date": "", "terms": "Net 30", "currency": "USD",
             "amount": r.InvoiceAmount, "balance": r.InvoiceAmount, "status": "open", "autopay": "false"}
            for r in open_.itertuples()]
    customers = [customer(c) for c in sorted(ibm["customerID"].unique())]
    out = run(make_source(tmp_path, rows, customers), as_of, policy)
    assert out["quarantine"].empty
    planned = out["planned"].set_index("invoice_id")
    expected_dpd = (ts - open_.set_index("invoiceNumber")["DueDate"]).dt.days
    assert (planned["days_past_due"].sort_index() == expected_dpd.sort_index()).all()
    by_hand = pd.cut(expected_dpd, [-10**6, 0, 30, 60, 90, 10**6],
                     labels=["current", "d1_30", "d31_60", "d61_90", "d91_plus"]).value_counts()
    assert planned["bucket"].value_counts().to_dict() == {k: v for k, v in by_hand.to_dict().items() if v}
    cents = sum(Decimal(a) for a in open_["InvoiceAmount"]) * 100
    assert int(planned["effective_balance_minor"].sum()) == cents
