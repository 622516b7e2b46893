"""A send-mode day on Xero at the wire: invoices and contacts from the local Xero of
tests/fake_xero.py, e-mail over a local SMTP server. The reminders go to the contacts' addresses,
Xero gets its one allowed write (a history note per invoice e-mailed) because the policy turns it
on, and the same day again sends nothing and writes no second note."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from tests.cli import arflow, env_delta
from tests.fake_xero import FakeXero, contact, sample
from tests.mail import MailSink, free_port

pytestmark = pytest.mark.flow
DIISR, BAYSIDE = "342a5560-dbb7-408f-835b-d93d49511d6d", "16c56769-c3c8-4dad-bd40-523f83bfe017"


@pytest.fixture
def world(tmp_path):
    sink = MailSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    with FakeXero() as xero:
        for inv in sample("invoices_get_page1_recorded_2020")["Invoices"]:
            xero.add("Invoices", inv)
        xero.add("Contacts", contact(DIISR, "DIISR - Small Business Services", "accounts@diisr.example", country="AU"))
        xero.add("Contacts", contact(BAYSIDE, "Bayside Club", "", country="NZ", persons=[
            {"FirstName": "Sam", "LastName": "Treasurer", "EmailAddress": "treasurer@bayside.example",
             "IncludeInEmails": True}]))
        env = {**os.environ, **xero.env(), "ARFLOW_DATA_DIR": str(tmp_path),
               "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}", "PREFECT_API_URL": PREFECT_API_URL.value() or "",
               "ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": str(port), "ARFLOW_MAIL_FROM": "ar@yourco.example"}
        pol = tmp_path / "policy.yaml"
        pol.write_text(Path("policy.yaml").read_text().replace("write_history: false", "write_history: true"))
        env["ARFLOW_POLICY"] = str(pol)
        yield {"xero": xero, "mail": sink, "env": env}
    smtp.stop()


def _run(world, *args):
    return arflow(args, env_delta(world["env"]))


def test_a_send_day_on_xero(world):
    p = _run(world, "run", "--source", "xero", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "xero" and out["open_invoices"] == 2
    assert out["reconciliation"]["status"] == "matched"
    mail, xero = world["mail"], world["xero"]
    # INV-0038 (due Friday 24 April) is 6 days late: past the grace, which skips Anzac Day (Monday
    # 27 April in NZ). Bayside Club has no address of its own: its contact person included in e-mails hears
    bayside = mail.to("treasurer@bayside.example")
    assert len(bayside) == 1 and "INV-0038" in bayside[0]["Subject"] + bayside[0].get_content()
    assert "https://in.xero.com/" in bayside[0].get_content()   # the online invoice as the payment link
    # Xero's one write: a history note on each invoice e-mailed today
    noted = {h["InvoiceID"]: h["Details"] for h in xero.history}
    assert "77c3ec20-35e2-499c-8253-88fc7f8dd5a2" in noted
    assert noted["77c3ec20-35e2-499c-8253-88fc7f8dd5a2"].startswith("arflow 2020-04-30: ")
    assert "treasurer@bayside.example" in noted["77c3ec20-35e2-499c-8253-88fc7f8dd5a2"]
    recipients = {a for rcpt, _ in mail.messages for a in rcpt}
    assert all(any(r in h["Details"] for r in recipients) for h in xero.history)   # a note only for an e-mail sent
    assert any(n.startswith("Xero history notes: ") and "written" in n for n in out["notes"])
    # the same day again sends nothing twice and writes no second note
    sent_before, notes_before = len(mail.messages), len(xero.history)
    p = _run(world, "run", "--source", "xero", "--as-of", "2020-04-30", "--mode", "send", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(mail.messages) == sent_before and len(xero.history) == notes_before
    assert any("Xero sync: if-modified-since" in n for n in json.loads(p.stdout)["notes"])
