"""Cash application: match incoming payments to open invoices. Pure functions, no Prefect.

Rules, tried in this order for each payment (currency must always match, and a payment never
applies to another customer's invoice unless the customer file names the relationship through
``parent_customer_id``):

| rule | when | confidence |
| --- | --- | --- |
| ``exact`` | the reference names one open invoice and the amount equals its open balance | 1.00 |
| ``reference_partial`` | the reference names one invoice, the amount is less: the rest stays open (*) | 0.90 |
| ``reference_overpaid`` | the reference names one invoice, the amount is more: it closes, the surplus is a customer credit to review (*) | 0.90 |
| ``reference_multi`` | the reference names several invoices and the amount equals their balances together | 0.95 |
| ``multi_invoice`` | no invoice named; exactly one combination (2 or more) of the customer's open balances equals the amount | 0.80 |
| ``multi_invoice_oldest`` | several combinations fit: the one with the oldest invoices, flagged for review | 0.50 |
| ``amount_customer`` | no invoice named; exactly one open invoice of the customer has that balance (it beats a combination) | 0.70 |
| ``reference_fuzzy`` | no open invoice named exactly, but exactly one open invoice whose number is one edit or one swap from a reference token has exactly the amount | 0.85 |
| ``reference_short`` / ``amount_short`` | short of one invoice's balance within the policy's tolerance: the difference written off to the named account, else left open and flagged | 0.85 / 0.65 |
| ``overpaid_single`` | no invoice named; the customer's only open invoice is less than the amount: it closes, the surplus is a credit to review | 0.60 |

A payer the billing system does not name and whose name is blank is looked for in the reference
text: a customer id, or a customer's name (rapidfuzz, at the policy's ``payer_name_score``; the
best must be unique). Several open invoices of one amount are never guessed between; several
combinations are (``multi_invoice_oldest``) only where the oldest fitting one is the customer's
oldest open invoices, first in, first paid.

(*) only when the payer is known apart from the reference (the billing system says, or the payer's
name is a customer's) and no other open invoice of theirs has exactly the amount paid: a mistyped
invoice number must not move cash onto another invoice.

Anything else is unapplied cash, kept in the exceptions queue with its candidates shown; a
payment is never guessed onto an invoice. Payments are taken in received order, so two payments
for the same invoice see each other's effect.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

import pandas as pd

CONFIDENCE = {"exact": 1.0, "reference_partial": 0.9, "reference_overpaid": 0.9, "reference_multi": 0.95,
              "multi_invoice": 0.8, "multi_invoice_oldest": 0.5, "amount_customer": 0.7, "reference_fuzzy": 0.85,
              "reference_short": 0.85, "amount_short": 0.65, "overpaid_single": 0.6, "amount_customer_oldest": 0.5}
NEEDS_REVIEW = {"reference_overpaid", "multi_invoice_oldest", "overpaid_single", "amount_customer_oldest"}
WRITE_OFF = ":write_off"   # suffix of the application that writes a tolerated short payment off
MAX_SUBSET_INVOICES = 18   # the customer's oldest open invoices searched for combinations
MAX_SUBSET_SIZE = 5
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_/]*")
_PREFIX = re.compile(r"^(?:inv(?:oice)?|no|nr|ref)[\-_#:]*", re.IGNORECASE)


@dataclass(frozen=True)
class Rules:
    """The policy's cash-application settings (arflow.policy.CashApplication), in minor units per
    currency where they are amounts."""

    tolerance: str = "0.00"
    tolerance_percent: float = 0.0
    write_off_account: str | None = None
    fuzzy_reference: bool = True
    payer_name_score: int = 90

    @classmethod
    def from_policy(cls, policy) -> "Rules":
        if policy is None:
            return cls()
        c = policy.cash_application
        return cls(c.tolerance, c.tolerance_percent, c.write_off_account, c.fuzzy_reference, c.payer_name_score)

    def tolerated(self, short: int, balance: int, currency: str) -> bool:
        """Is a payment `short` (> 0) below an invoice's `balance` within the tolerance?"""
        from arflow.money import to_minor

        if short <= 0:
            return False
        limit = to_minor(self.tolerance, currency) if self.tolerance else 0
        if self.tolerance_percent:
            pct = int(balance * self.tolerance_percent / 100)
            limit = min(limit, pct) if limit else pct
        return short <= limit


@dataclass
class Outcome:
    payment_id: str
    status: str                 # applied | partial | overpaid | unapplied
    rule: str | None
    confidence: float | None
    needs_review: bool
    customer_id: str | None
    applications: list[dict] = field(default_factory=list)  # invoice_id, amount_minor
    credit_minor: int = 0
    write_off_minor: int = 0    # a tolerated short payment's difference, written off (not cash)
    write_off_account: str | None = None
    reason: str | None = None   # why unapplied
    candidates: list[dict] = field(default_factory=list)


