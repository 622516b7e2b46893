"""The payment checkpoint's steps as pure functions: normalise payments, sort out what was seen
before, duplicates and reversals, apply the rest (tasks/cash.py), and work out which invoices
close. The flow (flows/payment_checkpoint.py) writes the result to the ledger in one transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from arflow.money import format_minor, known_currencies, parse_minor
from connectors.bank import PAYMENT_FRAME
from tasks import cash
from arflow.frames import settled_rows  # noqa: F401  (the flows read it from here)
from tasks.extract import parse_dates

APPLIED_STATUSES = ("applied", "partial", "overpaid")


def billing_payments(raw: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """payments.csv rows -> the checkpoint's payment frame, and quarantined rows with reasons."""
    if raw is None or raw.empty:
        return pd.DataFrame(columns=PAYMENT_FRAME), pd.DataFrame(columns=["source_row", "reason", "raw"])
    df = pd.DataFrame(index=raw.index)
    df["payment_id"] = raw["payment_id"].replace("", pd.NA)
    df["currency"] = raw["currency"].str.upper()
    df["amount_minor"] = parse_minor(raw["amount"], df["currency"])
    df["received_date"] = parse_dates(raw["received_date"])
    df["customer_id"] = raw["customer_id"].replace("", None)
    df["reference"] = raw["reference"]
    df["payer_name"] = None
    df["source"], df["source_file"] = "billing", None
    reason = pd.Series(None, index=df.index, dtype=object)
    reason = reason.mask(df["amount_minor"].isna(), "bad_amount")
    reason = reason.mask(~df["currency"].isin(known_currencies()), "unknown_currency")  # XXX, XAU: not money owed
    reason = reason.mask(df["received_date"].isna(), "bad_date")
    reason = reason.mask(df["payment_id"].isna(), "missing_payment_id")
    reason = reason.mask((df["amount_minor"] == 0).fillna(False).astype(bool), "zero_amount")
    bad = reason.notna()
    quarantine = pd.DataFrame({"source_row": raw.loc[bad, "source_row"], "reason": reason[bad],
                               "raw": raw.loc[bad].drop(columns="source_row").to_dict("records")})
    return df.loc[~bad, PAYMENT_FRAME].reset_index(drop=True), quarantine


@dataclass
class CheckpointResult:
    received: list[dict] = field(default_factory=list)       # new payments_received rows
    applications: list[dict] = field(default_factory=list)   # new payment_applications rows
    credits: list[dict] = field(default_factory=list)
    reversal_of: dict[str, str] = field(default_factory=dict)  # reversal payment id -> the payment it reverses
    closed: list[dict] = field(default_factory=list)         # invoices paid in full by this run
    already_recorded: int = 0
    duplicates: list[dict] = field(default_factory=list)
    outcomes: list[cash.Outcome] = field(default_factory=list)


