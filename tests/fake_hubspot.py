"""A local HubSpot CRM API (v3 objects and search, v4 associations, owners, OAuth token) that
answers in the format of HubSpot's API reference, as the samples in tests/data/hubspot_samples show:

- every property value a string, or null when empty; records `{id, properties, createdAt,
  updatedAt, archived}` with `id` a string (v4 association `toObjectId` a JSON number);
- search (`POST /crm/v3/objects/{type}/search`): filterGroups ORed, filters in a group ANDed
  (EQ, NEQ, GT, GTE, LT, LTE, IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN), at most 5 groups
  and 6 filters a group, `limit` at most 200, `after` a string offset; `{total, results, paging?}`
  with `paging.next.after` and no `paging` on the last page; paging to 10,000 or beyond is a 400,
  as HubSpot documents; search responses carry no rate-limit headers;
- lists (owners) page with `after` and return `paging.next.{after, link}`;
- errors `{status: "error", message, correlationId, category}`; 401 INVALID_AUTHENTICATION; 429
  `{status, message, errorType: RATE_LIMIT, correlationId, policyName, requestId}`;
- every non-search answer carries X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds, and
  -Daily/-Daily-Remaining for a private app's token (not for OAuth tokens);
- creates answer 201 with the new record.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import urllib.parse
import uuid
from pathlib import Path

from tests.wire import WireServer

SAMPLES = Path(__file__).parent / "data" / "hubspot_samples"
CEILING = 10_000
STAMP = "2024-09-13T20:23:03.333Z"


def sample(name: str):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def _error(message: str, category: str = "VALIDATION_ERROR") -> dict:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(props: dict, f: dict) -> bool:
    name, op = f.get("propertyName"), f.get("operator")
    have = props.get(name)
    have = None if have in (None, "") else str(have)
    if op == "HAS_PROPERTY":
        return have is not None
    if op == "NOT_HAS_PROPERTY":
        return have is None
    if op == "IN":
        return have is not None and have.lower() in {str(v).lower() for v in f.get("values") or []}
    value = f.get("value")
    if op == "EQ":
        return have is not None and have.lower() == str(value).lower()
    if op == "NEQ":
        return have is None or have.lower() != str(value).lower()
    if op == "CONTAINS_TOKEN":
        return have is not None and str(value).lower() in re.split(r"[^a-z0-9]+", have.lower())
    if op in ("GT", "GTE", "LT", "LTE"):
        a, b = _number(have), _number(value)
        if a is None or b is None:
            a, b = have, str(value)
            if a is None:
                return False
        return {"GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b}[op]
    raise ValueError(op)


class FakeHubSpot(WireServer):
    def __init__(self, token: str = "pat-na1-11111111-2222-3333-4444-555555555555"):
        self.token, self.oauth = token, False
        self.client_id, self.client_secret, self.refresh_token = "hs-client", "hs-secret", "hs-refresh-1"
        self.objects: dict[str, list[dict]] = {"companies": [], "contacts": [], "deals": [], "tasks": [], "notes": []}
        self.links: list[tuple[str, str, str, str, list[dict]]] = []   # from type, from id, to type, to id, types
        self.owner_list: list[dict] = []
        self.queued: list[tuple[int, object, dict]] = []
        self.ids = itertools.count(5790939450)
        self.remaining, self.daily_remaining = "149", "249000"
        self.refreshes = 0
        self.page_hook = None   # (type, offset, body) -> body: a test's way to make a page lie
        super().__init__()

    def env(self) -> dict:
        return {"ARFLOW_HUBSPOT_BASE_URL": self.url, "ARFLOW_HUBSPOT_TOKEN": self.token,
                "ARFLOW_HTTP_BACKOFF": "0.01", "ARFLOW_HUBSPOT_SEARCH_INTERVAL": "0"}

    def oauth_env(self) -> dict:
        """An OAuth app instead of a private app: arflow gets its access token from the refresh token."""
        self.oauth, self.token = True, "oauth-access-0"
        return {"ARFLOW_HUBSPOT_BASE_URL": self.url, "ARFLOW_HUBSPOT_TOKEN": "", "ARFLOW_HUBSPOT_CLIENT_ID": self.client_id,
                "ARFLOW_HUBSPOT_CLIENT_SECRET": self.client_secret, "ARFLOW_HUBSPOT_REFRESH_TOKEN": self.refresh_token,
                "ARFLOW_HTTP_BACKOFF": "0.01", "ARFLOW_HUBSPOT_SEARCH_INTERVAL": "0"}

    def expire_token(self) -> None:
        """The access token in use stops working (OAuth access tokens live 30 minutes)."""
        self.token = f"expired-{self.token}"

    # ---- data --------------------------------------------------------------------------------
    def add(self, object_type: str, **props) -> dict:
        oid = str(next(self.ids))
        full = {"hs_object_id": oid, "createdate": "2020-01-09T20:11:27.309Z", "hs_lastmodifieddate": STAMP,
                **{k: (None if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in props.items()}}
        record = {"id": oid, "properties": full, "createdAt": full["createdate"], "updatedAt": STAMP, "archived": False}
        self.objects[object_type].append(record)
        return record

    def owner(self, email: str, first: str = "Dana", last: str = "Owner") -> str:
        oid = str(30000000 + len(self.owner_list) + 1)
        self.owner_list.append({"id": oid, "email": email, "type": "PERSON", "firstName": first, "lastName": last,
                                "userId": int(oid), "userIdIncludingInactive": int(oid),
                                "createdAt": "2026-02-25T15:16:54.974Z", "updatedAt": "2026-02-25T15:17:01.810Z",
                                "archived": False})
        return oid

    def link(self, from_type: str, from_id: str, to_type: str, to_id: str, label: str | None = None,
             type_id: int = 280) -> None:
        types = [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]
        if label:
            types.append({"category": "USER_DEFINED", "typeId": 28 + len(self.links) % 10, "label": label})
        self.links.append((from_type, from_id, to_type, to_id, types))

    def queue(self, status: int, body=None, headers: dict | None = None) -> None:
        self.queued.append((status, body if body is not None else
                            _error("Internal error", "INTERNAL_ERROR"), headers or {}))

    def requests_to(self, fragment: str, method: str | None = None) -> list[dict]:
        return [r for r in self.requests if fragment in r["path"] and (method is None or r["method"] == method)]

    # ---- answers -----------------------------------------------------------------------------
    def _limits(self) -> dict:
        h = {"X-HubSpot-RateLimit-Max": "150", "X-HubSpot-RateLimit-Remaining": self.remaining,
             "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
        if not self.oauth:
            h.update({"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": self.daily_remaining})
        return h

    def answer(self, method, path, query, body, headers):
        if path == "/oauth/v1/token" and method == "POST":
            return self._token(body)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, sample("error_401_invalid_authentication_assembled"), {}
        if self.queued:
            return self.queued.pop(0)
        data = json.loads(body) if body else {}
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)/search", path):
            if method == "POST" and m.group(1) in self.objects:
                return self._search(m.group(1), data)
        limits = self._limits()
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)/batch/read", path):
            if method == "POST" and m.group(1) in self.objects:
                return self._batch_read(m.group(1), data, limits)
        if m := re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/read", path):
            return self._associations(m.group(1), m.group(2), data, limits)
        if path.rstrip("/") == "/crm/v3/owners" and method == "GET":
            return self._owners(query, limits)
        if m := re.fullmatch(r"/crm/v3/objects/(tasks|notes)", path):
            if method == "POST":
                return self._create(m.group(1), data, limits)
        return 404, _error(f"no route for {method} {path}", "OBJECT_NOT_FOUND"), limits

    def _token(self, body: str):
        form = dict(urllib.parse.parse_qsl(body))
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret or form.get("refresh_token") != self.refresh_token:
            return 400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token",
                         "correlationId": str(uuid.uuid4())}, {}
        self.refreshes += 1
        self.token = f"oauth-access-{self.refreshes}"
        return 200, {"token_type": "bearer", "refresh_token": self.refresh_token, "access_token": self.token,
                     "expires_in": 1800}, {}

    def _shape(self, record: dict, names) -> dict:
        props = {k: record["properties"].get(k) for k in
                 dict.fromkeys(["createdate", "hs_lastmodifieddate", "hs_object_id", *(names or [])])}
        return {"id": record["id"], "properties": props, "createdAt": record["createdAt"],
                "updatedAt": record["updatedAt"], "archived": False}

    def _search(self, object_type: str, data: dict):
        groups = data.get("filterGroups") or []
        limit, after = int(data.get("limit") or 10), int(data.get("after") or 0)
        if limit > 200:
            return 400, _error("limit must be at most 200"), {}
        if len(groups) > 5 or any(len(g.get("filters") or []) > 6 for g in groups):
            return 400, _error("Too many filter groups or filters in a group"), {}
        if after >= CEILING:
            return 400, _error(f"The request exceeds the maximum of {CEILING} results for a search"), {}
        try:
            rows = [r for r in self.objects[object_type]
                    if not groups or any(all(_matches(r["properties"], f) for f in g.get("filters") or []) for g in groups)]
        except ValueError as exc:
            return 400, _error(f"unknown operator {exc}"), {}
        for s in reversed(data.get("sorts") or []):
            name = s.get("propertyName")
            numeric = name == "hs_object_id"
            rows.sort(key=lambda r: (float(r["properties"].get(name) or 0) if numeric else str(r["properties"].get(name) or "")),
                      reverse=s.get("direction") == "DESCENDING")
        page = rows[after:after + limit]
        out = {"total": len(rows), "results": [self._shape(r, data.get("properties")) for r in page]}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": str(after + limit)}}
        if self.page_hook:
            out = self.page_hook(object_type, after, out)
        return 200, out, {}

    def _batch_read(self, object_type: str, data: dict, limits: dict):
        inputs = data.get("inputs") or []
        if len(inputs) > 100:
            return 400, _error("batch read takes at most 100 inputs"), limits
        index = {r["id"]: r for r in self.objects[object_type]}
        results = [self._shape(index[str(i["id"])], data.get("properties")) for i in inputs if str(i["id"]) in index]
        return 200, {"status": "COMPLETE", "results": results, "startedAt": STAMP, "completedAt": STAMP}, limits

    def _associations(self, from_type: str, to_type: str, data: dict, limits: dict):
        inputs = [str(i["id"]) for i in data.get("inputs") or []]
        if len(inputs) > 1000:
            return 400, _error("batch association read takes at most 1,000 inputs"), limits
        results = []
        for source in inputs:
            to = [{"toObjectId": int(t), "associationTypes": types}
                  for ft, fid, tt, t, types in self.links if ft == from_type and fid == source and tt == to_type]
            if to:
                results.append({"from": {"id": source}, "to": to})
        return 200, {"status": "COMPLETE", "results": results, "startedAt": STAMP, "completedAt": STAMP}, limits

    def _owners(self, query: dict, limits: dict):
        limit, after = int(query.get("limit") or 100), int(query.get("after") or 0)
        page = self.owner_list[after:after + limit]
        out = {"results": page}
        if after + limit < len(self.owner_list):
            nxt = str(after + limit)
            out["paging"] = {"next": {"after": nxt, "link": f"{self.url}/crm/v3/owners/?after={nxt}&limit={limit}"}}
        return 200, out, limits

    def _create(self, object_type: str, data: dict, limits: dict):
        props = data.get("properties") or {}
        if object_type == "tasks" and not props.get("hs_timestamp"):
            return 400, _error("Property values were not valid: hs_timestamp is required"), limits
        record = self.add(object_type, **props)
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        record["properties"]["hs_createdate"] = now
        for a in data.get("associations") or []:
            for t in a.get("types") or []:
                self.links.append((object_type, record["id"], {190: "companies", 192: "companies", 202: "contacts",
                                                               204: "contacts"}.get(t["associationTypeId"], "?"),
                                   str(a["to"]["id"]), [{"category": t["associationCategory"],
                                                         "typeId": t["associationTypeId"], "label": None}]))
        return 201, {**record, "properties": dict(record["properties"])}, limits

    def associated(self, object_type: str, record_id: str, to_type: str) -> list[str]:
        return [t for ft, fid, tt, t, _ in self.links if ft == object_type and fid == record_id and tt == to_type]
