"""The four lane subflows. Each takes the touches its lane is due today, queues them in the
ledger's outbox under their idempotency keys (opening a decision for each message that needs a
person), then delivers what is queued for its lane: verified at the source right before, sent once.
In dry-run nothing is delivered: the outbox rows and the .eml files are the whole effect. One
subflow per lane, so the Prefect UI shows each lane's work and failures apart."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import flow

from connectors.ledger.store import Ledger
from flows.naming import day_run_name
from flows import prefect_tasks as t
from tasks import recipe
from tasks.recipe import LaneResult


def _lane(lane: str, actions: pd.DataFrame, invoices: pd.DataFrame, ledger: Ledger, mode: str, run_id: str,
          as_of: dt.date, run_dir=None, delivery=None) -> LaneResult:
    return recipe.lane(t, lane, actions, invoices, ledger, mode, run_id, as_of, delivery, run_dir)


@flow(name="current_lane", flow_run_name=day_run_name("current-lane"))
def current_lane(actions, invoices, ledger, mode, run_id, as_of, run_dir=None, delivery=None) -> LaneResult:
    """Pre-due reminders and the due-date auto-charge (a failed charge: the customer is told the same run)."""
    return _lane("current", actions, invoices, ledger, mode, run_id, as_of, run_dir, delivery)


@flow(name="early_lane", flow_run_name=day_run_name("early-lane"))
def early_lane(actions, invoices, ledger, mode, run_id, as_of, run_dir=None, delivery=None) -> LaneResult:
    """1-14 days past due: friendly nudge, follow-up, the owner looped in."""
    return _lane("early", actions, invoices, ledger, mode, run_id, as_of, run_dir, delivery)


@flow(name="late_lane", flow_run_name=day_run_name("late-lane"))
def late_lane(actions, invoices, ledger, mode, run_id, as_of, run_dir=None, delivery=None) -> LaneResult:
    """15-44 days: firmer e-mail, owner alert, service-pause warning (a human decides)."""
    return _lane("late", actions, invoices, ledger, mode, run_id, as_of, run_dir, delivery)


@flow(name="critical_lane", flow_run_name=day_run_name("critical-lane"))
def critical_lane(actions, invoices, ledger, mode, run_id, as_of, run_dir=None, delivery=None) -> LaneResult:
    """45+ days: service pause, finance and owner call, payment plan or write-off (humans decide)."""
    return _lane("critical", actions, invoices, ledger, mode, run_id, as_of, run_dir, delivery)


LANE_FLOWS = (current_lane, early_lane, late_lane, critical_lane)
