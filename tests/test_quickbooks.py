"""QuickBooks Online at the wire: python-quickbooks and intuit-oauth against tests/fake_qbo.py, a
local server answering in the recorded wire format of tests/data/qbo_samples."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from pathlib import Path

import pytest

from connectors.http import ConnectorError
from connectors.ledger.store import Ledger
from connectors.quickbooks import NotConfigured, QuickBooksSource, parse_aging_report
from tasks import hops
from tests.cli import arflow
from tests.fake_qbo import FakeQuickBooks, sample

AS_OF = dt.date(2023, 3, 1)


@pytest.fixture
def qbo(monkeypatch):
    with FakeQuickBooks() as fake:
        for entity, name in (("Customer", "sandbox_customer_records"), ("Invoice", "sandbox_invoice_records"),
                             ("Payment", "sandbox_payment_records")):
            for obj in sample(name):
                fake.add(entity, obj)
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("ARFLOW_QUICKBOOKS_BLOCK", "no-such-block")
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no block server: the environment
        yield fake


def source(tmp_path, ledger=None, as_of=AS_OF) -> QuickBooksSource:
    from arflow.blocks import connection

    settings, block = connection("quickbooks")
    src = QuickBooksSource(settings, as_of=as_of, data_dir=tmp_path, block=block)
    if ledger is not None:
        src.prepare_ledger(ledger)
    return src


def add_open_invoices(qbo, n: int, issued: str = "2023-02-01", due: str = "2023-03-03") -> None:
    """n open invoices of 10.00 USD for Mark Cho (customer 17), ids from 1000."""
    for i in range(n):
        qbo.add("Invoice", {"Id": str(1000 + i), "CustomerRef": {"value": "17"}, "DocNumber": f"P-{i}",
                            "TxnDate": issued, "DueDate": due, "TotalAmt": 10, "Balance": 10,
                            "CurrencyRef": {"value": "USD"}})


def test_full_pull_maps_the_sandbox_records_to_the_csv_format(qbo, tmp_path):
    src = source(tmp_path)
    inv = src.invoices().set_index("invoice_id")
    # The sandbox's open invoices (Balance > 0): 119, 129, 130; 12 and 96 are paid and not pulled.
    assert sorted(inv.index) == ["119", "129", "130"]
    assert inv.loc["129"][["customer_id", "invoice_number", "issue_date", "due_date", "currency", "amount",
                           "balance", "status"]].tolist() == \
        ["8", "1036", "2023-02-18", "2023-03-20", "USD", "477.5", "477.5", "open"]
    assert inv.loc["119", "terms"] == "net30"   # SalesTermRef 3, named by the Term objects
    cust = src.customers().set_index("customer_id")
    assert cust.loc["17", "name"] == "Mark Cho" and cust.loc["17", "segment"] == "standard"
    assert cust.loc["17", "billing_contact_email"] == "Mark@Cho.com"
    # The aging report is the books' own, one row per customer with its id.
    aging = src.aging_report().set_index("customer_id")
    assert aging.loc["8", "current"] == "477.50" and aging.loc["8", "total"] == "477.50"
    queries = [r["body"] for r in qbo.api_requests("query")]
    assert "SELECT COUNT(*) FROM Invoice WHERE Balance > '0'" in queries
    assert all(r["query"].get("minorversion") == "75" for r in qbo.api_requests())


def test_the_pipeline_parses_what_the_connector_hands_on(qbo, tmp_path, policy):
    src = source(tmp_path)
    inputs = hops.Inputs(source="quickbooks", invoices=src.invoices(), customers=src.customers(), payments=None,
                         aging_report=src.aging_report(), reflected_payment_ids=set(), stops={},
                         history=None, applied=None)
    parsed = hops.extract.parse_invoices(inputs.invoices)
    assert parsed.set_index("invoice_id").loc["129", "balance_minor"] == 47750   # 477.5 -> minor units, no float
    assert parsed["due_date"].notna().all()


def test_sub_customer_billed_with_parent_takes_the_parents_contact(qbo, tmp_path):
    qbo.add("Customer", {"Id": "50", "DisplayName": "Acme Holdings", "GivenName": "Ada", "FamilyName": "Lovelace",
                         "PrimaryEmailAddr": {"Address": "ap@acme.example, ada@acme.example"},
                         "BillAddr": {"Country": "United Kingdom"}})
    qbo.add("Customer", {"Id": "51", "DisplayName": "Acme Holdings:Site 2", "Job": True, "BillWithParent": True,
                         "ParentRef": {"value": "50"}, "BillAddr": {"Country": "USA"}})
    cust = source(tmp_path).customers().set_index("customer_id")
    assert cust.loc["51", "parent_customer_id"] == "50"
    assert cust.loc["51", "billing_contact_email"] == "ap@acme.example"
    assert cust.loc["51", "billing_contact_name"] == "Ada Lovelace"
    assert cust.loc["50", "country"] == "GB" and cust.loc["51", "country"] == "US"


def test_the_recorded_aging_report_maps_to_our_buckets():
    rows = parse_aging_report(sample("aragingsummary")).set_index("customer_id")
    assert rows.loc["4"].tolist()[1:] == ["0", "0", "0", "0", "37.50", "37.50"]
    assert len(rows) == 1  # the GrandTotal section has no customer id


def test_invoices_the_books_settled_feed_the_payment_history_once(qbo, tmp_path):
    from tasks.checkpoint import settled_rows

    settled = source(tmp_path).settled_invoices().set_index("invoice_id")
    # Payment 128 (2023-02-18) closed invoice 96 (issued 2022-12-04, due 2023-01-03): 46 days late.
    assert settled.loc["96", ["customer_id", "issue_date", "due_date", "paid_date", "payment_id"]].tolist() == \
        ["8", "2022-12-04", "2023-01-03", "2023-02-18", "qbo-128"]
    assert all(settled.index != "119")   # open invoices are not settled
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    rows = settled_rows(settled.reset_index())
    assert ledger.record_settled(rows, AS_OF)["settled"] == len(rows)
    assert ledger.record_settled(rows, AS_OF)["settled"] == 0          # once per invoice
    history = ledger.payment_history(AS_OF).set_index("invoice_id")
    assert history.loc["96", "days_after_due"] == 46 and history.loc["96", "days_to_pay"] == 76


def test_paging_reads_every_page_and_checks_the_count(qbo, tmp_path):
    add_open_invoices(qbo, 2500)
    src = source(tmp_path)
    assert len(src.invoices()) == 2503
    pages = [r["body"] for r in qbo.api_requests("query") if r["body"].startswith("SELECT * FROM Invoice")]
    assert [p.split("STARTPOSITION ")[1].split()[0] for p in pages] == ["1", "1001", "2001"]


def test_a_page_that_ends_short_is_never_taken_for_a_complete_pull(qbo, tmp_path):
    add_open_invoices(qbo, 1200)
    # A proxy cuts the first page to 999 rows: the pull looks finished after one page.
    original = qbo._query

    def short(sql):
        status, body, headers = original(sql)
        if sql.startswith("SELECT * FROM Invoice") and "STARTPOSITION 1 " in sql:
            body["QueryResponse"]["Invoice"] = body["QueryResponse"]["Invoice"][:999]
        return status, body, headers

    qbo._query = short
    with pytest.raises(ConnectorError, match=r"QuickBooks: full pull of Invoice failed: 999 rows read but "
                                             r"QuickBooks counts 1203"):
        source(tmp_path).invoices()


def test_cdc_after_the_first_full_pull_keeps_the_mirror_current(qbo, tmp_path, ledger_url):
    ledger = Ledger(ledger_url)
    first = source(tmp_path, ledger)
    assert sorted(first.invoices()["invoice_id"]) == ["119", "129", "130"]
    assert first.sync_info["mode"] == "full"
    assert ledger.get_meta("sync:quickbooks:9130357766")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    qbo.update("Invoice", "119", later, Balance=0)                     # paid in the books
    qbo.delete("Invoice", "130", later)                                # deleted
    qbo.add("Invoice", {"Id": "131", "CustomerRef": {"value": "3"}, "DocNumber": "1038", "TxnDate": "2023-02-28",
                        "DueDate": "2023-03-30", "TotalAmt": 99.95, "Balance": 99.95}, at=later)
    qbo.update("Customer", "17", later, PrimaryEmailAddr={"Address": "ap@cho.example"})
    second = source(tmp_path, ledger)
    inv = second.invoices()
    assert second.sync_info["mode"] == "cdc"
    assert sorted(inv["invoice_id"]) == ["129", "131"]
    assert second.customers().set_index("customer_id").loc["17", "billing_contact_email"] == "ap@cho.example"
    cdc = qbo.api_requests("/cdc")
    assert len(cdc) == 1 and cdc[0]["query"]["entities"] == "Invoice,Customer,CreditMemo"
    # the second run pulled nothing in full
    assert not [r for r in qbo.api_requests("query") if r["body"].startswith("SELECT * FROM Invoice")
                and r is not None and qbo.requests.index(r) > qbo.requests.index(cdc[0])]


def test_a_sync_position_older_than_cdc_answers_for_pulls_in_full(qbo, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    source(tmp_path, ledger).invoices()
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31)).isoformat()
    ledger.set_meta("sync:quickbooks:9130357766", old)
    again = source(tmp_path, ledger)
    again.invoices()
    assert again.sync_info["mode"] == "full" and not qbo.api_requests("/cdc")


def test_a_failed_cdc_leaves_the_mirror_and_position_as_they_were(qbo, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "1")
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    source(tmp_path, ledger).invoices()
    position = ledger.get_meta("sync:quickbooks:9130357766")
    src = source(tmp_path, ledger)
    src.client()
    qbo.queue(500)
    qbo.queue(500)
    with pytest.raises(ConnectorError, match="QuickBooks: change data capture failed: still failing after 1 retries"):
        src.invoices()
    assert ledger.get_meta("sync:quickbooks:9130357766") == position
    assert len(ledger.source_records("quickbooks:9130357766")["Invoice"]) == 3


def test_the_rotated_refresh_token_is_stored_and_used_next_time(qbo, tmp_path):
    source(tmp_path).client()
    saved = tmp_path / "credentials" / "quickbooks.json"
    assert json.loads(saved.read_text())["refresh_token"] == "rt-1"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    qbo.valid_refresh.discard("rt-0")   # Intuit retires the old token
    source(tmp_path).client()            # signs in with the saved rt-1
    assert json.loads(saved.read_text())["refresh_token"] == "rt-2"


def test_an_expired_access_token_is_refreshed_once_mid_run(qbo, tmp_path):
    src = source(tmp_path)
    src.client()
    qbo.expire_access_tokens()
    assert len(src.invoices()) == 3
    statuses = [r["path"] for r in qbo.requests if r["path"].endswith("/tokens/bearer")]
    assert len(statuses) == 2   # the first sign-in and one refresh


def test_a_revoked_refresh_token_fails_with_a_message_that_names_quickbooks_and_no_secret(qbo, tmp_path):
    qbo.valid_refresh.clear()
    with pytest.raises(ConnectorError) as err:
        source(tmp_path).invoices()
    text = str(err.value)
    assert text.startswith("QuickBooks: token refresh failed: HTTP 400") and "reconnect the app" in text
    assert "rt-0" not in text and "app-secret" not in text


def test_429_with_retry_after_is_honoured_then_answered(qbo, tmp_path):
    src = source(tmp_path)
    src.client()
    qbo.queue(429, {"fault": {"error": [{"message": "ThrottleExceeded", "code": "003001"}]}}, {"Retry-After": "1"})
    started = time.monotonic()
    assert len(src.invoices()) == 3
    assert time.monotonic() - started >= 1.0


def test_500_until_the_retries_run_out_fails_the_read(qbo, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "3")
    src = source(tmp_path)
    src.client()
    for _ in range(4):
        qbo.queue(500)
    before = len(qbo.api_requests())
    with pytest.raises(ConnectorError, match="QuickBooks: count Invoice failed: still failing after 3 retries"):
        src.invoices()
    assert len(qbo.api_requests()) - before == 4   # the first attempt and 3 retries


def test_a_400_fault_is_not_retried_and_its_message_is_kept(qbo, tmp_path):
    src = source(tmp_path)
    src.client()
    qbo.queue(400, sample("fault_4001_invalid_query_400"))
    before = len(qbo.api_requests())
    with pytest.raises(ConnectorError, match=r"QuickBooks: count Invoice failed: .*code 4001"):
        src.invoices()
    assert len(qbo.api_requests()) - before == 1


def test_a_body_that_is_not_json_fails_the_read(qbo, tmp_path):
    src = source(tmp_path)
    src.client()
    qbo.queue(200, "<html>gateway</html>")
    with pytest.raises(ConnectorError, match="QuickBooks: count Invoice failed: Error reading json response"):
        src.invoices()


def test_missing_settings_name_the_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    for k in ("ARFLOW_QBO_CLIENT_ID", "ARFLOW_QBO_REFRESH_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ARFLOW_QBO_CLIENT_SECRET", "s")
    monkeypatch.setenv("ARFLOW_QBO_REALM_ID", "1")
    with pytest.raises(NotConfigured, match="set ARFLOW_QBO_CLIENT_ID, ARFLOW_QBO_REFRESH_TOKEN"):
        source(tmp_path)


def _cli(args, tmp_path, fake, **env):
    return arflow(args, {**fake.env(), "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                         "ARFLOW_QUICKBOOKS_BLOCK": "no-such-block", **env})


def _malformed(fake):
    fake.add("Invoice", {"Id": "140", "DocNumber": "1040", "TxnDate": "2023-02-01", "DueDate": "2023-03-03",
                         "TotalAmt": 50, "Balance": 50})                                  # no CustomerRef
    fake.add("Invoice", {"Id": "141", "CustomerRef": {"value": "17"}, "DocNumber": "1041", "TxnDate": "2023-02-01",
                         "DueDate": "not a date", "TotalAmt": 50, "Balance": 50})


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_daily_run_reads_quickbooks_reconciles_with_its_aging_and_quarantines_bad_rows(qbo, tmp_path):
    _malformed(qbo)
    pol = tmp_path / "policy.yaml"
    pol.write_text(Path("policy.yaml").read_text().replace("max_failure_share: 0.05", "max_failure_share: 0.5"))
    p = _cli(["run", "--source", "quickbooks", "--as-of", "2023-03-24", "--json"], tmp_path, qbo,
             ARFLOW_POLICY=str(pol))
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "quickbooks" and out["open_invoices"] == 5
    assert out["outcomes"]["quarantined"] == 2
    assert sum(out["outcomes"].values()) == 5   # every open invoice in exactly one place
    # the invoice without a customer is not in the books' aging either: ours and theirs agree on the rest
    assert out["reconciliation"]["status"] in ("matched", "mismatched")
    assert any("No CRM" in n for n in out["notes"]) and any("QuickBooks sync: full" in n for n in out["notes"])
    assert out["by_lane"]["early"] == 3   # 119, 129 and 130: due 2023-03-20, four days late


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_a_source_read_that_fails_part_way_sends_nothing(qbo, tmp_path):
    add_open_invoices(qbo, 1100, issued="2023-01-01", due="2023-01-31")
    original = qbo._query

    def second_page_fails(sql):
        if "STARTPOSITION 1001" in sql:
            return 503, {"Fault": {"Error": [{"Message": "down", "code": "10000"}]}}, {}
        return original(sql)

    qbo._query = second_page_fails
    p = _cli(["run", "--source", "quickbooks", "--as-of", "2023-03-24", "--mode", "dry-run", "--json"], tmp_path, qbo,
             ARFLOW_HTTP_RETRIES="2")
    assert p.returncode == 1
    assert "QuickBooks: query Invoice (rows from 1001) failed: still failing after 2 retries" in p.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.eml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert ledger.frame(__import__("connectors.ledger.models", fromlist=["Outbox"]).Outbox).empty


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_payment_checkpoint_records_what_the_books_settled(qbo, tmp_path):
    p = _cli(["checkpoint", "--source", "quickbooks", "--as-of", "2023-03-01", "--json"], tmp_path, qbo)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["settled_at_source"] >= 1
    history = Ledger(f"sqlite:///{tmp_path / 'l.db'}").payment_history(AS_OF)
    assert "96" in set(history["invoice_id"])


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_prints_what_it_sees(qbo, tmp_path):
    p = _cli(["check-connection", "quickbooks", "--json"], tmp_path, qbo)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout) == {"system": "quickbooks", "company": "Sandbox Company_US_1",
                                    "realm_id": "9130357766", "open_invoices": 3, "customers": 5,
                                    "credit_memos_open": 0, "aging_report_rows": 3}
    qbo.valid_refresh.clear()
    (tmp_path / "credentials" / "quickbooks.json").unlink()
    p = _cli(["check-connection", "quickbooks"], tmp_path, qbo)
    assert p.returncode == 1 and "QuickBooks: token refresh failed" in p.stderr


# ---- credit memos: told apart from payments by what the books applied (issue 22, items 3 and 4) ------------

FIXTURES = Path(__file__).parent / "fixtures" / "qbo"


def _memo(memo_id: str, customer: str, amount, left, day: str, number: str) -> dict:
    """A CreditMemo as python-quickbooks' model writes it, from Intuit's reference sample."""
    from quickbooks.objects.creditmemo import CreditMemo

    memo = CreditMemo.from_json(json.loads((FIXTURES / "creditmemo_intuit_sample.json").read_text())["CreditMemo"])
    assert memo.Id == "73" and memo.TotalAmt == 100.0   # the sample reads as the model
    memo.Id, memo.DocNumber, memo.TxnDate = memo_id, number, day
    memo.TotalAmt, memo.Balance, memo.RemainingCredit = amount, left, left
    memo.CustomerRef.value, memo.CustomerRef.name = customer, ""
    return json.loads(memo.to_json())


def _payment(pid: str, customer: str, day: str, total, lines, unapplied=0) -> dict:
    """A Payment as python-quickbooks' model writes it: lines of (TxnType, TxnId, Amount)."""
    from quickbooks.objects.base import LinkedTxn, Ref
    from quickbooks.objects.payment import Payment, PaymentLine

    p = Payment()
    p.Id, p.TxnDate, p.TotalAmt, p.UnappliedAmt, p.PaymentRefNum = pid, day, total, unapplied, "2001"
    p.CustomerRef, p.CurrencyRef = Ref(), Ref()
    p.CustomerRef.value, p.CurrencyRef.value = customer, "USD"
    for kind, tid, amount in lines:
        line, link = PaymentLine(), LinkedTxn()
        link.TxnId, link.TxnType, line.Amount, line.LinkedTxn = tid, kind, amount, [link]
        p.Line.append(line)
    return json.loads(p.to_json())


