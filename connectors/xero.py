"""Xero as a billing source (`--source xero`), through Xero's official `xero-python` SDK.

What it reads, mapped to the CSV format of DESIGN.md (strings; the extract hop parses, checks and
quarantines, as for every source):

- open sales invoices (`Type=="ACCREC"`, status AUTHORISED, AmountDue > 0), 100 a page (`page`,
  `pageSize`): InvoiceID, Contact.ContactID, InvoiceNumber, DateString, DueDateString (or, where
  the invoice has none, the due date from the contact's sales PaymentTerms), CurrencyCode (each
  invoice in its own currency), Total, AmountDue (after the payments, credit notes, overpayments
  and prepayments Xero allocated), AmountCredited (what the credits took off: not a payment
  arriving), Reference (the P.O. number) and the online invoice URL as the payment link;
- the contacts of those invoices: Name, EmailAddress (else the first contact person included in
  e-mails), FirstName/LastName, AccountNumber, the billing (POBOX) address's country, the
  contact persons, and their sales PaymentTerms mapped to arflow's terms (`terms_of`);
- credit notes (`ACCRECCREDIT`) with credit left, with their allocations: `credit_notes()`, the
  interface tasks/credits.py reads (the customer's credit, which holds chasing what it covers);
- overpayments and prepayments received with credit left: cash to apply (`payments()`), as
  QuickBooks' unapplied payments are; payments (`ACCRECPAYMENT`) of the last
  `ARFLOW_XERO_PAYMENT_DAYS` days (default 35) for the invoices the books settled;
- the books' aging: the Aged Receivables by Contact report on `as_of`, one call per contact with
  open invoices, bucketed by each invoice's due date (`aging_report`).

Every body is read raw (`_preload_content=False`) and parsed with `Decimal`: the SDK's models hold
floats, and money here is never float.

Sync: with a ledger (the flows), the first run pulls every open invoice and keeps a mirror; later
runs ask with `If-Modified-Since` (the last sync less 5 minutes) for what changed, whatever its
status, and pull in full again after `ARFLOW_XERO_FULL_SYNC_DAYS` (default 7). Paging: a page
shorter than 100 is the last one; where Xero sends `pagination`, a short page before `pageCount`
or a total other than `itemCount` is an error, never a complete pull.

Limits (60 calls a minute and 5,000 a day per organisation): every answer's
`X-MinLimit-Remaining` and `X-DayLimit-Remaining` are kept; at 0 left in the minute the next call
waits `ARFLOW_XERO_MINUTE_WAIT` seconds (default 60); optional calls (payment links, the aged
report) are skipped where they would leave less than `ARFLOW_XERO_DAY_RESERVE` (default 500) plus
`ARFLOW_XERO_NEEDED_CALLS` (default 100) of the day's budget, and a needed call at the reserve fails
the hop, so a daily run never spends the day's last calls. A
429 waits its `Retry-After` (the minute limit) up to `ARFLOW_XERO_MAX_WAIT` seconds (default 120)
and is tried again; the day limit fails at once. 5xx and connection errors are retried by urllib3
(ARFLOW_HTTP_RETRIES, ARFLOW_HTTP_BACKOFF), then fail naming Xero and the operation; a 401
refreshes the access token once.

Token: Xero rotates the refresh token on every refresh; the new one is saved back to the block it
came from, else to `<data>/credentials/xero.json` (mode 600). The tenant is the connection's
(`GET /connections`): `ARFLOW_XERO_TENANT_ID` picks one where the app is connected to several.

Writes: none, unless the policy turns on `connectors.xero.write_history` (a history note on each
invoice e-mailed, `PUT /Invoices/{id}/History`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
import json
import os
import re
import time
from pathlib import Path

import pandas as pd

from arflow.money import is_currency, minor_digits
from connectors.http import ConnectorError, transient_status
from connectors.sources import (AGING_COLUMNS, CREDIT_NOTE_COLUMNS, CUSTOMER_COLUMNS, INVOICE_COLUMNS,
                                PAYMENT_COLUMNS, SourceError, string_frame, tenure_months)
from connectors.tokens import RotatingRefreshToken

SYSTEM = "Xero"
API_URL = "https://api.xero.com/api.xro/2.0"
IDENTITY_URL = "https://api.xero.com"
TOKEN_URL = "https://identity.xero.com/connect/token"
# The least arflow reads with; accounting.transactions (not .read) only for the history notes.
SCOPES = ("offline_access", "accounting.transactions.read", "accounting.contacts.read", "accounting.reports.read")
PAGE = 100
IDS_PER_CALL = 50
SETTLED_COLUMNS = ("invoice_id", "customer_id", "issue_date", "due_date", "paid_date", "amount", "currency",
                   "payment_id")
CUSTOMER_EXTRA = ("account_number", "contact_persons", "payment_terms")
_MS_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


class NotConfigured(SourceError):
    pass


def _env_float(name: str, default: str) -> float:
    return float(os.environ.get(name, default))


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
    return str(value).strip()


def _dec(value) -> decimal.Decimal | None:
    try:
        return decimal.Decimal(str(value))
    except (decimal.InvalidOperation, ValueError):
        return None


def money_text(value, currency: str) -> str:
    """A Xero amount (a JSON number read as Decimal) as the CSV format's major-unit text, at the
    currency's digits where that is exact (`270.6` NZD -> `270.60`, `1000.00` JPY -> `1000`);
    otherwise as written, for the extract hop to quarantine with its reason."""
    d = _dec(value)
    if d is None or not is_currency(currency):
        return _text(value)
    digits = minor_digits(currency)
    q = d.quantize(decimal.Decimal(1).scaleb(-digits)) if d == d.quantize(decimal.Decimal(1).scaleb(-digits)) else d
    return f"{q:f}"


def xero_date(value) -> str:
    """`2020-03-05T00:00:00` or `/Date(1583366400000+0000)/` -> `2020-03-05`; other text as it is
    (the extract hop quarantines it)."""
    text = _text(value)
    if not text:
        return ""
    m = _MS_DATE.fullmatch(text.replace("\\/", "/"))
    if m:
        offset = m.group(2) or "+0000"
        tz = dt.timezone((1 if offset[0] == "+" else -1) * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:])))
        return dt.datetime.fromtimestamp(int(m.group(1)) / 1000, tz).date().isoformat()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}(T.*)?", text):
        return text[:10]
    return text


def _month_day(year: int, month: int, day: int) -> dt.date:
    if month > 12:
        year, month = year + 1, month - 12
    return dt.date(year, month, min(max(day, 1), calendar.monthrange(year, month)[1]))


def terms_of(payment_terms) -> tuple[str, object]:
    """A contact's sales PaymentTerms ({Day, Type}) -> (arflow's terms text, a function from the
    invoice date to the due date), as Xero computes a due date:

    - DAYSAFTERBILLDATE, Day N: `netN` (`due_on_receipt` for 0): N days after the invoice date;
    - DAYSAFTERBILLMONTH, Day N: `eomN`: N days after the end of the invoice's month;
    - OFFOLLOWINGMONTH, Day N: day N of the next month (`eomN` up to 28; beyond, the month's last
      day where it is shorter, which no term text says: empty, the due date carries it);
    - OFCURRENTMONTH, Day N: day N of the invoice's month: no term text, the due date carries it.

    Unknown or missing terms: ("", None)."""
    kind = _text(_get(payment_terms, "Type")).upper()
    try:
        day = int(_get(payment_terms, "Day", default=None))
    except (TypeError, ValueError):
        return "", None
    if day < 0:
        return "", None
    if kind == "DAYSAFTERBILLDATE":
        return ("due_on_receipt" if day == 0 else f"net{day}"), lambda d: d + dt.timedelta(days=day)
    if kind == "DAYSAFTERBILLMONTH":
        return f"eom{day}", lambda d: _month_day(d.year, d.month, 31) + dt.timedelta(days=day)
    if kind == "OFFOLLOWINGMONTH":
        return (f"eom{day}" if 1 <= day <= 28 else ""), lambda d: _month_day(d.year, d.month + 1, day)
    if kind == "OFCURRENTMONTH":
        return "", lambda d: _month_day(d.year, d.month, day)
    return "", None


def _timeout() -> int:
    return max(1, int(_env_float("ARFLOW_HTTP_TIMEOUT", "60")))


def _retry():
    """urllib3's Retry for the SDK's pool: 5xx and connection errors with backoff; a 429 is left to
    `_call`, which reads Xero's headers (a day limit must not be slept through)."""
    from urllib3.util.retry import Retry

    backoff = _env_float("ARFLOW_HTTP_BACKOFF", "1.0")
    return Retry(total=int(os.environ.get("ARFLOW_HTTP_RETRIES", "5")), status_forcelist=(500, 502, 503, 504),
                 allowed_methods=None, backoff_factor=backoff, backoff_jitter=backoff / 2, backoff_max=60,
                 respect_retry_after_header=False, raise_on_status=True)


