"""Reply triage: each inbound reply gets a class, and each class a defined effect in the ledger.

Classes and effects (docs/model.md, replies). Nothing here changes an invoice, an amount or a contact at
the source, and nothing marks an invoice paid: the checkpoint does that when the cash arrives.

| class | effect |
| --- | --- |
| paid | pause reminders on the invoice (the customer's invoices, if none is named) for 5 business days while the payment arrives |
| promise_to_pay (with a date) | a promise to pay on the invoice (each open invoice named, else the customer's oldest) |
| dispute | a dispute on the invoice (with the amount and lines where given: only that part is held) and its reason code (none found: `unspecified`, and a decision asks a person for one); a task for the owner |
| wrong_contact | pause the customer 10 business days; a task for the owner to update the billing contact |
| out_of_office | pause the customer until the return date (else 5 business days) |
| complaint | pause the customer 5 business days; a task for the owner |
| refund_request | pause the customer 5 business days; a task for finance |
| legal_threat | pause the customer 30 days; a task for finance and the owner; no automated message |
| question | the customer's reminders paused until a person answers (`arflow answered`; a flagged reply pauses nothing); a task for the owner |

A reply that tries to instruct the system is flagged (``instructions_in_reply``) and a person is
told; it gets its class's effect and nothing more. A reply nobody can be matched to (sender and
invoice numbers unknown) is recorded as unmatched with a task for finance.

The model (Claude, a forced tool call) classifies where it is available; without it, or when its
answer does not validate, keyword rules do, and the reply says which.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from arflow import businessdays as bd

PROMPT = "triage_replies.j2"
CATEGORIES = ("paid", "promise_to_pay", "dispute", "wrong_contact", "out_of_office", "complaint",
              "refund_request", "legal_threat", "question")

TRIAGE_TOOL = {
    "name": "classify_replies",
    "description": "Record the class of every reply in the request, one entry per reply_id.",
    "input_schema": {"type": "object", "additionalProperties": False, "required": ["replies"], "properties": {
        "replies": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                    "required": ["reply_id", "category", "summary", "instructions_found"], "properties": {
                        "reply_id": {"type": "string"},
                        "category": {"type": "string", "enum": list(CATEGORIES)},
                        "date": {"type": ["string", "null"], "description": "YYYY-MM-DD"},
                        "amount": {"type": ["string", "null"], "description": "decimal, major units"},
                        "new_contact_email": {"type": ["string", "null"]},
                        "new_contact_name": {"type": ["string", "null"]},
                        "summary": {"type": "string", "maxLength": 200},
                        "instructions_found": {"type": "boolean"}}}}}},
}


class TriageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reply_id: str
    category: Literal["paid", "promise_to_pay", "dispute", "wrong_contact", "out_of_office", "complaint",
                      "refund_request", "legal_threat", "question"]
    date: dt.date | None = None
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    new_contact_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    new_contact_name: str | None = Field(default=None, max_length=200)
    summary: str = Field(max_length=200)
    instructions_found: bool


class TriageAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replies: list[TriageEntry]


# ---- rules -----------------------------------------------------------------------------------
INSTRUCTIONS = re.compile(
    r"(ignore (all |any |your |the )?(previous |prior |above )?(instructions|rules|prompt)|disregard (your|all|the) "
    r"(instructions|rules)|you are now|system prompt|as an ai|mark (this|the|it|all|my)[\w\s-]{0,30} (as )?paid|"
    r"set (the )?(balance|amount|status)|close (this|the) (invoice|account) as paid|delete (this|the|all) (invoice|record))",
    re.IGNORECASE)
# The rules read every language the templates speak (en, de, fr): a French dispute or a German
# out-of-office is what it is without a model.
_RULES = [  # in priority order: the first that matches is the class
    ("legal_threat", re.compile(r"\b(lawyer|attorney|solicitor|legal action|sue|court|litigation|anwalt|rechtsanwalt|"
                                r"gericht(lich)?|klage|avocat|tribunal|poursuites judiciaires|action en justice)\b", re.I)),
    ("opt_out", re.compile(r"\b(unsubscribe|remove me from (your|the|this) (mailing )?list|opt(ed)? out|"
                           r"no more (e-?mails|reminders)|abmelden|austragen|keine (weiteren )?(e-?mails|mails|"
                           r"erinnerungen|mahnungen) mehr|d[ée]sabonner|d[ée]sinscri(re|vez|ption)|"
                           r"ne plus recevoir|plus d'e-?mails?)\b", re.I)),
    ("out_of_office", re.compile(r"\b(out of (the )?office|on (annual |parental )?leave|away until|automatic reply|"
                                 r"auto-?reply|vacation until|abwesenheitsnotiz|nicht im b[üu]ro|abwesend|"
                                 r"im urlaub|automatische antwort|absent(e)? du bureau|en cong[ée]s?|"
                                 r"r[ée]ponse automatique|de retour le)\b", re.I)),
    ("wrong_contact", re.compile(r"\b(no longer (work|handle|responsible)|wrong (person|contact)|not the right "
                                 r"(person|contact)|please contact|left the company|contact instead|"
                                 r"nicht (mehr )?zust[äa]ndig|falsche[rn]? (ansprechpartner|kontakt)|"
                                 r"wenden sie sich an|ne (suis|travaille) plus|mauvais(e)? (contact|interlocuteur)|"
                                 r"veuillez contacter|pas la bonne personne)\b", re.I)),
    ("dispute", re.compile(r"\b(dispute|disputing|incorrect|wrong amount|overcharged|never received|not received the "
                           r"goods|did not order|billing error|double[- ]billed|widerspr(uch|echen)|beanstand\w*|"
                           r"reklam\w*|fehlerhaft|falsch(e|er)? (rechnung|betrag)|nicht erhalten|nicht bestellt|"
                           r"contest(ons|er|e|ation)|conteste|erron[ée]e?|pas re[çc]u|jamais re[çc]u|"
                           r"pas command[ée]|montant (incorrect|erron[ée]))\b", re.I)),
    ("refund_request", re.compile(r"\b(refund|credit note|money back|reimburse|r[üu]ckerstattung|gutschrift|"
                                  r"erstatten|remboursement|rembourser|(un|d'un|l'|notre) avoir|note de cr[ée]dit)\b", re.I)),
    ("paid", re.compile(r"\b(remittance|we (have )?paid|has been paid|payment (was|has been) (sent|made|initiated)|"
                        r"paid (it|this|the invoice)|wire (was )?sent|transferred|"
                        r"(wurde|wurden|ist|sind|haben|habe|hat)\s+(\S+\s+){0,5}(bezahlt|[üu]berwiesen|beglichen)|"
                        r"zahlung (ist )?(erfolgt|veranlasst)|(a|ont|avons|est|sont)\s+(\S+\s+){0,3}(pay[ée]e?s?|"
                        r"r[ée]gl[ée]e?s?)|virement (a [ée]t[ée] )?effectu[ée])(?=\W|$)", re.I)),
    ("promise_to_pay", re.compile(r"\b(will pay|we'll pay|will be paid|payment will (go out|be made|be sent)|"
                                  r"scheduled (for )?payment|pay (it )?(on|by)|(werden|wird) .{0,60}(zahlen|bezahlen|"
                                  r"[üu]berweisen|begleichen|beglichen|[üu]berwiesen)|zahlen (wir )?(bis|am)|zahlung erfolgt (bis|am)|"
                                  r"(nous )?(paierons|r[ée]glerons)|paiement (sera|interviendra))\b", re.I)),
    ("complaint", re.compile(r"\b(unacceptable|ridiculous|harass|stop (emailing|sending)|furious|annoyed|"
                             r"disappointed|complain|unversch[äa]mt|inakzeptabel|ver[äa]rgert|beschwerde|"
                             r"inacceptable|scandaleux|m[ée]content|plainte)\b", re.I)),
]
# A dispute's reason code, read from the reply in any language the templates speak (the first that
# matches); one the policy does not list, or none, is `unspecified` and a person is asked.
_REASON_CODES = [
    ("duplicate", re.compile(r"\b(double[- ]billed|duplicate|billed twice|charged twice|doppelt|zweimal|en double|"
                             r"deux fois)", re.I)),
    ("not_received", re.compile(r"\b(never received|not received|did not receive|nicht erhalten|nie erhalten|"
                                r"pas re[çc]u|jamais re[çc]u)", re.I)),
    ("damaged", re.compile(r"\b(damaged|defective|broken|besch[äa]digt|defekt|endommag\w*|d[ée]fectueu\w*)", re.I)),
    ("quantity", re.compile(r"\b(quantit(y|ies)|units?|menge|st[üu]ckzahl|quantit[ée]s?)\b", re.I)),
    ("tax", re.compile(r"\b(tax|vat|sales tax|mwst|mehrwertsteuer|umsatzsteuer|tva|taxe)\b", re.I)),
    ("terms", re.compile(r"\b(payment terms|net ?\d+|zahlungsbedingungen|zahlungsziel|conditions de paiement|"
                         r"d[ée]lai de paiement)", re.I)),
    ("pricing", re.compile(r"\b(price|pricing|overcharged|wrong (rate|amount)|rate card|discount|preis\w*|rabatt|"
                           r"prix|tarif\w*|remise|montant (incorrect|erron[ée]e?))", re.I)),
]
_LINES = re.compile(r"\b(?:lines?|positions?|pos\.|zeilen?|lignes?)\s*(?:no\.?|nr\.?|n°)?\s*"
                    r"(\d+(?:\s*(?:,|and|und|et|&|/)\s*\d+)*)", re.I)


def dispute_details(text: str, codes: tuple[str, ...]) -> tuple[str, str | None]:
    """(reason code, lines disputed) of a dispute reply: a code the policy lists or `unspecified`,
    and the line numbers named ("2, 3"), if any."""
    code = next((name for name, rx in _REASON_CODES if rx.search(text)), "unspecified")
    if code not in codes:
        code = "unspecified"
    m = _LINES.search(text)
    lines = ", ".join(re.findall(r"\d+", m.group(1))) if m else None
    return code, lines


# Categories the rules decide whatever a model says: an unsubscribe request is honoured.
RULES_WIN = ("opt_out",)
_ISO = re.compile(r"\b(20\d\d)-(\d\d)-(\d\d)\b")
_WRITTEN = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)? (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* (20\d\d)\b|"
                      r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* (\d{1,2})(?:st|nd|rd|th)?,? (20\d\d)\b",
                      re.I)
_AMOUNT = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)\.(\d\d)(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


_DOTTED = re.compile(r"\b(\d{1,2})\.(\d{1,2})\.(20\d\d)\b")  # 15.12.2026 (de)
_MONTHS = {"januar": 1, "janvier": 1, "februar": 2, "février": 2, "fevrier": 2, "märz": 3, "maerz": 3, "mars": 3,
           "april": 4, "avril": 4, "mai": 5, "juni": 6, "juin": 6, "juli": 7, "juillet": 7, "august": 8, "août": 8,
           "aout": 8, "september": 9, "septembre": 9, "oktober": 10, "octobre": 10, "november": 11, "novembre": 11,
           "dezember": 12, "décembre": 12, "decembre": 12}
_WRITTEN_EU = re.compile(r"\b(\d{1,2})(?:\.|er)? (" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r") (20\d\d)\b",
                         re.I)  # 15. Dezember 2026, 1er décembre 2026


def find_date(text: str) -> dt.date | None:
    for rx, order in ((_DOTTED, None), (_WRITTEN_EU, "named")):
        m = rx.search(text)
        if m:
            try:
                month = int(m.group(2)) if order is None else _MONTHS[m.group(2).lower()]
                return dt.date(int(m.group(3)), month, int(m.group(1)))
            except ValueError:
                return None
    m = _ISO.search(text)
    if m:
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    m = _WRITTEN.search(text)
    if m:
        try:
            return pd.Timestamp(m.group(0).replace(",", "")).date()
        except (ValueError, TypeError):
            return None
    return None


def classify_rules(subject: str, body: str, own_address: str | None = None) -> dict:
    text = f"{subject}\n{body}"
    category = next((name for name, rx in _RULES if rx.search(text)), "question")
    date = find_date(text)
    if category == "promise_to_pay" and date is None:
        category = "question"  # a promise needs a date
    amount = _AMOUNT.search(text)
    emails = [e for e in _EMAIL.findall(body) if e.lower() != (own_address or "").lower()]
    return {"category": category, "date": date, "amount": amount.group(0).replace(",", "") if amount else None,
            "new_contact_email": emails[0].lower() if category == "wrong_contact" and emails else None,
            "new_contact_name": None, "summary": " ".join(subject.split())[:120],
            "instructions_found": bool(INSTRUCTIONS.search(text))}


# ---- matching ----------------------------------------------------------------------------------
def match(replies: pd.DataFrame, invoices: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """customer_id and invoice_ids (open invoice numbers named in the subject or body, of that
    customer) per reply; the sender's address finds the customer, else a named invoice does."""
    by_email = {str(e).lower(): c for e, c in zip(customers["billing_contact_email"], customers["customer_id"])
                if isinstance(e, str) and e}
    numbers = {str(n).lower(): (i, c) for n, i, c in zip(invoices["invoice_number"], invoices["invoice_id"],
                                                          invoices["customer_id"])}
    token = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/_.]*[A-Za-z0-9]")
    cust_out, inv_out = [], []
    for r in replies.itertuples():
        named = [numbers[t.lower()] for t in token.findall(f"{r.subject} {r.body}") if t.lower() in numbers]
        cid = by_email.get(str(r.from_address).lower())
        if cid is None and named:
            cid = named[0][1]
        inv_out.append(sorted({i for i, c in named if c == cid}))
        cust_out.append(cid)
    return replies.assign(customer_id=cust_out, invoice_ids=inv_out)


