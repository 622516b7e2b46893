"""A local Stripe API (v1) on 127.0.0.1 for the stripe library (ARFLOW_STRIPE_BASE_URL). Objects in
the shape of tests/data/stripe_samples (the OpenAPI fixture and recorded events); lists as
`{"object": "list", "data", "has_more", "url"}` paged by `limit` and `starting_after`; errors as
`{"error": {"type", "code", "decline_code", "message"}}`.

Endpoints: GET /v1/invoices (status=), /v1/invoices/{id}, POST /v1/invoices/{id}/pay (honours
Idempotency-Key: a repeat gets the first answer), GET /v1/customers, /v1/customers/{id},
/v1/charges (created[gte]=), /v1/credit_notes (invoice=), /v1/account. Answers can be queued (429, 500...).
A credit note issued on an open invoice lowers its amount_due and amount_remaining and adds to its
pre_payment_credit_notes_amount, as Stripe does (tests/fixtures/stripe/SOURCES.md).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from pathlib import Path

from tests.wire import WireServer

SAMPLES = Path(__file__).resolve().parent / "data" / "stripe_samples"
CREDIT_NOTE = Path(__file__).parent / "fixtures" / "stripe" / "credit_note_api_reference.json"


def sample(name: str):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def ts(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp())


def sign(payload: bytes, secret: str, at: int | None = None) -> str:
    """The Stripe-Signature header for a payload (Stripe's documented scheme: HMAC-SHA256 of
    "t.payload" with the endpoint secret)."""
    at = at or int(time.time())
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


class FakeStripe(WireServer):
    def __init__(self, api_key: str = "sk_test_arflow123"):
        self.api_key = api_key
        self.invoices: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.credit_notes: dict[str, dict] = {}
        self.cards: dict[str, str] = {}          # customer -> "ok" | a decline code
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.queued: list[tuple[int, dict, dict]] = []
        self.ids = itertools.count(1)
        super().__init__()

    def env(self) -> dict:
        return {"ARFLOW_STRIPE_API_KEY": self.api_key, "ARFLOW_STRIPE_BASE_URL": self.url,
                "ARFLOW_HTTP_BACKOFF": "0.01", "ARFLOW_STRIPE_BLOCK": "no-such-block"}

    # ---- set-up ------------------------------------------------------------------------------
    def customer(self, cid: str, **fields) -> dict:
        obj = {"id": cid, "object": "customer", "name": fields.pop("name", cid), "email": None, "created": ts("2024-01-10"),
               "address": None, "metadata": {}, "livemode": False, **fields}
        self.customers[cid] = obj
        return obj

    def invoice(self, iid: str, customer: str, amount: int, *, created: str, due: str | None,
                method: str = "send_invoice", currency: str = "usd", remaining: int | None = None, **fields) -> dict:
        obj = copy.deepcopy(sample("invoice_openapi_fixture_trimmed"))
        obj.update({"id": iid, "customer": customer, "number": f"ARF-{iid[-4:]}", "amount_due": amount,
                    "amount_paid": amount - (remaining if remaining is not None else amount),
                    "amount_remaining": amount if remaining is None else remaining, "currency": currency,
                    "created": ts(created), "effective_at": ts(created), "due_date": ts(due) if due else None,
                    "collection_method": method, "days_until_due": 30 if method == "send_invoice" else None,
                    "status": "open", "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_1/{iid}",
                    "invoice_pdf": f"https://pay.stripe.com/invoice/acct_1/{iid}/pdf",
                    "metadata": {}, "charge": None, "pre_payment_credit_notes_amount": 0,
                    "post_payment_credit_notes_amount": 0, **fields})
        self.invoices[iid] = obj
        return obj

    def credit_note(self, cnid: str, invoice: str, amount: int, *, created: str, number: str | None = None) -> dict:
        """Issue a credit note on an open invoice (Stripe's pre-payment note): the invoice owes less."""
        inv = self.invoices[invoice]
        obj = copy.deepcopy(json.loads(CREDIT_NOTE.read_text()))
        obj.update({"id": cnid, "invoice": invoice, "customer": inv["customer"], "currency": inv["currency"],
                    "number": number or f"{inv['number']}-CN-{len(self.credit_notes) + 1:02d}", "amount": amount,
                    "total": amount, "subtotal": amount, "pre_payment_amount": amount, "post_payment_amount": 0,
                    "created": ts(created), "effective_at": ts(created), "type": "pre_payment", "status": "issued"})
        obj["lines"]["data"][0]["amount"] = amount
        self.credit_notes[cnid] = obj
        inv["amount_due"] -= amount
        inv["amount_remaining"] -= amount
        inv["pre_payment_credit_notes_amount"] = inv.get("pre_payment_credit_notes_amount", 0) + amount
        return obj

    def queue(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        self.queued.append((status, body or {"error": {"type": "api_error", "message": "Something went wrong"}},
                            headers or {}))

    # ---- answers -----------------------------------------------------------------------------
    def answer(self, method, path, query, body, headers):
        params = query | dict(urllib.parse.parse_qsl(body))   # Stripe posts form-encoded parameters
        self.requests[-1].update(params=params, idempotency_key=headers.get("Idempotency-Key"))
        status, out, extra = self._answer(method, path, params, headers)
        return status, out, {"Request-Id": f"req_{next(self.ids)}", **extra}

    def _answer(self, method, path, params, headers):
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error",
                                   "message": "Invalid API Key provided: sk_test_****"}}, {}
        if self.queued:
            return self.queued.pop(0)
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "account"]:
            return 200, {"id": "acct_1ArflowTest", "object": "account"}, {}
        if parts[:2] == ["v1", "invoices"] and len(parts) == 2:
            rows = [i for i in self.invoices.values() if params.get("status") in (None, i["status"])]
            return self._list(rows, params, "/v1/invoices")
        if parts[:2] == ["v1", "invoices"] and len(parts) == 3:
            inv = self.invoices.get(parts[2])
            return (200, inv, {}) if inv else self._missing("invoice", parts[2])
        if parts[:2] == ["v1", "invoices"] and len(parts) == 4 and parts[3] == "pay" and method == "POST":
            key = headers.get("Idempotency-Key")
            if key and key in self.idempotent:
                status, body = self.idempotent[key]
                return status, body, {"Idempotent-Replayed": "true"}
            status, body = self._pay(parts[2])
            if key:
                self.idempotent[key] = (status, body)
            return status, body, {}
        if parts[:2] == ["v1", "customers"] and len(parts) == 2:
            return self._list(list(self.customers.values()), params, "/v1/customers")
        if parts[:2] == ["v1", "customers"] and len(parts) == 3:
            c = self.customers.get(parts[2])
            return (200, c, {}) if c else self._missing("customer", parts[2])
        if parts[:2] == ["v1", "credit_notes"] and len(parts) == 2:
            rows = [c for c in self.credit_notes.values() if params.get("invoice") in (None, c["invoice"])]
            return self._list(rows, params, "/v1/credit_notes")
        if parts[:2] == ["v1", "charges"]:
            gte = int(params.get("created[gte]", 0))
            return self._list([c for c in self.charges.values() if c["created"] >= gte], params, "/v1/charges")
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({method}: {path})"}}, {}

    def _missing(self, what, oid):
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "id",
                               "message": f"No such {what}: '{oid}'"}}, {}

    def _list(self, rows, params, url):
        rows = sorted(rows, key=lambda o: (-o.get("created", 0), o["id"]))
        if "starting_after" in params:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(params["starting_after"]) + 1:]
        limit = int(params.get("limit", 10))
        return 200, {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit, "url": url}, {}

    def _pay(self, iid):
        inv = self.invoices.get(iid)
        if inv is None:
            return self._missing("invoice", iid)[:2]
        if inv["status"] != "open":
            return 400, {"error": {"type": "invalid_request_error", "code": "invoice_not_open",
                                   "message": f"Invoice is already {inv['status']}."}}
        card = self.cards.get(inv["customer"])
        if card is None:
            return 400, {"error": {"type": "invalid_request_error", "code": "invoice_no_customer_payment_method",
                                   "message": "This customer has no attached payment source or default payment method."}}
        if card != "ok":
            inv["attempt_count"] = inv.get("attempt_count", 0) + 1
            return 402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": card,
                                   "message": "Your card was declined."}}
        charge = f"ch_{next(self.ids):06d}"
        inv.update({"status": "paid", "amount_paid": inv["amount_due"], "amount_remaining": 0, "charge": charge,
                    "paid": True, "attempt_count": inv.get("attempt_count", 0) + 1})
        return 200, inv
