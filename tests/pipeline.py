"""Run the pure hops in flow order, without Prefect (the flow composes the same functions)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from connectors.sources import CsvSource
from tasks import hops


def inputs_from(folder, as_of, ledger=None) -> hops.Inputs:
    """`folder`: a CSV folder, or a connected source (QuickBooks, Stripe) read through the same methods."""
    src = CsvSource(folder) if isinstance(folder, (str, Path)) else folder
    empty = pd.DataFrame(columns=["invoice_id", "customer_id", "payment_id", "amount_minor", "paid_date", "due_date"])
    return hops.Inputs(
        source=src.name, invoices=src.invoices(), customers=src.customers(), payments=src.payments(),
        aging_report=src.aging_report(), reflected_payment_ids=src.reflected_payment_ids(),
        stops=ledger.stop_records(as_of) if ledger else {}, history=ledger.payment_history(as_of) if ledger else empty,
        applied=ledger.applied_payments(as_of) if ledger else empty, credit_notes=src.credit_notes(),
        payment_schedule=src.payment_schedule() if hasattr(src, "payment_schedule") else None, as_of=as_of)


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


def checkpoint(folder, as_of, policy, ledger, bank_file=None):
    """The payment checkpoint's steps in flow order (flows/payment_checkpoint.py), without Prefect:
    read the payments, age the invoices with the ledger's applications, apply, record."""
    from connectors.bank import read_bank_file
    from connectors.ledger import models as m
    from tasks.checkpoint import billing_payments, run_checkpoint, summarize
    from tasks.touches import receipt_rows

    inputs = inputs_from(folder, as_of, ledger)
    payments, quarantined = billing_payments(inputs.payments)
    if bank_file is not None:
        bank, bq = read_bank_file(bank_file)
        payments = pd.concat([f for f in (payments, bank) if not f.empty] or [payments], ignore_index=True)
        quarantined = pd.concat([quarantined, bq], ignore_index=True)
    extracted, _customers = hops.extract_aging(inputs, as_of, policy)
    result = run_checkpoint(payments, ledger.frame(m.PaymentReceived), extracted.frame, inputs.customers, as_of, policy)
    receipts = receipt_rows(result.closed, extracted.frame, inputs.customers, mode="dry-run", run_id="t", as_of=as_of)
    written = ledger.record_checkpoint(result, receipts, as_of, "t")
    summary = summarize(result, payments_read=len(payments) + len(quarantined), quarantined=len(quarantined),
                        receipts_queued=written["receipts_queued"], as_of=as_of, run_id="t")
    return summary, result
