"""The ledger's tables: what the billing system does not hold (DESIGN.md, State: the ledger).

Money columns are integer minor units with a currency column beside them. Schema changes go
through Alembic migrations in ``migrations/``; these models are their source.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (BigInteger, Boolean, Date, DateTime, Index, Integer, MetaData, String, Text,
                        UniqueConstraint, func)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[int]:
    return mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


class Run(Base):
    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[str] = mapped_column(String(40))
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    source: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    policy_version: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str | None] = mapped_column(Text)  # the run's JSON summary


class InvoiceOutcome(Base):
    """Where each open invoice ended one run: exactly one row per source row."""

    __tablename__ = "invoice_outcomes"
    id: Mapped[int] = _id()
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    source_row: Mapped[int] = mapped_column(Integer)
    invoice_id: Mapped[str | None] = mapped_column(String(120))
    customer_id: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(20))  # action_today | no_action_due | held | quarantined
    reason: Mapped[str | None] = mapped_column(String(80))
    lane: Mapped[str | None] = mapped_column(String(10))
    bucket: Mapped[str | None] = mapped_column(String(10))
    days_past_due: Mapped[int | None] = mapped_column(Integer)
    balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    risk_score: Mapped[int | None] = mapped_column(Integer)
    tone: Mapped[str | None] = mapped_column(String(12))
    escalation: Mapped[str | None] = mapped_column(String(12))


class Quarantine(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = _id()
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    hop: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(20))  # invoice | customer | aging_report | payment
    record_id: Mapped[str | None] = mapped_column(String(120))
    source_row: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(80))
    detail: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)  # the row as read, JSON


class ReconciliationResult(Base):
    __tablename__ = "reconciliation_results"
    id: Mapped[int] = _id()
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    customer_id: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str | None] = mapped_column(String(3))
    bucket: Mapped[str] = mapped_column(String(10))
    ours_minor: Mapped[int | None] = mapped_column(BigInteger)
    books_minor: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))  # matched | mismatched


class OutboxStatus(StrEnum):
    """Where a touch is. Members are the strings stored (and compare equal to them)."""

    PLANNED = "planned"                      # dry run: rendered and recorded, never sent
    AWAITING_DECISION = "awaiting_decision"  # waits for a person's approval
    QUEUED = "queued"                        # to go on the next delivery
    SENDING = "sending"                      # taken by one run (Ledger.claim), the result not yet recorded
    SENT = "sent"
    DELIVERY_UNKNOWN = "delivery_unknown"    # the run stopped while sending: a person decides
    FAILED = "failed"
    BLOCKED = "blocked"                      # the guardrails refused the text: a person decides
    SKIPPED = "skipped"                      # changed at the source before it went
    REJECTED = "rejected"                    # a person said no
    CLOSED = "closed"                        # the invoice was paid before it went


S = OutboxStatus
# Where each state may go (a run writes touches as planned, awaiting_decision, queued, blocked or
# failed). A state with no way out is final: a sent, failed, skipped, rejected or closed touch is
# never queued again (nothing is sent twice).
OUTBOX_TRANSITIONS: dict[OutboxStatus, frozenset[OutboxStatus]] = {
    S.PLANNED: frozenset({S.CLOSED, S.FAILED}),                       # paid; its .eml could not be written
    S.AWAITING_DECISION: frozenset({S.QUEUED, S.REJECTED, S.CLOSED, S.FAILED}),
    S.QUEUED: frozenset({S.SENDING, S.SKIPPED, S.CLOSED, S.FAILED}),
    S.SENDING: frozenset({S.SENT, S.FAILED, S.QUEUED, S.SKIPPED, S.BLOCKED, S.AWAITING_DECISION,
                          S.DELIVERY_UNKNOWN}),                        # retry; changed since approval: back to a person
    S.BLOCKED: frozenset({S.QUEUED, S.REJECTED}),
    S.DELIVERY_UNKNOWN: frozenset({S.QUEUED, S.SENT}),                # send again, or treat as sent
    S.SENT: frozenset(), S.FAILED: frozenset(), S.SKIPPED: frozenset(), S.REJECTED: frozenset(),
    S.CLOSED: frozenset(),
}


def outbox_sources(to: OutboxStatus | str) -> tuple[str, ...]:
    """The states a touch may move to `to` from (sorted), per OUTBOX_TRANSITIONS."""
    target = OutboxStatus(to)
    return tuple(sorted(str(s) for s, nxt in OUTBOX_TRANSITIONS.items() if target in nxt))


class Outbox(Base):
    """Every touch planned or sent. One row per (idempotency key, mode): a re-run cannot add a
    second row, and a dry run never blocks a later real send."""

    __tablename__ = "outbox"
    # ix_outbox_status_channel: the rows queued to go, and the failed charges, are a few among
    # every touch ever made; without it each delivery and each run's stop records scan the outbox.
    __table_args__ = (UniqueConstraint("idempotency_key", "mode", name="uq_outbox_key_mode"),
                      Index("ix_outbox_status_channel", "status", "channel"))
    id: Mapped[int] = _id()
    idempotency_key: Mapped[str] = mapped_column(String(300))
    mode: Mapped[str] = mapped_column(String(10))  # dry-run | draft | send
    run_id: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    customer_id: Mapped[str] = mapped_column(String(120))
    lane: Mapped[str] = mapped_column(String(10))
    step: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(12))
    tone: Mapped[str | None] = mapped_column(String(12))
    recipients: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    # dry-run: planned | blocked. live (draft and send runs): awaiting_decision | queued | sending |
    # sent | failed | skipped | rejected | blocked | delivery_unknown | closed
    status: Mapped[str] = mapped_column(String(20))
    closed_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # One customer, one message: the touches of a customer due the same day share a message key
    # and go out as one message (channel email); other channels carry one touch per message.
    message_key: Mapped[str | None] = mapped_column(String(300), index=True)
    context: Mapped[str | None] = mapped_column(Text)  # JSON: what the text was rendered from
    language: Mapped[str | None] = mapped_column(String(8))
    sender: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_on: Mapped[dt.date | None] = mapped_column(Date)  # the as_of of the run that delivered it
    sent_by_run: Mapped[str | None] = mapped_column(String(64))


class Decision(Base):
    """A step that needs a person: one row per message (or per delivery in doubt), with the whole
    context a clerk needs. Settled from the CLI (`arflow decide`) or a Prefect UI form; an approved
    decision is carried out by the next run."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("decision_key", name="uq_decisions_decision_key"),)
    id: Mapped[int] = _id()
    decision_key: Mapped[str] = mapped_column(String(300))   # the outbox message key it settles
    kind: Mapped[str] = mapped_column(String(40))            # the step, or delivery_unknown
    invoice_ids: Mapped[str] = mapped_column(Text)           # comma-separated
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | approved | rejected | carried_out
    choice: Mapped[str | None] = mapped_column(String(40))   # payment_plan | write_off, where the step offers both
    installments: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_on: Mapped[dt.date | None] = mapped_column(Date)
    edited_subject: Mapped[str | None] = mapped_column(Text)
    edited_body: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text)               # JSON: invoice, amount, history, CRM, touches, text
    carried_out_on: Mapped[dt.date | None] = mapped_column(Date)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))  # the Prefect review run, if one was started


