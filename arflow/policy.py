"""The policy file: lane boundaries, grace, cadence per lane and segment, stop conditions, thresholds.

Loaded from YAML and validated with pydantic; a bad file raises :class:`PolicyError` naming the
file and the field, before any data is read.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arflow import businessdays

LANES = ("current", "early", "late", "critical")
SEGMENTS = ("strategic", "standard", "transactional")
TONES = ("friendly", "firm", "escalating")
CHANNELS = ("email", "slack", "crm_task", "billing", "decision")
HOLD_REASONS = ("dispute", "opt_out", "paused", "promise_to_pay", "payment_plan", "unapplied_cash",
                "unapplied_credit", "reconciliation_mismatch", "written_off", "billing_dunning", "question")


class PolicyError(ValueError):
    """The policy file cannot be used; the message says which file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    lane: Literal["current", "early", "late", "critical"]
    # Exactly one of: calendar days past the due date (0 = the due date itself), or business
    # days before the due date (pre-due reminders).
    day: int | None = None
    business_days_before_due: int | None = Field(default=None, ge=1)
    channel: Literal["email", "slack", "crm_task", "billing", "decision"]
    tone: Literal["friendly", "firm", "escalating"] = "friendly"
    recipients: tuple[str, ...] = ("billing_contact",)
    approval: bool = False
    segments: tuple[Literal["strategic", "standard", "transactional"], ...] = SEGMENTS
    autopay_only: bool = False
    template: str | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> "Step":
        if (self.day is None) == (self.business_days_before_due is None):
            raise ValueError(f"step {self.name!r}: give exactly one of 'day' or 'business_days_before_due'")
        return self

    @property
    def sort_day(self) -> int:
        return self.day if self.day is not None else -int(self.business_days_before_due or 0)


class LaneBounds(_Strict):
    """First day past due of each overdue lane; current is everything up to the due date."""

    early_from: int = Field(default=1, ge=1)
    late_from: int = 15
    critical_from: int = 45

    @model_validator(mode="after")
    def _ascending(self) -> "LaneBounds":
        if not (self.early_from < self.late_from < self.critical_from):
            raise ValueError("lane boundaries must satisfy early_from < late_from < critical_from")
        return self


class Reconciliation(_Strict):
    tolerance: str = "1.00"  # major units, per customer and bucket
    # What the books' aging report is aged by: the due date (the default) or the invoice date;
    # and whether it nets a customer's unallocated credit notes and unapplied cash (QuickBooks'
    # summary does) into their current bucket and total. Reconciliation then compares like with like.
    report_basis: Literal["due_date", "invoice_date"] = "due_date"
    report_nets_credits: bool = False

    @field_validator("tolerance")
    @classmethod
    def _decimal(cls, v: str) -> str:
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise ValueError(f"tolerance must be a decimal string, got {v!r}") from None
        if d < 0:
            raise ValueError("tolerance must not be negative")
        return str(v)


class DataQuality(_Strict):
    max_failure_share: float = Field(default=0.05, ge=0, le=1)
    # The daily run fails when the open invoices read fall by more than this share since the last
    # completed daily run (a truncated export must not look like a quiet day); 1 switches it off.
    max_open_invoice_drop: float = Field(default=0.5, ge=0, le=1)


class Scoring(_Strict):
    high_value_minor: int = Field(default=1_000_000, ge=0)  # 10,000.00 in a 2-digit currency
    chronic_late_count: int = Field(default=3, ge=1)        # late payments in 12 months
    chronic_avg_days_late: float = Field(default=10.0, ge=0)
    high_arr_minor: int = Field(default=10_000_000, ge=0)    # 100,000.00


