"""A local Chargebee (API v2) on 127.0.0.1 for the chargebee library (ARFLOW_CHARGEBEE_BASE_URL), answering
in the wire format of tests/data/chargebee_samples (http_conventions.json and the recorded objects).

- HTTP basic auth, the API key as user name: anything else is 401 with the recorded
  api_authentication_failed body;
- GET /api/v2/invoices, /customers, /transactions: `limit` (1-100, default 10) and `offset`, answered
  `{"list": [{"<resource>": {...}}], "next_offset": "[\\"<ts>\\",\\"<id>\\"]"}` with next_offset only
  while rows remain; filters `status[in]` (the library sends the Python repr of a list), `id[in]`,
  `type[is]`, `status[is]`, `date[after]`; ordered by date then id;
- GET /api/v2/invoices/{id}, /customers/{id};
- POST /api/v2/invoices/{id}/collect_payment: charges the customer's payment source (`cards`: "ok" or
  a decline message), answers `{invoice, transaction}`; honours `chargebee-idempotency-key` (a repeat
  gets the stored answer with `chargebee-idempotency-replayed: true`); a decline is the 400 `payment`
  error body; an invoice not payment_due/not_paid is 400 invalid_state_for_request;
- answers can be queued for the next API requests (429 with Retry-After, 5xx, a body), and a page
  can be cut short (`short_page`).
"""

from __future__ import annotations

import ast
import base64
import copy
import datetime as dt
import itertools
import json
from pathlib import Path

from tests.wire import WireServer

SAMPLES = Path(__file__).resolve().parent / "data" / "chargebee_samples"
API = "/api/v2/"


def sample(name: str) -> dict:
    body = json.loads((SAMPLES / f"{name}.json").read_text())
    body.pop("_note", None)
    return body


def ts(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp())


