"""The daily flow end to end on the demo data, under a Prefect test server."""

import asyncio
import csv
import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId,
                                           TaskRunFilter)
from prefect.client.schemas.sorting import ArtifactSort

from arflow.money import format_minor, is_currency, to_minor
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar

AS_OF = dt.date(2026, 11, 23)


def _open_rows(folder):
    with open(folder / "invoices.csv") as fh:
        return [r for r in csv.DictReader(fh) if r["status"].strip().lower() not in ("paid", "void")]


def test_every_open_invoice_ends_in_exactly_one_place(data_dir):
    summary = daily_ar(as_of=AS_OF, source="demo")
    rows = _open_rows(data_dir / "demo")
    assert summary["open_invoices"] == len(rows)
    assert sum(summary["outcomes"].values()) == len(rows)
    assert sum(summary["held"].values()) == summary["outcomes"]["held"]
    assert sum(summary["quarantined"].values()) == summary["outcomes"]["quarantined"]
    assert sum(summary["by_lane"].values()) == len(rows) - summary["outcomes"]["quarantined"]

    ledger = Ledger(f"sqlite:///{data_dir / 'ledger.db'}")
    outcomes = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == summary["run_id"])
    assert len(outcomes) == len(rows) and outcomes["source_row"].is_unique
    assert Counter(outcomes["outcome"]) == {k: v for k, v in summary["outcomes"].items() if v}
    run = ledger.frame(m.Run, m.Run.run_id == summary["run_id"]).iloc[0]
    assert run["status"] == "completed" and run["policy_version"] == "2026.12-3"


def test_demo_exercises_every_hold_and_quarantine_reason(data_dir):
    s = daily_ar(as_of=AS_OF, source="demo")
    assert {"dispute", "opt_out", "paused", "promise_to_pay", "payment_plan", "reconciliation_mismatch"} <= set(s["held"])
    assert {"bad_date", "bad_amount", "missing_due_date_and_terms", "negative_balance", "duplicate_invoice_id",
            "unknown_customer", "unknown_currency", "unknown_terms"} <= set(s["quarantined"])
    assert s["reconciliation"]["status"] == "mismatched" and len(s["reconciliation"]["mismatched_customers"]) >= 2
    assert len(s["currencies"]) >= 4 and s["actions"]
    assert s["blocked_by_guardrail"] == 0  # the shipped templates never trip the guardrails


def test_bucket_amounts_are_the_open_balances_by_hand(data_dir):
    """Independent of the pipeline: sum the balances of the good open rows per currency with Decimal."""
    s = daily_ar(as_of=AS_OF, source="demo")
    ledger = Ledger(f"sqlite:///{data_dir / 'ledger.db'}")
    bad_rows = set(ledger.frame(m.Quarantine, m.Quarantine.run_id == s["run_id"])["source_row"].dropna().astype(int))
    expected: dict[str, Decimal] = {}
    with open(data_dir / "demo" / "invoices.csv") as fh:
        for line_no, r in enumerate(csv.DictReader(fh), start=2):
            if r["status"] in ("paid", "void") or line_no in bad_rows:
                continue
            expected[r["currency"]] = expected.get(r["currency"], Decimal(0)) + Decimal(r["balance"])
    got: dict[str, Decimal] = {}
    for per in s["by_bucket_by_currency"].values():
        for cur, v in per.items():
            got[cur] = got.get(cur, Decimal(0)) + Decimal(v["amount"])
    assert got == expected


def test_a_rerun_of_the_same_day_queues_nothing_twice(data_dir):
    first = daily_ar(as_of=AS_OF, source="demo")
    second = daily_ar(as_of=AS_OF, source="demo")
    assert first["outbox_new"] > 0 and second["outbox_new"] == 0
    assert second["outcomes"]["action_today"] == 0
    # Each invoice acted on is done for the day; one whose earlier step went first (a firm e-mail
    # never comes first) now waits for the gap before its firmer step.
    waiting = second["no_action_due"]["step_done"] + second["no_action_due"].get("min_gap", 0)
    assert waiting == first["outcomes"]["action_today"]
    ledger = Ledger(f"sqlite:///{data_dir / 'ledger.db'}")
    box = ledger.frame(m.Outbox)
    assert len(box) == first["outbox_new"] and box["idempotency_key"].is_unique


