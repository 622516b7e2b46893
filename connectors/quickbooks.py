"""QuickBooks Online as a billing source (`--source quickbooks`), through python-quickbooks and
intuit-oauth.

What it reads, mapped to the CSV format of DESIGN.md (strings; the extract hop parses, checks and
quarantines, as for every source):

- open invoices (`Balance > 0`): Id, CustomerRef, DocNumber, TxnDate, DueDate, SalesTermRef (named
  by the Term objects: `netN`, `due_on_receipt`), CurrencyRef, TotalAmt, Balance, InvoiceLink, the
  P.O. number custom field;
- customers (active and inactive): DisplayName, PrimaryEmailAddr, BillAddr.Country, ParentRef; a
  sub-customer billed with its parent (`BillWithParent`) without an address of its own takes its
  parent's billing contact. Segment, ARR and health are not in QuickBooks: `standard` and empty
  unless a CRM (`--crm salesforce`) adds them;
- payments received in the last `ARFLOW_QBO_PAYMENT_DAYS` days (default 35) with an unapplied
  amount: cash the books have not matched, which the payment checkpoint proposes a match for.
  Payments the books applied already show in the invoices' balances;
- credit memos (CreditMemo) and what the books applied of them to which invoice (a Payment's
  LinkedTxn of TxnType CreditMemo beside the invoices it settles), as credit_notes.csv's rows, so a
  drop in an invoice's Balance is told apart as a credit or a payment (`credit_notes`);
- the books' own aging, report `AgedReceivables` on `as_of`, mapped to the `aging_report` shape.

Queries page through `STARTPOSITION`/`MAXRESULTS` 1,000 rows at a time, and a full pull is checked
against `SELECT COUNT(*)`: a pull that ends short is an error, never a complete pull. With a ledger
(the flows), the first run pulls in full and keeps a mirror (`source_records`); later runs ask
Change Data Capture for what changed since the last sync (with 5 minutes of overlap), and pull in
full again when the position is older than 29 days or an entity changed more than CDC returns.

Writes: none, unless the policy turns on `connectors.quickbooks.write_notes` (a customer's Notes
or an invoice's PrivateMemo, appended). Token refresh: the refresh token Intuit rotates is saved
back to the block it came from, else to `<data>/credentials/quickbooks.json` (mode 600).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd

from connectors.http import ConnectorError, describe, is_transient, with_retries
from connectors.sources import (AGING_COLUMNS, CREDIT_NOTE_COLUMNS, CUSTOMER_COLUMNS, INVOICE_COLUMNS,
                                PAYMENT_COLUMNS, SourceError, string_frame, tenure_months)
from connectors.tokens import RotatingRefreshToken

SYSTEM = "QuickBooks"
THROTTLED = 3001  # QuickBooks' fault code for a throttled request (HTTP 429)
PAGE = 1000
MINOR_VERSION = 75
CDC_ENTITIES = ("Invoice", "Customer", "CreditMemo")
CDC_MAX = 1000               # CDC returns at most this many objects per entity
CDC_LOOKBACK_DAYS = 29       # CDC answers for the last 30 days
SETTLED_COLUMNS = ("invoice_id", "customer_id", "issue_date", "due_date", "paid_date", "amount", "currency",
                   "payment_id")
BUCKET_TITLES = {"current": "current", "1 - 30": "d1_30", "31 - 60": "d31_60", "61 - 90": "d61_90",
                 "91 and over": "d91_plus", "total": "total"}


_PO_NAME = re.compile(r"p\.?\s?o\.?(\s?(number|no\.?|#))?|purchase order( number| no\.?)?")


class NotConfigured(SourceError):
    pass


def _get(obj, *path, default=""):
    for key in path:
        if not isinstance(obj, dict) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (decimal.Decimal, int)):
        return str(value)
    if isinstance(value, float):  # only where a caller parsed without Decimal: keep what was written
        return repr(value)
    return str(value).strip()


def _decimal(value) -> decimal.Decimal | None:
    try:
        return decimal.Decimal(str(value))
    except (decimal.InvalidOperation, ValueError):
        return None


def _amount(value: decimal.Decimal) -> str:
    return format(value, "f")


def _remaining(memo) -> object:
    """A credit memo's credit left to apply: its Balance (RemainingCredit where Balance is absent)."""
    balance = _get(memo, "Balance", default=None)
    return balance if balance is not None else _get(memo, "RemainingCredit", default=None)


