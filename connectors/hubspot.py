"""HubSpot as the CRM (`--crm hubspot`), through HubSpot's official client, hubspot-api-client.

Reads, through the field map (`hubspot_fields.yaml`, or the file ARFLOW_HUBSPOT_FIELD_MAP names):
- companies linked to billing customers by a company property (the CRM search API: 100 a page on
  `after`, sorted by `hs_object_id`; a query is cut into `hs_object_id > last` partitions before it
  reaches the search API's 10,000-result ceiling; each partition read to its `total`, or it is an
  error), with ARR, segment, health (or lifecycle stage), NPS, renewal date, country and opt-out;
- the owner (AE) and CSM as HubSpot owners (GET /crm/v3/owners, paged), by e-mail;
- the billing, AP and CFO contacts by company-to-contact association label (v4 associations) or a
  contact role property;
- the renewal date and ARR from the company's open deals where the company holds none.

Writes: owner escalations as tasks associated to the company (type 192) and assigned to the owner,
once per escalation (the subject carries a tag made from the escalation's key, searched for before a
task is created); and, where the field map names a company, the daily summary as a note on it (190).

Faults: HTTP 429 waits as HubSpot's headers say (`Retry-After`, else the window of
`X-HubSpot-RateLimit-Interval-Milliseconds`) and is retried; a window whose `-Remaining` reached 0
is waited out before the next call; the daily limit (policyName DAILY, or `-Daily-Remaining` down
to ARFLOW_HUBSPOT_DAILY_RESERVE) stops the hop instead of spending what other integrations need;
5xx and lost connections are retried with backoff (ARFLOW_HTTP_RETRIES, ARFLOW_HTTP_BACKOFF), then
fail the hop naming HubSpot and the operation; an expired OAuth access token is refreshed once.

Sign-in: a private app's access token (ARFLOW_HUBSPOT_TOKEN), or an OAuth app's client id, secret
and refresh token (ARFLOW_HUBSPOT_CLIENT_ID, _CLIENT_SECRET, _REFRESH_TOKEN); or an arflow-hubspot
block. ARFLOW_HUBSPOT_BASE_URL points it elsewhere (tests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import random
import time
from pathlib import Path

import pandas as pd
import yaml

from arflow.resources import default_path
from connectors.http import ConnectorError
from connectors.sources import CUSTOMER_COLUMNS, SourceError, string_frame, tenure_months

SYSTEM = "HubSpot"
DEFAULT_HOST = "https://api.hubapi.com"
PAGE = 100                 # search and list page size (the search API allows up to 200)
SEARCH_CEILING = 10_000    # results one search query can page through; beyond it HubSpot answers 400
BATCH = 100                # ids per batch read
TASK_TO_COMPANY, NOTE_TO_COMPANY = 192, 190   # HubSpot-defined association type ids


class NotConfigured(SourceError):
    pass


def field_map_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("ARFLOW_HUBSPOT_FIELD_MAP") or default_path("hubspot_fields.yaml"))


def load_field_map(path: str | Path | None = None) -> dict:
    path = field_map_path(path)
    try:
        fmap = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NotConfigured(f"HubSpot field map not found: {path}") from None
    except yaml.YAMLError as exc:
        raise NotConfigured(f"HubSpot field map {path} is not YAML: {str(exc).splitlines()[0]}") from None
    company = (fmap or {}).get("company") or {}
    if not company.get("billing_id"):
        raise NotConfigured(f"HubSpot field map {path}: company.billing_id (the company property linking a "
                            "company to its billing customer) is required")
    return fmap


def _lower_map(values) -> dict[str, str]:
    return {str(k).strip().lower(): str(v) for k, v in (values or {}).items()}


def _country_code(value: str) -> str:
    """An ISO 3166 code from HubSpot's free-text country ("United States", "Germany", "DE")."""
    value = value.strip()
    if len(value) == 2 and value.isalpha():
        return value.upper()
    if not value:
        return ""
    from babel import Locale

    names = {name.lower(): code for code, name in Locale("en").territories.items() if code.isalpha()}
    return names.get(value.lower(), value)


def _error_body(exc) -> dict:
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _header(headers, name: str) -> str | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return v
    return None