def test_run_publishes_summary_and_markdown_artifacts(data_dir):
    s = daily_ar(as_of=AS_OF, source="demo")

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-ar-summary", "daily-ar-report"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[s["run_id"]])),
                task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=10)

    arts = {a.key: a for a in asyncio.run(read())}
    assert set(arts) == {"daily-ar-summary", "daily-ar-report"}
    assert "Reconciliation" in arts["daily-ar-report"].data and "## Quarantined" in arts["daily-ar-report"].data
    assert '"section": "outcome"' in str(arts["daily-ar-summary"].data).replace("'", '"')


def test_the_run_sends_heartbeats_and_its_lane_subflows_share_them(data_dir):
    """The daily run's heartbeat says its process is alive (Prefect marks a run whose heartbeats stop
    as crashed); its four lanes run as subflows in that process and send none of their own."""
    import time

    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    s = daily_ar(as_of=AS_OF, source="demo")

    async def read():
        async with get_client() as client:
            lanes = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[s["run_id"]])))
            for _ in range(40):  # events reach the server in the background
                page = await client.read_events(EventFilter(
                    occurred=EventOccurredFilter(since=started),
                    event=EventNameFilter(name=["prefect.flow-run.heartbeat"])), limit=50)
                beating = {e.resource.id.rsplit(".", 1)[-1] for e in page.events}
                if s["run_id"] in beating:
                    break
                time.sleep(0.25)
            return lanes, beating

    lanes, beating = asyncio.run(read())
    assert sorted(r.flow_name if hasattr(r, "flow_name") else r.name.split(" ")[0] for r in lanes) == \
        ["critical-lane", "current-lane", "early-lane", "late-lane"]
    assert s["run_id"] in beating
    assert not beating & {str(r.id) for r in lanes}


@pytest.mark.postgres
def test_same_run_on_postgresql_gives_the_same_summary(data_dir, pg_url, monkeypatch):
    on_sqlite = daily_ar(as_of=AS_OF, source="demo")
    monkeypatch.setenv("ARFLOW_DB_URL", pg_url)
    on_pg = daily_ar(as_of=AS_OF, source="demo")
    for key in ("run_id", "run_folder"):
        on_sqlite.pop(key), on_pg.pop(key)
    assert on_pg == on_sqlite
    assert len(Ledger(pg_url).frame(m.Outbox)) == on_pg["outbox_new"]


def test_a_broken_source_fails_the_run_and_the_ledger_says_so(data_dir):
    with open(data_dir / "demo" / "invoices.csv", "a") as fh:
        for i in range(200):
            fh.write(f"X{i},CUST-0001,1,2026-01-01,not-a-date,net30,USD,1.00,1.00,open,false,,\n")
    from tasks.quality import DataQualityError

    with pytest.raises(DataQualityError, match="extract_aging"):
        daily_ar(as_of=AS_OF, source="demo")
    runs = Ledger(f"sqlite:///{data_dir / 'ledger.db'}").frame(m.Run)
    assert runs["status"].tolist() == ["failed"] and "threshold" in runs["summary"].iloc[0]


def test_amounts_in_output_are_decimal_strings_in_major_units(data_dir):
    s = daily_ar(as_of=AS_OF, source="demo")
    for per in s["by_bucket_by_currency"].values():
        for cur, v in per.items():
            assert is_currency(cur) and format_minor(to_minor(v["amount"], cur), cur) == v["amount"]


def test_dry_run_writes_each_customer_message_as_an_eml_file(data_dir):
    from email import policy as email_policy
    from email.parser import BytesParser
    from pathlib import Path

    s = daily_ar(as_of=AS_OF, source="demo")
    folder = Path(s["run_folder"])
    assert folder.parent.parent == data_dir / "runs"
    box = Ledger(f"sqlite:///{data_dir / 'ledger.db'}").frame(m.Outbox)
    mail = box[(box["channel"] == "email") & box["status"].isin(["planned", "awaiting_decision"])]
    files = sorted(folder.glob("*.eml"))
    assert len(files) == mail["message_key"].nunique() > 0  # one customer, one message
    assert mail["message_key"].nunique() < len(mail)  # the demo has customers with several invoices due
    for f in files:
        msg = BytesParser(policy=email_policy.default).parsebytes(f.read_bytes())
        rows = mail[mail["message_key"] == msg["X-Arflow-Message-Key"]]
        assert msg["Subject"] == rows["subject"].iloc[0] and msg["To"] in rows["recipients"].iloc[0]
        assert msg.get_content().strip() == rows["body"].iloc[0].strip()
        for number in box.set_index("invoice_id").loc[rows["invoice_id"], "context"].map(
                lambda c: __import__("json").loads(c)["invoice_number"]):
            assert number in msg.get_content()