class OwnerTask(Base):
    """A task for an account owner or finance (the CRM's task in production; here in the demo).
    Quarter-end escalations are batched into one digest per owner; an escalation nobody
    acknowledges in time goes to the finance lead."""

    __tablename__ = "owner_tasks"
    __table_args__ = (UniqueConstraint("task_key", name="uq_owner_tasks_task_key"),)
    id: Mapped[int] = _id()
    task_key: Mapped[str] = mapped_column(String(300))
    owner: Mapped[str] = mapped_column(String(200), index=True)
    cc: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(120))
    invoice_ids: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40))          # escalation | digest | ack_timeout | decision | alert
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    created_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | acknowledged | done
    acknowledged_on: Mapped[dt.date | None] = mapped_column(Date)
    escalated_on: Mapped[dt.date | None] = mapped_column(Date)


class WriteOff(Base):
    """An approved write-off, handed to third-party collections through an export file."""

    __tablename__ = "write_offs"
    __table_args__ = (UniqueConstraint("invoice_id", name="uq_write_offs_invoice_id"),)
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120))
    customer_id: Mapped[str] = mapped_column(String(120))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    approved_on: Mapped[dt.date] = mapped_column(Date)
    decision_id: Mapped[int | None] = mapped_column(Integer)
    export_file: Mapped[str | None] = mapped_column(Text)


class Installment(Base):
    __tablename__ = "installments"
    id: Mapped[int] = _id()
    plan_id: Mapped[int] = mapped_column(Integer, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[dt.date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class Dispute(Base):
    __tablename__ = "disputes"
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    customer_id: Mapped[str] = mapped_column(String(120))
    opened_on: Mapped[dt.date] = mapped_column(Date)
    resolved_on: Mapped[dt.date | None] = mapped_column(Date)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    # One of the policy's disputes.reason_codes (`unspecified`: a decision asks a person for one),
    # and the invoice lines disputed where the customer named them (free text, as they wrote it).
    reason_code: Mapped[str | None] = mapped_column(String(40))
    lines: Mapped[str | None] = mapped_column(Text)


class PromiseToPay(Base):
    __tablename__ = "promises"
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    customer_id: Mapped[str] = mapped_column(String(120))
    recorded_on: Mapped[dt.date] = mapped_column(Date)
    promised_date: Mapped[dt.date] = mapped_column(Date)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)


class PaymentPlan(Base):
    __tablename__ = "payment_plans"
    id: Mapped[int] = _id()
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(120))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | completed | missed
    balance_at_start_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    decision_id: Mapped[int | None] = mapped_column(Integer)


