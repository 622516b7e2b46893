"""Render the touches a lane is due today and shape them as outbox rows.

Templates live in ``prompts/`` (Jinja, one file each, first line ``Subject: ...``). In dry-run mode
the outbox row is the whole effect: nothing leaves the building.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import jinja2
import pandas as pd

from arflow.config import PROMPTS_DIR
from arflow.money import format_minor
from tasks.guardrails import Directory, check_message

TEMPLATE_BY_CHANNEL = {"crm_task": "owner_task.j2", "decision": "owner_task.j2", "slack": "slack_alert.j2",
                       "billing": "auto_charge.j2"}
CONTEXT_COLUMNS = ["invoice_number", "due_date", "days_past_due", "currency", "effective_balance_minor",
                   "billing_contact_name", "customer_name", "segment", "arr_minor", "health", "risk_score",
                   "escalation", "escalation_reason", "paid_count", "avg_days_late", "late_count_12m",
                   "payment_link"]


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS_DIR), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False)


def template_for(channel: str, tone: str) -> str:
    return TEMPLATE_BY_CHANNEL.get(channel, f"email_{tone}.j2")


def render(template: str, context: dict) -> tuple[str, str]:
    text = environment().get_template(template).render(**context).strip()
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {template} must start with a 'Subject: ' line")
    return first.removeprefix("Subject: ").strip(), rest.strip()


def outbox_rows(actions: pd.DataFrame, invoices: pd.DataFrame, *, mode: str, run_id: str, as_of: dt.date,
                sender_name: str = "Accounts Receivable") -> pd.DataFrame:
    """actions (from tasks.plan) + the invoices' context -> rows for the ledger's outbox."""
    if actions.empty:
        return pd.DataFrame()
    ctx = invoices.loc[actions["row"], CONTEXT_COLUMNS].reset_index(drop=True)
    a = actions.reset_index(drop=True)
    directory = Directory.build(invoices["invoice_number"], invoices["customer_id"],
                                invoices["customer_name"], invoices["customer_id"])
    subjects, bodies, statuses, blocked = [], [], [], []
    for act, c in zip(a.itertuples(index=False), ctx.itertuples(index=False)):
        cur = c.currency
        context = {
            "step": act.step, "needs_approval": bool(act.needs_approval), "recipients": act.recipients,
            "invoice_number": c.invoice_number, "due_date": c.due_date.date().isoformat(),
            "days_past_due": int(c.days_past_due), "currency": cur,
            "amount": format_minor(int(c.effective_balance_minor), cur),
            "contact_name": c.billing_contact_name if isinstance(c.billing_contact_name, str) else "there",
            "customer_name": c.customer_name, "segment": c.segment,
            "arr": format_minor(int(c.arr_minor), "USD") if pd.notna(c.arr_minor) else "unknown",
            "health": c.health if isinstance(c.health, str) else None, "risk_score": int(c.risk_score),
            "escalation": c.escalation, "escalation_reason": c.escalation_reason, "paid_count": int(c.paid_count),
            "avg_days_late": c.avg_days_late, "late_count_12m": int(c.late_count_12m),
            "payment_link": c.payment_link if isinstance(c.payment_link, str) else None,
            "sender_name": sender_name,
        }
        subject, body = render(template_for(act.channel, act.tone), context)
        subjects.append(subject)
        bodies.append(body)
        status, reason = ("awaiting_decision" if act.needs_approval else "planned"), None
        if act.channel == "email":  # customer-facing: the guardrails decide whether it may be queued
            verdict = check_message(subject, body, customer_id=act.customer_id, recipients=act.recipients.split(","),
                                    directory=directory, approved_step=bool(act.needs_approval),
                                    own_names=(context["contact_name"], str(c.customer_name)))
            if not verdict.ok:
                status, reason = "blocked", "guardrail: " + ",".join(verdict.violations)
        statuses.append(status)
        blocked.append(reason)
    return pd.DataFrame({
        "idempotency_key": a["idempotency_key"], "mode": mode, "run_id": run_id, "as_of": as_of,
        "invoice_id": a["invoice_id"], "customer_id": a["customer_id"], "lane": a["lane"], "step": a["step"],
        "channel": a["channel"], "tone": a["tone"], "recipients": a["recipients"], "subject": subjects,
        "body": bodies, "needs_approval": a["needs_approval"].astype(bool), "status": statuses,
        "closed_reason": blocked,
    })


def receipt_rows(closed: list[dict], invoices: pd.DataFrame, customers: pd.DataFrame, *, mode: str, run_id: str,
                 as_of: dt.date, sender_name: str = "Accounts Receivable") -> pd.DataFrame:
    """A receipt per invoice paid in full, shaped as outbox rows (key invoice_id:receipt:email)."""
    if not closed:
        return pd.DataFrame()
    inv = invoices.set_index("invoice_id")
    cust = customers.set_index("customer_id")
    rows = []
    for c in closed:
        i, who = inv.loc[c["invoice_id"]], cust.loc[c["customer_id"]]
        name = who["billing_contact_name"]
        subject, body = render("receipt.j2", {
            "invoice_number": i["invoice_number"], "amount": format_minor(c["amount_minor"], c["currency"]),
            "currency": c["currency"], "paid_date": c["paid_date"].isoformat(), "sender_name": sender_name,
            "contact_name": name if isinstance(name, str) else "there"})
        rows.append({"idempotency_key": f"{c['invoice_id']}:receipt:email", "mode": mode, "run_id": run_id,
                     "as_of": as_of, "invoice_id": c["invoice_id"], "customer_id": c["customer_id"], "lane": "paid",
                     "step": "receipt", "channel": "email", "tone": "friendly",
                     "recipients": who["billing_contact_email"], "subject": subject, "body": body,
                     "needs_approval": False, "status": "planned"})
    return pd.DataFrame(rows)


def _header(value: str) -> str:
    """A header value on one line (no injected headers), RFC 2047-encoded if it is not ASCII."""
    from email.header import Header

    value = " ".join(str(value).split())
    return value if value.isascii() else Header(value, "utf-8").encode()


def write_eml(rows: pd.DataFrame, folder, *, sender: str) -> int:
    """Dry-run: each customer e-mail that may go out is written as an .eml file (one per idempotency
    key), so a person can open exactly what would have been sent. Returns how many were written.
    Composed directly (UTF-8, 8bit): the email package's serializer costs about 2 ms a message."""
    from pathlib import Path

    if rows.empty:
        return 0
    mail = rows[(rows["channel"] == "email") & rows["status"].isin(["planned", "awaiting_decision"])]
    if mail.empty:
        return 0
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sender_h = _header(sender)
    for r in mail.itertuples():
        to = ", ".join(x for x in r.recipients.split(",") if "@" in x)
        head = [f"From: {sender_h}", f"To: {_header(to)}", f"Subject: {_header(r.subject)}", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
                f"X-Arflow-Idempotency-Key: {_header(r.idempotency_key)}", f"X-Arflow-Status: {r.status}"]
        text = "\n".join(head) + "\n\n" + r.body.replace("\r\n", "\n") + "\n"  # LF, as Python's email writes
        name = r.idempotency_key.replace(":", "_").replace("/", "_") + ".eml"
        (folder / name).write_bytes(text.encode("utf-8"))
    return len(mail)
