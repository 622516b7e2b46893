"""What a customer reads when their account is in a particular state (issue 23, items 5 and 8): a
first-time-late customer's gentler first e-mail, a broken promise said as such, a partial dispute
that holds only what is disputed, and a question that pauses the customer until someone answers."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from arflow.cli import app
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tasks.decisions import open_decisions
from tasks.touches import outbox_rows
from tasks.triage import dispute_details, triage
from tests import pipeline
from tests.conftest import customer, invoice, make_source

TUE = dt.date(2026, 11, 17)   # invoices due 2026-11-13 (Friday) are four days late: the nudge is due


def _ledger(tmp_path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'l.db'}")


def _mail(tmp_path, ledger, policy, as_of=TUE):
    """The day's plan and the customer e-mails it renders, by customer: (subject, body, steps)."""
    out = pipeline.run(tmp_path / "src", as_of, policy, ledger)
    rows = outbox_rows(out["actions"], out["planned"], mode="send", run_id="t", as_of=as_of, policy=policy)
    mail = {}
    if not rows.empty:  # every text passes the guardrails (none blocked)
        assert not (rows["status"] == "blocked").any(), rows.loc[rows["status"] == "blocked", "closed_reason"].tolist()
        for cid, g in rows[rows["channel"] == "email"].groupby("customer_id"):
            mail[cid] = (g["subject"].iloc[0], g["body"].iloc[0], sorted(g["step"]))
    return out, mail


def _history(ledger, cid: str, n: int, days_late: int) -> None:
    rows = []
    for k in range(n):
        due = dt.date(2025, 1, 15) + dt.timedelta(days=30 * k)
        rows.append({"invoice_id": f"H-{cid}-{k}", "customer_id": cid, "issue_date": due - dt.timedelta(days=30),
                     "due_date": due, "paid_date": due + dt.timedelta(days=days_late), "amount_minor": 10000,
                     "currency": "USD", "days_to_pay": 30 + days_late, "days_after_due": days_late})
    ledger.insert_rows(m.PaymentHistory, rows)


# ---- first time late --------------------------------------------------------------------------
def test_a_first_time_late_customer_gets_a_gentler_first_email_than_a_chronic_late_payer(tmp_path, policy):
    make_source(tmp_path / "src", [invoice("I1", "C1", due_date="2026-11-13"),
                                   invoice("I2", "C2", due_date="2026-11-13"),
                                   invoice("I3", "C3", due_date="2026-11-13"),
                                   invoice("I4", "C4", due_date="2026-11-13")],
                [customer("C1"), customer("C2"), customer("C3"), customer("C4", country="DE")])
    ledger = _ledger(tmp_path)
    _history(ledger, "C1", 12, 0)    # twelve invoices, all paid on time
    _history(ledger, "C2", 12, 20)   # always weeks late: chronic
    _history(ledger, "C3", 4, 0)     # on time, but too short a history to say (policy: 10)
    _history(ledger, "C4", 10, 0)
    out, mail = _mail(tmp_path, ledger, policy)
    planned = out["planned"].set_index("customer_id")
    assert bool(planned.at["C1", "first_time_late"]) and not bool(planned.at["C2", "first_time_late"])
    assert bool(planned.at["C2", "chronic_late"])
    subject, body, steps = mail["C1"]
    assert steps == ["nudge"] and subject == "A friendly note about invoice N-I1"
    assert "You have always paid us on time" in body and "most likely an oversight" in body
    for cid in ("C2", "C3"):  # the usual nudge, not the gentler text
        subject, body, _ = mail[cid]
        assert subject == f"A quick reminder about invoice N-I{cid[1]}" and "always paid" not in body
    subject, body, _ = mail["C4"]  # in the customer's language
    assert subject == "Ein freundlicher Hinweis zu Rechnung N-I4" and "stets pünktlich gezahlt" in body


