"""Render the touches a lane is due today and shape them as outbox rows.

Templates live in ``prompts/`` (Jinja, one file each, first line ``Subject: ...``). In dry-run mode
the outbox row is the whole effect: nothing leaves the building.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache

import jinja2
import numpy as np
import pandas as pd

from arflow.config import PROMPTS_DIR
from babel import Locale
from babel.dates import format_date

from arflow.money import format_amount, format_minor
from connectors.ledger import namespace
from tasks.guardrails import Directory, check_message

TEMPLATE_BY_CHANNEL = {"crm_task": "owner_task.j2", "decision": "owner_task.j2", "slack": "slack_alert.j2",
                       "billing": "auto_charge.j2"}
CONTEXT_COLUMNS = ["invoice_number", "due_date", "days_past_due", "currency", "effective_balance_minor",
                   "billing_contact_name", "customer_name", "segment", "arr_minor", "health", "risk_score",
                   "escalation", "escalation_reason", "paid_count", "avg_days_late", "late_count_12m",
                   "payment_link", "payment_failed", "language", "owner_ae_email", "billing_contact_email",
                   "tenure_months", "customer_credit_minor", "credit_notes", "amount_due_minor", "schedule", "autopay",
                   "po_number", "first_time_late", "disputed_minor", "broken_promise_date",
                   "account_number", "invoice_pdf", "invoice_pdf_url"]
TONE_RANK = {"friendly": 0, "firm": 1, "escalating": 2}
LOCALES = {"en": "en_US", "de": "de_DE", "fr": "fr_FR"}  # how each template language writes money
PO_WORDS = {"en": "PO", "de": "Bestellnr.", "fr": "bon de commande"}
# Words before a name that are not the first name ("Dr. Anna Berg" is greeted "Anna").
TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "m", "mme", "mlle", "monsieur", "madame", "sir"}
# A contact "name" that is a team or a role, not a person: greeted with the language's neutral greeting.
ROLE_WORDS = {"accounts", "account", "payable", "payables", "ap", "billing", "finance", "team", "department",
              "office", "invoices", "invoice", "buchhaltung", "kreditoren", "rechnungswesen", "abteilung",
              "comptabilité", "comptabilite", "service", "fournisseurs", "factures", "there", "admin"}
# Touches of an invoice on an agreed payment plan: carried by the customer's message of the day,
# never merged into another step's text (message_context).
CARRIED_STEPS = ("installment_reminder",)
NOT_YET_DUE = "not yet due"
# Message kinds with their own template (one file per language): the e-mail after a broken promise
# to pay, and the first overdue e-mail to a customer late for the first time (policy.first_time_late).
PROMISE_BROKEN = "promise_broken"
KIND_TEMPLATES = {PROMISE_BROKEN: "promise_broken.j2", "first_late": "email_first_late.j2",
                  "due_today": "email_due_today.j2"}
DISPUTED = "disputed: under review"


@lru_cache(maxsize=16)
def environment(language: str = "en") -> jinja2.Environment:
    """Templates for a language: prompts/<language>/ first, then the English ones in prompts/."""
    paths = [PROMPTS_DIR / language] if language and (PROMPTS_DIR / language).is_dir() else []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths + [PROMPTS_DIR]),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    locale = Locale.parse(LOCALES.get(language, "en_US"))  # parsed once: babel parses a name on every call

    # {{ amount|money(currency) }}: "$12,345.67", "9.490,88 €", "2 130,14 €", the customer's way. The
    # same amount is written in several messages of a run (the customer's, the owner's), so once each.
    @lru_cache(maxsize=65536)
    def money(amount, currency) -> str:
        return format_amount(str(amount).replace(",", ""), str(currency), locale)

    env.filters["money"] = money
    # {{ po_number|po }}: the customer's purchase order beside our invoice number, where it has one.
    po_word = PO_WORDS.get(language, PO_WORDS["en"])
    env.filters["po"] = lambda po: "" if not po else f" ({po})" if str(po).upper().startswith(("PO", po_word.upper())) \
        else f" ({po_word} {po})"  # "PO-1234" is not written "PO PO-1234"
    # {{ due_date|date }}: "December 1, 2026", "1. Dezember 2026", "1 décembre 2026".
    env.filters["date"] = lru_cache(maxsize=4096)(
        lambda value: format_date(dt.date.fromisoformat(str(value)[:10]), "long", locale=locale))
    # {{ contact_name|first_name }}: "Anna" from "Anna Berg", "Berg, Anna" or "Dr. Anna Berg"; "" for no person.
    env.filters["first_name"] = first_name
    return env


def first_name(name) -> str:
    """The first name of a contact, or "" where the contact is not named as a person (empty, a team
    such as "Accounts Payable", an address)."""
    if not isinstance(name, str) or "@" in name:
        return ""
    text = " ".join(name.split())
    if "," in text:  # "Berg, Anna"
        last, _, rest = text.partition(",")
        text = rest.strip() or last.strip()
    words = [w for w in text.split(" ") if w]
    if any(w.lower().strip(".") in ROLE_WORDS for w in words):
        return ""
    words = [w for w in words if w.lower().strip(".") not in TITLES]
    if not words:
        return ""
    first = words[0]
    if not any(ch.isalpha() for ch in first) or any(ch.isdigit() for ch in first) or len(first) < 2 \
            or (first.isupper() and len(first) <= 3 and len(words) > 1) or first.endswith("."):  # initials: "J. Berg"
        return ""
    return first


GREETING_WORDS = ("Hi", "Guten Tag", "Bonjour")  # prompts/*/_greeting.j2


def greetings(contact_name) -> tuple[str, ...]:
    """The greetings the templates write to this contact ("Hi Sue"): the contact's own name, read
    as data by the guardrails where it stands in the greeting, and nowhere else."""
    fn = first_name(contact_name)
    return tuple(f"{g} {fn}" for g in GREETING_WORDS) if fn else ()


def template_for(channel: str, tone: str, ctx: dict | None = None) -> str:
    if channel == "email" and ctx is not None:
        if ctx.get("step") == PROMISE_BROKEN:
            return KIND_TEMPLATES[PROMISE_BROKEN]
        if ctx.get("step") == "nudge" and ctx.get("first_time_late") and not ctx.get("payment_failed"):
            return KIND_TEMPLATES["first_late"]
        if ctx.get("step") == "pre_due_reminder" and ctx.get("invoices") \
                and all(i.get("days_past_due") == 0 for i in ctx["invoices"]):
            return KIND_TEMPLATES["due_today"]  # a reminder held back to the due date never says "is due <today>"
    return TEMPLATE_BY_CHANNEL.get(channel, f"email_{tone}.j2")


def render(template: str, context: dict, language: str = "en") -> tuple[str, str]:
    text = environment(language).get_template(template).render(**context).strip()
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {template} must start with a 'Subject: ' line")
    return first.removeprefix("Subject: ").strip(), rest.strip()


def invoice_context(c, act) -> dict:
    """What one touch's text is rendered from; stored with the outbox row (JSON), so the message
    can be rendered again at send time without an invoice that changed since."""
    cur = c.currency
    autopay = bool(c.autopay) if isinstance(c.autopay, (bool, np.bool_)) else str(c.autopay).strip().lower() == "true"
    # An invoice with instalments is chased for what is due (tasks/schedule.py), not its whole balance;
    # one disputed in part, for what is not disputed (the disputed part is listed as under review).
    due = int(c.amount_due_minor) if pd.notna(c.amount_due_minor) else int(c.effective_balance_minor)
    disputed = int(c.disputed_minor) if pd.notna(c.disputed_minor) else 0
    due = max(due - disputed, 0) if disputed else due
    return {
        "invoice_id": act.invoice_id, "step": act.step, "step_day": int(act.step_day), "tone": act.tone,
        "needs_approval": bool(act.needs_approval), "recipients": act.recipients,
        "invoice_number": str(c.invoice_number), "due_date": c.due_date.date().isoformat(),
        "days_past_due": int(c.days_past_due), "currency": cur,
        "amount_minor": due, "amount": format_minor(due, cur),
        "balance": format_minor(int(c.effective_balance_minor), cur) if isinstance(c.schedule, str) else None,
        "contact_name": c.billing_contact_name if isinstance(c.billing_contact_name, str) else "there",
        "customer_name": str(c.customer_name), "segment": c.segment,
        "arr": format_minor(int(c.arr_minor), "USD") if pd.notna(c.arr_minor) else "unknown",
        "health": c.health if isinstance(c.health, str) else None, "risk_score": int(c.risk_score),
        "escalation": c.escalation, "escalation_reason": c.escalation_reason, "paid_count": int(c.paid_count),
        "avg_days_late": float(c.avg_days_late), "late_count_12m": int(c.late_count_12m),
        # An invoice the card on file pays at the due date gets no link before then (paid twice).
        "payment_link": c.payment_link if isinstance(c.payment_link, str) and not (autopay and c.days_past_due <= 0)
        else None, "autopay": autopay,
        "payment_failed": bool(c.payment_failed), "language": c.language,
        "owner_email": c.owner_ae_email if isinstance(c.owner_ae_email, str) else None,
        "billing_email": c.billing_contact_email if isinstance(c.billing_contact_email, str) else None,
        "tenure_months": int(c.tenure_months) if pd.notna(c.tenure_months) else None,
        "customer_credit": format_minor(int(c.customer_credit_minor), cur)
        if pd.notna(c.customer_credit_minor) and int(c.customer_credit_minor) > 0 else None,
        "credit_notes": c.credit_notes if isinstance(c.credit_notes, str) and c.credit_notes else None,
        "po_number": c.po_number.strip() if isinstance(c.po_number, str) and c.po_number.strip() else None,
        "first_time_late": bool(c.first_time_late) if pd.notna(c.first_time_late) else False,
        "disputed": format_minor(disputed, cur) if disputed else None,
        "promised_date": pd.Timestamp(c.broken_promise_date).date().isoformat()
        if act.step == PROMISE_BROKEN and pd.notna(c.broken_promise_date) else None,
        # The customer's account number where the source has one (QuickBooks AcctNum, Xero
        # AccountNumber, Salesforce AccountNumber); none: the line is left out.
        "account_number": c.account_number.strip() if isinstance(c.account_number, str) and c.account_number.strip()
        else None,
        # The billing system's PDF of the invoice, as a link (Stripe's invoice_pdf).
        "invoice_pdf_url": c.invoice_pdf_url if isinstance(c.invoice_pdf_url, str) and c.invoice_pdf_url else None,
    }


# Why an open invoice is not chased today, as the customer may read it beside their reminder.
REVIEW_REASONS = {"dispute": "under review", "payment_plan": "on a payment plan", "promise_to_pay": "payment promised",
                  "unapplied_cash": "under review", "unapplied_credit": "a credit is being applied",
                  "reconciliation_mismatch": "under review", "paused": "under review",
                  "billing_dunning": "payment being retried"}


def account_positions(invoices: pd.DataFrame, actions: pd.DataFrame | None = None) -> dict[str, dict]:
    """Per customer: every open overdue invoice (what is left, marked where a person has it under
    review: a hold, or a step waiting for a decision) and the credit they hold that no invoice has
    taken, so a reminder never shows a partial picture. With `actions`: the customers they write to."""
    if invoices.empty or "effective_balance_minor" not in invoices:
        return {}
    cols = ["customer_id", "invoice_id", "invoice_number", "currency", "effective_balance_minor", "due_date",
            "days_past_due"]
    if actions is not None:  # only the customers written to today (a lane's part of the run's invoices)
        invoices = invoices[invoices["customer_id"].isin(actions["customer_id"].unique())]
    inv = invoices[(invoices["effective_balance_minor"] > 0) & (invoices["days_past_due"] > 0)]
    if "written_off" in inv:
        inv = inv[~inv["written_off"].fillna(False).astype(bool)]
    out: dict[str, dict] = {}
    reason = inv["reason"] if "reason" in inv else pd.Series(None, index=inv.index)
    outcome = inv["outcome"] if "outcome" in inv else pd.Series(None, index=inv.index)
    deciding = {}  # today's steps that go to a person first
    if actions is not None and not actions.empty:
        d = actions[actions["needs_approval"].astype(bool)]
        deciding = dict(zip(d["invoice_id"], d["step"]))
    disputed = inv["disputed_minor"].fillna(0).astype("int64") if "disputed_minor" in inv \
        else pd.Series(0, index=inv.index)
    for r, why, oc, part in zip(inv[cols].itertuples(index=False), reason, outcome, disputed):
        review = REVIEW_REASONS.get(why) if oc == "held" else ("under review" if why == "previous_step_not_delivered"
                                                                 else None)
        if r.invoice_id in deciding:
            review = "a credit is being applied" if deciding[r.invoice_id] == "apply_credit" else "under review"
        entry = {"invoice_id": r.invoice_id, "invoice_number": str(r.invoice_number), "currency": r.currency,
                 "amount": format_minor(int(r.effective_balance_minor) - int(part), r.currency),
                 "due_date": r.due_date.date().isoformat(), "days_past_due": int(r.days_past_due), "review": review}
        out.setdefault(r.customer_id, {"open": [], "credits": []})["open"].append(entry)
        if part:  # disputed in part: what is disputed is under review, the rest is as it stands
            out[r.customer_id]["open"].append({**entry, "amount": format_minor(int(part), r.currency),
                                               "review": REVIEW_REASONS["dispute"]})
    if "customer_credit_minor" in invoices:
        held = invoices[invoices["customer_credit_minor"].fillna(0) > 0].drop_duplicates(["customer_id", "currency"])
        for r in held[["customer_id", "currency", "customer_credit_minor", "credit_notes"]].itertuples(index=False):
            out.setdefault(r.customer_id, {"open": [], "credits": []})["credits"].append({
                "currency": r.currency, "amount": format_minor(int(r.customer_credit_minor), r.currency),
                "notes": str(r.credit_notes)})
    for v in out.values():
        v["open"].sort(key=lambda x: (-x["days_past_due"], x["invoice_number"]))
    return out


def lead_index(items: list[dict]) -> int:
    """Which of a message's touches leads it: the most advanced step (then the firmer tone, then the
    oldest invoice). Its step, tone, invoice and recipients are the message's, for the text, the
    decision a person sees and the send alike."""
    return max(range(len(items)), key=lambda n: (items[n].get("step") not in CARRIED_STEPS,
                                                 items[n].get("step") == PROMISE_BROKEN,
                                                 items[n].get("step_day") or 0, TONE_RANK.get(items[n].get("tone"), 0),
                                                 items[n].get("days_past_due") or 0))


def message_envelope(rows: pd.DataFrame, mail_from: str, reply_to: str | None = None) -> dict:
    """From, Sender, To, Cc and Reply-To of one message from its outbox rows, exactly as the send
    composes them (connectors.messaging.envelope on the lead row)."""
    from connectors.messaging import envelope

    items = [json.loads(c) if isinstance(c, str) else {} for c in rows["context"]]
    lead = rows.iloc[lead_index(items)]
    own = lead.get("sender")
    return {**envelope(str(lead["recipients"] or ""), own if isinstance(own, str) and own else None, mail_from,
                       reply_to, company_name(items[lead_index(items)])), "attachments": attachments(rows["context"])}


def attachments(contexts) -> list[str]:
    """The files one message carries, from its outbox rows' contexts: the statement of account and
    each invoice's PDF (paths; an invoice PDF's path names its bytes: tasks.documents)."""
    out = set()
    for context in contexts:
        out.update(p for p in (statement_file(context), invoice_pdf_file(context)) if p)
    return sorted(out)


def company_name(context) -> str | None:
    """The company's name a message's From shows (policy company.name, kept in the row's context)."""
    if isinstance(context, str):
        context = json.loads(context) if '"company"' in context else {}
    company = (context or {}).get("company")
    return company.get("name") if isinstance(company, dict) else None


def remittance_of(company: dict | None, currencies) -> list[dict]:
    """How to pay, once per currency of the message (policy company.remittance; `default` for the others)."""
    if not company:
        return []
    out = []
    for cur in dict.fromkeys(currencies):
        text = company["remittance"].get(cur) or company["remittance"].get("default")
        if text:
            out.append({"currency": cur, "text": text})
    return out


def message_context(items: list[dict], sender_name: str) -> dict:
    """One message from the touches it carries: the most advanced step leads (its step, tone and
    invoice fill the single-invoice fields); every invoice is listed."""
    # An invoice on an agreed plan is never merged into another step's text (a nudge or a pause
    # warning asking for the whole amount), nor one not yet due into a past-due message: the
    # message lists them, as on the plan or not yet due, after what it asks for.
    main = [i for i in items if i["step"] not in CARRIED_STEPS] or items
    lead = main[lead_index(main)]
    if lead["days_past_due"] > 0:
        main = [i for i in main if i["days_past_due"] > 0]
    listed = {i["invoice_id"] for i in main}
    carried = [i for i in items if i["invoice_id"] not in listed]
    ordered = sorted(main, key=lambda i: (-i["days_past_due"], i["invoice_number"]))
    aside = [{"invoice_id": i["invoice_id"], "invoice_number": i["invoice_number"], "currency": i["currency"],
              "amount": i["amount"], "due_date": i["due_date"], "days_past_due": i["days_past_due"],
              "review": REVIEW_REASONS["payment_plan"] if i["step"] in CARRIED_STEPS else NOT_YET_DUE}
             for i in carried]
    # The disputed part of an invoice disputed in part: listed as under review, never asked for.
    aside += [{"invoice_id": i["invoice_id"], "invoice_number": i["invoice_number"], "currency": i["currency"],
               "amount": i["disputed"], "due_date": i["due_date"], "days_past_due": i["days_past_due"],
               "review": REVIEW_REASONS["dispute"]} for i in ordered if i.get("disputed")]
    remittance = remittance_of(lead.get("company"), [i["currency"] for i in ordered])
    # What the message asks for in all, per currency, summed in minor units (a list of one needs none).
    totals: dict[str, int] = {}
    for i in ordered:
        totals[i["currency"]] = totals.get(i["currency"], 0) + int(i["amount_minor"])
    total = [{"currency": c, "amount": format_minor(v, c)} for c, v in totals.items()] if len(ordered) > 1 else []
    return {**lead, "invoices": ordered, "sender_name": sender_name, "remittance": remittance, "totals": total,
            "also_open": aside + [x for x in lead.get("also_open", []) if x["invoice_id"] not in
                                  {i["invoice_id"] for i in carried}], "credits": lead.get("credits", []),
            "needs_approval": any(i["needs_approval"] for i in items),
            "autopay": all(i.get("autopay") for i in main),
            "first_time_late": all(i.get("first_time_late") for i in main),
            "payment_failed": any(i["payment_failed"] for i in items) and lead["step"] in ("nudge", "payment_failed_notice")}


def render_message(channel: str, items: list[dict], sender_name: str) -> tuple[str, str, dict]:
    ctx = message_context(items, sender_name)
    subject, body = render(template_for(channel, ctx["tone"], ctx), ctx, ctx.get("language") or "en")
    return subject, body, ctx


def check_rendered(subject: str, body: str, ctx: dict, customer_id: str, directory: Directory) -> list[str]:
    verdict = check_message(subject, body, customer_id=customer_id, recipients=ctx["recipients"].split(","),
                            directory=directory, approved_step=bool(ctx["needs_approval"]),
                            own_names=(ctx["contact_name"], ctx["customer_name"], *greetings(ctx["contact_name"])),
                            own_text=company_lines(ctx.get("company")))
    return list(verdict.violations)


def company_lines(company: dict | None) -> tuple[str, ...]:
    """The company's own words in a message (policy company: its name, signature lines, remittance
    texts), which the guardrails do not read as another customer's data."""
    if not isinstance(company, dict):
        return ()
    return (company.get("name") or "", *(company.get("signature") or ()), *(company.get("remittance") or {}).values())


def message_directory(invoices: pd.DataFrame) -> Directory:
    """Every invoice number and customer name of the run, for the guardrails (a partition of the
    run renders its customers' messages against the whole run's directory: tasks/partitions.py)."""
    return Directory.build(invoices["invoice_number"], invoices["customer_id"], invoices["customer_name"],
                           invoices["customer_id"])


def outbox_rows(actions: pd.DataFrame, invoices: pd.DataFrame, *, mode: str, run_id: str, as_of: dt.date,
                policy=None, sender_name: str = "Accounts Receivable", personalize=None,
                directory: Directory | None = None) -> pd.DataFrame:
    """actions (from tasks.plan) + the invoices' context -> rows for the ledger's outbox.

    One customer, one message: a customer's e-mail touches of the day share a message key and one
    rendered text listing every invoice, at the most advanced step among them. Status by mode:
    dry-run `planned` (`awaiting_decision` where a person would approve it first; no decision is
    opened); draft `awaiting_decision` (a person approves every message); send `queued`,
    or `awaiting_decision` where the step needs approval. A message the guardrails reject is
    `blocked` with the reasons, whatever the mode; outside a dry run it opens a decision
    (tasks.decisions, kind guardrail_blocked), so a person sees it and the later steps it holds. `personalize` (tasks.personalize.Personalizer):
    the model may rewrite each customer e-mail; its draft is checked before it replaces the text,
    and the guardrails then check whatever text is queued. `directory`: the run's (message_directory),
    where `invoices` is a part of it."""
    if actions.empty:
        return pd.DataFrame()
    a = actions.reset_index(drop=True)
    ctx_rows = invoices.reindex(columns=CONTEXT_COLUMNS).loc[a["row"]].reset_index(drop=True).astype(object)
    directory = message_directory(invoices) if directory is None else directory
    contexts = [invoice_context(c, act) for act, c in zip(a.astype(object).itertuples(index=False),
                                                          ctx_rows.itertuples(index=False))]
    company = policy.company.as_context() if policy is not None else None
    if company:  # the signature, From's name and remittance text, kept with the row (a later render is the same)
        for c in contexts:
            c["company"] = company
    if "statement" in a:  # the statement of account this e-mail carries (tasks.statement, policy.statements)
        for i, path in enumerate(a["statement"].tolist()):
            if isinstance(path, str) and path:
                contexts[i]["statement"] = path
    if "invoice_pdf_file" in a:  # the billing system's PDF of the invoice (tasks.documents)
        for i, path in enumerate(a["invoice_pdf_file"].tolist()):
            if isinstance(path, str) and path:
                contexts[i]["invoice_pdf_file"] = path
    is_mail = (a["channel"] == "email").to_numpy()
    message_key = np.where(is_mail, a["customer_id"].astype(str) + ":" + as_of.isoformat() + ":email",
                           a["idempotency_key"].astype(str))
    use_owner = policy is None or policy.delivery.sender == "owner"
    n = len(a)
    subjects, bodies, statuses, reasons = [None] * n, [None] * n, [None] * n, [None] * n
    senders = [None] * n
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(message_key):
        groups.setdefault(key, []).append(i)
    channels, customers = a["channel"].tolist(), a["customer_id"].tolist()
    recipients = a["recipients"].tolist()
    account = account_positions(invoices, a)
    for key, idx in groups.items():
        items = [contexts[i] for i in idx]
        channel = channels[idx[0]]
        if channel == "email":  # one message covers everything the customer owes, and the credit they hold
            extra = account.get(customers[idx[0]], {})
            listed = {i["invoice_id"] for i in items}
            for i in idx:
                contexts[i]["also_open"] = [x for x in extra.get("open", []) if x["invoice_id"] not in listed]
                contexts[i]["credits"] = extra.get("credits", [])
        subject, body, ctx = render_message(channel, items, sender_name)
        status, reason = initial_status(mode, ctx["needs_approval"]), None
        if channel == "email" and personalize is not None:
            subject, body, how = personalize(subject, body, ctx, customers[idx[0]], directory)
            for i in idx:
                contexts[i]["personalized"] = how
        if channel == "email":  # customer-facing: the guardrails decide whether it may be queued
            found = check_rendered(subject, body, ctx, customers[idx[0]], directory)
            if found:
                status, reason = "blocked", "guardrail: " + ",".join(found)
        sender = ctx["owner_email"] if (channel == "email" and use_owner) else None
        for i in idx:
            subjects[i], bodies[i], statuses[i], reasons[i], senders[i] = subject, body, status, reason, sender
            if channel == "email":  # one message, one set of recipients: the lead's (lead_index)
                recipients[i] = ctx["recipients"]
    return pd.DataFrame({
        "idempotency_key": a["idempotency_key"], "mode": namespace(mode), "run_id": run_id, "as_of": as_of,
        "invoice_id": a["invoice_id"], "customer_id": a["customer_id"], "lane": a["lane"], "step": a["step"],
        "channel": a["channel"], "tone": a["tone"], "recipients": recipients, "subject": subjects,
        "body": bodies, "needs_approval": a["needs_approval"].astype(bool), "status": statuses,
        "closed_reason": reasons, "message_key": message_key,
        "context": [json.dumps(c, default=str) for c in contexts],
        "language": [c["language"] for c in contexts], "sender": senders,
    })


def initial_status(mode: str, needs_approval: bool) -> str:
    if mode == "dry-run":  # a preview: what would wait for a person is marked so
        return "awaiting_decision" if needs_approval else "planned"
    if mode == "draft" or needs_approval:
        return "awaiting_decision"
    return "queued"


def receipt_rows(closed: list[dict], invoices: pd.DataFrame, customers: pd.DataFrame, *, mode: str, run_id: str,
                 as_of: dt.date, sender_name: str = "Accounts Receivable", policy=None) -> pd.DataFrame:
    """A receipt per invoice paid in full, shaped as outbox rows (key invoice_id:receipt:email)."""
    if not closed:
        return pd.DataFrame()
    inv = invoices.set_index("invoice_id")
    cust = customers.set_index("customer_id")
    rows = []
    for c in closed:
        i, who = inv.loc[c["invoice_id"]], cust.loc[c["customer_id"]]
        name = who["billing_contact_name"]
        language = who.get("language") if isinstance(who.get("language"), str) and who.get("language") else \
            (policy.delivery.languages.get(str(who.get("country") or "").upper(), policy.delivery.default_language)
             if policy is not None else "en")
        company = policy.company.as_context() if policy is not None else None
        subject, body = render("receipt.j2", {"company": company,
            "invoice_number": i["invoice_number"], "amount": format_minor(c["amount_minor"], c["currency"]),
            "currency": c["currency"], "paid_date": c["paid_date"].isoformat(), "sender_name": sender_name,
            "contact_name": name if isinstance(name, str) else "there"}, language)
        rows.append({"idempotency_key": f"{c['invoice_id']}:receipt:email", "mode": namespace(mode), "run_id": run_id,
                     "message_key": f"{c['invoice_id']}:receipt:email",
                     "as_of": as_of, "invoice_id": c["invoice_id"], "customer_id": c["customer_id"], "lane": "paid",
                     "step": "receipt", "channel": "email", "tone": "friendly",
                     "recipients": who["billing_contact_email"], "subject": subject, "body": body,
                     "needs_approval": False, "status": initial_status(mode, False), "language": language})
    return pd.DataFrame(rows)


def _header(value: str) -> str:
    """A header value on one line (no injected headers), RFC 2047-encoded if it is not ASCII."""
    from email.header import Header

    value = " ".join(str(value).split())
    return value if value.isascii() else Header(value, "utf-8").encode()


def _context_path(context, key: str) -> str | None:
    """A file path an outbox row's context (JSON) names under `key`, if any."""
    if not isinstance(context, str) or f'"{key}"' not in context:
        return None
    path = json.loads(context).get(key)
    return path if isinstance(path, str) and path else None


def invoice_pdf_file(context) -> str | None:
    """The invoice PDF an e-mail's outbox row carries (its context's `invoice_pdf_file`), if any."""
    return _context_path(context, "invoice_pdf_file")


def statement_file(context) -> str | None:
    """The statement of account an e-mail's outbox row carries (its context's `statement`), if any."""
    return _context_path(context, "statement")


def write_eml(rows: pd.DataFrame, folder, *, sender: str, reply_to: str | None = None,
              failures: list | None = None) -> int:
    """Dry-run: each customer e-mail that may go out is written as an .eml file (one per idempotency
    key), so a person can open exactly what would have been sent. Returns how many were written.
    Composed directly (UTF-8, 8bit): the email package's serializer costs about 2 ms a message.
    A message that cannot be written (the file system refuses it) is left out and appended to
    `failures` as (message key, reason); the others are still written. A key too long for a file
    name is written under its digest."""
    import hashlib
    from pathlib import Path

    if rows.empty:
        return 0
    mail = rows[(rows["channel"] == "email") & rows["status"].isin(["planned", "awaiting_decision", "queued"])]
    carried = {}
    if "context" in mail:  # what each message carries, from all its rows (tasks.touches.attachments)
        keyed = mail["message_key"] if "message_key" in mail else mail["idempotency_key"]
        carried = {k: attachments(g) for k, g in mail["context"].groupby(keyed.to_numpy())}
    if "message_key" in mail:
        mail = mail.drop_duplicates("message_key")  # one customer, one message
    if mail.empty:
        return 0
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from connectors.messaging import envelope

    written = 0
    for r in mail.itertuples():
        own = getattr(r, "sender", None)
        env = envelope(str(r.recipients or ""), own if isinstance(own, str) and own else None, sender, reply_to,
                       company_name(getattr(r, "context", None)))
        head = [f"From: {_header(env['from'])}", *([f"Sender: {_header(env['sender'])}"] if env["sender"] else []),
                f"To: {_header(', '.join(env['to']))}", *([f"Cc: {_header(', '.join(env['cc']))}"] if env["cc"] else []),
                *([f"Reply-To: {_header(env['reply_to'])}",
                   f"List-Unsubscribe: <mailto:{_header(env['reply_to'])}?subject=unsubscribe>"] if env["reply_to"] else []),
                f"Subject: {_header(r.subject)}", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
                f"X-Arflow-Message-Key: {_header(getattr(r, 'message_key', r.idempotency_key))}",
                f"X-Arflow-Status: {r.status}"]
        for attached in carried.get(getattr(r, "message_key", r.idempotency_key), []):
            # dry-run: the statement and invoice PDFs it would carry, written in the run folder
            head.append(f"X-Arflow-Attachment: {_header(attached)}")
        text = "\n".join(head) + "\n\n" + r.body.replace("\r\n", "\n") + "\n"  # LF, as Python's email writes
        key = str(getattr(r, "message_key", r.idempotency_key))
        name = key.replace(":", "_").replace("/", "_").replace("\\", "_").replace("\0", "_")
        if len(name.encode("utf-8")) > 200 or name in (".", ".."):
            name = "message-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        try:
            (folder / (name + ".eml")).write_bytes(text.encode("utf-8", "surrogateescape"))
        except (OSError, UnicodeError) as exc:
            if failures is None:
                raise
            failures.append((key, f"the .eml file could not be written: {exc.__class__.__name__}"))
            continue
        written += 1
    return written