def run_checkpoint(payments: pd.DataFrame, known: pd.DataFrame, invoices: pd.DataFrame, customers: pd.DataFrame,
                   as_of: dt.date, policy=None, applications: pd.DataFrame | None = None,
                   all_invoices: pd.DataFrame | None = None) -> CheckpointResult:
    """payments: everything read today (billing + bank); known: the ledger's payments_received;
    invoices: the open invoices as the daily flow ages them (effective balances); policy: its
    cash_application settings (tolerance, write-off account; tasks.cash.Rules); applications: the
    ledger's payment applications and all_invoices: the source's invoices of every status (raw
    text), so that a returned item naming an invoice (``RETURNED ITEM INV 1001 NSF``) finds the
    payment that paid it, also once the invoice is closed."""
    res = CheckpointResult()
    payments = payments[pd.to_datetime(payments["received_date"]) <= pd.Timestamp(as_of)]
    known_ids = dict(zip(known["payment_id"], known["source_file"])) if not known.empty else {}
    fresh_rows, seen_now = [], set()
    for p in payments.to_dict("records"):
        pid = p["payment_id"]
        if pid in seen_now:
            res.duplicates.append({"payment_id": pid, "reason": f"listed twice in today's {p['source']} payments"})
        elif pid in known_ids:
            if p["source"] == "billing" or known_ids[pid] == p["source_file"]:
                res.already_recorded += 1  # a re-run, or the billing system listing it again
            else:
                res.duplicates.append({"payment_id": pid, "reason": "the same bank line arrived in another file"})
        else:
            seen_now.add(pid)
            fresh_rows.append(p)
    fresh = pd.DataFrame(fresh_rows, columns=PAYMENT_FRAME)

    reversals = fresh[fresh["amount_minor"] < 0]
    positive = fresh[fresh["amount_minor"] > 0]
    # The book holds what is owed now: the effective balance (the source's less what the ledger
    # applied that the source does not show yet). A frame has one balance column here; renaming
    # effective_balance_minor onto balance_minor left two, and the book read the source's.
    owed = invoices["effective_balance_minor"] if "effective_balance_minor" in invoices else invoices["balance_minor"]
    book = cash.OpenBook(invoices[["invoice_id", "invoice_number", "customer_id", "currency", "due_date", "issue_date"]]
                         .assign(balance_minor=owed.astype("int64")), customers, cash.Rules.from_policy(policy))
    if not known.empty:  # customers whose cash waits in the exceptions queue: no first-in-first-paid for them
        book.waiting |= set(known.loc[(known["status"] == "unapplied") & known["customer_id"].notna(), "customer_id"])
    start = {iid: r["balance"] for iid, r in book.rows.items()}
    res.outcomes = cash.apply_all(book, positive)
    by_id = {p["payment_id"]: p for p in positive.to_dict("records")}
    source_balance = dict(zip(invoices["invoice_id"], invoices["balance_minor"]))
    source_credit = dict(zip(invoices["invoice_id"], invoices["credited_minor"])) if "credited_minor" in invoices \
        else {}
    rows_by_id = {}
    for o in res.outcomes:
        p = by_id[o.payment_id]
        row = _received(p, as_of)
        row.update(customer_id=o.customer_id, status=o.status, rule=o.rule, confidence=o.confidence,
                   needs_review=o.needs_review, reason=o.reason, candidates=cash.candidates_json(o))
        res.received.append(row)
        rows_by_id[o.payment_id] = row
        for a in o.applications:
            res.applications.append({**a, "payment_id": o.payment_id, "currency": p["currency"], "applied_on": as_of,
                                     "rule": o.rule, "confidence": o.confidence,
                                     "source_balance_minor": int(source_balance[a["invoice_id"]]),
                                     "source_credit_minor": int(source_credit.get(a["invoice_id"], 0) or 0)})
        if o.write_off_minor:  # a short payment within the tolerance: the difference written off, not cash
            a = o.applications[-1]
            res.applications.append({"invoice_id": a["invoice_id"], "customer_id": a["customer_id"],
                                     "amount_minor": o.write_off_minor, "payment_id": o.payment_id + cash.WRITE_OFF,
                                     "currency": p["currency"], "applied_on": as_of, "rule": "tolerance_write_off",
                                     "confidence": o.confidence,
                                     "source_balance_minor": int(source_balance[a["invoice_id"]]),
                                     "source_credit_minor": int(source_credit.get(a["invoice_id"], 0) or 0)})
            row["reason"] = f"{format_minor(o.write_off_minor, p['currency'])} written off to {o.write_off_account}"
        if o.credit_minor:
            res.credits.append({"customer_id": o.customer_id, "payment_id": o.payment_id, "amount_minor": o.credit_minor,
                                "currency": p["currency"], "created_on": as_of, "status": "to_review"})

    # Reversals and chargebacks: a negative amount whose reference names a payment applied before
    # (in the ledger) or earlier in this batch. The invoices it paid re-open.
    applied_ids = set(known.loc[known["status"].isin(APPLIED_STATUSES), "payment_id"]) if not known.empty else set()
    applied_ids |= {o.payment_id for o in res.outcomes if o.status in APPLIED_STATUSES}
    by_upper = {i.upper(): i for i in applied_ids}
    paid_by = _payments_by_invoice(applications, res.applications, applied_ids, all_invoices, invoices)
    customer_of = dict(zip(known["payment_id"], known["customer_id"])) if not known.empty else {}
    customer_of.update({o.payment_id: o.customer_id for o in res.outcomes})
    for p in reversals.to_dict("records"):
        tokens = cash.reference_tokens(p["reference"])
        original = next((by_upper[t] for t in tokens if t in by_upper), None)
        if original is None:  # a returned item naming the invoice its payment paid (its customer's, if named)
            named = [paid_by[t] for t in sorted(tokens) if t in paid_by]
            live = [c for cands in named for c in cands if c[0] not in res.reversal_of.values()
                    and (not isinstance(p["customer_id"], str) or customer_of.get(c[0]) == p["customer_id"])]
            original = next((pid for pid, amount in live if amount == -p["amount_minor"]), None) or \
                (live[-1][0] if live else None)
        row = _received(p, as_of)
        if original:
            row.update(status="reversal", rule="reversal", confidence=1.0, reason=f"reverses {original}",
                       customer_id=row["customer_id"] if isinstance(row["customer_id"], str)
                       else customer_of.get(original))
            res.reversal_of[p["payment_id"]] = original
            if original in rows_by_id:  # applied in this same batch: undo it in the book
                rows_by_id[original]["status"] = "reversed"
                for a in res.applications:
                    if a["payment_id"].removesuffix(cash.WRITE_OFF) == original and a["invoice_id"] in book.rows:
                        book.rows[a["invoice_id"]]["balance"] += a["amount_minor"]
        else:
            row.update(status="unapplied", needs_review=True,
                       reason="a returned item, reversal or chargeback of a payment the ledger does not hold")
        res.received.append(row)
    reversed_now = set(res.reversal_of.values())
    reversed_now |= {r + cash.WRITE_OFF for r in reversed_now}

    touched = {a["invoice_id"] for a in res.applications if a["payment_id"] not in reversed_now}
    inv = invoices.set_index("invoice_id")
    for iid in sorted(touched):
        if book.rows[iid]["balance"] == 0 and start[iid] > 0:
            last = max((a for a in res.applications if a["invoice_id"] == iid and a["payment_id"] not in reversed_now),
                       key=lambda a: by_id[a["payment_id"].removesuffix(cash.WRITE_OFF)]["received_date"])
            paid = pd.Timestamp(by_id[last["payment_id"].removesuffix(cash.WRITE_OFF)]["received_date"]).date()
            r = inv.loc[iid]
            res.closed.append({"invoice_id": iid, "customer_id": r["customer_id"],
                               "payment_id": last["payment_id"].removesuffix(cash.WRITE_OFF),
                               "issue_date": r["issue_date"].date(), "due_date": r["due_date"].date(), "paid_date": paid,
                               "amount_minor": int(r["amount_minor"]), "currency": r["currency"],
                               "days_to_pay": (paid - r["issue_date"].date()).days,
                               "days_after_due": (paid - r["due_date"].date()).days})
    return res


