"""Auto-match rate and precision of cash application on a harder generated set; prints JSON.

    python benchmarks/cash_application.py --payments 5000 --seed 3

Each generated payment knows the invoices it really pays (ground truth). The mix is meant to be
hard: references with typos or none, payers known by name only, several invoices per payment,
partial and over-payments, customers with several invoices of the same amount (subscriptions),
and cash nobody can place. Precision = automatic matches that went to exactly the right invoices.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.cash import OpenBook, apply_all  # noqa: E402

KINDS = {"exact_ref": 0.35, "typo_ref": 0.08, "no_ref_amount": 0.15, "payer_name_only": 0.08,
         "multi_no_ref": 0.10, "partial_ref": 0.08, "overpaid_ref": 0.04, "unidentifiable": 0.07, "ref_in_text": 0.05}


def generate(n_payments: int, seed: int):
    rng = np.random.default_rng(seed)
    n_customers = max(20, n_payments // 4)
    rows, customers = [], []
    for c in range(n_customers):
        cid = f"C{c:05d}"
        customers.append({"customer_id": cid, "name": f"Customer {c} Holdings"})
        subscription = rng.random() < 0.3  # same amount every month: hard for amount-only matching
        base = int(rng.integers(5_000, 500_000))
        for k in range(int(rng.integers(1, 7))):
            amt = base if subscription else int(rng.integers(5_000, 500_000))
            rows.append({"invoice_id": f"{cid}-{k}", "invoice_number": f"{100000 + len(rows)}", "customer_id": cid,
                         "currency": "USD", "due_date": pd.Timestamp("2026-06-01") + pd.Timedelta(days=30 * k),
                         "issue_date": pd.Timestamp("2026-05-01") + pd.Timedelta(days=30 * k), "balance_minor": amt})
    invoices = pd.DataFrame(rows)
    by_customer = {c: g for c, g in invoices.groupby("customer_id")}
    kinds = rng.choice(list(KINDS), n_payments, p=list(KINDS.values()))
    payments, truth, used = [], {}, set()
    for n, kind in enumerate(kinds):
        cid = f"C{int(rng.integers(n_customers)):05d}"
        g = by_customer[cid]
        free = g[~g["invoice_id"].isin(used)]
        if free.empty:
            continue
        inv = free.iloc[0]
        pid = f"P{n}"
        p = {"payment_id": pid, "customer_id": cid, "currency": "USD", "payer_name": None,
             "received_date": pd.Timestamp("2026-11-20") + pd.Timedelta(minutes=n), "reference": ""}
        if kind == "exact_ref":
            p.update(amount_minor=inv.balance_minor, reference=f"Invoice {inv.invoice_number}"); truth[pid] = {inv.invoice_id}
        elif kind == "ref_in_text":
            p.update(amount_minor=inv.balance_minor, reference=f"pmt for inv#{inv.invoice_number} thx"); truth[pid] = {inv.invoice_id}
        elif kind == "typo_ref":
            wrong = inv.invoice_number[:-2] + inv.invoice_number[-1] + inv.invoice_number[-2]
            p.update(amount_minor=inv.balance_minor, reference=f"INV {wrong}", customer_id=None); truth[pid] = {inv.invoice_id}
        elif kind == "no_ref_amount":
            p.update(amount_minor=inv.balance_minor); truth[pid] = {inv.invoice_id}
        elif kind == "payer_name_only":
            p.update(amount_minor=inv.balance_minor, customer_id=None, payer_name=f"CUSTOMER {cid[1:].lstrip('0') or '0'} HOLDINGS")
            truth[pid] = {inv.invoice_id}
        elif kind == "multi_no_ref":
            two = free.iloc[:2]
            p.update(amount_minor=int(two["balance_minor"].sum())); truth[pid] = set(two["invoice_id"])
        elif kind == "partial_ref":
            p.update(amount_minor=inv.balance_minor // 3, reference=str(inv.invoice_number)); truth[pid] = {inv.invoice_id}
        elif kind == "overpaid_ref":
            p.update(amount_minor=inv.balance_minor + 1234, reference=str(inv.invoice_number)); truth[pid] = {inv.invoice_id}
        else:
            p.update(amount_minor=int(rng.integers(100, 999_999)), customer_id=None, reference="DEPOSIT"); truth[pid] = set()
        used |= truth[pid]
        payments.append(p)
    return invoices, pd.DataFrame(customers), pd.DataFrame(payments), truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payments", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    invoices, customers, payments, truth = generate(args.payments, args.seed)
    t = time.perf_counter()
    outcomes = apply_all(OpenBook(invoices, customers), payments)
    seconds = time.perf_counter() - t
    matched = [o for o in outcomes if o.status != "unapplied"]
    correct = [o for o in matched if {a["invoice_id"] for a in o.applications} == truth[o.payment_id]]
    placeable = [p for p, inv in truth.items() if inv]
    by_rule: dict[str, int] = {}
    for o in matched:
        by_rule[o.rule] = by_rule.get(o.rule, 0) + 1
    print(json.dumps({
        "payments": len(payments), "seconds": round(seconds, 2),
        "auto_match_rate": round(len(matched) / len(payments), 4),
        "auto_match_rate_of_placeable": round(len(matched) / len(placeable), 4),
        "precision": round(len(correct) / len(matched), 4) if matched else None,
        "wrong_matches": len(matched) - len(correct),
        "flagged_for_review": sum(o.needs_review for o in matched),
        "by_rule": dict(sorted(by_rule.items())),
    }))


if __name__ == "__main__":
    main()