@pytest.mark.slow
def test_a_credit_memo_after_a_payment_is_not_the_payment_arriving_across_checkpoints(qbo, tmp_path, ledger_url, policy):
    """Invoice 200; the checkpoint applies a payment of 40 (cash the books hold unapplied); then the
    books apply a credit memo of 100 to the invoice (Balance 100): 60 is owed, not 100, on the next
    checkpoints and in the check before a send, also once the memo's payment is older than the window."""
    from connectors.ledger import models as m
    from tasks.delivery import source_state
    from tests import pipeline

    ledger = Ledger(ledger_url)
    inv = {"Id": "200", "CustomerRef": {"value": "17"}, "DocNumber": "2001", "TxnDate": "2023-02-01",
           "DueDate": "2023-02-20", "TotalAmt": 200, "Balance": 200, "CurrencyRef": {"value": "USD"}}
    qbo.add("Invoice", inv)
    qbo.add("Payment", _payment("300", "17", "2023-03-01", 40, [], unapplied=40))

    def checkpoint(day):
        src = source(tmp_path, ledger, as_of=day)
        return src, pipeline.checkpoint(src, day, policy, ledger)

    _, (s1, _) = checkpoint(dt.date(2023, 3, 1))
    assert s1["applied"] == {"reference_partial": 1}
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    qbo.add("CreditMemo", _memo("7", "17", 100, 0, "2023-03-02", "CM-7"), at=later)
    qbo.add("Payment", _payment("301", "17", "2023-03-02", 0, [("Invoice", "200", 100), ("CreditMemo", "7", 100)]))
    qbo.update("Invoice", "200", later, Balance=100, LinkedTxn=[{"TxnId": "301", "TxnType": "Payment"}])

    src, (s2, _) = checkpoint(dt.date(2023, 3, 2))
    assert s2["already_recorded"] == 1 and s2["applied"] == {}
    notes = src.credit_notes()
    assert notes[["credit_note_id", "credit_note_number", "amount", "invoice_id", "allocated", "allocated_date"]] \
        .values.tolist() == [["7", "CM-7", "100", "200", "100", "2023-03-02"]]
    out = pipeline.run(src, dt.date(2023, 3, 2), policy, ledger)
    owed = dict(zip(out["planned"]["invoice_id"], out["planned"]["effective_balance_minor"]))
    assert owed["200"] == 6000                                   # 200 - 40 paid - 100 credited
    assert source_state(source(tmp_path, ledger, as_of=dt.date(2023, 3, 2)), ledger, dt.date(2023, 3, 2), policy,
                        only={"200"}).loc["200", "effective_balance_minor"] == 6000

    # Weeks later the books apply the 40 too; the memo's payment is outside the payment window now.
    qbo.add("Payment", _payment("300", "17", "2023-03-01", 40, [("Invoice", "200", 40)], unapplied=0))
    qbo.update("Invoice", "200", (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat(),
               Balance=60, LinkedTxn=[{"TxnId": "301", "TxnType": "Payment"}, {"TxnId": "300", "TxnType": "Payment"}])
    day3 = dt.date(2023, 4, 20)
    src, (s3, _) = checkpoint(day3)
    out = pipeline.run(src, day3, policy, ledger)
    assert dict(zip(out["planned"]["invoice_id"], out["planned"]["effective_balance_minor"]))["200"] == 6000
    assert len(ledger.frame(m.PaymentReceived)) == 1 and ledger.frame(m.PaymentHistory).empty


def test_an_invoice_a_credit_memo_closed_is_not_a_payment_in_the_history(qbo, tmp_path):
    """Invoice 119 (314.28) closed by a credit memo through a Payment of TotalAmt 0: the books
    settled it, but the customer paid nothing, so it is no row of the payment history."""
    qbo.add("CreditMemo", _memo("10", "17", 314.28, 0, "2023-02-25", "CM-10"))
    qbo.add("Payment", _payment("303", "17", "2023-02-25", 0, [("Invoice", "119", 314.28), ("CreditMemo", "10", 314.28)]))
    qbo.update("Invoice", "119", "2023-02-25T10:00:00-08:00", Balance=0)
    settled = source(tmp_path).settled_invoices()
    assert "119" not in set(settled["invoice_id"]) and "96" in set(settled["invoice_id"])   # 96: paid in cash


def test_a_credit_memo_nobody_applied_is_the_customers_credit_and_holds_what_it_covers(qbo, tmp_path, policy):
    from tests import pipeline

    qbo.add("CreditMemo", _memo("8", "17", 500, 500, "2023-02-25", "CM-8"))   # Mark Cho owes 314.28 (invoice 119)
    src = source(tmp_path)
    notes = src.credit_notes()
    assert notes[["credit_note_id", "customer_id", "amount", "invoice_id", "allocated"]].values.tolist() == \
        [["8", "17", "500", "", ""]]
    out = pipeline.run(src, AS_OF, policy)
    row = out["planned"].set_index("invoice_id").loc["119"]
    assert row["customer_credit_minor"] == 50000 and bool(row["unapplied_credit"])
    assert any("1 credit memo(s) with credit left for 1 customer(s) (17)" in n for n in src.notes())


def test_a_memo_whose_older_allocations_are_not_read_keeps_the_books_free_credit(qbo, tmp_path):
    """A memo of 300 with 50 left, 150 of it applied to invoice 119 in the window and 100 long ago to
    an invoice closed since: its free credit is QuickBooks' 50, not 150."""
    from tasks import credits

    qbo.add("CreditMemo", _memo("9", "17", 300, 50, "2023-01-05", "CM-9"))
    qbo.add("Payment", _payment("302", "17", "2023-02-20", 0, [("Invoice", "119", 150), ("CreditMemo", "9", 150)]))
    good, quarantined = credits.parse(source(tmp_path).credit_notes())
    assert quarantined.empty
    assert credits.credited(good).to_dict() == {"119": 15000}
    assert credits.unallocated(good, AS_OF)["unallocated_minor"].tolist() == [5000]


def test_the_customers_account_number_reaches_the_reminder(qbo, tmp_path, policy):
    """QuickBooks' Customer.AcctNum is the account number the customer quotes: it is in their reminder;
    a customer without one gets no account-number line."""
    from tasks.touches import outbox_rows
    from tests.pipeline import run

    qbo.add("Customer", {"Id": "60", "DisplayName": "Berg GmbH", "GivenName": "Anna", "FamilyName": "Berg",
                         "AcctNum": "K-10042", "PrimaryEmailAddr": {"Address": "ap@berg.example"},
                         "BillAddr": {"Country": "Germany"}})
    qbo.add("Invoice", {"Id": "600", "DocNumber": "6001", "CustomerRef": {"value": "60"}, "TxnDate": "2026-10-19",
                        "DueDate": "2026-11-18", "TotalAmt": 9490.88, "Balance": 9490.88,
                        "CurrencyRef": {"value": "EUR"}})
    as_of = __import__("datetime").date(2026, 11, 23)
    src = source(tmp_path)
    src.as_of = as_of
    assert src.customers().set_index("customer_id").loc["60", "account_number"] == "K-10042"
    out = run(src, as_of, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=as_of, policy=policy)
    body = rows[(rows["channel"] == "email") & (rows["invoice_id"] == "600")]["body"].iloc[0]
    assert body.startswith("Guten Tag Anna,") and "Ihre Kundennummer: K-10042" in body
    assert "9.490,88\u00a0€" in body and "18. November 2026" in body and "Debitorenbuchhaltung\nYourCo Inc." in body


def test_the_invoice_pdf_is_read_as_quickbooks_renders_it(qbo, tmp_path):
    from tests.fake_qbo import invoice_pdf_bytes

    src = source(tmp_path)
    inv = src.invoices().iloc[0]
    data = src.invoice_pdf(inv["invoice_id"])
    obj = next(o for o in qbo.data["Invoice"] if o["Id"] == inv["invoice_id"])
    assert data == invoice_pdf_bytes(obj) and data.startswith(b"%PDF")
    (req,) = qbo.api_requests("/pdf")
    assert req["method"] == "GET" and req["path"].endswith(f"/invoice/{inv['invoice_id']}/pdf")
    assert "application/pdf" in req["headers"]["Accept"]
    # an expired access token is refreshed once; an unknown invoice is QuickBooks' fault, named
    qbo.expire_access_tokens()
    assert src.invoice_pdf(inv["invoice_id"]) == data
    with pytest.raises(ConnectorError, match=r"QuickBooks: invoice PDF 999 failed: .*code 2030"):
        src.invoice_pdf("999")
    qbo.queue(200, {"QueryResponse": {}})   # an answer that is not a PDF is not attached as one
    with pytest.raises(ConnectorError, match="not a PDF"):
        src.invoice_pdf(inv["invoice_id"])
