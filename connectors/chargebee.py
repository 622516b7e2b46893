"""Chargebee as a billing source (`--source chargebee`) and charger, through the official chargebee
library (API v2).

Reads (list endpoints, 100 a page, followed by `next_offset` until Chargebee sends none):
- open invoices, `status[in]=[payment_due, not_paid]`: id (Chargebee's invoice number), customer,
  date and due_date (Unix seconds, UTC), net_term_days (`netN`), currency_code, total (the invoice's
  amount) and amount_due (what is left after payments, credits applied, adjustments and write-offs),
  po_number, and `dunning_status`: `in_progress` means Chargebee is retrying the card itself, so
  the invoice is held (`billing_dunning`) unless the policy's
  `connectors.chargebee.email_while_dunning` says otherwise. `exhausted` and `stopped` mean its
  retries are over: arflow chases from there;
- customers: company or name, e-mail, billing address country, created_at (tenure), and
  `auto_collection` (`on`: the customer's invoices are autopay, charged by the auto-charge step
  instead of chased); `meta_data` keys named as our customer columns (segment, arr, ...) where a
  company keeps them there;
- credit notes, as allocations: each open invoice's `applied_credits` (refundable notes applied)
  and `adjustment_credit_notes`, so a drop in amount_due is a credit where the notes say so;
- successful payment transactions of the last `ARFLOW_CHARGEBEE_PAYMENT_DAYS` days (default 35):
  what no invoice took (`amount` less the `linked_invoices`' applied amounts) is cash for the
  payment checkpoint to apply; the invoices they paid in full are the payment history.

Amounts arrive as integers in the currency's minor unit (USD 490.00 is 49000; a zero-decimal
currency such as JPY is sent unmultiplied, ¥1,200 is 1200), the ISO 4217 digits arflow uses: they are
turned into the CSV format's text with those digits, never through a float.

Writes: the auto-charge, `POST /invoices/{id}/collect_payment` with the outbox row's idempotency
key in Chargebee's `chargebee-idempotency-key` header (Chargebee answers a repeat with the stored
result). A declined payment is a failed charge; a 429/5xx/network failure after the retries is a
transient send error (the outbox tries again later, with the same key).

Faults: the library's own retries are off (its 429 loop has no end); `ARFLOW_HTTP_RETRIES` and
`ARFLOW_HTTP_BACKOFF` (connectors/http.py) drive ours: a 429 waits Chargebee's `Retry-After`, a 5xx
or a dropped connection backs off, and what still fails names Chargebee and the operation, never the
key. A list that stops before its last page fails the pull: never a partial portfolio.

Webhooks: `payment_succeeded`, `payment_failed`, `invoice_generated` at POST /chargebee/webhook,
HTTP basic auth as configured on Chargebee's webhook, each event id recorded once in the same
transaction as its effect (see `apply_event`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import random
import re
import time
import urllib.parse

import pandas as pd

from arflow.money import format_minor, is_currency
from connectors.billing import ChargeResult
from connectors.http import ConnectorError
from connectors.sources import (CREDIT_NOTE_COLUMNS, CUSTOMER_COLUMNS, INVOICE_COLUMNS, PAYMENT_COLUMNS,
                                SourceError, string_frame, tenure_months)

SYSTEM = "Chargebee"
PAGE = 100
OPEN_STATUSES = ["payment_due", "not_paid"]
SETTLED_COLUMNS = ("invoice_id", "customer_id", "issue_date", "due_date", "paid_date", "amount", "currency",
                   "payment_id")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class NotConfigured(SourceError):
    pass


def open_client(settings: dict):
    """A chargebee.Chargebee for the site; `base_url` (tests, a proxy) replaces https://{site}.chargebee.com."""
    from chargebee import Chargebee

    if not settings.get("api_key") or not settings.get("site"):
        raise NotConfigured("Chargebee is not configured: set ARFLOW_CHARGEBEE_SITE and ARFLOW_CHARGEBEE_API_KEY "
                            "(a read-only key, or a full-access key for the auto-charge) or save an arflow-chargebee block")
    timeout = float(os.environ.get("ARFLOW_HTTP_TIMEOUT", "60"))
    cb = Chargebee(api_key=settings["api_key"], site=settings["site"], connection_time_out=timeout,
                   read_time_out=timeout)
    base = (settings.get("base_url") or "").rstrip("/")
    if base:
        url = urllib.parse.urlsplit(base)
        if url.scheme not in ("http", "https") or (url.scheme == "http" and url.hostname not in LOOPBACK):
            raise NotConfigured(f"ARFLOW_CHARGEBEE_BASE_URL must be https (plain http only on this machine), got {base!r}")
        if url.scheme == "http":
            # The library builds https:// URLs unless this class attribute is off; off, https still
            # verifies certificates (httpx's own bundle), and http is allowed for loopback only.
            Chargebee.verify_ca_certs = False
        cb.env.protocol = url.scheme
        cb.env.api_endpoint = f"{base}/api/{cb.env.API_VERSION}"
    return cb


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "http_code", None)
    if isinstance(code, int):
        return code
    found = re.search(r"http_status_code:\s*(\d{3})", str(exc))  # the library's text for a non-JSON 5xx body
    return int(found.group(1)) if found else None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "http_headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return min(60.0, max(0.0, float(value))) if value not in (None, "") else None
    except ValueError:
        return None


