"""A simulated outside world for `arflow simulate`: the billing system, the CRM, the mailbox, the
Slack channel and the card processor of a portfolio of simulated customers (docs/simulator.md).
It implements the same small interfaces as the demo and CSV sources (``invoices``,
``customers``, ``payments``, ``aging_report``, ``reflected_payment_ids``) and the delivery
channels (``send``, ``charge``), so the daily flow's and the checkpoint's own code runs against it.

The behaviour model and every parameter are in ``simulation.yaml``. In short, per invoice:

* when the customer would pay on their own: the due date plus a draw from the IBM data's
  calibrated timing (customer effect + paper + dispute + residual); a late payer that nobody
  contacts pays ``no_contact_slip`` times later; a distressed customer never does;
* each delivered touch (a message, an owner's call, a service pause) makes a late payer pay a
  few days later with its ``respond`` probability, or first promise a date (recorded by the
  simulated clerk, kept or broken);
* disputed invoices are disputed before their due date and settled when the dispute ends;
* autopay invoices are charged on the due date by the policy's auto-charge; cards fail;
* customers churn (more after a wrong tone or a service pause) and some become unable to pay.

Everything random comes from numpy generators seeded by the caller, one per source of chance, so
that two policies run with one seed meet the same world (common random numbers): the same
portfolio; the same baseline churn and distress on the same days (drawn for every customer every
day); for each customer's n-th invoice the same dispute, timing, and fate should they churn (drawn
from that customer's own stream when it is billed); the same card outcome for an invoice's n-th
charge. Only how customers respond to touches draws from a stream the policy moves, since that is
what differs. A difference between policies is then the policies', not a different world's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from arflow.money import format_minor
from connectors.billing import ChargeResult
from connectors.sources import CUSTOMER_COLUMNS, INVOICE_COLUMNS, PAYMENT_COLUMNS, string_frame
from arflow.frames import draw
from arflow.resources import default_path

DEFAULT_BEHAVIOUR = default_path("simulation.yaml")
SOURCE_LAG_DAYS = 1        # the billing system shows a payment as applied the day after it arrives
PAYMENT_WINDOW_DAYS = 7    # payments() returns the last week's payments (the checkpoint dedupes)
PAID_KEPT_DAYS = 10        # invoices() keeps invoices paid this recently (status paid)
CURRENCY = "USD"           # the portfolio's one currency


def load_behaviour(path: str | Path | None = None) -> dict:
    path = Path(path or DEFAULT_BEHAVIOUR)
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"simulation behaviour file not found: {path}") from None
    for section in ("calibration", "assumptions", "portfolio", "scenarios", "policies"):
        if not isinstance(cfg, dict) or section not in cfg:
            raise ValueError(f"{path}: missing section {section!r}")
    return cfg


@dataclass
class Customer:
    id: str
    name: str
    segment: str
    arr_minor: int
    health: str
    tenure_months: int
    renewal: dt.date
    billing_day: int
    autopay: bool
    paper: bool
    effect: float
    owner: str
    distressed: bool = False
    churned_on: dt.date | None = None

    @property
    def sensitive(self) -> bool:
        """An account a firm tone can lose: strategic or at risk."""
        return self.segment == "strategic" or self.health == "at_risk"


@dataclass
class Invoice:
    id: str
    number: str
    customer: Customer
    issued: dt.date
    due: dt.date
    amount_minor: int
    disputed: bool
    pay_on: dt.date | None          # when the customer will pay the rest (None: not on their own)
    dispute_from: dt.date | None = None
    dispute_to: dt.date | None = None
    paid_minor: int = 0
    paid_on: dt.date | None = None
    written_off: bool = False
    on_plan: bool = False
    deepest_days_late: int = 0
    unpaid_if_churned: bool = False  # drawn at billing: never paid should the customer churn
    charges_tried: int = 0

    @property
    def open_minor(self) -> int:
        return self.amount_minor - self.paid_minor


@dataclass
class Payment:
    id: str
    customer_id: str
    amount_minor: int
    received: dt.date
    reference: str


@dataclass
class Clerk:
    """What a person records in the ledger because a customer said so (the same rows `arflow
    dispute`, `arflow promise` and `arflow dispute resolve` write)."""

    disputes_open: list = field(default_factory=list)      # (invoice, day)
    disputes_resolve: list = field(default_factory=list)   # (invoice, day)
    promises: list = field(default_factory=list)           # (invoice, day, promised)


class SimulatedWorld:
    name = "simulated"

    def __init__(self, *, customers: int, start: dt.date, seed: int, behaviour: dict, scenario: str = "central"):
        if customers < 1:
            raise ValueError("a simulation needs at least one customer")
        if scenario not in behaviour["scenarios"]:
            raise ValueError(f"scenario {scenario!r} is not one of {sorted(behaviour['scenarios'])}")
        self.cal = behaviour["calibration"]
        self.a = behaviour["assumptions"]
        self.scale = behaviour["scenarios"][scenario]
        self.seed = seed
        self.today = start
        self.accounts = self._customers(customers, behaviour["portfolio"], start)
        self._life = np.random.default_rng([seed, 1])        # baseline churn and distress, every customer every day
        self._billing = [np.random.default_rng([seed, 2, i]) for i in range(customers)]  # per customer, per invoice
        self.rng = np.random.default_rng([seed, 3])           # responses to touches: what the policy moves
        self.by_id = {c.id: c for c in self.accounts}
        self.bills: dict[str, Invoice] = {}
        self.paid_in: list[Payment] = []
        self.charges: dict[str, ChargeResult] = {}
        self.clerk = Clerk()
        self.sent_mail = 0
        self.slack_posts = 0
        self.churn_log: list[tuple[str, dt.date, str]] = []
        self._n_invoice = 0
        self._seen_outbox = 0
        self._plans_seen: set[int] = set()
        self._installments_done: set[tuple[int, int]] = set()
        self._reflected_at: tuple = (None, {})      # (today, payments seen): what _reflected counted
        self._reflected_ids_at: tuple = (None, set())

    # ---- the portfolio ---------------------------------------------------------------------
    def _customers(self, n: int, p: dict, start: dt.date) -> list[Customer]:
        rng = np.random.default_rng([self.seed, 0])
        segs = list(p["segments"])
        seg = rng.choice(segs, n, p=[p["segments"][s] for s in segs])
        out = []
        for i in range(n):
            s = str(seg[i])
            lo, hi = p["arr_usd"][s]
            arr = int(rng.uniform(lo, hi)) * 100
            effect = float(draw(self.cal["customer_effect_quantiles"], rng.random()))
            out.append(Customer(
                id=f"SIM-{i + 1:04d}", name=f"Simulated Customer {i + 1:04d}", segment=s, arr_minor=arr,
                health="at_risk" if rng.random() < p["at_risk_share"] else "healthy",
                tenure_months=int(rng.integers(1, 97)),
                renewal=start + dt.timedelta(days=int(rng.integers(*p["renewal_within_days"]))),
                billing_day=int(rng.integers(1, 29)), autopay=bool(rng.random() < self.a["autopay_share"][s]),
                paper=bool(rng.random() < self.cal["paper_share"]), effect=effect, owner=f"ae{1 + i % 12}@sim.example"))
        return out

    # ---- one day, before the flows run ---------------------------------------------------------
    def start_day(self, day: dt.date) -> None:
        """Bill, let customers act on their own, and roll churn and distress for `day`."""
        self.today = day
        a = self.a
        draws = self._life.random((len(self.accounts), 2))  # drawn whoever has churned: the same days for any policy
        for i, c in enumerate(self.accounts):
            if c.churned_on is None and draws[i, 0] < a["churn_per_month"][c.health] / 30.4:
                self._churn(c, day, "baseline")
            if not c.distressed and draws[i, 1] < a["distress_per_year"] / 365:
                self._distress(c)
            if c.churned_on is None and day.day == c.billing_day:
                self._bill(c, day, self._billing[i])
        for inv in self._open():
            inv.deepest_days_late = max(inv.deepest_days_late, (day - inv.due).days)
            if inv.dispute_from == day:
                self.clerk.disputes_open.append((inv, day))
            if inv.dispute_to == day:
                self.clerk.disputes_resolve.append((inv, day))
            if inv.pay_on is not None and inv.pay_on <= day and not inv.on_plan:
                self._pay(inv, inv.open_minor, day, f"Invoice {inv.number}")

    def _bill(self, c: Customer, day: dt.date, rng: np.random.Generator) -> None:
        self._n_invoice += 1
        n = self._n_invoice
        amount = max(100, c.arr_minor // 12)
        due = day + dt.timedelta(days=int(self.cal["terms_days"]))
        u = rng.random(4)  # always four draws: the customer's next invoice meets the same chances
        disputed = bool(u[0] < self.cal["dispute_rate"])
        offset = c.effect + float(draw(self.cal["residual_quantiles"], u[1]))
        offset += self.cal["paper_effect_days"] * c.paper + self.cal["dispute_effect_days"] * disputed
        offset = max(offset, -float(self.cal["terms_days"]))  # nobody pays before the invoice exists
        days = int(round(offset))
        if days > 0 and not disputed:
            days = int(round(days * self.a["no_contact_slip"]))
        pay_on = None if c.distressed else due + dt.timedelta(days=days)
        inv = Invoice(id=f"SIMINV-{n:06d}", number=str(100000 + n), customer=c, issued=day, due=due,
                      amount_minor=amount, disputed=disputed, pay_on=pay_on,
                      unpaid_if_churned=bool(u[3] < self.a["churned_unpaid_share"]))
        if disputed:  # raised while the invoice is checked, before it falls due; settled days before payment
            inv.dispute_from = min(due - dt.timedelta(days=int(u[2] * 11)), due)
            inv.dispute_from = max(inv.dispute_from, day + dt.timedelta(days=1))
            end = pay_on if pay_on is not None else due + dt.timedelta(days=int(self.cal["dispute_effect_days"]))
            inv.dispute_to = max(end - dt.timedelta(days=2), inv.dispute_from + dt.timedelta(days=1))
        self.bills[inv.id] = inv

    def _pay(self, inv: Invoice, minor: int, day: dt.date, reference: str) -> None:
        minor = min(minor, inv.open_minor)
        if minor <= 0 or inv.written_off:
            return
        pid = f"SIMPAY-{len(self.paid_in) + 1:07d}"
        self.paid_in.append(Payment(pid, inv.customer.id, minor, day, reference))
        inv.paid_minor += minor
        if inv.open_minor <= 0:
            inv.paid_on = day
            inv.pay_on = None

    def _churn(self, c: Customer, day: dt.date, why: str) -> None:
        if c.churned_on is not None:
            return
        c.churned_on = day
        self.churn_log.append((c.id, day, why))
        for inv in self._open(c):
            if inv.unpaid_if_churned:
                inv.pay_on = None

    def _distress(self, c: Customer) -> None:
        c.distressed = True
        for inv in self._open(c):
            inv.pay_on = None

    def _open(self, c: Customer | None = None):
        return [i for i in self.bills.values() if i.paid_on is None and not i.written_off
                and (c is None or i.customer is c)]

    # ---- the source interfaces (what the flows read) --------------------------------------------
    def invoices(self) -> pd.DataFrame:
        """The billing system's invoices: open ones, and those paid in the last days (as paid)."""
        return self._invoice_frame(self.bills.values())

    def fresh_invoices(self, invoice_ids: set[str]) -> pd.DataFrame:
        """These invoices as the billing system shows them now (the check right before a send asks
        a connected system for the invoices about to go, not for all of them)."""
        return self._invoice_frame(self.bills[i] for i in sorted(invoice_ids) if i in self.bills)

    def _reflected(self) -> dict[str, int]:
        """Per invoice number: what the billing system shows as paid today (payments arrived by
        yesterday). Counted once a day: payments only ever accrue, and the day only moves on."""
        key = (self.today, len(self.paid_in))
        if self._reflected_at[0] != key:
            seen_until = self.today - dt.timedelta(days=SOURCE_LAG_DAYS)
            reflected: dict[str, int] = {}
            for p in self.paid_in:
                if p.received <= seen_until and p.reference.startswith("Invoice "):
                    ref = p.reference.split()[1]
                    reflected[ref] = reflected.get(ref, 0) + p.amount_minor
            self._reflected_at = (key, reflected)
        return self._reflected_at[1]

    def _invoice_frame(self, bills) -> pd.DataFrame:
        day = self.today
        reflected = self._reflected()
        rows = []
        for inv in bills:
            if inv.issued > day:
                continue
            balance = max(inv.amount_minor - reflected.get(inv.number, 0), 0)
            if balance == 0 and inv.paid_on is not None and inv.paid_on < day - dt.timedelta(days=PAID_KEPT_DAYS):
                continue
            rows.append({
                "invoice_id": inv.id, "customer_id": inv.customer.id, "invoice_number": inv.number,
                "issue_date": inv.issued.isoformat(), "due_date": inv.due.isoformat(),
                "terms": f"net{self.cal['terms_days']}", "currency": CURRENCY,
                "amount": format_minor(inv.amount_minor, CURRENCY), "balance": format_minor(balance, CURRENCY),
                "status": "paid" if balance == 0 else "open",
                "autopay": "true" if inv.customer.autopay else "false",
                "payment_link": f"https://pay.sim.example/{inv.id}", "po_number": ""})
        return string_frame(rows, INVOICE_COLUMNS)

    def customers(self) -> pd.DataFrame:
        return self._customer_frame(self.accounts)

    def fresh_customers(self, customer_ids: set[str]) -> pd.DataFrame:
        return self._customer_frame([c for c in self.accounts if c.id in customer_ids])

    def _customer_frame(self, accounts) -> pd.DataFrame:
        return string_frame([{
            "customer_id": c.id, "name": c.name, "segment": c.segment,
            "arr": format_minor(c.arr_minor, CURRENCY),
            "tenure_months": str(c.tenure_months), "nps": "", "health": c.health,
            "renewal_date": c.renewal.isoformat(), "owner_ae_email": c.owner, "owner_csm_email": "",
            "billing_contact_name": "Pat Payable", "billing_contact_email": f"ap@{c.id.lower()}.sim.example",
            "country": "US", "opt_out": "false", "paused_until": ""} for c in accounts], CUSTOMER_COLUMNS)

    def payments(self) -> pd.DataFrame:
        since = self.today - dt.timedelta(days=PAYMENT_WINDOW_DAYS)
        return string_frame([{"payment_id": p.id, "customer_id": p.customer_id,
                              "amount": format_minor(p.amount_minor, CURRENCY), "currency": CURRENCY, "received_date": p.received.isoformat(), "reference": p.reference}
                             for p in self.paid_in if since < p.received <= self.today], PAYMENT_COLUMNS)

    def aging_report(self) -> None:
        return None  # the books' own report is not simulated: reconciliation is skipped, as the run notes

    def reflected_payment_ids(self) -> set[str]:
        seen_until = self.today - dt.timedelta(days=SOURCE_LAG_DAYS)
        key = (self.today, len(self.paid_in))
        if self._reflected_ids_at[0] != key:
            since = self.today - dt.timedelta(days=60)
            self._reflected_ids_at = (key, {p.id for p in self.paid_in if since < p.received <= seen_until})
        return set(self._reflected_ids_at[1])

    # ---- the channels (what delivery calls) ----------------------------------------------------
    def send(self, msg) -> None:
        """The mailbox: accepts every message (its effect is read from the outbox afterwards)."""
        self.sent_mail += 1

    def post(self, text: str) -> None:
        self.slack_posts += 1

    def charge(self, *, invoice_id: str, invoice_number: str, customer_id: str, amount: str, currency: str,
               idempotency_key: str, on: dt.date) -> ChargeResult:
        if idempotency_key in self.charges:
            return self.charges[idempotency_key]
        inv = self.bills.get(invoice_id)
        if inv is None or inv.customer.id != customer_id:
            result = ChargeResult(ok=False, error="no_such_invoice")
        elif inv.customer.distressed:
            result = ChargeResult(ok=False, error="insufficient_funds")
        elif self._card_declined(inv):
            result = ChargeResult(ok=False, error="card_declined")
        else:
            charge_id = f"ch_sim_{len(self.charges) + 1:07d}"
            self._pay(inv, inv.open_minor, on, f"Invoice {inv.number} auto-charge {charge_id}")
            result = ChargeResult(ok=True, charge_id=charge_id)
        self.charges[idempotency_key] = result
        return result

    def _card_declined(self, inv: Invoice) -> bool:
        """The invoice's n-th charge meets the same card whatever the policy (one stream per charge)."""
        inv.charges_tried += 1
        u = np.random.default_rng([self.seed, 4, int(inv.number), inv.charges_tried]).random()
        return bool(u < self.a["card_failure"])

    # ---- after the flows ran: customers react to what they received -------------------------------
    def receive(self, sent: pd.DataFrame, plans: pd.DataFrame, write_offs: pd.DataFrame, day: dt.date) -> None:
        """`sent`: outbox rows delivered today; `plans`: installments of active payment plans;
        `write_offs`: the invoices written off so far."""
        for inv_id in write_offs.get("invoice_id", pd.Series(dtype=object)):
            inv = self.bills.get(inv_id)
            if inv is not None and not inv.written_off and inv.paid_on is None:
                inv.written_off, inv.pay_on = True, None
        self._installments(plans, day)
        if sent.empty:
            return
        for key, grp in sent.sort_values("id").groupby("message_key", sort=False):
            first = grp.iloc[0]
            invoices = [self.bills[i] for i in grp["invoice_id"] if i in self.bills]
            invoices = [i for i in invoices if i.paid_on is None and not i.written_off]
            c = self.by_id.get(first["customer_id"])
            if c is None:
                continue
            kind = touch_kind(first["channel"], first["step"], first["tone"])
            if kind is None:
                continue
            if first["channel"] == "email" and first["tone"] in ("firm", "escalating") and c.sensitive \
                    and not bool(first["needs_approval"]):
                if self.rng.random() < self.a["wrong_tone_churn"] * self.scale["churn"]:
                    self._churn(c, day, "wrong_tone")
            if kind == "service_pause" and self.rng.random() < self.a["service_pause_churn"] * self.scale["churn"]:
                self._churn(c, day, "service_pause")
            if kind == "owner_call" and self.rng.random() >= min(1.0, self.a["owner_follow_through"] * self.scale["respond"]):
                continue
            p = min(1.0, self.a["respond"][kind] * self.scale["respond"])
            if c.distressed:
                p *= self.a["distress_response_factor"]
            if not invoices or self.rng.random() >= p:
                continue
            if kind == "pre_due_reminder":  # the late-to-be pays by the due date instead
                for inv in invoices:
                    if inv.pay_on is not None and inv.pay_on > inv.due and not inv.disputed:
                        inv.pay_on = max(day, inv.due - dt.timedelta(days=int(self.rng.integers(0, 3))))
                continue
            lo, hi = self.a["response_lag_days"]
            if self.rng.random() < self.a["promise_share"]:
                plo, phi = self.a["promise_days"]
                promised = day + dt.timedelta(days=int(self.rng.integers(plo, phi + 1)))
                kept = self.rng.random() < self.a["promise_kept"]
                for inv in invoices:
                    self.clerk.promises.append((inv, day, promised))
                    if kept:
                        inv.pay_on = min(inv.pay_on or promised, promised)
                continue
            when = day + dt.timedelta(days=int(self.rng.integers(lo, hi + 1)))
            for inv in invoices:
                if not inv.on_plan:
                    inv.pay_on = min(inv.pay_on or when, when)

    def _installments(self, plans: pd.DataFrame, day: dt.date) -> None:
        if plans.empty:
            return
        for r in plans.sort_values(["plan_id", "seq"]).itertuples():
            inv = self.bills.get(r.invoice_id)
            if inv is None:
                continue
            if int(r.plan_id) not in self._plans_seen:  # the customer now pays by the plan, not at once
                self._plans_seen.add(int(r.plan_id))
                inv.on_plan, inv.pay_on = True, None
            due = pd.Timestamp(r.due_on).date()
            key = (int(r.plan_id), int(r.seq))
            if due != day or key in self._installments_done:
                continue
            self._installments_done.add(key)
            kept = self.a["plan_installment_kept"]["distressed" if inv.customer.distressed else "healthy"]
            if self.rng.random() < kept:
                self._pay(inv, int(r.amount_minor), day, f"Invoice {inv.number} installment {int(r.seq)}")

    # ---- the clerk -------------------------------------------------------------------------
    def choose(self, kind: str, customer_id: str) -> tuple[str, str | None]:
        """The simulated clerk's verdict on a decision: approve what the policy proposes; between a
        payment plan and a write-off, a plan unless the customer cannot pay (the clerk asks)."""
        if kind in ("payment_plan_or_write_off", "payment_plan_missed"):
            c = self.by_id.get(customer_id)
            return "approve", ("write_off" if c is not None and c.distressed else "payment_plan")
        if kind == "guardrail_blocked":  # what the guardrails stopped is not sent; the cadence goes on
            return "reject", None
        return "approve", None

    def take_clerk_records(self) -> Clerk:
        out, self.clerk = self.clerk, Clerk()
        return out


def touch_kind(channel: str, step: str, tone: str) -> str | None:
    """What a delivered touch is to the customer (None: nothing that moves payment)."""
    if channel == "email":
        if step in ("receipt", "payment_plan_proposal") or step.startswith("installment"):
            return None
        if step in ("pre_due_reminder", "payment_failed_notice", "service_pause_warning"):
            return step
        return f"{tone}_email"
    if channel in ("slack", "crm_task"):
        return "owner_call"
    if channel == "decision":
        return "service_pause" if step == "service_pause" else None
    return None


