"""Stripe as a billing source (`--source stripe`) and billing connector, through the stripe library.

Reads (list endpoints, followed page by page with `auto_paging_iter`, 100 a page):
- open invoices: id, customer, number, created (issue date, UTC), due_date, collection method
  (`charge_automatically` is autopay; `send_invoice` with `days_until_due` gives `netN`), currency,
  amount_due plus pre_payment_credit_notes_amount (the invoice's amount before its credit notes) and
  amount_remaining (Stripe's minor units, turned into the CSV format's major-unit text with the
  currency's digits), hosted_invoice_url (the payment link), metadata.po_number;
- credit notes (`credit_notes`, the CSV source's credit-notes interface): the CreditNote list of
  each open invoice whose pre_payment_credit_notes_amount is above zero, the part of each issued
  note that went on the invoice (`pre_payment_amount`) as its allocation. So a drop in
  amount_remaining is a credit where the notes say so and a payment where amount_paid says so; the
  post-payment part of a note is refunded or in Stripe's customer balance, which Stripe applies to
  the customer's next invoice itself;
- customers: name, e-mail, address country, creation date (tenure), and `metadata` keys named as
  our customer columns (segment, arr, owner_ae_email...) where a company keeps them there;
- succeeded charges of the last `ARFLOW_STRIPE_PAYMENT_DAYS` days (default 35) that belong to no
  invoice: cash Stripe has not applied, which the payment checkpoint proposes a match for. What
  Stripe applied to an invoice shows in its amount_remaining.

Stripe has no aging report: reconciliation is skipped, and the run says so.

Writes: the current lane's auto-charge, `POST /v1/invoices/{id}/pay` with the outbox row's
idempotency key (Stripe answers a repeat with the first result). A declined card is a failed charge
(the invoice joins the early lane and the customer hears at once); a network or 5xx failure after
the retries is a transient send error (the outbox tries again with the same key).

Webhooks: `invoice.payment_failed` and `invoice.paid`, signature-verified with the endpoint's
secret (`stripe.Webhook.construct_event`), recorded once per event id (see `apply_event`).
"""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import requests

from arflow.money import format_minor, is_currency
from connectors.billing import ChargeResult
from connectors.http import ConnectorError, describe, is_transient, transient_status, with_retries
from connectors.sources import (CREDIT_NOTE_COLUMNS, CUSTOMER_COLUMNS, INVOICE_COLUMNS, PAYMENT_COLUMNS,
                                SourceError, string_frame, tenure_months)

SYSTEM = "Stripe"


class NotConfigured(SourceError):
    pass


def open_client(settings: dict):
    import stripe

    if not settings.get("api_key"):
        raise NotConfigured("Stripe is not configured: set ARFLOW_STRIPE_API_KEY (a restricted key: read invoices, "
                            "customers and charges; write invoices for the auto-charge) or save an arflow-stripe block")
    base = settings.get("base_url")
    http = stripe.RequestsClient(session=with_retries(requests.Session()))
    return stripe.StripeClient(settings["api_key"], base_addresses={"api": base} if base else None,
                               max_network_retries=0, http_client=http)  # the session's policy retries


def _call(what: str, fn):
    import stripe

    try:
        return fn()
    except stripe.AuthenticationError as exc:
        raise ConnectorError(SYSTEM, what, f"authentication failed (HTTP {exc.http_status}): check the API key") \
            from None
    except stripe.StripeError as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, requests.RequestException):
            raise ConnectorError(SYSTEM, what, describe(cause), transient=is_transient(cause)) from None
        text = f"HTTP {exc.http_status} {exc.code or ''} {exc.user_message or str(exc)}".strip()
        raise ConnectorError(SYSTEM, what, text, transient=isinstance(exc, stripe.APIConnectionError)
                             or transient_status(exc.http_status)) from None
    except (requests.RequestException, ValueError) as exc:
        raise ConnectorError(SYSTEM, what, describe(exc), transient=is_transient(exc)) from None


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
    if not isinstance(minor, int) or not is_currency(currency):
        return str(minor)  # not Stripe's integer minor units: the extract hop says why
    return format_minor(minor, currency)


def _plain(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _get(obj, key, default=None):
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError):
        return default
    return default if value is None else value