# ---- broken promise -----------------------------------------------------------------------------
def _promised(tmp_path, ledger, country="US"):
    make_source(tmp_path / "src", [invoice("I1", "C1", due_date="2026-11-02", payment_link="https://pay.example/1"),
                                   invoice("I2", "C2", due_date="2026-11-02")],
                [customer("C1", country=country), customer("C2")])
    for inv, cid in (("I1", "C1"), ("I2", "C2")):
        ledger.insert_rows(m.Outbox, [{
            "idempotency_key": f"{inv}:nudge:email", "mode": "live", "run_id": "earlier", "as_of": dt.date(2026, 11, 5),
            "invoice_id": inv, "customer_id": cid, "lane": "early", "step": "nudge", "channel": "email",
            "status": "sent", "delivered_on": dt.date(2026, 11, 5), "message_key": f"{cid}:2026-11-05:email",
            "needs_approval": False}])
    ledger.insert_rows(m.PromiseToPay, [{"invoice_id": "I1", "customer_id": "C1", "recorded_on": dt.date(2026, 11, 6),
                                         "promised_date": dt.date(2026, 11, 16), "note": "reply"}])


@pytest.mark.slow
def test_a_broken_promise_resumes_the_cadence_with_a_message_that_says_so(tmp_path, policy):
    ledger = _ledger(tmp_path)
    _promised(tmp_path, ledger)
    out, mail = _mail(tmp_path, ledger, policy, as_of=dt.date(2026, 11, 16))  # the promised day: still held
    assert out["planned"].set_index("invoice_id").at["I1", "reason"] == "promise_to_pay" and "C1" not in mail
    out, mail = _mail(tmp_path, ledger, policy)  # the business day after, nothing arrived
    subject, body, steps = mail["C1"]
    assert steps == ["promise_broken"]  # the cadence's follow-up waits behind it
    assert subject == "Invoice N-I1: the payment expected by November 16, 2026 has not arrived"
    assert body.startswith("Hi Pat,")
    assert "invoice N-I1 for $1,000.00, due on November 2, 2026, would be paid by November 16, 2026" in body and "resume from today" in body
    assert "https://pay.example/1" in body
    assert "Kind regards" in body
    assert mail["C2"][2] == ["follow_up"]  # the customer who promised nothing gets the cadence as before
    # Told once: with the message delivered, the next days plan the cadence again after the gap.
    rows = outbox_rows(out["actions"], out["planned"], mode="send", run_id="t", as_of=TUE, policy=policy)
    ledger.insert_outbox(rows.assign(status="sent", delivered_on=TUE))
    _, mail = _mail(tmp_path, ledger, policy, as_of=dt.date(2026, 11, 18))
    assert "C1" not in mail
    _, mail = _mail(tmp_path, ledger, policy, as_of=dt.date(2026, 11, 20))
    assert mail["C1"][2] == ["follow_up"] and "expected by" not in mail["C1"][1]


def test_the_broken_promise_message_is_written_in_the_customers_language(tmp_path, policy):
    ledger = _ledger(tmp_path)
    _promised(tmp_path, ledger, country="FR")
    _, mail = _mail(tmp_path, ledger, policy)
    subject, body, _ = mail["C1"]
    assert subject == "Facture N-I1 : le paiement annoncé pour le 16 novembre 2026 ne nous est pas parvenu"
    assert "Madame, Monsieur" in body and "Madame, Monsieur Pat" not in body and "nos relances habituelles" in body and "salutations distinguées" in body