def _payments_by_invoice(applications: pd.DataFrame | None, batch: list[dict], applied_ids: set[str],
                         all_invoices: pd.DataFrame | None, invoices: pd.DataFrame) -> dict[str, list[tuple[str, int]]]:
    """Invoice id and number (upper case) -> [(payment id, amount applied)] of the standing
    applications (the ledger's not reversed, and this batch's), oldest first."""
    rows: list[tuple[str, str, int]] = []
    if applications is not None and not applications.empty:
        live = applications[applications["reversed_on"].isna()] if "reversed_on" in applications else applications
        live = live.sort_values(["applied_on", "id"]) if "id" in live else live
        rows += [(str(r.invoice_id), str(r.payment_id), int(r.amount_minor)) for r in live.itertuples()]
    rows += [(a["invoice_id"], a["payment_id"], int(a["amount_minor"])) for a in batch]
    by_invoice: dict[str, list[tuple[str, int]]] = {}
    for iid, pid, amount in rows:
        if pid.endswith(cash.WRITE_OFF) or pid not in applied_ids:
            continue
        by_invoice.setdefault(iid.upper(), []).append((pid, amount))
    for frame in (all_invoices, invoices):
        if frame is None or frame.empty or "invoice_number" not in frame:
            continue
        for iid, number in zip(frame["invoice_id"].astype(str), frame["invoice_number"].astype(str)):
            if iid.upper() in by_invoice:
                for key in {number.strip().upper(), cash._PREFIX.sub("", number.strip()).upper()} - {""}:
                    by_invoice.setdefault(key, by_invoice[iid.upper()])
    return by_invoice


