"""A local QuickBooks Online (Accounting API v3) and Intuit OAuth 2.0 server on 127.0.0.1, speaking
the wire format of the recorded responses in tests/data/qbo_samples: python-quickbooks and
intuit-oauth are pointed at it (ARFLOW_QBO_BASE_URL, and ARFLOW_QBO_ENVIRONMENT = its discovery URL).

It answers:
- GET  /.well-known/openid-configuration (the discovery document intuit-oauth reads);
- POST /oauth2/v1/tokens/bearer, grant_type=refresh_token: a new access token and a rotated
  refresh token (the old one stays valid, as Intuit's does for a while); an unknown one is 400
  invalid_grant;
- POST /v3/company/<realm>/query (SQL as an application/text body): SELECT * or COUNT(*) FROM an
  entity, WHERE terms joined by AND (`Balance > '0'`, `Active IN (true, false)`, `TxnDate >= 'D'`,
  `Id IN ('1', '2')`, `Id = '1'`), STARTPOSITION/MAXRESULTS paging (at most 1,000 a page); anything
  else is the recorded 400 fault 4001;
- GET  /v3/company/<realm>/cdc?entities=..&changedSince=..: what changed (MetaData.LastUpdatedTime),
  deleted objects as {"Id", "status": "Deleted"};
- GET  /v3/company/<realm>/reports/AgedReceivables?report_date=D: the books' aging of its own open
  invoices and credit memos on D (or a canned report);
- GET  /v3/company/<realm>/invoice/<id>/pdf: the invoice as an application/pdf document (a small
  PDF naming its DocNumber; `pdf_requests` counts them); an unknown id is the recorded 400 fault 2030;
- GET  /v3/company/<realm>/companyinfo/<realm>; POST /v3/company/<realm>/{customer,invoice} (sparse
  updates, recorded).

An access token can be expired (401 with the recorded 3200 fault), and responses can be queued for
the next API requests (429 with Retry-After, 500s, a malformed body).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import decimal
import itertools
import json
import re
import urllib.parse
from pathlib import Path

from tests.wire import WireServer

SAMPLES = Path(__file__).resolve().parent / "data" / "qbo_samples"
ENTITIES = ("Invoice", "Customer", "Payment", "CreditMemo", "Term", "Preferences")
_SQL = re.compile(r"^\s*SELECT\s+(\*|COUNT\(\*\))\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+?))?"
                  r"(?:\s+STARTPOSITION\s+(\d+))?(?:\s+MAXRESULTS\s+(\d+))?\s*$", re.IGNORECASE | re.DOTALL)


def sample(name: str):
    return json.loads((SAMPLES / f"{name}.json").read_text(), parse_float=decimal.Decimal)


def _dumps(obj) -> str:
    return json.dumps(obj, default=lambda d: float(d) if isinstance(d, decimal.Decimal) else str(d))


class FakeQuickBooks(WireServer):
    def __init__(self, realm: str = "9130357766", client_id: str = "app-id", client_secret: str = "app-secret",
                 refresh_token: str = "rt-0"):
        self.realm, self.client_id, self.client_secret = realm, client_id, client_secret
        self.data: dict[str, list[dict]] = {e: [] for e in ENTITIES}
        self.deleted: dict[str, list[dict]] = {e: [] for e in ENTITIES}
        self.initial_refresh = refresh_token
        self.valid_refresh = {refresh_token}
        self.valid_access: set[str] = set()
        self.counter = itertools.count(1)
        self.queued: list[tuple[int, str, dict]] = []
        self.writes: list[dict] = []
        self.aging_override: dict | None = None
        self.company_name = "Sandbox Company_US_1"
        self.data["Preferences"] = [{"Id": "1", "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}}}]
        self.data["Term"] = [{"Id": "3", "Name": "Net 30", "DueDays": 30, "Active": True},
                             {"Id": "1", "Name": "Due on receipt", "DueDays": 0, "Active": True}]
        super().__init__()

    # ---- set-up ------------------------------------------------------------------------------
    def dumps(self, obj) -> str:
        return _dumps(obj)

    def env(self) -> dict:
        return {"ARFLOW_QBO_CLIENT_ID": self.client_id, "ARFLOW_QBO_CLIENT_SECRET": self.client_secret,
                "ARFLOW_QBO_REFRESH_TOKEN": self.initial_refresh, "ARFLOW_QBO_REALM_ID": self.realm,
                "ARFLOW_QBO_ENVIRONMENT": f"{self.url}/.well-known/openid-configuration",
                "ARFLOW_QBO_BASE_URL": f"{self.url}/v3", "ARFLOW_HTTP_BACKOFF": "0.01",
                "OAUTHLIB_INSECURE_TRANSPORT": "1"}  # requests-oauthlib refuses plain http otherwise

    def add(self, entity: str, obj: dict, *, at: str | None = None) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("MetaData", {})
        meta.setdefault("CreateTime", at or "2023-01-01T00:00:00-08:00")
        meta["LastUpdatedTime"] = at or meta.get("LastUpdatedTime") or meta["CreateTime"]
        with self.lock:
            self.data[entity] = [o for o in self.data[entity] if o["Id"] != obj["Id"]] + [obj]
        return obj

    def update(self, entity: str, record_id: str, at: str, **fields) -> dict:
        obj = next(o for o in self.data[entity] if o["Id"] == record_id)
        obj.update(fields)
        obj["MetaData"]["LastUpdatedTime"] = at
        return obj

    def delete(self, entity: str, record_id: str, at: str) -> None:
        with self.lock:
            self.data[entity] = [o for o in self.data[entity] if o["Id"] != record_id]
            self.deleted[entity].append({"domain": "QBO", "status": "Deleted", "Id": record_id,
                                         "MetaData": {"LastUpdatedTime": at}})

    def queue(self, status: int, body=None, headers: dict | None = None) -> None:
        """The next API request (not the token endpoint) gets this answer."""
        self.queued.append((status, body if body is not None else {"Fault": {"Error": [
            {"Message": "Service unavailable", "Detail": "try later", "code": "10000"}], "type": "SystemFault"}},
            headers or {}))

    def expire_access_tokens(self) -> None:
        self.valid_access.clear()

    def api_requests(self, kind: str | None = None) -> list[dict]:
        out = [r for r in self.requests if r["path"].startswith("/v3/")]
        return [r for r in out if kind is None or kind in r["path"]]

    # ---- answers -----------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict, body: str, headers) -> tuple[int, object, dict]:
        if path == "/.well-known/openid-configuration":
            return 200, {"issuer": self.url, "authorization_endpoint": f"{self.url}/connect/oauth2",
                         "token_endpoint": f"{self.url}/oauth2/v1/tokens/bearer",
                         "revocation_endpoint": f"{self.url}/oauth2/v1/tokens/revoke",
                         "jwks_uri": f"{self.url}/oauth2/v1/keys", "userinfo_endpoint": f"{self.url}/v1/openid_connect/userinfo"}, {}
        if path == "/oauth2/v1/tokens/bearer":
            return self._token(body, headers)
        if not path.startswith(f"/v3/company/{self.realm}/"):
            return 400, sample("fault_500_unsupported_operation_400"), {}
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_access:
            return 401, sample("fault_3200_token_expired_401"), {}
        if self.queued:
            return self.queued.pop(0)
        rest = path[len(f"/v3/company/{self.realm}/"):]
        if method == "GET" and rest.startswith("invoice/") and rest.endswith("/pdf"):
            # python-quickbooks' download_pdf sends no minorversion; QuickBooks then answers at its
            # base version (a PDF has no fields a minor version would change)
            return self._pdf(rest.split("/")[1])
        if query.get("minorversion") is None:
            return 400, {"Fault": {"Error": [{"Message": "minorversion missing", "code": "2010"}]}}, {}
        rest = path[len(f"/v3/company/{self.realm}/"):]
        if rest == "query" and method == "POST":
            return self._query(body)
        if rest == "cdc":
            return self._cdc(query)
        if rest == "reports/AgedReceivables":
            return 200, self.aging_override or self.aging(dt.date.fromisoformat(query["report_date"])), {}
        if rest == f"companyinfo/{self.realm}":
            return 200, {"CompanyInfo": {"CompanyName": self.company_name, "Id": "1"}, "time": "now"}, {}
        if rest in ("customer", "invoice") and method == "POST":
            change = json.loads(body)
            entity = rest.capitalize()
            self.writes.append({"entity": entity, **change})
            obj = next((o for o in self.data[entity] if o["Id"] == change.get("Id")), None)
            if obj is None:
                return 400, sample("fault_2030_invalid_id_400"), {}
            obj.update({k: v for k, v in change.items() if k not in ("sparse", "Id")})
            obj["SyncToken"] = str(int(obj.get("SyncToken", "0")) + 1)
            return 200, {entity: obj, "time": "now"}, {}
        return 400, sample("fault_500_unsupported_operation_400"), {}

    def _pdf(self, invoice_id: str) -> tuple[int, object, dict]:
        obj = next((o for o in self.data["Invoice"] if o["Id"] == invoice_id), None)
        if obj is None:
            return 400, sample("fault_2030_invalid_id_400"), {}
        return 200, invoice_pdf_bytes(obj), {"Content-Type": "application/pdf"}

    def _token(self, body: str, headers) -> tuple[int, object, dict]:
        form = dict(urllib.parse.parse_qsl(body))
        basic = headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if basic != expected:
            return 401, {"error": "invalid_client"}, {}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.valid_refresh:
            return 400, {"error": "invalid_grant"}, {}
        n = next(self.counter)
        access, refresh = f"at-{n}", f"rt-{n}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return 200, {"token_type": "bearer", "access_token": access, "refresh_token": refresh, "expires_in": 3600,
                     "x_refresh_token_expires_in": 8726400}, {}

    def _query(self, sql: str) -> tuple[int, object, dict]:
        m = _SQL.match(sql)
        if not m or m.group(2) not in self.data:
            return 400, sample("fault_4001_invalid_query_400"), {}
        what, entity, where, start, limit = m.groups()
        try:
            rows = [o for o in self.data[entity] if _matches(o, where)]
        except ValueError:
            return 400, sample("fault_4001_invalid_query_400"), {}
        rows.sort(key=lambda o: int(o["Id"]) if str(o["Id"]).isdigit() else str(o["Id"]))
        if what.upper().startswith("COUNT"):
            return 200, {"QueryResponse": {"totalCount": len(rows)}, "time": "now"}, {}
        start, limit = int(start or 1), min(int(limit or 100), 1000)
        page = rows[start - 1:start - 1 + limit]
        if not page:
            return 200, {"QueryResponse": {}, "time": "now"}, {}
        return 200, {"QueryResponse": {entity: page, "startPosition": start, "maxResults": len(page)},
                     "time": "now"}, {}

    def _cdc(self, query: dict) -> tuple[int, object, dict]:
        since = dt.datetime.fromisoformat(query["changedSince"].replace("Z", "+00:00"))
        parts = []
        for entity in query["entities"].split(","):
            changed = [o for o in self.data.get(entity, []) + self.deleted.get(entity, [])
                       if dt.datetime.fromisoformat(o["MetaData"]["LastUpdatedTime"]) >= since]
            parts.append({entity: changed[:1000], "startPosition": 1, "maxResults": min(len(changed), 1000)})
        return 200, {"CDCResponse": [{"QueryResponse": parts}], "time": "now"}, {}

    def aging(self, on: dt.date) -> dict:
        """AgedReceivables as QuickBooks lays it out: one row per customer with an id, a GrandTotal."""
        buckets: dict[str, list[decimal.Decimal]] = {}
        names = {c["Id"]: c.get("DisplayName", c["Id"]) for c in self.data["Customer"]}
        items = [(i, i.get("DueDate") or i["TxnDate"], 1) for i in self.data["Invoice"]] + \
                [(c, c["TxnDate"], -1) for c in self.data["CreditMemo"]]
        for obj, due, sign in items:
            try:  # a malformed object (the tests' own) is not in the books' report
                bal = decimal.Decimal(str(obj.get("Balance", 0)))
                days = (on - dt.date.fromisoformat(due)).days
                customer = obj["CustomerRef"]["value"]
            except (KeyError, TypeError, ValueError, decimal.InvalidOperation):
                continue
            if bal <= 0 or dt.date.fromisoformat(obj["TxnDate"]) > on:
                continue
            k = 0 if days <= 0 else 1 if days <= 30 else 2 if days <= 60 else 3 if days <= 90 else 4
            row = buckets.setdefault(customer, [decimal.Decimal(0)] * 5)
            row[k] += sign * bal
        fmt = lambda d: "" if d == 0 else f"{d:.2f}"  # noqa: E731 - empty for zero, as QuickBooks writes it
        rows = [{"ColData": [{"value": names.get(cid, cid), "id": cid}] + [{"value": fmt(v)} for v in vals] +
                 [{"value": fmt(sum(vals))}]} for cid, vals in sorted(buckets.items())]
        totals = [sum(v[i] for v in buckets.values()) for i in range(5)]
        rows.append({"group": "GrandTotal", "type": "Section", "Summary": {"ColData": [{"value": "TOTAL"}] +
                     [{"value": f"{t:.2f}"} for t in totals] + [{"value": f"{sum(totals):.2f}"}]}})
        titles = ["", "Current", "1 - 30", "31 - 60", "61 - 90", "91 and over", "Total"]
        return {"Header": {"ReportName": "AgedReceivables", "Currency": "USD",
                           "Option": [{"Name": "report_date", "Value": on.isoformat()}]},
                "Columns": {"Column": [{"ColType": "Customer" if not t else "Money", "ColTitle": t} for t in titles]},
                "Rows": {"Row": rows}}


def invoice_pdf_bytes(obj: dict) -> bytes:
    """A one-page PDF that names the invoice (what QuickBooks renders is richer; the bytes are what matter)."""
    text = f"Invoice {obj.get('DocNumber') or obj['Id']} balance {obj.get('Balance')}"
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
            b"/Contents 5 0 R >>", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _matches(obj: dict, where: str | None) -> bool:
    if not where:
        return obj.get("Active", True) is not False
    active_clause = False
    for term in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE):
        m = re.fullmatch(r"(\w+)\s*(>=|<=|=|>|<)\s*'([^']*)'", term.strip())
        if m:
            field, op, value = m.groups()
            have = obj.get(field)
            if have is None:
                return False
            if field in ("Balance", "TotalAmt"):
                a, b = decimal.Decimal(str(have)), decimal.Decimal(value)
            else:
                a, b = str(have), value
            if not {"=": a == b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]:
                return False
            continue
        m = re.fullmatch(r"(\w+)\s+IN\s*\((.*)\)", term.strip(), flags=re.IGNORECASE)
        if m:
            field, values = m.groups()
            options = {v.strip().strip("'").lower() for v in values.split(",")}
            have = obj.get(field, True if field == "Active" else None)
            active_clause = active_clause or field == "Active"
            if str(have).lower() not in options:
                return False
            continue
        raise ValueError(term)
    return active_clause or obj.get("Active", True) is not False or "Active" not in obj
