"""Send-mode days on Chargebee at the wire: invoices, customers and transactions from the local
Chargebee of tests/fake_chargebee.py, accounts and contacts from the local Salesforce or HubSpot, e-mail over a
local SMTP server. The reminder goes to the CRM's billing contact, the customer with Chargebee's
auto_collection on is charged through collect_payment instead of chased, the invoice Chargebee is
dunning is held and e-mailed by nobody, the payment checkpoint reads the charge back as settled at
the source, and the same day again sends nothing and charges nothing."""

from __future__ import annotations

import json
import os

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from tests.cli import arflow, env_delta
from tests.fake_chargebee import FakeChargebee, ts
from tests.fake_salesforce import FakeSalesforce
from tests.mail import MailSink, free_port

pytestmark = pytest.mark.flow
AS_OF = "2026-11-23"   # a Monday, no holiday in the US


@pytest.fixture
def world(tmp_path):
    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeChargebee() as cb, FakeSalesforce(tmp_path / "tls") as sfdc:
        cb.customer("cust_globex", email="ap@globex.example", company="Globex")
        cb.customer("cust_initech", email="billing@initech.example", company="Initech", auto_collection="on")
        cb.customer("cust_hooli", email="ap@hooli.example", company="Hooli", auto_collection="on")
        cb.invoice("101", "cust_globex", 123450, date="2026-10-01", due="2026-10-31")         # 23 days late
        cb.invoice("102", "cust_initech", 49000, date="2026-10-24", due="2026-11-23")          # due today, autopay
        cb.invoice("103", "cust_hooli", 20000, date="2026-10-03", due="2026-11-02", status="not_paid",
                   dunning_status="in_progress", next_retry_at=ts("2026-11-25"))              # Chargebee retrying
        cb.cards["cust_initech"] = "ok"
        globex = sfdc.add("Account", Name="Globex", Billing_Customer_Id__c="cust_globex", ARR__c=48000,
                          Customer_Segment__c="SMB", Customer_Since__c="2023-02-01")
        sfdc.add("Contact", AccountId=globex["Id"], Name="Gina Payables", Email="gina.payables@globex.example",
                 AR_Role__c="Billing Contact")
        env = {**os.environ, **cb.env(), **sfdc.env(), "ARFLOW_DATA_DIR": str(tmp_path),
               "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
               "ARFLOW_SALESFORCE_BLOCK": "none", "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port),
               "ARFLOW_MAIL_FROM": "ar@yourco.example"}
        yield {"cb": cb, "mail": sink, "env": env}
    smtp.stop()


def _run(world, *args):
    return arflow(args, env_delta(world["env"]))