def _received(p: dict, as_of: dt.date) -> dict:
    return {"payment_id": p["payment_id"], "source": p["source"], "source_file": p["source_file"],
            "customer_id": p["customer_id"], "payer_name": p["payer_name"], "amount_minor": int(p["amount_minor"]),
            "currency": p["currency"], "received_date": pd.Timestamp(p["received_date"]).date(),
            "reference": p["reference"], "recorded_on": as_of, "status": None, "rule": None, "confidence": None,
            "needs_review": False, "reason": None, "candidates": None}


def summarize(res: CheckpointResult, payments_read: int, quarantined: int, receipts_queued: int, as_of: dt.date,
              run_id: str) -> dict:
    received = pd.DataFrame(res.received, columns=["payment_id", "status", "rule", "amount_minor", "currency"])
    incoming = received[received["status"] != "reversal"]
    # A payment reversed in the same batch counts as neither matched nor unmatched.
    positive = incoming[(incoming["amount_minor"] > 0) & (incoming["status"] != "reversed")]
    matched = positive[positive["status"].isin(APPLIED_STATUSES)]
    by_rule = matched["rule"].value_counts().sort_index()

    def money(frame: pd.DataFrame, col: str = "amount_minor") -> dict[str, str]:
        return {c: format_minor(int(g[col].sum()), c) for c, g in frame.groupby("currency")} if not frame.empty else {}

    reversed_now = set(res.reversal_of.values())
    reversed_now |= {r + cash.WRITE_OFF for r in reversed_now}
    live_apps = [a for a in res.applications if a["payment_id"] not in reversed_now]
    write_offs = pd.DataFrame([a for a in live_apps if a["rule"] == "tolerance_write_off"],
                              columns=["amount_minor", "currency"])
    apps = pd.DataFrame([a for a in live_apps if a["rule"] != "tolerance_write_off"], columns=["amount_minor", "currency"])
    credits = pd.DataFrame([c for c in res.credits if c["payment_id"] not in reversed_now],
                           columns=["amount_minor", "currency"])
    unapplied = positive[positive["status"] == "unapplied"]
    cash_in = incoming[incoming["amount_minor"] > 0]  # every new payment, reversed in this batch or not
    return {
        "as_of": as_of.isoformat(), "run_id": run_id,
        "payments_read": payments_read,
        "new_payments": int(len(received)),
        "already_recorded": res.already_recorded,
        "applied": {str(k): int(v) for k, v in by_rule.items()},
        "partial": int((positive["status"] == "partial").sum()),
        "overpaid": int((positive["status"] == "overpaid").sum()),
        "unapplied": int((incoming["status"] == "unapplied").sum()),
        "duplicates": len(res.duplicates),
        "reversed": len(res.reversal_of),
        "quarantined": quarantined,
        "invoices_closed": len(res.closed),
        "receipts_queued": receipts_queued,
        "auto_match_rate": round(len(matched) / len(positive), 4) if len(positive) else None,
        "needs_review": int(sum(1 for r in res.received if r["needs_review"])),
        # cash_read = cash_applied + cash_unapplied + customer_credits + cash_reversed, per currency
        "cash_read": money(cash_in), "cash_applied": money(apps), "cash_unapplied": money(unapplied),
        "customer_credits": money(credits), "cash_reversed": money(incoming[incoming["status"] == "reversed"]),
        # not cash: the differences of short payments within the tolerance, written off to the policy's account
        "written_off_within_tolerance": money(write_offs),
    }
