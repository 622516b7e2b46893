"""The systems arflow connects, and the one spelling of a source the flows pass around: the billing
source with an optional CRM laid over it, `quickbooks+salesforce`. Nothing heavy is imported here:
the CLI checks its arguments with it before any run starts."""

from __future__ import annotations

from dataclasses import dataclass

BILLING_SYSTEMS = ("quickbooks", "xero", "stripe", "chargebee")
CRM_SYSTEMS = ("salesforce", "hubspot")


# A source spec as the deployments' form takes it (a JSON-schema pattern the server checks when a
# run is created): demo, csv:FOLDER or a billing system, optionally +CRM.
SOURCE_PATTERN = (r"^(demo|csv:.+|" + "|".join(BILLING_SYSTEMS) + r")(\+(" + "|".join(CRM_SYSTEMS) + r"))?$")
SOURCE_EXAMPLES = ["demo", "csv:/data/export", "quickbooks+salesforce", "xero+hubspot", "stripe", "chargebee+hubspot"]


@dataclass(frozen=True)
class SourceSpec:
    """`billing`: demo, csv:DIR or a billing system; `crm`: a CRM or None."""
    billing: str
    crm: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "SourceSpec":
        billing, _, crm = str(spec).partition("+")
        return cls(billing, crm or None)

    def __str__(self) -> str:
        return f"{self.billing}+{self.crm}" if self.crm else self.billing


def source_spec(source: str, crm: str | None) -> str:
    """The one string the flows pass around for a billing source and an optional CRM."""
    return str(SourceSpec(source, crm))