class Delivery(_Strict):
    """How touches leave: gaps, sender, who is finance."""

    min_gap_days: int = Field(default=3, ge=0)  # calendar days between two e-mails to one customer
    sender: Literal["owner", "company"] = "owner"  # From: the account owner's address where there is one
    finance_team: str = "finance@localhost"    # recipient of the role `finance`
    finance_lead: str = "finance-lead@localhost"  # copied on quarter-end digests; gets unacknowledged escalations
    default_language: str = "en"
    # Template language by the customer's country, where the customer file gives no language.
    languages: dict[str, str] = Field(default_factory=dict)
    max_send_attempts: int = Field(default=3, ge=1)  # a transient send error retries on later runs, this often
    # Reply-To of every customer e-mail: the AR mailbox reply triage reads, so replies reach it and
    # not whichever owner the message came from. None: replies go to the From address.
    reply_to: str | None = None

    @field_validator("reply_to")
    @classmethod
    def _one_address(cls, v: str | None) -> str | None:
        from email.headerregistry import Address

        if v is None or not v.strip():
            return None
        try:
            if any(ch in v for ch in "\r\n,;"):
                raise ValueError
            return str(Address(addr_spec=v.strip()))
        except (ValueError, IndexError):
            raise ValueError(f"reply_to must be one e-mail address, got {v!r}") from None


class Statements(_Strict):
    """The monthly statement of account (tasks/statement.py, docs/flows.md: statements)."""

    # true: a customer's first reminder e-mail of the month sent on or after `day_of_month` carries
    # their statement of account (day 1: the month's first reminder).
    with_reminder: bool = False
    day_of_month: int = Field(default=1, ge=1, le=28)   # 28 at most: every month has that day
    attach: Literal["pdf", "html"] = "pdf"               # the statement as a PDF (WeasyPrint) or an HTML page


class Escalations(_Strict):
    quarter_end_business_days: int = Field(default=5, ge=0)  # owner escalations batched into digests
    ack_timeout_business_days: int = Field(default=3, ge=1)  # then the finance lead gets it


class PaymentPlans(_Strict):
    installments: int = Field(default=3, ge=2, le=24)
    interval_days: int = Field(default=30, ge=7)
    first_due_days: int = Field(default=7, ge=0)
    reminder_business_days_before: int = Field(default=3, ge=0)
    collections_export_dir: str = "exports"  # under the data folder


class CashApplication(_Strict):
    """Cash application's tolerances (tasks/cash.py, docs/flows.md: the payment checkpoint)."""

    # A payment short of an invoice's balance by at most this much (major units; and at most
    # tolerance_percent of the balance where that is set) still settles it: the difference is
    # written off to write_off_account, or, with no account named, left open for a person to
    # decide (the match is flagged for review).
    tolerance: str = "0.00"
    tolerance_percent: float = Field(default=0.0, ge=0, le=10)
    write_off_account: str | None = None
    # Mistyped invoice numbers (one edit or one swap away) and payers named in the reference.
    fuzzy_reference: bool = True
    payer_name_score: int = Field(default=90, ge=50, le=100)   # rapidfuzz score (0-100) a name must reach


class Kpis(_Strict):
    """How the KPIs and the cash forecast are computed (docs/kpis.md)."""
    dso_days: int = Field(default=90, ge=1)              # standard DSO: AR / credit sales of this many days x days
    countback_periods: int = Field(default=12, ge=1)     # countback DSO walks back at most this many 30-day periods
    window_days: int = Field(default=30, ge=1)           # the operating counts (sent, failed, replies ...) and CEI
    stalled_after_touches: int = Field(default=3, ge=1)  # customer e-mails with no payment or reply since: stalled
    forecast_weeks: int = Field(default=13, ge=1, le=52)
    # Share of today's open balance expected to be collected, by today's bucket: a stated
    # assumption until the learned late-payment model replaces it.
    collect_probability: dict[str, float] = Field(default_factory=lambda: {
        "current": 0.98, "d1_30": 0.95, "d31_60": 0.85, "d61_90": 0.70, "d91_plus": 0.40})

    @field_validator("collect_probability")
    @classmethod
    def _buckets(cls, v: dict[str, float]) -> dict[str, float]:
        buckets = ("current", "d1_30", "d31_60", "d61_90", "d91_plus")  # tasks.extract.BUCKETS
        if set(v) != set(buckets) or any(not 0 <= p <= 1 for p in v.values()):
            raise ValueError(f"collect_probability needs a share between 0 and 1 for each bucket {list(buckets)}")
        return v


