"""Backfill runs the business days in order, skips what is done (resumable), queues nothing twice
and never sends; a failed run tells a person through its on_failure hook."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, select

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from flows.backfill import backfill, backfill_days

WED, FRI = dt.date(2026, 11, 25), dt.date(2026, 11, 27)  # Thursday the 26th is Thanksgiving


def test_backfill_days_are_business_days_in_order():
    assert backfill_days(dt.date(2026, 11, 21), FRI, "US") == [dt.date(2026, 11, 23), dt.date(2026, 11, 24), WED, FRI]
    with pytest.raises(ValueError, match="before"):
        backfill_days(FRI, WED, "US")


def _outbox_rows(ledger) -> int:
    with ledger.engine.connect() as c:
        return c.execute(select(func.count()).select_from(m.Outbox)).scalar_one()


def test_backfill_is_idempotent_and_resumes_where_it_stopped(data_dir):
    first = backfill(start=WED, end=FRI, source="demo", with_checkpoint=False)
    assert first["ran"] == [WED.isoformat(), FRI.isoformat()] and first["skipped_already_done"] == []
    ledger = Ledger(f"sqlite:///{data_dir / 'ledger.db'}")
    snapshots = ledger.kpi_snapshots(FRI)
    assert sorted({str(d) for d in snapshots["as_of"]}) == [WED.isoformat(), FRI.isoformat()]
    rows = _outbox_rows(ledger)
    assert rows > 0
    # Stopped part-way: Friday never completed. The next backfill runs Friday only.
    with ledger.engine.begin() as c:
        c.execute(delete(m.Run).where((m.Run.as_of == FRI) & (m.Run.flow == "daily_ar")))
    again = backfill(start=WED, end=FRI, source="demo", with_checkpoint=False)
    assert again["ran"] == [FRI.isoformat()] and again["skipped_already_done"] == [WED.isoformat()]
    # Everything again, on purpose: nothing is queued twice.
    redo = backfill(start=WED, end=FRI, source="demo", with_checkpoint=False, resume=False)
    assert len(redo["ran"]) == 2
    assert _outbox_rows(ledger) == rows


def test_backfill_never_sends(data_dir):
    with pytest.raises(ValueError, match="never sends"):
        backfill(start=WED, end=FRI, source="demo", mode="send")


def test_a_failed_run_alerts_through_its_hook(data_dir, httpserver, monkeypatch):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    monkeypatch.setenv("ARFLOW_SLACK_WEBHOOK_URL", httpserver.url_for("/hook"))
    with pytest.raises(ValueError, match="mode"):
        daily_ar(as_of=WED, source="demo", mode="shout")
    (req, _resp), = httpserver.log
    text = req.get_json()["text"]
    assert "daily_ar" in text and "Failed" in text and "2026-11-25" in text and "shout" in text
    assert "hooks" not in text and httpserver.url_for("/hook") not in text  # no secret in the alert