class XeroSource(RotatingRefreshToken):
    """The BillingSource (and, without a CRM, the CrmSource) of one Xero organisation."""

    TOKEN_FILE, BLOCK_VARIABLE, BLOCK_DEFAULT = "xero.json", "ARFLOW_XERO_BLOCK", "arflow-xero"

    def __init__(self, settings: dict, *, as_of: dt.date, data_dir: Path, block=None):
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not settings.get(k)]
        if missing:
            names = {"client_id": "ARFLOW_XERO_CLIENT_ID", "client_secret": "ARFLOW_XERO_CLIENT_SECRET",
                     "refresh_token": "ARFLOW_XERO_REFRESH_TOKEN"}
            raise NotConfigured("Xero is not configured: set " + ", ".join(names[k] for k in missing) +
                                " (or save an arflow-xero block)")
        self.settings, self.as_of, self.data_dir, self.block = settings, as_of, Path(data_dir), block
        self.name = "xero"
        self.tenant_id: str | None = None
        self.tenant_name = ""
        self.system = "xero"
        self.ledger = None
        self._client = None
        self._token: dict = {}
        self.day_left: int | None = None
        self.min_left: int | None = None
        self.calls = 0
        self._open: list[dict] | None = None
        self._contacts: list[dict] | None = None
        self._credit_notes: list[dict] | None = None
        self._cash: list[dict] | None = None
        self.sync_info: dict = {}
        self._notes: list[str] = []

    # ---- the connection -------------------------------------------------------------------

    def _save_token(self, token: dict) -> None:
        """The SDK's oauth2_token_saver: keep the new token, save the rotated refresh token."""
        previous = self._token.get("refresh_token") or ""
        keep = ("access_token", "refresh_token", "scope", "expires_in", "expires_at", "token_type", "id_token")
        self._token = {k: token.get(k) for k in keep}
        self._token["token_type"] = self._token["token_type"] or "Bearer"
        self._store_refresh_token(token.get("refresh_token"), previous)

    def client(self):
        """The SDK's ApiClient, signed in (a refresh of the stored refresh token), with the tenant."""
        if self._client is not None:
            return self._client
        import urllib3
        from xero_python.api_client import ApiClient
        from xero_python.api_client.configuration import Configuration
        from xero_python.api_client.oauth2 import OAuth2Token

        token_url = self.settings.get("token_url") or TOKEN_URL

        class Token(OAuth2Token):  # the SDK's token, with the token endpoint configurable (tests)
            def call_refresh_token_api(self, token_api):
                token_api.refresh_token_url = token_url
                return super().call_refresh_token_api(token_api)

        scopes = (self.settings.get("scopes") or " ".join(SCOPES)).split()
        self._token = {"access_token": None, "refresh_token": self._refresh_token(), "scope": scopes,
                       "expires_in": None, "expires_at": 0, "token_type": "Bearer", "id_token": None}
        # Configuration is a singleton: Configuration(...) returns a copy of the first one ever made
        # and ignores its arguments, so this source's token is set on the copy.
        config = Configuration()
        config.oauth2_token = Token(client_id=self.settings["client_id"], client_secret=self.settings["client_secret"])
        api = ApiClient(config, pool_threads=1, oauth2_token_getter=lambda: dict(self._token),
                        oauth2_token_saver=self._save_token)
        api.rest_client.pool_manager = urllib3.PoolManager(num_pools=4, maxsize=4, retries=_retry(),
                                                           timeout=_timeout())
        self._client = api
        try:
            self._refresh()
            self._pick_tenant()
        except BaseException:
            self._client = None
            raise
        return api

    def _refresh(self) -> None:
        from xero_python.exceptions import HTTPStatusException

        try:
            self._client.refresh_oauth2_token()
        except HTTPStatusException as exc:
            error = _error_field(exc, "error")
            raise ConnectorError(SYSTEM, "token refresh", f"HTTP {exc.status}{' ' + error if error else ''} from the "
                                 "token endpoint: reconnect the app and set a new refresh token",
                                 transient=transient_status(exc.status)) from None
        except Exception as exc:  # noqa: BLE001 - the token endpoint unreachable, after the retries
            raise ConnectorError(SYSTEM, "token refresh", _describe(exc), transient=True) from None
        if not self._token.get("access_token"):
            raise ConnectorError(SYSTEM, "token refresh", "the token endpoint answered without an access token")

    def _pick_tenant(self) -> None:
        """The tenant id from the connections endpoint: the configured one (checked), else the one
        organisation the app is connected to."""
        from xero_python.identity import IdentityApi

        identity = IdentityApi(self._client, base_url=(self.settings.get("identity_url") or IDENTITY_URL).rstrip("/"))
        body = self._raw("connections", lambda: identity.get_connections(_preload_content=False,
                                                                          _return_http_data_only=False,
                                                                          _request_timeout=_timeout()),
                         tenant_call=False)
        orgs = [c for c in body if isinstance(c, dict) and _text(c.get("tenantType")).upper() == "ORGANISATION"] \
            if isinstance(body, list) else []
        wanted = _text(self.settings.get("tenant_id"))
        if wanted:
            found = [c for c in orgs if _text(c.get("tenantId")) == wanted]
            if not found:
                raise ConnectorError(SYSTEM, "connections", f"the app is not connected to tenant {wanted} "
                                     f"(connected: {', '.join(_text(c.get('tenantId')) for c in orgs) or 'none'})")
            org = found[0]
        elif len(orgs) == 1:
            org = orgs[0]
        else:
            listed = "; ".join(f"{_text(c.get('tenantName')) or '?'} {_text(c.get('tenantId'))}" for c in orgs)
            raise ConnectorError(SYSTEM, "connections", f"the app is connected to {len(orgs)} organisations"
                                 f"{' (' + listed + ')' if listed else ''}: set ARFLOW_XERO_TENANT_ID to one")
        self.tenant_id, self.tenant_name = _text(org.get("tenantId")), _text(org.get("tenantName"))
        self.system = f"xero:{self.tenant_id}"

    def accounting(self):
        from xero_python.accounting import AccountingApi

        self.client()
        return AccountingApi(self._client, base_url=(self.settings.get("base_url") or API_URL).rstrip("/"))

    # ---- one call: limits, 429, 401, errors --------------------------------------------------
    def budget_allows(self, calls: int) -> bool:
        """Whether `calls` more optional calls leave the day's budget above the reserve plus the
        calls kept for the run's needed reads (ARFLOW_XERO_NEEDED_CALLS, default 100); unknown: yes."""
        reserve = int(os.environ.get("ARFLOW_XERO_DAY_RESERVE", "500"))
        needed = int(os.environ.get("ARFLOW_XERO_NEEDED_CALLS", "100"))
        return self.day_left is None or self.day_left - calls > reserve + needed

    def _before(self, what: str) -> None:
        reserve = int(os.environ.get("ARFLOW_XERO_DAY_RESERVE", "500"))
        if self.day_left is not None and self.day_left <= reserve:
            raise ConnectorError(SYSTEM, what, f"{self.day_left} calls left in the organisation's day budget, at the "
                                 f"reserve of {reserve} (ARFLOW_XERO_DAY_RESERVE): stopped before spending it")
        if self.min_left is not None and self.min_left <= 0:
            time.sleep(_env_float("ARFLOW_XERO_MINUTE_WAIT", "60"))
            self.min_left = None

    def _limits(self, headers) -> None:
        if not headers:
            return
        for name, attr in (("X-DayLimit-Remaining", "day_left"), ("X-MinLimit-Remaining", "min_left")):
            value = headers.get(name)
            if value is not None and str(value).strip().lstrip("-").isdigit():
                setattr(self, attr, int(value))

    def _raw(self, what: str, fn, *, tenant_call: bool = True):
        """Call fn (an SDK method with _preload_content=False) and parse its body with Decimal."""
        import urllib3
        from xero_python.exceptions import HTTPStatusException

        refreshed, throttled = False, 0
        while True:
            if tenant_call:
                self._before(what)
            try:
                self.calls += 1
                response, _status, headers = fn()
            except HTTPStatusException as exc:
                self._limits(exc.headers)
                if exc.status == 401 and not refreshed:
                    refreshed = True
                    self._refresh()
                    continue
                if exc.status == 429:
                    problem = _text((exc.headers or {}).get("X-Rate-Limit-Problem")).lower()
                    wait = _dec((exc.headers or {}).get("Retry-After")) or decimal.Decimal(1)
                    cap = _env_float("ARFLOW_XERO_MAX_WAIT", "120")
                    if problem == "day" or wait > decimal.Decimal(str(cap)) or throttled >= 3:
                        raise ConnectorError(SYSTEM, what, f"rate limit ({problem or 'unknown'}) reached, Retry-After "
                                             f"{wait} s", transient=problem != "day") from None
                    throttled += 1
                    time.sleep(float(wait))
                    continue
                raise ConnectorError(SYSTEM, what, _status_cause(exc), transient=transient_status(exc.status)) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise ConnectorError(SYSTEM, what, _describe(exc), transient=True) from None
            self._limits(headers)
            try:
                return json.loads(response.data.decode("utf-8"), parse_float=decimal.Decimal)
            except (ValueError, UnicodeDecodeError):
                raise ConnectorError(SYSTEM, what, "the answer is not JSON") from None
            finally:
                response.release_conn()

    def _call(self, what: str, method: str, **params):
        """One Accounting API call for the tenant: its parsed body."""
        api = self.accounting()
        fn = getattr(api, method)
        return self._raw(what, lambda: fn(self.tenant_id, **params, _preload_content=False,
                                          _return_http_data_only=False, _request_timeout=_timeout()))

    def pages(self, what: str, method: str, key: str, **params) -> list[dict]:
        """Every row of a paged list: page 1, 2, ... until a page holds fewer than PAGE rows. Where
        Xero says how many pages and rows there are (`pagination`), the pull must match it."""
        rows: list[dict] = []
        page = 1
        while True:
            body = self._call(f"{what} (page {page})", method, page=page, page_size=PAGE, **params)
            items = _get(body, key, default=[])
            if not isinstance(items, list):
                raise ConnectorError(SYSTEM, what, f"the answer's {key} is not a list")
            rows.extend(items)
            pagination = _get(body, "pagination", default=None)
            count = _get(pagination, "pageCount", default=None)
            total = _get(pagination, "itemCount", default=None)
            if len(items) < PAGE:
                if count is not None and page < int(count):
                    raise ConnectorError(SYSTEM, what, f"page {page} of {count} held {len(items)} rows, not {PAGE}: "
                                         "a partial pull is never taken for a complete one")
                if total is not None and len(rows) != int(total):
                    raise ConnectorError(SYSTEM, what, f"{len(rows)} rows read but Xero counts {total}: a partial "
                                         "pull is never taken for a complete one")
                return rows
            page += 1

    # ---- reading ---------------------------------------------------------------------------
    def _open_invoices_full(self) -> list[dict]:
        return self.pages("list open invoices", "get_invoices", "Invoices", where='Type=="ACCREC"',
                          statuses=["AUTHORISED"])

    @staticmethod
    def _is_open(inv: dict) -> bool:
        due = _dec(_get(inv, "AmountDue", default="0"))
        return _text(inv.get("Type")) == "ACCREC" and _text(inv.get("Status")) == "AUTHORISED" and \
            (due is None or due > 0)  # unreadable: kept, the extract hop quarantines it

    def open_invoices(self) -> list[dict]:
        """The open invoices: from the mirror kept by If-Modified-Since where there is a ledger,
        else pulled in full; with their online invoice URLs."""
        if self._open is not None:
            return self._open
        self.client()
        if self.ledger is None:
            pulled = [i for i in self._open_invoices_full() if self._is_open(i)]
            self.sync_info = {"mode": "full", "changed": len(pulled)}
            links = self._links(pulled, {})
            self._open = [dict(i, _OnlineInvoiceUrl=links.get(_text(i.get("InvoiceID")), "")) for i in pulled]
            return self._open
        started = dt.datetime.now(dt.timezone.utc)
        position = self.ledger.get_meta(f"sync:{self.system}")
        since = dt.datetime.fromisoformat(position) if position else None
        full_days = float(os.environ.get("ARFLOW_XERO_FULL_SYNC_DAYS", "7"))
        mirror = self.ledger.source_records(self.system)
        links = {r["id"]: r["url"] for r in mirror.get("OnlineInvoice", [])}
        if since is None or started - since > dt.timedelta(days=full_days):
            pulled = [i for i in self._open_invoices_full() if self._is_open(i)]
            keep = {_text(i.get("InvoiceID")) for i in pulled}
            links = {k: v for k, v in links.items() if k in keep}
            new_links = self._links(pulled, links)
            upserts = [self._record("Invoice", _text(i.get("InvoiceID")), i) for i in pulled]
            upserts += [self._record("OnlineInvoice", k, {"id": k, "url": v}) for k, v in {**links, **new_links}.items()]
            self.ledger.sync_source(self.system, started.isoformat(), upserts, [], full=True)
            self.sync_info = {"mode": "full", "changed": len(pulled)}
        else:
            stamp = (since - dt.timedelta(minutes=5)).astimezone(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
            changed = self.pages("list changed invoices", "get_invoices", "Invoices", where='Type=="ACCREC"',
                                 if_modified_since=stamp)
            upserts, deletes = [], []
            for inv in changed:
                iid = _text(inv.get("InvoiceID"))
                if not iid:
                    continue
                if self._is_open(inv):
                    upserts.append(self._record("Invoice", iid, inv))
                else:
                    deletes += [("Invoice", iid), ("OnlineInvoice", iid)]
            opened = [json.loads(u["payload"]) for u in upserts]
            new_links = self._links(opened, links)
            upserts += [self._record("OnlineInvoice", k, {"id": k, "url": v}) for k, v in new_links.items()]
            self.ledger.sync_source(self.system, started.isoformat(), upserts, deletes, full=False)
            self.sync_info = {"mode": "if-modified-since", "since": stamp.isoformat(), "changed": len(changed)}
        mirror = self.ledger.source_records(self.system)
        links = {r["id"]: r["url"] for r in mirror.get("OnlineInvoice", [])}
        self._open = [dict(i, _OnlineInvoiceUrl=links.get(_text(i.get("InvoiceID")), ""))
                      for i in mirror.get("Invoice", [])]
        return self._open

    @staticmethod
    def _record(entity: str, record_id: str, obj: dict) -> dict:
        return {"entity": entity, "record_id": record_id, "payload": json.dumps(obj, default=str),
                "updated_at": _text(obj.get("UpdatedDateUTC"))}

    def _links(self, invoices: list[dict], known: dict[str, str]) -> dict[str, str]:
        """The online invoice URL of each invoice that has none yet, one call each, while the day's
        budget allows (ARFLOW_XERO_PAYMENT_LINKS=false: none). An invoice Xero has no online
        invoice for gets an empty link (not asked again until it changes)."""
        if os.environ.get("ARFLOW_XERO_PAYMENT_LINKS", "true").lower() == "false":
            return {}
        wanted = [_text(i.get("InvoiceID")) for i in invoices if _text(i.get("InvoiceID")) not in known]
        out, skipped = {}, 0
        for iid in [w for w in wanted if w]:
            if not self.budget_allows(1):
                skipped += 1
                continue
            try:
                body = self._call(f"online invoice {iid}", "get_online_invoice", invoice_id=iid)
            except ConnectorError as exc:
                if not exc.cause.startswith(("HTTP 400", "HTTP 404")):
                    raise
                out[iid] = ""
                continue
            urls = _get(body, "OnlineInvoices", default=[]) or []
            out[iid] = _text(_get(urls[0], "OnlineInvoiceUrl")) if urls else ""
        if skipped:
            self._notes.append(f"Xero: {skipped} invoice(s) without a payment link today: the day's API budget is "
                               "kept for the run (ARFLOW_XERO_DAY_RESERVE); they are asked for on a later run.")
        return out

    def contacts(self, ids) -> list[dict]:
        ids = sorted({i for i in ids if i})
        rows: list[dict] = []
        for n in range(0, len(ids), IDS_PER_CALL):
            rows += self.pages("list contacts", "get_contacts", "Contacts", i_ds=ids[n:n + IDS_PER_CALL],
                               include_archived=True)
        return rows

    def _open_contacts(self) -> list[dict]:
        if self._contacts is None:
            self._contacts = self.contacts({_text(_get(i, "Contact", "ContactID")) for i in self.open_invoices()})
        return self._contacts

    def _terms_by_contact(self, contacts: list[dict]) -> dict[str, dict]:
        return {_text(c.get("ContactID")): _get(c, "PaymentTerms", "Sales", default={}) for c in contacts}

    # ---- the source interface ----------------------------------------------------------------
    def prepare_ledger(self, ledger) -> None:
        """Called by fetch_inputs: the mirror and the If-Modified-Since position live in the ledger."""
        self.ledger = ledger

    def invoices(self) -> pd.DataFrame:
        return self._invoice_frame(self.open_invoices(), self._terms_by_contact(self._open_contacts()))

    def fresh_invoices(self, invoice_ids: set[str]) -> pd.DataFrame:
        """These invoices as Xero has them now (the check right before a send), by id, 50 a call;
        an invoice missing from the answer is no longer at the source."""
        ids = sorted(i for i in invoice_ids if i)
        found: list[dict] = []
        for n in range(0, len(ids), IDS_PER_CALL):
            found += self.pages("read invoices by id", "get_invoices", "Invoices", i_ds=ids[n:n + IDS_PER_CALL])
        links = {_text(i.get("InvoiceID")): i.get("_OnlineInvoiceUrl", "") for i in (self._open or [])}
        found = [dict(i, _OnlineInvoiceUrl=links.get(_text(i.get("InvoiceID")), "")) for i in found]
        contacts = self._open_contacts() if self._contacts is not None else \
            self.contacts({_text(_get(i, "Contact", "ContactID")) for i in found})
        return self._invoice_frame(found, self._terms_by_contact(contacts))

    def _invoice_frame(self, objs: list[dict], terms: dict[str, dict]) -> pd.DataFrame:
        rows = []
        for o in objs:
            cur = _text(o.get("CurrencyCode")).upper()
            customer = _text(_get(o, "Contact", "ContactID"))
            issue = xero_date(o.get("DateString") or o.get("Date"))
            due = xero_date(o.get("DueDateString") or o.get("DueDate"))
            term_text, rule = terms_of(terms.get(customer, {}))
            if not due and rule is not None:
                try:
                    due = rule(dt.date.fromisoformat(issue)).isoformat()
                except ValueError:
                    pass  # no readable invoice date: the extract hop quarantines it
            balance = _dec(o.get("AmountDue"))
            rows.append({
                "invoice_id": _text(o.get("InvoiceID")), "customer_id": customer,
                "invoice_number": _text(o.get("InvoiceNumber")) or _text(o.get("InvoiceID")),
                "issue_date": issue, "due_date": due, "terms": term_text, "currency": cur,
                "amount": money_text(o.get("Total"), cur), "balance": money_text(o.get("AmountDue"), cur),
                "status": "open" if _text(o.get("Status")) == "AUTHORISED" and (balance is None or balance > 0)
                else "paid" if _text(o.get("Status")) == "PAID" or balance == 0 else "void",
                "autopay": "false", "payment_link": _text(o.get("_OnlineInvoiceUrl")),
                "po_number": _text(o.get("Reference")),
                "credited": money_text(o.get("AmountCredited") if o.get("AmountCredited") is not None else 0, cur),
            })
        return string_frame(rows, INVOICE_COLUMNS + ("credited",))

    def customers(self) -> pd.DataFrame:
        return self._customer_frame(self._open_contacts())

    def fresh_customers(self, customer_ids: set[str]) -> pd.DataFrame:
        return self._customer_frame(self.contacts(customer_ids))

    def _customer_frame(self, objs: list[dict]) -> pd.DataFrame:
        """Contacts -> customers. Xero keeps no creation date for a contact: tenure counts from the
        contact's oldest open invoice, a lower bound (0 where none is open)."""
        from connectors.quickbooks import country_code

        first: dict[str, str] = {}
        for i in self._open or []:
            cid, day = _text(_get(i, "Contact", "ContactID")), xero_date(i.get("DateString") or i.get("Date"))
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) and (cid not in first or day < first[cid]):
                first[cid] = day
        rows = []
        for o in objs:
            people = [p for p in (_get(o, "ContactPersons", default=[]) or []) if isinstance(p, dict)]
            mailed = [p for p in people if _get(p, "IncludeInEmails", default=False) is True and _text(p.get("EmailAddress"))]
            email = _text(o.get("EmailAddress"))
            contact = " ".join(x for x in (_text(o.get("FirstName")), _text(o.get("LastName"))) if x)
            if not email and mailed:
                email = _text(mailed[0].get("EmailAddress"))
                contact = " ".join(x for x in (_text(mailed[0].get("FirstName")), _text(mailed[0].get("LastName"))) if x)
            addresses = {_text(a.get("AddressType")): a for a in (_get(o, "Addresses", default=[]) or [])
                         if isinstance(a, dict)}
            country = _text(_get(addresses.get("POBOX", {}), "Country")) or _text(_get(addresses.get("STREET", {}), "Country"))
            sales = _get(o, "PaymentTerms", "Sales", default={})
            rows.append({
                "customer_id": _text(o.get("ContactID")), "name": _text(o.get("Name")), "segment": "standard",
                "arr": "", "tenure_months": tenure_months(first.get(_text(o.get("ContactID"))), self.as_of) or "0",
                "nps": "", "health": "", "renewal_date": "",
                "owner_ae_email": "", "owner_csm_email": "",
                "billing_contact_name": contact or _text(o.get("Name")), "billing_contact_email": email,
                "country": country_code(country), "opt_out": "false", "paused_until": "",
                "account_number": _text(o.get("AccountNumber")),
                "contact_persons": "; ".join(_text(p.get("EmailAddress")) for p in mailed),
                "payment_terms": f"{_text(_get(sales, 'Type'))} {_text(_get(sales, 'Day'))}".strip(),
            })
        return string_frame(rows, CUSTOMER_COLUMNS + CUSTOMER_EXTRA)

    def _credit_note_objs(self) -> list[dict]:
        if self._credit_notes is None:
            notes = self.pages("list credit notes", "get_credit_notes", "CreditNotes",
                               where='Type=="ACCRECCREDIT" AND Status=="AUTHORISED"')
            self._credit_notes = [n for n in notes if (_dec(n.get("RemainingCredit")) or 0) > 0]
        return self._credit_notes

    def credit_notes(self) -> pd.DataFrame:
        """Credit notes with credit left, in the shape of credit_notes.csv: the credit they hold
        (what is left plus what they allocated to invoices) and one row per allocation. What
        they took off open invoices is in the invoices' `credited` as well."""
        rows = []
        for n in self._credit_note_objs():
            cur = _text(n.get("CurrencyCode")).upper()
            allocations = [a for a in (_get(n, "Allocations", default=[]) or []) if isinstance(a, dict)]
            remaining = _dec(n.get("RemainingCredit")) or decimal.Decimal(0)
            held = remaining + sum((_dec(a.get("Amount")) or 0 for a in allocations), decimal.Decimal(0))
            base = {"credit_note_id": _text(n.get("CreditNoteID")), "customer_id": _text(_get(n, "Contact", "ContactID")),
                    "credit_note_number": _text(n.get("CreditNoteNumber")),
                    "issue_date": xero_date(n.get("DateString") or n.get("Date")), "currency": cur,
                    "amount": money_text(held, cur)}
            rows.append({**base, "invoice_id": "", "allocated": "", "allocated_date": ""})
            for a in allocations:
                rows.append({**base, "invoice_id": _text(_get(a, "Invoice", "InvoiceID")),
                             "allocated": money_text(a.get("Amount"), cur), "allocated_date": xero_date(a.get("Date"))})
        return string_frame(rows, CREDIT_NOTE_COLUMNS)

    def _cash_objs(self) -> list[dict]:
        """Overpayments and prepayments received with credit left (status AUTHORISED)."""
        if self._cash is None:
            out = []
            for kind, method, key in (("overpayment", "get_overpayments", "Overpayments"),
                                      ("prepayment", "get_prepayments", "Prepayments")):
                found = self.pages(f"list {kind}s", method, key,
                                   where=f'Type=="RECEIVE-{kind.upper()}" AND Status=="AUTHORISED"')
                out += [dict(o, _kind=kind) for o in found if (_dec(o.get("RemainingCredit")) or 0) > 0]
            self._cash = out
        return self._cash

    def payments(self) -> pd.DataFrame:
        """Cash Xero holds unallocated (overpayments, prepayments): what the payment checkpoint
        proposes a match for. Payments Xero allocated show in the invoices' AmountDue."""
        rows = []
        for o in self._cash_objs():
            cur = _text(o.get("CurrencyCode")).upper()
            oid = _text(o.get(f"{o['_kind'].capitalize()}ID"))
            rows.append({"payment_id": f"xero-{o['_kind']}-{oid}", "customer_id": _text(_get(o, "Contact", "ContactID")),
                         "amount": money_text(o.get("RemainingCredit"), cur), "currency": cur,
                         "received_date": xero_date(o.get("DateString") or o.get("Date")),
                         "reference": _text(o.get("Reference")) or o["_kind"]})
        return string_frame(rows, PAYMENT_COLUMNS)

    def reflected_payment_ids(self) -> set[str]:
        return set()  # only unallocated cash is read: nothing arflow applies is in Xero's balances yet

    def settled_invoices(self) -> pd.DataFrame:
        """Invoices the books closed with a payment of the window, for the payment history."""
        days = int(os.environ.get("ARFLOW_XERO_PAYMENT_DAYS", "35"))
        since = self.as_of - dt.timedelta(days=days)
        found = self.pages("list payments", "get_payments", "Payments",
                           where=f'PaymentType=="ACCRECPAYMENT" AND Status=="AUTHORISED" AND '
                                 f'Date >= DateTime({since.year}, {since.month:02d}, {since.day:02d})')
        paid_on: dict[str, tuple[str, str]] = {}
        for p in found:
            iid, day = _text(_get(p, "Invoice", "InvoiceID")), xero_date(p.get("Date"))
            if iid and day >= paid_on.get(iid, ("", ""))[0]:
                paid_on[iid] = (day, f"xero-payment-{_text(p.get('PaymentID'))}")
        ids = sorted(paid_on)
        invoices: list[dict] = []
        for n in range(0, len(ids), IDS_PER_CALL):
            invoices += self.pages("read invoices by id", "get_invoices", "Invoices", i_ds=ids[n:n + IDS_PER_CALL])
        rows = []
        for o in invoices:
            iid = _text(o.get("InvoiceID"))
            if _text(o.get("Status")) != "PAID" or iid not in paid_on:
                continue  # still open: tomorrow's aging has it
            cur = _text(o.get("CurrencyCode")).upper()
            rows.append({"invoice_id": iid, "customer_id": _text(_get(o, "Contact", "ContactID")),
                         "issue_date": xero_date(o.get("DateString") or o.get("Date")),
                         "due_date": xero_date(o.get("DueDateString") or o.get("DueDate")),
                         "paid_date": xero_date(o.get("FullyPaidOnDate")) or paid_on[iid][0],
                         "amount": money_text(o.get("Total"), cur), "currency": cur, "payment_id": paid_on[iid][1]})
        return string_frame(rows, SETTLED_COLUMNS)

    def aging_report(self) -> pd.DataFrame | None:
        """The Aged Receivables by Contact report on as_of for every contact with open invoices
        (one call each), as the aging_report shape. Skipped (None, and the run says so) where the
        day's budget would fall below the reserve, or with ARFLOW_XERO_AGING_REPORT=false."""
        if os.environ.get("ARFLOW_XERO_AGING_REPORT", "true").lower() == "false":
            self._notes.append("Xero: the Aged Receivables report is turned off (ARFLOW_XERO_AGING_REPORT=false).")
            return None
        contacts = sorted({_text(_get(i, "Contact", "ContactID")) for i in self.open_invoices()} - {""})
        if not self.budget_allows(len(contacts)):
            self._notes.append(f"Xero: the Aged Receivables report needs {len(contacts)} calls and the day's budget "
                               f"has {self.day_left} left above the reserve (ARFLOW_XERO_DAY_RESERVE): skipped today.")
            return None
        rows = []
        for cid in contacts:
            body = self._call(f"report AgedReceivablesByContact {cid}", "get_report_aged_receivables_by_contact",
                              contact_id=cid, date=self.as_of)
            rows.append(parse_aged_receivables(body, cid, self.as_of))
        return string_frame(rows, AGING_COLUMNS)

    def notes(self) -> list[str]:
        out = list(self._notes)
        if self._credit_notes:
            who = sorted({_text(_get(n, "Contact", "ContactID")) for n in self._credit_notes})
            out.append(f"Xero: {len(self._credit_notes)} credit note(s) with credit left for {len(who)} customer(s): "
                       "allocate them in Xero; chasing what they cover waits until then.")
        if self.sync_info:
            out.append(f"Xero sync: {self.sync_info['mode']} ({self.sync_info['changed']} invoice(s)); "
                       f"{self.calls} call(s), {self.day_left if self.day_left is not None else '?'} left today.")
        return out

    # ---- writes: off unless the policy turns them on -------------------------------------------
    def add_history_note(self, invoice_id: str, text: str) -> None:
        """A history note on an invoice (`PUT /Invoices/{id}/History`; Xero keeps 450 characters)."""
        from xero_python.accounting import HistoryRecord, HistoryRecords

        self._call(f"history note on invoice {invoice_id}", "create_invoice_history", invoice_id=invoice_id,
                   history_records=HistoryRecords(history_records=[HistoryRecord(details=text[:450])]))

    def check(self) -> dict:
        """What `arflow check-connection xero` prints: sign in, count, write nothing."""
        self.client()
        invoices = self.open_invoices()
        return {"system": "xero", "organisation": self.tenant_name, "tenant_id": self.tenant_id,
                "open_invoices": len(invoices), "currencies": sorted({_text(i.get("CurrencyCode")) for i in invoices}),
                "customers": len(self._open_contacts()), "credit_notes_open": len(self._credit_note_objs()),
                "unallocated_cash": len(self._cash_objs()),
                "payment_links": sum(1 for i in invoices if i.get("_OnlineInvoiceUrl")),
                "day_calls_left": self.day_left}