class AutoChargeRetries(_Strict):
    """A refused auto-charge is tried again on the processor's schedule before any reminder: calendar
    days after the first failure, each attempt once (its own idempotency key)."""
    days_after_failure: tuple[int, ...] = (3, 5, 7)

    @field_validator("days_after_failure")
    @classmethod
    def _ascending(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in v) or list(v) != sorted(set(v)):
            raise ValueError("days_after_failure must be increasing whole days, 1 or more")
        return v


class FirstTimeLate(_Strict):
    """Who gets the gentler first overdue e-mail: a customer with at least this many invoices paid
    and never one paid late (the payment history), now late for the first time."""
    min_on_time_payments: int = Field(default=10, ge=1)


DISPUTE_REASON_CODES = ("pricing", "quantity", "not_received", "damaged", "duplicate", "tax", "terms", "unspecified")


class Disputes(_Strict):
    """Reason codes a dispute is recorded with (`unspecified` where the customer gave none: a
    decision then asks a person for one)."""
    reason_codes: tuple[str, ...] = DISPUTE_REASON_CODES

    @field_validator("reason_codes")
    @classmethod
    def _codes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import re

        bad = [c for c in v if not re.fullmatch(r"[a-z][a-z0-9_]*", c)]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"reason_codes are unique lowercase words (bad: {bad})")
        return tuple(v) if "unspecified" in v else tuple(v) + ("unspecified",)


class ModelPrice(_Strict):
    """US dollars per million tokens (= micro-dollars per token), as the vendor's price list gives them."""
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


class Llm(_Strict):
    """The model's part (docs/model.md). With no ANTHROPIC_API_KEY, or `enabled: false`, nothing here is used
    and the rules scorer and the templates work alone."""
    enabled: bool = True
    # The model per job. Scoring and triage are classification; personalization writes to customers.
    models: dict[Literal["score", "personalize", "triage"], str] = Field(default_factory=lambda: {
        "score": "claude-sonnet-4-5", "personalize": "claude-sonnet-4-5", "triage": "claude-haiku-4-5"})
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    batch_size: int = Field(default=20, ge=1, le=100)     # invoices per scoring request
    rescore_after_days: int = Field(default=7, ge=1)      # a cached score older than this is asked again
    personalize: bool = False                              # rewrite approved e-mail templates (checked after)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)              # the SDK's own retries (429, 529, 5xx, timeouts)
    backtest_threshold: float = Field(default=0.8, ge=0, le=1)  # agreement on tone and escalation, each

    @model_validator(mode="after")
    def _priced(self) -> "Llm":
        missing = sorted({m for m in self.models.values() if m not in self.prices})
        if self.enabled and missing:
            raise ValueError(f"llm.prices has no price for {missing}: the cost of every call is recorded")
        return self


class QuickBooksWrites(_Strict):
    write_notes: bool = False  # append a line to an invoice's private memo for each reminder sent
    attach_invoice_pdf: bool = False  # each invoice an e-mail asks for goes with QuickBooks' PDF of it (a read)


class XeroWrites(_Strict):
    write_history: bool = False  # a history note on an invoice for each reminder e-mailed (scope accounting.transactions)


class ChargebeeSettings(_Strict):
    # An invoice Chargebee is dunning (dunning_status in_progress: it retries the card itself) is held
    # (billing_dunning) and gets no e-mail from arflow, unless this is on.
    email_while_dunning: bool = False


class Connectors(_Strict):
    """What arflow may write into connected systems (docs/connectors/). Reading needs
    no switch; every write here is off unless turned on."""
    quickbooks: QuickBooksWrites = QuickBooksWrites()
    xero: XeroWrites = XeroWrites()
    chargebee: ChargebeeSettings = ChargebeeSettings()


def _amounts(v: dict[str, str] | None, what: str) -> dict[str, str] | None:
    """Per-currency amounts in major units, each checked against its currency's digits."""
    from arflow.money import to_minor

    if v is None:
        return None
    for cur, amount in v.items():
        try:
            to_minor(str(amount), cur)
        except ValueError:
            raise ValueError(f"{what} {cur}: {amount!r} is not an amount in that currency") from None
    return {cur: str(amount) for cur, amount in v.items()}