class HubSpotCrm:
    """The CrmSource of a HubSpot account, and its owner-task channel."""

    name = "hubspot"

    def __init__(self, settings: dict, *, as_of: dt.date, field_map: dict | None = None):
        self.settings, self.as_of = settings, as_of
        self.oauth = bool(settings.get("client_id") and settings.get("client_secret") and settings.get("refresh_token"))
        if not settings.get("access_token") and not self.oauth:
            raise NotConfigured("HubSpot is not configured: set ARFLOW_HUBSPOT_TOKEN (a private app's access token), "
                                "or ARFLOW_HUBSPOT_CLIENT_ID, ARFLOW_HUBSPOT_CLIENT_SECRET and "
                                "ARFLOW_HUBSPOT_REFRESH_TOKEN (an OAuth app), or save an arflow-hubspot block")
        self.fmap = field_map or load_field_map(settings.get("field_map"))
        self.host = (settings.get("base_url") or DEFAULT_HOST).rstrip("/")
        self._token: str | None = settings.get("access_token")
        self._expires = float("inf") if self._token else 0.0
        self._client = None
        self._apis: dict[str, object] = {}
        self._owners: dict[str, str] | None = None     # owner id -> e-mail (lower case)
        self._companies: dict[str, str | None] = {}    # billing customer id -> company id
        self._wait_until = 0.0                          # a rate-limit window to wait out before the next call
        self._last_search = 0.0
        self.limits: dict[str, str] = {}                # the last X-HubSpot-RateLimit-* headers seen
        self._daily_left: int | None = None             # set once the day's calls left reach the reserve
        self.calls = 0

    # ---- the client and the one way every call goes ------------------------------------------
    def _api(self, name: str):
        """A cached API object of the SDK (each `client.crm...` lookup builds a new connection pool)."""
        if name not in self._apis:
            from hubspot import HubSpot

            if self._client is None:
                self._client = HubSpot(access_token=self._token, host=self.host)
            node = self._client
            for part in name.split("."):
                node = getattr(node, part)
            self._apis[name] = node
        return self._apis[name]

    def _refresh(self) -> None:
        """A new OAuth access token from the refresh token (HubSpot's refresh tokens do not rotate)."""
        from hubspot import HubSpot

        s = self.settings
        tokens = HubSpot(host=self.host).oauth.tokens_api
        try:
            got = tokens.create(grant_type="refresh_token", client_id=s["client_id"], client_secret=s["client_secret"],
                                refresh_token=s["refresh_token"], _request_timeout=self._timeout())
        except Exception as exc:  # noqa: BLE001 - the SDK's ApiException or a connection error
            status = getattr(exc, "status", None)
            body = _error_body(exc) if status else {}
            cause = f"HTTP {status} {body.get('status') or ''} {body.get('message') or ''}".strip() if status else \
                exc.__class__.__name__
            raise ConnectorError(SYSTEM, "refresh the access token", self._scrub(cause),
                                 transient=bool(status and int(status) >= 500)) from None
        self._token = got.access_token
        self._expires = time.monotonic() + max(int(got.expires_in or 1800) - 60, 30)
        self._client, self._apis = None, {}

    @staticmethod
    def _timeout() -> float:
        return float(os.environ.get("ARFLOW_HTTP_TIMEOUT", "60"))

    def _scrub(self, text: str) -> str:
        for secret in (self._token, self.settings.get("access_token"), self.settings.get("client_secret"),
                       self.settings.get("refresh_token")):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _pace(self, search: bool) -> None:
        now = time.monotonic()
        if self._wait_until > now:
            time.sleep(self._wait_until - now)
        if search:  # search responses carry no rate-limit headers: keep under its per-second limit
            gap = float(os.environ.get("ARFLOW_HUBSPOT_SEARCH_INTERVAL", "0.25"))
            wait = self._last_search + gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_search = time.monotonic()

    def _note_limits(self, headers) -> None:
        seen = {k: v for k, v in dict(headers or {}).items() if k.lower().startswith("x-hubspot-ratelimit-")}
        if not seen:
            return
        self.limits = seen
        remaining, interval = _header(seen, "X-HubSpot-RateLimit-Remaining"), \
            _header(seen, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is not None and remaining.strip().isdigit() and int(remaining) <= 0:
            self._wait_until = time.monotonic() + min(int(interval or 10000) / 1000, 60)
        daily = _header(seen, "X-HubSpot-RateLimit-Daily-Remaining")
        reserve = int(os.environ.get("ARFLOW_HUBSPOT_DAILY_RESERVE", "100"))
        if daily is not None and daily.strip().isdigit() and int(daily) <= reserve:
            self._daily_left = int(daily)

    def _call(self, what: str, fn, *, search: bool = False):
        """One operation through the SDK: fn() makes the calls and returns the response data.
        429, 5xx and lost connections are retried; a 401 refreshes an OAuth token once."""
        from urllib3.exceptions import HTTPError as Urllib3Error

        retries = int(os.environ.get("ARFLOW_HTTP_RETRIES", "5"))
        backoff = float(os.environ.get("ARFLOW_HTTP_BACKOFF", "1.0"))
        attempt, refreshed = 0, False
        while True:
            if self._daily_left is not None:
                raise ConnectorError(SYSTEM, what, f"the daily API limit is nearly used up ({self._daily_left} "
                                     "calls left, ARFLOW_HUBSPOT_DAILY_RESERVE keeps them for other integrations)",
                                     transient=True)
            if self.oauth and (self._token is None or time.monotonic() >= self._expires):
                self._refresh()
            self._pace(search)
            self.calls += 1
            try:
                data, _status, headers = fn()
                self._note_limits(headers)
                return data
            except ConnectorError:
                raise
            except Urllib3Error as exc:
                status, headers, body, cause = None, {}, {}, f"cannot connect ({exc.__class__.__name__})"
            except Exception as exc:  # noqa: BLE001 - the SDK's ApiException of any API package, or a bad body
                status = getattr(exc, "status", None)
                if status is None or not hasattr(exc, "body"):
                    raise ConnectorError(SYSTEM, what, f"{exc.__class__.__name__}: {self._scrub(str(exc))[:200]}") \
                        from None
                headers, body = getattr(exc, "headers", None) or {}, _error_body(exc)
                cause = f"HTTP {status}" + "".join(f" {body[k]}" for k in ("category", "message") if body.get(k))
                if not body.get("message") and getattr(exc, "reason", None):
                    cause += f" {exc.reason}"
            self._note_limits(headers)
            cause = self._scrub(cause)
            if status == 401 and self.oauth and not refreshed:
                refreshed = True
                self._refresh()
                continue
            if status == 429 and (body.get("policyName") == "DAILY" or "daily" in str(body.get("message", "")).lower()):
                raise ConnectorError(SYSTEM, what, f"{cause} (the daily limit; it resets at midnight in the "
                                     "account's time zone)", transient=True)
            if status is None or status == 429 or (status == 0 or int(status) >= 500):
                if attempt >= retries:
                    raise ConnectorError(SYSTEM, what, f"{cause}, still failing after {retries} retries",
                                         transient=True)
                wait = backoff * 2 ** attempt + random.uniform(0, backoff / 2)
                if status == 429:   # HubSpot's answer names the window to wait out
                    given = _header(headers, "Retry-After")
                    interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
                    if given and given.strip().isdigit():
                        wait = float(given)
                    elif interval and interval.strip().isdigit():
                        wait = int(interval) / 1000
                time.sleep(min(wait, 60))
                attempt += 1
                continue
            raise ConnectorError(SYSTEM, what, cause)

    # ---- reading: search, lists, batches -----------------------------------------------------
    def search(self, object_type: str, filters: list[dict], properties: list[str], what: str) -> list[dict]:
        """Every record of a search (its filters ANDed), page by page on `after`, sorted by
        hs_object_id; cut into `hs_object_id > last id` partitions at the 10,000-result ceiling. A
        partition that ends short of its `total` is an error, never a complete read."""
        api = f"crm.{object_type}.search_api" if object_type in ("companies", "contacts", "deals") else \
            f"crm.objects.{object_type}.search_api"
        records: list[dict] = []
        last_id = None
        while True:
            group = list(filters)
            if last_id is not None:
                group.append({"propertyName": "hs_object_id", "operator": "GT", "value": last_id})
            after, total, got = None, None, 0
            while True:
                body = {"filterGroups": [{"filters": group}], "properties": properties, "limit": PAGE,
                        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]}
                if after is not None:
                    body["after"] = after
                page = self._call(what, lambda body=body: self._api(api).do_search_with_http_info(
                    body, _request_timeout=self._timeout()), search=True).to_dict()
                if total is None:
                    total = int(page.get("total") or 0)
                results = page.get("results") or []
                records.extend(results)
                got += len(results)
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
                if not results:
                    raise ConnectorError(SYSTEM, what, f"an empty page before the end ({got} of {total} read)")
                if got >= SEARCH_CEILING:
                    break
            if after and got >= SEARCH_CEILING and total > got:
                last_id = str(records[-1]["id"])   # the next partition: beyond the last id read
                continue
            if got != total:
                raise ConnectorError(SYSTEM, what, f"{got} records read but the search counts {total}")
            return records

    def owners(self) -> dict[str, str]:
        """Owner id -> e-mail (lower case), every page of GET /crm/v3/owners."""
        if self._owners is None:
            out, after = {}, None
            while True:
                kwargs = {"limit": PAGE, "archived": False, "_request_timeout": self._timeout()}
                if after:
                    kwargs["after"] = after
                page = self._call("read owners", lambda kwargs=kwargs: self._api("crm.owners.owners_api")
                                  .get_page_with_http_info(**kwargs)).to_dict()
                for o in page.get("results") or []:
                    if o.get("email"):
                        out[str(o["id"])] = o["email"].strip().lower()
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
            self._owners = out
        return self._owners

    def owner_id(self, email: str) -> str | None:
        email = (email or "").strip().lower()
        return next((oid for oid, e in self.owners().items() if e == email), None) if email else None

    def associations(self, from_type: str, to_type: str, ids: list[str], what: str) -> dict[str, list[tuple[str, set]]]:
        """from id -> [(to id, {labels})] through the v4 batch read, following a record's own paging."""
        out: dict[str, list[tuple[str, set]]] = {}
        api = "crm.associations.v4.batch_api"
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            got = self._call(what, lambda chunk=chunk: self._api(api).get_page_with_http_info(
                from_type, to_type, {"inputs": [{"id": x} for x in chunk]}, _request_timeout=self._timeout())).to_dict()
            for result in got.get("results") or []:
                source = str(result["_from"]["id"])
                links = out.setdefault(source, [])
                links.extend(self._links(result.get("to")))
                after = ((result.get("paging") or {}).get("next") or {}).get("after")
                while after:
                    more = self._call(what, lambda source=source, after=after: self._api("crm.associations.v4.basic_api")
                                      .get_page_with_http_info(from_type, source, to_type, after=after, limit=500,
                                                               _request_timeout=self._timeout())).to_dict()
                    links.extend(self._links(more.get("results")))
                    after = ((more.get("paging") or {}).get("next") or {}).get("after")
        return out

    @staticmethod
    def _links(to) -> list[tuple[str, set]]:
        return [(str(t["to_object_id"]), {a.get("label") for a in t.get("association_types") or [] if a.get("label")})
                for t in to or []]

    def batch_read(self, object_type: str, ids: list[str], properties: list[str], what: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ids = list(dict.fromkeys(ids))
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            got = self._call(what, lambda chunk=chunk: self._api(f"crm.{object_type}.batch_api").read_with_http_info(
                {"properties": properties, "inputs": [{"id": x} for x in chunk]}, archived=False,
                _request_timeout=self._timeout())).to_dict()
            for r in got.get("results") or []:
                out[str(r["id"])] = r.get("properties") or {}
        return out

    # ---- the customer context ----------------------------------------------------------------
    def customers(self) -> pd.DataFrame:
        co = self.fmap["company"]
        props = {k: v for k, v in (co.get("properties") or {}).items() if v}
        owners = self.owners() if props.get("owner") or props.get("csm") else {}
        records = self.search("companies", [{"propertyName": co["billing_id"], "operator": "HAS_PROPERTY"}],
                              sorted({co["billing_id"], *props.values()}), "search companies")
        ids = [str(r["id"]) for r in records]
        people = self._contacts(ids)
        deals = self._open_deals(records, props)
        seg_map, health_map, stage_map = (_lower_map(co.get(k)) for k in ("segment_values", "health_values",
                                                                          "lifecycle_values"))
        rows = []
        for r in records:
            p, cid = r.get("properties") or {}, str(r["id"])
            value = lambda key: str(p.get(props[key]) or "").strip() if key in props else ""  # noqa: E731
            billing_id = str(p.get(co["billing_id"]) or "").strip()
            if not billing_id:
                continue
            self._companies[billing_id] = cid
            row = {c: "" for c in CUSTOMER_COLUMNS}
            row.update(customer_id=billing_id, name=value("name"), arr=value("arr"), nps=value("nps"),
                       renewal_date=value("renewal_date")[:10], country=_country_code(value("country")),
                       opt_out=value("opt_out").lower())
            if value("segment"):
                row["segment"] = seg_map.get(value("segment").lower(), value("segment").lower())
            if value("health"):
                row["health"] = health_map.get(value("health").lower(), value("health").lower())
            elif value("lifecycle_stage").lower() in stage_map:
                row["health"] = stage_map[value("lifecycle_stage").lower()]
            row["tenure_months"] = tenure_months(value("customer_since")[:10], self.as_of)
            row["owner_ae_email"] = owners.get(value("owner"), "")
            row["owner_csm_email"] = owners.get(value("csm"), "")
            deal = deals.get(cid)
            if deal:
                row["renewal_date"] = row["renewal_date"] or deal[0]
                row["arr"] = row["arr"] or deal[1]
            mine = people.get(cid, {})
            billing = mine.get("billing") or mine.get("ap")
            if billing:
                row["billing_contact_name"], row["billing_contact_email"] = billing
            row["cfo_email"] = mine["cfo"][1] if "cfo" in mine else ""
            row["crm_account_id"] = cid
            rows.append(row)
        return string_frame(rows, CUSTOMER_COLUMNS + ("cfo_email", "crm_account_id"))

    def _contacts(self, company_ids: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
        """company id -> {role: (name, e-mail)}: association labels first, then the role property."""
        con = self.fmap.get("contact") or {}
        f = con.get("properties") or {}
        first_f, last_f, email_f = f.get("first_name", "firstname"), f.get("last_name", "lastname"), f.get("email", "email")
        labels, roles, role_prop = _lower_map(con.get("labels")), con.get("roles") or {}, con.get("role_property")
        found: list[tuple[str, str, str]] = []   # (company, role, contact id), in order of preference
        if labels and company_ids:
            links = self.associations("companies", "contacts", company_ids, "read company contacts")
            for company, to in links.items():
                for contact, names in to:
                    for label in names:
                        if label.lower() in labels:
                            found.append((company, labels[label.lower()], contact))
        by_role: dict[str, dict] = {}
        if role_prop and roles and company_ids:
            rows = self.search("contacts", [{"propertyName": role_prop, "operator": "IN", "values": sorted(
                {str(v) for v in roles} | {str(v).lower() for v in roles})}],
                               sorted({first_f, last_f, email_f, role_prop, "associatedcompanyid"}), "search contacts")
            wanted = set(company_ids)
            for r in rows:
                p = r.get("properties") or {}
                company, role = str(p.get("associatedcompanyid") or ""), roles.get(p.get(role_prop))
                if company in wanted and role:
                    found.append((company, role, str(r["id"])))
                    by_role[str(r["id"])] = p
        need = [c for _, _, c in found if c not in by_role]
        details = {**by_role, **(self.batch_read("contacts", need, [first_f, last_f, email_f], "read contacts")
                                 if need else {})}
        out: dict[str, dict[str, tuple[str, str]]] = {}
        for company, role, contact in found:
            p = details.get(contact) or {}
            email = str(p.get(email_f) or "").strip()
            if email:
                name = " ".join(str(p.get(k) or "").strip() for k in (first_f, last_f)).strip()
                out.setdefault(company, {}).setdefault(role, (name, email))
        return out

    def _open_deals(self, records: list[dict], props: dict) -> dict[str, tuple[str, str]]:
        """company id -> (renewal date, ARR) of its earliest-closing open deal, for the companies
        that hold no renewal date or ARR of their own."""
        cfg = self.fmap.get("deals") or {}
        if not cfg.get("use"):
            return {}
        lacking = [str(r["id"]) for r in records
                   if not all(str((r.get("properties") or {}).get(props.get(k)) or "").strip() if props.get(k) else False
                              for k in ("renewal_date", "arr"))]
        if not lacking:
            return {}
        links = self.associations("companies", "deals", lacking, "read company deals")
        deal_ids = [d for to in links.values() for d, _ in to]
        if not deal_ids:
            return {}
        close_f, amount_f = cfg.get("renewal_date", "closedate"), cfg.get("arr", "amount")
        deals = self.batch_read("deals", deal_ids, sorted({close_f, amount_f, "pipeline", "hs_is_closed"}), "read deals")
        out: dict[str, tuple[str, str]] = {}
        for company, to in links.items():
            open_ = [deals[d] for d, _ in to if d in deals and str(deals[d].get("hs_is_closed")).lower() != "true"
                     and (not cfg.get("pipeline") or deals[d].get("pipeline") == cfg["pipeline"])]
            open_ = [d for d in open_ if d.get(close_f)]
            if open_:
                first = min(open_, key=lambda d: str(d[close_f]))
                out[company] = (str(first[close_f])[:10], str(first.get(amount_f) or "").strip())
        return out

    # ---- writing: owner tasks and the summary note ------------------------------------------
    def company_id(self, customer_id: str) -> str | None:
        if customer_id not in self._companies:
            found = self.search("companies", [{"propertyName": self.fmap["company"]["billing_id"], "operator": "EQ",
                                               "value": str(customer_id)}], ["hs_object_id"], "find company")
            self._companies[customer_id] = str(found[0]["id"]) if found else None
        return self._companies[customer_id]

    @staticmethod
    def task_tag(key: str) -> tuple[str, str]:
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return digest, f"[arflow {digest}]"

    def create_task(self, *, key: str, owner_email: str, customer_id: str, subject: str, body: str,
                    due: dt.date) -> str:
        """An owner escalation as a task on the customer's company; the same key never makes two
        (looked for before each attempt, so a retried create cannot double either)."""
        digest, tag = self.task_tag(key)
        cfg = self.fmap.get("tasks") or {}
        owner = self.owner_id(owner_email) if owner_email else None
        company = self.company_id(customer_id)
        props = {"hs_task_subject": f"{subject[:480]} {tag}",
                 "hs_task_body": html.escape(body if owner or not owner_email else
                                             f"(for {owner_email}: no HubSpot owner has this address)\n\n{body}")
                 .replace("\n", "<br>"),
                 "hs_timestamp": f"{due.isoformat()}T12:00:00Z", "hs_task_status": cfg.get("status", "NOT_STARTED"),
                 "hs_task_priority": cfg.get("priority", "HIGH"), "hs_task_type": cfg.get("type", "TODO")}
        if owner:
            props["hubspot_owner_id"] = owner
        task = {"properties": props, "associations": [] if not company else [
            {"to": {"id": company}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                "associationTypeId": TASK_TO_COMPANY}]}]}
        search = {"filterGroups": [{"filters": [{"propertyName": "hs_task_subject", "operator": "CONTAINS_TOKEN",
                                                 "value": digest}]}], "properties": ["hs_task_subject"], "limit": 10}

        def once():
            self._pace(True)
            found, status, headers = self._api("crm.objects.tasks.search_api").do_search_with_http_info(
                search, _request_timeout=self._timeout())
            mine = [r for r in found.results or [] if tag in str((r.properties or {}).get("hs_task_subject") or "")]
            if mine:
                return mine[0].id, status, headers
            made, status, headers = self._api("crm.objects.tasks.basic_api").create_with_http_info(
                task, _request_timeout=self._timeout())
            return made.id, status, headers

        return str(self._call("create task", once))

    def post_summary(self, text: str) -> str | None:
        company = str((self.fmap.get("summary") or {}).get("company_id") or "").strip()
        if not company:
            return None
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        note = {"properties": {"hs_timestamp": now, "hs_note_body": html.escape(text[:60000]).replace("\n", "<br>")},
                "associations": [{"to": {"id": company}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                                    "associationTypeId": NOTE_TO_COMPANY}]}]}
        made = self._call("post the summary note", lambda: self._api("crm.objects.notes.basic_api")
                          .create_with_http_info(note, _request_timeout=self._timeout()))
        return str(made.id)

    def check(self) -> dict:
        """Sign in, count what arflow can see; nothing is written."""
        co = self.fmap["company"]
        owners = self.owners()
        page = self._call("count companies", lambda: self._api("crm.companies.search_api").do_search_with_http_info(
            {"filterGroups": [{"filters": [{"propertyName": co["billing_id"], "operator": "HAS_PROPERTY"}]}],
             "properties": [co["billing_id"]], "limit": 1}, _request_timeout=self._timeout()), search=True)
        return {"system": "hubspot", "host": self.host, "auth": "oauth" if self.oauth else "private app token",
                "linked_companies": int(page.total or 0), "owners": len(owners),
                "field_map": str(field_map_path(self.settings.get("field_map"))),
                "rate_limit": {k: v for k, v in self.limits.items()}}
