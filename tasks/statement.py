"""Statements of account: every open item, credit and payment of the period with the running
balance and the aging, per currency, in the customer's language. Pure functions (the HTML from a
Jinja template, the PDF from that HTML through WeasyPrint); `arflow statement` composes them.

The period runs from the first of `as_of`'s month (or `since`) to `as_of`. Its lines are the
invoices issued in it that are still open, the credit notes issued and the payments the ledger
received in it (an invoice the books settled themselves is not a line); the opening balance is
what makes them end at today's balance (what the customer owes less the credit they hold), so the
running balance always lands on the position the reminders state.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from arflow.money import format_minor, parse_minor
from tasks.extract import BUCKETS, parse_dates

LABELS = {
    "en": {"title": "Statement of account", "period": "Period", "date": "Date", "item": "Item", "due": "Due",
           "charges": "Charges", "credits": "Payments and credits", "balance": "Balance", "opening": "Opening balance",
           "closing": "Balance due", "invoice": "Invoice", "payment": "Payment", "credit_note": "Credit note",
           "open_items": "Open items", "days": "Days overdue", "aging": "Aging",
           "current": "Current", "d1_30": "1-30 days", "d31_60": "31-60 days", "d61_90": "61-90 days",
           "d91_plus": "91+ days", "held": "Credit on your account", "reference": "Reference"},
    "de": {"title": "Kontoauszug", "period": "Zeitraum", "date": "Datum", "item": "Beleg", "due": "Fällig",
           "charges": "Belastungen", "credits": "Zahlungen und Gutschriften", "balance": "Saldo",
           "opening": "Anfangssaldo", "closing": "Offener Betrag", "invoice": "Rechnung", "payment": "Zahlung",
           "credit_note": "Gutschrift", "open_items": "Offene Posten", "days": "Tage überfällig", "aging": "Fälligkeit",
           "current": "Nicht fällig", "d1_30": "1-30 Tage", "d31_60": "31-60 Tage", "d61_90": "61-90 Tage",
           "d91_plus": "über 90 Tage", "held": "Guthaben auf Ihrem Konto", "reference": "Referenz"},
    "fr": {"title": "Relevé de compte", "period": "Période", "date": "Date", "item": "Pièce", "due": "Échéance",
           "charges": "Débits", "credits": "Paiements et avoirs", "balance": "Solde", "opening": "Solde d'ouverture",
           "closing": "Solde dû", "invoice": "Facture", "payment": "Paiement", "credit_note": "Avoir",
           "open_items": "Éléments ouverts", "days": "Jours de retard", "aging": "Échéancier",
           "current": "Non échu", "d1_30": "1-30 jours", "d31_60": "31-60 jours", "d61_90": "61-90 jours",
           "d91_plus": "plus de 90 jours", "held": "Avoir sur votre compte", "reference": "Référence"},
}


@dataclass
class Statement:
    customer_id: str
    customer_name: str
    contact_name: str | None
    language: str
    as_of: dt.date
    since: dt.date
    currencies: dict[str, dict] = field(default_factory=dict)   # currency -> lines, open items, aging, balances

    def as_dict(self) -> dict:
        return {"customer_id": self.customer_id, "customer_name": self.customer_name, "language": self.language,
                "as_of": self.as_of.isoformat(), "since": self.since.isoformat(), "currencies": self.currencies}


def build(customer_id: str, *, as_of: dt.date, aged: pd.DataFrame, raw_invoices: pd.DataFrame,
          customers: pd.DataFrame, payments: pd.DataFrame, credit_notes: pd.DataFrame,
          since: dt.date | None = None, language: str = "en") -> Statement:
    """aged: the extract hop's open invoices (effective balances, buckets, customer credit);
    raw_invoices: the source's invoices (CSV text, paid ones too: what was issued in the period);
    payments: the ledger's payments_received; credit_notes: tasks.credits.parse's good rows."""
    since = since or as_of.replace(day=1)
    who = customers[customers["customer_id"] == customer_id]
    if who.empty:
        raise KeyError(f"no customer {customer_id!r} in the customer file")
    c = who.iloc[0]
    st = Statement(customer_id, str(c.get("name", customer_id)),
                   c.get("billing_contact_name") if isinstance(c.get("billing_contact_name"), str) else None,
                   language if language in LABELS else "en", as_of, since)
    start, end = pd.Timestamp(since), pd.Timestamp(as_of)
    mine = aged[(aged["customer_id"] == customer_id) & (aged["effective_balance_minor"] > 0)]
    issued = raw_invoices[raw_invoices["customer_id"] == customer_id].copy()
    # Open items: an invoice the books settled themselves (status paid) left with a payment this
    # ledger never saw, so it is not a line; its absence keeps the running balance true.
    issued = issued[issued["invoice_id"].isin(set(mine["invoice_id"]))]
    issued["issue"] = parse_dates(issued["issue_date"])
    issued["currency"] = issued["currency"].str.upper()
    issued["amount_minor"] = parse_minor(issued["amount"], issued["currency"])
    issued = issued[(issued["issue"] >= start) & (issued["issue"] <= end) & issued["amount_minor"].notna()]
    paid = payments[(payments["customer_id"] == customer_id) & ~payments["status"].isin(["reversal", "reversed"])] \
        if not payments.empty else payments
    if not paid.empty:
        when = pd.to_datetime(paid["received_date"])
        paid = paid[(when >= start) & (when <= end)]
    notes = credit_notes[credit_notes["customer_id"] == customer_id] if not credit_notes.empty else credit_notes
    notes = notes.drop_duplicates("credit_note_id") if not notes.empty else notes
    if not notes.empty:
        notes = notes[(notes["issue_date"] >= start) & (notes["issue_date"] <= end)]
    currencies = sorted(set(mine["currency"]) | set(issued["currency"]) |
                        (set(paid["currency"]) if not paid.empty else set()) |
                        (set(notes["currency"]) if not notes.empty else set()))
    for cur in currencies:
        lines = []
        for r in issued[issued["currency"] == cur].itertuples():
            lines.append({"date": r.issue.date().isoformat(), "kind": "invoice", "item": str(r.invoice_number),
                          "due": r.due_date or "", "charge_minor": int(r.amount_minor), "credit_minor": 0})
        if not paid.empty:
            for r in paid[paid["currency"] == cur].itertuples():
                lines.append({"date": str(r.received_date), "kind": "payment", "item": str(r.reference or r.payment_id),
                              "due": "", "charge_minor": 0, "credit_minor": int(r.amount_minor)})
        if not notes.empty:
            for r in notes[notes["currency"] == cur].itertuples():
                lines.append({"date": r.issue_date.date().isoformat(), "kind": "credit_note",
                              "item": str(r.credit_note_number), "due": "", "charge_minor": 0,
                              "credit_minor": int(r.amount_minor)})
        lines.sort(key=lambda x: (x["date"], {"invoice": 0, "credit_note": 1, "payment": 2}[x["kind"]], x["item"]))
        open_cur = mine[mine["currency"] == cur].sort_values(["due_date", "invoice_number"])
        held = int(open_cur["customer_credit_minor"].max()) if "customer_credit_minor" in open_cur and len(open_cur) \
            else 0
        owed = int(open_cur["effective_balance_minor"].sum())
        closing = owed - held
        opening = closing - sum(x["charge_minor"] for x in lines) + sum(x["credit_minor"] for x in lines)
        running = opening
        for x in lines:
            running += x["charge_minor"] - x["credit_minor"]
            x["balance_minor"] = running
            for k in ("charge", "credit", "balance"):
                v = x[f"{k}_minor"]
                x[k] = format_minor(v, cur) if (v or k == "balance") else ""
        aging = {b: int(open_cur.loc[open_cur["bucket"] == b, "effective_balance_minor"].sum()) for b in BUCKETS}
        st.currencies[cur] = {
            "opening_minor": opening, "opening": format_minor(opening, cur),
            "closing_minor": closing, "closing": format_minor(closing, cur),
            "credit_held": format_minor(held, cur) if held else None, "lines": lines,
            "open_items": [{"invoice_number": str(r.invoice_number), "issue_date": r.issue_date.date().isoformat(),
                            "due_date": r.due_date.date().isoformat(), "days_past_due": max(0, int(r.days_past_due)),
                            "balance": format_minor(int(r.effective_balance_minor), cur)}
                           for r in open_cur.itertuples()],
            "aging": {b: format_minor(v, cur) for b, v in aging.items()},
        }
    return st


def render_html(st: Statement, company: str = "Accounts Receivable") -> str:
    import jinja2

    from arflow.resources import TEMPLATES_DIR

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    return env.get_template("statement.html.j2").render(s=st.as_dict(), t=LABELS[st.language], buckets=BUCKETS,
                                                        company=company, contact=st.contact_name)


def render_pdf(html: str) -> bytes:
    """The statement's HTML as a PDF (WeasyPrint: HTML and CSS to PDF, no browser)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return HTML(string=html).write_pdf()


