"""The guardrail check every customer-facing message passes before it can be queued (DESIGN.md,
Guardrails). A violation blocks that message; it is recorded with its reasons, never sent. No
prompt, template or model can relax these rules: they are code, not configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

def _not_references() -> re.Pattern:
    """Numbers that are amounts or counts, not references: decimals, and a number followed by a
    currency code or a unit of time ("1200000 JPY", "17 days", "seit 17 Tagen")."""
    from arflow.money import known_currencies

    codes = "|".join(sorted(c.lower() for c in known_currencies()))
    return re.compile(r"\d[\d,]*\.\d+|\b\d+(?=\s*(?:(?:" + codes + r")\b|(?:days?|tagen?|jours?|months?|weeks?)\b))")


_NOT_REFERENCES = _not_references()
C_SUITE = re.compile(r"(^|[^a-z])(cfo|ceo|coo|cto|chief[._-]?\w*)([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    violations: tuple[str, ...]


_WORDS = re.compile(r"[a-z0-9&'.\-]+")
_TOKEN = re.compile(r"(?<![a-z0-9\-])[a-z0-9][a-z0-9\-]*(?<!-)")
# Where a short invoice number stands as a reference: after a word that names one, a list of them
# too ("invoices 12, 17 and 2"), or as an item of the e-mails' invoice list ("- 17: 1200.00 USD").
_REF = r"[a-z0-9\-]*\d[a-z0-9\-]*"
_REF_LIST = re.compile(
    r"(?:(?<![a-z0-9])(?:invoices?|inv\.?|rechnung(?:en|snummer)?|factures?|ref(?:erence)?\.?|no\.|nr\.|n°"
    r"|num(?:ber)?\.?)|#)[ \t]*(?:number|no\.|nr\.|#)?[ \t]*[:#]?[ \t]*"
    r"(" + _REF + r"(?:[ \t]*(?:,|/|&|and|und|et|or|oder|ou)[ \t]*#?[ \t]*" + _REF + r")*)")
_LIST_ITEM = re.compile(r"^[ \t]*[-*\u2022][ \t]*(" + _REF + r")[ \t]*:", re.MULTILINE)
# A number or code this long is nobody's amount, count or date part: it is a reference wherever it stands.
UNAMBIGUOUS_LENGTH = 5
COMPANY_SUFFIX = (r"(?:inc|incorporated|ltd|limited|llc|llp|lp|plc|corp|corporation|co|company|gmbh|ag|kg|sa|sas|"
                  r"sarl|bv|nv|ab|as|oy|pty|kk|spa|srl|group|holdings)\b\.?")


def _name_words(text: str) -> tuple[str, ...]:
    """Words as names are compared: "Acme Corp." and "acme corp" are the same two words."""
    return tuple(w for w in (w.strip(".'-") for w in _WORDS.findall(text)) if w)


def _unambiguous(token: str) -> bool:
    return len(token.replace("-", "")) >= UNAMBIGUOUS_LENGTH and not re.fullmatch(r"\d{4}(-\d\d){1,2}", token)


@dataclass
class Directory:
    """Who owns which invoice number and customer name in a run: built once, used per message.

    An invoice number is another customer's where it stands as a reference: anywhere if it is long
    enough to be nobody's count or amount (UNAMBIGUOUS_LENGTH), else only after a word that names
    an invoice or as an item of an invoice list. A name of several words matches as those words;
    a one-word name only where it is written as a name (capitalised and not opening a sentence, or
    followed by a company suffix), so a customer called Online is not every "pay online"."""

    invoice_owner: dict[str, str]                              # lower-case invoice number -> customer
    names: dict[str, list[tuple[tuple[str, ...], str]]]        # first word -> [(name words, customer)]
    single: dict[str, set[str]] = field(default_factory=dict)  # lower-case one-word name -> customers

    @classmethod
    def build(cls, invoice_numbers, invoice_customers, customer_names, name_customers) -> "Directory":
        owner = {str(n).strip().lower(): c for n, c in zip(invoice_numbers, invoice_customers)}
        names: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        single: dict[str, set[str]] = {}
        for name, cid in zip(customer_names, name_customers):
            words = _name_words(str(name).lower())
            if not words or len(" ".join(words)) <= 3:
                continue
            if len(words) == 1:
                single.setdefault(words[0], set()).add(cid)
            else:
                names.setdefault(words[0], []).append((words, cid))
        return cls(owner, names, single)

    def _other(self, token: str, customer_id: str) -> bool:
        return self.invoice_owner.get(token, customer_id) != customer_id

    def others_in(self, text: str, customer_id: str) -> bool:
        """Whether `text` (as written: case matters for one-word names) names another customer's
        invoice or the customer."""
        lower = text.lower()
        scrubbed = _NOT_REFERENCES.sub(" ", lower)
        if self.invoice_owner:
            for tok in _TOKEN.findall(scrubbed):
                if _unambiguous(tok) and self._other(tok, customer_id):
                    return True
            for m in _REF_LIST.finditer(scrubbed):
                if any(self._other(t, customer_id) for t in _TOKEN.findall(m.group(1))):
                    return True
            if any(self._other(t, customer_id) for t in _LIST_ITEM.findall(scrubbed)):
                return True
        words = _name_words(lower)
        for i, w in enumerate(words):
            for name, cid in self.names.get(w, ()):
                if cid != customer_id and tuple(words[i:i + len(name)]) == name:
                    return True
        for m in re.finditer(r"[^\W\d_][\w&'\-]*", text):
            owners = self.single.get(m.group().lower())
            if not owners or owners <= {customer_id}:
                continue
            after = text[m.end():m.end() + 30]
            if re.match(r"[\s,]+" + COMPANY_SUFFIX, after, re.IGNORECASE):
                return True
            before = text[:m.start()].rstrip(" \t\"'(")
            opens_sentence = not before or before[-1] in ".!?:\n"
            if m.group()[0].isupper() and not opens_sentence:
                return True
        return False


def scrub_names(text: str, names) -> str:
    """`text` without the given names where they stand as whole words (longest first, any case):
    a customer's own names are data, not wording; "Al" is taken out of "Al, hello", not of "legal"."""
    for name in sorted({str(n).strip() for n in names if n and str(n).strip()}, key=len, reverse=True):
        text = re.sub(r"(?<!\w)" + re.escape(name) + r"(?!\w)", " ", text, flags=re.IGNORECASE)
    return text