def reference_tokens(text: str | None) -> set[str]:
    """Invoice-number candidates in free remittance text: 'Inv #10234, 10235' -> {'10234', '10235', ...}."""
    if not text or not isinstance(text, str):
        return set()
    out = set()
    for tok in _TOKEN.findall(text.replace("#", " ")):
        out.add(tok.upper())
        stripped = _PREFIX.sub("", tok)
        if stripped:
            out.add(stripped.upper())
    return out


class OpenBook:
    """The open invoices and their running balances while payments are applied."""

    def __init__(self, invoices: pd.DataFrame, customers: pd.DataFrame | None = None, rules: Rules | None = None):
        self.rules = rules or Rules()
        inv = invoices.sort_values(["due_date", "issue_date", "invoice_id"], kind="stable")
        self.rows = {r.invoice_id: {"invoice_id": r.invoice_id, "invoice_number": str(r.invoice_number),
                                    "customer_id": r.customer_id, "currency": r.currency,
                                    "due_date": r.due_date, "balance": int(r.balance_minor)}
                     for r in inv.itertuples()}
        self.by_number: dict[str, list[str]] = {}
        self.by_customer: dict[str, list[str]] = {}
        for iid, r in self.rows.items():
            self.by_number.setdefault(r["invoice_number"].upper(), []).append(iid)
            self.by_number.setdefault(str(iid).upper(), []).append(iid)
            self.by_customer.setdefault(r["customer_id"], []).append(iid)
        self.related: dict[str, set[str]] = {}
        self.names: dict[str, list[str]] = {}
        self.ids: dict[str, str] = {}
        self._numbers: list[str] | None = None
        self.waiting: set[str] = set()   # customers with cash the book could not place (no first-in-first-paid then)
        if customers is not None and not customers.empty:
            parent = customers.get("parent_customer_id")
            for r in customers.itertuples():
                self.names.setdefault(_norm(r.name), []).append(r.customer_id)
                if isinstance(r.customer_id, str) and len(r.customer_id) >= 4:
                    self.ids[r.customer_id.upper()] = r.customer_id
            if parent is not None:
                for cid, pid in zip(customers["customer_id"], parent):
                    if isinstance(pid, str) and pid:
                        self.related.setdefault(cid, set()).add(pid)
                        self.related.setdefault(pid, set()).add(cid)

    def family(self, customer_id: str | None) -> set[str]:
        if not customer_id:
            return set()
        return {customer_id} | self.related.get(customer_id, set())

    def open_of(self, customers: set[str], currency: str) -> list[dict]:
        out = [self.rows[i] for c in customers for i in self.by_customer.get(c, ())
               if self.rows[i]["balance"] > 0 and self.rows[i]["currency"] == currency]
        return sorted(out, key=lambda r: (r["due_date"], r["invoice_id"]))

    def customer_by_name(self, name: str | None) -> str | None:
        ids = self.names.get(_norm(name), []) if name else []
        return ids[0] if len(ids) == 1 else None

    def customer_in_text(self, text: str | None) -> str | None:
        """A payer named inside free remittance text: a customer id among its tokens, else one
        customer's name close enough (rapidfuzz partial ratio at the rules' score), the best
        unique and clear of the next by 5 points."""
        if not text or not isinstance(text, str):
            return None
        ids = {self.ids[t] for t in reference_tokens(text) if t in self.ids}
        if len(ids) == 1:
            return ids.pop()
        if ids:
            return None
        from rapidfuzz import fuzz, process

        choices = [n for n, owners in self.names.items() if len(owners) == 1 and len(n) >= 5]
        found = process.extract(_norm(text), choices, scorer=fuzz.partial_ratio, limit=2,
                                score_cutoff=self.rules.payer_name_score)
        if not found or (len(found) > 1 and found[1][1] > found[0][1] - 5):
            return None
        return self.names[found[0][0]][0]

    def near_numbers(self, tokens: set[str], customers: set[str] | None, currency: str, amount: int) -> list[dict]:
        """Open invoices (of `customers`, or anyone's) whose number is one edit or one swap of
        adjacent characters from a reference token, and whose balance is exactly `amount`."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        if self._numbers is None:
            self._numbers = list(self.by_number)
        found, swaps = {}, {}
        for tok in tokens:
            if len(tok) < 4 or not any(ch.isdigit() for ch in tok):
                continue
            for number, _dist, _ in process.extract(tok, self._numbers, scorer=OSA.distance, score_cutoff=1,
                                                    limit=None):
                if number == tok:
                    continue
                for iid in self.by_number[number]:
                    r = self.rows[iid]
                    if r["balance"] == amount and r["currency"] == currency and \
                            (customers is None or r["customer_id"] in customers):
                        found[iid] = r
                        if len(number) == len(tok) and sorted(number) == sorted(tok):
                            swaps[iid] = r   # two neighbours swapped: the commonest slip
        return list(swaps.values()) if len(swaps) == 1 else list(found.values())


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower()) if isinstance(text, str) else ""


def apply_payment(book: OpenBook, p: dict) -> Outcome:
    """Match one payment (positive amount) against the book and update its balances."""
    amount, cur = int(p["amount_minor"]), p["currency"]
    rules = book.rules
    given = p.get("customer_id")  # NaN/None/"" all mean: not given
    customer = given if isinstance(given, str) and given else book.customer_by_name(p.get("payer_name"))
    tokens = reference_tokens(p.get("reference"))
    named = []
    for tok in tokens:
        for iid in book.by_number.get(tok, ()):
            row = book.rows[iid]
            if row["balance"] > 0 and row not in named:
                named.append(row)
    out = Outcome(payment_id=p["payment_id"], status="unapplied", rule=None, confidence=None, needs_review=False,
                  customer_id=customer)
    if not customer and not named and rules.fuzzy_reference:
        payer = p.get("payer_name")
        if not (isinstance(payer, str) and payer.strip()):  # a blank payer: perhaps the reference names them
            customer = book.customer_in_text(p.get("reference"))
            out.customer_id = customer
    family = book.family(customer)
    if named:
        wrong_currency = [r for r in named if r["currency"] != cur]
        customer_from_reference = not customer
        if customer_from_reference:  # the reference is how we learn the customer
            owners = {r["customer_id"] for r in named}
            if len(owners) == 1:
                customer = owners.pop()
                family = book.family(customer)
                out.customer_id = customer
        foreign = [r for r in named if r["customer_id"] not in family]
        named = [r for r in named if r["currency"] == cur and r["customer_id"] in family]
        if not named:
            # A number that is another customer's open invoice is no typo: never moved by a guess.
            near = None if foreign else _fuzzy(book, tokens, family if not customer_from_reference else None, cur,
                                                amount)
            if near is not None:
                return _apply(out, "reference_fuzzy", [(near, amount)], customer=near["customer_id"])
            out.reason = ("reference names another customer's invoice" if foreign else
                          "reference names an invoice in another currency" if wrong_currency else
                          "reference names no open invoice of this customer")
            out.candidates = [_cand(r) for r in (foreign or wrong_currency)][:5]
            return out
        if len(named) == 1:
            r = named[0]
            if amount == r["balance"]:
                return _apply(out, "exact", [(r, amount)])
            # A reference with another amount is a partial or an over-payment only when we know the
            # payer apart from the reference, and no other open invoice of theirs has exactly that
            # amount: a mistyped invoice number must not move cash onto the wrong invoice.
            if customer_from_reference:
                near = _fuzzy(book, tokens, None, cur, amount)
                if near is not None:  # the number was mistyped onto another invoice: one near it has the amount
                    return _apply(out, "reference_fuzzy", [(near, amount)], customer=near["customer_id"])
                out.reason = "the reference names an invoice whose balance differs, and the payer is unknown"
                out.candidates = [_cand(r)]
                return out
            same_amount = [x for x in book.open_of(family, cur) if x["balance"] == amount and x is not r]
            if same_amount:
                out.reason = "the reference names one invoice, but another open invoice has exactly this amount"
                out.candidates = [_cand(r)] + [_cand(x) for x in same_amount][:4]
                return out
            if rules.tolerated(r["balance"] - amount, r["balance"], cur):
                return _short(out, "reference_short", r, amount, rules)
            if amount < r["balance"]:
                return _apply(out, "reference_partial", [(r, amount)], status="partial")
            return _apply(out, "reference_overpaid", [(r, r["balance"])], status="overpaid",
                          credit=amount - r["balance"])
        if amount == sum(r["balance"] for r in named):
            return _apply(out, "reference_multi", [(r, r["balance"]) for r in named])
        out.reason = "reference names several invoices and the amount is not their total"
        out.candidates = [_cand(r) for r in named][:10]
        return out
    if rules.fuzzy_reference and tokens:
        near = _fuzzy(book, tokens, family if customer else None, cur, amount)
        if near is not None:
            return _apply(out, "reference_fuzzy", [(near, amount)], customer=near["customer_id"])
    if not customer:
        out.reason = "no invoice named and the payer is not a known customer"
        return out
    pool = book.open_of(family, cur)
    singles = [r for r in pool if r["balance"] == amount]
    if len(singles) == 1:  # one invoice of exactly the amount beats any combination of others
        return _apply(out, "amount_customer", [(singles[0], amount)])
    if len(singles) > 1 and customer not in book.waiting:
        # Several of exactly the amount (a subscription): first in, first paid, flagged for review;
        # not while cash of this customer waits unapplied (it may be the payment of the oldest).
        applied = _apply(out, "amount_customer_oldest", [(singles[0], amount)])
        applied.candidates = [_cand(r) for r in singles[:10]]
        return applied
    multis = _subsets(pool[:MAX_SUBSET_INVOICES], amount) if not singles else []
    if multis:
        if len(multis) == 1:
            return _apply(out, "multi_invoice", [(r, r["balance"]) for r in multis[0]])
        oldest = min(multis, key=lambda s: sorted((r["due_date"], r["invoice_id"]) for r in s))
        first_in = {r["invoice_id"] for r in pool[:len(oldest)]}
        if {r["invoice_id"] for r in oldest} == first_in and customer not in book.waiting:
            # the customer's oldest open invoices: first in, first paid
            applied = _apply(out, "multi_invoice_oldest", [(r, r["balance"]) for r in oldest])
            applied.candidates = [{"invoices": [r["invoice_id"] for r in s]} for s in multis[:10]]
            return applied
    short = [r for r in pool if rules.tolerated(r["balance"] - amount, r["balance"], cur)]
    if not singles and not multis and short and (len(short) == 1 or (
            len({r["balance"] for r in short}) == 1 and customer not in book.waiting)):
        return _short(out, "amount_short", short[0], amount, rules)   # one, or the oldest of equal ones
    if not singles and not multis and len(pool) == 1 and amount > pool[0]["balance"]:
        return _apply(out, "overpaid_single", [(pool[0], pool[0]["balance"])], status="overpaid",
                      credit=amount - pool[0]["balance"])
    if singles or multis:
        out.reason = "several open invoices or combinations fit the amount"
        out.candidates = [_cand(r) for r in singles][:5] + [{"invoices": [r["invoice_id"] for r in s]}
                                                           for s in multis[:5]]
    else:
        out.reason = "no open invoice or combination of this customer fits the amount"
        out.candidates = [_cand(r) for r in pool[:5]]
    return out


def _fuzzy(book: OpenBook, tokens: set[str], customers: set[str] | None, currency: str, amount: int) -> dict | None:
    """The one open invoice a mistyped number and the exact amount point to (None: none or several)."""
    if not book.rules.fuzzy_reference or not tokens:
        return None
    near = book.near_numbers(tokens, customers, currency, amount)
    return near[0] if len(near) == 1 else None


def _short(out: Outcome, rule: str, r: dict, amount: int, rules: Rules) -> Outcome:
    """A payment short of the invoice within the tolerance: settled, the difference written off to
    the policy's account; with no account named, the rest stays open and a person decides."""
    if rules.write_off_account:
        diff = r["balance"] - amount
        done = _apply(out, rule, [(r, amount)])
        r["balance"] -= diff
        done.write_off_minor, done.write_off_account = int(diff), rules.write_off_account
        return done
    done = _apply(out, rule, [(r, amount)], status="partial")
    done.needs_review = True
    done.reason = "short of the invoice within the tolerance: write the difference off or ask for it"
    return done


