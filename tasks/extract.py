"""Extract and age: raw source rows -> typed frames, due dates from terms, days past due, bucket, lane.

Pure functions on DataFrames. Parsing never guesses: a value that does not parse becomes NA (with a
``*_state`` column saying why), and the hop's expectation suite turns those into quarantine reasons.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from arflow.frames import parse_dates
from arflow.money import out_of_range, parse_minor
from arflow.policy import Policy

BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "d91_plus")
BUCKET_LABELS = {"current": "not yet due", "d1_30": "1-30 days", "d31_60": "31-60 days", "d61_90": "61-90 days",
                 "d91_plus": "91+ days"}  # what people read; the codes stay in data and the CSV format
_EMAIL_RE = r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$"
_LINK_RE = r"https?://[^\s<>\"'`\\]+"
MAX_ID_LENGTH = 64     # identifiers and invoice numbers (QuickBooks DocNumber 21, Stripe ids ~30)
MAX_TEXT_LENGTH = 200  # names people read in a message
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: in an
# identifier or a name they would split a mail header or a subject, or a file name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(col: pd.Series, max_length: int = MAX_ID_LENGTH) -> pd.Series:
    """True where a text cell is empty or has no control character and at most `max_length`
    characters (and at most 4 bytes each of UTF-8, so it can name a file)."""
    def ok(v) -> bool:
        if _absent(v):
            return True
        v = str(v)
        return len(v) <= max_length and len(v.encode("utf-8", "surrogatepass")) <= 4 * max_length \
            and _CONTROL.search(v) is None
    return pd.Series([ok(v) for v in col.tolist()], index=col.index, dtype=bool)


def text_or_na(col: pd.Series) -> pd.Series:
    """Text as the string dtype, empty text NA (one pass: cheaper than astype + replace on the
    small frames of most runs, and no slower on large ones)."""
    values = [None if _absent(v) or v == "" else str(v) for v in col.tolist()]
    return pd.Series(values, index=col.index, dtype="string")


def _absent(value) -> bool:
    """None, NA or NaN (a missing cell of any dtype)."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _optional_date(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(parsed date or NaT, valid flag): empty text is valid and NaT."""
    text = text.astype("string").fillna("").str.strip()
    parsed = parse_dates(text)
    return parsed, (text == "") | parsed.notna()


def _bool(text: pd.Series, default: bool = False) -> tuple[pd.Series, pd.Series]:
    """'true'/'false' (any case, padded) -> bool; empty -> default. Returns (value, valid): an
    unreadable value is `default` and not valid."""
    words = ["" if _absent(v) else str(v).strip().lower() for v in text.tolist()]
    value = [w == "true" if w in ("true", "false") else default for w in words]
    valid = [w in ("true", "false", "") for w in words]
    return pd.Series(value, index=text.index, dtype=bool), pd.Series(valid, index=text.index, dtype=bool)


def normalize_terms(terms: pd.Series) -> pd.Series:
    """'Net 30', 'NET_30', 'net30' -> 'net30'; 'Due on receipt' -> 'dueonreceipt'."""
    return terms.astype("string").fillna("").str.lower().str.replace(r"[\s_\-]", "", regex=True)


_TERMS_RE = re.compile(r"(net|eom)([0-9]{1,3})")


def _term_rule(term: str) -> tuple[str, int]:
    """A normalised term -> (kind, days): net/eom with their days, receipt, missing or unknown."""
    if term == "":
        return "missing", 0
    if term == "dueonreceipt":
        return "receipt", 0
    match = _TERMS_RE.fullmatch(term)
    return (match[1], int(match[2])) if match else ("unknown", 0)


