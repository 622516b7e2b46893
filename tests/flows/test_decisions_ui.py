"""A decision in the Prefect UI: a paused flow run with a RunInput form; the answer is recorded as
the CLI records it, and the next run carries it out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time

from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from flows.decisions import describe, review_decision
from tests.conftest import customer, invoice, make_source
from tests.cli import in_folder as _run
from tests.flows.helpers import delivered

MON = dt.date(2026, 11, 23)


def test_a_decision_answered_in_the_prefect_form(env, smtp):  # noqa: F811
    src = make_source(env / "src", [invoice("I1", due_date="2026-10-21")], [customer("C1")])
    delivered(env, "I1", "C1", "firm_reminder", dt.date(2026, 11, 13))
    daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    ledger = Ledger(f"sqlite:///{env / 'ledger.db'}")
    (d,) = ledger.frame(m.Decision).itertuples()
    result = {}
    worker = threading.Thread(target=lambda: result.update(review_decision(d.id, timeout_seconds=300,
                                                                           poll_interval=1)))
    worker.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        run_id = ledger.frame(m.Decision, m.Decision.id == d.id)["flow_run_id"].iloc[0]
        if run_id:
            async def state():
                async with get_client() as client:
                    return (await client.read_flow_run(run_id)).state
            s = asyncio.run(state())
            if s.is_paused():
                break
        time.sleep(0.5)
    else:
        raise AssertionError("the review run never paused for input")
    text = describe(ledger.frame(m.Decision, m.Decision.id == d.id).iloc[0])  # what the form shows above it
    assert "N-I1" in text and "service pause warning" in text and "suspend" in text
    resume_flow_run(run_id, run_input={"verdict": "approve", "note": "called the customer", "decided_by": "dana"})
    worker.join(120)
    assert result["status"] == "approved"
    row = ledger.frame(m.Decision, m.Decision.id == d.id).iloc[0]
    assert row["decided_by"] == "dana" and row["note"] == "called the customer"
    daily_ar(as_of=dt.date(2026, 11, 24), source=f"csv:{src}", mode="send")
    assert [msg["To"] for _, msg in smtp.messages] == ["ap@c1.example.com"]


def test_queue_and_decide_on_the_command_line(env, smtp):  # noqa: F811
    src = make_source(env / "src", [invoice("I1", due_date="2026-10-21"), invoice("I2", "C2", due_date="2026-10-21")],
                      [customer("C1"), customer("C2")])
    for i, c in (("I1", "C1"), ("I2", "C2")):
        delivered(env, i, c, "firm_reminder", dt.date(2026, 11, 13))
    daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    p = _run(["queue", "--json"], env, ARFLOW_DB_URL=f"sqlite:///{env / 'ledger.db'}")
    assert p.returncode == 0, p.stderr
    q = json.loads(p.stdout)
    assert q["open"] == 2
    first = q["decisions"][0]
    assert first["kind"] == "service_pause_warning" and first["context"]["invoices"][0]["days_past_due"] == 33
    assert "suspend" in first["context"]["proposed_text"]
    body = env / "edited.txt"
    body.write_text("Hi Pat,\n\nPlease call us about invoice N-I1 this week.\n\nRegards,\nDana")
    p = _run(["decide", str(first["id"]), "approve", "--body-file", str(body), "--note", "softer", "--by", "dana"],
             env, ARFLOW_DB_URL=f"sqlite:///{env / 'ledger.db'}")
    assert p.returncode == 0, p.stderr
    p = _run(["decide", str(first["id"]), "reject"], env, ARFLOW_DB_URL=f"sqlite:///{env / 'ledger.db'}")
    assert p.returncode == 2 and "already approved" in p.stderr
    p = _run(["decide", "999", "approve"], env, ARFLOW_DB_URL=f"sqlite:///{env / 'ledger.db'}")
    assert p.returncode == 2 and "no decision 999" in p.stderr
    p = _run(["queue", "--json"], env, ARFLOW_DB_URL=f"sqlite:///{env / 'ledger.db'}")
    assert json.loads(p.stdout)["open"] == 1
    daily_ar(as_of=dt.date(2026, 11, 24), source=f"csv:{src}", mode="send")
    (msg,) = [msg for _, msg in smtp.messages]
    assert "Please call us about invoice N-I1" in msg.get_content()  # the edited text, as approved
    audit = Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.AuditLog)
    row = audit[audit["action"] == "decision.approved"].iloc[0]
    assert row["actor"] == "dana" and json.loads(row["detail"])["edited"] is True


def _decision(kind: str, **context) -> dict:
    return {"id": 7, "kind": kind, "customer_id": "C1", "context": json.dumps({"customer": "Customer C1", **context})}


def test_the_form_offers_only_what_fits_the_decision_and_starts_from_the_proposed_text():
    from flows.decisions import form_for

    message = form_for(_decision("service_pause_warning", proposed_subject="Action needed: N-I1",
                                 proposed_text="Hi Pat,\n\nPlease pay N-I1.", recipients="ap@c1.example.com"))
    schema = message.model_json_schema()
    assert set(schema["properties"]) == {"verdict", "subject", "body", "note", "decided_by"}
    assert schema["properties"]["subject"]["default"] == "Action needed: N-I1"
    assert schema["properties"]["body"]["default"] == "Hi Pat,\n\nPlease pay N-I1."
    assert set(schema["required"]) == {"verdict", "decided_by"}  # who decided is never a default
    assert "> Please pay N-I1." in message._description  # the proposed text as a quote: it wraps

    plan = form_for(_decision("payment_plan_or_write_off")).model_json_schema()
    assert set(plan["properties"]) == {"decision", "installments", "note", "decided_by"}
    assert set(plan["required"]) == {"decision", "decided_by"}
    assert plan["properties"]["decision"]["enum"] == ["payment_plan", "write_off", "reject"]

    doubt = form_for(_decision("delivery_unknown", question="Was this message delivered?")).model_json_schema()
    assert set(doubt["properties"]) == {"answer", "note", "decided_by"}
    pause = form_for(_decision("service_pause")).model_json_schema()
    assert set(pause["properties"]) == {"verdict", "note", "decided_by"}


def test_a_form_answer_is_settled_as_the_cli_would():
    from tasks.decisions import settlement

    ctx = {"proposed_subject": "Subject", "proposed_text": "Text\nline two"}
    assert settlement("firm_reminder", ctx, {"verdict": "approve", "subject": "Subject", "body": "Text\r\nline two",
                                             "decided_by": " Dana ", "note": ""}) == \
        {"by": "Dana", "note": "", "verdict": "approve"}  # sent as proposed: not an edit
    edited = settlement("firm_reminder", ctx, {"verdict": "approve", "subject": "Subject", "body": "Softer text",
                                               "decided_by": "Dana"})
    assert edited["body"] == "Softer text" and "subject" not in edited
    assert settlement("payment_plan_or_write_off", {}, {"decision": "write_off", "installments": 6,
                                                        "decided_by": "Dana"}) == \
        {"by": "Dana", "note": "", "verdict": "approve", "choice": "write_off", "installments": None}
    assert settlement("payment_plan_or_write_off", {}, {"decision": "reject", "decided_by": "Dana"})["verdict"] == "reject"
    assert settlement("delivery_unknown", {}, {"answer": "treat_as_delivered", "decided_by": "Dana"})["verdict"] == "reject"
