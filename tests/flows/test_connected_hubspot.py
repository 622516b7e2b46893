"""A send-mode day with QuickBooks for the books and HubSpot for the CRM, both at the wire: invoices
from the local QuickBooks, companies, owners and billing contacts from the local HubSpot, e-mail over
a local SMTP server. The reminder goes to HubSpot's billing contact, the strategic customer's
escalation becomes a HubSpot task for its owner on its company, the summary a note, and the same
day again sends nothing and creates no second task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from tests.cli import arflow, env_delta
from tests.fake_hubspot import FakeHubSpot
from tests.fake_qbo import FakeQuickBooks, sample
from tests.mail import MailSink, free_port

pytestmark = pytest.mark.flow


@pytest.fixture
def world(tmp_path):
    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeQuickBooks() as qbo, FakeHubSpot() as hs:
        for entity, name in (("Customer", "sandbox_customer_records"), ("Invoice", "sandbox_invoice_records")):
            for obj in sample(name):
                qbo.add(entity, obj)
        qbo.add("Invoice", {"Id": "200", "CustomerRef": {"value": "17"}, "DocNumber": "1100", "TxnDate": "2023-02-04",
                            "DueDate": "2023-03-06", "TotalAmt": 25000, "Balance": 25000,
                            "CurrencyRef": {"value": "USD"}, "SyncToken": "0"})
        dana = hs.owner("dana.ae@yourco.example", "Dana", "Ae")
        mark = hs.add("companies", name="Mark Cho Enterprises", billing_customer_id="17", arr="250000",
                      customer_segment="Enterprise", hs_lifecyclestage_customer_date="2019-01-01T00:00:00Z",
                      health_status="Green", hubspot_owner_id=dana, country="United States")
        ocean = hs.add("companies", name="Ocean View Road", billing_customer_id="8", arr="9000", customer_segment="SMB",
                       hs_lifecyclestage_customer_date="2024-05-01T00:00:00Z", country="US")
        olive = hs.add("contacts", firstname="Olive", lastname="Payables", email="billing@oceanview.example")
        hs.link("companies", ocean["id"], "contacts", olive["id"], label="Billing contact")
        fmap = tmp_path / "hubspot_fields.yaml"
        fmap.write_text(Path("hubspot_fields.yaml").read_text().replace('company_id: ""', f'company_id: "{mark["id"]}"'))
        env = {**os.environ, **qbo.env(), **hs.env(), "ARFLOW_DATA_DIR": str(tmp_path),
               "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
               "ARFLOW_QUICKBOOKS_BLOCK": "none", "ARFLOW_HUBSPOT_BLOCK": "none", "ARFLOW_HUBSPOT_FIELD_MAP": str(fmap),
               "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port), "ARFLOW_MAIL_FROM": "ar@yourco.example"}
        yield {"qbo": qbo, "hs": hs, "mail": sink, "env": env, "mark": mark, "dana": dana}
    smtp.stop()


def _run(world, *args):
    return arflow(args, env_delta(world["env"]))


def test_a_connected_send_day_on_quickbooks_and_hubspot(world):
    p = _run(world, "run", "--source", "quickbooks", "--crm", "hubspot", "--as-of", "2023-03-24", "--mode", "send",
             "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "quickbooks+hubspot" and out["open_invoices"] == 4
    assert out["reconciliation"]["status"] == "matched"
    assert any("hubspot: 1 billing customer(s) with open invoices have no linked account (24)" in n
               for n in out["notes"]), out["notes"]
    mail, hs = world["mail"], world["hs"]
    # Ocean View Road's reminder goes to HubSpot's billing contact, not the billing system's address
    ocean = mail.to("billing@oceanview.example")
    assert len(ocean) == 1 and "1036" in ocean[0]["Subject"] + ocean[0].get_body(("plain",)).get_content()
    # QuickBooks' PDF of the invoice goes with it (policy connectors.quickbooks.attach_invoice_pdf)
    assert [a.get_filename() for a in ocean[0].iter_attachments()] == ["Invoice 1036.pdf"]
    # the strategic customer's late invoice: a task on its company, for its owner
    tasks = hs.objects["tasks"]
    assert tasks and all(hs.associated("tasks", t["id"], "companies") == [world["mark"]["id"]] for t in tasks)
    assert {t["properties"].get("hubspot_owner_id") for t in tasks} == {world["dana"]}
    # the day's summary as a note on the configured company
    (note,) = hs.objects["notes"]
    assert hs.associated("notes", note["id"], "companies") == [world["mark"]["id"]]
    assert "2023-03-24" in note["properties"]["hs_note_body"] and out["crm_summary_post"] == note["id"]
    # the same day again sends nothing twice and creates no second task
    sent_before, tasks_before = len(mail.messages), len(tasks)
    p = _run(world, "run", "--source", "quickbooks", "--crm", "hubspot", "--as-of", "2023-03-24", "--mode", "send",
             "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(hs.objects["tasks"]) == tasks_before
    assert hs.token not in p.stdout + p.stderr


def test_checkpoint_and_backfill_take_hubspot_as_the_crm(world):
    hs = world["hs"]
    p = _run(world, "checkpoint", "--source", "quickbooks", "--crm", "hubspot", "--as-of", "2023-03-24", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "payments_read" in json.loads(p.stdout) and hs.requests_to("/companies/search")   # the CRM was read
    before = len(hs.requests_to("/companies/search"))
    p = _run(world, "backfill", "--from", "2023-03-23", "--to", "2023-03-24", "--source", "quickbooks", "--crm",
             "hubspot", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["ran"] and len(hs.requests_to("/companies/search")) > before
    assert not hs.objects["tasks"] and not hs.objects["notes"]   # a backfill is a dry run: nothing written


def test_a_saved_hubspot_block_wins_over_the_environment(tmp_path, monkeypatch):
    import datetime as dt

    from arflow.blocks import HubSpotConnection
    from connectors.registry import open_source

    with FakeHubSpot() as hs:
        hs.add("companies", name="Globex", billing_customer_id="17")
        HubSpotConnection(access_token=hs.token, base_url=hs.url).save("arflow-hubspot-test", overwrite=True)
        monkeypatch.setenv("ARFLOW_HUBSPOT_BLOCK", "arflow-hubspot-test")
        monkeypatch.setenv("ARFLOW_HUBSPOT_TOKEN", "pat-na1-not-this-one")   # the block wins
        monkeypatch.setenv("ARFLOW_HUBSPOT_SEARCH_INTERVAL", "0")
        src = open_source("demo+hubspot", data_dir=tmp_path, as_of=dt.date(2026, 11, 23))
        assert list(src.crm.customers()["customer_id"]) == ["17"]
        assert {r["headers"]["Authorization"] for r in hs.requests} == {f"Bearer {hs.token}"}
