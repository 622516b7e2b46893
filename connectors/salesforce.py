"""Salesforce as the CRM (`--crm salesforce`), through simple-salesforce.

Reads (paged SOQL: `query` then `query_more` on `nextRecordsUrl`, 2,000 records a page, checked
against the first page's `totalSize`):
- Accounts linked to billing customers by an external-ID field, with ARR or contract value, owner,
  CSM, segment, health, NPS, renewal date, country and opt-out, through the field map
  (`salesforce_fields.yaml`, or the file ARFLOW_SFDC_FIELD_MAP names);
- Contacts with a billing role (billing contact, accounts payable, CFO).

Writes: owner escalations as Tasks on the account (assigned to the owner's User, found by e-mail),
once per escalation (the Task's subject carries the escalation's key and is looked up before a
Task is created); and, where the field map names a record or group, the daily summary as a Chatter
post (FeedItem).

Sign-in: a session id and instance URL (ARFLOW_SFDC_SESSION_ID, ARFLOW_SFDC_INSTANCE_URL: an OAuth
access token from a connected app), or username, password and security token
(ARFLOW_SFDC_USERNAME, _PASSWORD, _SECURITY_TOKEN; ARFLOW_SFDC_DOMAIN=test for a sandbox).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import os
from pathlib import Path

import pandas as pd
import requests
import yaml
from simple_salesforce.format import format_soql, quote_soql_value

from arflow.resources import default_path
from connectors.http import ConnectorError, describe, is_transient, transient_status, with_retries
from connectors.sources import CUSTOMER_COLUMNS, SourceError, string_frame, tenure_months

SYSTEM = "Salesforce"
API_VERSION = "62.0"


class NotConfigured(SourceError):
    pass


def load_field_map(path: str | Path | None = None) -> dict:
    path = Path(path or os.environ.get("ARFLOW_SFDC_FIELD_MAP") or default_path("salesforce_fields.yaml"))
    try:
        fmap = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NotConfigured(f"Salesforce field map not found: {path}") from None
    except yaml.YAMLError as exc:
        raise NotConfigured(f"Salesforce field map {path} is not YAML: {str(exc).splitlines()[0]}") from None
    account = (fmap or {}).get("account") or {}
    if not account.get("billing_id"):
        raise NotConfigured(f"Salesforce field map {path}: account.billing_id (the field linking an account to "
                            "its billing customer) is required")
    return fmap


def _path(record, dotted: str):
    """A field of a record, following relationships (Owner.Email); None where any step is empty."""
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return format(value.quantize(decimal.Decimal("0.01")) if value.as_tuple().exponent < -2 else value, "f")
    return str(value).strip()


class SalesforceCrm:
    """The CrmSource of a Salesforce org, and its owner-task channel."""

    name = "salesforce"

    def __init__(self, settings: dict, *, as_of: dt.date, field_map: dict | None = None):
        self.settings, self.as_of = settings, as_of
        if not (settings.get("session_id") and settings.get("instance_url")) and \
                not (settings.get("username") and settings.get("password")):
            raise NotConfigured("Salesforce is not configured: set ARFLOW_SFDC_INSTANCE_URL and "
                                "ARFLOW_SFDC_SESSION_ID, or ARFLOW_SFDC_USERNAME, ARFLOW_SFDC_PASSWORD and "
                                "ARFLOW_SFDC_SECURITY_TOKEN (or save an arflow-salesforce block)")
        self.fmap = field_map or load_field_map(settings.get("field_map"))
        self._sf = None
        self._accounts: dict[str, str] = {}   # billing customer id -> Account Id
        self._users: dict[str, str | None] = {}

    def client(self):
        if self._sf is None:
            from simple_salesforce import Salesforce
            from simple_salesforce.exceptions import SalesforceAuthenticationFailed

            session = with_retries(requests.Session())
            s = self.settings
            try:
                if s.get("session_id"):
                    self._sf = Salesforce(instance_url=s["instance_url"], session_id=s["session_id"],
                                          session=session, version=API_VERSION, parse_float=decimal.Decimal)
                else:
                    self._sf = Salesforce(username=s["username"], password=s["password"],
                                          security_token=s.get("security_token") or "", domain=s.get("domain") or "login",
                                          session=session, version=API_VERSION, parse_float=decimal.Decimal)
            except SalesforceAuthenticationFailed as exc:
                raise ConnectorError(SYSTEM, "sign-in", f"{exc.code}: {exc.message}") from None
            except Exception as exc:  # noqa: BLE001
                raise ConnectorError(SYSTEM, "sign-in", describe(exc), transient=is_transient(exc)) from None
        return self._sf

    def _call(self, what: str, fn):
        from simple_salesforce.exceptions import SalesforceError

        try:
            return fn(self.client())
        except ConnectorError:
            raise
        except SalesforceError as exc:
            content = exc.content if isinstance(exc.content, list) else [exc.content]
            detail = "; ".join(f"{c.get('errorCode')}: {c.get('message')}" for c in content if isinstance(c, dict)) \
                or str(exc.content)[:200]
            raise ConnectorError(SYSTEM, what, f"HTTP {exc.status} {detail}", transient=transient_status(exc.status)) \
                from None
        except Exception as exc:  # noqa: BLE001 - requests' errors after the retries, or a bad body
            raise ConnectorError(SYSTEM, what, describe(exc), transient=is_transient(exc)) from None

    def query(self, soql: str, what: str) -> list[dict]:
        """Every record of a SOQL query, page by page; a pull that ends short of the first page's
        totalSize is an error, never a complete pull."""
        def pull(sf):
            result = sf.query(soql)
            total = result.get("totalSize")
            records = list(result.get("records") or [])
            while not result.get("done", True):
                result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
                records.extend(result.get("records") or [])
            if total is not None and len(records) != int(total):
                raise ConnectorError(SYSTEM, what, f"{len(records)} records read but the query counts {total}")
            return records

        return self._call(what, pull)

    # ---- reading ---------------------------------------------------------------------------
    def customers(self) -> pd.DataFrame:
        acc = self.fmap["account"]
        fields = {k: v for k, v in (acc.get("fields") or {}).items() if v}
        select = sorted({"Id", acc["billing_id"], *fields.values()})
        records = self.query(f"SELECT {', '.join(select)} FROM {acc.get('object', 'Account')} "
                             f"WHERE {acc['billing_id']} != null", "query accounts")
        contacts = self._contacts([r.get("Id") for r in records])
        seg_map = {str(k).lower(): v for k, v in (acc.get("segment_values") or {}).items()}
        health_map = {str(k).lower(): v for k, v in (acc.get("health_values") or {}).items()}
        rows = []
        for r in records:
            cid = _text(_path(r, acc["billing_id"]))
            self._accounts[cid] = r.get("Id")
            row = {c: "" for c in CUSTOMER_COLUMNS}
            row["customer_id"] = cid
            for col, field in fields.items():
                row[col] = _text(_path(r, field))
            if row.get("segment"):
                row["segment"] = seg_map.get(row["segment"].lower(), row["segment"].lower())
            if row.get("health"):
                row["health"] = health_map.get(row["health"].lower(), row["health"].lower())
            since = row.pop("customer_since", "")
            row["tenure_months"] = tenure_months(since, self.as_of)
            if row.get("renewal_date"):
                row["renewal_date"] = row["renewal_date"][:10]
            people = contacts.get(r.get("Id"), {})
            billing = people.get("billing") or people.get("ap")
            if billing:
                row["billing_contact_name"], row["billing_contact_email"] = billing
            row["cfo_email"] = people["cfo"][1] if "cfo" in people else ""
            row["crm_account_id"] = r.get("Id") or ""
            rows.append(row)
        return string_frame(rows, CUSTOMER_COLUMNS + ("cfo_email", "crm_account_id"))

    def _contacts(self, account_ids: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
        con = self.fmap.get("contact") or {}
        role_field, roles = con.get("role_field"), con.get("roles") or {}
        if not role_field or not roles or not account_ids:
            return {}
        f = con.get("fields") or {}
        name_f, email_f, acc_f = f.get("name", "Name"), f.get("email", "Email"), con.get("account", "AccountId")
        values = format_soql("{}", [str(v) for v in roles])  # quotes and backslashes escaped, as SOQL wants
        records = self.query(f"SELECT Id, {acc_f}, {name_f}, {email_f}, {role_field} FROM {con.get('object', 'Contact')} "
                             f"WHERE {role_field} IN {values} ORDER BY CreatedDate", "query contacts")
        out: dict[str, dict[str, tuple[str, str]]] = {}
        wanted = set(account_ids)
        for r in records:
            account = _path(r, acc_f)
            role = roles.get(_path(r, role_field))
            email = _text(_path(r, email_f))
            if account in wanted and role and email:
                out.setdefault(account, {}).setdefault(role, (_text(_path(r, name_f)), email))
        return out

    # ---- writing: owner tasks and the summary note ------------------------------------------
    def account_id(self, customer_id: str) -> str | None:
        if customer_id not in self._accounts:
            acc = self.fmap["account"]
            found = self.query(f"SELECT Id FROM {acc.get('object', 'Account')} WHERE {acc['billing_id']} = "
                               + quote_soql_value(str(customer_id)), "find account")
            self._accounts[customer_id] = found[0]["Id"] if found else None
        return self._accounts[customer_id]

    def user_id(self, email: str) -> str | None:
        if email not in self._users:
            found = self.query(format_soql("SELECT Id FROM User WHERE Email = {} AND IsActive = true", email),
                               "find user")
            self._users[email] = found[0]["Id"] if found else None
        return self._users[email]

    def create_task(self, *, key: str, owner_email: str, customer_id: str, subject: str, body: str,
                    due: dt.date) -> str:
        """An owner escalation as a Task on the customer's account; the same key never makes two."""
        tag = f"[arflow {hashlib.sha256(key.encode()).hexdigest()[:10]}]"
        existing = self.query(f"SELECT Id FROM Task WHERE Subject LIKE '%{tag}%'", "find task")
        if existing:
            return existing[0]["Id"]
        cfg = self.fmap.get("tasks") or {}
        owner = self.user_id(owner_email) if owner_email else None
        task = {"Subject": f"{subject} {tag}"[:255], "ActivityDate": due.isoformat(),
                "Status": cfg.get("status", "Not Started"), "Priority": cfg.get("priority", "High"),
                "Description": body if owner or not owner_email else
                f"(for {owner_email}: no active Salesforce user has this address)\n\n{body}"}
        account = self.account_id(customer_id)
        if account:
            task["WhatId"] = account
        if owner:
            task["OwnerId"] = owner
        result = self._call("create task", lambda sf: sf.Task.create(task))
        return result.get("id")

    def post_summary(self, text: str) -> str | None:
        parent = ((self.fmap.get("summary") or {}).get("parent_id") or "").strip()
        if not parent:
            return None
        result = self._call("post the summary", lambda sf: sf.FeedItem.create({"ParentId": parent, "Body": text[:10000]}))
        return result.get("id")

    def check(self) -> dict:
        acc = self.fmap["account"]
        sf = self.client()
        total = self._call("count accounts", lambda s: s.query(
            f"SELECT COUNT() FROM {acc.get('object', 'Account')} WHERE {acc['billing_id']} != null")["totalSize"])
        return {"system": "salesforce", "instance": sf.sf_instance, "api_version": sf.sf_version,
                "linked_accounts": total, "field_map": str(self.settings.get("field_map") or
                                                           os.environ.get("ARFLOW_SFDC_FIELD_MAP") or
                                                           default_path("salesforce_fields.yaml"))}