def _listed(text: str) -> list[str]:
    """`['a', 'b']` (the library) or `["a","b"]` (JSON, as Chargebee's docs write it)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = ast.literal_eval(text)
    return [str(v) for v in value]


class FakeChargebee(WireServer):
    def __init__(self, api_key: str = "test_cbKEYarflow123", site: str = "arflow-test"):
        self.api_key, self.site = api_key, site
        self.invoices: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.transactions: dict[str, dict] = {}
        self.cards: dict[str, str] = {}                      # customer -> "ok" | a decline message
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.queued: list[tuple[int, object, dict]] = []
        self.short_page: int | None = None                   # this page comes back empty, next_offset kept
        self.ids = itertools.count(1)
        super().__init__()

    def env(self) -> dict:
        return {"ARFLOW_CHARGEBEE_SITE": self.site, "ARFLOW_CHARGEBEE_API_KEY": self.api_key,
                "ARFLOW_CHARGEBEE_BASE_URL": self.url, "ARFLOW_HTTP_BACKOFF": "0.01",
                "ARFLOW_CHARGEBEE_BLOCK": "no-such-block"}

    # ---- set-up ------------------------------------------------------------------------------
    def customer(self, cid: str, *, email: str, company: str, auto_collection: str = "off", country: str = "US",
                 created: str = "2024-01-10", **fields) -> dict:
        obj = copy.deepcopy(sample("webhook_event_payment_succeeded_full_payment_2020")["content"]["customer"])
        obj.update({"id": cid, "email": email, "company": company, "first_name": fields.pop("first_name", "Ann"),
                    "last_name": fields.pop("last_name", "Payable"), "auto_collection": auto_collection,
                    "created_at": ts(created), "billing_address": {"country": country, "object": "billing_address"},
                    **fields})
        self.customers[cid] = obj
        return obj

    def invoice(self, iid: str, customer: str, total: int, *, date: str, due: str, currency: str = "USD",
                due_amount: int | None = None, **fields) -> dict:
        obj = copy.deepcopy(sample("webhook_event_invoice_generated_net30_2020")["content"]["invoice"])
        days = (dt.date.fromisoformat(due) - dt.date.fromisoformat(date)).days
        owed = total if due_amount is None else due_amount
        obj.update({"id": iid, "customer_id": customer, "status": "payment_due", "date": ts(date), "due_date": ts(due),
                    "net_term_days": days, "total": total, "sub_total": total, "amount_due": owed,
                    "amount_to_collect": owed, "amount_paid": 0, "currency_code": currency,
                    "base_currency_code": currency, "new_sales_amount": total, **fields})
        obj.pop("line_items", None)
        self.invoices[iid] = obj
        return obj

    def payment(self, tid: str, customer: str, amount: int, *, on: str, currency: str = "USD",
                linked: list[tuple[str, int, str]] = ()) -> dict:
        obj = copy.deepcopy(sample("webhook_event_payment_succeeded_full_payment_2020")["content"]["transaction"])
        obj.update({"id": tid, "customer_id": customer, "amount": amount, "date": ts(on), "currency_code": currency,
                    "base_currency_code": currency, "status": "success", "type": "payment",
                    "linked_invoices": [{"invoice_id": i, "applied_amount": a, "applied_at": ts(on),
                                         "invoice_status": s} for i, a, s in linked]})
        self.transactions[tid] = obj
        return obj

    def queue(self, status: int, body: object = None, headers: dict | None = None) -> None:
        if body is None:
            body = sample("error_429_api_request_limit_exceeded_airbyte_fixture") if status == 429 else \
                {"message": "Sorry, something went wrong", "type": "operation_failed", "api_error_code": "internal_error",
                 "http_status_code": status}
        self.queued.append((status, body, headers or {}))

    # ---- the API -----------------------------------------------------------------------------
    def _authorized(self, headers) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        return headers.get("Authorization") == expected

    def answer(self, method, path, query, body, headers):
        if not path.startswith(API):
            return 404, {"message": "not found", "api_error_code": "resource_not_found", "http_status_code": 404}, {}
        if not self._authorized(headers):
            return 401, sample("error_401_api_authentication_failed_airbyte_fixture"), {}
        if self.queued:
            return self.queued.pop(0)
        parts = path[len(API):].strip("/").split("/")
        stores = {"invoices": ("invoice", self.invoices), "customers": ("customer", self.customers),
                  "transactions": ("transaction", self.transactions)}
        if method == "GET" and len(parts) == 1 and parts[0] in stores:
            name, store = stores[parts[0]]
            return self._list(name, store, query)
        if method == "GET" and len(parts) == 2 and parts[0] in stores:
            name, store = stores[parts[0]]
            if parts[1] not in store:
                return 404, {"message": f"{parts[1]} not found", "type": "invalid_request",
                             "api_error_code": "resource_not_found", "http_status_code": 404}, {}
            return 200, {name: store[parts[1]]}, {}
        if method == "POST" and len(parts) == 3 and parts[0] == "invoices" and parts[2] == "collect_payment":
            key = headers.get("chargebee-idempotency-key")
            if key and key in self.idempotent:
                status, out = self.idempotent[key]
                return status, out, {"chargebee-idempotency-replayed": "true"}
            status, out = self._collect(parts[1])
            if key and status < 500:
                self.idempotent[key] = (status, out)
            return status, out, {}
        return 404, {"message": "not found", "api_error_code": "resource_not_found", "http_status_code": 404}, {}

    def _list(self, name: str, store: dict, query: dict):
        rows = list(store.values())
        if "status[in]" in query:
            rows = [r for r in rows if r.get("status") in _listed(query["status[in]"])]
        if "id[in]" in query:
            rows = [r for r in rows if r.get("id") in _listed(query["id[in]"])]
        for field in ("type", "status", "customer_id"):
            if f"{field}[is]" in query:
                rows = [r for r in rows if str(r.get(field)) == query[f"{field}[is]"]]
        if "date[after]" in query:
            rows = [r for r in rows if r.get("date", 0) > int(query["date[after]"])]
        stamp = "date" if name != "customer" else "created_at"
        rows.sort(key=lambda r: (r.get(stamp, 0), str(r.get("id"))))
        limit = int(query.get("limit", 10))
        if not 1 <= limit <= 100:
            return 400, {"message": "limit should be between 1 and 100", "type": "invalid_request",
                         "api_error_code": "param_wrong_value", "param": "limit", "http_status_code": 400}, {}
        start = 0
        if query.get("offset"):
            after = tuple(json.loads(query["offset"]))
            start = next((n for n, r in enumerate(rows) if (str(r.get(stamp, 0)), str(r.get("id"))) == after), -1) + 1
        page = rows[start:start + limit]
        out: dict = {"list": [{name: r} for r in page]}
        if start + limit < len(rows):
            last = page[-1]
            out["next_offset"] = json.dumps([str(last.get(stamp, 0)), str(last.get("id"))])
        number = start // limit + 1
        if self.short_page == number:
            out["list"] = []
        return 200, out, {}

    def _collect(self, iid: str):
        inv = self.invoices.get(iid)
        if inv is None:
            return 404, {"message": f"{iid} not found", "type": "invalid_request", "api_error_code": "resource_not_found",
                         "http_status_code": 404}
        if inv["status"] not in ("payment_due", "not_paid"):
            return 400, {"message": "The invoice is not in payment due state", "type": "invalid_request",
                         "api_error_code": "invalid_state_for_request", "http_status_code": 400}
        card = self.cards.get(inv["customer_id"])
        if card is None:
            return 400, {"message": "No payment method available for the customer", "type": "invalid_request",
                         "api_error_code": "payment_method_not_present", "http_status_code": 400}
        if card != "ok":
            return 400, {**sample("error_400_payment_processing_failed_assembled"), "message": card}
        amount = inv["amount_due"]
        tid = f"txn_arf{next(self.ids):04d}"
        now = max(inv["date"], inv["due_date"])
        txn = self.payment(tid, inv["customer_id"], amount, on=dt.datetime.fromtimestamp(now, dt.timezone.utc)
                           .date().isoformat(), currency=inv["currency_code"], linked=[(iid, amount, "paid")])
        txn.update({"payment_method": "card", "gateway": "chargebee"})
        inv.update({"status": "paid", "amount_paid": inv["amount_paid"] + amount, "amount_due": 0,
                    "amount_to_collect": 0, "paid_at": now,
                    "linked_payments": [{"txn_id": tid, "applied_amount": amount, "txn_status": "success"}]})
        return 200, {"invoice": inv, "transaction": txn}
