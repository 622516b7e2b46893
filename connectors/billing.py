"""The billing connector's write side: the due-date auto-charge.

`DemoBilling` is the demo's billing system: a customer's payment method on file is in
`payment_methods.csv` (customer_id, method, status) and a successful charge is a payment the
billing system reports (a row in `payments.csv`), which the payment checkpoint applies like any
other. Stripe's charge arrives with the connectors issue behind the same `charge` method.
"""

from __future__ import annotations

import csv
import hashlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from connectors.systems import SourceSpec


@dataclass(frozen=True)
class ChargeResult:
    ok: bool
    charge_id: str | None = None
    error: str | None = None      # why the charge failed (card_expired, insufficient_funds, no_payment_method)


class DemoBilling:
    name = "demo"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _methods(self) -> dict[str, dict]:
        path = self.folder / "payment_methods.csv"
        if not path.exists():
            return {}
        with open(path, newline="") as fh:
            return {r["customer_id"]: r for r in csv.DictReader(fh)}

    def charge(self, *, invoice_id: str, invoice_number: str, customer_id: str, amount: str, currency: str,
               idempotency_key: str, on: dt.date) -> ChargeResult:
        """Charge the method on file. The same idempotency key never charges twice (as Stripe's
        Idempotency-Key header): a repeat returns the first result."""
        charge_id = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        payments = self.folder / "payments.csv"
        if payments.exists() and charge_id in payments.read_text():
            return ChargeResult(ok=True, charge_id=charge_id)
        method = self._methods().get(customer_id)
        if method is None:
            return ChargeResult(ok=False, error="no_payment_method")
        if method.get("status", "valid") != "valid":
            return ChargeResult(ok=False, error=method["status"])
        new_file = not payments.exists()
        with open(payments, "a", newline="") as fh:
            w = csv.writer(fh)
            if new_file:
                w.writerow(["payment_id", "customer_id", "amount", "currency", "received_date", "reference"])
            w.writerow([charge_id, customer_id, amount, currency, on.isoformat(),
                        f"Invoice {invoice_number} auto-charge"])
        return ChargeResult(ok=True, charge_id=charge_id)


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