# ---- effects -----------------------------------------------------------------------------------
@dataclass
class Effects:
    pauses: list[dict] = field(default_factory=list)
    promises: list[dict] = field(default_factory=list)
    disputes: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)
    opt_outs: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)   # a person is asked (a dispute's missing reason code)


QUESTION_UNTIL = dt.date(9999, 12, 31)  # a question holds until answered (`arflow answered` ends it)


def effects_for(reply: dict, open_invoices: pd.DataFrame, customers: pd.DataFrame, as_of: dt.date,
                country: str, finance: str, reason_codes: tuple[str, ...] | None = None) -> tuple[Effects, str]:
    """What one classified, matched reply does, and a one-line account of it."""
    e = Effects()
    cid, inv_ids, cat = reply["customer_id"], reply["invoice_ids"], reply["category"]
    mine = open_invoices[open_invoices["customer_id"] == cid] if cid else open_invoices.iloc[:0]
    cust = customers.set_index("customer_id").loc[cid] if cid in set(customers["customer_id"]) else None
    owner = (cust["owner_ae_email"] if cust is not None and isinstance(cust["owner_ae_email"], str) else None) or finance
    key = reply["message_id"]
    who = "arflow-triage"

    def later(n: int) -> dt.date:
        return pd.Timestamp(bd.add_business_days(pd.Series([pd.Timestamp(as_of)]), n, pd.Series([country]),
                                                 country).iloc[0]).date()

    def pause(until: dt.date, reason: str, invoice_id=None):
        e.pauses.append({"customer_id": cid, "invoice_id": invoice_id, "starts_on": as_of, "until": until,
                         "reason": f"reply {key}: {reason}", "recorded_by": who})

    def task(to: str, subject: str, kind: str = "reply"):
        flag = " [the reply tried to instruct the system: read it yourself]" if reply.get("flagged") else ""
        e.tasks.append({"task_key": f"reply:{key}:{to}", "owner": to, "customer_id": cid,
                        "invoice_ids": ",".join(inv_ids) or None, "kind": kind, "subject": subject + flag,
                        "body": f"From {reply['from_address']} on {reply['received_on']}: {reply['subject']}\n\n"
                                f"{reply['body'][:4000]}", "created_on": as_of})

    if cid is None:
        task(finance, "Reply from an unknown sender: match it to a customer")
        return e, "unmatched: task for finance"
    if cat == "opt_out":  # asked to receive no more reminders: a stop record, as `arflow opt-out` writes
        e.opt_outs.append({"customer_id": cid, "recorded_on": as_of, "reason": f"reply {key}: asked to unsubscribe"})
        task(owner, "Customer asked to receive no more reminders: opted out (arflow opt-out --withdraw to undo)")
        return e, "customer opted out of reminders; owner told"
    if cat == "paid":
        targets = inv_ids or [None]
        for i in targets:
            pause(later(5), "customer says paid; waiting for the payment", i)
        return e, f"paused {'invoice ' + ', '.join(inv_ids) if inv_ids else 'customer'} 5 business days (says paid)"
    if cat == "promise_to_pay":
        targets = inv_ids or (list(mine.sort_values("due_date")["invoice_id"].head(1)) if not mine.empty else [])
        for i in targets:
            e.promises.append({"invoice_id": i, "customer_id": cid, "recorded_on": as_of,
                               "promised_date": reply["date"], "note": f"reply {key}"})
        if not targets:
            task(owner, f"Promise to pay on {reply['date']}, but no open invoice: check")
        return e, f"promise to pay by {reply['date']} on {', '.join(targets) or 'nothing open'}"
    if cat == "dispute":
        targets = inv_ids or (list(mine["invoice_id"]) if len(mine) == 1 else [])
        amount = reply.get("amount")
        from arflow.policy import DISPUTE_REASON_CODES

        codes = tuple(reason_codes or DISPUTE_REASON_CODES)
        code, lines = dispute_details(f"{reply['subject']}\n{reply['body']}", codes)
        for i in targets:
            cur = mine.loc[mine["invoice_id"] == i, "currency"]
            currency = cur.iloc[0] if len(cur) else None
            minor = None
            if amount and currency:
                from arflow.money import to_minor
                try:
                    minor = to_minor(amount, currency)
                except ValueError:
                    minor = None
            e.disputes.append({"invoice_id": i, "customer_id": cid, "opened_on": as_of, "amount_minor": minor,
                               "currency": currency if minor is not None else None,
                               "reason": f"reply {key}: {reply.get('summary') or reply['subject']}"[:500],
                               "reason_code": code, "lines": lines})
            if code == "unspecified":  # a person names the reason (arflow dispute code INVOICE --code ...)
                e.decisions.append(dispute_reason_decision(i, cid, as_of, reply, codes, minor, currency))
        task(owner, f"Dispute from {cust['name'] if cust is not None else cid}: "
                    f"{', '.join(targets) if targets else 'which invoice? not named'}")
        if not targets:
            pause(later(5), "dispute without an invoice named")
        return e, f"dispute opened on {', '.join(targets) or 'no invoice (customer paused 5 days)'}; owner told"
    if cat == "wrong_contact":
        pause(later(10), "wrong contact")
        new = reply.get("new_contact_email") or "not given"
        task(owner, f"Update the billing contact in the CRM (suggested: {new}); reminders paused 10 business days")
        return e, f"customer paused 10 business days; owner asked to update the contact ({new})"
    if cat == "out_of_office":
        back = reply.get("date")
        until = back if isinstance(back, dt.date) and back > as_of else later(5)
        pause(until, "out of office")
        return e, f"customer paused until {until}"
    if cat == "complaint":
        pause(later(5), "complaint")
        task(owner, "Complaint in reply to a reminder: call the customer")
        return e, "customer paused 5 business days; owner told"
    if cat == "refund_request":
        pause(later(5), "refund request")
        task(finance, "Refund or credit requested in reply to a reminder")
        return e, "customer paused 5 business days; finance told"
    if cat == "legal_threat":
        pause(as_of + dt.timedelta(days=30), "legal threat: no automated contact")
        task(finance, "Legal action mentioned in a reply: no automated contact for 30 days")
        task(owner, "Legal action mentioned in a reply: no automated contact for 30 days")
        return e, "customer paused 30 days; finance and owner told"
    if reply.get("flagged"):  # a reply that tries to instruct the system stops nothing by itself
        task(owner, "Question in reply to a reminder")
        return e, "owner asked to answer (flagged)"
    # A question holds the customer's reminders until someone answers it (`arflow answered`).
    e.pauses.append({"customer_id": cid, "invoice_id": None, "starts_on": as_of, "until": QUESTION_UNTIL,
                     "reason": f"reply {key}: question: {reply.get('summary') or reply['subject']}"[:500],
                     "recorded_by": who, "kind": "question"})
    task(owner, f"Question in reply to a reminder: reminders paused until it is answered "
                f"(then: arflow answered {cid})")
    return e, "reminders paused until answered; owner asked to answer"


