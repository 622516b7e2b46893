"""Send and draft modes end to end: the real smtplib talking to a real SMTP server (aiosmtpd), the
real Slack SDK posting to a local HTTP server, the ledger as the CRM's task list."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from tasks.decisions import DecisionError, open_decisions, settle
from tests.conftest import customer, invoice, make_source
from tests.flows.helpers import autopay_source as _autopay_source, delivered

D = dt.date
MON = D(2026, 11, 23)


def add_columns(path: Path, values: dict[str, dict[str, str]], key: str = "customer_id") -> None:
    """Add optional columns to a CSV: values[row key][column] = text."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = list(rows[0]) + sorted({c for v in values.values() for c in v} - set(rows[0]))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**{c: "" for c in cols}, **r, **values.get(r[key], {})})


def _slack_posts(server) -> list[dict]:
    return [json.loads(req.get_data()) for req, _ in server.log]


def test_send_mode_one_message_per_customer_once(env, smtp, slack):
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18", balance="100.00"),
                                    invoice("I2", due_date="2026-10-31", balance="200.00"),
                                    invoice("I3", "C2", due_date="2026-11-18")],
                      [customer("C1", owner_ae_email="dana.ae@yourco.example"), customer("C2")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    box = Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.Outbox)
    assert s["sent"] == 3 and s["failed"] == 0, box[["idempotency_key", "status", "closed_reason"]].to_string()
    (c1,) = smtp.to("ap@c1.example.com")
    (c2,) = smtp.to("ap@c2.example.com")
    assert len(smtp.messages) == 2
    body = c1.get_content()
    # I2 (23 days) is seen for the first time: its friendly follow-up leads, not a firm reminder.
    assert "N-I1: $100.00" in body and "N-I2: $200.00" in body
    assert c1["Subject"] == "A quick reminder about 2 open invoices"
    assert "dana.ae@yourco.example" in c1["From"] and c1["Sender"] == "ar@yourco.example"
    assert c1["Message-ID"] and c1["Message-ID"] != c2["Message-ID"]
    (post,) = _slack_posts(slack)
    assert "N-I2" in post["text"] and "23 days" in post["text"]
    assert set(box["status"]) == {"sent"} and set(box["delivered_on"]) == {MON}

    again = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")  # a re-run of the same day
    assert again["sent"] == 0 and again["outbox_new"] == 0
    assert len(smtp.messages) == 2 and len(_slack_posts(slack)) == 1


def test_send_mode_needs_an_smtp_server(env, monkeypatch):
    from connectors.messaging import ChannelNotConfigured

    monkeypatch.delenv("ARFLOW_SMTP_HOST", raising=False)
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18")], [customer("C1")])
    with pytest.raises(ChannelNotConfigured, match="ARFLOW_SMTP_HOST"):
        daily_ar(as_of=MON, source=f"csv:{src}", mode="send")