def parse_aged_receivables(report_body, contact_id: str, as_of: dt.date) -> dict:
    """One contact's Aged Receivables by Contact report -> an aging_report row (major-unit text).

    The invoice rows (a cell carrying an `invoiceID` attribute) are bucketed by their Due Date
    against as_of (not yet due: current); the total is the report's own Closing Balance where it
    has one, so a report whose rows and total disagree shows as a mismatch."""
    reports = _get(report_body, "Reports", default=[]) or []
    if not reports or not isinstance(reports[0], dict):
        raise ConnectorError(SYSTEM, "report AgedReceivablesByContact", "the answer has no report")
    rows = _get(reports[0], "Rows", default=[]) or []
    header = next((r for r in rows if _get(r, "RowType") == "Header"), None)
    titles = [_text(_get(c, "Value")).lower() for c in _get(header, "Cells", default=[]) or []]
    if "due date" not in titles or "due" not in titles:
        raise ConnectorError(SYSTEM, "report AgedReceivablesByContact", f"unexpected columns {titles}")
    i_due_date, i_due = titles.index("due date"), titles.index("due")
    buckets = {c: decimal.Decimal(0) for c in AGING_COLUMNS[1:-1]}
    closing = None
    for section in rows:
        for row in _get(section, "Rows", default=[]) or []:
            cells = _get(row, "Cells", default=[]) or []
            if len(cells) <= max(i_due, i_due_date):
                continue
            first = _text(_get(cells[0], "Value")).lower()
            if _get(row, "RowType") == "SummaryRow" and first == "closing balance":
                closing = _dec(_get(cells[i_due], "Value"))
                continue
            is_invoice = any(_get(a, "Id") == "invoiceID" for a in (_get(cells[0], "Attributes", default=[]) or []))
            if _get(row, "RowType") != "Row" or not is_invoice:
                continue
            amount = _dec(_get(cells[i_due], "Value") or "0")
            if amount is None:
                raise ConnectorError(SYSTEM, "report AgedReceivablesByContact",
                                     f"unreadable amount {_get(cells[i_due], 'Value')!r} for contact {contact_id}")
            due_text = xero_date(_get(cells[i_due_date], "Value"))
            try:
                days = (as_of - dt.date.fromisoformat(due_text)).days if due_text else 0
            except ValueError:  # the row cannot be vouched for: reconcile quarantines it, holds the customer
                bad = f"unreadable due date {due_text!r}"
                return {"customer_id": contact_id, **{k: bad for k in AGING_COLUMNS[1:]}}
            key = "current" if days <= 0 else "d1_30" if days <= 30 else "d31_60" if days <= 60 \
                else "d61_90" if days <= 90 else "d91_plus"
            buckets[key] += amount
    total = closing if closing is not None else sum(buckets.values(), decimal.Decimal(0))
    return {"customer_id": contact_id, **{k: f"{v:f}" for k, v in buckets.items()}, "total": f"{total:f}"}


