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