class StripeSource:
    name = "stripe"

    def __init__(self, settings: dict, *, as_of: dt.date):
        self.settings, self.as_of = settings, as_of
        self.client = open_client(settings)
        self._seen: dict[str, dict] = {}   # the invoices read, by id (the credit notes are listed for them)

    def _list(self, what: str, service, params: dict) -> list:
        return _call(what, lambda: [_plain(o) for o in service.list(params={"limit": 100, **params}).auto_paging_iter()])

    def invoices(self) -> pd.DataFrame:
        return self._invoice_frame(self._list("list open invoices", self.client.v1.invoices, {"status": "open"}))

    def fresh_invoices(self, ids: set[str]) -> pd.DataFrame:
        found = []
        for invoice_id in sorted(ids):
            try:
                found.append(_plain(_call(f"retrieve invoice {invoice_id}",
                                          lambda i=invoice_id: self.client.v1.invoices.retrieve(i))))
            except ConnectorError as exc:
                if "resource_missing" not in str(exc):
                    raise
        return self._invoice_frame(found)

    def _invoice_frame(self, objs) -> pd.DataFrame:
        rows = []
        for o in objs:
            self._seen[str(_get(o, "id", ""))] = o
            cur = str(_get(o, "currency", "")).upper()
            credited = _get(o, "pre_payment_credit_notes_amount", 0)
            due = _get(o, "amount_due")
            days = _get(o, "days_until_due")
            method = _get(o, "collection_method", "")
            status = str(_get(o, "status", ""))
            rows.append({
                "invoice_id": _get(o, "id", ""), "customer_id": _get(o, "customer", ""),
                "invoice_number": _get(o, "number") or _get(o, "id", ""),
                "issue_date": _date(_get(o, "effective_at") or _get(o, "created")), "due_date": _date(_get(o, "due_date")),
                "terms": f"net{days}" if days not in (None, "") else ("due_on_receipt" if method == "send_invoice" else ""),
                "currency": cur,
                "amount": _money(due + credited if isinstance(due, int) and isinstance(credited, int) else due, cur),
                "balance": _money(_get(o, "amount_remaining"), cur),
                "status": {"open": "open", "paid": "paid", "void": "void", "uncollectible": "open"}.get(status, status),
                "autopay": "true" if method == "charge_automatically" else "false",
                "payment_link": _get(o, "hosted_invoice_url", ""),
                "po_number": _get(_get(o, "metadata", {}), "po_number", ""),
                "invoice_pdf_url": _get(o, "invoice_pdf", "") or "",  # the PDF Stripe renders, linked in the message
            })
        return string_frame(rows, INVOICE_COLUMNS + ("invoice_pdf_url",))

    def credit_notes(self) -> pd.DataFrame:
        """The credit notes of the open invoices read, as credit_notes.csv's rows: each issued note
        allocated to its invoice for what it took off it while open (`pre_payment_amount`)."""
        if not self._seen:   # nothing read yet: the open invoices (else the ones read, fresh ones included)
            self.invoices()
        rows = []
        for invoice_id, inv in sorted(self._seen.items()):
            credited = _get(inv, "pre_payment_credit_notes_amount", 0)
            if not isinstance(credited, int) or credited <= 0:
                continue
            for n in self._list(f"list credit notes of invoice {invoice_id}", self.client.v1.credit_notes,
                                {"invoice": invoice_id}):
                if _get(n, "status") == "void":
                    continue
                taken = _get(n, "pre_payment_amount")
                if taken is None:
                    taken = _get(n, "amount", 0) if _get(n, "type") == "pre_payment" else 0
                if taken in (0, ""):
                    continue
                cur = str(_get(n, "currency", "")).upper()
                rows.append({"credit_note_id": _get(n, "id", ""), "customer_id": _get(n, "customer", ""),
                             "credit_note_number": _get(n, "number") or _get(n, "id", ""),
                             "issue_date": _date(_get(n, "effective_at") or _get(n, "created")), "currency": cur,
                             "amount": _money(taken, cur), "invoice_id": invoice_id, "allocated": _money(taken, cur),
                             "allocated_date": _date(_get(n, "effective_at") or _get(n, "created"))})
        return string_frame(rows, CREDIT_NOTE_COLUMNS)

    def customers(self) -> pd.DataFrame:
        return self._customer_frame(self._list("list customers", self.client.v1.customers, {}))

    def fresh_customers(self, ids: set[str]) -> pd.DataFrame:
        return self._customer_frame([_plain(_call(f"retrieve customer {c}",
                                                  lambda c=c: self.client.v1.customers.retrieve(c)))
                                     for c in sorted(ids) if c])

    def _customer_frame(self, objs) -> pd.DataFrame:
        rows = []
        for o in objs:
            meta = dict(_get(o, "metadata", {}) or {})
            tenure = tenure_months(_date(_get(o, "created")), self.as_of)
            row = {c: str(meta.get(c, "")) for c in CUSTOMER_COLUMNS}
            row.update({"customer_id": _get(o, "id", ""), "name": _get(o, "name") or _get(o, "email", ""),
                        "segment": meta.get("segment") or "standard", "tenure_months": meta.get("tenure_months") or tenure,
                        "billing_contact_name": meta.get("billing_contact_name") or _get(o, "name", ""),
                        "billing_contact_email": _get(o, "email", ""),
                        "country": _get(_get(o, "address", {}), "country", ""),
                        "opt_out": meta.get("opt_out") or "false"})
            rows.append(row)
        return string_frame(rows, CUSTOMER_COLUMNS)

    def payments(self) -> pd.DataFrame:
        days = int(os.environ.get("ARFLOW_STRIPE_PAYMENT_DAYS", "35"))
        since = int(dt.datetime.combine(self.as_of - dt.timedelta(days=days), dt.time(), dt.timezone.utc).timestamp())
        rows = []
        for c in self._list("list charges", self.client.v1.charges, {"created": {"gte": since}}):
            if _get(c, "status") != "succeeded" or _get(c, "invoice") or _get(c, "refunded"):
                continue
            cur = str(_get(c, "currency", "")).upper()
            meta = dict(_get(c, "metadata", {}) or {})
            ref = " ".join(x for x in (_get(c, "description", ""), meta.get("invoice_number", "")) if x)
            rows.append({"payment_id": _get(c, "id", ""), "customer_id": _get(c, "customer", ""),
                         "amount": _money(_get(c, "amount_captured", _get(c, "amount")), cur), "currency": cur,
                         "received_date": _date(_get(c, "created")), "reference": ref})
        return string_frame(rows, PAYMENT_COLUMNS)

    def aging_report(self):
        return None  # Stripe keeps no aging report

    def reflected_payment_ids(self) -> set[str]:
        return set()  # only cash Stripe did not apply is read

    def check(self) -> dict:
        account = _call("retrieve the account", lambda: self.client.v1.accounts.retrieve_current())
        first = _call("list open invoices", lambda: self.client.v1.invoices.list(params={"status": "open", "limit": 100}))
        return {"system": "stripe", "account": _get(account, "id", ""),
                "livemode": bool(_get(first, "livemode", False)) if hasattr(first, "get") else None,
                "open_invoices_first_page": len(_get(first, "data", [])),
                "more_pages": bool(_get(first, "has_more", False))}


