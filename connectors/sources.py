"""Billing and CRM sources behind one small interface.

A source hands over raw rows as strings in the CSV format of DESIGN.md (one column per field, a
``source_row`` number added); parsing, validation and quarantine happen in the extract hop, so every
source gets the same checks. QuickBooks, Xero, Stripe and Salesforce implement the same methods.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from connectors.systems import BILLING_SYSTEMS, CRM_SYSTEMS, SourceSpec, source_spec  # noqa: F401 - the names callers use

INVOICE_COLUMNS = ("invoice_id", "customer_id", "invoice_number", "issue_date", "due_date", "terms", "currency",
                   "amount", "balance", "status", "autopay", "payment_link", "po_number")
CUSTOMER_COLUMNS = ("customer_id", "name", "segment", "arr", "tenure_months", "nps", "health", "renewal_date",
                    "owner_ae_email", "owner_csm_email", "billing_contact_name", "billing_contact_email", "country",
                    "opt_out", "paused_until")
PAYMENT_COLUMNS = ("payment_id", "customer_id", "amount", "currency", "received_date", "reference")
AGING_COLUMNS = ("customer_id", "current", "d1_30", "d31_60", "d61_90", "d91_plus", "total")
CREDIT_NOTE_COLUMNS = ("credit_note_id", "customer_id", "credit_note_number", "issue_date", "currency", "amount",
                       "invoice_id", "allocated", "allocated_date")
SCHEDULE_COLUMNS = ("invoice_id", "due_date", "amount")


def tenure_months(since: dt.date | str | None, as_of: dt.date) -> str:
    """Whole months from `since` (a date or ISO text) to as_of, as the CSV format's text; empty
    where since is unknown."""
    if isinstance(since, str):
        try:
            since = dt.date.fromisoformat(since[:10])
        except ValueError:
            return ""
    if since is None:
        return ""
    return str(max(0, (as_of.year - since.year) * 12 + as_of.month - since.month))


def string_frame(rows: list[dict], columns) -> pd.DataFrame:
    """A connected system's records as the CSV format's text frame: these columns (a missing value
    empty), and `source_row`, the record's place in what was read (1 = the first)."""
    df = pd.DataFrame(rows, columns=list(columns), dtype=object).fillna("").astype(str)
    df.insert(0, "source_row", range(1, len(df) + 1))
    return df


class SourceError(RuntimeError):
    """A source could not be read at all (as opposed to a bad row, which is quarantined)."""


@runtime_checkable
class BillingSource(Protocol):
    name: str

    def invoices(self) -> pd.DataFrame: ...
    def payments(self) -> pd.DataFrame | None: ...
    def aging_report(self) -> pd.DataFrame | None: ...
    def reflected_payment_ids(self) -> set[str]: ...


@runtime_checkable
class CrmSource(Protocol):
    name: str

    def customers(self) -> pd.DataFrame: ...


def read_csv_strings(path: Path, required: tuple[str, ...], *, what: str) -> pd.DataFrame:
    """Read a CSV as strings; a missing file or missing columns is a SourceError."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError(f"{what}: file not found: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"{what}: cannot parse {path}: {str(exc).splitlines()[0]}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SourceError(f"{what}: {path} lacks column(s) {', '.join(missing)}")
    df = df.apply(lambda s: s.str.strip())
    df.insert(0, "source_row", range(2, len(df) + 2))  # the line number in the file (header is 1)
    return df


class CsvSource:
    """A folder in the DESIGN.md CSV format: billing and CRM in one."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.name = f"csv:{self.folder}"
        if not self.folder.is_dir():
            raise SourceError(f"csv source: {self.folder} is not a folder")

    def invoices(self) -> pd.DataFrame:
        return read_csv_strings(self.folder / "invoices.csv", INVOICE_COLUMNS, what="invoices")

    def customers(self) -> pd.DataFrame:
        return read_csv_strings(self.folder / "customers.csv", CUSTOMER_COLUMNS, what="customers")

    def payments(self) -> pd.DataFrame | None:
        path = self.folder / "payments.csv"
        return read_csv_strings(path, PAYMENT_COLUMNS, what="payments") if path.exists() else None

    def aging_report(self) -> pd.DataFrame | None:
        path = self.folder / "aging_report.csv"
        return read_csv_strings(path, AGING_COLUMNS, what="aging report") if path.exists() else None

    def reflected_payment_ids(self) -> set[str]:
        # The CSV format does not say which payments its balances already include.
        return set()

    def credit_notes(self) -> pd.DataFrame | None:
        """credit_notes.csv (optional): credit notes and their allocations (tasks/credits.py)."""
        path = self.folder / "credit_notes.csv"
        return read_csv_strings(path, CREDIT_NOTE_COLUMNS, what="credit notes") if path.exists() else None

    def payment_schedule(self) -> pd.DataFrame | None:
        """payment_schedule.csv (optional): instalments of invoices with a payment schedule."""
        path = self.folder / "payment_schedule.csv"
        return read_csv_strings(path, SCHEDULE_COLUMNS, what="payment schedule") if path.exists() else None


