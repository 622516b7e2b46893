"""Steps `prefect deploy` runs from prefect.yaml.

The deployments' pull step moves each flow run into the folder named by the Prefect variable
`arflow_home` (the checkout with the project's policy, prompts and data folder on the worker's
machine), so a deployment is not tied to the folder it happened to be deployed from. The build step
below seeds that variable with the deploying folder the first time, so a first deploy on one
machine just works; a team whose workers run elsewhere sets it once (`prefect variable set
arflow_home /srv/arflow --overwrite`) and later deploys leave it alone.
"""

from __future__ import annotations

import os

VARIABLE = "arflow_home"


def upgrade_ledger() -> dict:
    """The deployments' pull step after the working folder: bring the ledger (ARFLOW_DB_URL, as the
    flow will open it) to this checkout's newest migration before the flow opens it, as `arflow db
    upgrade` does (under one lock, so runs starting together wait for one another). Returns
    {"ledger_migration": the migration in effect}."""
    from arflow.config import Settings
    from connectors.ledger.store import Ledger

    ledger = Ledger(Settings.from_env().db_url, migrate=True)
    return {"ledger_migration": ledger.revisions()[0]}


def ensure_home_variable(directory: str | None = None) -> dict:
    """Set `arflow_home` to `directory` (default: the current folder) unless it is already set.
    Returns {"arflow_home": the value in effect}."""
    from prefect.variables import Variable

    current = Variable.get(VARIABLE, default=None)
    if current:
        return {VARIABLE: current}
    value = os.path.abspath(directory or os.getcwd())
    Variable.set(VARIABLE, value, overwrite=True)
    return {VARIABLE: value}