def test_draft_then_approve_then_verify_at_the_source_before_sending(env, smtp):
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18", balance="100.00"),
                                    invoice("I2", due_date="2026-10-31", balance="200.00"),
                                    invoice("I3", "C2", due_date="2026-11-18")],
                      [customer("C1"), customer("C2"), customer("C3")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="draft")
    assert s["sent"] == 0 and s["drafted"] == s["decisions_opened"] == 3 and not smtp.messages
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    queue = open_decisions(ledger)
    assert len(queue) == 3
    c1 = queue[queue["customer_id"] == "C1"].iloc[0]
    ctx = json.loads(c1["context"])
    assert {i["invoice_number"] for i in ctx["invoices"]} == {"N-I1", "N-I2"}
    assert "N-I1" in ctx["proposed_text"] and ctx["payment_history"]["paid_invoices"] == 0
    for d in queue.itertuples():
        settle(ledger, int(d.id), "approve", by="clerk", on=MON, note="ok")
    with pytest.raises(DecisionError, match="already approved"):
        settle(ledger, int(c1["id"]), "reject", by="clerk", on=MON)

    # Before the next run: I3 was paid at the source, and a dispute opened on I1.
    with open(src / "invoices.csv") as fh:
        text = fh.read()
    (src / "invoices.csv").write_text(text.replace("I3,C2,N-I3,2026-10-01,2026-11-18,net30,USD,1000.00,1000.00",
                                                   "I3,C2,N-I3,2026-10-01,2026-11-18,net30,USD,1000.00,0.00"))
    ledger.insert_rows(m.Dispute, [{"invoice_id": "I1", "customer_id": "C1", "opened_on": MON}])
    s = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="send")
    # C1's approved text listed I1, now disputed: rendered again without it, it goes back to the
    # clerk with the difference instead of leaving unseen.
    assert s["skipped_at_send"] == {"paid": 1, "dispute": 1, "changed_since_approval": 1} and not smtp.messages
    back = open_decisions(ledger)
    assert back["customer_id"].tolist() == ["C1"]
    ctx = json.loads(back["context"].iloc[0])
    assert [c["field"] for c in ctx["changed_since_approval"]["changes"]] == ["subject", "body"]
    assert "N-I1" not in ctx["proposed_text"] and "N-I2" in ctx["proposed_text"]
    settle(ledger, int(back["id"].iloc[0]), "approve", by="clerk", on=D(2026, 11, 24))
    daily_ar(as_of=D(2026, 11, 25), source=f"csv:{src}", mode="send")
    assert [msg["To"] for _, msg in smtp.messages] == ["ap@c1.example.com"]
    body = smtp.messages[0][1].get_content()
    assert "N-I2" in body and "N-I1" not in body  # rendered again without the disputed invoice
    assert body.replace("\r\n", "\n").strip() == ctx["proposed_text"].strip()  # exactly what the clerk approved the second time
    box = ledger.frame(m.Outbox).set_index("invoice_id")
    assert box.loc["I3", "closed_reason"] == "changed at source: paid" and box.loc["I3", "status"] == "skipped"
    audit = ledger.frame(m.AuditLog)
    assert (audit["action"] == "decision.approved").sum() == 4 and (audit["action"] == "decision.reopened").sum() == 1


def test_failed_auto_charge_tells_the_customer_the_same_run_and_joins_the_early_lane(env, smtp, slack):
    src = _autopay_source(env)
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["charges"] == 2 and s["charges_failed"] == 1 and s["finance_alerts"] == 0
    (notice,) = smtp.to("ap@c3.example.com")
    assert "did not go through" in notice.get_content() and "update your payment method" in notice.get_content()
    assert not smtp.to("ap@c4.example.com")
    payments = (src / "payments.csv").read_text()
    assert "C4,59.00,USD,2026-11-23,Invoice N-I5 auto-charge" in payments and "C3" not in payments
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    box = ledger.frame(m.Outbox).set_index("idempotency_key")
    assert box.loc["I4:auto_charge:billing", "closed_reason"] == "charge_failed: card_expired"

    s2 = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="send")
    out = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == s2["run_id"]).set_index("invoice_id")
    assert out.loc["I4", "lane"] == "early"  # flagged payment_failed: not silent in current until day 15
    assert s2["charges"] == 0  # never charged twice


def test_in_draft_mode_the_payment_failed_message_waits_for_its_own_decision(env, smtp):
    src = _autopay_source(env)
    daily_ar(as_of=MON, source=f"csv:{src}", mode="draft")  # the charges themselves wait for approval
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    for d in open_decisions(ledger).itertuples():
        settle(ledger, int(d.id), "approve", by="clerk", on=MON)
    s = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="draft")
    assert s["charges"] == 2 and s["charges_failed"] == 1 and s["decisions_opened"] >= 1
    q = open_decisions(ledger)
    notice = q[q["kind"] == "payment_failed_notice"]
    assert notice["customer_id"].tolist() == ["C3"] and not smtp.messages
    settle(ledger, int(notice["id"].iloc[0]), "approve", by="clerk", on=D(2026, 11, 24))
    daily_ar(as_of=D(2026, 11, 25), source=f"csv:{src}", mode="draft")
    (msg,) = smtp.to("ap@c3.example.com")
    assert "did not go through" in msg.get_content()