class StripeBilling:
    """The auto-charge: pay an open invoice with the customer's default payment method."""

    name = "stripe"

    def __init__(self, settings: dict):
        self.client = open_client(settings)

    def charge(self, *, invoice_id: str, invoice_number: str, customer_id: str, amount: str, currency: str,
               idempotency_key: str, on: dt.date) -> ChargeResult:
        import stripe

        from connectors.messaging import SendError

        try:
            paid = self.client.v1.invoices.pay(invoice_id, options={"idempotency_key": f"arflow:{idempotency_key}"})
        except stripe.CardError as exc:
            return ChargeResult(ok=False, error=(exc.error.decline_code if exc.error else None) or exc.code or "card_declined")
        except stripe.InvalidRequestError as exc:
            # e.g. no default payment method, or the invoice is no longer open
            return ChargeResult(ok=False, error=exc.code or "invalid_request")
        except stripe.StripeError as exc:
            raise SendError(f"Stripe: pay invoice {invoice_number} failed: "
                            f"{describe(exc.__cause__) if exc.__cause__ else exc.__class__.__name__}",
                            transient=True) from None
        if _get(paid, "status") != "paid":
            return ChargeResult(ok=False, error=f"invoice_{_get(paid, 'status', 'unpaid')}")
        return ChargeResult(ok=True, charge_id=_get(paid, "charge") or _get(paid, "payment_intent") or invoice_id)


def construct_event(payload: bytes, signature: str | None, secret: str | None):
    """The verified event, or ValueError saying why not (no secret, bad signature, bad payload)."""
    import stripe

    if not secret:
        raise ValueError("no webhook secret configured (ARFLOW_STRIPE_WEBHOOK_SECRET)")
    try:
        return stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError:
        raise ValueError("signature verification failed") from None
    except ValueError as exc:
        raise ValueError(f"payload is not an event: {str(exc)[:100]}") from None


