"""Auto-match rate and precision of cash application on a generated set; prints JSON.

    python benchmarks/cash_application.py --payments 5000 --seed 3
    python benchmarks/cash_application.py --payments 5000 --seed 7 --set harder

Each generated payment knows the invoices it really pays (ground truth). The `standard` mix is
meant to be hard: references with typos or none, payers known by name only, several invoices per
payment, partial and over-payments, customers with several invoices of the same amount
(subscriptions), and cash nobody can place. `harder` adds more mistyped references (a swap or one
wrong digit, some onto another customer's invoice number), bundled payments (named or not), short
payments (a bank fee within the tolerance), blank payers named only in the reference text, and
over-payments without a reference. Precision = automatic matches that went to exactly the right
invoices. The JSON gives every rule's share of the matches and the match rate per kind of payment.
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

from tasks.cash import OpenBook, Rules, apply_all  # noqa: E402

KINDS = {"exact_ref": 0.35, "typo_ref": 0.08, "no_ref_amount": 0.15, "payer_name_only": 0.08,
         "multi_no_ref": 0.10, "partial_ref": 0.08, "overpaid_ref": 0.04, "unidentifiable": 0.07, "ref_in_text": 0.05}
HARDER = {"exact_ref": 0.18, "typo_ref": 0.10, "typo_digit": 0.08, "no_ref_amount": 0.08, "payer_name_only": 0.06,
          "blank_payer_name_in_ref": 0.08, "multi_no_ref": 0.07, "multi_ref": 0.06, "partial_ref": 0.05,
          "overpaid_ref": 0.03, "overpaid_no_ref": 0.03, "short_fee_ref": 0.05, "short_fee_no_ref": 0.04,
          "unidentifiable": 0.06, "ref_in_text": 0.03}
# The harder set's policy: bank fees up to 5.00 and 1% written off to a named account.
HARDER_RULES = Rules(tolerance="5.00", tolerance_percent=1.0, write_off_account="6800 Bank charges")


def generate(n_payments: int, seed: int, mix: dict[str, float] = KINDS):
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
    kinds = rng.choice(list(mix), n_payments, p=list(mix.values()))
    payments, truth, kind_of, used = [], {}, {}, set()
    for n, kind in enumerate(kinds):
        cid = f"C{int(rng.integers(n_customers)):05d}"
        g = by_customer[cid]
        free = g[[i not in used for i in g["invoice_id"]]]   # a set lookup per row (isin copies the set)
        if free.empty:
            continue
        inv = free.iloc[0]
        pid = f"P{n}"
        p = {"payment_id": pid, "customer_id": cid, "currency": "USD", "payer_name": None,
             "received_date": pd.Timestamp("2026-11-20") + pd.Timedelta(minutes=n), "reference": ""}
        number = inv.invoice_number
        if kind == "exact_ref":
            p.update(amount_minor=inv.balance_minor, reference=f"Invoice {number}"); truth[pid] = {inv.invoice_id}
        elif kind == "ref_in_text":
            p.update(amount_minor=inv.balance_minor, reference=f"pmt for inv#{number} thx"); truth[pid] = {inv.invoice_id}
        elif kind == "typo_ref":  # two digits swapped, the payer unknown
            wrong = number[:-2] + number[-1] + number[-2]
            p.update(amount_minor=inv.balance_minor, reference=f"INV {wrong}", customer_id=None); truth[pid] = {inv.invoice_id}
        elif kind == "typo_digit":  # one digit mistyped (often another invoice's number), the payer known
            pos = int(rng.integers(2, len(number)))
            digit = str((int(number[pos]) + int(rng.integers(1, 9))) % 10)
            p.update(amount_minor=inv.balance_minor, reference=f"INV {number[:pos]}{digit}{number[pos + 1:]}")
            truth[pid] = {inv.invoice_id}
        elif kind == "no_ref_amount":
            p.update(amount_minor=inv.balance_minor); truth[pid] = {inv.invoice_id}
        elif kind == "payer_name_only":
            p.update(amount_minor=inv.balance_minor, customer_id=None, payer_name=f"CUSTOMER {cid[1:].lstrip('0') or '0'} HOLDINGS")
            truth[pid] = {inv.invoice_id}
        elif kind == "blank_payer_name_in_ref":  # no payer on the bank line; the name is in the text
            p.update(amount_minor=inv.balance_minor, customer_id=None, payer_name="",
                     reference=f"TRF CUSTOMER {cid[1:].lstrip('0') or '0'} HOLDINGS MONTHLY")
            truth[pid] = {inv.invoice_id}
        elif kind == "multi_no_ref":
            two = free.iloc[:2]
            p.update(amount_minor=int(two["balance_minor"].sum())); truth[pid] = set(two["invoice_id"])
        elif kind == "multi_ref":  # a bundled payment naming its invoices
            some = free.iloc[:int(rng.integers(2, 4))]
            p.update(amount_minor=int(some["balance_minor"].sum()),
                     reference="Invoices " + ", ".join(some["invoice_number"])); truth[pid] = set(some["invoice_id"])
        elif kind == "partial_ref":
            p.update(amount_minor=inv.balance_minor // 3, reference=str(number)); truth[pid] = {inv.invoice_id}
        elif kind == "overpaid_ref":
            p.update(amount_minor=inv.balance_minor + 1234, reference=str(number)); truth[pid] = {inv.invoice_id}
        elif kind == "overpaid_no_ref":  # a customer with one invoice open pays more than it
            if len(free) != 1 or len(g) != 1:
                continue
            p.update(amount_minor=inv.balance_minor + int(rng.integers(100, 5000))); truth[pid] = {inv.invoice_id}
        elif kind == "short_fee_ref":  # the bank took its fee
            p.update(amount_minor=inv.balance_minor - int(rng.integers(50, 500)), reference=f"INV {number}")
            truth[pid] = {inv.invoice_id}
        elif kind == "short_fee_no_ref":
            p.update(amount_minor=inv.balance_minor - int(rng.integers(50, 500))); truth[pid] = {inv.invoice_id}
        else:
            p.update(amount_minor=int(rng.integers(100, 999_999)), customer_id=None, reference="DEPOSIT"); truth[pid] = set()
        used |= truth[pid]
        kind_of[pid] = str(kind)
        payments.append(p)
    return invoices, pd.DataFrame(customers), pd.DataFrame(payments), truth, kind_of


def evaluate(invoices, customers, payments, truth, kind_of, rules: Rules | None = None) -> dict:
    t = time.perf_counter()
    outcomes = apply_all(OpenBook(invoices, customers, rules), payments)
    seconds = time.perf_counter() - t
    matched = [o for o in outcomes if o.status != "unapplied"]
    correct = {o.payment_id for o in matched if {a["invoice_id"] for a in o.applications} == truth[o.payment_id]}
    placeable = [p for p, inv in truth.items() if inv]
    by_rule: dict[str, int] = {}
    for o in matched:
        by_rule[o.rule] = by_rule.get(o.rule, 0) + 1
    per_kind: dict[str, dict] = {}
    matched_ids = {o.payment_id for o in matched}
    for pid, kind in kind_of.items():
        k = per_kind.setdefault(kind, {"payments": 0, "matched": 0, "wrong": 0})
        k["payments"] += 1
        k["matched"] += pid in matched_ids
        k["wrong"] += pid in matched_ids and pid not in correct
    return {
        "payments": len(payments), "placeable": len(placeable), "seconds": round(seconds, 2),
        "auto_match_rate": round(len(matched) / len(payments), 4),
        "auto_match_rate_of_placeable": round(len(matched) / len(placeable), 4),
        "precision": round(len(correct) / len(matched), 4) if matched else None,
        "wrong_matches": len(matched) - len(correct),
        "flagged_for_review": sum(o.needs_review for o in matched),
        "written_off_within_tolerance": sum(o.write_off_minor for o in matched),
        "by_rule": dict(sorted(by_rule.items())),
        "rule_share": {k: round(v / len(matched), 4) for k, v in sorted(by_rule.items())},
        "by_kind": dict(sorted(per_kind.items())),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payments", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--set", choices=("standard", "harder"), default="standard")
    args = ap.parse_args()
    harder = args.set == "harder"
    data = generate(args.payments, args.seed, HARDER if harder else KINDS)
    result = evaluate(*data, rules=HARDER_RULES if harder else None)
    print(json.dumps({"set": args.set, "seed": args.seed, **result}))


if __name__ == "__main__":
    main()
