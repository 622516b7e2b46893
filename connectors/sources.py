"""Billing and CRM sources behind one small interface.

A source hands over raw rows as strings in the CSV format of DESIGN.md (one column per field, a
``source_row`` number added); parsing, validation and quarantine happen in the extract hop, so every
source gets the same checks. QuickBooks, Stripe and Salesforce implement the same methods.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

INVOICE_COLUMNS = ("invoice_id", "customer_id", "invoice_number", "issue_date", "due_date", "terms", "currency",
                   "amount", "balance", "status", "autopay", "payment_link", "po_number")
CUSTOMER_COLUMNS = ("customer_id", "name", "segment", "arr", "tenure_months", "nps", "health", "renewal_date",
                    "owner_ae_email", "owner_csm_email", "billing_contact_name", "billing_contact_email", "country",
                    "opt_out", "paused_until")
PAYMENT_COLUMNS = ("payment_id", "customer_id", "amount", "currency", "received_date", "reference")
AGING_COLUMNS = ("customer_id", "current", "d1_30", "d31_60", "d61_90", "d91_plus", "total")


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
    """`demo` or `csv:DIR` (QuickBooks and Stripe arrive with the connectors issue); an object that
    already has the source interface (the simulator's world) is returned as it is."""
    if not isinstance(spec, str):
        return spec
    if spec == "demo":
        from arflow import demo

        folder = demo.ensure_demo(data_dir / "demo", anchor=as_of)
        return DemoSource(folder)
    if spec.startswith("csv:"):
        return CsvSource(spec[4:])
    raise SourceError(f"unknown source {spec!r}: use demo or csv:DIR")
