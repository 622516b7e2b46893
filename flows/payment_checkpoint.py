"""payment_checkpoint(as_of): apply incoming payments, close what is paid (DESIGN.md, Data flow).

Reads the billing system's payments and, optionally, a bank statement; matches them to open
invoices (tasks/cash.py); writes applications, credits, reversals, payment history, receipts and
closures to the ledger in one transaction. Invoices still open are re-aged by tomorrow's daily run,
which reads what this flow applied.
"""

from __future__ import annotations

import datetime as dt
import json

from prefect import flow, get_run_logger
from arflow.safety import error_line, redacted_errors
from flows.publish import create_markdown_artifact, create_table_artifact

from arflow.config import Settings, today_in
from arflow.policy import load_policy
from connectors.ledger.store import Ledger
from flows.calendar import scheduled_skip
from flows.daily_ar import Mode, delivery_context, open_channels, require_mode, skip_day
from flows.hooks import notify_failure
from flows.params import Source
from flows.naming import current_run_id, day_run_name
from flows import prefect_tasks as t
from tasks import recipe
from tasks.checkpoint import summarize
from tasks.recipe import RunContext


@flow(name="payment_checkpoint", log_prints=False, flow_run_name=day_run_name("payment-checkpoint"),
      on_failure=[notify_failure], on_crashed=[notify_failure])
@redacted_errors
def payment_checkpoint(as_of: dt.date | None = None, source: Source = "demo", bank_file: str | None = None,
                       mode: Mode = "dry-run") -> dict:
    """Apply the day's payments (billing and bank file) and close the invoices they pay.

    Args:
        as_of: the day the payments are applied on (default: today in the company's timezone).
        source: the billing system whose payments and open invoices are read: demo, csv:FOLDER,
            quickbooks, xero, stripe or chargebee (+salesforce or +hubspot for the CRM's contacts on receipts).
        bank_file: a bank statement to apply as well, CSV or BAI2, by its path on the worker.
        mode: dry-run records receipts without sending them; draft queues them for approval; send
            sends them.
    """
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    as_of = as_of or today_in(settings.timezone or policy.timezone)
    require_mode(mode)  # receipts are recorded under the mode: an unknown one would look sendable
    skipped = scheduled_skip(as_of, policy.company_country)
    if skipped:
        return skip_day("payment-checkpoint", as_of, skipped)
    channels = open_channels(mode, source, settings)
    ledger = Ledger(settings.db_url)
    run_id = current_run_id()
    ledger.start_run(run_id, "payment_checkpoint", as_of, source, mode, policy.version)
    try:
        ctx = RunContext(settings=settings, policy=policy, ledger=ledger, source=source, as_of=as_of, run_id=run_id,
                         mode=mode, channels=channels)
        day = recipe.apply_payments(t, ctx, bank_file)
        payments, quarantined, result, written = day.payments, day.quarantined, day.result, day.written
        _keep_quarantine(ledger, quarantined, run_id, as_of)
        if written["reversed"]:  # a bounced or reversed payment re-opened what it paid: finance chases it
            _alert_returned(result, written["reversed"], as_of)
        summary = summarize(result, payments_read=len(payments) + len(quarantined), quarantined=len(quarantined),
                            receipts_queued=written["receipts_queued"], as_of=as_of, run_id=run_id)
        summary["touches_closed"] = written["touches_closed"]
        summary["settled_at_source"] = written["settled_at_source"]  # closed by the billing system's own application
        # Receipts go out now in send mode (draft: once approved), through the daily flow's delivery.
        delivery = delivery_context(ledger, channels, policy, run_id, as_of, mode, source, settings)
        try:
            summary["receipts_sent"] = t.deliver_touches(delivery, "paid").get("sent", 0)
        finally:
            if channels.mailer is not None:
                channels.mailer.close()
        _publish(summary, result)
    except BaseException as exc:
        ledger.finish_run(run_id, "failed", {"error": error_line(f"{exc.__class__.__name__}: {exc}")})
        raise
    ledger.finish_run(run_id, "completed", summary)
    get_run_logger().info("payment_checkpoint %s: applied %s, unapplied %s", as_of, summary["applied"],
                          summary["unapplied"])
    return summary