def due_from_terms(issue: pd.Series, terms: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Due dates from terms. Returns (due or NaT, state) with state 'terms', 'missing' (no terms)
    or 'unknown_terms' (terms we cannot read). Each distinct term is read once."""
    t = normalize_terms(terms).tolist()
    rules = {term: _term_rule(term) for term in set(t)}
    kind = np.array([rules[x][0] for x in t], dtype=object)
    days = pd.to_timedelta(np.array([rules[x][1] for x in t], dtype="int64"), unit="D")
    start = issue.to_numpy(dtype="datetime64[s]")
    due = np.full(len(t), np.datetime64("NaT"), dtype="datetime64[s]")
    due = np.where((kind == "net") | (kind == "receipt"), start + days.to_numpy(), due)
    eom = kind == "eom"
    if eom.any():
        month_end = (issue + pd.offsets.MonthEnd(0)).to_numpy(dtype="datetime64[s]")
        due = np.where(eom, month_end + days.to_numpy(), due)
    state = np.select([kind == "missing", kind == "unknown"], ["missing", "unknown_terms"], "terms")
    return (pd.Series(due, index=issue.index, dtype="datetime64[s]"),
            pd.Series(state, index=issue.index, dtype="string"))


def parse_customers(raw: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    df = pd.DataFrame(index=raw.index)
    df["source_row"] = raw["source_row"].astype("int64")
    df["customer_id"] = text_or_na(raw["customer_id"])
    df["name"] = raw["name"].astype("string")
    df["segment"] = raw["segment"].astype("string").str.lower()
    df["arr_minor"] = parse_minor(raw["arr"].replace("", "0"), pd.Series(policy.reporting_currency, index=raw.index))
    df["tenure_months"] = pd.to_numeric(raw["tenure_months"].where(raw["tenure_months"].str.fullmatch(r"\d+")),
                                        errors="coerce").astype("Int64")
    nps_text = raw["nps"].astype("string").fillna("")
    df["nps"] = pd.to_numeric(nps_text.where(nps_text.str.fullmatch(r"-?\d+")), errors="coerce").astype("Int64")
    df["nps_valid"] = (nps_text == "") | df["nps"].between(-100, 100).fillna(False)
    health = raw["health"].astype("string").str.lower()
    df["health"] = health.replace("", pd.NA)
    df["renewal_date"], df["renewal_date_valid"] = _optional_date(raw["renewal_date"])
    df["paused_until"], df["paused_until_valid"] = _optional_date(raw["paused_until"])
    for col in ("owner_ae_email", "owner_csm_email", "billing_contact_name", "billing_contact_email"):
        df[col] = text_or_na(raw[col])
    df["billing_email_valid"] = df["billing_contact_email"].str.fullmatch(_EMAIL_RE).fillna(False)
    df["country"] = raw["country"].astype("string").str.upper().replace("", pd.NA)
    df["customer_id_clean"] = clean_text(raw["customer_id"])
    df["names_clean"] = clean_text(raw["name"], MAX_TEXT_LENGTH) & clean_text(raw["billing_contact_name"],
                                                                              MAX_TEXT_LENGTH)
    df["opt_out"], df["opt_out_valid"] = _bool(raw["opt_out"])
    for col in ("language", "cfo_email", "account_number"):  # optional columns (DESIGN.md CSV format plus these)
        if col in raw:
            df[col] = raw[col].astype("string").str.strip().replace("", pd.NA)
    # Addresses arflow writes to or sends from: each one address (no list, no line break), or none.
    valid = pd.Series(True, index=raw.index)
    for col in ("owner_ae_email", "owner_csm_email", "cfo_email"):
        if col in df:
            valid &= df[col].isna() | df[col].str.fullmatch(_EMAIL_RE).fillna(False)
    df["contact_emails_valid"] = valid.astype(bool)
    return df


def customer_holds(raw: pd.DataFrame) -> pd.DataFrame:
    """What the check before a send reads from the customer file: customer_id, opt_out and
    paused_until, parsed as parse_customers parses them (an unreadable value is no hold)."""
    df = pd.DataFrame(index=raw.index)
    df["customer_id"] = text_or_na(raw["customer_id"])
    df["opt_out"], _ = _bool(raw["opt_out"])
    df["paused_until"], _ = _optional_date(raw["paused_until"])
    return df


def parse_invoices(raw: pd.DataFrame, exclude: tuple[str, ...] = ("paid", "void")) -> pd.DataFrame:
    """Typed invoices, open (or of unreadable status) only. Paid and void rows are not open
    invoices and do not enter the run (the KPIs' invoice register keeps the paid ones)."""
    status = raw["status"].astype("string").str.strip().str.lower()
    raw = raw[~status.isin(list(exclude))]
    status = status[raw.index]
    df = pd.DataFrame(index=raw.index)
    df["source_row"] = raw["source_row"].astype("int64")
    df["invoice_id"] = text_or_na(raw["invoice_id"])
    df["customer_id"] = text_or_na(raw["customer_id"])
    df["invoice_number"] = raw["invoice_number"].astype("string")
    df["status"] = status
    df["currency"] = raw["currency"].astype("string").str.strip().str.upper()
    df["issue_date"] = parse_dates(raw["issue_date"])
    given_text = raw["due_date"].astype("string").fillna("").str.strip()
    given = parse_dates(given_text)
    from_terms, terms_state = due_from_terms(df["issue_date"], raw["terms"])
    df["terms"] = normalize_terms(raw["terms"])
    df["due_date"] = given.where(given_text != "", from_terms).astype("datetime64[s]")
    state = pd.Series("invoice", index=raw.index, dtype="string")
    state = state.mask(given_text == "", terms_state)
    state = state.mask((given_text != "") & given.isna(), "bad_date")
    state = state.mask((given_text == "") & (terms_state == "terms") & df["issue_date"].isna(), "bad_date")
    df["due_state"] = state
    df["amount_minor"] = parse_minor(raw["amount"], df["currency"])
    df["balance_minor"] = parse_minor(raw["balance"], df["currency"])
    # What credits took off the invoice at the source: a connected system's own figure (Stripe's
    # credit notes), else the allocations of credit_notes.csv (tasks.credits, added by the hop).
    credited_text = raw["credited"].astype("string").fillna("").str.strip() if "credited" in raw else None
    df["credited_minor"] = parse_minor(credited_text.replace("", "0"), df["currency"]) if credited_text is not None \
        else pd.Series(0, index=df.index, dtype="Int64")
    df["autopay"], df["autopay_valid"] = _bool(raw["autopay"])
    # The billing system is dunning the invoice itself (Chargebee's dunning_status in_progress): held.
    df["billing_dunning"] = _bool(raw["billing_dunning"])[0] if "billing_dunning" in raw \
        else pd.Series(False, index=df.index, dtype=bool)
    df["payment_link"] = text_or_na(raw["payment_link"])
    # A link a customer is asked to click: a web address, never javascript:, data: or a file.
    df["payment_link_valid"] = (df["payment_link"].isna()
                                | df["payment_link"].str.fullmatch(_LINK_RE, case=False).fillna(False)).astype(bool)
    df["po_number"] = text_or_na(raw["po_number"])
    if "invoice_pdf_url" in raw:  # the billing system's PDF of the invoice (Stripe invoice_pdf): a web address or none
        url = text_or_na(raw["invoice_pdf_url"])
        df["invoice_pdf_url"] = url.where(url.str.fullmatch(_LINK_RE, case=False).fillna(False).astype(bool))
    df["identifiers_clean"] = clean_text(raw["invoice_id"]) & clean_text(raw["customer_id"]) \
        & clean_text(raw["invoice_number"]) & clean_text(raw["po_number"]) \
        & clean_text(raw["payment_link"], 2000)
    df["amounts_in_range"] = ~(out_of_range(raw["amount"], df["currency"]) | out_of_range(raw["balance"], df["currency"]))
    return df


def age(invoices: pd.DataFrame, as_of: dt.date, policy: Policy) -> pd.DataFrame:
    """days_past_due = as_of - due_date in calendar days; bucket and lane from it."""
    out = invoices.copy()
    dpd = (pd.Timestamp(as_of) - out["due_date"]).dt.days.astype("int64")
    out["days_past_due"] = dpd
    out["bucket"] = bucket_of(dpd)
    b = policy.lanes
    out["lane"] = np.select([dpd < b.early_from, dpd < b.late_from, dpd < b.critical_from],
                            ["current", "early", "late"], "critical")
    return out


def bucket_of(days_past_due: pd.Series) -> pd.Series:
    d = days_past_due.to_numpy()
    return pd.Series(np.select([d <= 0, d <= 30, d <= 60, d <= 90], list(BUCKETS[:4]), BUCKETS[4]),
                     index=days_past_due.index)


def effective_balance(invoices: pd.DataFrame, applied: pd.DataFrame, reflected_ids: set[str]) -> pd.Series:
    """The source's balance less what the ledger applied that the source does not show yet.

    A payment the source reports (by payment id) is not subtracted. Otherwise each application
    carries the source's balance when it was applied, so once the source's balance has dropped by
    the applied amount the payment is not counted twice. A drop the source says was a credit (its
    credit notes allocated to the invoice, `credited_minor`; each application also carries the
    credits the source showed then) is not taken for the payment arriving:
    effective = min(source balance now, min over applications a of
                    (source balance at a - everything applied from a on - credits since a)),
    never below zero.
    """
    balance = invoices["balance_minor"].astype("int64")
    if applied is None or applied.empty:
        return balance
    a = applied[~applied["payment_id"].isin(reflected_ids) & applied["invoice_id"].isin(invoices["invoice_id"])]
    if a.empty:
        return balance
    a = a.sort_values(["invoice_id", "applied_on", "id"], kind="stable")
    amount = a["amount_minor"].astype("int64")
    since = amount.iloc[::-1].groupby(a["invoice_id"].iloc[::-1]).cumsum().iloc[::-1]
    now = a["invoice_id"].map(dict(zip(invoices["invoice_id"], balance)))
    base = pd.to_numeric(a["source_balance_minor"], errors="coerce").fillna(now).astype("int64")
    credit = invoices["credited_minor"].fillna(0).astype("int64") if "credited_minor" in invoices else \
        pd.Series(0, index=invoices.index, dtype="int64")
    credit_now = a["invoice_id"].map(dict(zip(invoices["invoice_id"], credit))).astype("int64")
    # An application recorded before credits were (no figure): the credits of today, as before.
    credit_then = pd.to_numeric(a["source_credit_minor"], errors="coerce").fillna(credit_now).astype("int64") \
        if "source_credit_minor" in a else credit_now
    cap = (base - since - (credit_now - credit_then)).groupby(a["invoice_id"]).min()
    capped = invoices["invoice_id"].map(cap)
    return balance.where(capped.isna(), np.minimum(balance, capped.fillna(0).astype("int64"))).clip(lower=0)
