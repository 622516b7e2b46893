"""Xero at the wire: xero-python against tests/fake_xero.py, a local server answering in the recorded
and documented wire format of tests/data/xero_samples (and tests/fixtures/xero)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import stat
import time
from pathlib import Path

import pytest

from arflow.policy import load_policy
from connectors.http import ConnectorError
from connectors.ledger.store import Ledger
from connectors.xero import NotConfigured, XeroSource, parse_aged_receivables
from tasks import credits, extract
from tests.cli import arflow
from tests.fake_xero import FakeXero, contact, invoice, ms_date, sample

FIXTURES = Path(__file__).parent / "fixtures" / "xero"
AS_OF = dt.date(2020, 5, 4)   # the day the invoices page was recorded
DIISR, BAYSIDE = "342a5560-dbb7-408f-835b-d93d49511d6d", "16c56769-c3c8-4dad-bd40-523f83bfe017"
INV_0027, INV_0038 = "9019678b-0f43-484a-8c5d-93dc36b27e13", "77c3ec20-35e2-499c-8253-88fc7f8dd5a2"
ONLINE_URL = sample("invoice_online_invoice_url_openapi_example")["OnlineInvoices"][0]["OnlineInvoiceUrl"]


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text(), parse_float=decimal.Decimal)


@pytest.fixture
def xero(monkeypatch):
    with FakeXero() as fake:
        for inv in sample("invoices_get_page1_recorded_2020")["Invoices"]:
            fake.add("Invoices", inv, url=ONLINE_URL if inv["InvoiceID"] == INV_0027 else None)
        fake.add("Contacts", contact(DIISR, "DIISR - Small Business Services", "accounts@diisr.example",
                                     country="Australia", terms={"Day": 10, "Type": "DAYSAFTERBILLDATE"}))
        fake.add("Contacts", contact(BAYSIDE, "Bayside Club", "secretary@bayside.example", country="NZ"))
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no block server: the environment
        for k in ("ARFLOW_XERO_TENANT_ID", "ARFLOW_XERO_DAY_RESERVE", "ARFLOW_XERO_NEEDED_CALLS"):
            monkeypatch.delenv(k, raising=False)
        yield fake


def source(tmp_path, ledger=None, as_of=AS_OF) -> XeroSource:
    from arflow.blocks import connection

    settings, block = connection("xero")
    src = XeroSource(settings, as_of=as_of, data_dir=tmp_path, block=block)
    if ledger is not None:
        src.prepare_ledger(ledger)
    return src


def add_open(fake, n: int, start: int = 0, contact_id: str = BAYSIDE) -> None:
    for i in range(start, start + n):
        fake.add("Invoices", invoice(f"00000000-0000-4000-8000-{i:012d}", contact_id, f"P-{i}", "2020-04-01",
                                     "2020-05-01", "10.00", updated=ms_date(dt.datetime(2020, 4, 1, 0, 0, i % 60,
                                                                                       tzinfo=dt.timezone.utc))))


# ---- reading and mapping ------------------------------------------------------------------------
def test_the_recorded_invoices_page_maps_to_the_csv_format(xero, tmp_path):
    src = source(tmp_path)
    inv = src.invoices().set_index("invoice_id")
    # The recording's ACCREC invoices: INV-0027 (part-paid) and INV-0038 are AUTHORISED; 0033 and 0016 are PAID.
    assert sorted(inv["invoice_number"]) == ["INV-0027", "INV-0038"]
    assert inv.loc[INV_0027, ["customer_id", "issue_date", "due_date", "currency", "amount", "balance", "credited",
                              "status", "po_number", "payment_link"]].tolist() == \
        [DIISR, "2020-03-05", "2020-03-15", "NZD", "850.00", "270.63", "0.00", "open", "Yr Ref W08-143", ONLINE_URL]
    assert inv.loc[INV_0027, "terms"] == "net10"   # the contact's DAYSAFTERBILLDATE 10
    listed = xero.api_requests("/Invoices")[0]
    assert listed["query"] == {"where": 'Type=="ACCREC"', "Statuses": "AUTHORISED", "page": "1", "pageSize": "100"}
    assert listed["headers"]["xero-tenant-id"] == "a46fcb6f-2773-40c4-a119-8aa08bca1e8e"   # from GET /connections
    assert [r["path"] for r in xero.requests if r["path"].lower() == "/connections"] == ["/Connections"]
    cust = src.customers().set_index("customer_id")
    assert cust.loc[DIISR, ["name", "billing_contact_email", "country", "segment"]].tolist() == \
        ["DIISR - Small Business Services", "accounts@diisr.example", "AU", "standard"]
    contacts_asked = xero.api_requests("/Contacts")[0]["query"]["IDs"].split(",")
    assert sorted(contacts_asked) == sorted([DIISR, BAYSIDE])   # only the contacts of open invoices


def test_amounts_convert_to_minor_units_exactly_in_each_currency(xero, tmp_path):
    # A float (the SDK's models) cannot hold 1234567890123456.78: float("...") gives 1234567890123456.8.
    xero.add("Invoices", invoice("a0000000-0000-4000-8000-000000000001", BAYSIDE, "BIG-1", "2020-04-01", "2020-05-01",
                                 "1234567890123456.78", currency="USD"))
    xero.add("Invoices", invoice("a0000000-0000-4000-8000-000000000002", BAYSIDE, "JP-1", "2020-04-01", "2020-05-01",
                                 "150000.00", currency="JPY"))
    xero.add("Invoices", invoice("a0000000-0000-4000-8000-000000000003", BAYSIDE, "KW-1", "2020-04-01", "2020-05-01",
                                 "12.345", currency="KWD"))
    xero.add("Invoices", invoice("a0000000-0000-4000-8000-000000000004", BAYSIDE, "MAX-1", "2020-04-01", "2020-05-01",
                                 "9999999999999.99", currency="USD"))
    raw = source(tmp_path).invoices()
    # The connector hands the amount on exactly as Xero wrote it (parsed as Decimal, never a float) ...
    assert raw.set_index("invoice_number").loc["BIG-1", "balance"] == "1234567890123456.78"
    parsed = extract.parse_invoices(raw).set_index("invoice_number")
    # ... and extract refuses what is beyond a sane bound (10^15 minor units: amount_out_of_range, issue 21)
    # while the largest amount within it converts exactly.
    import pandas as pd

    assert pd.isna(parsed.loc["BIG-1", "balance_minor"])
    assert parsed.loc["MAX-1", ["currency", "balance_minor"]].tolist() == ["USD", 999999999999999]
    assert parsed.loc["JP-1", ["currency", "balance_minor"]].tolist() == ["JPY", 150000]
    assert parsed.loc["KW-1", ["currency", "balance_minor"]].tolist() == ["KWD", 12345]
    assert parsed.loc["INV-0027", ["currency", "balance_minor", "amount_minor"]].tolist() == ["NZD", 27063, 85000]


def test_paging_reads_every_page_of_100(xero, tmp_path):
    add_open(xero, 250)
    assert len(source(tmp_path).invoices()) == 252
    pages = [(r["query"]["page"], r["query"]["pageSize"]) for r in xero.api_requests("/Invoices")
             if r["path"].endswith("/Invoices")]
    assert pages == [("1", "100"), ("2", "100"), ("3", "100")]


def test_a_page_that_ends_short_is_never_taken_for_a_complete_pull(xero, tmp_path):
    add_open(xero, 250)
    xero.page_hook = lambda resource, page, rows: rows[:99] if resource == "Invoices" and page == 1 else rows
    with pytest.raises(ConnectorError, match=r"Xero: list open invoices failed: page 1 of 3 held 99 rows, not 100"):
        source(tmp_path).invoices()


def test_a_last_page_short_of_the_item_count_is_an_error(xero, tmp_path):
    add_open(xero, 250)
    xero.page_hook = lambda resource, page, rows: rows[:-1] if resource == "Invoices" and page == 3 else rows
    with pytest.raises(ConnectorError, match=r"Xero: list open invoices failed: 251 rows read but Xero counts 252"):
        source(tmp_path).invoices()


@pytest.mark.parametrize("terms,expected_terms,expected_due", [
    ({"Day": 20, "Type": "DAYSAFTERBILLDATE"}, "net20", "2023-02-09"),
    ({"Day": 0, "Type": "DAYSAFTERBILLDATE"}, "due_on_receipt", "2023-01-20"),
    ({"Day": 10, "Type": "DAYSAFTERBILLMONTH"}, "eom10", "2023-02-10"),
    ({"Day": 31, "Type": "OFCURRENTMONTH"}, "", "2023-01-31"),
    ({"Day": 15, "Type": "OFFOLLOWINGMONTH"}, "eom15", "2023-02-15"),
    ({"Day": 30, "Type": "OFFOLLOWINGMONTH"}, "", "2023-02-28"),   # February has no 30th: its last day
], ids=["DAYSAFTERBILLDATE", "DAYSAFTERBILLDATE-0", "DAYSAFTERBILLMONTH", "OFCURRENTMONTH", "OFFOLLOWINGMONTH",
        "OFFOLLOWINGMONTH-30"])
def test_payment_terms_of_each_type_give_the_due_date(xero, tmp_path, terms, expected_terms, expected_due):
    cid = "c0000000-0000-4000-8000-000000000001"
    xero.add("Contacts", contact(cid, "Terms Co", "ap@terms.example", terms=terms))
    xero.add("Invoices", invoice("b0000000-0000-4000-8000-000000000001", cid, "T-1", "2023-01-20", None, "100.00"))
    raw = source(tmp_path, as_of=dt.date(2023, 3, 1)).invoices()
    row = raw[raw["invoice_number"] == "T-1"].iloc[0]
    assert (row["terms"], row["due_date"]) == (expected_terms, expected_due)
    if expected_terms:  # arflow's own reading of the term text gives the same day
        alone = raw[raw["invoice_number"] == "T-1"].assign(due_date="")
        assert str(extract.parse_invoices(alone)["due_date"].iloc[0].date()) == expected_due


def test_contacts_bring_their_persons_account_number_and_terms(xero, tmp_path):
    acme = sample("contact_get_by_id_openapi_example")["Contacts"][0]
    xero.add("Contacts", acme)
    xero.add("Invoices", invoice("b0000000-0000-4000-8000-000000000002", acme["ContactID"], "A-1", "2020-04-02", None,
                                 "50.00", currency="USD"))
    src = source(tmp_path)
    cust = src.customers().set_index("customer_id").loc[acme["ContactID"]]
    assert cust[["billing_contact_name", "billing_contact_email", "account_number", "contact_persons",
                 "payment_terms"]].tolist() == ["Blake Kohler", "bk@krave.co", "1234567", "sue.johnson@krave.com",
                                                "OFCURRENTMONTH 14"]
    inv = src.invoices().set_index("invoice_number").loc["A-1"]
    assert inv["due_date"] == "2020-04-14"   # day 14 of the invoice's month
    # Without an e-mail on the contact, the first contact person included in e-mails is written to.
    xero.add("Contacts", dict(acme, EmailAddress=""))
    again = source(tmp_path).customers().set_index("customer_id").loc[acme["ContactID"]]
    assert again[["billing_contact_name", "billing_contact_email"]].tolist() == ["Sue Johnson", "sue.johnson@krave.com"]


# ---- credits and cash ---------------------------------------------------------------------------
def test_credits_allocated_to_an_invoice_lower_its_balance_and_are_not_a_payment(xero, tmp_path):
    # INV-0033 as it stood before its payment: 269.95, CN-0034 allocated 19.95, 250.00 due.
    paid = next(i for i in sample("invoices_get_page1_recorded_2020")["Invoices"] if i["InvoiceNumber"] == "INV-0033")
    xero.add("Invoices", dict(paid, Status="AUTHORISED", AmountDue=decimal.Decimal("250.00"),
                              AmountPaid=decimal.Decimal("0.00"), Payments=[]))
    # An overpayment of 35.00 allocated to a 100.00 invoice: Xero counts it in AmountCredited too.
    over = invoice("f0000000-0000-4000-8000-000000000001", BAYSIDE, "INV-0041", "2020-04-10", "2020-05-10", "100.00",
                   "65.00", credited="35.00")
    over["Overpayments"] = [{"OverpaymentID": "0be2c0e4-1111-4a5e-9d0e-6c1f0b6c2a01", "AppliedAmount": decimal.Decimal("35.00"),
                             "Date": ms_date("2020-04-12"), "DateString": "2020-04-12T00:00:00"}]
    xero.add("Invoices", over)
    parsed = extract.parse_invoices(source(tmp_path).invoices()).set_index("invoice_number")
    assert tuple(parsed.loc["INV-0033", ["amount_minor", "balance_minor", "credited_minor"]]) == (26995, 25000, 1995)
    assert tuple(parsed.loc["INV-0041", ["amount_minor", "balance_minor", "credited_minor"]]) == (10000, 6500, 3500)


def test_a_credit_note_with_credit_left_is_the_customers_credit(xero, tmp_path):
    notes = sample("creditnotes_get_paged_openapi_example")["CreditNotes"]
    for n in notes:   # CN-0005 (ACCRECCREDIT, 32.50 left) and an ACCPAYCREDIT draft, which is not ours
        xero.add("CreditNotes", n)
    allocated = dict(sample("creditnotes_get_docs_example")["CreditNotes"][0], Status="AUTHORISED",
                     CreditNoteID="aea95d78-0000-4000-8000-000000000002", CreditNoteNumber="CN-0002-B",
                     RemainingCredit=decimal.Decimal("60.00"), UpdatedDateUTC=ms_date("2020-04-01"))
    allocated["Allocations"][0]["Amount"] = decimal.Decimal("40.00")
    xero.add("CreditNotes", allocated)
    xero.add("CreditNotes", sample("creditnotes_get_docs_example")["CreditNotes"][0])   # PAID: nothing left
    src = source(tmp_path)
    good, bad = credits.parse(src.credit_notes())
    assert bad.empty
    free = credits.unallocated(good, AS_OF).set_index("credit_note_number")["unallocated_minor"].to_dict()
    assert free == {"CN-0005": 3250, "CN-0002-B": 6000}   # CN-0002 itself is PAID: nothing left, not read
    assert credits.credited(good).to_dict() == {"87cfa39f-136c-4df9-a70d-bb80d8ddb975": 4000}
    asked = xero.api_requests("/CreditNotes")[0]["query"]["where"]
    assert asked == 'Type=="ACCRECCREDIT" AND Status=="AUTHORISED"'


def test_overpayments_and_prepayments_left_unallocated_are_cash_to_apply(xero, tmp_path):
    paid_over = fixture("overpayments_get_docs_example")["Overpayments"][0]        # fully allocated: nothing left
    open_over = dict(paid_over, OverpaymentID="0be2c0e4-1111-4a5e-9d0e-6c1f0b6c2a01", Status="AUTHORISED",
                     RemainingCredit="35.00", Allocations=[], Reference="Paid twice")
    spend = dict(open_over, OverpaymentID="0be2c0e4-2222-4a5e-9d0e-6c1f0b6c2a02", Type="SPEND-OVERPAYMENT")
    for o in (paid_over, open_over, spend):
        xero.add("Overpayments", o)
    xero.add("Prepayments", fixture("prepayment_receive_assembled")["Prepayments"][0])
    pays = source(tmp_path).payments().set_index("payment_id")
    assert sorted(pays.index) == ["xero-overpayment-0be2c0e4-1111-4a5e-9d0e-6c1f0b6c2a01",
                                  "xero-prepayment-6f3cd6b5-7d4c-4b7e-8e0e-9f7f6a3b2c10"]
    assert pays.loc["xero-overpayment-0be2c0e4-1111-4a5e-9d0e-6c1f0b6c2a01",
                    ["customer_id", "amount", "currency", "received_date", "reference"]].tolist() == \
        ["c6c7b870-bb4d-489a-921e-2f0ee4192ff9", "35.00", "NZD", "2014-05-26", "Paid twice"]
    assert pays.loc["xero-prepayment-6f3cd6b5-7d4c-4b7e-8e0e-9f7f6a3b2c10", "amount"] == "120.00"


def test_invoices_the_books_settled_feed_the_payment_history(xero, tmp_path):
    payment = dict(sample("payments_get_paged_openapi_example")["Payments"][0], Date=ms_date("2020-04-20"),
                   Invoice={"Type": "ACCREC", "InvoiceID": "7990ca35-8c13-4230-b412-f6cccbe793aa"})
    xero.add("Payments", payment)
    xero.add("Payments", dict(payment, PaymentID="old-1", Date=ms_date("2020-01-02")))   # outside the 35 days
    settled = source(tmp_path).settled_invoices().set_index("invoice_id")
    assert settled.loc["7990ca35-8c13-4230-b412-f6cccbe793aa",
                       ["customer_id", "issue_date", "due_date", "paid_date", "amount", "currency"]].tolist() == \
        [DIISR, "2020-03-16", "2020-03-26", "2020-03-25", "269.95", "NZD"]   # the books' FullyPaidOnDate
    assert "DateTime(2020, 03, 30)" in xero.api_requests("/Payments")[0]["query"]["where"]


# ---- the books' aging ---------------------------------------------------------------------------
def test_the_documented_aged_receivables_report_maps_to_our_buckets():
    row = parse_aged_receivables(sample("report_aged_receivables_by_contact_openapi_example"), "c1",
                                 dt.date(2019, 4, 23))
    # IV1242016 due 2018-06-22 (305 days late) and INV-0086 due 2019-05-07 (not yet due); Closing Balance 150.00.
    assert row == {"customer_id": "c1", "current": "50.00", "d1_30": "0", "d31_60": "0", "d61_90": "0",
                   "d91_plus": "100.00", "total": "150.00"}


def test_the_books_aging_reconciles_with_ours(xero, tmp_path, policy):
    from tasks import hops

    src = source(tmp_path)
    inputs = hops.Inputs(source="xero", invoices=src.invoices(), customers=src.customers(), payments=None,
                         aging_report=src.aging_report(), reflected_payment_ids=set(), stops={}, history=None,
                         applied=None, as_of=AS_OF)
    extracted, _ = hops.extract_aging(inputs, AS_OF, policy)
    result, _ = hops.reconcile_aging(extracted.frame, inputs, policy)
    assert result.status == "matched", result.results
    asked = [r["query"] for r in xero.api_requests("/Reports/AgedReceivablesByContact")]
    assert sorted(q["contactId"] for q in asked) == sorted([DIISR, BAYSIDE]) and {q["date"] for q in asked} == {"2020-05-04"}


# ---- the connection: tokens, tenants ------------------------------------------------------------
def test_the_rotated_refresh_token_is_stored_and_used_next_time(xero, tmp_path):
    source(tmp_path).client()
    saved = tmp_path / "credentials" / "xero.json"
    assert json.loads(saved.read_text())["refresh_token"] == "xero-rt-1"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    xero.valid_refresh.discard("xero-rt-0")   # Xero retires the old token after its grace period
    source(tmp_path).client()
    assert json.loads(saved.read_text())["refresh_token"] == "xero-rt-2"
    form = [r["body"] for r in xero.requests if r["path"] == "/connect/token"][-1]
    assert "refresh_token=xero-rt-1" in form and "grant_type=refresh_token" in form


def test_an_expired_access_token_is_refreshed_once_mid_run(xero, tmp_path):
    src = source(tmp_path)
    src.client()
    xero.expire_access_tokens()
    assert len(src.invoices()) == 2
    assert len([r for r in xero.requests if r["path"] == "/connect/token"]) == 2   # sign-in and one refresh


def test_a_revoked_refresh_token_fails_naming_xero_and_no_secret(xero, tmp_path):
    xero.valid_refresh.clear()
    with pytest.raises(ConnectorError) as err:
        source(tmp_path).invoices()
    text = str(err.value)
    assert text.startswith("Xero: token refresh failed: HTTP 400 invalid_grant") and "reconnect the app" in text
    assert "xero-rt-0" not in text and "xero-app-secret" not in text and not err.value.transient


def test_the_tenant_comes_from_the_connections_endpoint(xero, tmp_path, monkeypatch):
    second = dict(xero.connections[0], id="c2", tenantId="00000000-1111-2222-3333-444444444444", tenantName="Other Org")
    xero.connections.append(second)
    with pytest.raises(ConnectorError, match=r"Xero: connections failed: the app is connected to 2 organisations "
                                             r"\(Demo Company \(NZ\) a46fcb6f.*Other Org 0000.*set ARFLOW_XERO_TENANT_ID"):
        source(tmp_path).client()
    monkeypatch.setenv("ARFLOW_XERO_TENANT_ID", second["tenantId"])
    xero.tenant_id = second["tenantId"]
    src = source(tmp_path)
    assert src.invoices() is not None and src.system == f"xero:{second['tenantId']}"
    assert xero.api_requests("/Invoices")[-1]["headers"]["xero-tenant-id"] == second["tenantId"]


def test_missing_settings_name_the_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("ARFLOW_XERO_BLOCK", "no-such-block")
    for k in ("ARFLOW_XERO_CLIENT_ID", "ARFLOW_XERO_REFRESH_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ARFLOW_XERO_CLIENT_SECRET", "s")
    with pytest.raises(NotConfigured, match="set ARFLOW_XERO_CLIENT_ID, ARFLOW_XERO_REFRESH_TOKEN"):
        source(tmp_path)


# ---- the faults Xero documents ------------------------------------------------------------------
def test_429_for_the_minute_waits_its_retry_after_then_reads(xero, tmp_path):
    src = source(tmp_path)
    src.client()
    xero.queue(429, {"Title": "Too Many Requests"}, {"Retry-After": "1", "X-Rate-Limit-Problem": "minute"})
    started = time.monotonic()
    assert len(src.invoices()) == 2
    assert time.monotonic() - started >= 1.0


def test_429_for_the_day_fails_at_once(xero, tmp_path):
    src = source(tmp_path)
    src.client()
    xero.queue(429, {"Title": "Too Many Requests"}, {"Retry-After": "43200", "X-Rate-Limit-Problem": "day"})
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=r"Xero: list open invoices \(page 1\) failed: rate limit \(day\)") as err:
        src.invoices()
    assert time.monotonic() - started < 5 and not err.value.transient


def test_5xx_is_retried_then_fails_naming_xero_the_operation_and_no_secret(xero, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "2")
    src = source(tmp_path)
    src.client()
    for _ in range(3):
        xero.queue(503)
    before = len(xero.api_requests())
    with pytest.raises(ConnectorError, match=r"Xero: list open invoices \(page 1\) failed: still failing after 2 "
                                             r"retries") as err:
        src.invoices()
    assert err.value.transient and len(xero.api_requests()) - before == 3   # the first try and 2 retries
    assert "xero-at-" not in str(err.value) and "Bearer" not in str(err.value)


def test_a_5xx_that_passes_is_answered(xero, tmp_path):
    src = source(tmp_path)
    src.client()
    xero.queue(500)
    assert len(src.invoices()) == 2


def test_a_400_is_not_retried_and_keeps_xeros_message(xero, tmp_path):
    src = source(tmp_path)
    src.client()
    xero.queue(400, sample("error_400_validation_contacts_openapi_example"))
    before = len(xero.api_requests())
    with pytest.raises(ConnectorError, match=r"HTTP 400: ValidationException A validation exception occurred The "
                                             r"contact name Buzz Lightyear is already assigned"):
        src.invoices()
    assert len(xero.api_requests()) - before == 1


def test_the_day_budget_reserve_skips_optional_calls_and_stops_before_spending_it(xero, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_XERO_DAY_RESERVE", "500")
    xero.day_budget = 603                       # after the invoice list, 602 left
    src = source(tmp_path)
    raw = src.invoices()
    links = dict(zip(raw["invoice_number"], raw["payment_link"]))
    assert links == {"INV-0027": ONLINE_URL, "INV-0038": ""}   # the second link would leave only the headroom
    assert src.aging_report() is None                            # 2 calls: not above reserve + 100 needed calls
    assert any("without a payment link today" in n for n in src.notes())
    assert any("Aged Receivables report needs 2 calls" in n for n in src.notes())
    xero.day_budget = 500                                        # another app spent the rest
    with pytest.raises(ConnectorError, match=r"Xero: list prepayments \(page 1\) failed: 499 calls left in the "
                                             r"organisation's day budget, at the reserve of 500"):
        src.payments()


def test_no_calls_left_this_minute_waits_for_the_next(xero, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_XERO_MINUTE_WAIT", "1")
    monkeypatch.setenv("ARFLOW_XERO_PAYMENT_LINKS", "false")
    xero.minute_seconds = 0    # the window does not pass by itself
    xero.minute_budget = 1
    src = source(tmp_path)
    started = time.monotonic()
    src.open_invoices()        # the answer says 0 left this minute
    assert src.min_left == 0
    xero.minute_budget = 60    # the next minute
    src.credit_notes()
    assert time.monotonic() - started >= 1.0 and src.min_left == 59


# ---- incremental pulls ----------------------------------------------------------------------------
def test_if_modified_since_keeps_the_mirror_current(xero, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    first = source(tmp_path, ledger)
    assert sorted(first.invoices()["invoice_number"]) == ["INV-0027", "INV-0038"]
    assert first.sync_info["mode"] == "full"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    xero.update("Invoices", INV_0027, later, Status="PAID", AmountDue=decimal.Decimal("0.00"))
    xero.add("Invoices", invoice("d0000000-0000-4000-8000-000000000001", BAYSIDE, "INV-0040", "2020-05-01",
                                 "2020-05-31", "99.95", updated=ms_date(later)))
    before = len(xero.requests)
    second = source(tmp_path, ledger)
    assert sorted(second.invoices()["invoice_number"]) == ["INV-0038", "INV-0040"]
    assert second.sync_info["mode"] == "if-modified-since"
    asked = [r for r in xero.requests[before:] if r["path"].endswith("/Invoices")]
    assert len(asked) == 1 and "If-Modified-Since" in asked[0]["headers"] and "Statuses" not in asked[0]["query"]
    # only the new invoice's online URL was asked for: the mirror keeps the others'
    links = [r["path"] for r in xero.requests[before:] if r["path"].endswith("/OnlineInvoice")]
    assert links == [f"/api.xro/2.0/Invoices/d0000000-0000-4000-8000-000000000001/OnlineInvoice"]
    assert second.invoices().set_index("invoice_number").loc["INV-0038", "payment_link"].startswith("https://in.xero.com/")


def test_a_failed_incremental_pull_leaves_the_mirror_and_position(xero, tmp_path, monkeypatch):
    monkeypatch.setenv("ARFLOW_HTTP_RETRIES", "1")
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    source(tmp_path, ledger).invoices()
    system = f"xero:{xero.tenant_id}"
    position = ledger.get_meta(f"sync:{system}")
    src = source(tmp_path, ledger)
    src.client()
    xero.queue(502)
    xero.queue(502)
    with pytest.raises(ConnectorError, match=r"Xero: list changed invoices \(page 1\) failed"):
        src.invoices()
    assert ledger.get_meta(f"sync:{system}") == position
    assert len(ledger.source_records(system)["Invoice"]) == 2


# ---- writes (off by default) ------------------------------------------------------------------------
def test_history_notes_are_off_by_default_and_written_when_asked(xero, tmp_path):
    assert load_policy(Path("policy.yaml")).connectors.xero.write_history is False
    src = source(tmp_path)
    src.add_history_note(INV_0027, "arflow 2020-05-04: first_reminder e-mailed to accounts@diisr.example")
    put = [r for r in xero.requests if r["method"] == "PUT"]
    assert [r["path"] for r in put] == [f"/api.xro/2.0/Invoices/{INV_0027}/History"]
    assert xero.history == [{"InvoiceID": INV_0027,
                             "Details": "arflow 2020-05-04: first_reminder e-mailed to accounts@diisr.example"}]


# ---- the command line ---------------------------------------------------------------------------------
def _cli(args, tmp_path, fake, **env):
    return arflow(args, {**fake.env(), "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                         **env})


@pytest.mark.usefixtures("prefect_server")
def test_check_connection_prints_what_it_sees(xero, tmp_path):
    p = _cli(["check-connection", "xero", "--json"], tmp_path, xero)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out == {"system": "xero", "organisation": "Demo Company (NZ)",
                   "tenant_id": "a46fcb6f-2773-40c4-a119-8aa08bca1e8e", "open_invoices": 2, "currencies": ["NZD"],
                   "customers": 2, "credit_notes_open": 0, "unallocated_cash": 0, "payment_links": 2,
                   "day_calls_left": out["day_calls_left"]}
    assert not [r for r in xero.requests if r["method"] in ("PUT", "POST") and r["path"] != "/connect/token"]
    xero.valid_refresh.clear()
    (tmp_path / "credentials" / "xero.json").unlink()
    p = _cli(["check-connection", "xero"], tmp_path, xero)
    assert p.returncode == 1 and "Xero: token refresh failed" in p.stderr


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_daily_run_reads_xero_and_reconciles_with_its_aging(xero, tmp_path):
    bad = invoice("e0000000-0000-4000-8000-000000000001", BAYSIDE, "BAD-1", "2020-04-01", None, "10.00")
    xero.add("Invoices", dict(bad, DueDateString="someday"))   # a due date nobody can read: quarantined
    pol = tmp_path / "policy.yaml"   # one bad row in three: above the default 5% that fails a run
    pol.write_text(Path("policy.yaml").read_text().replace("max_failure_share: 0.05", "max_failure_share: 0.5"))
    p = _cli(["run", "--source", "xero", "--as-of", "2020-05-04", "--json"], tmp_path, xero, ARFLOW_POLICY=str(pol))
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["source"] == "xero" and out["open_invoices"] == 3
    assert out["outcomes"]["quarantined"] == 1 and sum(out["outcomes"].values()) == 3
    assert any("No CRM" in n for n in out["notes"]) and any(n.startswith("Xero sync: full") for n in out["notes"])
    assert out["reconciliation"]["status"] == "matched"
    assert out["by_lane"] == {**out["by_lane"], "critical": 1, "early": 1}   # INV-0027 50 days late, INV-0038 10


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_the_payment_checkpoint_records_what_the_books_settled(xero, tmp_path):
    xero.add("Payments", dict(sample("payments_get_paged_openapi_example")["Payments"][0], Date=ms_date("2020-04-20"),
                              Invoice={"Type": "ACCREC", "InvoiceID": "7990ca35-8c13-4230-b412-f6cccbe793aa"}))
    p = _cli(["checkpoint", "--source", "xero", "--as-of", "2020-05-04", "--json"], tmp_path, xero)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["settled_at_source"] == 1
    history = Ledger(f"sqlite:///{tmp_path / 'l.db'}").payment_history(AS_OF)
    assert "7990ca35-8c13-4230-b412-f6cccbe793aa" in set(history["invoice_id"])


def test_xero_is_a_source_for_the_command_line_and_the_deployments(xero, tmp_path):
    from arflow.cli import _check_source
    from connectors.registry import open_source

    assert _check_source("xero") == "xero" and _check_source("xero", "salesforce") == "xero+salesforce"
    src = open_source("xero", data_dir=tmp_path, as_of=AS_OF)   # what a deployment's `source: xero` opens
    assert isinstance(src, XeroSource) and src.as_of == AS_OF
    assert sorted(src.invoices()["invoice_number"]) == ["INV-0027", "INV-0038"]