class OptOut(Base):
    __tablename__ = "opt_outs"
    id: Mapped[int] = _id()
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    recorded_on: Mapped[dt.date] = mapped_column(Date)
    withdrawn_on: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)


class Pause(Base):
    __tablename__ = "pauses"
    id: Mapped[int] = _id()
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(120))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    until: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str | None] = mapped_column(String(200))
    # `question`: a customer's question holds their reminders until a person answers it
    # (`arflow answered`, which ends the pause); None: a pause to a date.
    kind: Mapped[str | None] = mapped_column(String(20))


class PaymentHistory(Base):
    __tablename__ = "payment_history"
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    issue_date: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    paid_date: Mapped[dt.date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    days_to_pay: Mapped[int | None] = mapped_column(Integer)       # issue date to payment
    days_after_due: Mapped[int | None] = mapped_column(Integer)    # due date to payment (negative: early)
    payment_id: Mapped[str | None] = mapped_column(String(120))    # the payment that closed it (checkpoint)


class PaymentApplication(Base):
    """Cash the payment checkpoint applied to an invoice (the ledger's view, not the source's)."""

    __tablename__ = "payment_applications"
    id: Mapped[int] = _id()
    payment_id: Mapped[str] = mapped_column(String(120), index=True)
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    customer_id: Mapped[str] = mapped_column(String(120))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    applied_on: Mapped[dt.date] = mapped_column(Date)
    rule: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float | None] = mapped_column()
    # The invoice's balance in the source when this was applied: once the source's balance has
    # dropped by the applied amount, the source shows the payment and it is not subtracted again.
    source_balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    # The credits the source showed on the invoice then (its credit notes allocated to it): a later
    # drop in balance that credits explain is not the payment arriving (migration 0008).
    source_credit_minor: Mapped[int | None] = mapped_column(BigInteger)
    reversed_on: Mapped[dt.date | None] = mapped_column(Date)


class PaymentReceived(Base):
    """Every payment the checkpoint has seen, once (unique payment id). Unapplied ones are the
    exceptions queue, with their candidates."""

    __tablename__ = "payments_received"
    __table_args__ = (UniqueConstraint("payment_id", name="uq_payments_received_payment_id"),)
    id: Mapped[int] = _id()
    payment_id: Mapped[str] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(20))          # billing | bank
    source_file: Mapped[str | None] = mapped_column(String(80))  # bank file digest: a line seen in another file is a duplicate
    customer_id: Mapped[str | None] = mapped_column(String(120), index=True)
    payer_name: Mapped[str | None] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    received_date: Mapped[dt.date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(Text)
    recorded_on: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # applied | partial | overpaid | unapplied | reversal | reversed
    rule: Mapped[str | None] = mapped_column(String(40))
    confidence: Mapped[float | None] = mapped_column()
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    candidates: Mapped[str | None] = mapped_column(Text)  # JSON


class CustomerCredit(Base):
    """Cash beyond an invoice's balance (over-payment): a credit for a person to review."""

    __tablename__ = "customer_credits"
    id: Mapped[int] = _id()
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    payment_id: Mapped[str] = mapped_column(String(120))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="to_review")  # to_review | cancelled | refunded | applied


class AuditLog(Base):
    """Append-only: nothing in arflow updates or deletes these rows. Each row is chained to the one
    before by a hash written with it (connectors/ledger/audit.py, migration 0010): an edit or a
    deletion in the database shows in `arflow audit verify`."""

    __tablename__ = "audit_log"
    id: Mapped[int] = _id()
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80))
    entity: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str | None] = mapped_column(String(64))  # the row before's hash (GENESIS for the first)
    row_hash: Mapped[str | None] = mapped_column(String(64))   # sha256(prev_hash + canonical JSON of this row)


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class InvoiceRegister(Base):
    """Every invoice a run has seen at the source (open or already paid), once: what the KPIs
    need that the open-invoice outcomes do not hold (credit sales by issue date, original amount)."""

    __tablename__ = "invoice_register"
    __table_args__ = (UniqueConstraint("invoice_id", name="uq_invoice_register_invoice_id"),)
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120))
    customer_id: Mapped[str] = mapped_column(String(120), index=True)
    issue_date: Mapped[dt.date] = mapped_column(Date, index=True)
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    first_seen_on: Mapped[dt.date] = mapped_column(Date)


