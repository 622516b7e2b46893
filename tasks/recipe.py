"""The two flows' steps, written once (DESIGN.md, Data flow): what a daily run does from the source
to today's touches, what each lane does with its touches, and what the payment checkpoint does with
the day's payments.

The deployments' flows (flows/daily_ar.py, flows/lanes.py, flows/payment_checkpoint.py) call these
with `steps` = the Prefect tasks of flows/prefect_tasks.py, so each hop is a task run with its
retries; the simulator (flows/simulate.py) calls them with `plain(steps)`, the same functions
without Prefect, so that a simulated year does not cost a year of task runs. Neither writes the
order of the hops again. Nothing here imports Prefect.

`RunContext` is what one run knows from its start: settings, policy, ledger, channels, source,
day, run id, mode and the folder its files go to; a flow (or the simulator's day) builds it once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from tasks import pilot
from tasks.delivery import Channels, Counts
from tasks.hops import HopResult, Inputs

if TYPE_CHECKING:
    from arflow.config import Settings
    from arflow.policy import Policy

STEPS = ("fetch_inputs", "check_invoice_volume", "extract_aging", "reconcile_aging", "enrich_context",
         "score_invoices", "plan_actions", "attach_statements", "attach_invoice_pdfs", "queue_touches",
         "deliver_touches", "follow_up_owners", "read_payments", "apply_cash", "record_checkpoint")


def plain(steps) -> SimpleNamespace:
    """The steps' functions without their Prefect task wrappers (a task's `.fn`)."""
    return SimpleNamespace(**{name: getattr(getattr(steps, name), "fn", getattr(steps, name)) for name in STEPS})


@dataclass
class RunContext:
    settings: Settings
    policy: Policy
    ledger: Any                 # connectors.ledger.store.Ledger
    source: Any                 # a source spec (demo, csv:DIR, quickbooks+salesforce) or a source object
    as_of: dt.date
    run_id: str
    mode: str
    channels: Channels = field(default_factory=Channels)
    run_dir: Path | None = None  # the run's files: .eml in dry-run, statements, invoice PDFs

    @property
    def timezone(self) -> str:
        return self.settings.timezone or self.policy.timezone

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


@dataclass
class PlannedDay:
    """A daily run up to its lanes: every open invoice aged, reconciled, enriched, scored and planned."""
    inputs: Inputs
    extracted: HopResult
    customers: pd.DataFrame
    reconciliation: Any
    reconciled: HopResult
    enriched: HopResult
    scored: HopResult
    planned: HopResult
    actions: pd.DataFrame
    cohort: set[str] | None     # the pilot's customers (tasks/pilot.py); None: everyone

    @property
    def hops(self) -> list[HopResult]:
        return [self.extracted, self.reconciled, self.enriched, self.scored, self.planned]

    def quarantined(self) -> int:
        return sum(len(h.quarantine) for h in self.hops)


def plan_day(steps, ctx: RunContext, llm=None, *, partitioned=None,
             before_scoring: Callable[[], None] | None = None) -> PlannedDay:
    """Extract, reconcile, enrich, score and plan; then the statements and invoice PDFs today's
    e-mails carry. `partitioned` (flows/partitioned.py): enrich, score and plan by customer
    partition on a Dask cluster instead of here."""
    policy, ledger, as_of = ctx.policy, ctx.ledger, ctx.as_of
    inputs = steps.fetch_inputs(ctx.source, ledger, as_of, ctx.data_dir)
    steps.check_invoice_volume(inputs, ledger, as_of, policy, ctx.source)  # a truncated export is loud
    extracted, customers = steps.extract_aging(inputs, as_of, policy)
    reconciliation, reconciled = steps.reconcile_aging(extracted.frame, inputs, policy)
    mismatched = set(reconciliation.mismatched_customers)
    if partitioned is not None:
        enriched, scored, planned, actions, cohort = partitioned.plan(
            extracted.frame, customers, inputs, as_of, policy, mismatched, ledger, ctx.mode)
    else:
        enriched = steps.enrich_context(extracted.frame, customers, inputs, as_of, policy)
        if before_scoring is not None:
            before_scoring()
        scored = steps.score_invoices(enriched.frame, policy, ledger, llm, as_of, ctx.mode, ctx.run_id)
        cohort = pilot.cohort(scored.frame, policy, ctx.mode)  # None: everyone (or a dry run)
        planned, actions = steps.plan_actions(scored.frame, as_of, policy, mismatched, ledger, ctx.mode, cohort)
    if policy.statements.with_reminder:  # the month's first reminder carries the statement of account
        actions = steps.attach_statements(actions, extracted.frame, customers, inputs, ledger, as_of, policy,
                                          ctx.mode, ctx.run_dir)
    if inputs.invoice_pdf is not None:  # the billing system's PDF of each invoice an e-mail asks for
        actions = steps.attach_invoice_pdfs(actions, planned.frame, inputs, policy, ctx.run_dir)
    return PlannedDay(inputs, extracted, customers, reconciliation, reconciled, enriched, scored, planned, actions,
                      cohort)


@dataclass
class LaneResult:
    """One lane's day: the touches queued (and their messages), what waits for a person, and what
    its delivery did."""
    lane: str
    touches: int = 0
    new: int = 0
    messages: int = 0
    blocked_by_guardrail: int = 0
    decisions_opened: int = 0
    drafted: int = 0
    personalized: dict[str, int] = field(default_factory=dict)
    delivery: Counts = field(default_factory=Counts)

    def add_queued(self, done: dict) -> None:
        for k, v in done.items():
            if k == "personalized":
                self.personalized = {**self.personalized, **v}
            else:
                setattr(self, k, getattr(self, k) + v)


QUEUED = tuple(f.name for f in fields(LaneResult) if f.name not in ("lane", "personalized", "delivery"))


def lane(steps, name: str, actions: pd.DataFrame, invoices: pd.DataFrame, ledger, mode: str, run_id: str,
         as_of: dt.date, delivery=None, run_dir: Path | None = None) -> LaneResult:
    """Queue the touches this lane is due today under their idempotency keys (the pilot's others in
    dry run), then deliver what is queued for the lane: verified at the source right before, sent once."""
    mine = actions[actions["lane"] == name]
    out = LaneResult(name)
    cohort = getattr(delivery, "cohort", None)
    outside = mine[~mine["customer_id"].astype(str).isin(cohort)] if cohort is not None else mine.iloc[0:0]
    mine = mine.drop(outside.index)
    rendered = getattr(delivery, "rendered", None)  # a partitioned run's messages, rendered on Dask
    for part, how in ((mine, mode), (outside, "dry-run")):
        if part.empty:
            continue
        out.add_queued(steps.queue_touches(part, invoices, ledger, how, run_id, as_of, run_dir,
                                           delivery.policy if delivery else None, delivery.llm if delivery else None,
                                           delivery.channels.mail_from if delivery else None,
                                           rows=rendered[(name, how)] if rendered is not None else None))
    if delivery is not None:
        out.delivery = Counts(**steps.deliver_touches(delivery, name))
    return out


def lane_totals(lanes: list[LaneResult]) -> dict:
    """The lanes' counts added up, for the run's summary."""
    personalized: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for r in lanes:
        for k, v in r.personalized.items():
            personalized[k] = personalized.get(k, 0) + v
        for k, v in r.delivery.skipped_at_send.items():
            skipped[k] = skipped.get(k, 0) + v
    delivered = [r.delivery for r in lanes]
    out = {k: sum(getattr(r, k) for r in lanes) for k in QUEUED}
    out["decisions_opened"] += sum(d.decisions_opened for d in delivered)
    out.update(personalized=personalized, skipped_at_send=skipped)
    for f in fields(Counts):
        if f.name not in ("skipped_at_send", "decisions_opened"):
            out["send_retries" if f.name == "retry" else f.name] = sum(getattr(d, f.name) for d in delivered)
    return out


@dataclass
class CheckpointDay:
    """A payment checkpoint's work: the payments read (and the lines quarantined), what was applied,
    and what was written."""
    inputs: Inputs
    payments: pd.DataFrame
    quarantined: pd.DataFrame
    extracted: HopResult
    result: Any                 # tasks.checkpoint's result
    written: dict


def apply_payments(steps, ctx: RunContext, bank_file: str | None = None) -> CheckpointDay:
    """Read the day's payments (the billing system's and a bank file's), apply them to the open
    invoices, and record the applications, the receipts and what the books settled themselves."""
    inputs = steps.fetch_inputs(ctx.source, ctx.ledger, ctx.as_of, ctx.data_dir, with_settled=True)
    payments, quarantined = steps.read_payments(inputs, bank_file)
    extracted, _customers = steps.extract_aging(inputs, ctx.as_of, ctx.policy)
    result = steps.apply_cash(payments, ctx.ledger, extracted.frame, inputs.customers, ctx.as_of, ctx.policy,
                              all_invoices=inputs.invoices)
    written = steps.record_checkpoint(result, ctx.ledger, extracted.frame, inputs.customers, ctx.mode, ctx.run_id,
                                      ctx.as_of, settled=inputs.settled, policy=ctx.policy)
    return CheckpointDay(inputs, payments, quarantined, extracted, result, written)
