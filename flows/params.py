"""Flow parameters as the deployments' form shows them and the Prefect server checks them when a
run is created (a value outside the schema is refused there, not an hour later in the worker)."""

from __future__ import annotations

from typing import Annotated

from pydantic import WithJsonSchema

from connectors.systems import SOURCE_EXAMPLES, SOURCE_PATTERN

# demo, csv:FOLDER or a billing system, optionally +CRM: `quickbook`, `csv` without a folder or
# `+zendesk` never reach a worker.
Source = Annotated[str, WithJsonSchema({"type": "string", "pattern": SOURCE_PATTERN, "examples": SOURCE_EXAMPLES})]