# ---- partial dispute ------------------------------------------------------------------------------
def test_a_partial_dispute_holds_only_the_disputed_amount(tmp_path, policy):
    make_source(tmp_path / "src", [invoice("I1", "C1", due_date="2026-11-13"),
                                   invoice("I2", "C2", due_date="2026-11-13")],
                [customer("C1"), customer("C2")])
    ledger = _ledger(tmp_path)
    ledger.insert_rows(m.Dispute, [
        {"invoice_id": "I1", "customer_id": "C1", "opened_on": dt.date(2026, 11, 16), "amount_minor": 25000,
         "currency": "USD", "reason": "two licences too many", "reason_code": "quantity", "lines": "3"},
        {"invoice_id": "I2", "customer_id": "C2", "opened_on": dt.date(2026, 11, 16), "reason": "all of it"}])
    out, mail = _mail(tmp_path, ledger, policy)
    planned = out["planned"].set_index("invoice_id")
    assert planned.at["I1", "outcome"] == "action_today"           # the rest keeps its cadence
    assert (planned.at["I2", "outcome"], planned.at["I2", "reason"]) == ("held", "dispute")
    subject, body, _ = mail["C1"]
    assert "invoice N-I1 for $750.00" in body and "$1,000.00" not in body   # asks only for the undisputed part
    assert "Also open on your account:\n- N-I1: $250.00, due November 13, 2026 (under review)" in body
    assert "C2" not in mail


def test_a_dispute_reply_gets_a_reason_code_or_a_decision_asks_for_one(tmp_path, policy):
    invoices = pd.DataFrame([invoice("I1", "C1", due_date="2026-11-13"), invoice("I2", "C2", due_date="2026-11-13")])
    customers = pd.DataFrame([customer("C1"), customer("C2")])
    replies = pd.DataFrame([
        {"message_id": "<a@x>", "from_address": "ap@c1.example.com", "subject": "Re: Invoice N-I1",
         "body": "We dispute 250.00 of invoice N-I1: line 3 was billed at the wrong price.", "received_on": TUE},
        {"message_id": "<b@x>", "from_address": "ap@c2.example.com", "subject": "Re: Rechnung N-I2",
         "body": "Wir widersprechen der Rechnung N-I2.", "received_on": TUE}])
    ledger = _ledger(tmp_path)
    items, _ = triage(replies, invoices, customers, set(), as_of=TUE, country="US", finance="finance@yourco.example",
                      reason_codes=policy.disputes.reason_codes)
    ledger.record_replies(items)
    d = ledger.frame(m.Dispute).set_index("invoice_id")
    assert (d.at["I1", "reason_code"], d.at["I1", "lines"], d.at["I1", "amount_minor"]) == ("pricing", "3", 25000)
    assert d.at["I2", "reason_code"] == "unspecified"
    q = open_decisions(ledger)
    assert q["kind"].tolist() == ["dispute_reason"] and q["invoice_ids"].tolist() == ["I2"]
    assert dispute_details("Les lignes 2 et 4 sont en double", policy.disputes.reason_codes) == ("duplicate", "2, 4")


def test_a_clerk_codes_a_dispute_and_the_decision_closes(tmp_path, policy, monkeypatch):
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    ledger = _ledger(tmp_path)
    make_source(tmp_path / "src", [invoice("I1", "C1")], [customer("C1")])
    cli = CliRunner()
    r = cli.invoke(app, ["dispute", "open", "I1", "--customer", "C1", "--reason", "customer called",
                         "--source", f"csv:{tmp_path / 'src'}", "--on", "2026-11-17"])
    assert r.exit_code == 0, r.output
    assert open_decisions(ledger)["kind"].tolist() == ["dispute_reason"]
    r = cli.invoke(app, ["dispute", "code", "I1", "--code", "nonsense", "--on", "2026-11-17"])
    assert r.exit_code != 0 and "must be one of" in f"{r.output}{r.exception}"
    r = cli.invoke(app, ["dispute", "code", "I1", "--code", "damaged", "--on", "2026-11-17", "--by", "kim"])
    assert r.exit_code == 0, r.output
    assert open_decisions(ledger).empty and ledger.frame(m.Dispute)["reason_code"].tolist() == ["damaged"]


