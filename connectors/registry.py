"""Opening a system by its name: the one place that knows every source, CRM and charger arflow
connects. The systems import the shared types of `connectors/sources.py`; only this module imports the
systems (lazily: a run opens only what its source spec names), so the connectors have no cycle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from connectors.billing import DemoBilling
from connectors.sources import CombinedSource, CsvSource, DemoSource, SourceError
from connectors.systems import BILLING_SYSTEMS, CRM_SYSTEMS, SourceSpec


def open_source(spec, *, data_dir: Path, as_of: dt.date):
    """`demo`, `csv:DIR`, `quickbooks`, `xero`, `stripe` or `chargebee`, optionally `+salesforce` or `+hubspot` for the customer context
    from the CRM (the flows' `crm` parameter, the CLI's `--crm`); an object that already has the
    source interface (the simulator's world) is returned as it is."""
    if not isinstance(spec, str):
        return spec
    parsed = SourceSpec.parse(spec)
    billing_spec, crm = parsed.billing, parsed.crm
    billing = _open_billing(billing_spec, data_dir=data_dir, as_of=as_of)
    if not crm:
        return billing
    return CombinedSource(billing, open_crm(crm, as_of=as_of))


def open_crm(crm: str, *, as_of: dt.date):
    """The CRM named in a source spec (salesforce, hubspot), from its block or the environment."""
    if crm not in CRM_SYSTEMS:
        raise SourceError(f"unknown CRM {crm!r}: use {' or '.join(CRM_SYSTEMS)}")
    from arflow.blocks import connection

    settings, _block = connection(crm)
    if crm == "hubspot":
        from connectors.hubspot import HubSpotCrm

        return HubSpotCrm(settings, as_of=as_of)
    from connectors.salesforce import SalesforceCrm

    return SalesforceCrm(settings, as_of=as_of)


def _open_billing(spec: str, *, data_dir: Path, as_of: dt.date):
    if spec == "demo":
        from arflow import demo

        folder = demo.ensure_demo(data_dir / "demo", anchor=as_of)
        return DemoSource(folder)
    if spec.startswith("csv:"):
        return CsvSource(spec[4:])
    if spec in BILLING_SYSTEMS:
        from arflow.blocks import connection

        settings, block = connection(spec)
        if spec == "quickbooks":
            from connectors.quickbooks import QuickBooksSource

            return QuickBooksSource(settings, as_of=as_of, data_dir=data_dir, block=block)
        if spec == "xero":
            from connectors.xero import XeroSource

            return XeroSource(settings, as_of=as_of, data_dir=data_dir, block=block)
        if spec == "chargebee":
            from connectors.chargebee import ChargebeeSource

            return ChargebeeSource(settings, as_of=as_of)
        from connectors.stripe_billing import StripeSource

        return StripeSource(settings, as_of=as_of)
    raise SourceError(f"unknown source {spec!r}: use demo, csv:DIR, quickbooks, xero, stripe or chargebee")


def billing_for(source: str, data_dir: Path):
    """The billing connector of a source: the demo's; a CSV folder's where it holds
    payment_methods.csv (the same file-based billing); otherwise None (no auto-charge)."""
    source = SourceSpec.parse(source).billing  # a CRM does not charge
    if source == "stripe":
        from arflow.blocks import connection
        from connectors.stripe_billing import StripeBilling

        return StripeBilling(connection("stripe")[0])
    if source == "chargebee":
        from arflow.blocks import connection
        from connectors.chargebee import ChargebeeBilling

        return ChargebeeBilling(connection("chargebee")[0])
    if source == "demo":
        return DemoBilling(data_dir / "demo")
    if source.startswith("csv:") and (Path(source[4:]) / "payment_methods.csv").exists():
        return DemoBilling(source[4:])
    return None
