"""Reporting: the KPIs of a day (stored as a snapshot, published as artifacts and a dashboard
page), the weekly `collections_brief`, and `backfill` of a date range (DESIGN.md, Layout)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from arflow.safety import redacted_errors
from flows.publish import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from arflow.config import Settings, today_in
from arflow.policy import Policy, load_policy
from connectors.ledger.store import Ledger
from flows.hooks import notify_failure
from flows.naming import day_run_name
from arflow.money import format_amount
from tasks import dashboard, kpis as kpi
from tasks.extract import BUCKET_LABELS, BUCKETS
from flows.prefect_tasks import RETRY
from tasks.report import aging_matrix, format_share


def kpi_report(ledger: Ledger, policy: Policy, as_of: dt.date, run: dict | None = None, *,
               store: bool = False) -> dict:
    """The KPIs for as_of (docs/kpis.md) with the week-over-week change from the snapshots. With
    `store` (the daily run) the day's snapshot is saved first, replacing an earlier one of the day."""
    frames = kpi.Frames(**ledger.kpi_frames(as_of, policy.kpis.window_days, run))
    out = kpi.compute(frames, policy.kpis, policy.lanes, policy.scoring.high_value_minor)
    if store:
        ledger.save_kpi_snapshot(kpi.snapshot_rows(out))
    out["week_over_week"] = kpi.week_over_week(ledger.kpi_snapshots(as_of), as_of)
    return out


def write_page(ledger: Ledger, policy: Policy, report: dict, path: Path, title: str | None = None) -> Path:
    as_of = dt.date.fromisoformat(report["as_of"])
    snaps = ledger.kpi_snapshots(as_of, days=180)
    from tasks.decisions import customer_queue

    open_ = ledger.open_decisions()
    return dashboard.write(path, report, snaps, open_, policy.kpis, title, policy.reporting_currency,
                           customer_queue(ledger, open_.sort_values("id")) if not open_.empty else [])


def _n(value, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value}{suffix}"


