"""Personalization: the model may rewrite an approved customer e-mail (greet the AP contact by name,
acknowledge a long relationship, refer to the previous reminder). Every draft is then checked in
code before it can replace the template's text, and the guardrail check of every message runs on
whatever is queued:

- the subject is the approved subject;
- every invoice number, amount, date and link of the approved text is still there, unchanged;
- no amount, date, link or e-mail address that the approved text does not have;
- no more than half again as long as the approved text (plus room for a greeting);
- the rules of tasks.guardrails (no legal threat, collections or credit-reporting language, no
  suspension wording unless the step is approved, no other customer's data, no internal notes).

A draft that fails keeps the approved text, and the reason is counted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROMPT = "personalize_email.j2"
DRAFT_TOOL = {
    "name": "write_draft",
    "description": "The personalized e-mail: the approved subject, and the rewritten body.",
    "input_schema": {"type": "object", "additionalProperties": False, "required": ["subject", "body"],
                     "properties": {"subject": {"type": "string"}, "body": {"type": "string", "maxLength": 6000}}},
}
_URL = re.compile(r"https?://\S+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MONEY = re.compile(r"\d[\d,.\u00a0' ]*[.,]\d{2}\b|\b\d{1,3}(?:[,.]\d{3})+\b")


def _date_pattern() -> re.Pattern:
    """ISO dates and the dates the templates write out per locale ("December 1, 2026",
    "1. Dezember 2026", "1 décembre 2026"), month names from CLDR (Babel)."""
    from babel.dates import get_month_names

    from tasks.touches import LOCALES

    months = sorted({m for loc in LOCALES.values() for m in get_month_names("wide", locale=loc).values()},
                    key=len, reverse=True)
    names = "|".join(re.escape(m) for m in months)
    return re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b(?:" + names + r")\s+\d{1,2},\s+\d{4}\b|\b\d{1,2}\.?\s+(?:" + names +
                      r")\s+\d{4}\b", re.IGNORECASE)


_DATE = _date_pattern()


class Draft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str
    body: str = Field(max_length=6000)


def _tokens(rx: re.Pattern, text: str) -> set[str]:
    return {t.rstrip(".,;:)") for t in rx.findall(text)}


def check_draft(approved_subject: str, approved_body: str, draft: Draft, ctx: dict) -> str | None:
    """The reason a draft may not replace the approved text, or None."""
    if draft.subject.strip() != approved_subject.strip():
        return "subject_changed"
    for rx, name in ((_URL, "links"), (_EMAIL, "addresses"), (_MONEY, "amounts"), (_DATE, "dates")):
        before, after = _tokens(rx, approved_body), _tokens(rx, draft.body)
        if before - after:
            return f"{name}_dropped"
        if after - before:
            return f"{name}_added"
    for item in ctx.get("invoices") or [ctx]:
        if str(item["invoice_number"]) not in draft.body and str(item["invoice_number"]) in approved_body:
            return "invoice_number_dropped"
    if len(draft.body) > 1.5 * len(approved_body) + 300:
        return "too_long"
    return None


@dataclass
class Personalizer:
    """Called by tasks.touches.outbox_rows for each customer e-mail: (subject, body, ctx) ->
    (subject, body, how) where how is "model" or the reason the approved text stayed."""

    llm: object
    previous: dict = field(default_factory=dict)   # customer_id -> {"step", "date"} of the last e-mail
    counts: dict = field(default_factory=dict)

    @classmethod
    def for_run(cls, llm, touches: pd.DataFrame | None, as_of: dt.date) -> "Personalizer":
        prev = {}
        if touches is not None and not touches.empty:
            from tasks.ai_score import emails_before

            t = emails_before(touches, as_of).sort_values("day")
            for r in t.drop_duplicates("customer_id", keep="last").itertuples():
                prev[r.customer_id] = {"step": r.step, "date": r.day.date().isoformat()}
        return cls(llm=llm, previous=prev)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def __call__(self, subject: str, body: str, ctx: dict, customer_id: str, directory) -> tuple[str, str, str]:
        from connectors.llm import LlmUnavailable
        from tasks.ai_score import prompt_version, system_prompt_of
        from tasks.touches import check_rendered

        doc = {"approved_subject": subject, "approved_body": body, "tone": ctx.get("tone"),
               "ap_contact": ctx.get("contact_name") if ctx.get("contact_name") != "there" else None,
               "customer_name": ctx.get("customer_name"), "tenure_months": ctx.get("tenure_months"),
               "previous_touch": self.previous.get(customer_id), "language": ctx.get("language") or "en"}
        user = "Personalize this approved e-mail:\n" + json.dumps(doc, ensure_ascii=False)
        try:
            draft = self.llm.ask("personalize", prompt_version(PROMPT), system_prompt_of(PROMPT), user, DRAFT_TOOL,
                                 items=1, validate=_validate, max_tokens=2000)
        except LlmUnavailable:
            draft = None
            self._count("unavailable")
            return subject, body, "unavailable"
        if draft is None:
            self._count("invalid_or_refused")
            return subject, body, "invalid_or_refused"
        why = check_draft(subject, body, draft, ctx)
        if why is None:
            found = check_rendered(draft.subject, draft.body, ctx, customer_id, directory)
            why = "guardrail:" + ",".join(found) if found else None
        if why:
            self._count(why)
            return subject, body, why
        self._count("model")
        return draft.subject, draft.body, "model"


def _validate(raw: dict) -> Draft:
    try:
        return Draft.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