# ---- the monthly statement with the month's first reminder (policy.statements) ----------------------------

NOT_A_REMINDER = {"payment_failed_notice"}          # e-mails that tell of a failed charge, not the account
NOT_CARRIED = {"blocked", "failed", "skipped", "rejected"}   # outbox states in which a statement never reached anyone


def language_of(customer: pd.Series, policy) -> str:
    """The customer file's language, else the policy's language for the customer's country."""
    lang = customer.get("language") if "language" in customer else None
    if isinstance(lang, str) and lang:
        return lang
    country = customer.get("country")
    return policy.language_for(country if isinstance(country, str) else None)


def carried(outbox: pd.DataFrame) -> set[str]:
    """Customers whose e-mail among these outbox rows carried a statement (its context names the file)
    and may have reached them."""
    if outbox.empty:
        return set()
    rows = outbox[(outbox["channel"] == "email") & ~outbox["status"].isin(NOT_CARRIED)]
    has = rows["context"].astype(str).str.contains('"statement": "', regex=False)
    return set(rows.loc[has, "customer_id"].astype(str))


def statement_customers(actions: pd.DataFrame, as_of: dt.date, policy, already: set[str]) -> list[str]:
    """Customers whose e-mail reminder today carries their statement of account: the policy asks
    (statements.with_reminder), today is on or after its day of the month, and no reminder since that
    day of this month carried one (`already`, from `carried`)."""
    rule = policy.statements
    if not rule.with_reminder or actions.empty or as_of.day < rule.day_of_month:
        return []
    mail = actions[(actions["channel"] == "email") & ~actions["step"].isin(NOT_A_REMINDER)]
    return sorted(set(mail["customer_id"].astype(str)) - set(already))