def _error_field(exc, name: str) -> str:
    try:
        return _text(json.loads(exc.body.decode("utf-8")).get(name))[:200]
    except Exception:  # noqa: BLE001 - a body that is not JSON
        return ""


def _status_cause(exc) -> str:
    """HTTP status and Xero's own message (a validation error's first message, a problem's
    Detail), never headers or a token."""
    try:
        body = json.loads(exc.body.decode("utf-8"), parse_float=decimal.Decimal)
    except Exception:  # noqa: BLE001
        body = None
    message = ""
    if isinstance(body, dict):
        first = next((e for e in (_get(body, "Elements", default=[]) or []) if isinstance(e, dict)), {})
        validation = next((v for v in (first.get("ValidationErrors") or []) if isinstance(v, dict)), {})
        message = " ".join(x for x in (_text(body.get("Type")), _text(body.get("Message")) or _text(body.get("Title")),
                                       _text(validation.get("Message")) or _text(body.get("Detail"))) if x)
    return f"HTTP {exc.status}{': ' + message[:300] if message else ''}"


def _describe(exc: BaseException) -> str:
    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return f"still failing after {os.environ.get('ARFLOW_HTTP_RETRIES', '5')} retries ({exc.reason})"
    if isinstance(exc, (urllib3.exceptions.NewConnectionError, ConnectionError)):
        return f"cannot connect ({exc.__class__.__name__})"
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}"
