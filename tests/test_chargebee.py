"""Chargebee at the wire: the chargebee library against tests/fake_chargebee.py, a local server answering
in the documented and recorded wire format of tests/data/chargebee_samples; webhooks with HTTP basic
auth, as Chargebee sends them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.error
import urllib.request

import pytest

from arflow.blocks import connection
from arflow.policy import ChargebeeSettings
from connectors.registry import billing_for
from connectors.chargebee import ChargebeeSource, NotConfigured, apply_event, check_basic_auth, parse_event, \
    webhook_server
from connectors.http import ConnectorError
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tasks import extract
from tests import pipeline
from tests.fake_chargebee import FakeChargebee, sample, ts

AS_OF = dt.date(2026, 11, 23)   # a Monday
USER, PASSWORD = "chargebee-hooks", "s3cret-webhook-pw"


@pytest.fixture
def cb(monkeypatch):
    with FakeChargebee() as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")   # no block server: the environment
        fake.customer("cust_globex", email="ap@globex.example", company="Globex", auto_collection="off")
        fake.customer("cust_initech", email="billing@initech.example", company="Initech", auto_collection="on")
        fake.customer("cust_yamada", email="keiri@yamada.example", company="Yamada KK", country="JP")
        fake.customer("cust_muller", email="buchhaltung@mueller.example", company="Müller GmbH", country="DE")
        fake.invoice("101", "cust_globex", 123450, date="2026-10-01", due="2026-10-31", po_number="PO-77")
        fake.invoice("102", "cust_initech", 49000, date="2026-10-24", due="2026-11-23")
        fake.invoice("103", "cust_yamada", 1200, date="2026-10-02", due="2026-11-01", currency="JPY")
        fake.invoice("104", "cust_muller", 949088, date="2026-10-05", due="2026-11-04", currency="EUR",
                     due_amount=849088, credits_applied=100000,
                     applied_credits=[{"cn_id": "CN-9", "applied_amount": 100000, "applied_at": ts("2026-11-10"),
                                       "cn_date": ts("2026-11-10"), "cn_status": "refunded"}])
        fake.invoice("105", "cust_globex", 20000, date="2026-10-03", due="2026-11-02", status="not_paid",
                     dunning_status="in_progress", next_retry_at=ts("2026-11-25"))
        fake.invoice("100", "cust_globex", 5000, date="2026-09-01", due="2026-10-01", status="paid", amount_due=0)
        yield fake


def src() -> ChargebeeSource:
    return ChargebeeSource(connection("chargebee")[0], as_of=AS_OF)


# ---- mapping -----------------------------------------------------------------------------------------

def test_open_invoices_map_exact_minor_units_per_currency(cb):
    raw = src().invoices()
    inv = raw.set_index("invoice_id")
    assert sorted(inv.index) == ["101", "102", "103", "104", "105"]          # the paid one is not asked for
    asked = [r["query"] for r in cb.requests if r["path"] == "/api/v2/invoices"]
    assert all(json.loads(q["status[in]"].replace("'", '"')) == ["payment_due", "not_paid"] for q in asked)
    assert inv.loc["101", ["customer_id", "invoice_number", "issue_date", "due_date", "terms", "currency", "amount",
                           "balance", "status", "po_number"]].tolist() == \
        ["cust_globex", "101", "2026-10-01", "2026-10-31", "net30", "USD", "1234.50", "1234.50", "open", "PO-77"]
    assert inv.loc["103", ["currency", "amount"]].tolist() == ["JPY", "1200"]      # zero-decimal: sent unmultiplied
    assert inv.loc["104", ["amount", "balance"]].tolist() == ["9490.88", "8490.88"]  # after the credit applied
    typed = extract.parse_invoices(raw).set_index("invoice_id")
    assert typed.loc["103", "amount_minor"] == 1200 and typed.loc["101", "amount_minor"] == 123450
    assert typed.loc["104", "balance_minor"] == 849088


def test_an_amount_that_is_not_integer_minor_units_is_unreadable_never_scaled(cb):
    cb.invoices["101"].update(total=12.5, amount_due=12.5)     # a float: not Chargebee's minor units
    typed = extract.parse_invoices(src().invoices()).set_index("invoice_id")
    assert typed.loc["101", ["amount_minor", "balance_minor"]].isna().all()   # quarantined as bad_amount, not 12.50
    assert typed.loc["102", "amount_minor"] == 49000


def test_a_customer_with_auto_collection_on_has_autopay_invoices(cb):
    inv = src().invoices().set_index("invoice_id")
    assert inv.loc["102", "autopay"] == "true" and inv.loc["101", "autopay"] == "false"
    cust = src().customers().set_index("customer_id")
    assert cust.loc["cust_muller", ["name", "billing_contact_email", "country", "segment"]].tolist() == \
        ["Müller GmbH", "buchhaltung@mueller.example", "DE", "standard"]


def test_credits_applied_are_allocations_not_payments(cb):
    notes = src().credit_notes()
    assert notes[["credit_note_id", "invoice_id", "currency", "amount", "allocated", "allocated_date"]] \
        .values.tolist() == [["CN-9", "104", "EUR", "1000.00", "1000.00", "2026-11-10"]]


def test_payments_are_the_cash_chargebee_did_not_apply_and_paid_invoices_the_history(cb):
    cb.invoices["100"].update(paid_at=ts("2026-11-20"), amount_paid=5000)
    cb.payment("txn_full", "cust_globex", 5000, on="2026-11-20", linked=[("100", 5000, "paid")])
    cb.payment("txn_part", "cust_globex", 30000, on="2026-11-21", linked=[("101", 20000, "payment_due")])
    cb.payment("txn_old", "cust_globex", 7000, on="2026-09-01")                        # before the window
    s = src()
    pay = s.payments()
    assert pay[["payment_id", "amount", "currency", "received_date"]].values.tolist() == \
        [["chargebee-txn_part", "100.00", "USD", "2026-11-21"]]                       # what no invoice took
    settled = s.settled_invoices()
    assert settled[["invoice_id", "paid_date", "amount", "payment_id"]].values.tolist() == \
        [["100", "2026-11-20", "50.00", "chargebee-txn_full"]]


# ---- paging ------------------------------------------------------------------------------------------

def test_lists_are_followed_by_next_offset_to_the_last_page(cb):
    for i in range(250):
        cb.invoice(f"P{i:03d}", "cust_globex", 1000 + i, date="2026-11-01", due="2026-12-01")
    inv = src().invoices()
    assert len(inv) == 255 and inv["invoice_id"].is_unique
    pages = [r["query"] for r in cb.requests if r["path"] == "/api/v2/invoices"]
    assert len(pages) == 3 and all(q["limit"] == "100" for q in pages)
    assert "offset" not in pages[0] and json.loads(pages[1]["offset"]) and pages[2]["offset"] != pages[1]["offset"]


def test_paging_that_ends_short_is_an_error_never_a_partial_portfolio(cb, monkeypatch):
    for i in range(150):
        cb.invoice(f"P{i:03d}", "cust_globex", 1000, date="2026-11-01", due="2026-12-01")
    cb.short_page = 2
    with pytest.raises(ConnectorError, match=r"Chargebee: list open invoices \(page 2\) failed: paging ended short"):
        src().invoices()
    cb.short_page = None
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "1")
    s = src()
    s._auto_collection()   # the customers read first, so the next two answers fall on the invoices' pages
    real = cb.answer
    calls = {"n": 0}

    def failing_page_two(method, path, query, body, headers):
        if path == "/api/v2/invoices" and query.get("offset"):
            calls["n"] += 1
            return 503, {"message": "busy", "type": "operation_failed", "api_error_code": "internal_temporary_error",
                         "http_status_code": 503}, {}
        return real(method, path, query, body, headers)

    cb.answer = failing_page_two
    with pytest.raises(ConnectorError, match=r"list open invoices \(page 2\) failed: still failing after 1 retries") as err:
        s.invoices()
    assert err.value.transient and calls["n"] == 2


# ---- dunning -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_an_invoice_chargebee_is_dunning_is_held_unless_the_policy_says_otherwise(cb, policy):
    raw = src().invoices().set_index("invoice_id")
    assert raw.loc["105", "billing_dunning"] == "true" and raw.loc["101", "billing_dunning"] == "false"
    out = pipeline.run(src(), AS_OF, policy)
    planned = out["planned"].set_index("invoice_id")
    assert planned.loc["105", ["outcome", "reason"]].tolist() == ["held", "billing_dunning"]
    assert "105" not in set(out["actions"]["invoice_id"])
    assert "101" in set(out["actions"]["invoice_id"])           # the one beside it is chased as usual
    assert len(planned) == 5                                     # every open invoice ends somewhere
    lets = policy.model_copy(update={"connectors": policy.connectors.model_copy(
        update={"chargebee": ChargebeeSettings(email_while_dunning=True)})})
    again = pipeline.run(src(), AS_OF, lets)
    assert again["planned"].set_index("invoice_id").loc["105", "outcome"] != "held"
    assert "105" in set(again["actions"][again["actions"]["channel"] == "email"]["invoice_id"])
    # e-mailed beside Chargebee's retries, never charged beside them: due today, autopay, dunning
    cb.invoice("106", "cust_initech", 9900, date="2026-10-24", due="2026-11-23", dunning_status="in_progress")
    actions = pipeline.run(src(), AS_OF, lets)["actions"]
    assert "102" in set(actions[actions["channel"] == "billing"]["invoice_id"])
    assert "106" not in set(actions[actions["channel"] == "billing"]["invoice_id"])


def test_dunning_that_is_over_is_not_held(cb, policy):
    cb.invoices["105"]["dunning_status"] = "exhausted"   # Chargebee's retries are spent: arflow chases
    planned = pipeline.run(src(), AS_OF, policy)["planned"].set_index("invoice_id")
    assert planned.loc["105", "reason"] != "billing_dunning"


# ---- the auto-charge -----------------------------------------------------------------------------------

def test_collect_payment_charges_once_per_key_and_reports_declines(cb, tmp_path):
    billing = billing_for("chargebee", tmp_path)
    cb.cards["cust_initech"] = "ok"
    first = billing.charge(invoice_id="102", invoice_number="102", customer_id="cust_initech", amount="490.00",
                           currency="USD", idempotency_key="102:auto_charge:billing", on=AS_OF)
    assert first.ok and first.charge_id.startswith("txn_")
    again = billing.charge(invoice_id="102", invoice_number="102", customer_id="cust_initech", amount="490.00",
                           currency="USD", idempotency_key="102:auto_charge:billing", on=AS_OF)
    assert again == first                                         # Chargebee replayed the stored answer
    posts = [r for r in cb.requests if r["path"].endswith("/collect_payment")]
    assert len(posts) == 2 and {p["headers"]["chargebee-idempotency-key"] for p in posts} == \
        {"arflow:102:auto_charge:billing"}
    assert len([t for t in cb.transactions.values() if t["customer_id"] == "cust_initech"]) == 1   # charged once
    assert cb.invoices["102"]["status"] == "paid"
    cb.cards["cust_globex"] = "Insufficient funds"
    declined = billing.charge(invoice_id="101", invoice_number="101", customer_id="cust_globex", amount="1234.50",
                              currency="USD", idempotency_key="k-101", on=AS_OF)
    assert not declined.ok and declined.error == "payment_processing_failed"
    no_card = billing.charge(invoice_id="103", invoice_number="103", customer_id="cust_yamada", amount="1200",
                             currency="JPY", idempotency_key="k-103", on=AS_OF)
    assert not no_card.ok and no_card.error == "payment_method_not_present"


def test_a_collect_payment_that_cannot_reach_chargebee_is_a_transient_send_error(cb, tmp_path, monkeypatch):
    from connectors.messaging import SendError

    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "1")
    cb.cards["cust_initech"] = "ok"
    cb.queue(500)
    cb.queue(500)
    with pytest.raises(SendError) as err:
        billing_for("chargebee", tmp_path).charge(invoice_id="102", invoice_number="102", customer_id="cust_initech",
                                                  amount="490.00", currency="USD", idempotency_key="k", on=AS_OF)
    assert err.value.transient and "Chargebee: collect payment of invoice 102 failed" in str(err.value)
    assert cb.invoices["102"]["status"] == "payment_due"
    retried = [r for r in cb.requests if r["path"].endswith("/collect_payment")]
    assert len(retried) == 2 and len({r["headers"]["chargebee-idempotency-key"] for r in retried}) == 1


# ---- faults --------------------------------------------------------------------------------------------

def test_faults_name_chargebee_and_the_operation_never_the_key(cb, monkeypatch):
    import time

    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
    cb.queue(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert len(src().invoices()) == 5
    assert time.monotonic() - started >= 0.9                      # it waited what Chargebee asked
    for _ in range(3):
        cb.queue(503)
    with pytest.raises(ConnectorError, match=r"Chargebee: list open invoices \(page 1\) failed: still failing "
                                             r"after 2 retries") as err:
        src().invoices()
    assert err.value.transient and cb.api_key not in str(err.value)
    monkeypatch.setenv("ARFLOW_CHARGEBEE_API_KEY", "test_wrong_key_000")
    with pytest.raises(ConnectorError) as err:
        src().invoices()
    assert "authentication failed (HTTP 401): check the site and the API key" in str(err.value)
    assert "test_wrong" not in str(err.value) and not err.value.transient
    monkeypatch.delenv("ARFLOW_CHARGEBEE_API_KEY")
    with pytest.raises(NotConfigured, match="set ARFLOW_CHARGEBEE_SITE and ARFLOW_CHARGEBEE_API_KEY"):
        src()
    monkeypatch.setenv("ARFLOW_CHARGEBEE_API_KEY", cb.api_key)
    monkeypatch.setenv("ARFLOW_CHARGEBEE_BASE_URL", "http://chargebee.example.com")
    with pytest.raises(NotConfigured, match="plain http only on this machine"):
        src()   # the key never goes out in clear text


def test_check_connection_counts_and_writes_nothing(cb):
    found = src().check()
    assert found == {"system": "chargebee", "site": "arflow-test", "open_invoices_first_page": 5,
                     "in_chargebee_dunning_first_page": 1, "more_pages": False, "customers_first_page": 4,
                     "auto_collection_on_first_page": 1}
    assert {r["method"] for r in cb.requests} == {"GET"}


# ---- webhooks ------------------------------------------------------------------------------------------

def _auth(user=USER, password=PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_webhook_events_are_recorded_once_with_their_effect(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    failed = sample("webhook_event_payment_failed_sample_2013")
    assert apply_event(failed, ledger, AS_OF) == "recorded"
    assert apply_event(failed, ledger, AS_OF) == "duplicate"
    rows = ledger.frame(m.Outbox)
    assert len(rows) == 1 and rows.iloc[0][["invoice_id", "channel", "status"]].tolist() == ["6", "billing", "failed"]
    assert "Insufficient funds" in rows.iloc[0]["closed_reason"]
    assert "6" in set(ledger.stop_records(AS_OF)["failed_charges"]["invoice_id"])
    paid = sample("webhook_event_payment_succeeded_full_payment_2020")
    assert apply_event(paid, ledger, AS_OF) == "recorded"
    assert apply_event(paid, ledger, AS_OF) == "duplicate"
    history = ledger.payment_history(AS_OF)
    assert list(history["invoice_id"]) == ["22"] and history.iloc[0]["amount_minor"] == 450000
    generated = sample("webhook_event_invoice_generated_net30_2020")
    assert apply_event(generated, ledger, AS_OF) == "recorded"
    assert apply_event(generated, ledger, AS_OF) == "duplicate"
    audit = ledger.frame(m.AuditLog)
    assert (audit["action"] == "invoice_generated").sum() == 1 and (audit["action"] == "payment_succeeded").sum() == 1
    assert apply_event({**generated, "id": "ev_other", "event_type": "subscription_created"}, ledger, AS_OF) == "ignored"


def test_a_part_payment_is_acknowledged_without_closing_the_invoice(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    part = sample("webhook_event_payment_succeeded_full_payment_2020")
    part["id"] = "ev_part"
    part["content"]["invoice"].update(status="payment_due", amount_due=100000, amount_paid=350000)
    assert apply_event(part, ledger, AS_OF) == "recorded"
    assert ledger.payment_history(AS_OF).empty


def test_basic_auth_is_checked_in_constant_time_against_the_configured_pair():
    check_basic_auth(_auth(), USER, PASSWORD)
    for bad in (_auth(password="wrong"), _auth(user="other"), "Bearer abc", None, "Basic !!notbase64"):
        with pytest.raises(ValueError, match="basic authentication failed"):
            check_basic_auth(bad, USER, PASSWORD)
    with pytest.raises(ValueError, match="no webhook credentials configured"):
        check_basic_auth(_auth(), USER, None)
    with pytest.raises(ValueError, match="not a Chargebee event"):
        parse_event(b'{"id": "ev_1"}')


def test_the_webhook_endpoint_answers_chargebee(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    server = webhook_server(0, ledger, USER, PASSWORD, lambda: AS_OF)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/chargebee/webhook"
    payload = json.dumps(sample("webhook_event_payment_failed_sample_2013")).encode()

    def post(body, auth):
        headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        assert post(payload, _auth(password="guess"))[0] == 401
        assert post(payload, None)[0] == 401
        assert ledger.frame(m.Outbox).empty                        # nothing of a refused request was kept
        assert post(payload, _auth()) == (200, {"received": "ev_3Nl7oGgQqGG8UK4s", "result": "recorded"})
        assert post(payload, _auth())[1]["result"] == "duplicate"  # Chargebee's retry of a delivered event
        assert post(b"not json", _auth())[0] == 400
        assert len(ledger.frame(m.Outbox)) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_charge_uses_its_own_key_where_one_is_set(cb, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_CHARGEBEE_API_KEY", "read_only_key_111")   # reads would be refused with it
    monkeypatch.setenv("ARFLOW_CHARGEBEE_CHARGE_API_KEY", cb.api_key)
    cb.cards["cust_initech"] = "ok"
    done = billing_for("chargebee", tmp_path).charge(invoice_id="102", invoice_number="102", customer_id="cust_initech",
                                                     amount="490.00", currency="USD", idempotency_key="k2", on=AS_OF)
    assert done.ok and cb.invoices["102"]["status"] == "paid"


@pytest.mark.slow
def test_the_webhook_command_refuses_to_listen_without_basic_auth(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARFLOW_CHARGEBEE_")}
    env.update({"ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                "ARFLOW_CHARGEBEE_BLOCK": "no-such-block", "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    p = subprocess.run([str(Path(sys.executable).parent / "arflow"), "chargebee-webhooks", "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "ARFLOW_CHARGEBEE_WEBHOOK_USERNAME" in p.stderr
