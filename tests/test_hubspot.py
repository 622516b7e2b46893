"""HubSpot at the wire: hubspot-api-client against tests/fake_hubspot.py (HubSpot's documented
search, associations, owners, objects and OAuth formats), with the shipped field map
(hubspot_fields.yaml)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from arflow.blocks import connection
from connectors.http import ConnectorError
from connectors.hubspot import HubSpotCrm, NotConfigured, load_field_map
from connectors.registry import open_source
from connectors.sources import CombinedSource
from tests.cli import arflow
from tests.fake_hubspot import FakeHubSpot, sample

AS_OF = dt.date(2026, 11, 23)


@pytest.fixture
def hs(monkeypatch):
    with FakeHubSpot() as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("ARFLOW_HUBSPOT_BLOCK", "no-such-block")
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        yield fake


def companies(fake):
    dana = fake.owner("dana.ae@yourco.example", "Dana", "Ae")
    sam = fake.owner("Sam.CSM@yourco.example", "Sam", "Csm")
    lee = fake.owner("lee.ae@yourco.example", "Lee", "Ae")
    g = fake.add("companies", name="Globex Corporation", billing_customer_id="17", arr="200000", customer_segment="Enterprise",
                 hs_lifecyclestage_customer_date="2021-06-01T00:00:00Z", nps="62", health_status="Green",
                 renewal_date="2027-03-31", hubspot_owner_id=dana, csm_owner=sam, country="United States",
                 ar_opt_out="false", lifecyclestage="customer")
    i = fake.add("companies", name="Initech", billing_customer_id="8", customer_segment="SMB",
                 hs_lifecyclestage_customer_date="2025-10-15T09:30:00Z", lifecyclestage="other",
                 hubspot_owner_id=lee, country="DE", ar_opt_out="true")
    fake.add("companies", name="Prospect Inc", lifecyclestage="lead")   # no billing id: not a billing customer
    # Globex: the billing contact and the CFO by association label; an AP contact by role property
    bea = fake.add("contacts", firstname="Bea", lastname="Billing", email="billing@globex.example")
    carla = fake.add("contacts", firstname="Carla", lastname="Cfo", email="cfo@globex.example")
    champ = fake.add("contacts", firstname="Chef", lastname="Champion", email="champ@globex.example")
    fake.add("contacts", firstname="Pat", lastname="Payables", email="ap@globex.example", ar_role="Accounts Payable",
             associatedcompanyid=g["id"])
    fake.link("companies", g["id"], "contacts", bea["id"], label="Billing contact")
    fake.link("companies", g["id"], "contacts", carla["id"], label="CFO")
    fake.link("companies", g["id"], "contacts", champ["id"], label="Decision maker")
    # Initech: no labels; its AP contact by role, a champion's role is not a billing role
    fake.add("contacts", firstname="Al", lastname="Ap", email="ap@initech.example", ar_role="Accounts Payable",
             associatedcompanyid=i["id"])
    fake.add("contacts", firstname="Sales", lastname="Guy", email="sales@initech.example", ar_role="Champion",
             associatedcompanyid=i["id"])
    # Initech holds no renewal date or ARR: its earliest open deal gives them; closed deals do not
    for name, close, amount, closed in (("Renewal 2027", "2027-01-31T00:00:00Z", "12000.50", "false"),
                                        ("Renewal 2028", "2028-01-31T00:00:00Z", "13000", "false"),
                                        ("Won 2025", "2025-01-31T00:00:00Z", "9000", "true")):
        d = fake.add("deals", dealname=name, closedate=close, amount=amount, hs_is_closed=closed, pipeline="default")
        fake.link("companies", i["id"], "deals", d["id"], type_id=342)
    return g, i


def crm(**kw) -> HubSpotCrm:
    return HubSpotCrm(connection("hubspot")[0], as_of=AS_OF, **kw)


def test_companies_and_contacts_map_through_the_field_map(hs):
    companies(hs)
    df = crm().customers().set_index("customer_id")
    assert sorted(df.index) == ["17", "8"]
    g = df.loc["17"]
    assert (g["name"], g["segment"], g["arr"], g["tenure_months"], g["nps"], g["health"], g["renewal_date"]) == \
        ("Globex Corporation", "strategic", "200000", "65", "62", "healthy", "2027-03-31")
    # owner and CSM are HubSpot owners, by e-mail
    assert (g["owner_ae_email"], g["owner_csm_email"]) == ("dana.ae@yourco.example", "sam.csm@yourco.example")
    # the association label "Billing contact" wins over the AP contact of the role property; the CFO apart
    assert (g["billing_contact_name"], g["billing_contact_email"], g["cfo_email"]) == \
        ("Bea Billing", "billing@globex.example", "cfo@globex.example")
    assert (g["country"], g["opt_out"], g["crm_account_id"]) == ("US", "false", hs.objects["companies"][0]["id"])
    i = df.loc["8"]
    # no health property: the lifecycle stage "other" maps to at risk; opt-out checkbox; ISO country
    assert (i["segment"], i["health"], i["opt_out"], i["country"], i["owner_csm_email"]) == \
        ("transactional", "at_risk", "true", "DE", "")
    assert (i["billing_contact_name"], i["billing_contact_email"], i["cfo_email"]) == ("Al Ap", "ap@initech.example", "")
    # renewal date and ARR from the earliest open deal
    assert (i["renewal_date"], i["arr"]) == ("2027-01-31", "12000.50")
    first = json.loads(hs.requests_to("/companies/search")[0]["body"])
    assert first["limit"] == 100 and first["filterGroups"][0]["filters"][0] == \
        {"propertyName": "billing_customer_id", "operator": "HAS_PROPERTY"}


def test_value_maps_and_the_parsed_money_come_from_the_field_map(hs, policy, tmp_path):
    from tasks import extract

    companies(hs)
    fmap = load_field_map()
    fmap["company"]["segment_values"] = {"Enterprise": "standard"}
    fmap["company"]["health_values"] = {"Green": "at_risk"}
    fmap["company"]["lifecycle_values"] = {}
    fmap["contact"]["labels"] = {}                     # the role property alone
    df = crm(field_map=fmap).customers().set_index("customer_id")
    assert (df.loc["17", "segment"], df.loc["17", "health"], df.loc["8", "health"]) == ("standard", "at_risk", "")
    assert df.loc["17", "billing_contact_email"] == "ap@globex.example"
    parsed = extract.parse_customers(crm().customers(), policy).set_index("customer_id")
    assert parsed.loc["8", "arr_minor"] == 1200050 and parsed.loc["17", "arr_minor"] == 20000000
    assert bool(parsed.loc["8", "opt_out"]) and parsed.loc["17", "cfo_email"] == "cfo@globex.example"


def test_a_field_map_without_the_link_property_is_refused(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("company:\n  properties: {name: name}\n")
    with pytest.raises(NotConfigured, match="company.billing_id"):
        load_field_map(bad)
    with pytest.raises(NotConfigured, match="set ARFLOW_HUBSPOT_TOKEN"):
        HubSpotCrm({}, as_of=AS_OF)


def test_association_labels_are_read_from_the_documented_v4_answer(hs):
    """HubSpot's own example of a v4 batch read, served verbatim: labels per associated record,
    the unlabeled type listed with label null, toObjectId a JSON number."""
    hs.queue(200, sample("associations_v4_batch_read_response_docs_example"))
    links = crm().associations("contacts", "companies", ["33451", "29851"], "read contact companies")
    assert links["33451"] == [("5790939450", {"Primary", "Billing contact"})]
    assert links["29851"] == [("5790939450", {"Primary", "Chef"}), ("6675245424", set()),
                              ("17705714757", {"Decision maker"})]
    sent = json.loads(hs.requests_to("/crm/v4/associations/contacts/companies/batch/read")[0]["body"])
    assert sent == sample("associations_v4_batch_read_request_docs_example")


def test_owners_are_read_page_by_page(hs):
    for n in range(230):
        hs.owner(f"user{n}@yourco.example")
    c = crm()
    assert len(c.owners()) == 230 and c.owner_id("USER229@yourco.example") == hs.owner_list[-1]["id"]
    assert [r["query"].get("after") for r in hs.requests_to("/crm/v3/owners")] == [None, "100", "200"]


def test_search_pages_on_after_to_the_total(hs):
    for n in range(250):
        hs.add("companies", name=f"C{n}", billing_customer_id=f"B{n}")
    assert len(crm().customers()) == 250
    afters = [json.loads(r["body"]).get("after") for r in hs.requests_to("/companies/search")]
    assert afters == [None, "100", "200"]


def test_a_search_that_ends_short_of_its_total_is_an_error(hs):
    for n in range(250):
        hs.add("companies", name=f"C{n}", billing_customer_id=f"B{n}")

    def lying(object_type, offset, body):
        if object_type == "companies" and offset == 100:
            body.pop("paging", None)   # the second page claims to be the last
        return body

    hs.page_hook = lying
    with pytest.raises(ConnectorError, match="HubSpot: search companies failed: 200 records read but the search "
                                             "counts 250"):
        crm().customers()


def test_an_empty_page_that_promises_more_is_an_error(hs):
    for n in range(150):
        hs.add("companies", name=f"C{n}", billing_customer_id=f"B{n}")

    def empty(object_type, offset, body):
        if offset == 0:
            body["results"] = []
        return body

    hs.page_hook = empty
    with pytest.raises(ConnectorError, match="an empty page before the end"):
        crm().customers()


@pytest.mark.slow
def test_the_10000_result_search_ceiling_is_passed_by_partitioning_on_the_object_id(hs):
    """HubSpot's search pages through at most 10,000 results of one query (paging on is a 400, as
    the fake answers): arflow starts a new query beyond the last id read and reads the rest."""
    for n in range(10_130):
        hs.add("companies", name=f"C{n}", billing_customer_id=f"B{n}")
    df = crm().customers()
    assert len(df) == 10_130 and df["customer_id"].is_unique
    bodies = [json.loads(r["body"]) for r in hs.requests_to("/companies/search")]
    assert max(int(b.get("after") or 0) for b in bodies) == 9_900    # never paged into the 400
    partitions = [b for b in bodies if any(f["propertyName"] == "hs_object_id" for f in b["filterGroups"][0]["filters"])]
    assert len(partitions) == 2   # the second query: its first page and its second
    (gt,) = [f for f in partitions[0]["filterGroups"][0]["filters"] if f["propertyName"] == "hs_object_id"]
    assert gt["operator"] == "GT" and gt["value"] == hs.objects["companies"][9_999]["id"]
    assert all(b["sorts"] == [{"propertyName": "hs_object_id", "direction": "ASCENDING"}] for b in bodies)


def test_429_waits_out_the_window_hubspot_names_and_is_retried(hs):
    companies(hs)
    hs.queue(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                   "errorType": "RATE_LIMIT", "correlationId": "x", "policyName": "TEN_SECONDLY_ROLLING",
                   "requestId": "y"},
             {"X-HubSpot-RateLimit-Interval-Milliseconds": "700", "X-HubSpot-RateLimit-Max": "150",
              "X-HubSpot-RateLimit-Remaining": "0"})
    started = time.monotonic()
    assert len(crm().customers()) == 2
    assert time.monotonic() - started >= 0.7   # the window's 700 ms, not the 10 ms backoff


def test_429_with_retry_after_is_honoured(hs):
    companies(hs)
    hs.queue(429, sample("error_429_daily_docs_example") | {"policyName": "TEN_SECONDLY_ROLLING",
                                                            "message": "You have reached your secondly limit."},
             {"Retry-After": "1"})
    started = time.monotonic()
    assert len(crm().customers()) == 2 and time.monotonic() - started >= 1.0


def test_the_daily_limit_stops_the_hop_instead_of_retrying(hs):
    companies(hs)
    hs.queue(429, sample("error_429_daily_docs_example"), {"X-HubSpot-RateLimit-Daily-Remaining": "0"})
    with pytest.raises(ConnectorError, match="HubSpot: read owners failed: HTTP 429 You have reached your daily "
                                             "limit. \\(the daily limit") as err:
        crm().customers()
    assert err.value.transient
    assert len(hs.requests) == 1   # not retried


def test_a_nearly_spent_daily_budget_is_kept_for_other_integrations(hs, monkeypatch):
    companies(hs)
    hs.daily_remaining = "40"
    monkeypatch.setenv("ARFLOW_HUBSPOT_DAILY_RESERVE", "50")
    with pytest.raises(ConnectorError, match="daily API limit is nearly used up \\(40 calls left"):
        crm().customers()


def test_a_window_spent_to_zero_is_waited_out_before_the_next_call(hs):
    companies(hs)
    hs.remaining = "0"
    c = crm()
    c.owners()   # the owners' answer says 0 left in a 10 s window
    assert c._wait_until - time.monotonic() > 9


def test_5xx_is_retried_then_fails_the_hop_naming_hubspot_and_the_operation(hs, monkeypatch):
    companies(hs)
    hs.queue(502)
    assert len(crm().customers()) == 2                  # one 502, then answered
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
    for _ in range(3):
        hs.queue(503, {"status": "error", "message": "Service unavailable", "correlationId": "c",
                       "category": "INTERNAL_ERROR"})
    with pytest.raises(ConnectorError) as err:
        crm().customers()
    msg = str(err.value)
    assert msg.startswith("HubSpot: read owners failed: HTTP 503 INTERNAL_ERROR Service unavailable, still failing "
                          "after 2 retries") and err.value.transient
    assert hs.token not in msg
    hs.queue(400, {"status": "error", "message": "Property billing_customer_id does not exist", "correlationId": "c",
                   "category": "VALIDATION_ERROR"})
    with pytest.raises(ConnectorError, match="read owners failed: HTTP 400 VALIDATION_ERROR Property") as err:
        crm().customers()
    assert not err.value.transient


def test_a_bad_private_app_token_is_refused_without_showing_it(hs, monkeypatch):
    monkeypatch.setenv("ARFLOW_HUBSPOT_TOKEN", "pat-na1-wrong-token-0000")
    with pytest.raises(ConnectorError, match="HTTP 401 INVALID_AUTHENTICATION Authentication credentials not found") \
            as err:
        crm().customers()
    assert "pat-na1-wrong" not in str(err.value) and len(hs.requests) == 1   # a private app's 401: no retry


def test_an_expired_oauth_token_is_refreshed_once(hs, monkeypatch):
    for k, v in hs.oauth_env().items():
        monkeypatch.setenv(k, v)
    companies(hs)
    c = crm()
    assert len(c.customers()) == 2 and hs.refreshes == 1      # the first access token from the refresh token
    hs.expire_token()
    assert c.owner_id("dana.ae@yourco.example")                # cached: no call
    c._owners = None
    assert len(c.owners()) == 3 and hs.refreshes == 2          # 401, one refresh, the call again
    # a refresh that does not help: the second 401 fails the hop, no third refresh
    hs.refresh_token = "revoked"
    hs.expire_token()
    c._owners = None
    with pytest.raises(ConnectorError, match="HubSpot: refresh the access token failed: HTTP 400 BAD_REFRESH_TOKEN"):
        c.owners()
    form = [r["body"] for r in hs.requests_to("/oauth/v1/token")]
    assert all("grant_type=refresh_token" in f for f in form) and hs.refreshes == 2


def test_owner_task_is_created_once_per_key_on_the_company_for_the_owner(hs):
    g, _ = companies(hs)
    kw = dict(key="C17:2026-11-23:crm_task", owner_email="dana.ae@yourco.example", customer_id="17",
              subject="Call Globex about INV-1001", body="45 days past due.\nStrategic account.", due=AS_OF)
    first = crm().create_task(**kw)
    again = crm().create_task(**kw)          # the same escalation on the same day, a new run: found, not made
    assert first == again and len(hs.objects["tasks"]) == 1
    (task,) = hs.objects["tasks"]
    p = task["properties"]
    assert p["hubspot_owner_id"] == hs.owner_list[0]["id"] and p["hs_task_priority"] == "HIGH"
    assert p["hs_task_subject"].startswith("Call Globex about INV-1001 [arflow ")
    assert p["hs_task_status"] == "NOT_STARTED" and p["hs_timestamp"] == "2026-11-23T12:00:00Z"
    assert p["hs_task_body"] == "45 days past due.<br>Strategic account."
    assert hs.associated("tasks", task["id"], "companies") == [g["id"]]
    creates = hs.requests_to("/crm/v3/objects/tasks", "POST")
    assert len([r for r in creates if r["path"].endswith("/tasks")]) == 1
    searches = [json.loads(r["body"]) for r in hs.requests_to("/tasks/search")]
    assert len(searches) == 2 and searches[0]["filterGroups"][0]["filters"][0]["operator"] == "CONTAINS_TOKEN"
    # another key: a second task; an owner HubSpot does not know: unassigned and says for whom
    crm().create_task(key="C8:x", owner_email="nobody@yourco.example", customer_id="8", subject="Call Initech",
                      body="b", due=AS_OF)
    other = hs.objects["tasks"][1]["properties"]
    assert "hubspot_owner_id" not in other or other["hubspot_owner_id"] is None
    assert other["hs_task_body"].startswith("(for nobody@yourco.example: no HubSpot owner has this address)")


def test_a_create_retried_after_a_5xx_searches_again_and_never_doubles(hs):
    companies(hs)
    c = crm()
    c.company_id("17"), c.owners()
    original = hs._create

    def made_then_failed(object_type, data, limits):
        original(object_type, data, limits)      # HubSpot made it, but the answer is lost in a 502
        hs._create = original
        return 502, {"status": "error", "message": "Bad gateway", "correlationId": "c"}, {}

    hs._create = made_then_failed
    c.create_task(key="K", owner_email="dana.ae@yourco.example", customer_id="17", subject="S", body="b", due=AS_OF)
    assert len(hs.objects["tasks"]) == 1


def test_the_summary_is_a_note_only_where_the_map_names_a_company(hs):
    g, _ = companies(hs)
    assert crm().post_summary("today") is None and not hs.objects["notes"]
    fmap = load_field_map()
    fmap["summary"]["company_id"] = g["id"]
    note_id = crm(field_map=fmap).post_summary("Daily AR 2026-11-23\n12 reminders <sent>")
    (note,) = hs.objects["notes"]
    assert note_id == note["id"] and hs.associated("notes", note["id"], "companies") == [g["id"]]
    assert note["properties"]["hs_note_body"] == "Daily AR 2026-11-23<br>12 reminders &lt;sent&gt;"


def test_the_crm_lays_its_fields_over_the_billing_customers(hs, tmp_path):
    from tests.test_salesforce import _Billing

    companies(hs)
    combined = CombinedSource(_Billing(), crm())
    df = combined.customers().set_index("customer_id")
    assert df.loc["17", "segment"] == "strategic" and df.loc["17", "billing_contact_email"] == "billing@globex.example"
    assert df.loc["99", "name"] == "Unlinked Co" and df.loc["99", "segment"] == "standard"
    assert any(n.startswith("hubspot: 1 billing customer(s) with open invoices have no linked account (99)")
               for n in combined.notes())


def test_a_source_spec_names_hubspot_as_the_crm(hs, tmp_path):
    src = open_source("demo+hubspot", data_dir=tmp_path, as_of=AS_OF)
    assert src.name == "demo+hubspot" and isinstance(src.crm, HubSpotCrm)


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_hubspot_counts_and_writes_nothing(hs, tmp_path):
    companies(hs)
    env = {**hs.env(), "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_HUBSPOT_BLOCK": "no-such-block"}
    p = arflow(["check-connection", "hubspot", "--json"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert (out["linked_companies"], out["owners"], out["auth"]) == (2, 3, "private app token")
    assert out["rate_limit"]["X-HubSpot-RateLimit-Daily-Remaining"] == "249000"
    assert hs.token not in p.stdout + p.stderr
    assert all(r["method"] == "GET" or r["path"].endswith("/search") for r in hs.requests)   # reads only
