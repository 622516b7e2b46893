"""The payment checkpoint end to end on the demo data, and its effect on the next daily run."""

import datetime as dt
import shutil
import threading
from decimal import Decimal

import pandas as pd
import pytest

from arflow.money import format_minor
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from flows.payment_checkpoint import payment_checkpoint

AS_OF = dt.date(2026, 11, 23)


def _ledger(data_dir):
    return Ledger(f"sqlite:///{data_dir / 'ledger.db'}")


def _cash_identity(s):
    for cur, read in s["cash_read"].items():
        parts = [s[k].get(cur, "0") for k in ("cash_applied", "cash_unapplied", "customer_credits", "cash_reversed")]
        assert Decimal(read) == sum(Decimal(p) for p in parts), cur


def test_demo_payments_exercise_every_rule(data_dir):
    s = payment_checkpoint(as_of=AS_OF, source="demo", bank_file=str(data_dir / "demo" / "bank_statement.csv"))
    assert {"exact", "reference_partial", "reference_overpaid", "multi_invoice", "amount_customer"} <= set(s["applied"])
    assert s["unapplied"] >= 2 and s["duplicates"] == 1 and s["reversed"] == 1
    assert s["invoices_closed"] > 0 and s["receipts_queued"] == s["invoices_closed"]
    assert 0.8 <= s["auto_match_rate"] <= 0.95
    _cash_identity(s)
    ledger = _ledger(data_dir)
    exceptions = ledger.frame(m.PaymentReceived, m.PaymentReceived.status == "unapplied")
    assert len(exceptions) == s["unapplied"] and exceptions["reason"].notna().all()
    history = ledger.frame(m.PaymentHistory, m.PaymentHistory.payment_id.isnot(None))
    assert len(history) == s["invoices_closed"]
    assert ((pd.to_datetime(history["paid_date"]) - pd.to_datetime(history["issue_date"])).dt.days
            == history["days_to_pay"]).all()
    receipts = ledger.frame(m.Outbox, m.Outbox.step == "receipt")
    assert set(receipts["invoice_id"]) == set(history["invoice_id"]) and receipts["body"].str.contains("paid in full").all()


def test_rerunning_the_same_day_applies_nothing_twice(data_dir):
    first = payment_checkpoint(as_of=AS_OF, source="demo")
    second = payment_checkpoint(as_of=AS_OF, source="demo")
    assert second["new_payments"] == 0 and second["applied"] == {} and second["receipts_queued"] == 0
    assert second["already_recorded"] == second["payments_read"]
    ledger = _ledger(data_dir)
    assert len(ledger.frame(m.PaymentReceived)) == first["new_payments"]
    assert ledger.frame(m.PaymentApplication)["payment_id"].value_counts().max() <= 2  # multi-invoice payments


def test_the_same_bank_line_in_two_files_is_a_duplicate(data_dir):
    bank = data_dir / "demo" / "bank_statement.csv"
    again = data_dir / "bank_resent.csv"
    shutil.copy(bank, again)
    with open(again, "a") as fh:
        fh.write("2026-11-22,12.00,USD,NEW LINE,Someone\n")
    first = payment_checkpoint(as_of=AS_OF, source="demo", bank_file=str(bank))
    second = payment_checkpoint(as_of=AS_OF, source="demo", bank_file=str(again))
    assert second["duplicates"] == 4 and second["new_payments"] == 1  # 4 credit lines seen, 1 new
    assert first["duplicates"] == 1  # the billing export's double listing


def test_paid_invoices_are_not_nudged_the_next_morning(data_dir):
    s = payment_checkpoint(as_of=AS_OF, source="demo")
    closed = set(_ledger(data_dir).frame(m.PaymentHistory, m.PaymentHistory.payment_id.isnot(None))["invoice_id"])
    day = daily_ar(as_of=AS_OF + dt.timedelta(days=1), source="demo")
    outcomes = _ledger(data_dir).frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == day["run_id"]).set_index("invoice_id")
    assert (outcomes.loc[sorted(closed), "reason"] == "nothing_owed").all()
    planned = _ledger(data_dir).frame(m.Outbox, m.Outbox.run_id == day["run_id"])
    assert not closed & set(planned["invoice_id"])
    assert s["invoices_closed"] == len(closed)