class DemoSource(CsvSource):
    """The generated demo portfolio (arflow/demo.py): a CSV folder plus the ledger records a running
    installation would hold, written into the ledger once."""

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        self.name = "demo"

    def prepare_ledger(self, ledger) -> None:
        from arflow import demo

        demo.seed_ledger(ledger, self.folder)


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


class CombinedSource:
    """A billing source with the customer context from a CRM: the billing system's customers
    (names, billing e-mail, country), with every field the CRM holds for the linked account laid
    over them. A billing customer the CRM does not know keeps the billing system's fields, and the
    run's notes count them."""

    def __init__(self, billing, crm):
        self.billing, self.crm = billing, crm
        self.name = f"{billing.name}+{crm.name}"
        self._crm_frame: pd.DataFrame | None = None
        self.unmatched: list[str] = []

    def prepare_ledger(self, ledger) -> None:
        if hasattr(self.billing, "prepare_ledger"):
            self.billing.prepare_ledger(ledger)

    def invoices(self) -> pd.DataFrame:
        return self.billing.invoices()

    def payments(self) -> pd.DataFrame | None:
        return self.billing.payments()

    def aging_report(self) -> pd.DataFrame | None:
        return self.billing.aging_report()

    def reflected_payment_ids(self) -> set[str]:
        return self.billing.reflected_payment_ids()

    def credit_notes(self) -> pd.DataFrame | None:
        return self.billing.credit_notes() if hasattr(self.billing, "credit_notes") else None

    def payment_schedule(self) -> pd.DataFrame | None:
        return self.billing.payment_schedule() if hasattr(self.billing, "payment_schedule") else None

    def fresh_invoices(self, ids: set[str]) -> pd.DataFrame:
        if hasattr(self.billing, "fresh_invoices"):
            return self.billing.fresh_invoices(ids)
        raw = self.billing.invoices()
        return raw[raw["invoice_id"].isin(ids)]

    def fresh_customers(self, ids: set[str]) -> pd.DataFrame:
        base = self.billing.fresh_customers(ids) if hasattr(self.billing, "fresh_customers") else \
            self.billing.customers()
        return self._overlay(base[base["customer_id"].isin(ids)])

    def customers(self) -> pd.DataFrame:
        return self._overlay(self.billing.customers())

    def _overlay(self, base: pd.DataFrame) -> pd.DataFrame:
        if self._crm_frame is None:
            self._crm_frame = self.crm.customers().drop_duplicates("customer_id", keep="first").set_index("customer_id")
        crm = self._crm_frame
        out = base.copy()
        known = out["customer_id"].isin(crm.index)
        self.unmatched = sorted(set(out.loc[~known, "customer_id"]) - {""})
        for col in crm.columns:
            if col == "source_row":
                continue
            values = out.loc[known, "customer_id"].map(crm[col]).fillna("")
            if col not in out:
                out[col] = ""
            keep = values != ""
            out.loc[values[keep].index, col] = values[keep]
        return out

    def notes(self) -> list[str]:
        notes = list(self.billing.notes()) if hasattr(self.billing, "notes") else []
        owing = set(self.billing.invoices()["customer_id"]) if self.unmatched else set()
        unmatched = [c for c in self.unmatched if c in owing]  # the ones this run acts for
        if unmatched:
            notes.append(f"{self.crm.name}: {len(unmatched)} billing customer(s) with open invoices have no linked "
                         f"account ({', '.join(unmatched[:10])}{'…' if len(unmatched) > 10 else ''}): segment "
                         "standard and no health data for them.")
        return notes

    def check(self) -> dict:
        return {"billing": self.billing.check(), "crm": self.crm.check()}