def call(what: str, fn):
    """fn() with arflow's retry policy: 429 waits Retry-After, 5xx and connection failures back off;
    the last failure a ConnectorError naming Chargebee and `what` (no key, no URL with a key in it)."""
    import httpx
    from chargebee import APIError

    retries = int(os.environ.get("ARFLOW_HTTP_RETRIES", "5"))
    backoff = float(os.environ.get("ARFLOW_HTTP_BACKOFF", "1.0"))
    attempt = 0
    while True:
        try:
            return fn()
        except APIError as exc:
            status = exc.http_code
            if status == 401:
                raise ConnectorError(SYSTEM, what, "authentication failed (HTTP 401): check the site and the API key") \
                    from None
            cause = f"HTTP {status} {exc.api_error_code or ''}: {str(exc)[:200]}"
            retriable = status in (429, 500, 502, 503, 504)
            wait = _retry_after(exc) if status == 429 else None
        except httpx.HTTPError as exc:
            status, retriable, wait = None, True, None
            cause = f"cannot connect ({exc.__class__.__name__})"
        except Exception as exc:  # noqa: BLE001 - the library raises bare Exception for a non-JSON or odd body
            status = _status(exc)
            if status is None and "api_error_code is not present" not in str(exc):
                raise
            retriable = status in (429, 500, 502, 503, 504)
            wait = None
            cause = f"HTTP {status or '?'}: not a Chargebee error body"
        if not retriable:
            raise ConnectorError(SYSTEM, what, cause) from None
        if attempt >= retries:
            raise ConnectorError(SYSTEM, what, f"still failing after {retries} retries ({cause})", transient=True) \
                from None
        attempt += 1
        time.sleep(wait if wait is not None else min(60.0, backoff * 2 ** (attempt - 1) + random.uniform(0, backoff / 2)))


def list_all(what: str, fn, params: dict, resource: str) -> list[dict]:
    """Every row of a list endpoint, page by page. A page with no row after one that promised more
    (next_offset), an offset seen before, or a page that is not a list fails the pull."""
    rows: list[dict] = []
    offset, seen, page = None, set(), 1
    while True:
        args = {**params, "limit": PAGE, **({"offset": offset} if offset else {})}
        result = call(f"{what} (page {page})", lambda a=args: fn(a))
        items = getattr(result, "list", None)
        if not isinstance(items, list):
            raise ConnectorError(SYSTEM, f"{what} (page {page})", "the answer is not a list page")
        for item in items:
            obj = getattr(item, resource, None)
            rows.append(dict(obj.raw_data) if obj is not None else {})
        if page > 1 and not items:   # the page before promised more
            raise ConnectorError(SYSTEM, f"{what} (page {page})", "paging ended short: more was promised and none sent")
        offset = getattr(result, "next_offset", None)
        if not offset:
            return rows
        if offset in seen:
            raise ConnectorError(SYSTEM, f"{what} (page {page})", "paging ended short: the same offset came back")
        seen.add(offset)
        page += 1


