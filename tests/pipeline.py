"""Run the pure hops in flow order, without Prefect (the flow composes the same functions)."""

from __future__ import annotations

import pandas as pd

from connectors.sources import CsvSource
from tasks import hops


def inputs_from(folder, as_of, ledger=None) -> hops.Inputs:
    src = CsvSource(folder)
    empty = pd.DataFrame(columns=["invoice_id", "customer_id", "payment_id", "amount_minor", "paid_date", "due_date"])
    return hops.Inputs(
        source=src.name, invoices=src.invoices(), customers=src.customers(), payments=src.payments(),
        aging_report=src.aging_report(), reflected_payment_ids=src.reflected_payment_ids(),
        stops=ledger.stop_records(as_of) if ledger else {}, history=ledger.payment_history(as_of) if ledger else empty,
        applied=ledger.applied_payments(as_of) if ledger else empty)


def run(folder, as_of, policy, ledger=None, done_keys=frozenset(), touches=None, installments=None):
    inputs = inputs_from(folder, as_of, ledger)
    extracted, customers = hops.extract_aging(inputs, as_of, policy)
    rec, rec_hop = hops.reconcile_aging(extracted.frame, inputs, policy)
    enriched = hops.enrich_context(extracted.frame, customers, inputs, as_of, policy)
    scored = hops.score(enriched.frame, policy)
    if ledger is not None and touches is None:
        touches = ledger.touch_history("live")
        installments = ledger.plan_schedule(as_of) if installments is None else installments
    planned, actions = hops.plan_actions(scored.frame, as_of, policy, mismatched=set(rec.mismatched_customers),
                                         done_keys=set(done_keys), touches=touches, installments=installments)
    quarantine = pd.concat([h.quarantine for h in (extracted, rec_hop, enriched, scored, planned)], ignore_index=True)
    return {"extracted": extracted, "reconciliation": rec, "planned": planned.frame, "actions": actions,
            "quarantine": quarantine, "customers": customers}