def test_finance_is_alerted_when_the_payment_failed_message_cannot_go(env, smtp, slack):
    src = _autopay_source(env)
    smtp.refuse = {"ap@c3.example.com"}
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["charges_failed"] == 1 and s["finance_alerts"] == 1 and s["failed"] == 1
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    tasks = ledger.frame(m.OwnerTask)
    alert = tasks[tasks["kind"] == "alert"].iloc[0]
    assert alert["owner"] == "finance@yourco.example" and "card_expired" in alert["body"]
    assert any("could not be told" in p["text"] for p in _slack_posts(slack))


def test_service_pause_warning_waits_for_a_person_and_copies_only_a_designated_cfo(env, smtp):
    src = make_source(env / "src", [invoice("I1", due_date="2026-10-21"), invoice("I2", "C2", due_date="2026-10-21")],
                      [customer("C1"), customer("C2")])
    add_columns(src / "customers.csv", {"C1": {"cfo_email": "cfo@c1.example.com"}})
    for i, c in (("I1", "C1"), ("I2", "C2")):
        delivered(env, i, c, "firm_reminder", D(2026, 11, 13))
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")  # day 33: service-pause warning
    assert s["decisions_opened"] == 2 and not smtp.messages
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    q = open_decisions(ledger).set_index("customer_id")
    assert set(q["kind"]) == {"service_pause_warning"}
    settle(ledger, int(q.loc["C1", "id"]), "approve", by="clerk", on=MON, note="customer was warned by phone")
    settle(ledger, int(q.loc["C2", "id"]), "reject", by="clerk", on=MON, note="strategic renewal next week")
    s = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="send")
    (msg,) = smtp.to("ap@c1.example.com")
    assert msg["Cc"] == "cfo@c1.example.com" and "suspend" in msg.get_content()
    assert not smtp.to("ap@c2.example.com")
    box = ledger.frame(m.Outbox, m.Outbox.step == "service_pause_warning").set_index("invoice_id")
    assert box.loc["I2", "status"] == "rejected" and "strategic renewal" in box.loc["I2", "closed_reason"]
    decisions = ledger.frame(m.Decision).set_index("customer_id")
    assert decisions.loc["C1", "status"] == "approved" and decisions.loc["C1", "decided_by"] == "clerk"


def test_critical_decisions_set_up_a_payment_plan_or_a_write_off(env, smtp):
    src = make_source(env / "src", [invoice("I1", issue_date="2026-08-01", due_date="2026-08-31", balance="900.00"),
                                    invoice("I2", "C2", issue_date="2026-08-01", due_date="2026-08-31")],
                      [customer("C1"), customer("C2")])
    # Never chased before: each customer is reminded first; the decisions open once the policy's
    # gap after that reminder has passed (Thanksgiving on the 26th: the 27th).
    first = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert first["sent"] == 2 and len(smtp.to("ap@c1.example.com")) == 1
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    assert open_decisions(ledger).empty
    daily_ar(as_of=D(2026, 11, 27), source=f"csv:{src}", mode="send")
    q = open_decisions(ledger)
    choice = q[q["kind"] == "payment_plan_or_write_off"].set_index("customer_id")
    assert json.loads(choice.loc["C1", "context"])["customer_reminded"]["on"] == str(MON)
    with pytest.raises(DecisionError, match="--choice"):
        settle(ledger, int(choice.loc["C1", "id"]), "approve", by="clerk", on=MON)
    settle(ledger, int(choice.loc["C1", "id"]), "approve", by="clerk", on=MON, choice="payment_plan", installments=3)
    settle(ledger, int(choice.loc["C2", "id"]), "approve", by="controller", on=MON, choice="write_off")
    s = daily_ar(as_of=D(2026, 11, 30), source=f"csv:{src}", mode="send")
    assert s["carried_out"] == 2 and s["sent"] == 3  # the two decisions, and the plan's proposal e-mail
    plan = ledger.frame(m.PaymentPlan).iloc[0]
    inst = ledger.frame(m.Installment)
    assert plan["invoice_id"] == "I1" and inst["amount_minor"].tolist() == [30000, 30000, 30000]
    reminder, proposal = smtp.to("ap@c1.example.com")
    assert "installments" in proposal.get_content() and "300.00" in proposal.get_content()
    export = env / "exports" / "collections-2026-11-30.csv"
    rows = list(csv.DictReader(open(export)))
    assert [r["invoice_id"] for r in rows] == ["I2"] and rows[0]["amount"] == "1000.00"
    s = daily_ar(as_of=D(2026, 12, 1), source=f"csv:{src}", mode="send")
    out = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == s["run_id"]).set_index("invoice_id")
    assert out.loc["I1", "reason"] == "payment_plan" and out.loc["I2", "reason"] == "written_off"
    assert len(list(csv.DictReader(open(export)))) == 1  # exported once


