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

from connectors.ledger.decisions import Settlement

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


class NotAllowed(DecisionError):
    """The person may not settle this decision (policy approvals): the message names the limit and who may."""


def decision_amounts(context: dict) -> dict[str, int]:
    """A decision's total per currency, minor units, from the invoices its context lists."""
    from arflow.money import to_minor

    out: dict[str, int] = {}
    for i in context.get("invoices") or []:
        try:
            minor = int(i["amount_minor"]) if i.get("amount_minor") is not None else \
                to_minor(str(i["amount"]).replace(",", ""), i["currency"])
        except (KeyError, TypeError, ValueError):
            continue
        out[i["currency"]] = out.get(i["currency"], 0) + minor
    return out


def _member(person: str, people) -> bool:
    who = " ".join(str(person).split()).casefold()
    return any(p == "*" or " ".join(str(p).split()).casefold() == who for p in people)


def may_decide(approvals, what: str, amounts: dict[str, int]):
    """The rule that governs a decision of kind `what` with these totals: (roles, rule, every rule
    of the kind) with roles None where no rule's kinds match (anyone) and () where none covers it."""
    from arflow.money import to_minor

    rules = [r for r in approvals.rules if what in r.kinds or "*" in r.kinds]
    if not rules:
        return None, None, rules
    for r in rules:
        if r.up_to is None or all(c in r.up_to and v <= to_minor(r.up_to[c], c) for c, v in amounts.items()):
            return r.roles, r, rules
    return (), None, rules


def people_who_may(approvals, kind: str, context: dict, choices=(None,)) -> set[str] | None:
    """Everyone who may settle this decision for any of `choices` (None: anyone may)."""
    out: set[str] = set()
    for choice in choices:
        roles, _, _ = may_decide(approvals, choice or kind, decision_amounts(context))
        if roles is None:
            return None
        for role in roles:
            out |= set(approvals.roles.get(role, ()))
    return None if "*" in out else out


def authorize(approvals, decision: dict, verdict: str, choice: str | None, by: str) -> None:
    """Refuse (NotAllowed) a person the policy's approvals do not let settle this decision: what an
    approval chooses (a write-off) or the decision's kind, at its total."""
    from arflow.money import format_minor

    if approvals is None:
        return
    context = json.loads(decision["context"]) if isinstance(decision["context"], str) else decision["context"]
    what = choice if verdict == "approve" and choice else decision["kind"]
    amounts = decision_amounts(context)
    roles, rule, rules = may_decide(approvals, what, amounts)
    if roles is None or any(_member(by, approvals.roles.get(r, ())) for r in roles):
        return
    total = ", ".join(f"{c} {format_minor(v, c, grouping=True)}" for c, v in sorted(amounts.items())) or "no amount"

    def who(role_names):
        return ", ".join(f"{r} ({', '.join(approvals.roles.get(r, ())) or 'nobody'})" for r in role_names)

    limits = "; ".join((f"up to {', '.join(f'{c} {a}' for c, a in r.up_to.items())}" if r.up_to else "any amount")
                       + f": {who(r.roles)}" for r in rules)
    raise NotAllowed(f"{by} may not {verdict} decision {decision['id']} ({what.replace('_', ' ')}, {total}): "
                     + (f"it needs {who(roles)}" if roles else "no rule covers this amount")
                     + f" (approvals for {what}: {limits})")


def open_decisions(ledger) -> pd.DataFrame:
    return ledger.open_decisions()


def settle(ledger, decision_id: int, verdict: str, *, by: str, on: dt.date, note: str = "",
           subject: str | None = None, body: str | None = None, choice: str | None = None,
           installments: int | None = None, approvals=None) -> dict:
    """Approve or reject an open decision. Approval queues its message for the next run (with the
    edited text, if given); rejection closes it. `approvals` (the policy's): a person they do not
    allow is refused (NotAllowed), and the refusal is audited. Everything goes to the audit log."""
    if verdict not in VERDICTS:
        raise DecisionError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    try:
        return _settle(ledger, decision_id, verdict, by=by, on=on, note=note, subject=subject, body=body,
                       choice=choice, installments=installments, approvals=approvals)
    except NotAllowed as exc:
        ledger.audit(by, "decision.refused", "Decision", str(decision_id),
                     {"verdict": verdict, "choice": choice, "why": str(exc)})
        raise