def _date(ts) -> str:
    if ts in (None, ""):
        return ""
    try:
        return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).date().isoformat()
    except (TypeError, ValueError, OverflowError):
        return str(ts)  # the extract hop quarantines it with its reason


def _money(minor, currency: str) -> str:
    if minor in (None, ""):
        return ""
    if isinstance(minor, bool) or not isinstance(minor, int):
        return f"{minor!r} (not integer minor units)"  # never read as major units: the extract hop quarantines it
    if not is_currency(currency):
        return str(minor)  # the extract hop says why (unknown currency)
    return format_minor(minor, currency)


def _get(obj, key, default=None):
    value = obj.get(key) if isinstance(obj, dict) else None
    return default if value is None else value


def _minor(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ChargebeeSource:
    name = "chargebee"

    def __init__(self, settings: dict, *, as_of: dt.date):
        self.settings, self.as_of = settings, as_of
        self.client = open_client(settings)
        self._seen: dict[str, dict] = {}       # the invoices read, by id (their credits are the credit notes)
        self._customers: dict[str, dict] | None = None
        self._transactions: list[dict] | None = None

    # ---- invoices -------------------------------------------------------------------------------
    def _open_invoice_objs(self) -> list[dict]:
        return list_all("list open invoices", self.client.Invoice.list,
                        {"status": {"in": OPEN_STATUSES}, "sort_by": {"asc": "date"}}, "invoice")

    def invoices(self) -> pd.DataFrame:
        return self._invoice_frame(self._open_invoice_objs())

    def fresh_invoices(self, ids: set[str]) -> pd.DataFrame:
        found = []
        for invoice_id in sorted(i for i in ids if i):
            try:
                found.append(dict(call(f"retrieve invoice {invoice_id}",
                                       lambda i=invoice_id: self.client.Invoice.retrieve(i)).invoice.raw_data))
            except ConnectorError as exc:
                if "resource_not_found" not in str(exc):
                    raise
        return self._invoice_frame(found)

    def _auto_collection(self) -> dict[str, str]:
        return {cid: str(_get(c, "auto_collection", "")) for cid, c in self._customer_objs().items()}

    def _invoice_frame(self, objs: list[dict]) -> pd.DataFrame:
        auto = self._auto_collection() if objs else {}
        rows = []
        for o in objs:
            self._seen[str(_get(o, "id", ""))] = o
            cur = str(_get(o, "currency_code", "")).upper()
            status = str(_get(o, "status", ""))
            days = _get(o, "net_term_days")
            rows.append({
                "invoice_id": _get(o, "id", ""), "customer_id": _get(o, "customer_id", ""),
                "invoice_number": _get(o, "id", ""), "issue_date": _date(_get(o, "date")),
                "due_date": _date(_get(o, "due_date")),
                "terms": (f"net{days}" if days else "due_on_receipt") if isinstance(days, int) else "",
                "currency": cur, "amount": _money(_get(o, "total"), cur), "balance": _money(_get(o, "amount_due"), cur),
                "status": {"payment_due": "open", "not_paid": "open", "posted": "open", "paid": "paid",
                           "voided": "void", "pending": "open"}.get(status, status),
                "autopay": "true" if auto.get(str(_get(o, "customer_id", ""))) == "on" else "false",
                "payment_link": "", "po_number": _get(o, "po_number", ""),
                "billing_dunning": "true" if _get(o, "dunning_status") == "in_progress" else "false",
            })
        return string_frame(rows, INVOICE_COLUMNS + ("billing_dunning",))

    def credit_notes(self) -> pd.DataFrame:
        """The credits on the open invoices read: applied refundable notes and adjustment notes, one
        allocation row each; a note's amount is what it took off the invoices arflow sees."""
        if not self._seen:
            self.invoices()
        rows = []
        for invoice_id, inv in sorted(self._seen.items()):
            cur = str(_get(inv, "currency_code", "")).upper()
            customer = _get(inv, "customer_id", "")
            for a in _get(inv, "applied_credits", []) or []:
                rows.append((_get(a, "cn_id", ""), customer, cur, _get(a, "cn_date") or _get(a, "applied_at"),
                             invoice_id, _get(a, "applied_amount"), _get(a, "applied_at")))
            for a in _get(inv, "adjustment_credit_notes", []) or []:
                if _get(a, "cn_status") == "voided":
                    continue
                rows.append((_get(a, "cn_id", ""), customer, cur, _get(a, "cn_date"), invoice_id,
                             _get(a, "cn_total"), _get(a, "cn_date")))
        totals: dict[str, int] = {}
        for cn, *_rest, amount, _when in rows:
            totals[cn] = totals.get(cn, 0) + _minor(amount)
        out = [{"credit_note_id": cn, "customer_id": cust, "credit_note_number": cn, "issue_date": _date(issued),
                "currency": cur, "amount": _money(totals[cn] if _minor(amount) else amount, cur), "invoice_id": iid,
                "allocated": _money(amount, cur), "allocated_date": _date(when)}
               for cn, cust, cur, issued, iid, amount, when in rows]
        return string_frame(out, CREDIT_NOTE_COLUMNS)

    # ---- customers ------------------------------------------------------------------------------
    def _customer_objs(self) -> dict[str, dict]:
        if self._customers is None:
            found = list_all("list customers", self.client.Customer.list, {}, "customer")
            self._customers = {str(_get(c, "id", "")): c for c in found}
        return self._customers

    def customers(self) -> pd.DataFrame:
        return self._customer_frame(list(self._customer_objs().values()))

    def fresh_customers(self, ids: set[str]) -> pd.DataFrame:
        return self._customer_frame([dict(call(f"retrieve customer {c}",
                                               lambda c=c: self.client.Customer.retrieve(c)).customer.raw_data)
                                     for c in sorted(ids) if c])

    def _customer_frame(self, objs: list[dict]) -> pd.DataFrame:
        rows = []
        for o in objs:
            meta = _get(o, "meta_data", {})
            meta = meta if isinstance(meta, dict) else {}
            person = " ".join(x for x in (_get(o, "first_name", ""), _get(o, "last_name", "")) if x)
            row = {c: str(meta.get(c, "")) for c in CUSTOMER_COLUMNS}
            row.update({"customer_id": _get(o, "id", ""), "name": _get(o, "company") or person or _get(o, "email", ""),
                        "segment": meta.get("segment") or "standard",
                        "tenure_months": meta.get("tenure_months") or tenure_months(_date(_get(o, "created_at")),
                                                                                    self.as_of),
                        "billing_contact_name": meta.get("billing_contact_name") or person,
                        "billing_contact_email": _get(o, "email", ""),
                        "country": _get(_get(o, "billing_address", {}), "country", ""),
                        "opt_out": meta.get("opt_out") or "false"})
            rows.append(row)
        return string_frame(rows, CUSTOMER_COLUMNS)

    # ---- payments -------------------------------------------------------------------------------
    def _payment_objs(self) -> list[dict]:
        if self._transactions is None:
            days = int(os.environ.get("ARFLOW_CHARGEBEE_PAYMENT_DAYS", "35"))
            since = int(dt.datetime.combine(self.as_of - dt.timedelta(days=days), dt.time(),
                                            dt.timezone.utc).timestamp())
            self._transactions = list_all("list transactions", self.client.Transaction.list,
                                          {"type": {"is": "payment"}, "status": {"is": "success"},
                                           "date": {"after": since}, "sort_by": {"asc": "date"}}, "transaction")
        return self._transactions

    def payments(self) -> pd.DataFrame:
        """Cash Chargebee has not applied to an invoice (a payment's amount less its linked invoices)."""
        rows = []
        for t in self._payment_objs():
            if _get(t, "type") != "payment" or _get(t, "status") != "success":
                continue
            applied = sum(_minor(_get(link, "applied_amount")) for link in _get(t, "linked_invoices", []) or [])
            amount = _get(t, "amount")
            unapplied = amount - applied if isinstance(amount, int) else amount
            if isinstance(unapplied, int) and unapplied <= 0:
                continue
            cur = str(_get(t, "currency_code", "")).upper()
            rows.append({"payment_id": f"chargebee-{_get(t, 'id', '')}", "customer_id": _get(t, "customer_id", ""),
                         "amount": _money(unapplied, cur), "currency": cur, "received_date": _date(_get(t, "date")),
                         "reference": " ".join(str(x) for x in (_get(t, "reference_number", ""),
                                                                 _get(t, "id_at_gateway", "")) if x)})
        return string_frame(rows, PAYMENT_COLUMNS)

    def reflected_payment_ids(self) -> set[str]:
        return set()  # only unapplied cash is read: nothing arflow applies is in Chargebee's amount_due yet

    def settled_invoices(self) -> pd.DataFrame:
        """Invoices a payment of the window closed (`invoice_status: paid` on its link), for the payment history."""
        paid_on: dict[str, tuple[str, str]] = {}
        for t in self._payment_objs():
            for link in _get(t, "linked_invoices", []) or []:
                iid, day = str(_get(link, "invoice_id", "")), _date(_get(link, "applied_at") or _get(t, "date"))
                if iid and _get(link, "invoice_status") == "paid" and day >= paid_on.get(iid, ("", ""))[0]:
                    paid_on[iid] = (day, f"chargebee-{_get(t, 'id', '')}")
        found = []
        ids = sorted(paid_on)
        for n in range(0, len(ids), PAGE):
            found += list_all("read paid invoices", self.client.Invoice.list, {"id": {"in": ids[n:n + PAGE]}}, "invoice")
        rows = []
        for o in found:
            iid = str(_get(o, "id", ""))
            if _get(o, "status") != "paid" or iid not in paid_on:
                continue
            cur = str(_get(o, "currency_code", "")).upper()
            rows.append({"invoice_id": iid, "customer_id": _get(o, "customer_id", ""), "issue_date": _date(_get(o, "date")),
                         "due_date": _date(_get(o, "due_date") or _get(o, "date")),
                         "paid_date": _date(_get(o, "paid_at")) or paid_on[iid][0],
                         "amount": _money(_get(o, "amount_paid"), cur), "currency": cur, "payment_id": paid_on[iid][1]})
        return string_frame(rows, SETTLED_COLUMNS)

    def aging_report(self):
        return None  # Chargebee keeps no aging report arflow can read: reconciliation is skipped, and said so

    def check(self) -> dict:
        """Sign in and count what the key sees (first pages only); nothing is written."""
        first = call("list open invoices", lambda: self.client.Invoice.list(
            {"status": {"in": OPEN_STATUSES}, "limit": PAGE}))
        customers = call("list customers", lambda: self.client.Customer.list({"limit": PAGE}))
        dunning = sum(1 for i in first.list if getattr(i.invoice, "raw_data", {}).get("dunning_status") == "in_progress")
        return {"system": "chargebee", "site": self.settings.get("site"),
                "open_invoices_first_page": len(first.list), "in_chargebee_dunning_first_page": dunning,
                "more_pages": bool(first.next_offset), "customers_first_page": len(customers.list),
                "auto_collection_on_first_page": sum(1 for c in customers.list
                                                     if c.customer.raw_data.get("auto_collection") == "on")}


class ChargebeeBilling:
    """The auto-charge: collect an open invoice's amount due from the customer's payment source."""

    name = "chargebee"

    def __init__(self, settings: dict):
        # The charge's own key where one is set: the reads can then run on a read-only key.
        self.client = open_client({**settings, "api_key": settings.get("charge_api_key") or settings.get("api_key")})

    def charge(self, *, invoice_id: str, invoice_number: str, customer_id: str, amount: str, currency: str,
               idempotency_key: str, on: dt.date) -> ChargeResult:
        from chargebee import InvalidRequestError, PaymentError

        from connectors.messaging import SendError

        headers = {"chargebee-idempotency-key": f"arflow:{idempotency_key}"[:100]}
        try:
            result = call(f"collect payment of invoice {invoice_number}",
                          lambda: self._collect(invoice_id, headers, (PaymentError, InvalidRequestError)))
        except ConnectorError as exc:
            raise SendError(str(exc), transient=exc.transient) from None
        if isinstance(result, Exception):   # Chargebee refused: declined, no payment source, not collectable
            return ChargeResult(ok=False, error=getattr(result, "api_error_code", None) or "payment_failed")
        txn = dict(result.transaction.raw_data) if getattr(result, "transaction", None) is not None else {}
        if _get(txn, "status") not in ("success", "in_progress"):
            return ChargeResult(ok=False, error=f"transaction_{_get(txn, 'status', 'unknown')}")
        return ChargeResult(ok=True, charge_id=_get(txn, "id") or invoice_id)

    def _collect(self, invoice_id: str, headers: dict, refusals):
        try:
            return self.client.Invoice.collect_payment(invoice_id, {}, headers)
        except refusals as exc:
            if exc.http_code in (429,) or exc.http_code >= 500:
                raise
            return exc


# ---- webhooks -----------------------------------------------------------------------------------
def check_basic_auth(header: str | None, username: str | None, password: str | None) -> None:
    """ValueError unless the Authorization header carries the configured user and password."""
    import base64

    if not username or not password:
        raise ValueError("no webhook credentials configured (ARFLOW_CHARGEBEE_WEBHOOK_USERNAME/_PASSWORD)")
    scheme, _, token = (header or "").partition(" ")
    try:
        user, _, pw = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("basic authentication failed") from None
    ok = scheme.lower() == "basic"
    ok &= hmac.compare_digest(user.encode(), username.encode())
    ok &= hmac.compare_digest(pw.encode(), password.encode())
    if not ok:
        raise ValueError("basic authentication failed")


def parse_event(payload: bytes) -> dict:
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("payload is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("event_type") \
            or not isinstance(event.get("content"), dict):
        raise ValueError("payload is not a Chargebee event (id, event_type, content)")
    return event


def apply_event(event: dict, ledger, as_of: dt.date) -> str:
    """Record an authenticated event once per event id, with its effect, in one transaction.
    `payment_failed`: a failed auto-charge row for the invoice (as a declined charge: it joins the
    early lane flagged; while Chargebee's dunning is in progress the invoice is held anyway);
    `payment_succeeded` of an invoice now paid: its payment history, its touches not yet out closed;
    `invoice_generated`: an audit row (the next read lists it). Other types are acknowledged, ignored."""
    kind, content = event["event_type"], event["content"]
    if kind not in ("payment_failed", "payment_succeeded", "invoice_generated"):
        return "ignored"
    inv, txn = _get(content, "invoice", {}), _get(content, "transaction", {})
    invoice_id = str(_get(inv, "id", "")) or next((str(_get(x, "invoice_id", "")) for x in
                                                   _get(txn, "linked_invoices", []) or []), "")
    customer_id = str(_get(inv, "customer_id", "") or _get(txn, "customer_id", ""))
    key, eid = f"chargebee_event:{event['id']}", event["id"]
    if kind == "payment_failed":
        error = _get(txn, "error_text") or _get(txn, "error_code") or "payment_failed"
        row = {"idempotency_key": f"{invoice_id}:chargebee_event:{eid}", "mode": "live", "run_id": "chargebee-webhook",
               "as_of": as_of, "invoice_id": invoice_id, "customer_id": customer_id, "lane": "current",
               "step": "auto_charge", "channel": "billing", "status": "failed",
               "closed_reason": f"charge_failed: {str(error)[:100]} (Chargebee event {eid}, dunning "
                                f"{_get(inv, 'dunning_status', 'none')})",
               "message_key": f"{customer_id}:{as_of}:chargebee_event:{eid}", "needs_approval": False}
        with ledger.engine.begin() as conn:
            if not ledger.claim_event(conn, key, kind):
                return "duplicate"
            ledger.insert_outbox(pd.DataFrame([row]), conn)
            ledger.audit("chargebee", kind, "invoice", invoice_id, {"event": eid}, conn)
        return "recorded"
    if kind == "invoice_generated":
        detail = {"event": eid, "total": _get(inv, "total"), "currency": _get(inv, "currency_code")}
        with ledger.engine.begin() as conn:
            if not ledger.claim_event(conn, key, kind):
                return "duplicate"
            ledger.audit("chargebee", kind, "invoice", invoice_id, detail, conn)
        return "recorded"
    from arflow.frames import settled_rows

    cur = str(_get(inv, "currency_code", "") or _get(txn, "currency_code", "")).upper()
    detail = {"event": eid, "transaction": _get(txn, "id"), "amount": _get(txn, "amount"), "currency": cur,
              "invoice_status": _get(inv, "status")}
    paid = _get(inv, "status") == "paid"
    paid_date = _date(_get(inv, "paid_at") or _get(txn, "date") or _get(event, "occurred_at")) or as_of.isoformat()
    rows = settled_rows(pd.DataFrame([{
        "invoice_id": invoice_id, "customer_id": customer_id, "issue_date": _date(_get(inv, "date")) or paid_date,
        "due_date": _date(_get(inv, "due_date") or _get(inv, "date")) or paid_date, "paid_date": paid_date,
        "amount": _money(_get(inv, "amount_paid"), cur), "currency": cur,
        "payment_id": f"chargebee-{_get(txn, 'id') or eid}"}])) if paid else []
    with ledger.engine.begin() as conn:
        if not ledger.claim_event(conn, key, kind):
            return "duplicate"
        if not paid:   # a part payment: the next read of Chargebee shows the smaller amount due
            ledger.audit("chargebee", "payment_succeeded.partial", "invoice", invoice_id, detail, conn)
            return "recorded"
        if not rows:
            ledger.audit("chargebee", "payment_succeeded.unreadable", "invoice", invoice_id, detail, conn)
            return "unreadable"
        ledger.audit("chargebee", kind, "invoice", invoice_id, detail, conn)
        ledger.record_settled(rows, as_of, actor="chargebee", conn=conn)
    return "recorded"


MAX_WEBHOOK_BYTES = 1024 * 1024


def webhook_server(port: int, ledger, username: str | None, password: str | None, today, host: str = "127.0.0.1"):
    """POST /chargebee/webhook. 200 once the event is recorded (or was already); 401 without the
    configured basic auth (nothing read further); 400 for a body that is not an event; 411/413
    without a length or above MAX_WEBHOOK_BYTES; 500 when recording failed (nothing of it kept:
    Chargebee retries a non-2xx, and the retry is processed). Returns the (not yet serving) server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import sys

    class Handler(BaseHTTPRequestHandler):
        timeout = 30

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):
            if self.path.split("?")[0] != "/chargebee/webhook":
                return self._reply(404, {"error": "not found"})
            try:
                check_basic_auth(self.headers.get("Authorization"), username, password)
            except ValueError as exc:
                self.close_connection = True
                return self._reply(401, {"error": str(exc)}, {"WWW-Authenticate": 'Basic realm="arflow"'})
            length = (self.headers.get("Content-Length") or "").strip()
            if not length.isdigit():
                self.close_connection = True
                return self._reply(411, {"error": "a Content-Length is required"})
            if int(length) > MAX_WEBHOOK_BYTES:
                self.close_connection = True
                return self._reply(413, {"error": f"body over {MAX_WEBHOOK_BYTES} bytes"})
            try:
                event = parse_event(self.rfile.read(int(length)))
            except ValueError as exc:
                return self._reply(400, {"error": str(exc)})
            try:
                result = apply_event(event, ledger, today())
            except Exception as exc:  # noqa: BLE001 - answered, so Chargebee retries; nothing of the event was kept
                print(f"arflow: Chargebee event {event['id']} not recorded: {exc.__class__.__name__}: "
                      f"{str(exc)[:200]}", file=sys.stderr)
                return self._reply(500, {"error": "not recorded; retry", "received": event["id"]})
            return self._reply(200, {"received": event["id"], "result": result})

    return ThreadingHTTPServer((host, port), Handler)
