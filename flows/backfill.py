"""The `backfill` flow: past business days replayed in order through the payment checkpoint and the
daily run, in dry-run. Its own module: it calls `daily_ar`, which calls the reporting tasks."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import WithJsonSchema

from arflow.config import Settings
from arflow.policy import load_policy
from arflow.safety import redacted_errors
from connectors.ledger.store import Ledger
from flows.hooks import notify_failure
from flows.params import Source
from flows.naming import backfill_run_name
from flows.publish import create_markdown_artifact


# One choice in the form; a call from Python with another value gets the flow's own message.
BACKFILL_MODES = ("dry-run",)
BackfillMode = Annotated[str, WithJsonSchema({"type": "string", "enum": list(BACKFILL_MODES)})]


def backfill_days(start: dt.date, end: dt.date, company_country: str) -> list[dt.date]:
    """The company's business days from start to end, in order (what the daily schedule runs)."""
    from arflow.businessdays import company_business_day

    if end < start:
        raise ValueError(f"backfill: end {end} is before start {start}")
    days = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]
    return [d for d in days if company_business_day(d, company_country)]


@flow(name="backfill", flow_run_name=backfill_run_name, on_failure=[notify_failure], on_crashed=[notify_failure])
@redacted_errors
def backfill(start: dt.date, end: dt.date, source: Source = "demo", mode: BackfillMode = "dry-run",
             with_checkpoint: bool = True, resume: bool = True) -> dict:
    """Run the days from start to end one after another, as the schedule would have: the payment
    checkpoint, then the daily run, per business day. Idempotent (a day run twice queues nothing
    twice) and resumable: with `resume` a day that already has a completed daily run is skipped,
    so a backfill that stopped part-way goes on from the first day it did not finish.
    Backfill never sends: past days are replayed in dry-run; today's run sends.

    Args:
        start: the first day to replay.
        end: the last day to replay (on or after start).
        source: where invoices and customers come from: demo, csv:FOLDER, quickbooks, xero, stripe or chargebee
            (+salesforce or +hubspot for the CRM's context).
        mode: dry-run only: past days are replayed, never sent.
        with_checkpoint: run the payment checkpoint before each day's daily run, as the schedule does.
        resume: skip the days that already have a completed daily run (a stopped backfill goes on).
    """
    from flows.daily_ar import daily_ar
    from flows.payment_checkpoint import payment_checkpoint
    from flows.subflows import sharing_the_parents_heartbeat

    if mode not in BACKFILL_MODES:
        raise ValueError(f"backfill replays past days and never sends: mode must be one of {BACKFILL_MODES}, "
                         f"got {mode!r}")
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    ledger = Ledger(settings.db_url)
    logger = get_run_logger()
    done, skipped = [], []
    for day in backfill_days(start, end, policy.company_country):
        if resume and ledger.completed_daily_run(day, mode):
            skipped.append(day.isoformat())
            continue
        with sharing_the_parents_heartbeat():  # the days run as subflows, in this process
            if with_checkpoint:
                payment_checkpoint(as_of=day, source=source, mode=mode)
            daily_ar(as_of=day, source=source, mode=mode)
        done.append(day.isoformat())
        logger.info("backfill: %s done (%d so far)", day, len(done))
    summary = {"start": start.isoformat(), "end": end.isoformat(), "ran": done, "skipped_already_done": skipped}
    create_markdown_artifact(key="backfill", markdown=f"# Backfill {start} to {end}\n\nRan {len(done)} day(s), "
                             f"skipped {len(skipped)} already done.\n", description="backfill summary")
    return summary
