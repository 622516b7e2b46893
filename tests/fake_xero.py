"""A local Xero (Accounting API 2.0, the connections endpoint and the OAuth 2.0 token endpoint) on
127.0.0.1, answering in the wire format of the recorded and documented responses in
tests/data/xero_samples: xero-python is pointed at it (ARFLOW_XERO_BASE_URL, _IDENTITY_URL,
_TOKEN_URL).

It answers:
- POST /connect/token, grant_type=refresh_token with client_id/client_secret in the form (as
  xero-python sends them): a new access token and a rotated refresh token (the old one stays valid,
  as Xero's does for 30 minutes, unless a test retires it); an unknown one is 400 invalid_grant;
- GET  /connections: the recorded connection(s); tenantless (only X-AppMinLimit-Remaining);
- GET  /api.xro/2.0/{Invoices,Contacts,CreditNotes,Overpayments,Prepayments,Payments}: `page`
  (1-based) and `pageSize` (default 100, at most 1,000), a `pagination` block as newer responses
  carry, `where` terms joined by AND (`Field=="value"`, `Date >= DateTime(y, m, d)`), `IDs`,
  `Statuses`, and the `If-Modified-Since` header (UpdatedDateUTC after it), ordered by
  UpdatedDateUTC then id, as Xero orders them;
- GET  /api.xro/2.0/Invoices/{id}/OnlineInvoice; PUT /api.xro/2.0/Invoices/{id}/History (recorded);
- GET  /api.xro/2.0/Reports/AgedReceivablesByContact?contactId=..&date=..: the contact's open
  invoices on that day, laid out as the OpenAPI example is.

Every tenant answer carries X-DayLimit-Remaining / X-MinLimit-Remaining / X-AppMinLimit-Remaining
counted down from `day_budget` / `minute_budget`; the day's budget spent is a 429 with
X-Rate-Limit-Problem: day. Access tokens can be expired (401 with the recorded TokenExpired body),
and answers can be queued for the next API requests (429 with Retry-After, 5xx, a body).
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import itertools
import json
import re
import time
import urllib.parse
from pathlib import Path

from tests.wire import WireServer

SAMPLES = Path(__file__).resolve().parent / "data" / "xero_samples"
API = "/api.xro/2.0/"
LISTS = {"Invoices": "InvoiceID", "Contacts": "ContactID", "CreditNotes": "CreditNoteID",
         "Overpayments": "OverpaymentID", "Prepayments": "PrepaymentID", "Payments": "PaymentID"}


def sample(name: str):
    return json.loads((SAMPLES / f"{name}.json").read_text(), parse_float=decimal.Decimal)


def ms_date(day: str | dt.date | dt.datetime) -> str:
    """`2023-03-01` -> `/Date(1677628800000+0000)/`, as Xero writes dates."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    if not isinstance(day, dt.datetime):
        day = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    return f"/Date({int(day.timestamp() * 1000)}+0000)/"


def _ms(text: str) -> int:
    return int(re.search(r"-?\d+", text).group())


def invoice(iid: str, contact: str, number: str, date: str, due: str | None, total, amount_due=None, *,
            currency: str = "NZD", status: str = "AUTHORISED", credited="0.00", reference: str = "",
            updated: str | None = None, kind: str = "ACCREC") -> dict:
    total = decimal.Decimal(str(total))
    due_amount = decimal.Decimal(str(amount_due if amount_due is not None else total))
    credited = decimal.Decimal(str(credited))
    out = {"Type": kind, "InvoiceID": iid, "InvoiceNumber": number, "Reference": reference, "Payments": [],
           "CreditNotes": [], "Prepayments": [], "Overpayments": [], "AmountDue": due_amount,
           "AmountPaid": total - due_amount - credited, "AmountCredited": credited, "CurrencyRate": decimal.Decimal("1.000000"),
           "Contact": {"ContactID": contact, "Name": f"Contact {contact}"}, "DateString": f"{date}T00:00:00",
           "Date": ms_date(date), "Status": status, "LineAmountTypes": "Exclusive", "LineItems": [],
           "SubTotal": total, "TotalTax": decimal.Decimal("0.00"), "Total": total,
           "UpdatedDateUTC": updated or ms_date("2023-01-01"), "CurrencyCode": currency}
    if due:
        out.update(DueDateString=f"{due}T00:00:00", DueDate=ms_date(due))
    return out


