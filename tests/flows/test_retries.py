"""Retries that fire: a hop whose failure may pass (a connected system failing past the HTTP layer's
own retries, a ledger locked by another writer) is run again by Prefect and the run completes; a
failure that will not pass (a refusal) is not retried."""

from __future__ import annotations

import asyncio
import logging
import datetime as dt
import sqlite3
import threading

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from arflow.policy import load_policy
from arflow.config import ROOT
from connectors.ledger import models as m
from connectors.ledger.store import Ledger, is_transient_db_error
from flows.daily_ar import daily_ar
from flows import prefect_tasks as t
from tests.conftest import customer, invoice, make_source
from tests.fake_qbo import FakeQuickBooks, sample
from tests.pipeline import run as pipeline

QBO_DAY = dt.date(2023, 3, 24)


@pytest.fixture
def qbo(monkeypatch, tmp_path):
    with FakeQuickBooks() as fake:
        for entity, name in (("Customer", "sandbox_customer_records"), ("Invoice", "sandbox_invoice_records"),
                             ("Payment", "sandbox_payment_records")):
            for obj in sample(name):
                fake.add(entity, obj)
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("ARFLOW_QUICKBOOKS_BLOCK", "no-such-block")
        monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
        monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
        yield fake


def _attempts(task_name: str) -> list:
    async def read():
        async with get_client() as client:
            return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=task_name)))
    return asyncio.run(read())


def test_an_outage_longer_than_the_http_retries_is_retried_by_the_hop(qbo):
    # QuickBooks answers 503 to the first four API requests: the HTTP layer's 2 retries give up, the
    # fetch hop fails as transient, Prefect runs it again and the day completes.
    for _ in range(4):
        qbo.queue(503, headers={"Retry-After": "0"})
    summary = daily_ar(as_of=QBO_DAY, source="quickbooks")
    assert summary["source"] == "quickbooks" and summary["open_invoices"] > 0
    runs = [r for r in _attempts("fetch_inputs") if r.flow_run_id and str(r.flow_run_id) == summary["run_id"]]
    assert [r.run_count for r in runs] == [2], [(r.name, r.run_count, r.state_name) for r in runs]
    assert not qbo.queued


def test_a_refusal_is_not_retried(qbo):
    qbo.queue(400, {"Fault": {"Error": [{"Message": "Invalid query", "code": "4001"}], "type": "ValidationFault"}})
    with pytest.raises(Exception, match="QuickBooks"):
        daily_ar(as_of=QBO_DAY, source="quickbooks")
    latest = max(_attempts("fetch_inputs"), key=lambda r: r.expected_start_time)
    assert latest.run_count == 1 and latest.state_name == "Failed"  # one attempt: a refusal does not pass


def test_a_ledger_locked_by_another_writer_is_retried_by_the_hop(tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_SQLITE_BUSY_TIMEOUT_MS", "100")
    policy = load_policy(ROOT / "policy.yaml")
    day = dt.date(2026, 11, 23)
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18")], [customer("C1")])
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    out = pipeline(src, day, policy, ledger)
    assert not out["actions"].empty

    # Another connection holds the ledger's write lock until the hop's first attempt has failed and
    # Prefect has scheduled its retry (Prefect logs that, in this process).
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    failed_once = threading.Event()

    class Released(logging.Handler):
        def emit(self, record):
            if "Retry 1/" in record.getMessage() and not failed_once.is_set():
                failed_once.set()
                holder.execute("ROLLBACK")
    handler = Released()
    logging.getLogger("prefect.task_runs").addHandler(handler)

    @flow(name="one_hop")
    def one_hop():
        return t.queue_touches(out["actions"], out["planned"], ledger, "dry-run", "retry-test", day, None, policy)

    try:
        state = one_hop(return_state=True)
        queued = state.result()
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(handler)
        holder.close()
    assert failed_once.is_set()
    assert queued["new"] == 1
    assert len(ledger.frame(m.Outbox)) == 1  # written once, by the retry
    (attempt,) = [r for r in _attempts("queue_touches") if r.flow_run_id == state.state_details.flow_run_id]
    assert attempt.run_count == 2 and attempt.state_name == "Completed"


def test_which_database_failures_may_pass():
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert is_transient_db_error(OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")))
    assert not is_transient_db_error(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: outbox")))
    assert not is_transient_db_error(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))
