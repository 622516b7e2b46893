"""review_decision(decision_id): one open decision as a suspended flow run with a form in the
Prefect UI. The form fits the decision's kind (approve or reject a message, its subject and text
editable and starting from the proposed ones; choose a payment plan or a write-off; send a message
in doubt again or treat it as delivered) and names the person who answers. Prefect's server checks
the answer against the form before it accepts it, so an answer the flow could not record is refused
in the form, never lost. The answer is recorded exactly as `arflow decide` records it, and the next
daily run carries it out.

The daily run opens one review run per decision (`announce_decisions`) without starting a process:
the run is created from the `review-decision` deployment already suspended at its form. Only an
answered form reaches a worker, once, to record the answer. A run whose decision was settled
elsewhere (`arflow decide`) is cancelled by the next announcement. Without the deployment,
`arflow queue` and `arflow decide` are the way.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from arflow.config import Settings, today_in
from arflow.policy import load_policy
from connectors.ledger.store import Ledger
from tasks.decisions import (CHOICES, DecisionError, NotAllowed, customer_queue, form_kind, people_who_may,
                             position_markdown, settle, settlement)

REVIEW_DEPLOYMENT = "review_decision/review-decision"
TIMEOUT_SECONDS = 7 * 24 * 3600

_PERSON = dict(min_length=2, max_length=120, pattern=r"\S", title="Decided by",
               description="Your name or e-mail: recorded in the ledger and the audit log as who decided.")
_NOTE = dict(max_length=2000, title="Note", description="Why (kept in the audit log).")


class MessageForm(RunInput):
    verdict: Literal["approve", "reject"] = Field(
        title="Verdict", description="approve: the message goes as below with the next run; reject: it never goes.")
    subject: str = Field(min_length=1, max_length=250, pattern=r"^[^\r\n]+$", title="Subject",
                         description="Edit to send another subject; as proposed, it goes unchanged.")
    body: str = Field(min_length=1, max_length=20000, title="Text",
                      description="Edit to send another text; as proposed, it goes unchanged.")
    note: str = Field("", **_NOTE)
    decided_by: str = Field(**_PERSON)


class PlanOrWriteOffForm(RunInput):
    decision: Literal["payment_plan", "write_off", "reject"] = Field(
        title="Decision", description="payment_plan: offer instalments; write_off: write the balance off and "
                                      "stop chasing; reject: neither, for now.")
    installments: int = Field(3, ge=2, le=24, title="Instalments",
                              description="For a payment plan: how many (2-24); starts from the policy's number.")
    note: str = Field("", **_NOTE)
    decided_by: str = Field(**_PERSON)


class DeliveryForm(RunInput):
    answer: Literal["send_again", "treat_as_delivered"] = Field(
        title="Answer", description="The run stopped while sending: send the message again, or treat it as "
                                    "delivered (it is never sent twice on its own).")
    note: str = Field("", **_NOTE)
    decided_by: str = Field(**_PERSON)


class ApprovalForm(RunInput):
    verdict: Literal["approve", "reject"] = Field(title="Verdict",
                                                  description="approve: the next run carries it out; reject: it does not.")
    note: str = Field("", **_NOTE)
    decided_by: str = Field(**_PERSON)


FORMS = {"message": MessageForm, "plan_or_write_off": PlanOrWriteOffForm, "delivery": DeliveryForm,
         "approval": ApprovalForm}


def form_for(decision: dict, installments: int | None = None, approvals=None, position: str | None = None
             ) -> type[RunInput]:
    """The form for one decision: its kind's fields, the proposed text (and the policy's number of
    instalments) as the starting point of the answer, and the decision's whole context shown above it
    (with the customer's whole position, where given). Where the policy's approvals name who may
    settle it, "Decided by" offers only them (Prefect's server refuses anyone else)."""
    context = json.loads(decision["context"])
    kind = form_kind(decision["kind"], context)
    base = FORMS[kind]
    fields = {}
    if approvals is not None:
        people = people_who_may(approvals, decision["kind"], context,
                                (None, *CHOICES) if kind == "plan_or_write_off" else (None,))
        if people:
            fields["decided_by"] = (Literal[tuple(sorted(people))], Field(
                title="Decided by", description="Who decides: the policy's approvals allow these people for this "
                                                "decision (recorded in the ledger and the audit log)."))
    if kind == "plan_or_write_off":
        info = copy.copy(base.model_fields["installments"])
        info.default = installments or _policy_installments()
        fields["installments"] = (int, info)
    if kind == "message":
        for name, value in (("subject", context.get("proposed_subject") or ""), ("body", context.get("proposed_text"))):
            info = copy.copy(base.model_fields[name])
            info.default = value
            fields[name] = (str, info)
    form = create_model(base.__name__, __base__=base, **fields)
    form._description = describe(decision) + (f"\n\n{position}" if position else "")
    return form


def _policy_installments() -> int:
    return load_policy(Settings.from_env().policy_path).payment_plans.installments


def _quote(text: str) -> list[str]:
    """Text as a markdown block quote: it wraps in the UI, and every line stays a line."""
    return [f"> {line}" if line.strip() else ">" for line in (text or "").splitlines()] or [">"]


def _brief(value) -> str:
    if isinstance(value, list):
        value = ", ".join(value) or "nobody"
    text = " ".join(str(value if value is not None else "none").split())
    return f"`{text[:160]}{'…' if len(text) > 160 else ''}`"


def describe(decision) -> str:
    """The decision's whole context as markdown, shown above the form."""
    c = json.loads(decision["context"])
    lines = [f"## Decision {decision['id']}: {decision['kind'].replace('_', ' ')}",
             f"**Customer:** {c.get('customer', decision['customer_id'])} ({c.get('segment')}, ARR {c.get('arr')}, "
             f"health {c.get('health') or 'unknown'})"]
    if c.get("invoices"):
        lines += ["", "| invoice | amount | due | days late |", "| --- | --- | --- | --- |"]
        for i in c["invoices"]:
            lines.append(f"| {i['invoice_number']} | {i['amount']} {i['currency']} | {i['due_date']} | "
                         f"{i['days_past_due']} |")
    h = c.get("payment_history")
    if h:
        lines += ["", f"**Payment history:** {h.get('paid_invoices')} paid, average {h.get('avg_days_late')} days "
                      f"late, {h.get('late_in_12_months')} late in 12 months. **Risk:** {c.get('risk_score')}; "
                      f"escalation {c.get('escalation')} {c.get('escalation_reason') or ''}"]
    if "prior_touches" in c:
        lines += ["", "**Prior touches:** " + (", ".join(f"{t['on']} {t['step']} ({t['status']})"
                                                        for t in c["prior_touches"]) or "none")]
    changed = c.get("changed_since_approval")
    if changed:
        lines += ["", f"**Changed since {changed.get('approved_by')} approved it on {changed.get('approved_on')}:** "
                      "the message below is what would go now.", ""]
        for ch in changed.get("changes", []):
            lines.append(f"- **{ch['field']}:** approved {_brief(ch['approved'])}; now {_brief(ch['now'])}")
    text = c.get("proposed_text") or c.get("body")
    if text:
        env = c.get("envelope")
        if env:
            head = [f"**From:** {env['from']}" + (f" (sent by {env['sender']})" if env.get("sender") else ""),
                    f"**To:** {', '.join(env['to']) or 'nobody (no address)'}"] + \
                   ([f"**Cc:** {', '.join(env['cc'])}"] if env.get("cc") else []) + \
                   ([f"**Reply-To:** {env['reply_to']}"] if env.get("reply_to") else []) + \
                   ([f"**Attachments:** {', '.join(Path(a).name for a in env['attachments'])}"]
                    if env.get("attachments") else [])
        else:
            head = [f"**To:** {c.get('recipients')}"]
        lines += ["", *head, f"**Subject:** {c.get('proposed_subject') or c.get('subject')}", "", *_quote(text)]
    if c.get("question"):
        lines += ["", f"**Question:** {c['question']}"]
    if c.get("refused"):
        lines += ["", f"**An earlier answer was refused:** {c['refused']}"]
    return "\n".join(lines)


def _review_run_name() -> str:
    from prefect.runtime import flow_run

    decision_id = flow_run.parameters.get("decision_id")
    if (flow_run.name or "").startswith(f"decision {decision_id} "):  # named when the daily run opened it
        return flow_run.name
    try:
        d = Ledger(Settings.from_env().db_url).decision(decision_id)
    except Exception:  # noqa: BLE001 - a name is no reason to fail; the flow reports the ledger's error
        d = None
    return f"decision {decision_id} {d['customer_id']}" if d else f"decision {decision_id}"


@flow(name="review_decision", flow_run_name=_review_run_name)
def review_decision(decision_id: int, timeout_seconds: int = TIMEOUT_SECONDS, poll_interval: int = 10) -> dict:
    """Wait for a person's answer to one decision in the Prefect UI, then record it.

    Args:
        decision_id: the decision's id (`arflow queue` lists them).
        timeout_seconds: how long the form waits for an answer (default seven days); the decision
            stays in `arflow queue` after that.
        poll_interval: seconds between checks for an answer when the run is not from a deployment.
    """
    from prefect.runtime import deployment, flow_run

    settings = Settings.from_env()
    ledger = Ledger(settings.db_url)
    decision = ledger.decision(decision_id)
    if decision is None:
        raise DecisionError(f"no decision {decision_id}")
    if decision["status"] != "open":
        return {"id": decision_id, "status": decision["status"], "note": "settled before the form was answered"}
    ledger.attach_review_run(decision_id, str(flow_run.id))
    policy = load_policy(settings.policy_path)
    form = form_for(decision, policy.payment_plans.installments, policy.approvals, positions(ledger).get(
        str(decision["customer_id"])))
    if deployment.id:
        answer = suspend_flow_run(wait_for_input=form, timeout=timeout_seconds, key=_pause_key(decision_id))
    else:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout_seconds, poll_interval=poll_interval,
                                key=_pause_key(decision_id))
    decision = ledger.decision(decision_id)  # it may have been settled with `arflow decide` meanwhile
    if decision["status"] != "open":
        return {"id": decision_id, "status": decision["status"], "note": "settled elsewhere before this answer"}
    args = settlement(decision["kind"], json.loads(decision["context"]), answer.model_dump())
    try:
        result = settle(ledger, decision_id, args.pop("verdict"), on=today_in(settings.timezone or policy.timezone),
                        approvals=policy.approvals, **args)
    except NotAllowed as exc:  # audited by settle; the decision stays open and the next run opens a new form
        ledger.refuse_review(decision_id, str(exc))
        get_run_logger().warning("decision %s: %s", decision_id, exc)
        return {"id": decision_id, "status": "refused", "note": str(exc)}
    get_run_logger().info("decision %s %s by %s", decision_id, result["status"], args["by"])
    return result


def _pause_key(decision_id: int) -> str:
    return f"decision-{int(decision_id)}"


@task(name="announce_decisions", cache_policy=NO_CACHE)
def announce_decisions(ledger: Ledger) -> dict:
    """A review run (a form in the Prefect UI) for every open decision that has none yet, where the
    `review-decision` deployment exists; and the review runs of decisions settled elsewhere closed."""
    return asyncio.run(announce(ledger))


def positions(ledger: Ledger) -> dict[str, str]:
    """customer id -> the customer's whole position as markdown, for every customer with an open decision."""
    try:
        return {p["customer_id"]: position_markdown(p) for p in customer_queue(ledger)}
    except Exception as exc:  # noqa: BLE001 - the form still opens, with the decision's own context
        get_run_logger().warning("the customers' positions could not be read for the forms: %s", exc)
        return {}


async def announce(ledger: Ledger) -> dict:
    """Open the review runs: each is created from the deployment and suspended at its form at once,
    so no process starts until someone answers. Idempotent per decision (the run's idempotency key),
    so a decision never gets two forms. One at a time: a Prefect server on SQLite serialises its
    writes, and concurrent ones wait on its lock (8 runs took 0.6 s one by one, 16 s four at a time).
    Returns what it opened and closed."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    waiting = ledger.decisions_awaiting_review_run()
    policy = load_policy(Settings.from_env().policy_path) if not waiting.empty else None
    where = positions(ledger) if not waiting.empty else {}
    opened, failed = 0, []
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(REVIEW_DEPLOYMENT)
        except ObjectNotFound:
            return {"opened": 0, "closed": 0, "failed": 0, "deployment": None}
        for decision in waiting.to_dict("records"):
            try:
                run_id = await _open_review(client, deployment.id, decision, policy,
                                            where.get(str(decision["customer_id"])))
            except Exception as exc:  # noqa: BLE001 - the decision stays queued; the next run tries again
                failed.append(f"{decision['id']} ({exc.__class__.__name__}: {str(exc)[:120]})")
                continue
            ledger.attach_review_run(decision["id"], run_id)
            opened += 1
        closed = await _close_settled(client, deployment.id, ledger)
    if failed:
        get_run_logger().warning("review runs not opened for %d decision(s), kept in `arflow queue` and tried "
                                 "again by the next run: %s", len(failed), "; ".join(failed[:10]))
    return {"opened": opened, "closed": closed, "failed": len(failed), "deployment": REVIEW_DEPLOYMENT}


def _review_key(decision: dict) -> str:
    """One form per decision, and a new one when the decision came back (changed since approval)."""
    revision = json.loads(decision["context"]).get("revision", 0) if decision.get("context") else 0
    return f"arflow-decision-{decision['id']}" + (f"-r{revision}" if revision else "")


async def _open_review(client, deployment_id, decision: dict, policy=None, position: str | None = None) -> str:
    """One review run, created running (so no worker takes it) and suspended at its form: where a
    worker's process would have brought it, without the process."""
    from prefect.client.schemas.objects import StateType
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Running, Suspended

    run = await client.create_flow_run_from_deployment(
        deployment_id, parameters={"decision_id": int(decision["id"])}, state=Running(message="opening its form"),
        name=f"decision {decision['id']} {decision['customer_id']}", tags=["arflow", "decision", decision["kind"]],
        idempotency_key=_review_key(decision))
    if run.state is None or run.state.type != StateType.RUNNING:  # opened (or closed by a person) already
        return str(run.id)
    suspended = Suspended(timeout_seconds=TIMEOUT_SECONDS, pause_key=_pause_key(decision["id"]))
    keyset = keyset_from_paused_state(suspended)
    suspended.state_details.run_input_keyset = keyset
    await _save_form(client, form_for(decision, policy.payment_plans.installments if policy else None,
                                      policy.approvals if policy else None, position), keyset, run.id)
    result = await client.set_flow_run_state(run.id, suspended)
    if result.state is None or not result.state.is_paused():
        raise RuntimeError(f"review run for decision {decision['id']} could not be suspended: "
                           f"{result.details}")
    return str(run.id)


async def _save_form(client, form: type[RunInput], keyset: dict, flow_run_id) -> None:
    """What RunInput.asave writes (the form's schema, its description), through this client: asave opens
    a new client per write, and that was half the time of opening a form."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    await client.create_flow_run_input(flow_run_id, key=keyset["schema"],
                                       value=json.dumps(create_v2_schema(form.__name__, model_base=form)))
    await client.create_flow_run_input(flow_run_id, key=keyset["description"], value=json.dumps(form._description))


async def _close_settled(client, deployment_id, ledger: Ledger) -> int:
    """Cancel the suspended review runs whose decision is no longer open (settled with `arflow
    decide`), so the UI shows no form that can no longer be answered."""
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    runs, offset = [], 0
    while True:
        page = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            limit=200, offset=offset)
        runs += page
        if len(page) < 200:
            break
        offset += 200
    ids = {r.id: int(r.parameters["decision_id"]) for r in runs if "decision_id" in (r.parameters or {})}
    statuses = ledger.decision_statuses(list(ids.values()))
    closed = 0
    for run_id, decision_id in ids.items():
        s = statuses.get(decision_id)
        if s is None or s["status"] == "open":
            continue
        await client.set_flow_run_state(run_id, Cancelled(
            message=f"decision {decision_id} was {s['status']} by {s['decided_by']} outside this form"), force=True)
        closed += 1
    return closed