def test_quarter_end_batches_owner_escalations_and_unacknowledged_ones_reach_the_finance_lead(env, smtp):
    from tasks.delivery import in_quarter_end

    ledger_url = f"sqlite:///{env / 'ledger.db'}"
    src = make_source(env / "src", [invoice("I1", due_date="2026-12-18", issue_date="2026-11-18"),
                                    invoice("I2", "C2", due_date="2026-12-18", issue_date="2026-11-18"),
                                    invoice("I3", "C3", due_date="2026-12-18", issue_date="2026-11-18")],
                      [customer("C1", owner_ae_email="dana.ae@yourco.example"),
                       customer("C2", owner_ae_email="dana.ae@yourco.example"),
                       customer("C3", owner_ae_email="sam.ae@yourco.example")])
    from arflow.policy import load_policy
    from arflow.config import ROOT

    policy = load_policy(ROOT / "policy.yaml")
    # The last five business days of Q4 2026 (Christmas is not one): Dec 24, 28, 29, 30, 31.
    assert [in_quarter_end(D(2026, 12, d), policy) for d in (23, 24, 28, 31)] == [False, True, True, True]
    s = daily_ar(as_of=D(2026, 12, 28), source=f"csv:{src}", mode="send")  # day 10: the owners are looped in
    assert s["digest_items"] == 3 and s["owners"]["digests"] == 2
    dana = smtp.to("dana.ae@yourco.example")
    assert len(dana) == 1 and dana[0]["Cc"] == "finance-lead@yourco.example"
    assert "N-I1" in dana[0].get_content() and "N-I2" in dana[0].get_content()
    assert "N-I3" not in dana[0].get_content() and len(smtp.to("sam.ae@yourco.example")) == 1

    ledger = Ledger(ledger_url)
    items = ledger.frame(m.OwnerTask, m.OwnerTask.kind == "digest_item").set_index("invoice_ids")
    p = __import__("tests.flows.test_cli", fromlist=["_run"])._run(
        ["ack", str(int(items.loc["I1", "id"])), "--by", "dana"], env, ARFLOW_DB_URL=ledger_url)
    assert p.returncode == 0, p.stderr
    s = daily_ar(as_of=D(2026, 12, 30), source=f"csv:{src}", mode="send")
    assert s["owners"]["ack_timeouts"] == 0  # two business days: not yet
    s = daily_ar(as_of=D(2026, 12, 31), source=f"csv:{src}", mode="send")
    assert s["owners"]["ack_timeouts"] == 2
    late = ledger.frame(m.OwnerTask, m.OwnerTask.kind == "ack_timeout")
    assert set(late["owner"]) == {"finance-lead@yourco.example"} and set(late["invoice_ids"]) == {"I2", "I3"}


