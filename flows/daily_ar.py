"""daily_ar(as_of): every open invoice through extract, reconcile, enrich, score, plan, the four
lanes and the report (DESIGN.md, Data flow). The body reads top to bottom like that diagram."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Annotated

import pandas as pd
from prefect import flow, get_run_logger, task
from arflow.safety import error_line, redacted_errors
from flows.publish import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import WithJsonSchema

from arflow.config import Settings, today_in
from arflow.policy import Policy, load_policy
from connectors.ledger.store import Ledger
from connectors.systems import SourceSpec
from flows.params import Source
from connectors.messaging import ChannelNotConfigured
from flows.calendar import scheduled_skip
from flows.decisions import announce_decisions
from flows.hooks import notify_failure
from flows.naming import current_run_id, day_run_name
from flows.lanes import LANE_FLOWS
from flows.subflows import sharing_the_parents_heartbeat
from tasks.delivery import Channels
from tasks.delivery import Context as DeliveryContext
from flows import prefect_tasks as t
from tasks import pilot, recipe, report
from tasks.recipe import LaneResult, RunContext, lane_totals
from tasks.hops import QUARANTINE_COLUMNS
from tasks.quality import enforce_threshold, run_suite

MODES = ("dry-run", "draft", "send")
# A choice in the deployment's form (and the server refuses another value when a run is created);
# a call from Python with another value gets require_mode's message, which names it.
Mode = Annotated[str, WithJsonSchema({"type": "string", "enum": list(MODES)})]


@flow(name="daily_ar", log_prints=False, flow_run_name=day_run_name("daily-ar"), on_failure=[notify_failure],
      on_crashed=[notify_failure])
@redacted_errors
def daily_ar(as_of: dt.date | None = None, source: Source = "demo", mode: Mode = "dry-run", partitions: int = 1,
             dask_address: str | None = None) -> dict:
    """Age, reconcile, enrich, score and plan every open invoice for `as_of`, and queue today's touches.

    Args:
        as_of: the day to run (default: today in the company's timezone). Any past day can be re-run.
        source: where invoices and customers come from: demo, csv:FOLDER, quickbooks, xero, stripe or chargebee, with
            +salesforce or +hubspot for the CRM's context (quickbooks+salesforce).
        mode: dry-run renders every message and sends nothing (.eml files in the run folder); draft
            queues every message for a person's approval; send sends what the policy allows.
        partitions: 1 runs every hop in this process; N > 1 enriches, scores and plans N customer
            partitions as Prefect task runs on a Dask cluster (docs/scale.md), then goes on here.
        dask_address: the Dask scheduler for partitions > 1 (default ARFLOW_DASK_ADDRESS; neither: a
            LocalCluster of ARFLOW_DASK_WORKERS processes for the run).
    """
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    as_of = as_of or today_in(settings.timezone or policy.timezone)
    require_mode(mode)
    if partitions < 1:
        raise ValueError(f"partitions must be 1 or more, not {partitions}")
    skipped = scheduled_skip(as_of, policy.company_country)
    if skipped:
        return skip_day("daily-ar", as_of, skipped)
    ledger = Ledger(settings.db_url)
    run_id = current_run_id()
    llm = open_model(policy, ledger, mode, run_id, as_of)  # send mode with a model needs a passing backtest
    channels = open_channels(mode, source, settings)
    ledger.start_run(run_id, "daily_ar", as_of, source, mode, policy.version)
    run_dir = settings.data_dir / "runs" / as_of.isoformat() / run_id  # dry-run: the .eml files
    ctx = RunContext(settings=settings, policy=policy, ledger=ledger, source=source, as_of=as_of, run_id=run_id,
                     mode=mode, channels=channels, run_dir=run_dir)
    cluster = contextlib.ExitStack()  # partitions > 1: the run's Dask cluster, stopped before the lanes write
    try:
        in_doubt = ledger.in_doubt(sending_timeout(), as_of, run_id) if mode != "dry-run" else 0
        partitioned = None
        if partitions > 1:  # by customer partition on a Dask cluster (flows/partitioned.py)
            if llm is not None:
                raise ValueError("partitions > 1 scores with the rules: the model's scoring runs in one process "
                                 "(unset ANTHROPIC_API_KEY, or run with partitions=1)")
            from flows.partitioned import Partitioned

            partitioned = cluster.enter_context(Partitioned(partitions, dask_address))
        day = recipe.plan_day(t, ctx, llm, partitioned=partitioned)
        inputs, planned, actions, cohort = day.inputs, day.planned, day.actions, day.cohort
        delivery = delivery_context(ledger, channels, policy, run_id, as_of, mode, source, settings)
        delivery.llm = llm
        delivery.cohort = cohort
        if partitioned is not None:  # each lane's messages rendered and checked by partition, then written here
            delivery.rendered = partitioned.render(actions, planned.frame, cohort, mode, run_id, as_of, policy)
            cluster.close()
        try:
            with sharing_the_parents_heartbeat():  # one subflow per lane, in this process
                lanes = [lane(actions, planned.frame, ledger, mode, run_id, as_of, run_dir, delivery)
                         for lane in LANE_FLOWS]
            owners = t.follow_up_owners(delivery)
            if mode == "send" and policy.connectors.quickbooks.write_notes and isinstance(source, str) \
                    and SourceSpec.parse(source).billing == "quickbooks":
                inputs.notes.append(write_quickbooks_notes(ledger, run_id, as_of, settings))
            if mode == "send" and policy.connectors.xero.write_history and isinstance(source, str) \
                    and SourceSpec.parse(source).billing == "xero":
                inputs.notes.append(write_xero_history(ledger, run_id, as_of, settings))
        finally:
            if channels.mailer is not None:
                channels.mailer.close()
        summary = publish_report(as_of, run_id, inputs.source, mode, policy, ledger, day.hops, planned.frame, actions,
                                 day.reconciliation, lanes, inputs.notes, run_dir,
                                 pilot.summary(actions, cohort, policy.pilot.enabled and mode != "dry-run"))
        summary["owners"] = owners
        if partitioned is not None:  # partitions > 1: how the hops were cut and how long they took on Dask
            summary["partitioned"] = partitioned.info
        if mode == "send" and channels.crm is not None:  # the day's summary in the CRM, where configured
            summary["crm_summary_post"] = post_crm_summary(channels.crm, summary)
        summary["scoring"] = day.scored.llm or {"scorer": "rules"}
        summary.update(ledger.llm_usage(run_id))  # llm_calls, input/output/cache tokens, cost_usd
        from flows.reporting import record_kpis

        kpis = record_kpis(ledger, policy, inputs.invoices, as_of, run_id, mode, settings.data_dir)
        summary["kpis"] = {cur: {k: v[k] for k in ("dso_standard", "dso_countback", "best_possible_dso", "cei")}
                           | {"ar": v["ar"]["amount"], "overdue": v["overdue"]["amount"]}
                           for cur, v in kpis["currencies"].items()}
        summary["dashboard"] = str(settings.data_dir / "reports" / f"dashboard-{as_of.isoformat()}.html")
        summary["delivery_in_doubt"] = in_doubt
        if mode != "dry-run":
            reviews = announce_decisions(ledger)
            summary["decision_reviews_started"], summary["decision_reviews_closed"] = reviews["opened"], reviews["closed"]
            summary["decision_customers"] = publish_decision_queue(ledger, as_of)
        else:
            summary["decision_reviews_started"] = summary["decision_reviews_closed"] = 0
    except BaseException as exc:
        cluster.close()
        ledger.finish_run(run_id, "failed", {"error": error_line(f"{exc.__class__.__name__}: {exc}")})
        raise
    ledger.finish_run(run_id, "completed", summary)
    return summary


@task(name="publish_report", cache_policy=NO_CACHE, **t.RETRY)
def publish_report(as_of: dt.date, run_id: str, source: str, mode: str, policy: Policy, ledger: Ledger, hop_results,
                   planned: pd.DataFrame, actions: pd.DataFrame, reconciliation, lanes: list[LaneResult],
                   notes: list[str], run_dir=None, pilot_counts: dict | None = None) -> dict:
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
                               outbox_new=sum(lane.new for lane in lanes), notes=notes)
    totals = lane_totals(lanes)
    for k in ("blocked_by_guardrail", "personalized", "messages", "sent", "drafted", "decisions_opened",
              "skipped_at_send", "failed", "send_retries", "charges", "charges_failed", "charge_retries",
              "charge_retries_failed", "finance_alerts", "carried_out", "digest_items"):
        summary[k] = totals[k]
    summary["run_folder"] = str(run_dir)
    summary["pilot"] = pilot_counts or {"enabled": False}  # the pilot's live and dry-run halves (tasks/pilot.py)
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


@task(name="publish_decision_queue", cache_policy=NO_CACHE)
def publish_decision_queue(ledger: Ledger, as_of: dt.date) -> int:
    """The open decisions by customer, ranked, each with the customer's whole position, as a table
    artifact (decision-queue). Returns how many customers wait on a decision."""
    from tasks.decisions import customer_queue

    def amounts(d):
        return ", ".join(f"{v} {c}" for c, v in d.items()) or "none"

    queue = customer_queue(ledger)
    rows = [{"rank": p["rank"], "customer": f"{p['customer']} ({p['customer_id']})", "owed": amounts(p["exposure"]),
             "overdue": amounts(p["overdue"]), "risk": p["risk_score"],
             "oldest": f"{p['oldest']['invoice_id']} ({p['oldest']['days_past_due']}d)" if p["oldest"] else "",
             "credits": amounts(p["credits"]), "plans": len(p["payment_plans"]), "disputes": len(p["disputes"]),
             "promises": len(p["promises"]),
             "last_touch": (lambda t: f"{t['on']} {t['step']}" if t else "none")(next(iter(p["last_touches"]), None)),
             "decisions": ", ".join(f"#{d['id']} {d['kind']}" for d in p["decisions"])} for p in queue]
    if rows:
        create_table_artifact(key="decision-queue", table=rows,
                              description=f"Open decisions {as_of} by customer, ranked by risk-weighted overdue "
                                          "exposure: `arflow decide --customer ID approve|reject`")
    return len(rows)


def skip_day(key: str, as_of: dt.date, reason: str) -> dict:
    """A scheduled run on a day that is not a business day: nothing read, nothing written, and it says so."""
    get_run_logger().info("%s", reason)
    create_markdown_artifact(key=f"{key}-report", markdown=f"# {key} {as_of}: skipped\n\n{reason}.\n",
                             description=f"{key} {as_of}: not a business day")
    return {"as_of": as_of.isoformat(), "skipped": reason}


def open_model(policy: Policy, ledger: Ledger, mode: str, run_id: str, as_of: dt.date):
    """Claude where ANTHROPIC_API_KEY is set and the policy allows (else None: the rules alone).
    Send mode with the model refuses to start until a backtest of the current prompt version and
    model has passed the policy's threshold (`arflow backtest`)."""
    from connectors.llm import open_llm
    from tasks.ai_score import prompt_version

    llm = open_llm(policy, run_id=run_id, as_of=as_of)
    if llm is not None and mode == "send":
        version, model = prompt_version(), llm.model_for("score")
        if ledger.passed_backtest(version, model) is None:
            raise BacktestRequired(
                f"send mode with the model needs a passing backtest of prompt {version} on {model} "
                f"(threshold {policy.llm.backtest_threshold}): run `arflow backtest --labels FILE`, or unset "
                "ANTHROPIC_API_KEY to send with the rules scorer")
    return llm


def post_crm_summary(crm, summary: dict) -> str | None:
    """The run's summary as a post in the CRM (Salesforce: a Chatter FeedItem on the record the field
    map names); None where none is configured. A failure is reported in the summary, not fatal."""
    from connectors.http import ConnectorError

    try:
        return crm.post_summary(report.markdown(summary))
    except ConnectorError as exc:
        return f"failed: {exc.cause[:120]}"


@task(name="write_quickbooks_notes", cache_policy=NO_CACHE)
def write_quickbooks_notes(ledger: Ledger, run_id: str, as_of: dt.date, settings: Settings) -> str:
    """The one write QuickBooks gets (policy connectors.quickbooks.write_notes): a line on each
    invoice's private memo for each customer e-mail this run sent. A failure is reported, not fatal:
    the e-mails went."""
    from arflow.blocks import connection
    from connectors.quickbooks import QuickBooksSource

    def open_source():
        values, block = connection("quickbooks")
        return QuickBooksSource(values, as_of=as_of, data_dir=settings.data_dir, block=block)

    return _note_sent_emails(ledger, run_id, as_of, "QuickBooks notes", open_source,
                             lambda qbo, invoice_id, text: qbo.append_note("Invoice", invoice_id, text))


@task(name="write_xero_history", cache_policy=NO_CACHE)
def write_xero_history(ledger: Ledger, run_id: str, as_of: dt.date, settings: Settings) -> str:
    """The one write Xero gets (policy connectors.xero.write_history): a history note on each
    invoice for each customer e-mail this run sent. A failure is reported, not fatal: the e-mails went."""
    from arflow.blocks import connection
    from connectors.xero import XeroSource

    def open_source():
        values, block = connection("xero")
        return XeroSource(values, as_of=as_of, data_dir=settings.data_dir, block=block)

    return _note_sent_emails(ledger, run_id, as_of, "Xero history notes", open_source,
                             lambda xero, invoice_id, text: xero.add_history_note(invoice_id, text))


def _note_sent_emails(ledger: Ledger, run_id: str, as_of: dt.date, label: str, open_source, write) -> str:
    """A note in the books on each invoice of each customer e-mail this run sent (the source opened
    only if there is one); one line saying how many were written and which failed."""
    from connectors.http import ConnectorError
    sent = ledger.emails_sent_by(run_id)
    if sent.empty:
        return f"{label}: none (no e-mail sent)"
    source = open_source()
    written, failed = 0, []
    for r in sent.itertuples():
        try:
            write(source, r.invoice_id, f"arflow {as_of}: {r.step} e-mailed to {r.recipients}")
            written += 1
        except ConnectorError as exc:
            failed.append(f"{r.invoice_id} ({exc.cause[:80]})")
    return f"{label}: {written} written" + (f", {len(failed)} failed: {', '.join(failed[:5])}" if failed else "")


class BacktestRequired(RuntimeError):
    """Send mode with a model that has not passed a backtest for its prompt version."""


def require_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")


def open_channels(mode: str, source: str, settings: Settings) -> Channels:
    """The ways out for this run. dry-run needs none. draft and send need an SMTP server (approved
    messages go out in both); Slack is optional (owner alerts become owner tasks without it)."""
    import os

    from connectors.registry import billing_for
    from connectors.messaging import SlackWebhook, SmtpMailer

    from arflow.blocks import slack_webhook_url, smtp_config

    mail_from = os.environ.get("ARFLOW_MAIL_FROM", "accounts-receivable@localhost")
    if mode == "dry-run":
        return Channels(mail_from=mail_from)
    smtp = smtp_config()  # a saved block wins over the environment
    if smtp is None:
        raise ChannelNotConfigured(f"mode {mode!r} sends e-mail: set ARFLOW_SMTP_HOST (and ARFLOW_SMTP_PORT, "
                                   "ARFLOW_MAIL_FROM; ARFLOW_SMTP_USER/PASSWORD/STARTTLS where the server needs them, "
                                   "ARFLOW_SMTP_AUTH=xoauth2 for Microsoft 365 or Google Workspace)")
    slack_url = slack_webhook_url()
    crm = None
    if isinstance(source, str) and SourceSpec.parse(source).crm:
        from connectors.registry import open_crm

        crm = open_crm(SourceSpec.parse(source).crm, as_of=dt.date.today())
    return Channels(mailer=SmtpMailer(smtp), slack=SlackWebhook(slack_url) if slack_url else None,
                    billing=billing_for(source, settings.data_dir), mail_from=smtp.mail_from, crm=crm)


def delivery_context(ledger: Ledger, channels: Channels, policy: Policy, run_id: str, as_of: dt.date, mode: str,
                     source, settings: Settings) -> DeliveryContext:
    from connectors.registry import open_source
    from tasks.delivery import in_quarter_end, source_state, verify_rows

    opened = []

    def verify(rows):
        # Right before the sends: the source of truth and the ledger's stop records, read again
        # (the source object is opened once a run: a connected system signs in once).
        if not opened:
            opened.append(open_source(source, data_dir=settings.data_dir, as_of=as_of))
        state = source_state(opened[0], ledger, as_of, policy, only=set(rows["invoice_id"]))
        return verify_rows(rows, state)

    return DeliveryContext(ledger=ledger, channels=channels, policy=policy, run_id=run_id, as_of=as_of, mode=mode,
                           data_dir=settings.data_dir, verify=verify, quarter_end=in_quarter_end(as_of, policy))


def sending_timeout() -> dt.timedelta:
    """How long a message may sit `sending` before a later run calls its delivery in doubt
    (ARFLOW_SENDING_TIMEOUT_SECONDS, default 600)."""
    import os

    return dt.timedelta(seconds=float(os.environ.get("ARFLOW_SENDING_TIMEOUT_SECONDS", "600")))


