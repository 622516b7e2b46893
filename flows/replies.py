"""reply_triage(as_of): read the customers' replies (IMAP, a mailbox file, or a CSV/JSON drop),
classify each (Claude where configured, keyword rules otherwise), and record its effect: a pause,
a promise, a dispute, a task for a person. Run it before the daily run, so today's reminders
already respect what customers wrote. Reading the same replies twice records them once."""

from __future__ import annotations

import datetime as dt
import uuid

from prefect import flow, task
from arflow.safety import redacted_errors
from flows.publish import create_table_artifact
from prefect.cache_policies import NO_CACHE

from arflow.config import Settings, today_in
from arflow.policy import load_policy
from connectors.ledger.store import Ledger
from flows.hooks import notify_failure
from flows.params import Source
from flows.prefect_tasks import RETRY
from flows.naming import day_run_name


@task(name="read_replies", cache_policy=NO_CACHE, **RETRY)
def read_replies(spec: str):
    from connectors.inbox import read_replies as read

    return read(spec)


@task(name="triage_replies", cache_policy=NO_CACHE, **RETRY)
def triage_replies(replies, source: str, ledger: Ledger, as_of: dt.date, policy, settings: Settings, llm):
    from connectors.registry import open_source
    from tasks.triage import triage

    src = open_source(source, data_dir=settings.data_dir, as_of=as_of)
    known = set(ledger.replies()["message_id"]) if len(replies) else set()
    invoices, customers = src.invoices(), src.customers()
    since = len(llm.calls) if llm is not None else 0
    items, counts = triage(replies, invoices, customers, known, as_of=as_of, country=policy.company_country,
                           finance=policy.delivery.finance_team, llm=llm, reason_codes=policy.disputes.reason_codes)
    if llm is not None:
        ledger.record_llm(llm.calls[since:], [])
    counts["recorded"] = ledger.record_replies(items)
    return items, counts


@flow(name="reply_triage", flow_run_name=day_run_name("reply-triage", with_mode=False), on_failure=[notify_failure],
      on_crashed=[notify_failure])
@redacted_errors
def reply_triage(replies_from: str, as_of: dt.date | None = None, source: Source = "demo") -> dict:
    """Triage the replies in `replies_from` (a .mbox, .csv or .json file, or `imap`).

    Args:
        replies_from: `imap` (the mailbox in ARFLOW_IMAP_HOST, _USER, _PASSWORD), or the path of a
            .mbox, .csv or .json file of replies on the worker.
        as_of: the day the replies' effects (pauses, promises, disputes) are recorded on (default:
            today in the company's timezone).
        source: the billing source the replies' invoices and customers are looked up in: demo,
            csv:FOLDER, quickbooks, xero, stripe or chargebee.
    """
    from connectors.llm import open_llm

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    as_of = as_of or today_in(settings.timezone or policy.timezone)
    ledger = Ledger(settings.db_url)
    llm = open_llm(policy, run_id=f"triage-{uuid.uuid4()}", as_of=as_of)
    replies = read_replies(replies_from)
    items, counts = triage_replies(replies, source, ledger, as_of, policy, settings, llm)
    if llm is not None:
        counts.update(llm.totals())
    counts["replies"] = [{k: it["reply"][k] for k in ("message_id", "customer_id", "invoice_id", "category",
                                                      "classifier", "flagged", "effect")} for it in items]
    if items:
        create_table_artifact(key="reply-triage", table=counts["replies"],
                              description=f"Replies triaged on {as_of}: class and effect")
    return counts