def write_statements(customer_ids, *, as_of: dt.date, aged: pd.DataFrame, raw_invoices: pd.DataFrame,
                     customers: pd.DataFrame, payments: pd.DataFrame, credit_notes: pd.DataFrame, policy,
                     folder, company: str = "Accounts Receivable") -> dict[str, str]:
    """Each customer's statement of the month to date, in their language, written into `folder` as
    the policy's format (pdf or html). Returns customer_id -> the file's path."""
    import re
    from pathlib import Path

    out: dict[str, str] = {}
    if not customer_ids:
        return out
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fmt = policy.statements.attach
    by_id = customers.drop_duplicates("customer_id").set_index("customer_id", drop=False)
    for cid in customer_ids:
        if cid not in by_id.index:
            continue
        st = build(cid, as_of=as_of, aged=aged, raw_invoices=raw_invoices, customers=customers, payments=payments,
                   credit_notes=credit_notes, language=language_of(by_id.loc[cid], policy))
        page = render_html(st, company)
        path = folder / f"statement-{re.sub(r'[^A-Za-z0-9_.-]', '_', cid)}-{as_of.isoformat()}.{fmt}"
        path.write_bytes(render_pdf(page) if fmt == "pdf" else page.encode("utf-8"))
        out[cid] = str(path)
    return out