def test_a_send_day_on_chargebee_and_salesforce(world):
    cb, mail = world["cb"], world["mail"]
    p = _run(world, "run", "--source", "chargebee", "--crm", "salesforce", "--as-of", AS_OF, "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "chargebee+salesforce" and out["open_invoices"] == 3
    assert sum(out["outcomes"].values()) == 3                       # each invoice ends the run in one place
    assert out["held"] == {"billing_dunning": 1}                     # 103: held with its reason, not dropped
    assert out["reconciliation"]["status"] == "skipped"
    # the reminder goes to the CRM's billing contact
    globex = mail.to("gina.payables@globex.example")
    assert len(globex) == 1 and "101" in globex[0]["Subject"] + globex[0].get_content()
    # the auto-collection customer is charged, once, with arflow's key, and not chased
    posts = [r for r in cb.requests if r["path"].endswith("/collect_payment")]
    assert [r["path"] for r in posts] == ["/api/v2/invoices/102/collect_payment"]
    assert posts[0]["headers"]["chargebee-idempotency-key"].startswith("arflow:")
    assert cb.invoices["102"]["status"] == "paid" and not mail.to("billing@initech.example")
    # the invoice Chargebee is dunning: no e-mail, no charge from arflow
    assert not mail.to("ap@hooli.example")
    assert all("103" not in r["path"] for r in posts)
    # the checkpoint reads the charge back: the invoice Chargebee settled goes into the payment history
    p = _run(world, "checkpoint", "--source", "chargebee", "--as-of", AS_OF, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["settled_at_source"] == 1
    # the same day again sends nothing and charges nothing
    sent_before, posts_before = len(mail.messages), len(posts)
    p = _run(world, "run", "--source", "chargebee", "--crm", "salesforce", "--as-of", AS_OF, "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before
    assert len([r for r in cb.requests if r["path"].endswith("/collect_payment")]) == posts_before
    # check-connection signs in, counts, and writes nothing
    before = len(cb.requests)
    p = _run(world, "check-connection", "chargebee", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    found = json.loads(p.stdout)
    assert found["open_invoices_first_page"] == 2 and found["in_chargebee_dunning_first_page"] == 1
    assert {r["method"] for r in cb.requests[before:]} == {"GET"}


@pytest.fixture
def hubspot_world(tmp_path):
    """Chargebee for the billing, HubSpot for the CRM (the cheap stack of issue 25): both local, at the wire."""
    from tests.fake_hubspot import FakeHubSpot

    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeChargebee() as cb, FakeHubSpot() as hs:
        cb.customer("cust_globex", email="ap@globex.example", company="Globex")
        cb.customer("cust_umbrella", email="ap@umbrella.example", company="Umbrella")
        cb.invoice("201", "cust_globex", 123450, date="2026-10-01", due="2026-10-31")        # 23 days late
        cb.invoice("202", "cust_umbrella", 540000, date="2026-10-04", due="2026-11-03")      # 20 days late, strategic
        dana = hs.owner("dana.ae@yourco.example", "Dana", "Ae")
        globex = hs.add("companies", name="Globex", billing_customer_id="cust_globex", customer_segment="SMB",
                        hubspot_owner_id=dana, country="United States")
        umbrella = hs.add("companies", name="Umbrella", billing_customer_id="cust_umbrella", arr="120000",
                          customer_segment="Enterprise", hs_lifecyclestage_customer_date="2019-01-01T00:00:00Z",
                          health_status="Green", hubspot_owner_id=dana, country="United States")
        gina = hs.add("contacts", firstname="Gina", lastname="Payables", email="gina.payables@globex.example")
        hs.link("companies", globex["id"], "contacts", gina["id"], label="Billing contact")
        env = {**os.environ, **cb.env(), **hs.env(), "ARFLOW_DATA_DIR": str(tmp_path),
               "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
               "ARFLOW_HUBSPOT_BLOCK": "none", "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port),
               "ARFLOW_MAIL_FROM": "ar@yourco.example"}
        yield {"cb": cb, "hs": hs, "mail": sink, "env": env, "umbrella": umbrella, "globex": globex, "dana": dana}
    smtp.stop()


def test_a_send_day_on_chargebee_and_hubspot(hubspot_world):
    world = hubspot_world
    mail, hs = world["mail"], world["hs"]
    p = _run(world, "run", "--source", "chargebee", "--crm", "hubspot", "--as-of", AS_OF, "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "chargebee+hubspot" and out["open_invoices"] == 2
    assert sum(out["outcomes"].values()) == 2
    # Globex's reminder goes to HubSpot's billing contact, not the address Chargebee holds
    globex = mail.to("gina.payables@globex.example")
    assert len(globex) == 1 and "201" in globex[0]["Subject"] + globex[0].get_content()
    assert not mail.to("ap@globex.example")
    # the strategic customer's late invoice: a HubSpot task on its company, for its owner
    tasks = hs.objects["tasks"]
    assert any("202" in t["properties"]["hs_task_subject"] for t in tasks), [t["properties"] for t in tasks]
    # every task is on the company of the invoice it is about (and only there), for the company's owner
    for task in tasks:
        subject = task["properties"]["hs_task_subject"]
        company = world["umbrella"] if "202" in subject else world["globex"]
        assert ("201" in subject or "Globex" in subject) or company is world["umbrella"], subject
        assert hs.associated("tasks", task["id"], "companies") == [company["id"]], subject
    assert {t["properties"].get("hubspot_owner_id") for t in tasks} == {world["dana"]}
    # the same day again: nothing sent twice, no second task
    sent_before, tasks_before = len(mail.messages), len(tasks)
    p = _run(world, "run", "--source", "chargebee", "--crm", "hubspot", "--as-of", AS_OF, "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(hs.objects["tasks"]) == tasks_before