class ApprovalRule(_Strict):
    """Who may settle a kind of decision, up to an amount (docs/controls.md). `kinds`: decision
    kinds (the step: service_pause, service_pause_warning, ..., guardrail_blocked, delivery_unknown)
    or what an approval chooses (write_off, payment_plan); "*" any. `up_to`: per currency, major
    units, the decision's total at most this (a currency not listed is not covered); none: any amount."""

    kinds: tuple[str, ...] = Field(min_length=1)
    up_to: dict[str, str] | None = None
    roles: tuple[str, ...] = Field(min_length=1)

    @field_validator("up_to")
    @classmethod
    def _limits(cls, v):
        return _amounts(v, "up_to")


class Approvals(_Strict):
    """Who may decide what. `roles`: a name -> the people in it (as they give `--by` or the form's
    "Decided by": a name or an e-mail, case ignored; "*" anyone). `rules`: the first rule whose kinds
    match a decision and whose limit covers its amount names the roles that may settle it; a decision
    no rule's kinds match may be settled by anyone (add a rule with kinds ["*"] to close that)."""

    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    rules: tuple[ApprovalRule, ...] = ()

    @model_validator(mode="after")
    def _known_roles(self) -> "Approvals":
        unknown = sorted({r for rule in self.rules for r in rule.roles} - set(self.roles))
        if unknown:
            raise ValueError(f"approvals.rules name roles that approvals.roles does not define: {unknown}")
        return self


class Pilot(_Strict):
    """The pilot cohort (docs/controls.md): in send and draft mode only these customers' touches go
    live; everyone else's are rendered and kept as in a dry run. Off: everyone is live."""

    enabled: bool = False
    customers: tuple[str, ...] = ()     # customer ids
    segments: tuple[Literal["strategic", "standard", "transactional"], ...] = ()
    percent: float = Field(default=0, ge=0, le=100)  # by a stable hash of the customer id

    def includes(self, customer_id: str, segment: str | None = None) -> bool:
        import hashlib

        if not self.enabled:
            return True
        cid = str(customer_id).strip()
        if cid in self.customers or (segment is not None and segment in self.segments):
            return True
        bucket = int(hashlib.sha256(cid.encode("utf-8")).hexdigest()[:8], 16) % 10_000  # 0.01 % steps
        return bucket < round(self.percent * 100)


class Company(_Strict):
    """Who the customer hears from: the name in From, the signature block under the team's name,
    and how to pay (per currency; `default` for the others). Lines the customer reads in any
    language: addresses, numbers, IBANs, no words of one language."""

    name: str | None = None                  # None: From and the sign-off as before (no company block)
    signature: tuple[str, ...] = ()          # address, phone, web: one line each
    remittance: dict[str, str] = Field(default_factory=dict)  # currency (or "default") -> bank/IBAN or lockbox text

    @field_validator("name", "signature", "remittance")
    @classmethod
    def _one_line(cls, v):
        values = [v] if isinstance(v, str) else list(v.values()) if isinstance(v, dict) else list(v or ())
        if any(isinstance(x, str) and ("\r" in x or "\n" in x) for x in values):
            raise ValueError("company: one line per value (no line breaks)")
        return v

    def remittance_for(self, currency: str) -> str | None:
        return self.remittance.get(currency) or self.remittance.get("default")

    def as_context(self) -> dict | None:
        """What the templates print (stored with each outbox row, so a later render is the same)."""
        if not self.name:
            return None
        return {"name": self.name, "signature": list(self.signature), "remittance": dict(self.remittance)}


