"""The guardrail check every customer-facing message passes before it can be queued (DESIGN.md,
Guardrails). A violation blocks that message; it is recorded with its reasons, never sent. No
prompt, template or model can relax these rules: they are code, not configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RULES: dict[str, re.Pattern] = {
    "legal_threat": re.compile(
        r"\b(legal action|law ?suit|litigation|attorney|lawyer|solicitor|court|sue|suing|legal proceedings|"
        r"small claims|judg(e)?ment against)\b", re.IGNORECASE),
    "collections_or_credit_reporting": re.compile(
        r"\b(collection agenc(y|ies)|collections agenc(y|ies)|debt collect(or|ors|ion)|credit (bureau|report(ing)?|score|rating)|"
        r"sent to collections|refer(red)? (this|your account) to collections)\b", re.IGNORECASE),
    "service_suspension": re.compile(
        r"\b(suspend(ed|ing)?|suspension|terminat(e|ed|ion) (of )?(your )?(service|account|access)|cut off|"
        r"disconnect(ed|ion)?|shut (off|down) your)\b", re.IGNORECASE),
    "internal_note": re.compile(
        r"(\binternal( note| only)?\b|\bdo not (share|forward)\b|\brisk score\b|\bchronic late\b|\bescalation reason\b|"
        r"\bnot for (the )?customer\b)", re.IGNORECASE),
}
_NOT_REFERENCES = re.compile(r"\d[\d,]*\.\d+|\b\d+(?=\s*(?:[A-Z]{3}\b|days?\b))")
C_SUITE = re.compile(r"(^|[^a-z])(cfo|ceo|coo|cto|chief[._-]?\w*)([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    violations: tuple[str, ...]


def _ngrams(text: str, longest: int = 5) -> set[str]:
    words = re.findall(r"[a-z0-9&'.\-]+", text.lower())
    return {" ".join(words[i:i + k]) for k in range(1, longest + 1) for i in range(len(words) - k + 1)}


def check_message(subject: str, body: str, *, customer_id: str, recipients: list[str],
                  invoice_owner: dict[str, str], name_owner: dict[str, str], approved_step: bool = False,
                  own_names: tuple[str, ...] = ()) -> Verdict:
    """Check one customer-facing message to `customer_id`.

    invoice_owner maps every invoice number of the run to its customer and name_owner every
    customer name (lower case) to its customer: an invoice number or a name of anyone else in the
    text is another customer's data. A step a human approves before it goes out (approved_step) may
    speak of a service suspension and copy the CFO; nothing may threaten, mention collections or
    credit reporting, or leak internal notes.
    """
    text = f"{subject}\n{body}"
    # The recipient's own names are data, not our wording: a contact called Sue is no threat.
    for own in sorted((n for n in own_names if n), key=len, reverse=True):
        text = re.sub(re.escape(own), " ", text, flags=re.IGNORECASE)
    found = []
    for name, pattern in _RULES.items():
        if name == "service_suspension" and approved_step:
            continue
        if pattern.search(text):
            found.append(name)
    # Amounts and day counts are not invoice numbers: "10234.50 USD", "1200000 JPY", "17 days".
    scrubbed = _NOT_REFERENCES.sub(" ", text)
    tokens = set(re.findall(r"[A-Za-z0-9][A-Za-z0-9\-]*", scrubbed))
    grams = _ngrams(text)
    if any(invoice_owner.get(t, customer_id) != customer_id for t in tokens) or \
            any(name_owner.get(g, customer_id) != customer_id for g in grams if len(g) > 3):
        found.append("other_customer_data")
    if not approved_step and any(C_SUITE.search(r.split("@")[0]) for r in recipients if r):
        found.append("c_suite_recipient")
    return Verdict(ok=not found, violations=tuple(found))
