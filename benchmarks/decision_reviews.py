"""Time opening the Prefect UI forms of a day's decisions; print one JSON object.

    python benchmarks/decision_reviews.py --decisions 150

A fresh SQLite ledger with N open decisions (every kind the forms know), the `review-decision`
deployment registered on Prefect's temporary server (or the server PREFECT_API_URL points at), then
`announce`, as the daily run calls it: each decision's review run created from the deployment and
suspended at its form. Reports the seconds, the milliseconds per decision, and how many of the runs
a worker would have to start a process for before anyone answers (it must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

KINDS = ("service_pause_warning", "payment_plan_or_write_off", "delivery_unknown", "service_pause")


def decisions(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        context = {"customer": f"Customer {i}", "segment": "standard", "arr": "50000.00", "health": "healthy",
                   "invoices": [{"invoice_id": f"I{i}", "invoice_number": f"N-{i}", "amount": "1200.00",
                                 "currency": "USD", "due_date": "2026-10-01", "days_past_due": 53}],
                   "payment_history": {"paid_invoices": 4, "avg_days_late": 12.5, "late_in_12_months": 2},
                   "risk_score": 70, "escalation": "owner", "prior_touches": []}
        if kind == "service_pause_warning":
            context |= {"recipients": f"ap@c{i}.example.com", "proposed_subject": f"Invoice N-{i} is past due",
                        "proposed_text": "Hi Pat,\n\nInvoice N-%d is 53 days past due.\n\nThank you" % i}
        if kind == "delivery_unknown":
            context |= {"question": "Was this message delivered?", "subject": "Reminder", "body": "Hi"}
        rows.append({"decision_key": f"bench:{i}", "kind": kind, "invoice_ids": f"I{i}", "customer_id": f"C{i}",
                     "opened_on": dt.date(2026, 11, 23), "run_id": "bench", "status": "open",
                     "context": json.dumps(context)})
    return rows


async def register_deployment() -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        flow_id = await client.create_flow_from_name("review_decision")
        await client.create_deployment(flow_id=flow_id, name="review-decision", entrypoint="flows/decisions.py:review_decision")


async def not_suspended() -> int:
    from prefect.client.orchestration import get_client

    runs, offset = [], 0
    async with get_client() as client:
        while True:
            page = await client.read_flow_runs(limit=200, offset=offset)
            runs += page
            if len(page) < 200:
                break
            offset += 200
    return sum(1 for r in runs if not r.state.is_paused())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=150)
    a = ap.parse_args()
    from connectors.ledger import models as m
    from connectors.ledger.store import Ledger
    from flows.decisions import announce

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        ledger.insert_rows(m.Decision, decisions(a.decisions))
        harness = contextlib.nullcontext()
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            harness = prefect_test_harness(server_startup_timeout=120)
        with harness:
            asyncio.run(register_deployment())
            started = time.perf_counter()
            out = asyncio.run(announce(ledger))
            seconds = time.perf_counter() - started
            waiting_for_a_worker = asyncio.run(not_suspended())
    print(json.dumps({"decisions": a.decisions, "opened": out["opened"], "failed": out["failed"],
                      "seconds": round(seconds, 2), "ms_per_decision": round(seconds / a.decisions * 1000, 1),
                      "runs_a_worker_must_start_before_an_answer": waiting_for_a_worker}))


if __name__ == "__main__":
    main()