def _settle(ledger, decision_id: int, verdict: str, *, by: str, on: dt.date, note: str, subject, body, choice,
            installments, approvals) -> dict:
    def decide(d: dict | None) -> Settlement:
        if d is None:
            raise DecisionError(f"no decision {decision_id}")
        if d["status"] != "open":
            raise DecisionError(f"decision {decision_id} is already {d['status']}")
        authorize(approvals, d, verdict, choice, by)
        if verdict == "approve" and d["kind"] in CHOICE_STEPS and choice not in CHOICES:
            raise DecisionError(f"decision {decision_id} ({d['kind']}) needs --choice payment_plan or write_off")
        if choice is not None and choice not in CHOICES:
            raise DecisionError(f"--choice must be one of {CHOICES}")
        # A blocked message is released, or closed, from `blocked`; any other from `awaiting_decision`.
        waiting = "blocked" if d["kind"] == BLOCKED else "awaiting_decision"
        if d["kind"] == "delivery_unknown":
            waiting = "delivery_unknown"
            values = {"status": "queued", "closed_reason": None} if verdict == "approve" else \
                {"status": "sent", "closed_reason": "treated as delivered: " + (note or by)}
        elif verdict == "approve":
            values = {"status": "queued", "closed_reason": None}
            if subject is not None or body is not None:
                values["closed_reason"] = f"approved with edits by {by}"
                if subject is not None:
                    values["subject"] = subject
                if body is not None:
                    values["body"] = body
        else:
            values = {"status": "rejected", "closed_reason": f"rejected by {by}: {note}"[:200]}
        return Settlement(
            decision_values={"status": "approved" if verdict == "approve" else "rejected", "decided_by": by,
                             "decided_on": on, "note": note or None, "edited_subject": subject, "edited_body": body,
                             "choice": choice, "installments": installments},
            message_key=message_key_of(d["decision_key"], d["kind"]), from_status=waiting, outbox_values=values,
            action=f"decision.{verdict}d" if verdict == "approve" else "decision.rejected",
            detail={"verdict": verdict, "note": note, "choice": choice, "installments": installments,
                    "edited": subject is not None or body is not None})

    d, n = ledger.settle_decision(decision_id, by, decide)
    return {"id": decision_id, "kind": d["kind"], "status": "approved" if verdict == "approve" else "rejected",
            "touches": n}


def settle_customer(ledger, customer_id: str, verdict: str, *, by: str, on: dt.date, note: str = "",
                    choice: str | None = None, installments: int | None = None, approvals=None) -> list[dict]:
    """Settle every open decision of one customer the same way (the invoices each covers). Nothing is
    settled unless all may be: an unknown customer, a decision that needs a choice not given, or one
    the person may not settle refuses the whole (edits are made one decision at a time)."""
    if verdict not in VERDICTS:
        raise DecisionError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    mine = ledger.open_decisions(customer_id)
    if mine.empty:
        raise DecisionError(f"customer {customer_id} has no open decision")
    rows = mine.sort_values("id").to_dict("records")
    if verdict == "approve" and choice is None:
        needing = [str(int(r["id"])) for r in rows if r["kind"] in CHOICE_STEPS]
        if needing:
            raise DecisionError(f"decision(s) {', '.join(needing)} of customer {customer_id} need --choice "
                                "payment_plan or write_off")
    for r in rows:
        try:
            authorize(approvals, r, verdict, choice if r["kind"] in CHOICE_STEPS else None, by)
        except NotAllowed as exc:
            ledger.audit(by, "decision.refused", "Decision", str(int(r["id"])),
                         {"verdict": verdict, "choice": choice, "customer": customer_id, "why": str(exc)})
            raise
    return [settle(ledger, int(r["id"]), verdict, by=by, on=on, note=note, approvals=approvals,
                   choice=choice if r["kind"] in CHOICE_STEPS else None,
                   installments=installments if r["kind"] in CHOICE_STEPS else None) for r in rows]


# ---- the queue by customer --------------------------------------------------------------------------
def _money(amounts: dict[str, int]) -> dict[str, str]:
    from arflow.money import format_minor

    return {c: format_minor(v, c) for c, v in sorted(amounts.items())}


def _major(amounts: dict[str, int]) -> float:
    """Amounts added at face value in major units: for ranking only (no exchange rates here)."""
    from arflow.money import minor_digits

    return sum(v / 10 ** minor_digits(c) for c, v in amounts.items())