def dispute_reason_decision(invoice_id: str, customer_id: str, as_of: dt.date, reply: dict, codes: tuple[str, ...],
                            amount_minor: int | None, currency: str | None) -> dict:
    """The decision that asks a person for a dispute's reason code (kind dispute_reason)."""
    context = {"question": "The customer disputes this invoice without a reason we could read: which is it?",
               "reason_codes": [c for c in codes if c != "unspecified"], "invoice_id": invoice_id,
               "disputed_amount_minor": amount_minor, "currency": currency,
               "reply": {"from": reply.get("from_address"), "subject": reply.get("subject"),
                         "body": str(reply.get("body") or "")[:2000]},
               "how": f"arflow dispute code {invoice_id} --code <one of the reason codes>"}
    return {"decision_key": f"dispute:{invoice_id}:{reply['message_id']}:reason", "kind": "dispute_reason",
            "invoice_ids": invoice_id, "customer_id": customer_id, "opened_on": as_of, "status": "open",
            "context": json.dumps(context, default=str)}


# ---- the model ---------------------------------------------------------------------------------
def classify(replies: pd.DataFrame, llm=None, *, as_of: dt.date, batch_size: int = 10) -> tuple[list[dict], dict]:
    """Class and details per reply (same order). With `llm`, the model; its missing or invalid
    answers fall back to the rules. Returns the rows and counts."""
    rules = [classify_rules(r.subject, r.body) for r in replies.itertuples()]
    counts = {"model": 0, "rules": 0, "rules_fallback": 0}
    if llm is None:
        counts["rules"] = len(rules)
        return [dict(r, classifier="rules") for r in rules], counts
    from connectors.llm import LlmUnavailable
    from tasks.ai_score import prompt_version, system_prompt_of

    version = prompt_version(PROMPT)
    system = system_prompt_of(PROMPT)
    out = [dict(r, classifier="rules_fallback") for r in rules]
    items = list(replies.reset_index(drop=True).itertuples())
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        ids = {str(start + k) for k in range(len(batch))}
        doc = [{"reply_id": str(start + k), "from": r.from_address, "subject": r.subject, "body": r.body[:4000]}
               for k, r in enumerate(batch)]
        user = f"Today is {as_of.isoformat()}. Classify these replies:\n{json.dumps(doc, ensure_ascii=False)}"
        try:
            answer = llm.ask("triage", version, system, user, TRIAGE_TOOL, items=len(batch),
                             validate=lambda raw, ids=ids: _validate(raw, ids))
        except LlmUnavailable:
            answer = None
        if answer is None:
            continue
        for rid, entry in answer.items():
            k = int(rid)
            row = entry.model_dump()
            if row["category"] == "promise_to_pay" and row["date"] is None:
                row["category"] = "question"
            # The rules' instruction check holds whatever the model says, and so does an unsubscribe.
            row["instructions_found"] = bool(row["instructions_found"] or rules[k]["instructions_found"])
            if rules[k]["category"] in RULES_WIN:
                row["category"] = rules[k]["category"]
            row.pop("reply_id")
            out[k] = dict(row, classifier="model")
    for r in out:
        counts[r["classifier"]] += 1
    return out, counts


