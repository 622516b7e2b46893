"""daily_ar(as_of): every open invoice through extract, reconcile, enrich, score, plan, the four
lanes and the report (DESIGN.md, Data flow). The body reads top to bottom like that diagram."""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from arflow.config import Settings, today_in
from arflow.policy import Policy, load_policy
from connectors.ledger.store import Ledger
from flows.lanes import LANE_FLOWS
from tasks import prefect_tasks as t
from tasks import report
from tasks.hops import QUARANTINE_COLUMNS
from tasks.quality import enforce_threshold, run_suite

MODES = ("dry-run",)


@flow(name="daily_ar", log_prints=False)
def daily_ar(as_of: dt.date | None = None, source: str = "demo", mode: str = "dry-run") -> dict:
    """Age, reconcile, enrich, score and plan every open invoice for `as_of`, and queue today's touches."""
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    as_of = as_of or today_in(settings.timezone or policy.timezone)
    require_mode(mode)
    ledger = Ledger(settings.db_url)
    run_id = _run_id()
    ledger.start_run(run_id, "daily_ar", as_of, source, mode, policy.version)
    try:
        inputs = t.fetch_inputs(source, ledger, as_of, settings.data_dir)
        extracted, customers = t.extract_aging(inputs, as_of, policy)
        reconciliation, rec_hop = t.reconcile_aging(extracted.frame, inputs, policy)
        enriched = t.enrich_context(extracted.frame, customers, inputs, as_of, policy)
        scored = t.score_invoices(enriched.frame, policy)
        planned, actions = t.plan_actions(scored.frame, as_of, policy, set(reconciliation.mismatched_customers),
                                          ledger, mode)
        run_dir = settings.data_dir / "runs" / as_of.isoformat() / run_id  # dry-run: the .eml files
        lanes = [lane(actions, planned.frame, ledger, mode, run_id, as_of, run_dir) for lane in LANE_FLOWS]
        summary = publish_report(as_of, run_id, inputs.source, mode, policy, ledger,
                                 [extracted, rec_hop, enriched, scored, planned], planned.frame, actions,
                                 reconciliation, lanes, inputs.notes, run_dir)
    except BaseException as exc:
        ledger.finish_run(run_id, "failed", {"error": f"{exc.__class__.__name__}: {exc}"})
        raise
    ledger.finish_run(run_id, "completed", summary)
    return summary


@task(name="publish_report", cache_policy=NO_CACHE)
def publish_report(as_of: dt.date, run_id: str, source: str, mode: str, policy: Policy, ledger: Ledger, hop_results,
                   planned: pd.DataFrame, actions: pd.DataFrame, reconciliation, lanes: list[dict],
                   notes: list[str], run_dir=None) -> dict:
    quarantine = pd.concat([h.quarantine for h in hop_results if not h.quarantine.empty] or
                           [pd.DataFrame(columns=QUARANTINE_COLUMNS)], ignore_index=True)
    invoice_q = quarantine[quarantine["entity"] == "invoice"]
    outcomes = report.outcome_rows(planned, invoice_q)
    check = run_suite(outcomes, "outcomes")  # fails the run if any invoice ended in two places or none
    enforce_threshold(check, 0.0)
    dq = {}
    for h in hop_results:
        for c in h.checks:
            dq[c.hop] = {"rows": c.rows, "quarantined": int(len(c.rejected)), "passed": c.passed}
    if reconciliation.status == "mismatched":
        notes = notes + [f"{len(reconciliation.mismatched_customers)} customer(s) differ from the books and are "
                         "held from outreach today."]
    summary = report.summarize(as_of=as_of, run_id=run_id, source=source, mode=mode,
                               policy_version=policy.version, outcomes=outcomes, planned=planned, actions=actions,
                               reconciliation=reconciliation.summary(), data_quality=dq,
                               outbox_new=sum(lane["new"] for lane in lanes), notes=notes)
    summary["blocked_by_guardrail"] = sum(lane["blocked_by_guardrail"] for lane in lanes)
    summary["run_folder"] = str(run_dir)
    stamp = {"run_id": run_id, "as_of": as_of}
    rec_rows = reconciliation.results.assign(**stamp) if not reconciliation.results.empty else None
    ledger.write_run_results(outcomes.assign(**stamp), quarantine.drop(columns=["invoice_id", "customer_id"]).assign(**stamp),
                             rec_rows)
    create_table_artifact(key="daily-ar-summary", table=report.table_rows(summary),
                          description=f"Daily AR {as_of}: where every open invoice ended")
    create_markdown_artifact(key="daily-ar-report", markdown=report.markdown(summary),
                             description=f"Daily AR {as_of}: tiers, buckets, holds, quarantine, reconciliation")
    get_run_logger().info("daily_ar %s: %s", as_of, summary["outcomes"])
    return summary


def require_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not available yet; use one of {MODES}")


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())