def _subsets(pool: list[dict], amount: int) -> list[list[dict]]:
    found = []
    for size in range(2, min(MAX_SUBSET_SIZE, len(pool)) + 1):
        for combo in itertools.combinations(pool, size):
            if sum(r["balance"] for r in combo) == amount:
                found.append(list(combo))
                if len(found) > 50:
                    return found
    return found


def _apply(out: Outcome, rule: str, parts: list[tuple[dict, int]], status: str = "applied", credit: int = 0,
           customer: str | None = None) -> Outcome:
    if customer is not None:
        out.customer_id = customer
    for row, amt in parts:
        row["balance"] -= amt
        out.applications.append({"invoice_id": row["invoice_id"], "customer_id": row["customer_id"],
                                 "amount_minor": int(amt)})
    out.status, out.rule, out.confidence = status, rule, CONFIDENCE[rule]
    out.needs_review = rule in NEEDS_REVIEW
    out.credit_minor = int(credit)
    return out


def _cand(r: dict) -> dict:
    return {"invoice_id": r["invoice_id"], "invoice_number": r["invoice_number"], "customer_id": r["customer_id"],
            "balance_minor": int(r["balance"]), "currency": r["currency"]}


def apply_all(book: OpenBook, payments: pd.DataFrame) -> list[Outcome]:
    """Apply payments in received order (then by id, so the order is stable)."""
    ordered = payments.sort_values(["received_date", "payment_id"], kind="stable")
    out = []
    for p in ordered.to_dict("records"):
        o = apply_payment(book, p)
        if o.status == "unapplied" and o.customer_id:
            book.waiting.add(o.customer_id)
        out.append(o)
    return out


def candidates_json(o: Outcome) -> str | None:
    return json.dumps(o.candidates) if o.candidates else None