# ---- a question pauses the customer until answered -------------------------------------------------
def test_a_question_pauses_the_customers_reminders_until_someone_answers(tmp_path, policy, monkeypatch):
    make_source(tmp_path / "src", [invoice("I1", "C1", due_date="2026-11-13"),
                                   invoice("I1b", "C1", due_date="2026-11-30"),
                                   invoice("I2", "C2", due_date="2026-11-13")],
                [customer("C1"), customer("C2")])
    ledger = _ledger(tmp_path)
    replies = pd.DataFrame([{"message_id": "<q@x>", "from_address": "ap@c1.example.com",
                             "subject": "Re: Invoice N-I1", "body": "Could you send us the contract reference?",
                             "received_on": dt.date(2026, 11, 16)}])
    from connectors.sources import CsvSource

    src = CsvSource(tmp_path / "src")
    items, _ = triage(replies, src.invoices(), src.customers(), set(), as_of=dt.date(2026, 11, 16), country="US",
                      finance="finance@yourco.example")
    assert items[0]["reply"]["category"] == "question" and "paused until answered" in items[0]["reply"]["effect"]
    ledger.record_replies(items)
    task = ledger.frame(m.OwnerTask).iloc[0]
    assert "arflow answered C1" in task["subject"]
    for day in (TUE, dt.date(2026, 11, 27)):  # days later, still paused: nothing to C1, every invoice held once
        out, mail = _mail(tmp_path, ledger, policy, as_of=day)
        planned = out["planned"]
        assert planned["invoice_id"].is_unique and len(planned) == 3
        mine = planned[planned["customer_id"] == "C1"]
        assert set(zip(mine["outcome"], mine["reason"])) == {("held", "question")}
        assert "C1" not in mail
        assert "C2" in mail or day != TUE  # the other customer is chased as before
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    r = CliRunner().invoke(app, ["answered", "C1", "--note", "sent the reference", "--on", "2026-11-27"])
    assert r.exit_code == 0, r.output
    _, mail = _mail(tmp_path, ledger, policy, as_of=dt.date(2026, 11, 30))
    assert "C1" in mail   # answered: the cadence resumes
    r = CliRunner().invoke(app, ["answered", "C1", "--on", "2026-11-30"])
    assert r.exit_code != 0 and "no open question" in f"{r.output}{r.exception}"
    audit = ledger.frame(m.AuditLog)
    assert (audit["action"] == "question.answered").sum() == 1


# ---- a pre-due reminder says only what is true ----------------------------------------------------
def test_no_coming_due_note_to_an_overdue_customer_and_none_on_the_due_date(tmp_path, policy):
    # C1 owes an old invoice (its nudge went two days ago: nothing due for it today) and has one coming
    # due; C2 owes nothing overdue; C3's pre-due reminder was held back until the due date itself.
    make_source(tmp_path / "src", [invoice("I1", "C1", due_date="2026-10-20"),
                                   invoice("I1b", "C1", due_date="2026-11-20"),
                                   invoice("I2", "C2", due_date="2026-11-20"),
                                   invoice("I3", "C3", due_date="2026-11-17")],
                [customer("C1", segment="strategic"), customer("C2"), customer("C3")])
    ledger = _ledger(tmp_path)
    ledger.insert_rows(m.Outbox, [{
        "idempotency_key": "I1:follow_up:email", "mode": "live", "run_id": "earlier", "as_of": dt.date(2026, 11, 13),
        "invoice_id": "I1", "customer_id": "C1", "lane": "late", "step": "follow_up", "channel": "email",
        "status": "sent", "delivered_on": dt.date(2026, 11, 13), "message_key": "C1:2026-11-13:email",
        "needs_approval": False}])
    out, mail = _mail(tmp_path, ledger, policy)
    reasons = out["planned"].set_index("invoice_id")["reason"]
    assert "C1" not in mail and reasons["I1b"] == "account_overdue"
    assert "coming due" in mail["C2"][1]              # a customer with nothing overdue still hears it
    subject, body, _ = mail["C3"]  # never "is due <today>"
    assert subject == "Invoice N-I3 is due today" and "is due 2026-11-17" not in body and "due today" in body
