"""Thin Prefect tasks over the pure hops in tasks/hops.py: one task per hop over a whole DataFrame.

No caching: inputs are DataFrames and a ledger handle, and a re-run must read the ledger afresh.
Retries only where I/O can fail for a passing reason (network, a locked database), never on a
source that is simply unreadable.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from arflow.policy import Policy
from connectors.ledger.store import Ledger
from connectors.registry import open_source
from connectors.sources import BILLING_SYSTEMS
from connectors.systems import SourceSpec
from tasks import hops
from tasks.touches import outbox_rows


def transient_failure(exc: BaseException) -> bool:
    """Whether a hop's failure may pass, so Prefect runs the hop again: a connected system that was
    unreachable, timing out, throttling or failing with 5xx (the connector says so), a database that
    was locked or unreachable. A refusal, a bad file or a bug is not retried."""
    from connectors.http import ConnectorError
    from connectors.ledger.store import is_transient_db_error

    if isinstance(exc, ConnectorError):
        return exc.transient
    return is_transient_db_error(exc) or isinstance(exc, (ConnectionError, TimeoutError))


def _transient(task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the hop's own failure, classified
        return transient_failure(exc)
    return False


# Every hop that reads or writes outside the process retries what may pass (2 s, 4 s, 8 s with jitter).
RETRY = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5,
             retry_condition_fn=_transient)


@task(name="fetch_inputs", cache_policy=NO_CACHE, **RETRY)
def fetch_inputs(source, ledger: Ledger, as_of: dt.date, data_dir, with_settled: bool = False) -> hops.Inputs:
    """`source`: a source spec (demo, csv:FOLDER) or an object with the source interface (the simulator's world).
    `with_settled` (the payment checkpoint): also the invoices a connected billing system settled itself."""
    src = open_source(source, data_dir=data_dir, as_of=as_of)
    if hasattr(src, "prepare_ledger"):
        src.prepare_ledger(ledger)
    notes = []
    report = src.aging_report()
    if report is None:
        notes.append("No aging report from the books: reconciliation skipped, our aging is unchecked today.")
    inputs = hops.Inputs(source=src.name, invoices=src.invoices(), customers=src.customers(),
                         payments=src.payments(), aging_report=report,
                         reflected_payment_ids=src.reflected_payment_ids(), stops=ledger.stop_records(as_of),
                         history=ledger.payment_history(as_of), applied=ledger.applied_payments(as_of), notes=notes,
                         as_of=as_of)
    if hasattr(src, "credit_notes"):
        inputs.credit_notes = src.credit_notes()
    if hasattr(src, "payment_schedule"):
        inputs.payment_schedule = src.payment_schedule()
    billing = getattr(src, "billing", src)  # a CombinedSource's billing system
    if hasattr(billing, "invoice_pdf"):
        inputs.invoice_pdf = billing.invoice_pdf
    if with_settled and hasattr(src, "settled_invoices"):
        inputs.settled = src.settled_invoices()
    if hasattr(src, "notes"):  # a connected system: its sync, and what the books hold that we do not act on
        notes.extend(src.notes())
    if isinstance(source, str) and source in BILLING_SYSTEMS:
        notes.append(f"No CRM: customer context is {src.name}'s customers alone (segment standard, no ARR, "
                     "health or owners); add --crm salesforce for them.")
    return inputs


def _logger():
    """The run's logger inside a flow or task run; the module's outside one (the simulator calls the
    tasks' functions directly)."""
    import logging

    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("arflow")


@task(name="check_invoice_volume", cache_policy=NO_CACHE)
def check_invoice_volume(inputs: hops.Inputs, ledger: Ledger, as_of: dt.date, policy: Policy, source) -> int:
    """Before anything is planned: no open invoice at all is a note on the run; a drop of more than
    the policy's share since the last completed daily run fails it (a truncated export)."""
    from tasks.quality import DataQualityError, open_invoice_volume

    status = inputs.invoices["status"].astype(str).str.strip().str.lower() if "status" in inputs.invoices else None
    today = int((~status.isin(["paid", "void"])).sum()) if status is not None else len(inputs.invoices)
    previous = ledger.last_open_invoices("daily_ar", as_of, str(source)) if isinstance(source, str) else None
    note, failure = open_invoice_volume(today, previous, policy.data_quality.max_open_invoice_drop)
    if note:
        inputs.notes.append(note)
        _logger().warning(note)
    if failure:
        raise DataQualityError(failure)
    return today


@task(name="extract_aging", cache_policy=NO_CACHE)
def extract_aging(inputs: hops.Inputs, as_of: dt.date, policy: Policy):
    return hops.extract_aging(inputs, as_of, policy)


@task(name="reconcile_aging", cache_policy=NO_CACHE)
def reconcile_aging(aged, inputs: hops.Inputs, policy: Policy):
    return hops.reconcile_aging(aged, inputs, policy)


@task(name="enrich_context", cache_policy=NO_CACHE)
def enrich_context(aged, customers, inputs: hops.Inputs, as_of: dt.date, policy: Policy):
    return hops.enrich_context(aged, customers, inputs, as_of, policy)


@task(name="score_invoices", cache_policy=NO_CACHE, **RETRY)
def score_invoices(enriched, policy: Policy, ledger: Ledger | None = None, llm=None, as_of: dt.date | None = None,
                   mode: str = "dry-run", run_id: str | None = None):
    """Rules for every invoice; with a model (llm), the model where it may, its calls and scores
    written to the ledger (``.llm`` on the result: the model's counts, or None)."""
    if llm is None:
        return hops.score(enriched, policy)
    from tasks.ai_score import customer_context
    from tasks.touches import namespace

    context = customer_context(ledger.touch_history(namespace(mode)), ledger.replies(), as_of)
    since = len(llm.calls)
    result = hops.score(enriched, policy, llm=llm, as_of=as_of, cache=ledger.llm_score_cache(), context=context,
                        run_id=run_id)
    ledger.record_llm(llm.calls[since:], result.llm_cache)
    return result


@task(name="plan_actions", cache_policy=NO_CACHE, **RETRY)
def plan_actions(scored, as_of: dt.date, policy: Policy, mismatched: set[str], ledger: Ledger, mode: str,
                 cohort: set[str] | None = None):
    """`cohort` (tasks/pilot.py): the customers live today; the others are planned from their dry-run touches."""
    from tasks import pilot
    from tasks.touches import namespace

    touches = ledger.touch_history(namespace(mode))
    if cohort is not None:
        touches = pilot.history(touches, ledger.touch_history("dry-run"), cohort)
    return hops.plan_actions(scored, as_of, policy, mismatched=mismatched,
                             touches=touches, installments=ledger.plan_schedule(as_of))


@task(name="attach_statements", cache_policy=NO_CACHE, **RETRY)
def attach_statements(actions, aged, customers, inputs: hops.Inputs, ledger: Ledger, as_of: dt.date, policy: Policy,
                      mode: str, run_dir):
    """The statements of account that go with today's reminders (policy.statements: the customer's
    first reminder e-mail of the month, on or after its day of the month), written into the run's
    folder; each e-mail touch of such a customer names its file (column `statement`)."""
    from tasks import credits, statement as stm
    from tasks.touches import namespace

    rule = policy.statements
    if not rule.with_reminder or actions.empty or as_of.day < rule.day_of_month or run_dir is None:
        return actions
    since = as_of.replace(day=rule.day_of_month)
    month = ledger.emails_between(since, as_of, namespace(mode))
    who = stm.statement_customers(actions, as_of, policy, stm.carried(month))
    files = stm.write_statements(who, as_of=as_of, aged=aged, raw_invoices=inputs.invoices, customers=customers,
                                 payments=ledger.payments_received(),
                                 credit_notes=credits.parse(inputs.credit_notes)[0], policy=policy,
                                 folder=Path(run_dir) / "statements")
    is_mail = actions["channel"] == "email"
    return actions.assign(statement=actions["customer_id"].astype(str).map(files).where(is_mail))


@task(name="attach_invoice_pdfs", cache_policy=NO_CACHE, **RETRY)
def attach_invoice_pdfs(actions, invoices, inputs: hops.Inputs, policy: Policy, run_dir):
    """Each invoice today's e-mails ask for, with the billing system's PDF of it (QuickBooks;
    policy connectors.quickbooks.attach_invoice_pdf), read now and kept in the run's folder, so the
    approver sees the file that will leave (column `invoice_pdf_file`; tasks.documents)."""
    from tasks import documents

    if inputs.invoice_pdf is None or run_dir is None or not policy.connectors.quickbooks.attach_invoice_pdf:
        return actions
    out, notes = documents.attach_invoice_pdfs(actions, invoices, inputs.invoice_pdf, Path(run_dir) / "invoices",
                                               system=SourceSpec.parse(inputs.source).billing)
    inputs.notes.extend(notes)
    return out


@task(name="queue_touches", cache_policy=NO_CACHE, **RETRY)
def queue_touches(actions, invoices, ledger: Ledger, mode: str, run_id: str, as_of: dt.date,
                  run_dir=None, policy: Policy | None = None, llm=None, mail_from: str | None = None,
                  rows=None) -> dict:
    """Render today's touches (one message per customer), check them, and write them to the
    outbox; each message that waits for a person opens a decision in the same transaction.
    `rows`: the touches rendered and checked already (a partitioned run renders on Dask)."""
    import os

    from tasks.decisions import decision_rows
    from tasks.touches import namespace, write_eml

    personalize = None
    if rows is None and llm is not None and policy is not None and policy.llm.personalize:
        from tasks.personalize import Personalizer

        personalize = Personalizer.for_run(llm, ledger.touch_history(namespace(mode)), as_of)
        since = len(llm.calls)
    if rows is None:
        rows = outbox_rows(actions, invoices, mode=mode, run_id=run_id, as_of=as_of, policy=policy,
                           personalize=personalize)
    if personalize is not None:
        ledger.record_llm(llm.calls[since:], [])
    # A message for a person: one waiting for approval, or one the guardrails blocked (never unseen).
    waiting = rows[rows["status"].isin(["awaiting_decision", "blocked"])] if not rows.empty else rows
    mail_from = mail_from or os.environ.get("ARFLOW_MAIL_FROM", "accounts-receivable@localhost")
    reply_to = policy.delivery.reply_to if policy is not None else None
    decisions = decision_rows(rows, ledger.touch_history(namespace(mode), set(waiting["invoice_id"])), run_id, as_of,
                              mail_from, reply_to) if mode != "dry-run" and not waiting.empty else []
    new, opened = ledger.queue_touches(rows, decisions)
    if mode == "dry-run" and run_dir is not None:
        failures: list = []
        write_eml(rows, run_dir, sender=mail_from, reply_to=reply_to, failures=failures)
        for key, reason in failures:  # that message failed, in the ledger for a person; the run goes on
            ledger.mark_message(key, namespace(mode), "failed", reason=reason)
    messages = rows.drop_duplicates("message_key") if not rows.empty else rows
    blocked = int((messages["status"] == "blocked").sum()) if not rows.empty else 0
    drafted = opened if mode == "draft" else 0
    return {"touches": int(len(rows)), "new": int(new), "messages": int(len(messages)),
            "blocked_by_guardrail": blocked, "decisions_opened": int(opened), "drafted": int(drafted),
            "personalized": dict(personalize.counts) if personalize is not None else {}}


@task(name="deliver_touches", cache_policy=NO_CACHE, **RETRY)  # the outbox's claims make a retry send nothing twice
def deliver_touches(delivery, lane: str) -> dict:
    """Verify at the source and send what is queued for this lane (nothing in dry-run)."""
    from tasks.delivery import deliver_lane

    return deliver_lane(delivery, lane)


@task(name="read_payments", cache_policy=NO_CACHE, **RETRY)
def read_payments(inputs: hops.Inputs, bank_file: str | None):
    """The billing system's payments and, if given, a bank statement, in one frame."""
    import pandas as pd

    from connectors.bank import read_bank_file
    from tasks.checkpoint import billing_payments

    frames, quarantine = [], []
    billing, bq = billing_payments(inputs.payments)
    frames.append(billing)
    quarantine.append(bq.assign(entity="payment"))
    if bank_file:
        bank, kq = read_bank_file(bank_file)
        frames.append(bank)
        quarantine.append(kq.assign(entity="bank_line"))
    payments = pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)
    from arflow.money import exact_total

    exact_total(payments["amount_minor"], what="payments read")  # the checkpoint's totals are then exact
    return payments, pd.concat(quarantine, ignore_index=True)


@task(name="apply_cash", cache_policy=NO_CACHE, **RETRY)
def apply_cash(payments, ledger: Ledger, invoices, customers, as_of: dt.date, policy: Policy | None = None,
               all_invoices=None):
    """all_invoices: the source's invoices of every status, for returned items that name an invoice."""
    from tasks.checkpoint import run_checkpoint

    return run_checkpoint(payments, ledger.payments_received(), invoices, customers, as_of, policy,
                          applications=ledger.payment_applications(), all_invoices=all_invoices)


@task(name="record_checkpoint", cache_policy=NO_CACHE, **RETRY)
def record_checkpoint(result, ledger: Ledger, invoices, customers, mode: str, run_id: str, as_of: dt.date,
                      settled=None, policy: Policy | None = None) -> dict:
    """What the checkpoint applied (and `settled`: what the billing system settled itself, whose
    history and closures are recorded beside it)."""
    from tasks.checkpoint import settled_rows
    from tasks.touches import receipt_rows

    receipts = receipt_rows(result.closed, invoices, customers, mode=mode, run_id=run_id, as_of=as_of,
                            policy=policy)  # in the customer's language, with the company's signature
    written = ledger.record_checkpoint(result, receipts, as_of, run_id)
    written["settled_at_source"] = ledger.record_settled(settled_rows(settled), as_of)["settled"]
    return written


@task(name="follow_up_owners", cache_policy=NO_CACHE, **RETRY)
def follow_up_owners(delivery) -> dict:
    """Quarter-end digests per owner, and escalations nobody acknowledged in time to the finance lead."""
    from tasks.delivery import follow_up_owners as run

    return run(delivery)
