"""review_decision(decision_id): one open decision as a flow run waiting for a person in the
Prefect UI. The run pauses (suspends, when it runs from a deployment) with a form (approve or
reject, a note, the choice between a payment plan and a write-off, an edited text); the answer is
recorded exactly as `arflow decide` records it, and the next daily run carries it out.

The daily run starts one of these per decision it opens when the `review-decision` deployment
exists (prefect.yaml); without it, `arflow queue` and `arflow decide` are the way.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from sqlalchemy import update

from arflow.config import Settings, today_in
from arflow.policy import load_policy
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tasks.decisions import DecisionError, settle


class DecisionForm(RunInput):
    verdict: Literal["approve", "reject"]
    note: str = ""
    choice: Optional[Literal["payment_plan", "write_off"]] = None  # payment_plan_or_write_off steps
    installments: Optional[int] = None
    subject: Optional[str] = None   # leave empty to send the proposed text as it is
    body: Optional[str] = None
    decided_by: str = "prefect-ui"


def describe(decision) -> str:
    """The decision's whole context as markdown, shown above the form."""
    c = json.loads(decision["context"])
    lines = [f"## Decision {decision['id']}: {decision['kind'].replace('_', ' ')}",
             f"**Customer:** {c.get('customer', decision['customer_id'])} ({c.get('segment')}, ARR {c.get('arr')}, "
             f"health {c.get('health') or 'unknown'})", "", "| invoice | amount | due | days late |",
             "| --- | --- | --- | --- |"]
    for i in c.get("invoices", []):
        lines.append(f"| {i['invoice_number']} | {i['amount']} {i['currency']} | {i['due_date']} | {i['days_past_due']} |")
    h = c.get("payment_history", {})
    lines += ["", f"**Payment history:** {h.get('paid_invoices')} paid, average {h.get('avg_days_late')} days late, "
              f"{h.get('late_in_12_months')} late in 12 months. **Risk:** {c.get('risk_score')}; "
              f"escalation {c.get('escalation')} {c.get('escalation_reason') or ''}",
              "", "**Prior touches:** " + (", ".join(f"{t['on']} {t['step']} ({t['status']})"
                                                    for t in c.get("prior_touches", [])) or "none")]
    if c.get("proposed_text") or c.get("body"):
        lines += ["", f"**To:** {c.get('recipients')}", f"**Subject:** {c.get('proposed_subject') or c.get('subject')}",
                  "", "```", c.get("proposed_text") or c.get("body") or "", "```"]
    if c.get("question"):
        lines += ["", f"**Question:** {c['question']}"]
    return "\n".join(lines)


@flow(name="review_decision")
def review_decision(decision_id: int, timeout_seconds: int = 7 * 24 * 3600, poll_interval: int = 10) -> dict:
    """Wait for a person's answer to one decision in the Prefect UI, then record it."""
    from prefect.runtime import deployment, flow_run

    settings = Settings.from_env()
    ledger = Ledger(settings.db_url)
    d = ledger.frame(m.Decision, m.Decision.id == decision_id)
    if d.empty:
        raise DecisionError(f"no decision {decision_id}")
    decision = d.iloc[0]
    if decision["status"] != "open":
        return {"id": decision_id, "status": decision["status"], "note": "settled before the form was answered"}
    with ledger.engine.begin() as conn:
        conn.execute(update(m.Decision).where(m.Decision.id == decision_id).values(flow_run_id=str(flow_run.id)))
    form = DecisionForm.with_initial_data(description=describe(decision), verdict="approve")
    if deployment.id:
        answer = suspend_flow_run(wait_for_input=form, timeout=timeout_seconds, key=f"decision-{decision_id}")
    else:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout_seconds, poll_interval=poll_interval,
                                key=f"decision-{decision_id}")
    policy = load_policy(settings.policy_path)
    result = settle(ledger, decision_id, answer.verdict, by=answer.decided_by, on=today_in(settings.timezone or policy.timezone),
                    note=answer.note, subject=answer.subject or None, body=answer.body or None,
                    choice=answer.choice, installments=answer.installments)
    get_run_logger().info("decision %s %s by %s", decision_id, result["status"], answer.decided_by)
    return result


def announce(decision_ids: list[int]) -> int:
    """Start a review_decision run per decision where the `review-decision` deployment exists.
    Returns how many were started; without the deployment, none (the CLI queue still has them)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    started = 0
    for i in decision_ids:
        try:
            run_deployment("review_decision/review-decision", parameters={"decision_id": int(i)}, timeout=0)
        except ObjectNotFound:
            return started
        started += 1
    return started


