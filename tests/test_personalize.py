"""Personalization: the model's draft replaces the approved e-mail only when it keeps every fact and
passes the guardrails; otherwise the approved text goes, and the reason is counted."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from arflow.config import ROOT
from arflow.policy import load_policy
from connectors.llm import Claude
from tasks.personalize import Personalizer
from tasks.touches import outbox_rows
from tests.conftest import customer, invoice, make_source
from connectors.fake_anthropic import FakeAnthropic
from tests.pipeline import run

AS_OF = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    policy = load_policy(ROOT / "policy.yaml")
    folder = make_source(tmp_path_factory.mktemp("p") / "src",
                         [invoice("I1", due_date="2026-11-15"), invoice("I2", cid="C2", due_date="2026-11-15")],
                         [customer("C1", tenure_months="60", billing_contact_name="Dana Ortiz"),
                          customer("C2", tenure_months="6")])
    out = run(folder, AS_OF, policy)
    assert len(out["actions"]) == 2
    return out, policy


def rows_with(planned, responder=None):
    out, policy = planned
    with FakeAnthropic({"write_draft": responder} if responder else None) as fake:
        llm = Claude.connect(policy.llm, api_key="k", base_url=fake.url, as_of=AS_OF)
        p = Personalizer.for_run(llm, None, AS_OF)
        rows = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF, policy=policy,
                           personalize=p)
        plain = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF, policy=policy)
    return rows.set_index("customer_id"), plain.set_index("customer_id"), p, fake


def test_a_checked_draft_replaces_the_approved_text(planned):
    rows, plain, p, fake = rows_with(planned)
    c1 = rows.loc["C1"]
    assert "Thank you for 5 years of working together." in c1["body"]
    assert c1["body"].replace("\n\nThank you for 5 years of working together.", "") == plain.loc["C1", "body"]
    assert json.loads(c1["context"])["personalized"] == "model" and c1["status"] == "planned"
    # The short relationship gets the fake's unchanged text back: still the model's, still checked.
    assert rows.loc["C2", "body"] == plain.loc["C2", "body"]
    assert p.counts == {"model": 2} and fake.requests[0]["model"] == "claude-sonnet-4-5"
    assert fake.requests[0]["tool_choice"]["name"] == "write_draft"


def _edit(change):
    def responder(request, user):
        doc = json.loads(user[user.index("{"):])
        return {"subject": doc["approved_subject"], "body": change(doc["approved_body"])}
    return responder


@pytest.mark.parametrize("change,reason", [
    (lambda b: b + "\nOtherwise our lawyer will be in touch.", "guardrail:legal_threat"),
    (lambda b: b.replace("$1,000.00", "$1,100.00"), "amounts_dropped"),
    (lambda b: b + "\nPay within 3 days for a discount: https://pay.example.com/discount", "links_added"),
    (lambda b: b + "\nAs an internal note: risk score 80.", "guardrail:internal_note"),
    (lambda b: b.replace("N-I1", "your invoice").replace("N-I2", "your invoice"), "invoice_number_dropped"),
    (lambda b: b + "\nCompare with Customer C2, who paid on time." * 1, "guardrail:other_customer_data"),
])
def test_a_draft_that_changes_facts_or_breaks_a_guardrail_keeps_the_approved_text(planned, change, reason):
    rows, plain, p, _ = rows_with(planned, _edit(change))
    assert rows.loc["C1", "body"] == plain.loc["C1", "body"]
    assert json.loads(rows.loc["C1", "context"])["personalized"] == reason
    assert rows.loc["C1", "status"] == "planned"  # the approved text still goes; nothing is blocked for it
    assert p.counts.get(reason, 0) >= 1


def test_a_changed_subject_or_an_unusable_answer_keeps_the_approved_text(planned):
    rows, plain, p, _ = rows_with(planned, lambda req, user: {"subject": "FINAL NOTICE", "body": "pay"})
    assert list(rows["body"]) == list(plain["body"]) and p.counts == {"subject_changed": 2}
    rows, plain, p, _ = rows_with(planned, lambda req, user: {"text": "no"})
    assert list(rows["body"]) == list(plain["body"]) and p.counts == {"invalid_or_refused": 2}