def test_outside_quarter_end_each_owner_task_stands_alone(env, smtp):
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-13", issue_date="2026-10-13")],
                      [customer("C1", owner_ae_email="dana.ae@yourco.example")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")  # day 10, mid-quarter
    assert s["digest_items"] == 0 and s["owners"]["digests"] == 0
    tasks = Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.OwnerTask)
    assert tasks["kind"].tolist() == ["escalation"] and tasks["owner"].tolist() == ["dana.ae@yourco.example"]
    assert "N-I1" in tasks["subject"].iloc[0]


def test_payment_checkpoint_in_send_mode_sends_each_receipt_once(env, smtp):
    from flows.payment_checkpoint import payment_checkpoint

    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18", invoice_number="A-1")], [customer("C1")],
                      payments=[{"payment_id": "P1", "customer_id": "C1", "amount": "1000.00", "currency": "USD",
                                 "received_date": "2026-11-20", "reference": "Invoice A-1"}])
    s = payment_checkpoint(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["receipts_sent"] == 1
    (receipt,) = smtp.to("ap@c1.example.com")
    assert "payment received for invoice A-1" in receipt["Subject"]
    again = payment_checkpoint(as_of=MON, source=f"csv:{src}", mode="send")
    assert again["receipts_sent"] == 0 and len(smtp.messages) == 1


def test_a_saved_smtp_block_wins_over_the_environment(env, smtp, monkeypatch):
    from arflow.blocks import SmtpServer

    port = smtp_port = int(__import__("os").environ["ARFLOW_SMTP_PORT"])
    SmtpServer(host="127.0.0.1", port=smtp_port, mail_from="billing@blockco.example").save("arflow-smtp-test",
                                                                                          overwrite=True)
    monkeypatch.setenv("ARFLOW_SMTP_BLOCK", "arflow-smtp-test")
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "192.0.2.1")  # unreachable: the block must win
    monkeypatch.setenv("ARFLOW_SMTP_PORT", str(port + 1))
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18")], [customer("C1", owner_ae_email="")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["sent"] == 1
    (msg,) = smtp.to("ap@c1.example.com")
    assert msg["From"] == "\"YourCo Inc.\" <billing@blockco.example>"  # the block's address, the company's name (policy)


def _pause_and_nudge(env):
    """C1 owes a service-pause warning (day 33, the CFO copied) and a nudge (day 5) in one message."""
    src = make_source(env / "src", [invoice("I0", due_date="2026-11-18", invoice_number="N-I0"),
                                    invoice("I1", due_date="2026-10-21")], [customer("C1")])
    add_columns(src / "customers.csv", {"C1": {"cfo_email": "cfo@c1.example.com"}})
    delivered(env, "I1", "C1", "firm_reminder", D(2026, 11, 13))
    return src


def test_the_approver_sees_the_envelope_the_message_leaves_with(env, smtp):
    src = _pause_and_nudge(env)
    daily_ar(as_of=MON, source=f"csv:{src}", mode="draft")
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    (d,) = open_decisions(ledger).itertuples()
    ctx = json.loads(d.context)
    assert ctx["envelope"] == {"from": "\"YourCo Inc.\" <ae@example.com>", "sender": "ar@yourco.example",
                               "to": ["ap@c1.example.com"], "cc": ["cfo@c1.example.com"],  # from the owner (policy)
                               "reply_to": "ar@yourco.example",  # replies reach the AR mailbox triage reads
                               "attachments": []}
    assert ctx["recipients"] == "ap@c1.example.com,cfo@c1.example.com"
    from flows.decisions import describe

    shown = describe({"id": d.id, "kind": d.kind, "customer_id": d.customer_id, "context": d.context})
    assert "**To:** ap@c1.example.com" in shown and "**Cc:** cfo@c1.example.com" in shown
    settle(ledger, int(d.id), "approve", by="clerk", on=MON)
    daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="draft")
    ((rcpt, msg),) = smtp.messages
    assert msg["To"] == "ap@c1.example.com" and msg["Cc"] == "cfo@c1.example.com"
    assert msg["From"] == "\"YourCo Inc.\" <ae@example.com>" and msg["Sender"] == "ar@yourco.example"
    assert msg["Reply-To"] == "ar@yourco.example"
    assert sorted(rcpt) == ["ap@c1.example.com", "cfo@c1.example.com"]
    assert msg["Subject"] == ctx["proposed_subject"] and msg.get_content().replace("\r\n", "\n").strip() == ctx["proposed_text"].strip()


