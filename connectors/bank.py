"""Bank statement files: CSV, and BAI2 through the ``bai2`` package (ministryofjustice/bai2).

CSV columns: ``date, amount, currency, reference, payer_name`` and optionally ``transaction_id``
(dates ISO, amounts decimal strings in major units; negative amounts are debits).
BAI2: transaction details, dated by their group's as-of date, currency from the account or the
group (USD when neither says), reference from the customer reference and the text; debits (type
codes 400-699) are negative amounts.

A debit is never dropped unseen: a returned item, reversal or chargeback (its text says so:
RETURNED ITEM, NSF, REVERSAL, CHARGEBACK...) goes on as a negative payment, which the checkpoint
matches to the payment or invoice it names and re-opens; any other debit (a bank fee, a cheque we
paid) is a quarantine row with reason ``bank_debit``, reported with the day's run.

Each line gets a payment id: ``bank:<transaction id>`` when the file has one, else ``bank:`` plus a
digest of the line's content and its occurrence in the file (two identical lines in one statement
are two payments; the same line in another file is the same payment, a duplicate).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from arflow.frames import parse_dates
from arflow.money import known_currencies, parse_minor
from connectors.sources import SourceError, read_csv_strings

BANK_CSV_COLUMNS = ("date", "amount", "currency", "reference", "payer_name")
PAYMENT_FRAME = ["payment_id", "source", "source_file", "customer_id", "payer_name", "amount_minor", "currency",
                 "received_date", "reference"]


QUARANTINE_FRAME = ["source_row", "reason", "raw"]
# A debit that takes back a customer's payment (the checkpoint re-opens what it paid).
RETURNED = re.compile(r"(?i)\b(returned?|return(ed)? item|nsf|insufficient funds|reversal|reversed|chargeback|"
                      r"charge back|bounced?|unpaid item|dishonou?red|r0[0-9])\b")


def is_returned_item(reference: object) -> bool:
    return isinstance(reference, str) and RETURNED.search(reference) is not None


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_bank_file(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(payments in the checkpoint's frame shape, quarantined lines with reason)."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"bank file not found: {path}")
    text = path.read_bytes()[:200].decode("utf-8", "replace").lstrip()
    if text.startswith("01,"):
        return _read_bai2(path)
    return _read_csv(path)


def _line_ids(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    if df.empty:
        return pd.Series([], index=df.index, dtype=object)
    key = df[cols].astype(str).agg("|".join, axis=1)
    occurrence = key.groupby(key).cumcount().astype(str)
    return "bank:" + (key + "#" + occurrence).map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:20])


def _read_csv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A file with no usable credit line (header only, a fee only, only bad lines) is an empty day:
    no payments, its bad lines and debits quarantined with their reasons."""
    raw = read_csv_strings(path, BANK_CSV_COLUMNS, what="bank file")
    df = pd.DataFrame(index=raw.index)
    df["received_date"] = parse_dates(raw["date"])
    df["currency"] = raw["currency"].str.upper()
    df["amount_minor"] = parse_minor(raw["amount"], df["currency"])
    df["reference"] = raw["reference"]
    df["payer_name"] = raw["payer_name"].replace("", None)
    bad = df["received_date"].isna() | df["amount_minor"].isna() | (df["amount_minor"] == 0)
    reasons = pd.Series("bad_amount", index=df.index, dtype=object).where(df["received_date"].notna(), "bad_date")
    reasons = reasons.mask(df["received_date"].notna() & (df["amount_minor"] == 0).fillna(False), "zero_amount")
    reasons = reasons.mask(df["received_date"].notna() & ~df["currency"].isin(known_currencies()), "unknown_currency")
    # Debits that are not a returned payment: reported, not applied (fees, our own cheques, transfers out).
    debit = ~bad & (df["amount_minor"] < 0).fillna(False) & ~df["reference"].map(is_returned_item).astype(bool)
    reasons = reasons.mask(debit, "bank_debit")
    out = bad | debit
    quarantine = pd.DataFrame({"source_row": raw.loc[out, "source_row"], "reason": reasons[out],
                               "raw": raw.loc[out].drop(columns="source_row").to_dict("records")},
                              columns=QUARANTINE_FRAME)
    df = df[~out].copy()
    df["amount_minor"] = df["amount_minor"].astype("int64")
    if "transaction_id" in raw and len(df) and (raw.loc[df.index, "transaction_id"] != "").all():
        df["payment_id"] = "bank:" + raw.loc[df.index, "transaction_id"]
    else:
        df["payment_id"] = _line_ids(raw.loc[df.index], list(BANK_CSV_COLUMNS))
    df["source"], df["source_file"], df["customer_id"] = "bank", file_digest(path), None
    return df[PAYMENT_FRAME].reset_index(drop=True), quarantine


def _read_bai2(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from bai2 import bai2
    from bai2.constants import TypeCodeTransaction

    try:
        with open(path) as fh:
            parsed = bai2.parse_from_file(fh)
    except Exception as exc:  # the library raises its own ParsingException and friends
        raise SourceError(f"bank file {path}: not a readable BAI2 file: {exc}") from None
    rows, quarantined = [], []
    for group in parsed.children:
        day = group.header.as_of_date
        for account in group.children:
            currency = account.header.currency or group.header.currency or "USD"
            for t in account.children:
                kind = t.type_code.transaction if t.type_code is not None else None
                reference = " ".join(x for x in (t.customer_reference, t.text) if x)
                if kind == TypeCodeTransaction.debit and not is_returned_item(reference):
                    quarantined.append({"source_row": len(quarantined) + len(rows) + 1, "reason": "bank_debit",
                                        "raw": {"date": str(day), "amount": str(t.amount), "currency": currency,
                                                "reference": reference, "bank_reference": t.bank_reference or ""}})
                    continue
                if kind not in (TypeCodeTransaction.credit, TypeCodeTransaction.debit):
                    continue
                amount = int(t.amount) if kind == TypeCodeTransaction.credit else -int(t.amount)
                ident = t.bank_reference or None
                rows.append({"received_date": pd.Timestamp(day), "currency": currency, "amount_minor": amount,
                             "reference": reference, "payer_name": None, "ident": ident,
                             "key": f"{day}|{'' if amount > 0 else '-'}{t.amount}|{currency}|{reference}"})
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_FRAME)
    df = pd.DataFrame(rows, columns=["received_date", "currency", "amount_minor", "reference", "payer_name", "ident", "key"])
    if df.empty:
        return pd.DataFrame(columns=PAYMENT_FRAME), quarantine
    occurrence = df.groupby("key").cumcount().astype(str)
    digest = (df["key"] + "#" + occurrence).map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:20])
    df["payment_id"] = "bank:" + df["ident"].where(df["ident"].notna(), digest)
    df["received_date"] = df["received_date"].astype("datetime64[s]")
    df["source"], df["source_file"], df["customer_id"] = "bank", file_digest(path), None
    return df[PAYMENT_FRAME], quarantine
