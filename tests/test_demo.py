import datetime as dt

import pandas as pd

from arflow import demo
from connectors.ledger import models as m
from connectors.ledger.store import Ledger

ANCHOR = dt.date(2026, 11, 23)


def test_demo_is_deterministic_for_a_seed(tmp_path):
    a = demo.generate(tmp_path / "a", anchor=ANCHOR, seed=7)
    b = demo.generate(tmp_path / "b", anchor=ANCHOR, seed=7)
    c = demo.generate(tmp_path / "c", anchor=ANCHOR, seed=8)
    for name in ("invoices.csv", "customers.csv", "payments.csv", "aging_report.csv", "ledger_seed/disputes.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "invoices.csv").read_bytes() != (c / "invoices.csv").read_bytes()


def test_demo_is_realistic(tmp_path):
    f = demo.generate(tmp_path / "d", anchor=ANCHOR, seed=42)
    cust = pd.read_csv(f / "customers.csv", dtype=str, keep_default_na=False)
    inv = pd.read_csv(f / "invoices.csv", dtype=str, keep_default_na=False)
    assert len(cust) >= 200 and len(inv) >= 2000
    assert set(cust["segment"]) == {"strategic", "standard", "transactional"}
    assert inv["issue_date"].min() <= (ANCHOR - dt.timedelta(days=300)).isoformat()
    assert inv["currency"].nunique() >= 4 and (inv["autopay"] == "true").sum() > 100
    assert (inv["due_date"] == "").sum() > 100  # due dates that come from terms
    assert {"net30", "due_on_receipt", "eom30"} <= set(inv["terms"])
    assert (cust["health"] == "at_risk").sum() > 10 and (cust["opt_out"] == "true").sum() >= 1
    open_due = set(inv.loc[inv["status"] == "open", "due_date"])
    assert {"2026-11-26", "2026-12-25"} & open_due  # due on US public holidays
    assert (pd.read_csv(f / "ledger_seed" / "payment_history.csv")["paid_date"] >
            pd.read_csv(f / "ledger_seed" / "payment_history.csv")["due_date"]).sum() > 200


def test_ledger_seed_is_written_once(tmp_path):
    f = demo.generate(tmp_path / "d", anchor=ANCHOR, seed=42)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert demo.seed_ledger(ledger, f) is True
    assert demo.seed_ledger(ledger, f) is False
    assert len(ledger.frame(m.Dispute)) == 8 and len(ledger.frame(m.PaymentHistory)) > 1000