def apply_event(event, ledger, as_of: dt.date) -> str:
    """Record a verified event in the ledger, once per event id. `invoice.payment_failed`: a failed
    billing row for the invoice, which puts it in the early lane flagged (as a failed auto-charge
    does); `invoice.paid`: an audit row (the next read of Stripe shows it paid; the check before any
    send reads it again). Other types are acknowledged and ignored. Returns what was done."""
    kind, obj = event["type"], event["data"]["object"]
    if kind not in ("invoice.payment_failed", "invoice.paid"):
        return "ignored"
    invoice_id, customer_id = _get(obj, "id", ""), _get(obj, "customer", "")
    key = f"stripe_event:{event['id']}"
    if kind == "invoice.payment_failed":
        error = _get(_get(obj, "last_finalization_error", {}), "code") or "payment_failed"
        row = {"idempotency_key": f"{invoice_id}:stripe_event:{event['id']}", "mode": "live", "run_id": "stripe-webhook",
               "as_of": as_of, "invoice_id": invoice_id, "customer_id": customer_id, "lane": "current",
               "step": "auto_charge", "channel": "billing", "status": "failed",
               "closed_reason": f"charge_failed: {error} (Stripe event {event['id']}, attempt "
                                f"{_get(obj, 'attempt_count', '?')})",
               "message_key": f"{customer_id}:{as_of}:stripe_event:{event['id']}", "needs_approval": False}
        with ledger.engine.begin() as conn:  # the event id and its effect: one transaction
            new = ledger.insert_outbox(pd.DataFrame([row]), conn)  # its key carries the event id
            ledger.claim_event(conn, key, kind)
            if not new:
                return "duplicate"
            ledger.audit("stripe", "invoice.payment_failed", "invoice", invoice_id, {"event": event["id"]}, conn)
        return "recorded"
    # Stripe applied the payment itself: the invoice's payment history, and its touches not yet out closed.
    from arflow.frames import settled_rows

    cur = str(_get(obj, "currency", "")).upper()
    # When it was paid: Stripe's paid_at, else when the event happened, else the day it arrives.
    paid_at = _get(_get(obj, "status_transitions", {}), "paid_at") or _get(event, "created")
    paid_date = _date(paid_at) or as_of.isoformat()
    created = _get(obj, "effective_at") or _get(obj, "created")
    settled = pd.DataFrame([{"invoice_id": invoice_id, "customer_id": customer_id,
                             "issue_date": _date(created) or paid_date,
                             "due_date": _date(_get(obj, "due_date") or created) or paid_date,
                             "paid_date": paid_date, "amount": _money(_get(obj, "amount_paid"), cur),
                             "currency": cur, "payment_id": _get(obj, "charge") or event["id"]}])
    rows = settled_rows(settled)
    detail = {"event": event["id"], "amount_paid": _get(obj, "amount_paid"), "currency": _get(obj, "currency")}
    with ledger.engine.begin() as conn:  # the event id and its effect: one transaction
        if not ledger.claim_event(conn, key, kind):
            return "duplicate"
        if not rows:  # nothing a retry could read better: acknowledged, and said so in the audit log
            ledger.audit("stripe", "invoice.paid.unreadable", "invoice", invoice_id, detail, conn)
            return "unreadable"
        ledger.audit("stripe", "invoice.paid", "invoice", invoice_id, detail, conn)
        ledger.record_settled(rows, as_of, actor="stripe", conn=conn)
    return "recorded"


MAX_WEBHOOK_BYTES = 1024 * 1024  # Stripe's events are a few kilobytes; anything near this is not one


def webhook_server(port: int, ledger, secret: str | None, today, host: str = "127.0.0.1"):
    """An HTTP endpoint for Stripe's webhooks: POST /stripe/webhook. 200 once the event is recorded
    (or was already); 400 when the signature or payload does not verify; 411/413 without a length or
    above MAX_WEBHOOK_BYTES; 500 when recording failed (nothing of it was kept: Stripe retries
    non-2xx, and the retry is processed). Every request gets an answer. `today()` gives the as_of an
    event is recorded under. Returns the (not yet serving) server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import json
    import sys

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops sending mid-request does not hold a thread for ever

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):
            if self.path.split("?")[0] != "/stripe/webhook":
                return self._reply(404, {"error": "not found"})
            length = (self.headers.get("Content-Length") or "").strip()
            if not length.isdigit():
                self.close_connection = True
                return self._reply(411, {"error": "a Content-Length is required"})
            if int(length) > MAX_WEBHOOK_BYTES:
                self.close_connection = True  # the body is never read
                return self._reply(413, {"error": f"body over {MAX_WEBHOOK_BYTES} bytes"})
            payload = self.rfile.read(int(length))
            try:
                event = construct_event(payload, self.headers.get("Stripe-Signature"), secret)
            except ValueError as exc:
                return self._reply(400, {"error": str(exc)})
            try:
                result = apply_event(event, ledger, today())
            except Exception as exc:  # noqa: BLE001 - answered, so Stripe retries; nothing of the event was kept
                print(f"arflow: Stripe event {event['id']} not recorded: {exc.__class__.__name__}: "
                      f"{str(exc)[:200]}", file=sys.stderr)
                return self._reply(500, {"error": "not recorded; retry", "received": event["id"]})
            return self._reply(200, {"received": event["id"], "result": result})

    return ThreadingHTTPServer((host, port), Handler)
