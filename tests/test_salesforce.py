"""Salesforce at the wire: simple-salesforce against tests/fake_salesforce.py (https on 127.0.0.1),
with the shipped field map (salesforce_fields.yaml)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from arflow.blocks import connection
from connectors.http import ConnectorError
from connectors.salesforce import NotConfigured, SalesforceCrm, load_field_map
from connectors.sources import CombinedSource
from tests.cli import arflow
from tests.fake_salesforce import FakeSalesforce

AS_OF = dt.date(2026, 11, 23)


@pytest.fixture
def sfdc(tmp_path, monkeypatch):
    with FakeSalesforce(tmp_path / "tls") as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("ARFLOW_SALESFORCE_BLOCK", "no-such-block")
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        yield fake


def accounts(fake):
    a = fake.add("Account", Name="Globex Corporation", Billing_Customer_Id__c="17", ARR__c=200000.00,
                 Customer_Segment__c="Enterprise", Customer_Since__c="2021-06-01", NPS__c=62, Health__c="Green",
                 Renewal_Date__c="2027-03-31", **{"Owner.Email": "dana.ae@yourco.example",
                                                   "CSM__r.Email": "sam.csm@yourco.example"},
                 BillingCountryCode="US", AR_Opt_Out__c=False)
    b = fake.add("Account", Name="Initech", Billing_Customer_Id__c="8", ARR__c=12000.5, Customer_Segment__c="SMB",
                 Customer_Since__c="2025-10-15", Health__c="Red", **{"Owner.Email": "lee.ae@yourco.example"},
                 BillingCountryCode="DE", AR_Opt_Out__c=True)
    fake.add("Account", Name="Prospect Inc")  # no billing id: not a customer of the billing system
    fake.add("Contact", AccountId=a["Id"], Name="Pat Payables", Email="ap@globex.example", AR_Role__c="Accounts Payable")
    fake.add("Contact", AccountId=a["Id"], Name="Bea Billing", Email="billing@globex.example", AR_Role__c="Billing Contact")
    fake.add("Contact", AccountId=a["Id"], Name="Carla CFO", Email="cfo@globex.example", AR_Role__c="CFO")
    fake.add("Contact", AccountId=b["Id"], Name="Al AP", Email="ap@initech.example", AR_Role__c="Accounts Payable")
    fake.add("Contact", AccountId=b["Id"], Name="Sales Guy", Email="sales@initech.example", AR_Role__c="Champion")
    fake.add("User", Email="dana.ae@yourco.example", IsActive=True)
    return a, b


def crm() -> SalesforceCrm:
    return SalesforceCrm(connection("salesforce")[0], as_of=AS_OF)


def test_accounts_and_contacts_map_through_the_field_map(sfdc):
    accounts(sfdc)
    df = crm().customers().set_index("customer_id")
    assert sorted(df.index) == ["17", "8"]
    g = df.loc["17"]
    assert (g["name"], g["segment"], g["arr"], g["tenure_months"], g["nps"], g["health"], g["renewal_date"]) == \
        ("Globex Corporation", "strategic", "200000.0", "65", "62", "healthy", "2027-03-31")
    assert (g["owner_ae_email"], g["owner_csm_email"]) == ("dana.ae@yourco.example", "sam.csm@yourco.example")
    # the billing contact wins over AP; the CFO is kept apart
    assert (g["billing_contact_name"], g["billing_contact_email"], g["cfo_email"]) == \
        ("Bea Billing", "billing@globex.example", "cfo@globex.example")
    i = df.loc["8"]
    assert (i["segment"], i["health"], i["arr"], i["opt_out"], i["country"]) == \
        ("transactional", "at_risk", "12000.5", "true", "DE")
    assert (i["billing_contact_email"], i["cfo_email"], i["owner_csm_email"]) == ("ap@initech.example", "", "")
    soql = [r["query"]["q"] for r in sfdc.requests if r["path"].endswith("/query/") or r["path"].endswith("/query")]
    assert any("Owner.Email" in q and "WHERE Billing_Customer_Id__c != null" in q for q in soql)


def test_the_parsed_customers_keep_money_exact_and_roles(sfdc, policy):
    from tasks import extract

    accounts(sfdc)
    parsed = extract.parse_customers(crm().customers(), policy).set_index("customer_id")
    assert parsed.loc["8", "arr_minor"] == 1200050 and parsed.loc["17", "arr_minor"] == 20000000
    assert parsed.loc["17", "cfo_email"] == "cfo@globex.example" and bool(parsed.loc["8", "opt_out"])


def test_large_orgs_are_read_page_by_page_to_the_total(sfdc):
    sfdc.page_size = 2000
    for i in range(4500):
        sfdc.add("Account", Name=f"A{i}", Billing_Customer_Id__c=f"C{i}")
    assert len(crm().customers()) == 4500
    more = [r["path"] for r in sfdc.requests if "/query/01g" in r["path"]]
    assert len(more) == 2   # nextRecordsUrl followed twice


def test_a_pull_that_ends_short_of_totalsize_is_an_error(sfdc):
    for i in range(30):
        sfdc.add("Account", Name=f"A{i}", Billing_Customer_Id__c=f"C{i}")
    sfdc.page_size = 10
    original = sfdc._page_body

    def lying(locator, offset, total):
        body = original(locator, offset, total)
        if offset == 10:
            body["done"] = True   # the second page claims to be the last
            body.pop("nextRecordsUrl", None)
        return body

    sfdc._page_body = lying
    with pytest.raises(ConnectorError, match="Salesforce: query accounts failed: 20 records read but the query counts 30"):
        crm().customers()


def test_errors_name_salesforce_and_the_cause(sfdc, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
    for _ in range(3):
        sfdc.queue(503)
    with pytest.raises(ConnectorError, match="Salesforce: query accounts failed: still failing after 2 retries"):
        crm().customers()
    sfdc.queue(400, [{"message": "No such column 'ARR__c' on entity 'Account'", "errorCode": "INVALID_FIELD"}])
    with pytest.raises(ConnectorError, match="Salesforce: query accounts failed: HTTP 400 INVALID_FIELD: No such column"):
        crm().customers()
    monkeypatch.setenv("ARFLOW_SFDC_SESSION_ID", "expired")
    with pytest.raises(ConnectorError) as err:
        crm().customers()
    assert "INVALID_SESSION_ID" in str(err.value) and "expired" not in str(err.value).replace("Session expired", "")


def test_429_with_retry_after_then_answered(sfdc):
    accounts(sfdc)
    sfdc.queue(429, [{"message": "REQUEST_LIMIT_EXCEEDED", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], {"Retry-After": "1"})
    assert len(crm().customers()) == 2


def test_owner_task_is_created_once_per_key_on_the_account_for_the_owner(sfdc):
    a, _ = accounts(sfdc)
    c = crm()
    first = c.create_task(key="C17:2026-11-23:crm_task", owner_email="dana.ae@yourco.example", customer_id="17",
                          subject="Call Globex about INV-1001", body="45 days past due.", due=AS_OF)
    again = crm().create_task(key="C17:2026-11-23:crm_task", owner_email="dana.ae@yourco.example", customer_id="17",
                              subject="Call Globex about INV-1001", body="45 days past due.", due=AS_OF)
    assert first == again and len(sfdc.records["Task"]) == 1
    task = sfdc.records["Task"][0]
    user = sfdc.records["User"][0]["Id"]
    assert task["WhatId"] == a["Id"] and task["OwnerId"] == user and task["ActivityDate"] == "2026-11-23"
    assert task["Subject"].startswith("Call Globex about INV-1001 [arflow ")
    # an owner with no Salesforce user: the task goes to the integration user and says for whom
    c.create_task(key="C8:x", owner_email="lee.ae@yourco.example", customer_id="8", subject="Call Initech",
                  body="b", due=AS_OF)
    assert "OwnerId" not in sfdc.records["Task"][1]
    assert sfdc.records["Task"][1]["Description"].startswith("(for lee.ae@yourco.example: no active Salesforce user")


def test_the_summary_is_posted_only_where_the_map_names_a_record(sfdc):
    fmap = load_field_map()
    assert crm().post_summary("today") is None
    fmap["summary"]["parent_id"] = "0F9WV0000000001"
    c = SalesforceCrm(connection("salesforce")[0], as_of=AS_OF, field_map=fmap)
    assert c.post_summary("Daily AR 2026-11-23: 12 reminders") and \
        sfdc.records["FeedItem"][0]["ParentId"] == "0F9WV0000000001"


def test_a_field_map_without_the_link_field_is_refused(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("account:\n  object: Account\n  fields: {name: Name}\n")
    with pytest.raises(NotConfigured, match="account.billing_id"):
        load_field_map(bad)
    with pytest.raises(NotConfigured, match="set ARFLOW_SFDC_INSTANCE_URL"):
        SalesforceCrm({}, as_of=AS_OF)


class _Billing:
    """A billing side for the overlay test: two customers, one the CRM knows."""

    name = "csv"

    def invoices(self):
        import pandas as pd

        return pd.DataFrame({"invoice_id": ["I1", "I2"], "customer_id": ["17", "99"]})

    def customers(self):
        from tests.conftest import customer

        import pandas as pd

        rows = [customer("17", segment="standard", billing_contact_email="old@globex.example", arr=""),
                customer("99", name="Unlinked Co")]
        df = pd.DataFrame(rows).astype(str)
        df.insert(0, "source_row", range(2, 4))
        return df


def test_the_crm_lays_its_fields_over_the_billing_customers(sfdc):
    accounts(sfdc)
    combined = CombinedSource(_Billing(), crm())
    df = combined.customers().set_index("customer_id")
    assert df.loc["17", "segment"] == "strategic" and df.loc["17", "billing_contact_email"] == "billing@globex.example"
    assert df.loc["17", "arr"] == "200000.0"
    assert df.loc["99", "name"] == "Unlinked Co" and df.loc["99", "segment"] == "standard"
    assert any("1 billing customer(s) with open invoices have no linked account (99)" in n for n in combined.notes())


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_salesforce(sfdc, tmp_path):
    accounts(sfdc)
    env = {"ARFLOW_DATA_DIR": str(tmp_path), **sfdc.env(), "ARFLOW_SALESFORCE_BLOCK": "no-such-block"}
    p = arflow(["check-connection", "salesforce", "--json"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["linked_accounts"] == 2 and out["instance"] == sfdc.url.removeprefix("https://")


@pytest.mark.parametrize("billing_id", ["O'Brien\\", "a\\' OR Name != null", "C\\17", "x'y\"z\\n"])
def test_ids_with_quotes_and_backslashes_find_exactly_their_account(sfdc, billing_id):
    """Issue 21, item 14: SOQL string values escape the backslash as well as the quote, so a
    value ending in a backslash neither breaks the query nor reads another account."""
    a, _ = accounts(sfdc)
    mine = sfdc.add("Account", Name="Odd Id Ltd", Billing_Customer_Id__c=billing_id)
    sfdc.add("User", Email="o'brien\\ae@yourco.example", IsActive=True)
    c = crm()
    assert c.account_id(billing_id) == mine["Id"] != a["Id"]
    assert c.user_id("o'brien\\ae@yourco.example") == sfdc.records["User"][-1]["Id"]
    assert c.account_id(billing_id + "\\") is None
