"""Stripe at the wire: the stripe library against tests/fake_stripe.py; webhooks signed with
Stripe's scheme and verified by the library."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from arflow.blocks import connection
from connectors.registry import billing_for
from connectors.http import ConnectorError
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from connectors.stripe_billing import NotConfigured, StripeSource, apply_event, construct_event, webhook_server
from tasks import extract
from tests.cli import arflow
from tests.fake_stripe import FakeStripe, sample, sign

ARFLOW = str(Path(sys.executable).parent / "arflow")
AS_OF = dt.date(2026, 11, 23)
SECRET = "whsec_test_arflow"


@pytest.fixture
def stripe_api(monkeypatch):
    with FakeStripe() as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        fake.customer("cus_A", name="Globex", email="ap@globex.example", address={"country": "US"},
                      metadata={"segment": "strategic", "owner_ae_email": "dana.ae@yourco.example"})
        fake.customer("cus_J", name="Yamada KK", email="keiri@yamada.example", address={"country": "JP"})
        fake.invoice("in_0001", "cus_A", 123450, created="2026-10-01", due="2026-10-31")
        fake.invoice("in_0002", "cus_A", 50000, created="2026-11-01", due="2026-11-23", method="charge_automatically",
                     remaining=20000)
        fake.invoice("in_0003", "cus_J", 98000, created="2026-11-02", due="2026-12-02", currency="jpy")
        yield fake


def src() -> StripeSource:
    return StripeSource(connection("stripe")[0], as_of=AS_OF)


def test_open_invoices_map_minor_units_by_currency_and_autopay(stripe_api):
    inv = src().invoices().set_index("invoice_id")
    assert sorted(inv.index) == ["in_0001", "in_0002", "in_0003"]
    assert inv.loc["in_0001", ["customer_id", "invoice_number", "issue_date", "due_date", "terms", "currency", "amount",
                               "balance", "autopay"]].tolist() == \
        ["cus_A", "ARF-0001", "2026-10-01", "2026-10-31", "net30", "USD", "1234.50", "1234.50", "false"]
    assert inv.loc["in_0002", ["amount", "balance", "autopay"]].tolist() == ["500.00", "200.00", "true"]
    assert inv.loc["in_0003", ["currency", "amount"]].tolist() == ["JPY", "98000"]   # zero-decimal currency
    parsed = extract.parse_invoices(src().invoices()).set_index("invoice_id")
    assert parsed.loc["in_0003", "balance_minor"] == 98000 and parsed.loc["in_0001", "balance_minor"] == 123450
    cust = src().customers().set_index("customer_id")
    assert cust.loc["cus_A", ["segment", "owner_ae_email", "billing_contact_email", "country"]].tolist() == \
        ["strategic", "dana.ae@yourco.example", "ap@globex.example", "US"]
    assert cust.loc["cus_J", "segment"] == "standard"
    assert src().aging_report() is None


def test_lists_are_followed_page_by_page(stripe_api):
    for i in range(250):
        stripe_api.invoice(f"in_p{i:04d}", "cus_A", 1000, created="2026-09-01", due="2026-10-01")
    assert len(src().invoices()) == 253
    pages = [r for r in stripe_api.requests if r["path"] == "/v1/invoices"]
    assert len(pages) == 3 and "starting_after" in pages[1]["params"]


def test_unapplied_charges_are_the_payments_read(stripe_api):
    stripe_api.charges["ch_x"] = {"id": "ch_x", "object": "charge", "status": "succeeded", "amount": 123450,
                                  "amount_captured": 123450, "currency": "usd", "customer": "cus_A", "invoice": None,
                                  "created": 1795400000, "description": "Wire for ARF-0001", "metadata": {},
                                  "refunded": False}
    stripe_api.charges["ch_y"] = {**stripe_api.charges["ch_x"], "id": "ch_y", "invoice": "in_9"}   # Stripe applied it
    pay = src().payments()
    assert pay[["payment_id", "amount", "currency", "reference"]].values.tolist() == \
        [["ch_x", "1234.50", "USD", "Wire for ARF-0001"]]


def test_the_auto_charge_pays_once_per_key_and_reports_declines(stripe_api, tmp_path):
    billing = billing_for("stripe", tmp_path)
    stripe_api.cards["cus_A"] = "ok"
    first = billing.charge(invoice_id="in_0002", invoice_number="ARF-0002", customer_id="cus_A", amount="200.00",
                           currency="USD", idempotency_key="in_0002:auto_charge:billing", on=AS_OF)
    again = billing.charge(invoice_id="in_0002", invoice_number="ARF-0002", customer_id="cus_A", amount="200.00",
                           currency="USD", idempotency_key="in_0002:auto_charge:billing", on=AS_OF)
    assert first.ok and again.ok and first.charge_id == again.charge_id
    pays = [r for r in stripe_api.requests if r["path"].endswith("/pay")]
    assert {r["idempotency_key"] for r in pays} == {"arflow:in_0002:auto_charge:billing"}
    stripe_api.cards["cus_J"] = "insufficient_funds"
    declined = billing.charge(invoice_id="in_0003", invoice_number="ARF-0003", customer_id="cus_J", amount="98000",
                              currency="JPY", idempotency_key="in_0003:auto_charge:billing", on=AS_OF)
    assert not declined.ok and declined.error == "insufficient_funds"
    stripe_api.invoices["in_0001"]["customer"] = "cus_X"   # no card on file
    no_method = billing.charge(invoice_id="in_0001", invoice_number="ARF-0001", customer_id="cus_X", amount="1234.50",
                               currency="USD", idempotency_key="k3", on=AS_OF)
    assert not no_method.ok and no_method.error == "invoice_no_customer_payment_method"


def test_a_charge_that_cannot_reach_stripe_is_a_transient_send_error(stripe_api, tmp_path, monkeypatch):
    from connectors.messaging import SendError

    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "1")
    stripe_api.cards["cus_A"] = "ok"
    stripe_api.queue(500)
    stripe_api.queue(500)
    with pytest.raises(SendError) as err:
        billing_for("stripe", tmp_path).charge(invoice_id="in_0002", invoice_number="ARF-0002", customer_id="cus_A",
                                               amount="200.00", currency="USD", idempotency_key="k", on=AS_OF)
    assert err.value.transient and "Stripe: pay invoice ARF-0002 failed" in str(err.value)


def test_faults_name_stripe_and_never_the_key(stripe_api, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
    stripe_api.queue(429, headers={"Retry-After": "1"})
    assert len(src().invoices()) == 3
    for _ in range(3):
        stripe_api.queue(503)
    with pytest.raises(ConnectorError, match="Stripe: list open invoices failed: still failing after 2 retries"):
        src().invoices()
    monkeypatch.setenv("ARFLOW_STRIPE_API_KEY", "sk_test_wrong_key_000")
    with pytest.raises(ConnectorError) as err:
        src().invoices()
    assert "authentication failed (HTTP 401)" in str(err.value) and "sk_test_wrong" not in str(err.value)
    monkeypatch.delenv("ARFLOW_STRIPE_API_KEY")
    with pytest.raises(NotConfigured, match="set ARFLOW_STRIPE_API_KEY"):
        src()


def _event(kind: str, invoice: dict, eid: str) -> bytes:
    env = sample("event_envelope_openapi_fixture")
    env.update({"id": eid, "type": kind, "data": {"object": invoice, "previous_attributes": {}}})
    return json.dumps(env).encode()


def test_webhook_events_are_verified_and_recorded_once(stripe_api, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    failed = sample("event_data_invoice_payment_failed_pay")["object"]
    payload = _event("invoice.payment_failed", failed, "evt_fail_1")
    event = construct_event(payload, sign(payload, SECRET), SECRET)
    assert apply_event(event, ledger, AS_OF) == "recorded"
    assert apply_event(event, ledger, AS_OF) == "duplicate"
    rows = ledger.frame(m.Outbox)
    assert len(rows) == 1 and rows.iloc[0]["channel"] == "billing" and rows.iloc[0]["status"] == "failed"
    assert rows.iloc[0]["invoice_id"] == failed["id"]
    # the failed payment is a stop record the next run reads: the invoice joins the early lane flagged
    assert failed["id"] in set(ledger.stop_records(AS_OF)["failed_charges"]["invoice_id"])
    paid_invoice = sample("invoice_paid_djstripe")
    paid = _event("invoice.paid", paid_invoice, "evt_paid_1")
    assert apply_event(construct_event(paid, sign(paid, SECRET), SECRET), ledger, AS_OF) == "recorded"
    assert apply_event(construct_event(paid, sign(paid, SECRET), SECRET), ledger, AS_OF) == "duplicate"
    history = ledger.payment_history(AS_OF)   # Stripe applied it: the invoice's days-to-pay are kept once
    assert list(history["invoice_id"]) == [paid_invoice["id"]]
    assert history.iloc[0]["amount_minor"] == paid_invoice["amount_paid"]
    with pytest.raises(ValueError, match="signature verification failed"):
        construct_event(payload, sign(payload, "whsec_other"), SECRET)
    with pytest.raises(ValueError, match="signature verification failed"):
        construct_event(payload.replace(b"in_1234", b"in_9999"), sign(payload, SECRET), SECRET)
    with pytest.raises(ValueError, match="no webhook secret"):
        construct_event(payload, sign(payload, SECRET), None)


def test_the_webhook_endpoint_answers_stripe(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    server = webhook_server(0, ledger, SECRET, lambda: AS_OF)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
    payload = _event("invoice.payment_failed", sample("event_data_invoice_payment_failed_pay")["object"], "evt_2")

    def post(body, signature):
        req = urllib.request.Request(url, data=body, headers={"Stripe-Signature": signature}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        assert post(payload, sign(payload, SECRET)) == (200, {"received": "evt_2", "result": "recorded"})
        assert post(payload, sign(payload, SECRET))[1]["result"] == "duplicate"
        assert post(payload, "t=1,v1=deadbeef")[0] == 400
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_daily_run_reads_stripe(stripe_api, tmp_path):
    env = {**stripe_api.env(), "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    p = arflow(["run", "--source", "stripe", "--as-of", "2026-11-23", "--json"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["open_invoices"] == 3 and sum(out["outcomes"].values()) == 3
    assert out["reconciliation"]["status"] == "skipped"
    assert out["by_lane"]["late"] == 1   # in_0001: 23 days past due
    p = arflow(["check-connection", "stripe", "--json"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["open_invoices_first_page"] == 3


# ---- credit notes: told apart from payments by what Stripe says it applied (issue 22, items 3 and 4) ---------

@pytest.mark.slow
def test_a_credit_note_after_a_payment_is_not_the_payment_arriving_across_checkpoints(stripe_api, tmp_path, policy):
    """Invoice 200; the checkpoint applies a charge of 40 Stripe holds on no invoice; then a credit
    note of 100 lowers the invoice's amount_remaining to 100: 60 is owed, on two more checkpoints and in
    the check before a send; once the 40 is marked paid at Stripe (amount_paid 40), still 60."""
    from tasks.delivery import source_state
    from tests import pipeline

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    stripe_api.invoice("in_0200", "cus_A", 20000, created="2026-10-15", due="2026-11-14")
    stripe_api.charges["ch_40"] = {"id": "ch_40", "object": "charge", "status": "succeeded", "amount": 4000,
                                   "amount_captured": 4000, "currency": "usd", "customer": "cus_A", "invoice": None,
                                   "created": 1795400000, "description": "ARF-0200 part", "metadata": {},
                                   "refunded": False}
    s1, _ = pipeline.checkpoint(src(), AS_OF, policy, ledger)
    assert s1["applied"] == {"reference_partial": 1}
    stripe_api.credit_note("cn_0200", "in_0200", 10000, created="2026-11-23", number="ARF-0200-CN-01")
    owed = []
    for _ in range(2):
        source = src()
        s, _ = pipeline.checkpoint(source, AS_OF, policy, ledger)
        assert s["already_recorded"] == 1 and s["applied"] == {}
        out = pipeline.run(source, AS_OF, policy, ledger)
        owed.append(out["planned"].set_index("invoice_id").loc["in_0200", "effective_balance_minor"])
    assert owed == [6000, 6000]                                  # 200 - 40 paid - 100 credited, not 100
    notes = src().credit_notes()
    assert notes[["credit_note_id", "customer_id", "amount", "invoice_id", "allocated"]].values.tolist() == \
        [["cn_0200", "cus_A", "100.00", "in_0200", "100.00"]]
    assert src().invoices().set_index("invoice_id").loc["in_0200", ["amount", "balance"]].tolist() == \
        ["200.00", "100.00"]                                     # amount_due 100 + its credit notes' 100
    fresh = src()
    assert source_state(fresh, ledger, AS_OF, policy, only={"in_0200"}).loc["in_0200", "effective_balance_minor"] == 6000
    stripe_api.invoices["in_0200"].update(amount_paid=4000, amount_remaining=6000)   # paid out of band at Stripe
    out = pipeline.run(src(), AS_OF, policy, ledger)
    assert out["planned"].set_index("invoice_id").loc["in_0200", "effective_balance_minor"] == 6000
    # the credit notes were listed only for the invoice that has some
    listed = {r["params"].get("invoice") for r in stripe_api.requests if r["path"] == "/v1/credit_notes"}
    assert listed == {"in_0200"}


def test_a_void_credit_note_takes_nothing_off(stripe_api):
    stripe_api.credit_note("cn_v", "in_0001", 23450, created="2026-11-20")
    stripe_api.credit_notes["cn_v"]["status"] = "void"
    assert src().credit_notes().empty


# ---- issue 21, item 11: every webhook answered, an event kept only with its effect, bounded ----------
def _serve(ledger):
    server = webhook_server(0, ledger, SECRET, lambda: AS_OF)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"


def _post(url, body, signature=None):
    signature = signature or sign(body, SECRET)
    req = urllib.request.Request(url, data=body, headers={"Stripe-Signature": signature}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_paid_event_without_paid_at_is_recorded_on_the_day_it_happened(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    server, url = _serve(ledger)
    invoice = sample("invoice_paid_djstripe")
    invoice["status_transitions"] = {"finalized_at": invoice["status_transitions"]["finalized_at"], "paid_at": None}
    invoice.pop("effective_at", None)
    try:
        assert _post(url, _event("invoice.paid", invoice, "evt_nopaidat")) == \
            (200, {"received": "evt_nopaidat", "result": "recorded"})
        no_transitions = {**sample("invoice_paid_djstripe"), "id": "in_other"}
        del no_transitions["status_transitions"]
        assert _post(url, _event("invoice.paid", no_transitions, "evt_none"))[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    history = ledger.payment_history(AS_OF).set_index("invoice_id")
    envelope_created = dt.datetime.fromtimestamp(sample("event_envelope_openapi_fixture")["created"], dt.timezone.utc)
    assert history.loc[invoice["id"], "paid_date"] == envelope_created.date()
    assert history.loc[invoice["id"], "amount_minor"] == invoice["amount_paid"] and "in_other" in history.index


def test_an_event_whose_effect_failed_is_processed_when_stripe_retries(tmp_path):
    import sqlalchemy as sa

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    with ledger.engine.begin() as conn:  # the ledger refuses the payment history, as a full disk or a lock would
        conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON payment_history "
                             "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"))
    server, url = _serve(ledger)
    invoice = sample("invoice_paid_djstripe")
    payload = _event("invoice.paid", invoice, "evt_retry")
    try:
        status, body = _post(url, payload)
        assert status == 500 and body["received"] == "evt_retry"   # answered, so Stripe retries
        assert ledger.get_meta("stripe_event:evt_retry") is None    # nothing of it kept
        with ledger.engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse"))
        assert _post(url, payload) == (200, {"received": "evt_retry", "result": "recorded"})
        assert _post(url, payload)[1]["result"] == "duplicate"
    finally:
        server.shutdown()
        server.server_close()
    assert list(ledger.payment_history(AS_OF)["invoice_id"]) == [invoice["id"]]


def test_a_body_over_the_cap_is_refused_unread(tmp_path):
    import http.client

    server, url = _serve(Ledger(f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        for length, expected in (("99999999999", 413), (str(2 * 1024 * 1024), 413), ("-5", 411), ("many", 411)):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            conn.putrequest("POST", "/stripe/webhook")
            conn.putheader("Content-Length", length)
            conn.putheader("Stripe-Signature", "t=1,v1=00")
            conn.endheaders()
            conn.send(b"{}")
            assert conn.getresponse().status == expected, length
            conn.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_sigterm_stops_the_webhook_server_and_its_temporary_prefect_server(tmp_path):
    import signal
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({"ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                "ARFLOW_STRIPE_WEBHOOK_SECRET": SECRET, "PREFECT_HOME": str(tmp_path / "prefect")})
    p = subprocess.Popen([ARFLOW, "stripe-webhooks", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            lines.append(line)
            if "Stripe webhooks on" in line or not line:
                break
        assert "Stripe webhooks on" in lines[-1], "".join(lines)[-2000:]
        children = psutil.Process(p.pid).children(recursive=True)
        assert children, "the command was to start a temporary Prefect server (no PREFECT_API_URL)"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, [c.cmdline() for c in alive]
    finally:
        if p.poll() is None:
            p.kill()


def test_a_retry_of_a_declined_charge_is_a_new_attempt_at_stripe_under_its_own_key(stripe_api, tmp_path):
    """policy.auto_charge_retries: the first attempt's key would only replay its decline; each retry
    (auto_charge_retry_N) sends its own Idempotency-Key, once, and collects once the card works."""
    billing = billing_for("stripe", tmp_path)
    stripe_api.cards["cus_A"] = "card_declined"

    def charge(key):
        return billing.charge(invoice_id="in_0002", invoice_number="ARF-0002", customer_id="cus_A", amount="500.00",
                              currency="USD", idempotency_key=key, on=AS_OF)

    assert not charge("in_0002:auto_charge:billing").ok
    stripe_api.cards["cus_A"] = "ok"    # the customer updated the card
    assert not charge("in_0002:auto_charge:billing").ok   # the same key: Stripe replays the decline
    retry = charge("in_0002:auto_charge_retry_1:billing")
    assert retry.ok
    assert charge("in_0002:auto_charge_retry_1:billing").charge_id == retry.charge_id   # a repeat charges nothing
    keys = [r["idempotency_key"] for r in stripe_api.requests if r["path"].endswith("/pay")]
    assert keys == ["arflow:in_0002:auto_charge:billing"] * 2 + ["arflow:in_0002:auto_charge_retry_1:billing"] * 2
    assert stripe_api.invoices["in_0002"]["status"] == "paid"


def test_the_reminder_links_stripes_invoice_pdf(stripe_api, policy):
    """Stripe renders each invoice as a PDF (invoice_pdf): the customer's reminder links it beside the invoice."""
    from tasks.touches import outbox_rows
    from tests.pipeline import run

    stripe_api.customer("cus_B", name="Initech", email="ap@initech.example", address={"country": "US"})
    stripe_api.invoice("in_0004", "cus_B", 120000, created="2026-10-19", due="2026-11-18")
    out = run(src(), AS_OF, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF, policy=policy)
    mail = rows[rows["channel"] == "email"].set_index("invoice_id")
    body = mail.loc["in_0004", "body"]
    assert "The invoice as a PDF: https://pay.stripe.com/invoice/acct_1/in_0004/pdf" in body
    assert "$1,200.00" in body and "November 18, 2026" in body and "YourCo Inc." in body