def contact(cid: str, name: str, email: str = "", *, terms: dict | None = None, persons: list | None = None,
            country: str = "", account_number: str = "") -> dict:
    out = {"ContactID": cid, "ContactStatus": "ACTIVE", "Name": name, "FirstName": "", "LastName": "",
           "EmailAddress": email, "AccountNumber": account_number,
           "Addresses": [{"AddressType": "POBOX", "City": "", "Country": country},
                         {"AddressType": "STREET", "City": "", "Country": ""}],
           "Phones": [], "ContactGroups": [], "IsCustomer": True, "ContactPersons": persons or [],
           "UpdatedDateUTC": ms_date("2023-01-01"), "HasAttachments": False, "HasValidationErrors": False}
    if terms:
        out["PaymentTerms"] = {"Sales": terms}
    return out


def _dumps(obj) -> str:
    """JSON with every Decimal written as the number literal it holds (270.63, 1.000000), as Xero does."""
    marked = json.dumps(obj, default=lambda d: f"@@{d}@@" if isinstance(d, decimal.Decimal) else str(d))
    return re.sub(r'"@@(-?[0-9.E+-]+)@@"', r"\1", marked)


class FakeXero(WireServer):
    content_type = "application/json; charset=utf-8"

    def __init__(self, client_id: str = "xero-app-id", client_secret: str = "xero-app-secret",
                 refresh_token: str = "xero-rt-0"):
        self.client_id, self.client_secret = client_id, client_secret
        self.connections = sample("connections_get_recorded_2020")
        self.connections[0]["tenantName"] = "Demo Company (NZ)"
        self.tenant_id = self.connections[0]["tenantId"]
        self.data: dict[str, list[dict]] = {k: [] for k in LISTS}
        self.online: dict[str, str] = {}
        self.history: list[dict] = []
        self.initial_refresh = refresh_token
        self.valid_refresh = {refresh_token}
        self.valid_access: set[str] = set()
        self.counter = itertools.count(1)
        self.queued: list[tuple[int, object, dict]] = []
        self.day_budget, self.minute_budget = 5000, 60
        self.minute_seconds = 0.05     # the minute window, shortened for the tests (a real one is 60 s)
        self._window = time.monotonic()
        self.pagination = True
        self.page_hook = None   # (resource, page, rows) -> rows: a proxy that changes a page
        super().__init__()

    # ---- set-up ------------------------------------------------------------------------------
    def dumps(self, obj) -> str:
        return _dumps(obj)

    def env(self) -> dict:
        return {"ARFLOW_XERO_CLIENT_ID": self.client_id, "ARFLOW_XERO_CLIENT_SECRET": self.client_secret,
                "ARFLOW_XERO_REFRESH_TOKEN": self.initial_refresh, "ARFLOW_XERO_BASE_URL": f"{self.url}/api.xro/2.0",
                "ARFLOW_XERO_IDENTITY_URL": self.url, "ARFLOW_XERO_TOKEN_URL": f"{self.url}/connect/token",
                "ARFLOW_HTTP_BACKOFF": "0.01", "ARFLOW_XERO_BLOCK": "no-such-block",
                "ARFLOW_XERO_MINUTE_WAIT": str(self.minute_seconds)}

    def add(self, resource: str, obj: dict, *, url: str | None = None) -> dict:
        obj = copy.deepcopy(obj)
        key = LISTS[resource]
        with self.lock:
            self.data[resource] = [o for o in self.data[resource] if o.get(key) != obj.get(key)] + [obj]
            if resource == "Invoices":
                self.online[obj[key]] = url or f"https://in.xero.com/{obj[key][:8]}"
        return obj

    def update(self, resource: str, record_id: str, at: dt.datetime, **fields) -> dict:
        obj = next(o for o in self.data[resource] if o.get(LISTS[resource]) == record_id)
        obj.update(fields)
        obj["UpdatedDateUTC"] = ms_date(at)
        return obj

    def queue(self, status: int, body=None, headers: dict | None = None) -> None:
        """The next API request (not the token endpoint) gets this answer."""
        self.queued.append((status, body if body is not None else
                            {"Type": None, "Title": "Service Unavailable", "Status": status, "Detail": "try later"},
                            headers or {}))

    def expire_access_tokens(self) -> None:
        self.valid_access.clear()

    def api_requests(self, part: str | None = None) -> list[dict]:
        out = [r for r in self.requests if r["path"].startswith(API)]
        return [r for r in out if part is None or part in r["path"]]

    # ---- answers -----------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict, body: str, headers) -> tuple[int, object, dict]:
        if path == "/connect/token" and method == "POST":
            return self._token(body)
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_access:
            return 401, sample("error_401_token_expired_pyxero"), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if path.lower() == "/connections":  # xero-python asks for /Connections, the docs write /connections
            return 200, self.connections, {"X-AppMinLimit-Remaining": "9999"}
        if not path.startswith(API):
            return 404, "<html><body>The resource you're looking for cannot be found</body></html>", {}
        if headers.get("xero-tenant-id") != self.tenant_id:
            return 403, {"Type": None, "Title": "Forbidden", "Status": 403, "Detail": "AuthenticationUnsuccessful"}, {}
        if time.monotonic() - self._window >= self.minute_seconds and self.minute_seconds > 0:
            self._window, self.minute_budget = time.monotonic(), 60
        self.day_budget -= 1
        self.minute_budget = max(0, self.minute_budget - 1)
        limits = {"X-DayLimit-Remaining": str(max(self.day_budget, 0)), "X-MinLimit-Remaining": str(self.minute_budget),
                  "X-AppMinLimit-Remaining": "9999", "Xero-Correlation-Id": f"corr-{len(self.requests)}"}
        if self.day_budget < 0:
            return 429, {"Title": "Too Many Requests"}, {**limits, "X-Rate-Limit-Problem": "day", "Retry-After": "43200"}
        if self.queued:
            status, out, extra = self.queued.pop(0)
            return status, out, {**limits, **extra}
        status, out = self._route(method, path[len(API):], query, body, headers)
        return status, out, limits

    def _envelope(self, **parts) -> dict:
        return {"Id": "7f1d1c1e-0000-4000-8000-000000000000", "Status": "OK", "ProviderName": "arflow tests",
                "DateTimeUTC": ms_date(dt.datetime.now(dt.timezone.utc)), **parts}

    def _route(self, method: str, rest: str, query: dict, body: str, headers) -> tuple[int, object]:
        parts = rest.split("/")
        if method == "GET" and len(parts) == 1 and parts[0] in LISTS:
            return self._list(parts[0], query, headers)
        if method == "GET" and len(parts) == 3 and parts[0] == "Invoices" and parts[2] == "OnlineInvoice":
            inv = next((i for i in self.data["Invoices"] if i["InvoiceID"] == parts[1]), None)
            if inv is None or inv["Status"] not in ("AUTHORISED", "PAID"):
                return 400, sample("error_400_validation_contacts_openapi_example") | {
                    "Message": "Online invoice is only available for approved sales invoices"}
            return 200, self._envelope(OnlineInvoices=[{"OnlineInvoiceUrl": self.online[parts[1]]}])
        if method == "PUT" and len(parts) == 3 and parts[0] == "Invoices" and parts[2] == "History":
            records = json.loads(body)["HistoryRecords"]
            self.history += [{"InvoiceID": parts[1], **r} for r in records]
            return 200, self._envelope(HistoryRecords=[{"Details": r["Details"], "DateUTC": ms_date(dt.date.today()),
                                                        "User": "arflow", "Changes": "Note"} for r in records])
        if method == "GET" and rest == "Reports/AgedReceivablesByContact":
            return 200, self.aged_receivables(query["contactId"], dt.date.fromisoformat(query["date"]))
        return 404, "<html><body>The resource you're looking for cannot be found</body></html>"

    def _list(self, resource: str, query: dict, headers) -> tuple[int, object]:
        rows = list(self.data[resource])
        key = LISTS[resource]
        if query.get("where"):
            try:
                rows = [r for r in rows if _where(r, query["where"])]
            except ValueError as exc:
                return 400, {"ErrorNumber": 16, "Type": "QueryParseException", "Message": str(exc)}
        if query.get("IDs"):
            wanted = set(query["IDs"].split(","))
            rows = [r for r in rows if r[key] in wanted]
        if query.get("Statuses"):
            rows = [r for r in rows if r.get("Status") in set(query["Statuses"].split(","))]
        since = headers.get("If-Modified-Since")
        if since:
            cut = dt.datetime.fromisoformat(since).replace(tzinfo=dt.timezone.utc).timestamp() * 1000
            rows = [r for r in rows if _ms(r["UpdatedDateUTC"]) > cut]
        rows.sort(key=lambda r: (_ms(r.get("UpdatedDateUTC", "/Date(0)/")), r[key]))
        size = min(int(query.get("pageSize", 100)), 1000)
        page = int(query.get("page", 1))
        chunk = rows[(page - 1) * size: page * size] if "page" in query else rows
        if self.page_hook is not None:
            chunk = self.page_hook(resource, page, chunk)
        out = {resource: chunk}
        if self.pagination and "page" in query:
            out = {"pagination": {"page": page, "pageSize": size, "pageCount": max(1, -(-len(rows) // size)),
                                  "itemCount": len(rows)}, **out}
        return 200, self._envelope(**out)

    def _token(self, body: str) -> tuple[int, object, dict]:
        form = dict(urllib.parse.parse_qsl(body))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 400, {"error": "invalid_client"}, {}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.valid_refresh:
            return 400, {"error": "invalid_grant"}, {}
        n = next(self.counter)
        token = sample("token_refresh_response_recorded_2020")
        token.update(access_token=f"xero-at-{n}", refresh_token=f"xero-rt-{n}", id_token=f"xero-id-{n}")
        self.valid_access.add(token["access_token"])
        self.valid_refresh.add(token["refresh_token"])
        return 200, token, {"Cache-Control": "no-store"}

    def aged_receivables(self, contact_id: str, on: dt.date) -> dict:
        """The contact's open invoices on `on` in the Aged Receivables by Contact layout."""
        def cell(value, iid=None):
            out = {"Value": value}
            if iid:
                out["Attributes"] = [{"Value": iid, "Id": "invoiceID"}]
            return out

        rows, total = [], decimal.Decimal(0)
        for inv in self.data["Invoices"]:
            if inv["Contact"]["ContactID"] != contact_id or inv["Type"] != "ACCREC" or inv["Status"] != "AUTHORISED":
                continue
            try:  # a malformed invoice (the tests' own) is not in the books' report
                issued = dt.date.fromisoformat(inv["DateString"][:10])
                due = inv.get("DueDateString", "")
                days = (on - dt.date.fromisoformat(due[:10])).days if due else 0
            except (KeyError, ValueError):
                continue
            if issued > on or decimal.Decimal(str(inv["AmountDue"])) <= 0:
                continue
            paid = decimal.Decimal(str(inv["AmountPaid"]))
            credited = decimal.Decimal(str(inv["AmountCredited"]))
            amount_due = decimal.Decimal(str(inv["AmountDue"]))
            total += amount_due
            iid = inv["InvoiceID"]
            rows.append({"RowType": "Row", "Cells": [
                cell(inv["DateString"], iid), cell(inv["InvoiceNumber"], iid), cell(due, iid),
                cell(f"{days} days overdue" if days > 0 else "", iid), cell(f"{decimal.Decimal(str(inv['Total'])):.2f}", iid),
                cell(f"{paid:.2f}", iid), cell(f"{credited:.2f}", iid), cell(f"{amount_due:.2f}", iid)]})
        blank = [cell("")] * 3
        summary = lambda title: {"RowType": "SummaryRow", "Cells": [cell(title), *blank, cell(f"{total:.2f}"),  # noqa: E731
                                                                    cell("0.00"), cell("0.00"), cell(f"{total:.2f}")]}
        header = {"RowType": "Header", "Cells": [cell(t) for t in ("Date", "Number", "Due Date", "", "Total", "Paid",
                                                                   "Credited", "Due")]}
        return self._envelope(Reports=[{
            "ReportName": "Aged Receivables By Contact", "ReportType": "AgedReceivablesByContact",
            "ReportTitles": ["Invoices", "Demo Company (NZ)", f"To {on:%d %B %Y}", f"Showing payments to {on:%d %B %Y}"],
            "ReportDate": f"{on.day} {on:%B %Y}", "UpdatedDateUTC": ms_date(dt.datetime.now(dt.timezone.utc)),
            "Fields": [],
            "Rows": [header, {"RowType": "Section", "Title": "", "Rows": [*rows, summary("Total")]},
                     {"RowType": "Section", "Title": "", "Rows": [summary("Closing Balance")]}]}])


def _where(obj: dict, where: str) -> bool:
    for term in re.split(r"\s+AND\s+", where.strip()):
        m = re.fullmatch(r'(\w+)\s*==\s*"([^"]*)"', term.strip())
        if m:
            if str(obj.get(m.group(1))) != m.group(2):
                return False
            continue
        m = re.fullmatch(r"(\w+)\s*>=\s*DateTime\((\d+),\s*(\d+),\s*(\d+)\)", term.strip())
        if m:
            day = dt.date(int(m.group(2)), int(m.group(3)), int(m.group(4)))
            if _ms(obj.get(m.group(1), "/Date(0)/")) < _ms(ms_date(day)):
                return False
            continue
        raise ValueError(f"cannot parse {term!r}")
    return True
