"""Human decisions: every touch that needs a person becomes one decision per message, with the
whole context a clerk needs (invoice, amount, days late, payment history, CRM status, prior
touches, the proposed text). Settled from `arflow decide` or the Prefect UI form
(flows/decisions.py); an approved decision is carried out by the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pandas as pd
from sqlalchemy import select, update

from connectors.ledger import models as m

VERDICTS = ("approve", "reject")
CHOICES = ("payment_plan", "write_off")
# Steps where approving means choosing between a payment plan and a write-off.
CHOICE_STEPS = ("payment_plan_or_write_off", "payment_plan_missed")


BLOCKED = "guardrail_blocked"  # the kind of a decision on a message the guardrails stopped


def blocked_key(message_key: str, run_id: str | None = None) -> str:
    """The key of the decision on a blocked message (a message blocked again after an earlier
    decision on it was settled gets a new one, under the run that blocked it)."""
    return f"{message_key}:blocked" + (f":{run_id}" if run_id else "")


def message_key_of(decision_key: str, kind: str) -> str:
    """The outbox message a decision is about."""
    if kind == BLOCKED:
        return decision_key.split(":blocked")[0]
    if kind == "delivery_unknown":
        return decision_key.split(":doubt:")[0]
    return decision_key


class DecisionError(ValueError):
    """A decision cannot be settled as asked (unknown, already settled, missing choice)."""


def decision_rows(rows: pd.DataFrame, prior: pd.DataFrame, run_id: str, as_of: dt.date,
                  mail_from: str | None = None, reply_to: str | None = None) -> list[dict]:
    """One decision per message waiting for a person, from its outbox rows (with their stored
    context) and the prior touches of its invoices. An e-mail's decision carries its envelope
    (From, Sender, To, Cc, Reply-To) as the send will compose it, from the system address
    `mail_from`. A message the guardrails blocked opens a decision too, with the reason."""
    from tasks.touches import lead_index, message_envelope

    mail_from = mail_from or os.environ.get("ARFLOW_MAIL_FROM", "accounts-receivable@localhost")
    waiting = rows[rows["status"].isin(["awaiting_decision", "blocked"])] if not rows.empty else rows
    out = []
    for key, grp in waiting.groupby("message_key", sort=False):
        grp = grp[grp["status"] == grp["status"].iloc[0]]
        contexts = [json.loads(c) for c in grp["context"]]
        n = lead_index(contexts)
        lead, lead_row = contexts[n], grp.iloc[n]
        invoices = sorted({c["invoice_id"] for c in contexts})
        earlier = prior[prior["invoice_id"].isin(invoices)] if not prior.empty else prior
        touches = [{"on": str(r.as_of), "step": r.step, "channel": r.channel, "status": r.status}
                   | ({"delivered_on": str(r.delivered_on)} if pd.notna(getattr(r, "delivered_on", None)) else {})
                   for r in earlier.sort_values("as_of").itertuples()] if not earlier.empty else []
        first = grp.iloc[0]
        # A pause, plan or write-off never comes before the customer was told (tasks.plan._remind_first).
        reminded = [t for t in touches if t["channel"] == "email" and t["status"] in ("sent", "planned")]
        context = {
            "step": lead["step"], "channel": first["channel"], "customer": lead["customer_name"],
            "segment": lead["segment"], "arr": lead["arr"], "health": lead["health"],
            "invoices": [{k: c[k] for k in ("invoice_id", "invoice_number", "amount", "currency", "due_date",
                                            "days_past_due")} for c in contexts],
            "payment_history": {"paid_invoices": lead["paid_count"], "avg_days_late": lead["avg_days_late"],
                                "late_in_12_months": lead["late_count_12m"]},
            "risk_score": lead["risk_score"], "escalation": lead["escalation"],
            "escalation_reason": lead["escalation_reason"], "prior_touches": touches,
            "customer_reminded": ({"on": reminded[-1].get("delivered_on") or reminded[-1]["on"],
                                   "step": reminded[-1]["step"],
                                   "reminders": len(reminded)} if reminded else None),
            "recipients": lead_row["recipients"], "proposed_subject": first["subject"], "proposed_text": first["body"],
        }
        if first["channel"] == "email":
            context["envelope"] = message_envelope(grp, mail_from, reply_to)
        blocked = first["status"] == "blocked"
        if blocked:  # nothing the guardrails stop stalls unseen: a person reads the text and the reason
            context["blocked"] = str(first["closed_reason"] or "guardrail")
            context["question"] = (f"The guardrails stopped this message ({context['blocked']}); later steps wait "
                                   "for it. approve = send it (edit the text first if needed), reject = do not "
                                   "send it, and the cadence goes on.")
        out.append({"decision_key": blocked_key(key) if blocked else key,
                    "kind": BLOCKED if blocked else lead["step"], "invoice_ids": ",".join(invoices),
                    "customer_id": first["customer_id"], "opened_on": as_of, "run_id": run_id, "status": "open",
                    "context": json.dumps(context, default=str)})
    return out


def approval_changes(decision: dict, envelope: dict, subject: str, body: str) -> list[dict]:
    """What differs between the message a person approved (its envelope, subject and text, as
    edited) and the one about to leave: each field with the approved and the current value."""
    c = json.loads(decision["context"]) if isinstance(decision["context"], str) else decision["context"]
    if decision.get("kind") == "delivery_unknown" or not c.get("proposed_text"):
        return []  # a resend of a message in doubt, or no text shown: the stored message goes as it was
    approved_env = c.get("envelope")
    seen = {"subject": decision.get("edited_subject") or c.get("proposed_subject") or "",
            "body": decision.get("edited_body") or c.get("proposed_text") or ""}
    now = {"subject": subject or "", "body": body or ""}
    same = {"subject": lambda s: " ".join(s.split()),  # as compose() writes the header
            "body": lambda s: s.replace("\r\n", "\n").strip()}
    changes = [{"field": k, "approved": seen[k], "now": now[k]} for k in ("subject", "body")
               if same[k](seen[k]) != same[k](now[k])]
    if approved_env is not None:  # decisions opened before envelopes were kept show only their text
        changes += [{"field": k, "approved": approved_env.get(k), "now": envelope.get(k)}
                    for k in ("from", "sender", "to", "cc", "reply_to") if approved_env.get(k) != envelope.get(k)]
        if "attachments" in approved_env and list(approved_env["attachments"] or []) != list(envelope.get("attachments") or []):
            changes.append({"field": "attachments", "approved": approved_env["attachments"],
                            "now": envelope.get("attachments")})  # a file added or gone since approval
    return changes


FORM_KINDS = ("plan_or_write_off", "delivery", "message", "approval")


def form_kind(kind: str, context: dict) -> str:
    """Which answer a decision asks for: the choice between a plan and a write-off, whether a
    message in doubt goes again, a message to approve (its text editable), or a plain approval."""
    if kind in CHOICE_STEPS:
        return "plan_or_write_off"
    if kind == "delivery_unknown":
        return "delivery"
    if context.get("proposed_text"):
        return "message"
    return "approval"


def settlement(kind: str, context: dict, answer: dict) -> dict:
    """The arguments of `settle` for a form's answer (flows/decisions.py): the form's own words
    mapped onto verdict, choice and edits. Text left as proposed is not an edit."""
    base = {"by": answer["decided_by"].strip(), "note": answer.get("note") or ""}
    form = form_kind(kind, context)
    if form == "plan_or_write_off":
        if answer["decision"] == "reject":
            return {**base, "verdict": "reject"}
        return {**base, "verdict": "approve", "choice": answer["decision"],
                "installments": answer.get("installments") if answer["decision"] == "payment_plan" else None}
    if form == "delivery":
        return {**base, "verdict": "approve" if answer["answer"] == "send_again" else "reject"}
    out = {**base, "verdict": answer["verdict"]}
    if form == "message" and answer["verdict"] == "approve":
        subject, body = answer.get("subject"), answer.get("body")
        if subject is not None and subject.strip() != (context.get("proposed_subject") or "").strip():
            out["subject"] = subject.strip()
        if body is not None and body.replace("\r\n", "\n").strip() != (context.get("proposed_text") or "").strip():
            out["body"] = body.replace("\r\n", "\n")
    return out


def open_decisions(ledger) -> pd.DataFrame:
    return ledger.frame(m.Decision, m.Decision.status == "open").sort_values("id").reset_index(drop=True)


def settle(ledger, decision_id: int, verdict: str, *, by: str, on: dt.date, note: str = "",
           subject: str | None = None, body: str | None = None, choice: str | None = None,
           installments: int | None = None) -> dict:
    """Approve or reject an open decision. Approval queues its message for the next run (with the
    edited text, if given); rejection closes it. Everything goes to the audit log."""
    if verdict not in VERDICTS:
        raise DecisionError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    with ledger.engine.begin() as conn:
        d = conn.execute(select(m.Decision).where(m.Decision.id == decision_id)).mappings().first()
        if d is None:
            raise DecisionError(f"no decision {decision_id}")
        if d["status"] != "open":
            raise DecisionError(f"decision {decision_id} is already {d['status']}")
        if verdict == "approve" and d["kind"] in CHOICE_STEPS and choice not in CHOICES:
            raise DecisionError(f"decision {decision_id} ({d['kind']}) needs --choice payment_plan or write_off")
        if choice is not None and choice not in CHOICES:
            raise DecisionError(f"--choice must be one of {CHOICES}")
        rows = m.Outbox.message_key == message_key_of(d["decision_key"], d["kind"])
        # A blocked message is released, or closed, from `blocked`; any other from `awaiting_decision`.
        waiting = "blocked" if d["kind"] == BLOCKED else "awaiting_decision"
        if d["kind"] == "delivery_unknown":
            target = ("queued", None) if verdict == "approve" else ("sent", "treated as delivered: " + (note or by))
            n = conn.execute(update(m.Outbox).where(rows, m.Outbox.status == "delivery_unknown")
                             .values(status=target[0], closed_reason=target[1])).rowcount
        elif verdict == "approve":
            values = {"status": "queued", "closed_reason": None}
            if subject is not None or body is not None:
                values["closed_reason"] = f"approved with edits by {by}"
                if subject is not None:
                    values["subject"] = subject
                if body is not None:
                    values["body"] = body
            n = conn.execute(update(m.Outbox).where(rows, m.Outbox.status == waiting).values(**values)).rowcount
        else:
            n = conn.execute(update(m.Outbox).where(rows, m.Outbox.status == waiting)
                             .values(status="rejected", closed_reason=f"rejected by {by}: {note}"[:200])).rowcount
        conn.execute(update(m.Decision).where(m.Decision.id == decision_id).values(
            status="approved" if verdict == "approve" else "rejected", decided_by=by, decided_on=on, note=note or None,
            edited_subject=subject, edited_body=body, choice=choice, installments=installments))
        detail = {"verdict": verdict, "note": note, "choice": choice, "installments": installments,
                  "edited": subject is not None or body is not None, "touches": n}
        ledger.audit(by, f"decision.{verdict}d" if verdict == "approve" else "decision.rejected", "Decision",
                     str(decision_id), detail, conn)
    return {"id": decision_id, "kind": d["kind"], "status": "approved" if verdict == "approve" else "rejected",
            "touches": n}
