"""Issue 21, hardening: each class of defect an attacker or a careless export found, one test each
(items 1, 2, 3, 6, 7, 8, 9, 12, 13), and a property test of hostile rows through the pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import pandas as pd
import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger, LedgerError
from tests.conftest import customer, invoice, make_source, write_csv

ARFLOW = str(Path(sys.executable).parent / "arflow")
AS_OF = dt.date(2026, 11, 23)  # a Monday
SECRET = "Sup3r-s3cret-pw"
# The two places a password sits in a database URL: the query string, and the libpq form's host-less URL.
SECRET_URLS = [f"postgresql+psycopg://u@127.0.0.1:1/test?password={SECRET}",
               f"postgresql+psycopg:///test?host=127.0.0.1&port=1&password={SECRET}&sslpassword={SECRET}x"]


@pytest.fixture(scope="module")
def prefect_server():
    """One temporary Prefect server for the flow tests of this file (and the CLI's subprocesses)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _MailSink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy.default))
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    from aiosmtpd.controller import Controller

    sink, port = _MailSink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ARFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("ARFLOW_MAIL_FROM", "ar@yourco.example")
    monkeypatch.delenv("ARFLOW_SLACK_WEBHOOK_URL", raising=False)
    yield sink
    controller.stop()


def _cli(args, tmp_path, **env):
    from prefect.settings import PREFECT_API_URL

    full = {**os.environ, "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
            "PREFECT_API_URL": PREFECT_API_URL.value() or "",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
            **env}
    return subprocess.run([ARFLOW, *args], capture_output=True, text=True, env=full, timeout=300)


# ---- 1. a secret in clear ---------------------------------------------------------------------

@pytest.mark.parametrize("url", SECRET_URLS, ids=["query", "libpq"])
def test_a_database_password_never_leaves_the_process(url, tmp_path, prefect_server, smtp, monkeypatch):
    """The password of ARFLOW_DB_URL is in none of: the CLI's error line, the ledger's error, the
    flow run's state message and logs, the failure alert e-mail."""
    from prefect import get_client

    from flows.daily_ar import daily_ar

    with pytest.raises(LedgerError) as err:
        Ledger(url)
    assert SECRET not in str(err.value) and "127.0.0.1" in str(err.value) and "\n" not in str(err.value)

    monkeypatch.setenv("ARFLOW_DB_URL", url)
    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    with pytest.raises(Exception) as err:
        daily_ar(as_of=AS_OF, source="demo")
    assert SECRET not in str(err.value)
    (alert,) = smtp.messages  # the failure hook's e-mail to finance
    assert "daily_ar" in alert["Subject"] and SECRET not in alert.as_string()

    async def run_record():
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=5, sort="START_TIME_DESC")
            run = next(r for r in runs if r.state.is_failed())
            for _ in range(60):  # the API log handler sends in the background
                logs = [log.message for log in await client.read_logs(limit=200) if log.flow_run_id == run.id]
                if any("Finished in state" in line for line in logs):
                    break
                await asyncio.sleep(0.5)
            return run.state.message, logs
    state_message, logs = asyncio.run(run_record())
    assert "cannot migrate the ledger" in state_message and SECRET not in state_message
    assert logs and not [line for line in logs if SECRET in line]

    p = _cli(["run", "--as-of", "2026-11-23"], tmp_path, ARFLOW_DB_URL=url, ARFLOW_SMTP_HOST="")
    assert p.returncode == 1 and SECRET not in p.stderr + p.stdout
    (line,) = [x for x in p.stderr.splitlines() if x.startswith("arflow: error:")]
    assert "password=***" in line and "[SQL" not in p.stderr and "Background on this error" not in p.stderr


def test_redact_covers_every_place_a_url_carries_a_credential():
    from arflow.safety import redact

    text = ("postgresql://arflow:pw1@db/x?sslpassword=pw2&sslmode=require "
            "https://api.example.com/v1?api_key=pw3&token=pw4&access_token=pw5&key=pw6&page=2 "
            "host=db password=pw7 dbname=x")
    out = redact(text)
    assert not [s for s in ("pw1", "pw2", "pw3", "pw4", "pw5", "pw6", "pw7") if s in out]
    assert "sslmode=require" in out and "page=2" in out and "dbname=x" in out and "arflow:***@db" in out