def customer_queue(ledger, decisions: pd.DataFrame | None = None, last_touches: int = 3) -> list[dict]:
    """The open decisions by customer, each with the customer's whole position as the ledger has it:
    what they owe and what is overdue (per currency, from the latest daily run), the oldest item,
    credits to review, active payment plans, open disputes and promises, the last touches that went
    out; ranked by risk-weighted overdue exposure (overdue x the highest risk score / 100; amounts in
    different currencies added at face value for the ranking only), then by what they owe."""
    decisions = open_decisions(ledger) if decisions is None else decisions
    if decisions.empty:
        return []
    customers = sorted(set(decisions["customer_id"].astype(str)))
    run = ledger.daily_run_on_or_before(dt.date.max)
    held = ledger.customer_records(customers, run["run_id"] if run else None)
    outcomes, credits, plans = held["outcomes"], held["credits"], held["plans"]
    disputes, promises, touches = held["disputes"], held["promises"], held["touches"]
    out = []
    for cid, grp in decisions.groupby(decisions["customer_id"].astype(str)):
        contexts = [json.loads(c) for c in grp["context"]]
        owed, overdue, oldest, risk = {}, {}, None, 0
        inv = outcomes[(outcomes["customer_id"] == cid) & outcomes["balance_minor"].notna()] \
            if not outcomes.empty else outcomes
        items = [(r.invoice_id, r.currency, int(r.balance_minor), int(r.days_past_due or 0),
                  int(r.risk_score) if pd.notna(r.risk_score) else 0) for r in inv.itertuples()] if not inv.empty else []
        if not items:  # no daily run holds them: what the decisions list
            from arflow.money import to_minor

            seen = set()
            for c in contexts:
                for i in c.get("invoices") or []:
                    if i["invoice_id"] in seen:
                        continue
                    seen.add(i["invoice_id"])
                    minor = int(i["amount_minor"]) if i.get("amount_minor") is not None else \
                        to_minor(str(i["amount"]).replace(",", ""), i["currency"])
                    items.append((i["invoice_id"], i["currency"], minor, int(i.get("days_past_due") or 0),
                                  int(c.get("risk_score") or 0)))
        for invoice_id, cur, balance, days, score in items:
            if balance <= 0:
                continue
            owed[cur] = owed.get(cur, 0) + balance
            if days > 0:
                overdue[cur] = overdue.get(cur, 0) + balance
            if oldest is None or days > oldest["days_past_due"]:
                oldest = {"invoice_id": invoice_id, "days_past_due": days, "amount": _money({cur: balance})[cur],
                          "currency": cur}
            risk = max(risk, score)
        sent = touches[touches["customer_id"] == cid] if not touches.empty else touches
        last = [] if sent.empty else [
            {"on": str(r.delivered_on or r.as_of), "step": r.step, "channel": r.channel}
            for r in sent.sort_values(["delivered_on", "id"], ascending=False).drop_duplicates("message_key")
            .head(last_touches).itertuples()]
        credit = {} if credits.empty else \
            credits[credits["customer_id"] == cid].groupby("currency")["amount_minor"].sum().astype(int).to_dict()
        name = next((c.get("customer") for c in contexts if c.get("customer")), cid)
        out.append({
            "customer_id": cid, "customer": name, "segment": next((c.get("segment") for c in contexts), None),
            "exposure": _money(owed), "overdue": _money(overdue), "risk_score": risk,
            "priority": round(_major(overdue) * max(risk, 1) / 100, 2), "oldest": oldest,
            "credits": _money(credit),
            "payment_plans": [] if plans.empty else [
                {"id": int(p.id), "invoice_id": p.invoice_id, "ends_on": str(p.ends_on)}
                for p in plans[plans["customer_id"] == cid].itertuples()],
            "disputes": [] if disputes.empty else [
                {"invoice_id": d.invoice_id, "opened_on": str(d.opened_on), "reason": d.reason}
                for d in disputes[disputes["customer_id"] == cid].itertuples()],
            "promises": [] if promises.empty else [
                {"invoice_id": p.invoice_id, "promised_date": str(p.promised_date)}
                for p in promises[promises["customer_id"] == cid].itertuples()],
            "last_touches": last,
            "decisions": [{"id": int(r.id), "kind": r.kind, "invoices": r.invoice_ids.split(","),
                           "opened_on": str(r.opened_on)} for r in grp.sort_values("id").itertuples()],
            "_owed": _major(owed)})
    out.sort(key=lambda x: (-x["priority"], -x["_owed"], x["customer_id"]))
    for rank, x in enumerate(out, start=1):
        x["rank"] = rank
        del x["_owed"]
    return out


def position_markdown(p: dict) -> str:
    """A customer's whole position as markdown (the review form shows it above the answer)."""
    def amounts(d):
        return ", ".join(f"{v} {c}" for c, v in d.items()) or "none"

    oldest = p["oldest"]
    lines = [f"### {p['customer']}: the whole account (rank {p.get('rank', '?')} in the queue)",
             f"**Owed:** {amounts(p['exposure'])}; **overdue:** {amounts(p['overdue'])}; **risk:** {p['risk_score']}",
             "**Oldest item:** " + (f"{oldest['invoice_id']}, {oldest['amount']} {oldest['currency']}, "
                                    f"{oldest['days_past_due']} days past due" if oldest else "none"),
             f"**Credits to review:** {amounts(p['credits'])}",
             "**Payment plans:** " + (", ".join(f"plan {x['id']} ({x['invoice_id'] or 'account'}, to {x['ends_on']})"
                                                for x in p["payment_plans"]) or "none"),
             "**Disputes:** " + (", ".join(f"{x['invoice_id']} since {x['opened_on']}" for x in p["disputes"])
                                 or "none"),
             "**Promises:** " + (", ".join(f"{x['invoice_id']} by {x['promised_date']}" for x in p["promises"])
                                 or "none"),
             "**Last touches:** " + (", ".join(f"{t['on']} {t['step']} ({t['channel']})" for t in p["last_touches"])
                                     or "none"),
             "**Open decisions:** " + ", ".join(f"#{d['id']} {d['kind'].replace('_', ' ')}" for d in p["decisions"])]
    return "\n\n".join(lines)