class QuickBooksSource(RotatingRefreshToken):
    """The BillingSource (and, without a CRM, the CrmSource) of one QuickBooks Online company."""

    TOKEN_FILE, BLOCK_VARIABLE, BLOCK_DEFAULT = "quickbooks.json", "ARFLOW_QUICKBOOKS_BLOCK", "arflow-quickbooks"

    def __init__(self, settings: dict, *, as_of: dt.date, data_dir: Path, block=None):
        missing = [k for k in ("client_id", "client_secret", "refresh_token", "realm_id") if not settings.get(k)]
        if missing:
            names = {"client_id": "ARFLOW_QBO_CLIENT_ID", "client_secret": "ARFLOW_QBO_CLIENT_SECRET",
                     "refresh_token": "ARFLOW_QBO_REFRESH_TOKEN", "realm_id": "ARFLOW_QBO_REALM_ID"}
            raise NotConfigured("QuickBooks is not configured: set " + ", ".join(names[k] for k in missing) +
                                " (or save an arflow-quickbooks block)")
        self.settings, self.as_of, self.data_dir, self.block = settings, as_of, Path(data_dir), block
        self.realm = str(settings["realm_id"])
        self.name = "quickbooks"
        self.system = f"quickbooks:{self.realm}"
        self.ledger = None
        self._qb = None
        self._data: dict[str, list[dict]] | None = None
        self._terms: dict[str, str] | None = None
        self._home_currency: str | None = None
        self._payment_objs: list[dict] | None = None
        self.sync_info: dict = {}

    # ---- the connection -------------------------------------------------------------------

    def client(self):
        if self._qb is not None:
            return self._qb
        from intuitlib.client import AuthClient
        from intuitlib.exceptions import AuthClientError

        env = self.settings.get("environment") or "production"
        token = self._refresh_token()
        try:
            auth = AuthClient(client_id=self.settings["client_id"], client_secret=self.settings["client_secret"],
                              redirect_uri="https://localhost/callback", environment=env)
            with_retries(auth)
            auth.refresh(refresh_token=token)
        except AuthClientError as exc:
            raise ConnectorError(SYSTEM, "token refresh", f"HTTP {exc.status_code} from the token endpoint "
                                 f"(intuit_tid {exc.intuit_tid or '-'}): reconnect the app and set a new "
                                 "refresh token") from None
        except Exception as exc:  # noqa: BLE001 - discovery or token endpoint unreachable
            raise ConnectorError(SYSTEM, "token refresh", describe(exc), transient=is_transient(exc)) from None
        self._store_refresh_token(auth.refresh_token, token)
        self._auth = auth
        self._qb = self._session()
        return self._qb

    def _session(self):
        """A python-quickbooks client on the current access token, at the configured base URL, with
        the retry policy on its session."""
        from quickbooks import QuickBooks

        qb = QuickBooks(auth_client=self._auth, refresh_token=self._auth.refresh_token, company_id=self.realm,
                        minorversion=MINOR_VERSION, use_decimal=True)
        base = self.settings.get("base_url")
        if base:
            qb.api_url_v3 = qb.sandbox_api_url_v3 = base.rstrip("/")
        with_retries(qb.session)
        return qb

    def _call(self, what: str, fn, *args, **kwargs):
        """One API call; an expired access token is refreshed once; every failure is a ConnectorError."""
        from quickbooks.exceptions import AuthorizationException, QuickbooksException

        qb = self.client()
        for attempt in (1, 2):
            try:
                return fn(qb, *args, **kwargs)
            except AuthorizationException as exc:
                if attempt == 1 and exc.error_code == 401:
                    self._qb = None
                    self._refresh_session()
                    qb = self._qb
                    continue
                raise ConnectorError(SYSTEM, what, f"not authorized ({exc.error_code}): {exc.message}") from None
            except QuickbooksException as exc:
                detail = exc.detail if isinstance(exc.detail, str) else ""
                raise ConnectorError(SYSTEM, what, f"{exc.message} (code {exc.error_code}) {detail[:200]}".strip(),
                                     transient=exc.error_code == THROTTLED) from None
            except Exception as exc:  # noqa: BLE001 - requests' errors after the retries
                raise ConnectorError(SYSTEM, what, describe(exc), transient=is_transient(exc)) from None

    def _refresh_session(self) -> None:
        previous = self._auth.refresh_token
        try:
            self._auth.refresh(refresh_token=previous)
        except Exception as exc:  # noqa: BLE001
            raise ConnectorError(SYSTEM, "token refresh", describe(exc), transient=is_transient(exc)) from None
        self._store_refresh_token(self._auth.refresh_token, previous)
        self._qb = self._session()

    # ---- reading ---------------------------------------------------------------------------
    def query(self, entity: str, where: str = "", *, include: str | None = None) -> list[dict]:
        """Every row of a query, page by page."""
        rows: list[dict] = []
        start = 1
        while True:
            sql = f"SELECT * FROM {entity}{' WHERE ' + where if where else ''} STARTPOSITION {start} MAXRESULTS {PAGE}"
            params = {"include": include} if include else None
            result = self._call(f"query {entity} (rows from {start})", lambda qb: qb.query(sql, params=params))
            response = result.get("QueryResponse") if isinstance(result, dict) else None
            if not isinstance(response, dict):
                raise ConnectorError(SYSTEM, f"query {entity}", "the response has no QueryResponse")
            page = response.get(entity, [])
            if not isinstance(page, list):
                raise ConnectorError(SYSTEM, f"query {entity}", f"QueryResponse.{entity} is not a list")
            rows.extend(page)
            if len(page) < PAGE:
                return rows
            start += PAGE

    def count(self, entity: str, where: str = "") -> int:
        sql = f"SELECT COUNT(*) FROM {entity}{' WHERE ' + where if where else ''}"
        result = self._call(f"count {entity}", lambda qb: qb.query(sql))
        total = _get(result, "QueryResponse", "totalCount", default=None)
        if total is None:
            raise ConnectorError(SYSTEM, f"count {entity}", "the response has no totalCount")
        return int(total)

    def _full(self, entity: str, where: str, include: str | None = None) -> list[dict]:
        expected = self.count(entity, where)
        rows = self.query(entity, where, include=include)
        if len(rows) != expected:
            raise ConnectorError(SYSTEM, f"full pull of {entity}",
                                 f"{len(rows)} rows read but QuickBooks counts {expected}: a partial pull is "
                                 "never taken for a complete one")
        return rows

    FULL = {"Invoice": ("Balance > '0'", "invoiceLink"), "Customer": ("Active IN (true, false)", None),
            "CreditMemo": ("Balance > '0'", None)}

    def _pull_all(self) -> dict[str, list[dict]]:
        return {entity: self._full(entity, where, include) for entity, (where, include) in self.FULL.items()}

    def data(self) -> dict[str, list[dict]]:
        """Open invoices, customers and credit memos: from the mirror kept by CDC where there is a
        ledger, else pulled in full."""
        if self._data is not None:
            return self._data
        if self.ledger is None:
            self._data = self._pull_all()
            self.sync_info = {"mode": "full", "changed": {k: len(v) for k, v in self._data.items()}}
            return self._data
        started = dt.datetime.now(dt.timezone.utc)
        position = self.ledger.get_meta(f"sync:{self.system}")
        since = dt.datetime.fromisoformat(position) if position else None
        full = since is None or started - since > dt.timedelta(days=CDC_LOOKBACK_DAYS)
        if not full:
            changed = self._cdc(since - dt.timedelta(minutes=5))
            if any(len(v) >= CDC_MAX for v in changed.values()):
                full = True  # CDC does not page: more changes than it returns means a full pull
        if full:
            pulled = self._pull_all()
            upserts = [self._record(e, o) for e, objs in pulled.items() for o in objs]
            self.ledger.sync_source(self.system, started.isoformat(), [u for u in upserts if u], [], full=True)
            self.sync_info = {"mode": "full", "changed": {k: len(v) for k, v in pulled.items()}}
        else:
            upserts, deletes = {}, []
            for entity, objs in changed.items():
                for o in objs:
                    key = (entity, _text(_get(o, "Id")))
                    if not key[1]:
                        continue
                    gone = _get(o, "status") == "Deleted" or (
                        entity in ("Invoice", "CreditMemo") and not self._positive(_get(o, "Balance", default="0")))
                    if gone:
                        upserts.pop(key, None)
                        deletes.append(key)
                    else:
                        upserts[key] = self._record(entity, o)
            self.ledger.sync_source(self.system, started.isoformat(), list(upserts.values()), deletes, full=False)
            self.sync_info = {"mode": "cdc", "since": since.isoformat(),
                              "changed": {k: len(v) for k, v in changed.items()}}
        self._data = {e: [] for e in CDC_ENTITIES} | self.ledger.source_records(self.system)
        return self._data

    @staticmethod
    def _positive(value) -> bool:
        try:
            return decimal.Decimal(str(value)) > 0
        except decimal.InvalidOperation:
            return True  # unreadable: keep it, the extract hop quarantines it with its reason

    @staticmethod
    def _record(entity: str, obj) -> dict | None:
        record_id = _text(_get(obj, "Id"))
        return {"entity": entity, "record_id": record_id or f"missing-id-{hashlib.sha256(repr(obj).encode()).hexdigest()[:12]}",
                "payload": json.dumps(obj, default=str), "updated_at": _text(_get(obj, "MetaData", "LastUpdatedTime"))}

    def _cdc(self, since: dt.datetime) -> dict[str, list[dict]]:
        stamp = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = self._call("change data capture",
                            lambda qb: qb.change_data_capture(",".join(CDC_ENTITIES), stamp))
        responses = _get(result, "CDCResponse", default=None)
        if not isinstance(responses, list) or not responses:
            raise ConnectorError(SYSTEM, "change data capture", "the response has no CDCResponse")
        out = {e: [] for e in CDC_ENTITIES}
        for part in _get(responses[0], "QueryResponse", default=[]) or []:
            for entity in CDC_ENTITIES:
                if isinstance(part, dict) and isinstance(part.get(entity), list):
                    out[entity].extend(part[entity])
        return out

    def terms(self) -> dict[str, str]:
        if self._terms is None:
            names = {}
            for t in self.query("Term"):
                days = _get(t, "DueDays", default=None)
                names[_text(_get(t, "Id"))] = ("due_on_receipt" if str(days) == "0" else f"net{days}") \
                    if days not in (None, "") else ""
            self._terms = names
        return self._terms

    def home_currency(self) -> str:
        if self._home_currency is None:
            prefs = self.query("Preferences")
            self._home_currency = _text(_get(prefs[0] if prefs else {}, "CurrencyPrefs", "HomeCurrency", "value")) \
                or "USD"
        return self._home_currency

    # ---- the source interface ----------------------------------------------------------------
    def prepare_ledger(self, ledger) -> None:
        """Called by fetch_inputs: the mirror and the CDC position live in the ledger."""
        self.ledger = ledger

    def invoices(self) -> pd.DataFrame:
        return self._invoice_frame(self.data()["Invoice"])

    def fresh_invoices(self, invoice_ids: set[str]) -> pd.DataFrame:
        """These invoices as QuickBooks has them now (for the check right before a send): queried
        by id, 100 at a time; an invoice missing from the answer is no longer at the source."""
        return self._invoice_frame(self.by_ids("Invoice", invoice_ids, include="invoiceLink"))

    def by_ids(self, entity: str, ids, where: str = "", *, include: str | None = None) -> list[dict]:
        """The objects of these ids, asked for 100 at a time (`Id IN (...)`, plus `where`)."""
        ids = sorted(i for i in ids if i)
        rows: list[dict] = []
        for i in range(0, len(ids), 100):
            chunk = ", ".join("'" + x.replace("'", "") + "'" for x in ids[i:i + 100])
            rows.extend(self.query(entity, f"Id IN ({chunk}){' AND ' + where if where else ''}", include=include))
        return rows

    def _invoice_frame(self, objs: list[dict]) -> pd.DataFrame:
        terms = self.terms() if any(_get(o, "SalesTermRef", "value") for o in objs) else {}
        currency = None
        rows = []
        for o in objs:
            cur = _text(_get(o, "CurrencyRef", "value"))
            if not cur:
                currency = currency or self.home_currency()
                cur = currency
            balance = _get(o, "Balance", default=None)
            po = next((_text(_get(f, "StringValue")) for f in (_get(o, "CustomField", default=[]) or [])
                       if isinstance(f, dict) and _PO_NAME.fullmatch(_text(f.get("Name")).lower())), "")
            rows.append({
                "invoice_id": _text(_get(o, "Id")), "customer_id": _text(_get(o, "CustomerRef", "value")),
                "invoice_number": _text(_get(o, "DocNumber")) or _text(_get(o, "Id")),
                "issue_date": _text(_get(o, "TxnDate")), "due_date": _text(_get(o, "DueDate")),
                "terms": terms.get(_text(_get(o, "SalesTermRef", "value")), ""), "currency": cur,
                "amount": _text(_get(o, "TotalAmt")), "balance": _text(balance),
                "status": "open" if balance is None or self._positive(balance) else "paid",
                "autopay": "false", "payment_link": _text(_get(o, "InvoiceLink")), "po_number": po,
            })
        return string_frame(rows, INVOICE_COLUMNS)

    def customers(self) -> pd.DataFrame:
        return self._customer_frame(self.data()["Customer"])

    def fresh_customers(self, customer_ids: set[str]) -> pd.DataFrame:
        return self._customer_frame(self.by_ids("Customer", customer_ids, "Active IN (true, false)"))

    def _customer_frame(self, objs: list[dict]) -> pd.DataFrame:
        by_id = {_text(_get(o, "Id")): o for o in objs}
        rows = []
        for o in objs:
            email = _text(_get(o, "PrimaryEmailAddr", "Address")).split(",")[0].strip()
            contact = " ".join(x for x in (_text(_get(o, "GivenName")), _text(_get(o, "FamilyName"))) if x)
            parent = _text(_get(o, "ParentRef", "value"))
            if parent and not email and _get(o, "BillWithParent", default=False) is True and parent in by_id:
                p = by_id[parent]
                email = _text(_get(p, "PrimaryEmailAddr", "Address")).split(",")[0].strip()
                contact = " ".join(x for x in (_text(_get(p, "GivenName")), _text(_get(p, "FamilyName"))) if x)
            tenure = tenure_months(_text(_get(o, "MetaData", "CreateTime")), self.as_of)
            rows.append({
                "customer_id": _text(_get(o, "Id")), "name": _text(_get(o, "DisplayName")), "segment": "standard",
                "arr": "", "tenure_months": tenure, "nps": "", "health": "", "renewal_date": "",
                "owner_ae_email": "", "owner_csm_email": "",
                "billing_contact_name": contact or _text(_get(o, "DisplayName")), "billing_contact_email": email,
                "country": country_code(_text(_get(o, "BillAddr", "Country"))), "opt_out": "false",
                "paused_until": "", "parent_customer_id": parent, "account_number": _text(_get(o, "AcctNum")),
            })
        return string_frame(rows, CUSTOMER_COLUMNS + ("parent_customer_id", "account_number"))

    def _payments(self) -> list[dict]:
        if self._payment_objs is None:
            days = int(os.environ.get("ARFLOW_QBO_PAYMENT_DAYS", "35"))
            since = (self.as_of - dt.timedelta(days=days)).isoformat()
            self._payment_objs = self.query("Payment", f"TxnDate >= '{since}'")
        return self._payment_objs

    def settled_invoices(self) -> pd.DataFrame:
        """Invoices the books closed with a payment of the window (its LinkedTxn), for the payment
        history: issue and due date, the day of the last linked payment, the amount. A Payment that
        moved no cash (TotalAmt 0: a credit memo applied) is not the customer paying."""
        paid_on: dict[str, tuple[str, str]] = {}
        for p in self._payments():
            cash = _decimal(_get(p, "TotalAmt", default="0"))
            if cash is not None and cash <= 0:
                continue
            for line in _get(p, "Line", default=[]) or []:
                for link in _get(line, "LinkedTxn", default=[]) or []:
                    if _get(link, "TxnType") == "Invoice" and _get(link, "TxnId"):
                        tid, day = _text(link["TxnId"]), _text(_get(p, "TxnDate"))
                        if day >= paid_on.get(tid, ("", ""))[0]:
                            paid_on[tid] = (day, f"qbo-{_text(_get(p, 'Id'))}")
        rows = []
        for o in self.by_ids("Invoice", paid_on):
            if self._positive(_get(o, "Balance", default="0")):
                continue  # still open: tomorrow's aging has it
            inv_id = _text(_get(o, "Id"))
            rows.append({"invoice_id": inv_id, "customer_id": _text(_get(o, "CustomerRef", "value")),
                         "issue_date": _text(_get(o, "TxnDate")), "due_date": _text(_get(o, "DueDate")),
                         "paid_date": paid_on[inv_id][0], "amount": _text(_get(o, "TotalAmt")),
                         "currency": _text(_get(o, "CurrencyRef", "value")) or self.home_currency(),
                         "payment_id": paid_on[inv_id][1]})
        return string_frame(rows, SETTLED_COLUMNS)

    def payments(self) -> pd.DataFrame:
        rows = []
        for o in self._payments():
            unapplied = _get(o, "UnappliedAmt", default=None)
            if unapplied is not None and not self._positive(unapplied):
                continue  # the books applied it: the invoices' balances show it
            ref = " ".join(x for x in (_text(_get(o, "PaymentRefNum")), _text(_get(o, "PrivateNote"))) if x)
            rows.append({"payment_id": f"qbo-{_text(_get(o, 'Id'))}", "customer_id": _text(_get(o, "CustomerRef", "value")),
                         "amount": _text(unapplied if unapplied is not None else _get(o, "TotalAmt")),
                         "currency": _text(_get(o, "CurrencyRef", "value")) or self.home_currency(),
                         "received_date": _text(_get(o, "TxnDate")), "reference": ref})
        return string_frame(rows, PAYMENT_COLUMNS)

    def reflected_payment_ids(self) -> set[str]:
        return set()  # only unapplied cash is read: nothing arflow applies is in QuickBooks' balances yet

    def credit_notes(self) -> pd.DataFrame:
        """Credit memos and what the books applied of them, as credit_notes.csv's rows (the CSV
        source's interface, tasks/credits.py): one row per memo and invoice it went to, a row with no
        invoice for a memo nobody took.

        QuickBooks applies a credit memo through a Payment: a Line whose LinkedTxn is of TxnType
        CreditMemo is the credit used, beside the Lines of TxnType Invoice it settles (cash and credit
        together); the credit goes to the payment's invoice lines in their order. The payments read
        are the window's (ARFLOW_QBO_PAYMENT_DAYS) and every Payment an open invoice links to
        (Invoice.LinkedTxn), so every credit on an open invoice is found whatever its age. A memo
        with credit left is in the mirror (Balance > 0); a used-up one is read by id. The free credit
        is always QuickBooks' Balance: where older allocations (to invoices closed since, outside the
        window) are not read, the memo's amount is its Balance plus the allocations found."""
        payments = {_text(_get(p, "Id")): p for p in self._payments()}
        linked = {_text(_get(link, "TxnId")) for o in self.data()["Invoice"]
                  for link in (_get(o, "LinkedTxn", default=[]) or [])
                  if isinstance(link, dict) and _get(link, "TxnType") == "Payment"} - set(payments) - {""}
        if linked:
            payments.update({_text(_get(p, "Id")): p for p in self.by_ids("Payment", linked)})
        taken: dict[str, list[tuple[str, decimal.Decimal, str]]] = {}
        for p in payments.values():
            credits, invoices = [], []
            for line in _get(p, "Line", default=[]) or []:
                amount = _decimal(_get(line, "Amount", default="0"))
                for link in (_get(line, "LinkedTxn", default=[]) or [])[:1]:
                    kind, tid = _get(link, "TxnType"), _text(_get(link, "TxnId"))
                    if amount is not None and amount > 0 and tid and kind in ("CreditMemo", "Invoice"):
                        (credits if kind == "CreditMemo" else invoices).append([tid, amount])
            day = _text(_get(p, "TxnDate"))
            while credits and invoices:   # the credit goes to the payment's invoices in their order
                part = min(credits[0][1], invoices[0][1])
                taken.setdefault(credits[0][0], []).append((invoices[0][0], part, day))
                for side in (credits, invoices):
                    side[0][1] -= part
                    if side[0][1] <= 0:
                        side.pop(0)
        memos = {_text(_get(o, "Id")): o for o in self.data()["CreditMemo"]}
        gone = set(taken) - set(memos)
        if gone:
            memos.update({_text(_get(o, "Id")): o for o in self.by_ids("CreditMemo", gone)})
        rows = []
        for memo_id, o in sorted(memos.items()):
            total, left = _decimal(_get(o, "TotalAmt", default=None)), _decimal(_remaining(o))
            found = sum((a for _, a, _ in taken.get(memo_id, [])), decimal.Decimal(0))
            amount = left + found if total is not None and left is not None and left + found < total else total
            base = {"credit_note_id": memo_id, "customer_id": _text(_get(o, "CustomerRef", "value")),
                    "credit_note_number": _text(_get(o, "DocNumber")) or memo_id, "issue_date": _text(_get(o, "TxnDate")),
                    "currency": _text(_get(o, "CurrencyRef", "value")) or self.home_currency(),
                    "amount": _amount(amount) if amount is not None else _text(_get(o, "TotalAmt")),
                    "invoice_id": "", "allocated": "", "allocated_date": ""}
            parts = taken.get(memo_id) or [None]
            for part in parts:
                rows.append(base if part is None else
                            {**base, "invoice_id": part[0], "allocated": _amount(part[1]), "allocated_date": part[2]})
        return string_frame(rows, CREDIT_NOTE_COLUMNS)

    def notes(self) -> list[str]:
        out = []
        memos = [o for o in self.data()["CreditMemo"] if self._positive(_remaining(o) or "0")]
        if memos:
            who = sorted({_text(_get(o, "CustomerRef", "value")) for o in memos})
            out.append(f"QuickBooks: {len(memos)} credit memo(s) with credit left for {len(who)} customer(s) "
                       f"({', '.join(who[:10])}{'…' if len(who) > 10 else ''}): shown with their invoices, holding "
                       "the ones they could cover, and offered for application (apply them in the books).")
        if self.sync_info:
            changed = ", ".join(f"{k} {v}" for k, v in self.sync_info.get("changed", {}).items())
            out.append(f"QuickBooks sync: {self.sync_info['mode']} ({changed}).")
        return out

    def aging_report(self) -> pd.DataFrame:
        params = {"report_date": self.as_of.isoformat(), "aging_method": "Report_Date"}
        report = self._call("report AgedReceivables", lambda qb: qb.get_report("AgedReceivables", params))
        return parse_aging_report(report)

    def invoice_pdf(self, invoice_id: str) -> bytes:
        """The invoice as QuickBooks renders it for the customer (GET invoice/<id>/pdf), as bytes."""
        what = f"invoice PDF {invoice_id}"
        data = self._call(what, lambda qb: qb.download_pdf("Invoice", invoice_id))
        if not isinstance(data, bytes) or not data.startswith(b"%PDF"):
            raise ConnectorError(SYSTEM, what, "the answer is not a PDF")
        return data

    # ---- writes: off unless the policy turns them on -------------------------------------------
    def append_note(self, entity: str, record_id: str, text: str) -> None:
        """Append a line to a customer's Notes or an invoice's PrivateNote (a sparse update)."""
        field = {"Customer": "Notes", "Invoice": "PrivateNote"}[entity]
        current = self.query(entity, f"Id = '{record_id}'")
        if not current:
            raise ConnectorError(SYSTEM, f"note on {entity} {record_id}", "not found")
        obj = current[0]
        body = {"Id": record_id, "SyncToken": _get(obj, "SyncToken"), "sparse": True,
                field: (_text(_get(obj, field)) + "\n" + text).strip()[:4000]}
        self._call(f"note on {entity} {record_id}", lambda qb: qb.update_object(entity, json.dumps(body, default=str)))

    def check(self) -> dict:
        """What `arflow check-connection quickbooks` prints."""
        self.client()
        info = self._call("CompanyInfo", lambda qb: qb.get_single_object("CompanyInfo", self.realm))
        return {"system": "quickbooks", "company": _get(info, "CompanyInfo", "CompanyName"), "realm_id": self.realm,
                "open_invoices": self.count("Invoice", "Balance > '0'"),
                "customers": self.count("Customer", "Active IN (true, false)"),
                "credit_memos_open": self.count("CreditMemo", "Balance > '0'"),
                "aging_report_rows": len(self.aging_report())}