def test_a_chargeback_on_a_later_day_reopens_the_invoice(data_dir):
    payment_checkpoint(as_of=AS_OF, source="demo")
    ledger = _ledger(data_dir)
    exact = ledger.frame(m.PaymentReceived, m.PaymentReceived.rule == "exact").iloc[0]
    (inv,) = ledger.frame(m.PaymentApplication, m.PaymentApplication.payment_id == exact["payment_id"])["invoice_id"]
    payments = pd.read_csv(data_dir / "demo" / "payments.csv", dtype=str, keep_default_na=False)
    amount = "-" + format_minor(int(exact["amount_minor"]), exact["currency"])
    payments.loc[len(payments)] = ["CB-1", exact["customer_id"], amount, exact["currency"], "2026-11-24",
                                   f"Chargeback of {exact['payment_id']}"]
    payments.to_csv(data_dir / "demo" / "payments.csv", index=False)
    before = daily_ar(as_of=AS_OF + dt.timedelta(days=1), source="demo")
    s = payment_checkpoint(as_of=AS_OF + dt.timedelta(days=1), source="demo")
    assert s["reversed"] == 1
    assert ledger.frame(m.PaymentApplication, m.PaymentApplication.payment_id == exact["payment_id"])["reversed_on"].notna().all()
    assert ledger.frame(m.PaymentHistory, m.PaymentHistory.invoice_id == inv).empty
    after = daily_ar(as_of=AS_OF + dt.timedelta(days=1), source="demo")
    o = ledger.frame(m.InvoiceOutcome)
    reason_before = o[(o.run_id == before["run_id"]) & (o.invoice_id == inv)]["reason"].item()
    row_after = o[(o.run_id == after["run_id"]) & (o.invoice_id == inv)].iloc[0]
    assert reason_before == "nothing_owed" and row_after["reason"] != "nothing_owed"
    assert row_after["balance_minor"] == exact["amount_minor"] and row_after["lane"] in ("current", "early", "late", "critical")


def test_bai2_bank_file(data_dir):
    inv = pd.read_csv(data_dir / "demo" / "invoices.csv", dtype=str, keep_default_na=False)
    target = inv[(inv.status == "open") & (inv.currency == "USD") & (inv.invoice_id.str.startswith("INV"))].iloc[5]
    cents = int(Decimal(target["balance"]) * 100)
    bai = "\n".join([
        "01,122099999,123456789,261123,0200,1,,,2/",
        "02,123456789,122099999,1,261122,,USD,2/",
        "03,0001234567,USD,010,0,,/",
        f"16,195,{cents},0,BREF001,INV {target['invoice_number']},WIRE FROM CUSTOMER/",
        "16,475,5000,0,BREF002,,CHECK PAID/",
        f"49,{cents + 5000},4/",
        f"98,{cents + 5000},1,6/",
        f"99,{cents + 5000},1,8/"])
    path = data_dir / "statement.bai"
    path.write_text(bai + "\n")
    s = payment_checkpoint(as_of=AS_OF, source="demo", bank_file=str(path))
    rec = _ledger(data_dir).frame(m.PaymentReceived, m.PaymentReceived.payment_id == "bank:BREF001").iloc[0]
    assert rec["rule"] == "exact" and rec["customer_id"] == target["customer_id"]
    assert _ledger(data_dir).frame(m.PaymentReceived, m.PaymentReceived.payment_id == "bank:BREF002").empty  # a debit
    assert s["payments_read"] >= 1


@pytest.mark.postgres
def test_two_checkpoints_at_once_apply_each_payment_once(data_dir, pg_url, monkeypatch):
    monkeypatch.setenv("ARFLOW_DB_URL", pg_url)
    daily_ar(as_of=AS_OF, source="demo")  # migrates and seeds the demo ledger once
    results, errors = [], []

    def run():
        try:
            results.append(payment_checkpoint(as_of=AS_OF, source="demo"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    ledger = Ledger(pg_url)
    apps = ledger.frame(m.PaymentApplication)
    received = ledger.frame(m.PaymentReceived)
    assert received["payment_id"].is_unique
    assert not apps.duplicated(["payment_id", "invoice_id"]).any()
    receipts = ledger.frame(m.Outbox, m.Outbox.step == "receipt")
    assert receipts["idempotency_key"].is_unique
    assert sum(r["receipts_queued"] for r in results) == len(receipts)


def test_an_unknown_mode_is_refused_before_anything_is_recorded(data_dir):
    with pytest.raises(ValueError, match="mode 'sned' is not one of"):
        payment_checkpoint(as_of=AS_OF, source="demo", mode="sned")
    assert not (data_dir / "ledger.db").exists()