def _keep_quarantine(ledger: Ledger, quarantined, run_id: str, as_of: dt.date) -> None:
    """The payment lines read but not applied (bad lines, bank debits that are not a returned
    payment), with their reasons, in the ledger's quarantine: reported, never lost."""
    import pandas as pd


    if quarantined is None or quarantined.empty:
        return
    rows = pd.DataFrame({"run_id": run_id, "as_of": as_of, "hop": "payment_checkpoint",
                         "entity": quarantined["entity"].astype(str), "record_id": None,
                         "source_row": pd.to_numeric(quarantined["source_row"], errors="coerce").astype("Int64"),
                         "reason": quarantined["reason"].astype(str), "detail": None,
                         "raw": [json.dumps(r, default=str) for r in quarantined["raw"]]})
    ledger.replace_quarantine(run_id, rows)


def _alert_returned(result, reversed_ids: list[str], as_of: dt.date) -> None:
    """Tell finance (the failure alerts' channel: Slack, else e-mail to the finance team) which
    payments came back and which invoices they re-opened."""
    from flows.hooks import deliver_alert

    lines = []
    for rev, orig in result.reversal_of.items():
        if orig not in reversed_ids:
            continue
        row = next((r for r in result.received if r["payment_id"] == rev), {})
        lines.append(f"{orig} came back ({row.get('reference') or 'reversal'}, "
                     f"{row.get('amount_minor')} {row.get('currency')} minor units): its invoices are open again")
    text = f"arflow: payment checkpoint {as_of}: {len(lines)} payment(s) returned or reversed. " + "; ".join(lines)
    try:
        channel = deliver_alert(text)
    except Exception as exc:  # noqa: BLE001 - the ledger holds the reversal either way; say the alert failed
        channel = f"not sent ({exc.__class__.__name__})"
    get_run_logger().warning("%s [alert: %s]", text, channel)


def _publish(summary: dict, result) -> None:
    exceptions = [{"payment_id": r["payment_id"], "customer_id": r["customer_id"], "amount_minor": r["amount_minor"],
                   "currency": r["currency"], "reference": r["reference"], "reason": r["reason"],
                   "candidates": r["candidates"] or ""}
                  for r in result.received if r["status"] == "unapplied" or r["needs_review"]]
    create_table_artifact(key="payment-checkpoint-exceptions", table=exceptions or [{"payment_id": "none"}],
                          description=f"Unapplied cash and matches to review, {summary['as_of']}")
    create_table_artifact(key="payment-checkpoint-summary",
                          table=[{"key": k, "value": json.dumps(v) if isinstance(v, dict) else v}
                                 for k, v in summary.items()],
                          description=f"Payment checkpoint {summary['as_of']}")
    lines = [f"# Payment checkpoint {summary['as_of']}", "",
             f"{summary['payments_read']} payments read, {summary['new_payments']} new; auto-match rate "
             f"{summary['auto_match_rate']}; {summary['invoices_closed']} invoices closed; "
             f"{summary['unapplied']} unapplied; {summary['duplicates']} duplicates; {summary['reversed']} reversed.", "",
             "| rule | payments |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary["applied"].items()]
    if exceptions:
        lines += ["", "## Exceptions queue", "", "| payment | customer | amount (minor) | reason |", "| --- | --- | --- | --- |"]
        lines += [f"| {e['payment_id']} | {e['customer_id'] or ''} | {e['amount_minor']} {e['currency']} | {e['reason'] or 'review'} |"
                  for e in exceptions]
    create_markdown_artifact(key="payment-checkpoint-report", markdown="\n".join(lines) + "\n")