def markdown(report: dict, heading: str) -> str:
    """The KPIs for people: money in each currency's own format, shares as percentages, the aging
    as a matrix of buckets by currency, and what the dashboard page shows besides."""
    cur = report["currencies"]
    lines = [f"# {heading}", "", f"As of {report['as_of']}. Amounts per currency, none converted. Formulas: docs/kpis.md.",
             "", "| currency | receivables | overdue | DSO | DSO countback | best possible | ADD | CEI | bad debt |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c, k in cur.items():
        lines.append(f"| {c} | {format_amount(k['ar']['amount'], c)} | {format_amount(k['overdue']['amount'], c)} | "
                     f"{_n(k['dso_standard'])} | {_n(k['dso_countback'])} | {_n(k['best_possible_dso'])} | "
                     f"{_n(k['average_days_delinquent'])} | {_n(k['cei'], '%')} | "
                     f"{format_share(k['bad_debt_rate'], 2)} |")
    if cur:
        lines += ["", "## Aging", "", *aging_matrix({b: {c: {"count": k["aging"][b]["count"], "amount": k["aging"][b]["amount"]}
                                                         for c, k in cur.items()} for b in BUCKETS})]
    if report.get("week_over_week"):
        lines += ["", "## Week over week", "", "| currency | since | AR | overdue | DSO | DSO countback |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for c, w in report["week_over_week"].items():
            lines.append(f"| {c} | {w['compared_with']} | {_signed(w['ar_change'], c)} | "
                         f"{_signed(w['overdue_change'], c)} | {_n(w['dso_standard_change'])} | "
                         f"{_n(w['dso_countback_change'])} |")
    ops = report["operating"]
    match = ops["auto_match_rate"]
    lines += ["", f"## Operations, last {report['window_days']} days", "",
              f"- reminders {ops['reminders_sent']['counted_as']}: {ops['reminders_sent']['messages']} messages",
              f"- replies recorded: {ops['replies_received']['total']}; open disputes: {ops['disputes_open']}",
              f"- stalled accounts: {ops['stalled_accounts']['count']}",
              f"- owner actions pending: {ops['owner_actions_pending']['owner_tasks']} tasks, "
              f"{ops['owner_actions_pending']['decisions']} decisions",
              f"- escalation rate: {format_share(ops['escalation_rate'])}; failed sends: {ops['failed_sends']}; "
              f"failed payments: {ops['failed_payments']}",
              "- cash auto-match rate: " + (f"{format_share(match['rate'])} ({match['auto_matched']} of "
                                            f"{match['payments']} payments)" if match["rate"] is not None
                                            else "n/a (no payments applied in the window)"),
              f"- repeated reminders (should be 0): {ops['repeated_reminders']}"]
    lines += ["", f"## Cash forecast, next {report['forecast']['weeks']} weeks", "",
              "| currency | expected | after the horizon | disputed, not forecast |", "| --- | ---: | ---: | ---: |"]
    for c, f in report["forecast"]["currencies"].items():
        lines.append(f"| {c} | {format_amount(f['total']['amount'], c)} | {format_amount(f['after_horizon']['amount'], c)} | "
                     f"{format_amount(f['disputed_not_forecast']['amount'], c)} |")
    for n in report.get("notes") or []:
        lines += ["", f"> {n}"]
    return "\n".join(lines) + "\n"


def _signed(amount, currency: str) -> str:
    if amount is None:
        return "n/a"
    text = format_amount(str(amount), currency)
    return text if text.startswith("-") else f"+{text}"


def table(report: dict) -> list[dict]:
    rows = []
    for cur, k in report["currencies"].items():
        for key in ("dso_standard", "dso_countback", "best_possible_dso", "average_days_delinquent"):
            rows.append({"currency": cur, "kpi": key.replace("_", " "), "value": _n(k[key])})
        rows.append({"currency": cur, "kpi": "cei", "value": _n(k["cei"], "%")})
        rows.append({"currency": cur, "kpi": "bad debt rate", "value": format_share(k["bad_debt_rate"], 2)})
        for key in ("ar", "current_ar", "overdue", "recovered_value"):
            rows.append({"currency": cur, "kpi": key.replace("_", " "), "value": format_amount(k[key]["amount"], cur)})
        for b, v in k["aging"].items():
            rows.append({"currency": cur, "kpi": f"aging {BUCKET_LABELS[b]}",
                         "value": f"{format_amount(v['amount'], cur)} ({v['count']})"})
    return rows


def page_link(page: Path) -> tuple[str, str]:
    """Where people open a page: under ARFLOW_REPORTS_URL where the reports folder is served (a web
    server, a bucket), else its file on the machine that ran the flow (a browser will not follow a
    file: link from the Prefect UI; the markdown artifact carries what the page shows)."""
    import os

    base = os.environ.get("ARFLOW_REPORTS_URL", "").rstrip("/")
    if base:
        return f"{base}/{page.name}", "The dashboard page, served from the reports folder (ARFLOW_REPORTS_URL)"
    return page.resolve().as_uri(), ("The dashboard page on the machine that ran the flow (set ARFLOW_REPORTS_URL "
                                     "where the reports folder is served to link it here)")


def publish(report: dict, page: Path | None, key: str, heading: str) -> None:
    create_table_artifact(key=f"{key}-table", table=table(report), description=f"{heading}: KPIs per currency")
    create_markdown_artifact(key=f"{key}-report", markdown=markdown(report, heading), description=heading)
    if page is not None:
        link, description = page_link(page)
        create_link_artifact(key=f"{key}-page", link=link, link_text=f"dashboard {report['as_of']}",
                             description=description)


@task(name="record_kpis", cache_policy=NO_CACHE, **RETRY)
def record_kpis(ledger: Ledger, policy: Policy, raw_invoices: pd.DataFrame, as_of: dt.date, run_id: str, mode: str,
                data_dir: Path) -> dict:
    """The daily run's KPIs: register the source's new invoices, compute, store the day's
    snapshot, write the day's page (data/reports/dashboard-<as_of>.html, and dashboard.html as the
    latest) and publish the artifacts."""
    ledger.register_invoices(kpi.register_rows(raw_invoices, ledger.registered_invoice_ids(), as_of))
    report = kpi_report(ledger, policy, as_of, {"run_id": run_id, "as_of": as_of, "mode": mode}, store=True)
    reports = Path(data_dir) / "reports"
    page = write_page(ledger, policy, report, reports / f"dashboard-{as_of.isoformat()}.html")  # one page a day
    latest = reports / "dashboard.html"  # and the latest day's, under one name
    tmp = latest.with_suffix(".tmp")
    shutil.copyfile(page, tmp)
    tmp.replace(latest)
    publish(report, page, "ar-kpis", f"AR KPIs {as_of}")
    return report


@task(name="brief_report", cache_policy=NO_CACHE, **RETRY)
def brief_report(ledger: Ledger, policy: Policy, as_of: dt.date, data_dir: Path) -> tuple[dict, Path]:
    report = kpi_report(ledger, policy, as_of)
    page = write_page(ledger, policy, report, Path(data_dir) / "reports" / f"brief-{as_of.isoformat()}.html",
                      f"arflow: collections brief, week to {as_of}")
    publish(report, page, "collections-brief", f"Collections brief {as_of}")
    return report, page


@flow(name="collections_brief", flow_run_name=day_run_name("collections-brief", with_mode=False),
      on_failure=[notify_failure], on_crashed=[notify_failure])
@redacted_errors
def collections_brief(as_of: dt.date | None = None) -> dict:
    """The weekly brief: the KPIs with their week-over-week change, the forecast and the decision
    queue, as artifacts and a page (data/reports/brief-<as_of>.html).

    Args:
        as_of: the last day of the week reported (default: today in the company's timezone).
    """
    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    as_of = as_of or today_in(settings.timezone or policy.timezone)
    report, page = brief_report(Ledger(settings.db_url), policy, as_of, settings.data_dir)
    get_run_logger().info("collections brief %s written to %s", as_of, page)
    from prefect.runtime import flow_run

    return {"as_of": as_of.isoformat(), "page": str(page), "flow_run_id": str(flow_run.id), "kpis": report}