def _validate(raw: dict, ids: set[str]) -> dict[str, TriageEntry]:
    from tasks.ai_score import validate_batch

    return validate_batch(TriageAnswer, raw, ids, "replies", "reply_id")


def triage(replies: pd.DataFrame, invoices: pd.DataFrame, customers: pd.DataFrame, known_ids: set[str], *,
           as_of: dt.date, country: str, finance: str, llm=None,
           reason_codes: tuple[str, ...] | None = None) -> tuple[list[dict], dict]:
    """The new replies (message ids not in `known_ids`), classified, matched and given their effects.
    Returns one item per new reply ({reply row, effects}) and the counts."""
    new = replies[~replies["message_id"].isin(known_ids)].drop_duplicates("message_id").reset_index(drop=True)
    if new.empty:
        return [], {"new": 0}
    matched = match(new, invoices, customers)
    classes, counts = classify(matched, llm, as_of=as_of)
    open_inv = invoices[invoices["status"].astype(str).str.lower() == "open"] if "status" in invoices else invoices
    items = []
    for r, c in zip(matched.to_dict("records"), classes):
        r["customer_id"] = r["customer_id"] if isinstance(r["customer_id"], str) else None
        flagged = "instructions_in_reply" if c["instructions_found"] else None
        reply = {**r, **c, "flagged": flagged, "received_on": r["received_on"] or as_of}
        effects, effect_text = effects_for(reply, open_inv, customers, as_of, country, finance, reason_codes)
        detail = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in c.items()
                  if k in ("date", "amount", "new_contact_email", "new_contact_name", "summary") and v}
        row = {"message_id": r["message_id"], "received_on": reply["received_on"], "from_address": r["from_address"],
               "subject": r["subject"][:1000], "body": r["body"][:20000], "customer_id": r["customer_id"],
               "invoice_id": ",".join(r["invoice_ids"]) or None, "category": c["category"],
               "detail": json.dumps(detail), "classifier": c["classifier"], "flagged": flagged,
               "effect": effect_text, "as_of": as_of}
        items.append({"reply": row, "effects": effects})
    by_class: dict[str, int] = {}
    for it in items:
        by_class[it["reply"]["category"]] = by_class.get(it["reply"]["category"], 0) + 1
    return items, {"new": len(items), "by_class": by_class, "classifier": counts,
                   "flagged": sum(1 for it in items if it["reply"]["flagged"]),
                   "unmatched": sum(1 for it in items if it["reply"]["customer_id"] is None)}
