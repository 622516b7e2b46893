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
        r"small claims|judg(e)?ment against|"
        r"anwalt|rechtsanwalt|rechtliche schritte|gericht(lich)?|klage|mahnbescheid|"  # de
        r"avocat|tribunal|poursuites|huissier|mise en demeure|action en justice)\b", re.IGNORECASE),  # fr
    "collections_or_credit_reporting": re.compile(
        r"\b(collection agenc(y|ies)|collections agenc(y|ies)|debt collect(or|ors|ion)|credit (bureau|report(ing)?|score|rating)|"
        r"sent to collections|refer(red)? (this|your account) to collections|"
        r"inkasso\w*|schufa|auskunftei|"  # de
        r"recouvrement|soci[ée]t[ée] de recouvrement|fichier des incidents)\b", re.IGNORECASE),  # fr
    "service_suspension": re.compile(
        r"\b(suspend(ed|ing)?|suspension|terminat(e|ed|ion) (of )?(your )?(service|account|access)|cut off|"
        r"disconnect(ed|ion)?|shut (off|down) your|"
        r"aussetzen|sperr(en|ung)|"  # de
        r"suspendre|couper|interruption (du|de) service)\b", re.IGNORECASE),  # fr
    "internal_note": re.compile(
        r"(\binternal( note| only)?\b|\bdo not (share|forward)\b|\brisk score\b|\bchronic late\b|\bescalation reason\b|"
        r"\bnot for (the )?customer\b)", re.IGNORECASE),
}
_NOT_REFERENCES = re.compile(r"\d[\d,]*\.\d+|\b\d+(?=\s*(?:[a-z]{3}\b|days?\b))")
C_SUITE = re.compile(r"(^|[^a-z])(cfo|ceo|coo|cto|chief[._-]?\w*)([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    violations: tuple[str, ...]


_WORDS = re.compile(r"[a-z0-9&'.\-]+")


@dataclass
class Directory:
    """Who owns which invoice number and customer name in a run: built once, used per message."""

    invoice_owner: dict[str, str]                              # lower-case invoice number -> customer
    names: dict[str, list[tuple[tuple[str, ...], str]]]        # first word -> [(name words, customer)]

    @classmethod
    def build(cls, invoice_numbers, invoice_customers, customer_names, name_customers) -> "Directory":
        owner = {str(n).lower(): c for n, c in zip(invoice_numbers, invoice_customers)}
        names: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for name, cid in zip(customer_names, name_customers):
            words = tuple(_WORDS.findall(str(name).lower()))
            if words and len(" ".join(words)) > 3:
                names.setdefault(words[0], []).append((words, cid))
        return cls(owner, names)

    def others_in(self, text_lower: str, customer_id: str) -> bool:
        scrubbed = _NOT_REFERENCES.sub(" ", text_lower)
        for tok in re.findall(r"[a-z0-9][a-z0-9\-]*", scrubbed):
            if self.invoice_owner.get(tok, customer_id) != customer_id:
                return True
        words = _WORDS.findall(text_lower)
        for i, w in enumerate(words):
            for name, cid in self.names.get(w, ()):
                if cid != customer_id and tuple(words[i:i + len(name)]) == name:
                    return True
        return False


def check_message(subject: str, body: str, *, customer_id: str, recipients: list[str], directory: Directory,
                  approved_step: bool = False, own_names: tuple[str, ...] = ()) -> Verdict:
    """Check one customer-facing message to `customer_id`.

    An invoice number or a customer name of anyone else in the text (per `directory`) is another
    customer's data. A step a human approves before it goes out (approved_step) may speak of a
    service suspension and copy the CFO; nothing may threaten, mention collections or credit
    reporting, or leak internal notes. The recipient's own names are data, not wording (a contact
    called Sue is no threat), so they are taken out before the rules are read.
    """
    text = f"{subject}\n{body}".lower()
    for own in sorted((n for n in own_names if n), key=len, reverse=True):
        text = text.replace(own.lower(), " ")
    found = [name for name, pattern in _RULES.items()
             if not (name == "service_suspension" and approved_step) and pattern.search(text)]
    if directory.others_in(text, customer_id):
        found.append("other_customer_data")
    if not approved_step and any(C_SUITE.search(r.split("@")[0]) for r in recipients if r):
        found.append("c_suite_recipient")
    return Verdict(ok=not found, violations=tuple(found))