def check_message(subject: str, body: str, *, customer_id: str, recipients: list[str], directory: Directory,
                  approved_step: bool = False, own_names: tuple[str, ...] = (),
                  own_text: tuple[str, ...] = ()) -> Verdict:
    """Check one customer-facing message to `customer_id`.

    An invoice number or a customer name of anyone else in the text (per `directory`) is another
    customer's data. A step a human approves before it goes out (approved_step) may speak of a
    service suspension and copy the CFO; nothing may threaten, mention collections or credit
    reporting, or leak internal notes. The recipient's own names are data, not wording (a contact
    called Sue is no threat), so they are taken out, as whole words, before the rules are read.
    `own_text`: the company's own lines as the policy writes them (signature, remittance): taken out
    where they stand verbatim, so a lockbox or routing number that happens to equal another
    customer's invoice number is not read as that invoice; the same digits anywhere else still are.
    """
    text = f"{subject}\n{body}"
    for line in sorted({t for t in own_text if t and t.strip()}, key=len, reverse=True):
        text = text.replace(line, " ")
    text = scrub_names(text, own_names)
    found = [name for name, pattern in _RULES.items()
             if not (name == "service_suspension" and approved_step) and pattern.search(text)]
    if directory.others_in(text, customer_id):
        found.append("other_customer_data")
    if not approved_step and any(C_SUITE.search(r.split("@")[0]) for r in recipients if r):
        found.append("c_suite_recipient")
    return Verdict(ok=not found, violations=tuple(found))
