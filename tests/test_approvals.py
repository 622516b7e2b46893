"""Who may decide what (issue 23, item 10): the policy's approvers and limits per decision kind and
amount; `arflow decide --by` checked against them with a refusal that names the limit and who may;
the Prefect form offers only the people who may."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests.cli import in_folder as _run

pytestmark = pytest.mark.usefixtures("prefect_server")  # the CLI runs in this process, on the session's server

ON = dt.date(2026, 11, 23)


def _decision(ledger, key, kind, customer, amounts, currency="USD"):
    invoices = [{"invoice_id": f"{key}-{n}", "invoice_number": f"N-{key}-{n}", "amount": a, "currency": currency,
                 "due_date": "2026-09-01", "days_past_due": 83} for n, a in enumerate(amounts)]
    ledger.insert_rows(m.Decision, [{"decision_key": key, "kind": kind, "customer_id": customer,
                                     "invoice_ids": ",".join(i["invoice_id"] for i in invoices), "opened_on": ON,
                                     "run_id": "r1", "status": "open",
                                     "context": json.dumps({"customer": customer, "invoices": invoices})}])
    return int(ledger.frame(m.Decision, m.Decision.decision_key == key)["id"].iloc[0])


def test_a_write_off_above_the_limit_needs_the_finance_lead(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    big = _decision(ledger, "big", "payment_plan_or_write_off", "C1", ["9000.00", "6000.00"])
    small = _decision(ledger, "small", "payment_plan_or_write_off", "C2", ["2500.00"])
    p = _run(["decide", str(big), "approve", "--choice", "write_off", "--by", "clerk"], tmp_path)
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert "clerk may not approve decision" in line and "write off, USD 15,000.00" in line
    assert "finance_lead (finance-lead@yourco.example)" in line and "up to USD 10000.00" in line
    assert ledger.decision(big)["status"] == "open"
    refused = ledger.frame(m.AuditLog, m.AuditLog.action == "decision.refused")
    assert refused["actor"].tolist() == ["clerk"] and refused["entity_id"].tolist() == [str(big)]
    # Under the limit the clerk may; the rejection of the big one too (nothing is written off).
    assert _run(["decide", str(small), "approve", "--choice", "write_off", "--by", "clerk"], tmp_path).returncode == 0
    assert ledger.decision(small)["decided_by"] == "clerk"
    p = _run(["decide", str(big), "approve", "--choice", "write_off", "--by", "Finance-Lead@yourco.example"],
             tmp_path)
    assert p.returncode == 0, p.stderr
    assert ledger.decision(big)["status"] == "approved" and ledger.decision(big)["choice"] == "write_off"
    approved = ledger.frame(m.AuditLog, m.AuditLog.action == "decision.approved")
    assert approved["actor"].tolist() == ["clerk", "Finance-Lead@yourco.example"]


def _closed_policy(tmp_path) -> Path:
    pol = tmp_path / "policy.yaml"
    text = Path("policy.yaml").read_text().replace('ar_team: ["*"]', "ar_team: [dana, sam]")
    text = text.replace("    - {kinds: [write_off], roles: [finance_lead]}",
                        "    - {kinds: [write_off], roles: [finance_lead]}\n"
                        "    - {kinds: [service_pause_warning], up_to: {USD: \"5000.00\"}, roles: [ar_team]}\n"
                        "    - {kinds: [\"*\"], roles: [finance_lead]}")
    pol.write_text(text)
    return pol


def test_named_approvers_and_a_catch_all_rule(tmp_path):
    pol = str(_closed_policy(tmp_path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    warn = _decision(ledger, "w", "service_pause_warning", "C1", ["1200.00"])
    pause = _decision(ledger, "p", "service_pause", "C1", ["1200.00"])
    eur = _decision(ledger, "e", "service_pause_warning", "C2", ["100.00"], currency="EUR")
    p = _run(["decide", str(warn), "approve", "--by", "mallory"], tmp_path, ARFLOW_POLICY=pol)
    assert p.returncode == 2 and "it needs ar_team (dana, sam)" in p.stderr
    assert _run(["decide", str(warn), "approve", "--by", "Dana"], tmp_path, ARFLOW_POLICY=pol).returncode == 0
    p = _run(["decide", str(pause), "reject", "--by", "sam"], tmp_path, ARFLOW_POLICY=pol)
    assert p.returncode == 2 and "finance_lead (finance-lead@yourco.example)" in p.stderr
    # A currency the limit does not name is not covered by it: the catch-all decides.
    p = _run(["decide", str(eur), "approve", "--by", "sam"], tmp_path, ARFLOW_POLICY=pol)
    assert p.returncode == 2 and "EUR 100.00" in p.stderr and "it needs finance_lead" in p.stderr


def test_deciding_for_a_customer_settles_all_of_its_decisions_or_none(tmp_path):
    pol = str(_closed_policy(tmp_path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    a = _decision(ledger, "a", "service_pause_warning", "C1", ["1000.00"])
    b = _decision(ledger, "b", "service_pause_warning", "C1", ["900.00", "100.00"])
    other = _decision(ledger, "o", "service_pause_warning", "C2", ["1000.00"])
    p = _run(["decide", "--customer", "C1", "approve", "--by", "dana", "--note", "called them"], tmp_path,
             ARFLOW_POLICY=pol)
    assert p.returncode == 0, p.stderr
    assert [ledger.decision(i)["status"] for i in (a, b, other)] == ["approved", "approved", "open"]
    assert ledger.decision(b)["note"] == "called them"
    c = _decision(ledger, "c", "service_pause_warning", "C2", ["9000.00"])  # above the team's limit
    p = _run(["decide", "--customer", "C2", "approve", "--by", "dana"], tmp_path, ARFLOW_POLICY=pol)
    assert p.returncode == 2 and f"decision {c}" in p.stderr
    assert ledger.decision(other)["status"] == "open" and ledger.decision(c)["status"] == "open"  # none settled
    for args, message in ((["--customer", "C9", "approve"], "no open decision"),
                          (["--customer", "C2", "approve", "x"], "give only the verdict"),
                          (["C2", "approve"], "--customer C2"),
                          (["--customer", "C2", "approve", "--subject", "x"], "edit one decision")):
        p = _run(["decide", *args], tmp_path, ARFLOW_POLICY=pol)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)


def test_the_form_offers_only_the_people_who_may(tmp_path):
    from arflow.policy import load_policy
    from flows.decisions import form_for

    approvals = load_policy(_closed_policy(tmp_path)).approvals
    ctx = {"customer": "C1", "proposed_subject": "S", "proposed_text": "T",
           "invoices": [{"invoice_id": "I1", "invoice_number": "N1", "amount": "1000.00", "currency": "USD",
                         "due_date": "2026-10-01", "days_past_due": 30}]}
    d = {"id": 3, "kind": "service_pause_warning", "customer_id": "C1", "context": json.dumps(ctx)}
    schema = form_for(d, approvals=approvals).model_json_schema()
    assert schema["properties"]["decided_by"]["enum"] == ["dana", "sam"] and "decided_by" in schema["required"]
    open_policy = load_policy("policy.yaml").approvals  # the demo's: anyone may, a free text
    assert "enum" not in form_for(d, approvals=open_policy).model_json_schema()["properties"]["decided_by"]
