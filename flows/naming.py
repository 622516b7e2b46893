"""Flow run names that say what a run is (`daily-ar 2026-11-23 dry-run`, `backfill
2026-10-01..2026-10-31`), so runs in the Prefect UI can be told apart. Each is a callable Prefect
evaluates when the run starts, from the run's own parameters."""

from __future__ import annotations

from typing import Callable


def current_run_id() -> str:
    """The run's id in the ledger: the Prefect flow run's id, or a fresh one outside a flow run."""
    import uuid

    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def _default_day() -> str:
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy

    settings = Settings.from_env()
    return today_in(settings.timezone or load_policy(settings.policy_path).timezone).isoformat()


def day_run_name(label: str, *, with_mode: bool = True) -> Callable[[], str]:
    """`<label> <as_of> [<mode>]`; as_of defaults to today in the company's timezone, as the flow's does."""
    def name() -> str:
        from prefect.runtime import flow_run

        p = flow_run.parameters
        as_of = p.get("as_of")
        parts = [label, str(as_of) if as_of else _default_day()]
        if with_mode:
            parts.append(str(p.get("mode") or "dry-run"))
        return " ".join(parts)

    name.__name__ = f"{label.replace('-', '_')}_run_name"
    return name


def backfill_run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    return f"backfill {p.get('start')}..{p.get('end')}"