def parse_aging_report(report) -> pd.DataFrame:
    """AgedReceivables (Columns + nested Rows) -> customer_id, current, d1_30, ..., total (strings,
    major units). A customer row is one whose first cell carries an id; sections (a parent customer
    with its sub-customers) are walked; the GrandTotal has no id and is left out."""
    titles = [_text(_get(c, "ColTitle")).lower() for c in _get(report, "Columns", "Column", default=[]) or []]
    if len(titles) < 7 or "total" not in titles:
        raise ConnectorError(SYSTEM, "report AgedReceivables", f"unexpected columns {titles}")
    index = {BUCKET_TITLES[t]: i for i, t in enumerate(titles) if t in BUCKET_TITLES}
    missing = [c for c in AGING_COLUMNS[1:] if c not in index]
    if missing:
        raise ConnectorError(SYSTEM, "report AgedReceivables", f"no column for {missing}")
    out = []

    def walk(rows):
        for row in rows or []:
            if not isinstance(row, dict):
                continue
            cells = _get(row, "ColData", default=None)
            if isinstance(cells, list) and cells and _get(cells[0], "id"):
                rec = {"customer_id": _text(_get(cells[0], "id"))}
                for col, i in index.items():
                    rec[col] = (_text(_get(cells[i], "value")) if i < len(cells) else "") or "0"
                out.append(rec)
            walk(_get(row, "Rows", "Row", default=[]))

    walk(_get(report, "Rows", "Row", default=[]))
    return string_frame(out, AGING_COLUMNS)


def country_code(text: str) -> str:
    """An ISO 3166 alpha-2 code from what QuickBooks holds in BillAddr.Country (a code or an English
    name); empty where unknown."""
    text = text.strip()
    if not text:
        return ""
    aliases = {"USA": "US", "UNITED STATES OF AMERICA": "US", "U.S.A.": "US", "U.S.": "US", "UK": "GB",
               "GREAT BRITAIN": "GB", "ENGLAND": "GB"}
    if text.upper() in aliases:
        return aliases[text.upper()]
    from babel import Locale

    territories = Locale("en").territories
    if len(text) == 2 and text.upper() in territories:
        return text.upper()
    by_name = {name.upper(): code for code, name in territories.items() if len(code) == 2}
    return by_name.get(text.upper(), "")