class Policy(_Strict):
    version: str
    company_country: str = "US"
    reporting_currency: str = "USD"  # the currency of ARR in the customer file
    timezone: str = "America/New_York"
    grace_business_days: int = Field(default=2, ge=0)
    renewal_window_days: int = Field(default=90, ge=0)
    lanes: LaneBounds = LaneBounds()
    reconciliation: Reconciliation = Reconciliation()
    data_quality: DataQuality = DataQuality()
    scoring: Scoring = Scoring()
    hold_order: tuple[str, ...] = HOLD_REASONS
    # Below this open balance (major units, per currency) nobody is chased.
    minimum_amount: dict[str, str] = Field(default_factory=dict)
    delivery: Delivery = Delivery()
    company: Company = Company()
    statements: Statements = Statements()
    escalations: Escalations = Escalations()
    payment_plans: PaymentPlans = PaymentPlans()
    auto_charge_retries: AutoChargeRetries = AutoChargeRetries()
    first_time_late: FirstTimeLate = FirstTimeLate()
    disputes: Disputes = Disputes()
    cash_application: CashApplication = CashApplication()
    kpis: Kpis = Kpis()
    llm: Llm = Llm(enabled=False)
    connectors: Connectors = Connectors()
    approvals: Approvals = Approvals()
    pilot: Pilot = Pilot()
    steps: tuple[Step, ...]

    @field_validator("minimum_amount")
    @classmethod
    def _minimums(cls, v: dict[str, str]) -> dict[str, str]:
        from arflow.money import to_minor

        for cur, amount in v.items():
            try:
                to_minor(str(amount), cur)
            except ValueError:
                raise ValueError(f"minimum_amount {cur}: {amount!r} is not an amount in that currency") from None
        return {cur: str(amount) for cur, amount in v.items()}

    def minimum_minor(self) -> dict[str, int]:
        from arflow.money import to_minor

        return {cur: to_minor(amount, cur) for cur, amount in self.minimum_amount.items()}

    @field_validator("company_country")
    @classmethod
    def _country(cls, v: str) -> str:
        if not businessdays.known_country(v):
            raise ValueError(f"company_country {v!r} is not a country the holidays package knows")
        return v.upper()

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        from arflow.money import is_currency

        if not is_currency(v):
            raise ValueError(f"reporting_currency {v!r} is not an ISO 4217 code")
        return v

    @field_validator("hold_order")
    @classmethod
    def _holds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(v) - set(HOLD_REASONS)
        if unknown or len(set(v)) != len(v):
            raise ValueError(f"hold_order lists each of {list(HOLD_REASONS)} at most once (unknown: {sorted(unknown)})")
        # Reasons the file does not list come last, in the default order: a newer arflow can add
        # a stop condition without breaking an older policy file.
        return tuple(v) + tuple(r for r in HOLD_REASONS if r not in v)

    @model_validator(mode="after")
    def _steps_fit_lanes(self) -> "Policy":
        names = [s.name for s in self.steps]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"step names must be unique: {sorted(dupes)}")
        for s in self.steps:
            lane = self.lane_of_day(s.sort_day)
            if s.day is not None and lane != s.lane:
                raise ValueError(f"step {s.name!r}: day {s.day} falls in lane {lane!r}, not {s.lane!r}")
            if s.business_days_before_due is not None and s.lane != "current":
                raise ValueError(f"step {s.name!r}: a pre-due step belongs to the current lane")
        return self

    def lane_of_day(self, days_past_due: int) -> str:
        b = self.lanes
        if days_past_due < b.early_from:
            return "current"
        if days_past_due < b.late_from:
            return "early"
        if days_past_due < b.critical_from:
            return "late"
        return "critical"

    def language_for(self, country: str | None) -> str:
        return self.delivery.languages.get(str(country or "").upper(), self.delivery.default_language)

    def previous_email_step(self, step: Step, segment: str) -> Step | None:
        """The customer e-mail step before `step` in the cadence of `segment` (None for the first)."""
        earlier = [s for s in self.steps if s.channel == "email" and segment in s.segments
                   and s.sort_day < step.sort_day]
        return max(earlier, key=lambda s: s.sort_day) if earlier else None

    def steps_for(self, lane: str) -> list[Step]:
        return sorted((s for s in self.steps if s.lane == lane), key=lambda s: s.sort_day)


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PolicyError(f"policy file not found: {path}") from None
    except yaml.YAMLError as exc:  # one line: the parser's problem and where (its own text spans four)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"policy file {path} is not valid YAML: {problem}{where}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file {path} must hold a mapping at the top level")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PolicyError(f"policy file {path}: {where}: {first['msg']} ({exc.error_count()} error(s))") from None
