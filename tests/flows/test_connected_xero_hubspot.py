"""A send-mode day with Xero for the books and HubSpot for the CRM, both at the wire (the local Xero
of tests/fake_xero.py, the local HubSpot of tests/fake_hubspot.py, a local SMTP server): the reminder
goes to HubSpot's billing contact, the owner escalation becomes a HubSpot task for the owner on the
company, and the same day again sends nothing and creates no second task. The same day once more
with the mail going out through Microsoft 365's way, SMTP AUTH XOAUTH2 with an app's token
(tests/fake_mail_oauth.py: a local token endpoint and an SMTP server that checks the token)."""

from __future__ import annotations

import json
import os

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from tests.cli import arflow, env_delta
from tests.fake_hubspot import FakeHubSpot
from tests.fake_mail_oauth import OAuthMail
from tests.fake_xero import FakeXero, contact, invoice, sample
from tests.mail import MailSink, free_port

pytestmark = pytest.mark.flow
DIISR, BAYSIDE = "342a5560-dbb7-408f-835b-d93d49511d6d", "16c56769-c3c8-4dad-bd40-523f83bfe017"


def _books(xero, hs) -> dict:
    for inv in sample("invoices_get_page1_recorded_2020")["Invoices"]:
        xero.add("Invoices", inv)
    # a strategic customer's invoice 20 days late on the day: its owner hears through a HubSpot task
    xero.add("Invoices", invoice("5b6c7d8e-0000-4000-8000-000000000042", DIISR, "INV-0042", "2020-03-11",
                                 "2020-04-10", "5400.00"))
    xero.add("Contacts", contact(DIISR, "DIISR - Small Business Services", "accounts@diisr.example", country="AU"))
    xero.add("Contacts", contact(BAYSIDE, "Bayside Club", "club@bayside.example", country="NZ"))
    dana = hs.owner("dana.ae@yourco.example", "Dana", "Ae")
    diisr = hs.add("companies", name="DIISR", billing_customer_id=DIISR, arr="120000", customer_segment="Enterprise",
                   hs_lifecyclestage_customer_date="2018-01-01T00:00:00Z", health_status="Green",
                   hubspot_owner_id=dana, country="Australia")
    bayside = hs.add("companies", name="Bayside Club", billing_customer_id=BAYSIDE, customer_segment="SMB",
                     hubspot_owner_id=dana, country="New Zealand")
    sam = hs.add("contacts", firstname="Sam", lastname="Treasurer", email="treasurer@bayside.example")
    hs.link("companies", bayside["id"], "contacts", sam["id"], label="Billing contact")
    return {"diisr": diisr, "dana": dana}


def _env(xero, hs, tmp_path) -> dict:
    return {**os.environ, **xero.env(), **hs.env(), "ARFLOW_DATA_DIR": str(tmp_path),
            "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
            "ARFLOW_HUBSPOT_BLOCK": "none", "ARFLOW_MAIL_FROM": "ar@yourco.example"}


@pytest.fixture
def world(tmp_path):
    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeXero() as xero, FakeHubSpot() as hs:
        found = _books(xero, hs)
        env = {**_env(xero, hs, tmp_path), "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port)}
        yield {"xero": xero, "hs": hs, "mail": sink, "env": env, **found}
    smtp.stop()


@pytest.fixture
def oauth_world(tmp_path):
    with FakeXero() as xero, FakeHubSpot() as hs, OAuthMail(tmp_path / "mail") as mail:
        found = _books(xero, hs)
        env = {k: v for k, v in _env(xero, hs, tmp_path).items() if not k.startswith("ARFLOW_SMTP")}
        yield {"xero": xero, "hs": hs, "mail": mail.mailbox, "oauth": mail, "env": {**env, **mail.env("microsoft")},
               **found}


def _run(world, *args):
    return arflow(args, env_delta(world["env"]))


def test_a_send_day_on_xero_and_hubspot(world):
    p = _run(world, "run", "--source", "xero", "--crm", "hubspot", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "xero+hubspot" and out["open_invoices"] == 3
    assert out["reconciliation"]["status"] == "matched"
    mail, hs = world["mail"], world["hs"]
    # Bayside Club's reminder goes to HubSpot's billing contact, not the address Xero holds
    bayside = mail.to("treasurer@bayside.example")
    assert len(bayside) == 1 and "INV-0038" in bayside[0]["Subject"] + bayside[0].get_content()
    assert not mail.to("club@bayside.example")
    # the strategic customer's late invoice: a task on its company, assigned to its owner
    tasks = hs.objects["tasks"]
    assert any("INV-0042" in t["properties"]["hs_task_subject"] for t in tasks)
    assert all(hs.associated("tasks", t["id"], "companies") == [world["diisr"]["id"]] for t in tasks)
    assert {t["properties"].get("hubspot_owner_id") for t in tasks} == {world["dana"]}
    # the same day again sends nothing twice and creates no second task
    sent_before, tasks_before = len(mail.messages), len(tasks)
    p = _run(world, "run", "--source", "xero", "--crm", "hubspot", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(hs.objects["tasks"]) == tasks_before


def test_a_send_day_on_xero_and_hubspot_with_xoauth2_mail(oauth_world):
    world = oauth_world
    p = _run(world, "run", "--source", "xero", "--crm", "hubspot", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    mail, oauth = world["mail"], world["oauth"]
    bayside = mail.to("treasurer@bayside.example")
    assert len(bayside) == 1 and "INV-0038" in bayside[0]["Subject"] + bayside[0].get_content()
    assert not mail.to("club@bayside.example")
    # every connection signed in as the mailbox with the app's token; one token served the whole run
    assert mail.auths and all(a["ok"] and a["user"] == "ar@yourco.example" for a in mail.auths)
    assert oauth.tokens.hits == 1 and {a["token"] for a in mail.auths} == {oauth.tokens.issued[0][0]}
    assert {auth for _, _, auth in mail.messages} == {"ar@yourco.example"}
    assert not [s for s in oauth.secrets() if s in p.stdout + p.stderr]
    assert any("INV-0042" in t["properties"]["hs_task_subject"] for t in world["hs"].objects["tasks"])
    # the same day again sends nothing
    sent_before, tasks_before = len(mail.messages), len(world["hs"].objects["tasks"])
    p = _run(world, "run", "--source", "xero", "--crm", "hubspot", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(world["hs"].objects["tasks"]) == tasks_before