# ---- 2 and 3. bank files with no usable credit line; debits -----------------------------------

def _checkpoint_source(tmp_path, payments):
    return make_source(tmp_path / "src", [invoice("I1", invoice_number="1001", due_date="2026-11-30")],
                       [customer("C1", name="Acme Corp")], payments=payments)


@pytest.mark.parametrize("lines,reasons", [
    (["2026-11-22,-25.00,USD,BANK FEE,"], ["bank_debit"]),
    ([], []),
    (["2026-11-22,twelve,USD,X,Y"], ["bad_amount"]),
], ids=["fee-only", "header-only", "malformed-only"])
def test_a_bank_file_without_a_credit_line_is_an_empty_day(lines, reasons, tmp_path, prefect_server, monkeypatch):
    """The day's payments.csv is still applied and the bank file's bad lines are kept with reasons."""
    from flows.payment_checkpoint import payment_checkpoint

    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    src = _checkpoint_source(tmp_path, [{"payment_id": "P1", "customer_id": "C1", "amount": "1000.00",
                                         "currency": "USD", "received_date": "2026-11-22", "reference": "INV 1001"}])
    bank = tmp_path / "bank.csv"
    bank.write_text("\n".join(["date,amount,currency,reference,payer_name", *lines]) + "\n")
    s = payment_checkpoint(as_of=AS_OF, source=f"csv:{src}", bank_file=str(bank))
    assert s["invoices_closed"] == 1 and s["applied"] == {"exact": 1} and s["quarantined"] == len(reasons)
    q = Ledger(f"sqlite:///{tmp_path / 'l.db'}").frame(m.Quarantine, m.Quarantine.run_id == s["run_id"])
    assert sorted(q["reason"]) == reasons and (q["entity"] == "bank_line").all()


def test_a_returned_item_reopens_the_invoice_and_other_debits_are_reported(tmp_path, prefect_server, monkeypatch,
                                                                         httpserver):
    from flows.daily_ar import daily_ar
    from flows.payment_checkpoint import payment_checkpoint

    httpserver.expect_request("/alert", method="POST").respond_with_data("ok")
    monkeypatch.setenv("ARFLOW_SLACK_WEBHOOK_URL", httpserver.url_for("/alert"))
    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    monkeypatch.setenv("ARFLOW_DB_URL", url)
    src = _checkpoint_source(tmp_path, [{"payment_id": "P1", "customer_id": "C1", "amount": "1000.00",
                                         "currency": "USD", "received_date": "2026-11-22", "reference": "INV 1001"}])
    first = payment_checkpoint(as_of=AS_OF, source=f"csv:{src}")
    assert first["invoices_closed"] == 1
    bank = tmp_path / "bank.csv"
    bank.write_text("date,amount,currency,reference,payer_name\n"
                    "2026-11-24,-1000.00,USD,RETURNED ITEM INV 1001 NSF,ACME CORP\n"
                    "2026-11-24,-25.00,USD,BANK FEE,\n")
    day2 = AS_OF + dt.timedelta(days=1)
    s = payment_checkpoint(as_of=day2, source=f"csv:{src}", bank_file=str(bank))
    assert s["reversed"] == 1 and s["quarantined"] == 1
    ledger = Ledger(url)
    assert ledger.frame(m.PaymentApplication, m.PaymentApplication.payment_id == "P1")["reversed_on"].notna().all()
    assert ledger.frame(m.PaymentHistory, m.PaymentHistory.invoice_id == "I1").empty
    rec = ledger.frame(m.PaymentReceived)
    assert rec.loc[rec["payment_id"] == "P1", "status"].item() == "reversed"
    q = ledger.frame(m.Quarantine, m.Quarantine.run_id == s["run_id"])
    assert q["reason"].tolist() == ["bank_debit"] and "BANK FEE" in q["raw"].item()
    (req, _), = [x for x in httpserver.log if x[0].path == "/alert"]
    assert "P1" in req.get_json()["text"] and "RETURNED ITEM" in req.get_json()["text"]
    after = daily_ar(as_of=day2, source=f"csv:{src}")
    o = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == after["run_id"])
    assert o.loc[o["invoice_id"] == "I1", "reason"].item() != "nothing_owed"
    assert o.loc[o["invoice_id"] == "I1", "balance_minor"].item() == 100000
