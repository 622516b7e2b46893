"""A send-mode day with every system connected at the wire: invoices from QuickBooks, accounts and
contacts from Salesforce, e-mail over SMTP. The reminders go to the CRM's billing contacts, an
owner escalation becomes a Salesforce Task for the owner, and QuickBooks gets its one allowed write
(a memo line per reminder) because the policy turns it on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from tests.cli import arflow, env_delta
from tests.fake_qbo import FakeQuickBooks, sample
from tests.fake_salesforce import FakeSalesforce
from tests.mail import MailSink, free_port

pytestmark = pytest.mark.flow


@pytest.fixture
def world(tmp_path):
    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeQuickBooks() as qbo, FakeSalesforce(tmp_path / "tls") as sfdc:
        for entity, name in (("Customer", "sandbox_customer_records"), ("Invoice", "sandbox_invoice_records")):
            for obj in sample(name):
                qbo.add(entity, obj)
        qbo.add("Invoice", {"Id": "200", "CustomerRef": {"value": "17"}, "DocNumber": "1100", "TxnDate": "2023-02-04",
                            "DueDate": "2023-03-06", "TotalAmt": 25000, "Balance": 25000,
                            "CurrencyRef": {"value": "USD"}, "SyncToken": "0"})
        sfdc.add("Account", Name="Mark Cho Enterprises", Billing_Customer_Id__c="17", ARR__c=250000,
                 Customer_Segment__c="Enterprise", Customer_Since__c="2019-01-01", Health__c="Green",
                 **{"Owner.Email": "dana.ae@yourco.example"})
        ocean = sfdc.add("Account", Name="Ocean View Road", Billing_Customer_Id__c="8", ARR__c=9000,
                         Customer_Segment__c="SMB", Customer_Since__c="2024-05-01")
        sfdc.add("Contact", AccountId=ocean["Id"], Name="Olive Payables", Email="billing@oceanview.example",
                 AR_Role__c="Billing Contact")
        sfdc.add("User", Email="dana.ae@yourco.example", IsActive=True)
        fmap = tmp_path / "fields.yaml"
        fmap.write_text(Path("salesforce_fields.yaml").read_text().replace('parent_id: ""', 'parent_id: "0F9WV0000000042"'))
        env = {**os.environ, **qbo.env(), **sfdc.env(), "ARFLOW_DATA_DIR": str(tmp_path),
               "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
               "ARFLOW_QUICKBOOKS_BLOCK": "none", "ARFLOW_SALESFORCE_BLOCK": "none", "ARFLOW_SFDC_FIELD_MAP": str(fmap),
               "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port), "ARFLOW_MAIL_FROM": "ar@yourco.example"}
        pol = tmp_path / "policy.yaml"
        pol.write_text(Path("policy.yaml").read_text().replace("write_notes: false", "write_notes: true"))
        env["ARFLOW_POLICY"] = str(pol)
        yield {"qbo": qbo, "sfdc": sfdc, "mail": sink, "env": env}
    smtp.stop()


def _run(world, *args):
    return arflow(args, env_delta(world["env"]))


def test_a_connected_send_day(world):
    p = _run(world, "run", "--source", "quickbooks", "--crm", "salesforce", "--as-of", "2023-03-24", "--mode", "send",
             "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "quickbooks+salesforce" and out["open_invoices"] == 4
    assert out["reconciliation"]["status"] == "matched"
    assert any("1 billing customer(s) with open invoices have no linked account (24)" in n for n in out["notes"]), out["notes"]
    mail, sfdc, qbo = world["mail"], world["sfdc"], world["qbo"]
    # Ocean View Road's reminder goes to the CRM's billing contact, not the billing system's address
    ocean = mail.to("billing@oceanview.example")
    assert len(ocean) == 1 and "1036" in ocean[0]["Subject"] + ocean[0].get_body(("plain",)).get_content()
    # with QuickBooks' own PDF of the invoice (policy connectors.quickbooks.attach_invoice_pdf), byte for byte
    from tests.fake_qbo import invoice_pdf_bytes

    (pdf,) = list(ocean[0].iter_attachments())
    invoice = next(o for o in qbo.data["Invoice"] if o.get("DocNumber") == "1036")
    assert pdf.get_filename() == "Invoice 1036.pdf" and pdf.get_content_type() == "application/pdf"
    assert pdf.get_content() == invoice_pdf_bytes(invoice)
    assert any(" invoice PDF(s) read from quickbooks" in n for n in out["notes"]), out["notes"]
    # the strategic customer's late invoice: a Task on its account, for its owner
    tasks = sfdc.records["Task"]
    assert tasks and all(t["WhatId"] == sfdc.records["Account"][0]["Id"] for t in tasks)
    assert {t.get("OwnerId") for t in tasks} == {sfdc.records["User"][0]["Id"]}
    # QuickBooks' one write: a memo line on each invoice e-mailed today, nothing else
    notes = {w["Id"]: w["PrivateNote"] for w in qbo.writes}
    assert "129" in notes and notes["129"].startswith("arflow 2023-03-24: nudge e-mailed to billing@oceanview.example")
    assert {w["entity"] for w in qbo.writes} == {"Invoice"}
    assert all(set(w) <= {"entity", "Id", "SyncToken", "sparse", "PrivateNote"} for w in qbo.writes)
    assert any(n.startswith("QuickBooks notes: ") and "written" in n for n in out["notes"])
    # the day's summary as a Chatter post on the configured record
    (post,) = sfdc.records["FeedItem"]
    assert post["ParentId"] == "0F9WV0000000042" and "2023-03-24" in post["Body"]
    assert out["crm_summary_post"] == post["Id"]
    # the same day again sends nothing twice and makes no second Task
    sent_before, tasks_before = len(mail.messages), len(tasks)
    p = _run(world, "run", "--source", "quickbooks", "--crm", "salesforce", "--as-of", "2023-03-24", "--mode", "send",
             "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(sfdc.records["Task"]) == tasks_before
    assert json.loads(p.stdout)["notes"] and qbo.api_requests("/cdc")   # the second run synced by CDC


def test_a_saved_quickbooks_block_wins_and_keeps_the_rotated_token(tmp_path, monkeypatch):
    from arflow.blocks import QuickBooksConnection
    from connectors.registry import open_source

    with FakeQuickBooks() as qbo:
        for entity, name in (("Customer", "sandbox_customer_records"), ("Invoice", "sandbox_invoice_records")):
            for obj in sample(name):
                qbo.add(entity, obj)
        env = qbo.env()
        QuickBooksConnection(client_id=qbo.client_id, client_secret=qbo.client_secret, refresh_token="rt-0",
                             realm_id=qbo.realm, environment=env["ARFLOW_QBO_ENVIRONMENT"],
                             base_url=env["ARFLOW_QBO_BASE_URL"]).save("arflow-qbo-test", overwrite=True)
        monkeypatch.setenv("ARFLOW_QUICKBOOKS_BLOCK", "arflow-qbo-test")
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        monkeypatch.setenv("ARFLOW_QBO_CLIENT_ID", "not-this-one")   # the block wins over the environment
        src = open_source("quickbooks", data_dir=tmp_path, as_of=__import__("datetime").date(2023, 3, 1))
        assert sorted(src.invoices()["invoice_id"]) == ["119", "129", "130"]
        saved = QuickBooksConnection.load("arflow-qbo-test")
        assert saved.refresh_token.get_secret_value() == "rt-1"          # Intuit's rotation, saved back
        assert not (tmp_path / "credentials").exists()                    # not to a file when a block holds it