def test_a_message_that_changed_after_approval_goes_back_with_the_difference(env, smtp, monkeypatch):
    src = _pause_and_nudge(env)
    daily_ar(as_of=MON, source=f"csv:{src}", mode="draft")
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    (d,) = open_decisions(ledger).itertuples()
    settle(ledger, int(d.id), "approve", by="clerk", on=MON)
    monkeypatch.setenv("ARFLOW_MAIL_FROM", "billing@yourco.example")  # the mail settings changed since
    s = daily_ar(as_of=D(2026, 11, 24), source=f"csv:{src}", mode="draft")
    assert not smtp.messages and s["skipped_at_send"] == {"changed_since_approval": 2}
    (again,) = open_decisions(ledger).itertuples()
    assert again.id == d.id and again.decided_by is None
    ctx = json.loads(again.context)
    change = ctx["changed_since_approval"]
    assert change["approved_by"] == "clerk" and [c["field"] for c in change["changes"]] == ["sender"]
    assert change["changes"][0] == {"field": "sender", "approved": "ar@yourco.example", "now": "billing@yourco.example"}
    assert ctx["envelope"]["sender"] == "billing@yourco.example" and ctx["revision"] == 1
    audit = ledger.frame(m.AuditLog)
    assert (audit["action"] == "decision.reopened").sum() == 1
    settle(ledger, int(d.id), "approve", by="lead", on=D(2026, 11, 24))
    daily_ar(as_of=D(2026, 11, 25), source=f"csv:{src}", mode="draft")
    ((_, msg),) = smtp.messages
    assert msg["Sender"] == "billing@yourco.example" and msg["Cc"] == "cfo@c1.example.com"


def test_the_months_first_reminder_carries_the_statement_of_account(env, smtp, monkeypatch):
    """policy.statements.with_reminder: the customer's first reminder of the month has their
    statement attached as a PDF whose text lists the open items and the balance due; the month's
    later reminders carry none."""
    import io

    import pypdf

    from arflow.config import ROOT

    pol = env / "policy.yaml"
    pol.write_text((ROOT / "policy.yaml").read_text().replace("with_reminder: false", "with_reminder: true", 1))
    monkeypatch.setenv("ARFLOW_POLICY", str(pol))
    src = make_source(env / "src", [invoice("I1", invoice_number="1001", due_date="2026-11-18", amount="100.00",
                                            balance="100.00"),
                                    invoice("I2", invoice_number="1002", due_date="2026-10-31", amount="200.00",
                                            balance="200.00")],
                      [customer("C1", name="Globex Corp")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["sent"] >= 1 and s["failed"] == 0
    (msg,) = smtp.to("ap@c1.example.com")
    (pdf,) = list(msg.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == "statement-C1-2026-11-23.pdf"
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.get_content())).pages)
    for words in ("Statement of account", "Globex Corp", "Open items", "1001", "1002", "100.00", "200.00",
                  "Balance due", "300.00 USD"):
        assert words in text, (words, text)
    assert "N-I1" not in text and "1001" in msg.get_body(("plain",)).get_content()
    # The month's next reminder goes without one.
    later = D(2026, 11, 30)
    daily_ar(as_of=later, source=f"csv:{src}", mode="send")
    second = smtp.to("ap@c1.example.com")[1:]
    assert second and all(not list(m.iter_attachments()) for m in second)