class KpiSnapshot(Base):
    """The KPIs of one daily run (one row per as_of and currency; a re-run of the day replaces
    it), so trends and week-over-week changes need no recomputation."""

    __tablename__ = "kpi_snapshots"
    __table_args__ = (UniqueConstraint("as_of", "currency", name="uq_kpi_snapshots_as_of"),)
    id: Mapped[int] = _id()
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    run_id: Mapped[str] = mapped_column(String(64))
    ar_minor: Mapped[int] = mapped_column(BigInteger)
    overdue_minor: Mapped[int] = mapped_column(BigInteger)
    dso_standard: Mapped[float | None] = mapped_column()
    dso_countback: Mapped[float | None] = mapped_column()
    best_possible_dso: Mapped[float | None] = mapped_column()
    kpis: Mapped[str] = mapped_column(Text)  # the whole KPI document of this currency, JSON


class LlmCall(Base):
    """One request to a model: what it cost. Cost in micro-dollars (an integer), from the policy's
    price table; tokens as the API reported them."""

    __tablename__ = "llm_calls"
    id: Mapped[int] = _id()
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    as_of: Mapped[dt.date | None] = mapped_column(Date, index=True)
    job: Mapped[str] = mapped_column(String(20))            # score | personalize | triage
    model: Mapped[str] = mapped_column(String(80))
    prompt_version: Mapped[str] = mapped_column(String(40))
    items: Mapped[int] = mapped_column(Integer, default=0)   # invoices, messages or replies in the request
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    outcome: Mapped[str] = mapped_column(String(20))         # ok | invalid | refused | unavailable


class LlmScore(Base):
    """A model's score of one invoice, kept as a cache: the same inputs (hash) and prompt version
    are not sent again."""

    __tablename__ = "llm_scores"
    id: Mapped[int] = _id()
    invoice_id: Mapped[str] = mapped_column(String(120), index=True)
    input_hash: Mapped[str] = mapped_column(String(64), index=True)
    prompt_version: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(80))
    risk_score: Mapped[int] = mapped_column(Integer)
    tone: Mapped[str] = mapped_column(String(20))
    escalation: Mapped[str] = mapped_column(String(20))
    escalation_reason: Mapped[str] = mapped_column(Text)
    rationale: Mapped[str] = mapped_column(Text)
    as_of: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[str | None] = mapped_column(String(64))


class Reply(Base):
    """An inbound reply, once (by message id), with its class and what arflow did about it."""

    __tablename__ = "replies"
    __table_args__ = (UniqueConstraint("message_id", name="uq_replies_message_id"),)
    id: Mapped[int] = _id()
    message_id: Mapped[str] = mapped_column(String(300))
    received_on: Mapped[dt.date] = mapped_column(Date, index=True)
    from_address: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(120), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str | None] = mapped_column(Text)         # JSON: date, amount, contact, return date, ...
    classifier: Mapped[str] = mapped_column(String(20))      # model | rules | rules_fallback
    flagged: Mapped[str | None] = mapped_column(String(200))  # e.g. instructions_in_reply
    effect: Mapped[str] = mapped_column(Text)
    as_of: Mapped[dt.date] = mapped_column(Date)


class Backtest(Base):
    """A scorer checked against a clerk's labels: what send mode with a model requires first."""

    __tablename__ = "backtests"
    id: Mapped[int] = _id()
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    scorer: Mapped[str] = mapped_column(String(20))          # model | rules
    model: Mapped[str | None] = mapped_column(String(80))
    prompt_version: Mapped[str] = mapped_column(String(40), index=True)
    labels: Mapped[str] = mapped_column(Text)                # the file, and its sha256
    n: Mapped[int] = mapped_column(Integer)
    tone_agreement: Mapped[float] = mapped_column()
    escalation_agreement: Mapped[float] = mapped_column()
    threshold: Mapped[float] = mapped_column()
    passed: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[str] = mapped_column(Text)                # JSON: confusion tables, fallbacks


class SourceRecord(Base):
    """A connected system's objects as last synced (the QuickBooks mirror that Change Data Capture
    keeps current): one row per system, entity and id, the object's JSON as the API returned it."""

    __tablename__ = "source_records"
    system: Mapped[str] = mapped_column(String(80), primary_key=True)   # quickbooks:<realm id>
    entity: Mapped[str] = mapped_column(String(40), primary_key=True)   # Invoice, Customer, CreditMemo
    record_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[str | None] = mapped_column(String(40))           # the object's MetaData.LastUpdatedTime
