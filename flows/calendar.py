"""One calendar for the schedules and for backfill: the company's business days (the policy's
`company_country`, weekends and public holidays). The deployments' cron fires Monday to Friday; a
run the schedule created for a public holiday does nothing and says why, so the days that scheduled
runs act on are exactly the days a backfill of the same range replays. A run started by hand, an
event or the CLI for a holiday runs as asked."""

from __future__ import annotations

import datetime as dt

from arflow.businessdays import why_not_business_day


def scheduled_skip(as_of: dt.date, company_country: str) -> str | None:
    """Why this scheduled run of `as_of` skips the day, or None (a business day, or not a scheduled run)."""
    what = why_not_business_day(as_of, company_country)
    if what is None or not _created_by_schedule():
        return None
    return (f"{as_of} is not a business day in {company_country} ({what}): the scheduled run skips it, "
            "as a backfill does")


def _created_by_schedule() -> bool:
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment, flow_run

    if not deployment.id or not flow_run.id:
        return False
    with get_client(sync_client=True) as client:
        return bool(client.read_flow_run(flow_run.id).auto_scheduled)
