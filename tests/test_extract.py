"""Bad input is quarantined with its reason; nothing is lost; every open row ends in one place."""

import pandas as pd
import pytest

from tasks.quality import DataQualityError
from tests.conftest import AS_OF, customer, invoice, make_source
from tests.pipeline import run

GOOD = [invoice(f"G{i}", "C1") for i in range(60)]


@pytest.mark.parametrize("bad,reason", [
    (invoice("B", "C1", issue_date="2026-13-01"), "bad_date"),
    (invoice("B", "C1", due_date="10/31/2026"), "bad_date"),
    (invoice("B", "C1", due_date="2026-09-01", issue_date="2026-10-01"), "bad_date"),
    (invoice("B", "C1", amount="12,00.0"), "bad_amount"),
    (invoice("B", "C1", balance="1.005"), "bad_amount"),
    (invoice("B", "C1", due_date="", terms=""), "missing_due_date_and_terms"),
    (invoice("B", "C1", due_date="", terms="whenever"), "unknown_terms"),
    (invoice("B", "C1", balance="-5.00"), "negative_balance"),
    (invoice("B", "C1", balance="2000.00"), "balance_exceeds_amount"),
    (invoice("B", "C9"), "unknown_customer"),
    (invoice("B", ""), "unknown_customer"),
    (invoice("B", "C1", currency="USX"), "unknown_currency"),
    (invoice("", "C1"), "missing_invoice_id"),
    (invoice("B", "C1", status="pending"), "bad_status"),
    (invoice("B", "C1", autopay="maybe"), "bad_boolean"),
])
def test_each_bad_row_is_quarantined_with_its_reason(tmp_path, policy, bad, reason):
    out = run(make_source(tmp_path, GOOD + [bad], [customer("C1")]), AS_OF, policy)
    q = out["quarantine"]
    assert q["reason"].tolist() == [reason]
    assert q["source_row"].tolist() == [len(GOOD) + 2]
    assert len(out["planned"]) == len(GOOD)


def test_duplicate_invoice_ids_quarantine_every_copy(tmp_path, policy):
    rows = GOOD + [invoice("D", "C1"), invoice("D", "C1", amount="5.00", balance="5.00")]
    out = run(make_source(tmp_path, rows, [customer("C1")]), AS_OF, policy)
    assert out["quarantine"]["reason"].tolist() == ["duplicate_invoice_id"] * 2
    assert "D" not in set(out["planned"]["invoice_id"])


def test_first_reason_in_suite_order_wins_and_all_are_kept(tmp_path, policy):
    bad = invoice("B", "C9", issue_date="garbage", amount="x")
    out = run(make_source(tmp_path, GOOD + [bad], [customer("C1")]), AS_OF, policy)
    row = out["quarantine"].iloc[0]
    assert row["reason"] == "unknown_customer"
    assert "issue_date" in row["detail"] and "amount" in row["detail"]
    assert '"amount": "x"' in row["raw"]


def test_paid_and_void_rows_are_not_open_invoices(tmp_path, policy):
    rows = GOOD + [invoice("P", "C1", status="paid", balance="0.00"), invoice("V", "C1", status="VOID")]
    out = run(make_source(tmp_path, rows, [customer("C1")]), AS_OF, policy)
    assert len(out["planned"]) == len(GOOD) and out["quarantine"].empty


def test_partly_paid_invoice_ages_its_open_balance(tmp_path, policy):
    out = run(make_source(tmp_path, [invoice("I1", amount="1000.00", balance="250.40")], [customer("C1")]), AS_OF, policy)
    row = out["planned"].iloc[0]
    assert row["effective_balance_minor"] == 25040 and row["amount_minor"] == 100000


def test_bad_customer_record_quarantines_its_invoices_with_that_reason(tmp_path, policy):
    customers = [customer("C1"), customer("C2", segment="vip")] + [customer(f"K{i}") for i in range(30)]
    rows = GOOD + [invoice("X", "C2")]
    out = run(make_source(tmp_path, rows, customers), AS_OF, policy)
    q = out["quarantine"].set_index("entity")
    assert q.loc["customer", "reason"] == "bad_segment"
    assert q.loc["invoice", "reason"] == "customer_quarantined"


def test_a_hop_over_the_failure_threshold_fails_the_run(tmp_path, policy):
    rows = [invoice(f"G{i}", "C1") for i in range(10)] + [invoice(f"B{i}", "C1", amount="?") for i in range(3)]
    with pytest.raises(DataQualityError, match=r"extract_aging: 3 of 13 rows .* above the 5.0% threshold"):
        run(make_source(tmp_path, rows, [customer("C1")]), AS_OF, policy)


def test_terms_give_the_due_date_when_the_invoice_has_none(tmp_path, policy):
    rows = [invoice("I1", issue_date="2026-10-15", due_date="", terms="Net 15"),
            invoice("I2", issue_date="2026-09-30", due_date="", terms="eom30")]
    out = run(make_source(tmp_path, rows, [customer("C1")]), AS_OF, policy)
    p = out["planned"].set_index("invoice_id")
    assert p.loc["I1", "due_date"] == pd.Timestamp("2026-10-30") and p.loc["I1", "days_past_due"] == 24
    assert p.loc["I2", "due_date"] == pd.Timestamp("2026-10-30") and p.loc["I2", "bucket"] == "d1_30"


def test_the_check_before_a_send_reads_holds_as_the_run_parses_them(policy):
    """customer_holds (what delivery re-reads right before a send) agrees with parse_customers on
    the customer id, the opt-out and the pause, whatever the file holds."""
    from tasks.extract import customer_holds, parse_customers

    rows = [customer("C1"), customer("C2", opt_out=" TRUE "), customer("C3", opt_out="maybe"),
            customer("C4", paused_until="2026-12-01"), customer("C5", paused_until="12/01/2026"),
            customer("", opt_out="false"), customer("C7", opt_out="", paused_until="")]
    raw = pd.DataFrame(rows, dtype=object)
    raw.insert(0, "source_row", range(1, len(raw) + 1))
    holds = customer_holds(raw)
    full = parse_customers(raw, policy)
    pd.testing.assert_frame_equal(holds, full[["customer_id", "opt_out", "paused_until"]])
    assert holds["opt_out"].tolist() == [False, True, False, False, False, False, False]
    assert holds["paused_until"].notna().tolist() == [False, False, False, True, False, False, False]
    assert holds["customer_id"].isna().tolist() == [False] * 5 + [True, False]


# ---- issue 21, item 14: addresses arflow sends from or copies, and the link a customer clicks ------
@pytest.mark.parametrize("field,value", [
    ("owner_ae_email", "ae@example.com\r\nBcc: all@example.com"),   # a line break: another From, a header
    ("owner_csm_email", "csm@example.com, boss@example.com"),       # a list
    ("cfo_email", "a@x.example, b@x.example"),                      # two people copied
    ("cfo_email", "cfo@x.example; cc@x.example"),
    ("owner_ae_email", "not an address"),
])
def test_an_owner_or_cfo_address_that_is_not_one_address_quarantines_the_customer(tmp_path, policy, field, value):
    from connectors.sources import CUSTOMER_COLUMNS
    from tests.conftest import write_csv

    customers = [customer("C1"), customer("C2", **{field: value})] + [customer(f"K{i}") for i in range(30)]
    folder = make_source(tmp_path, GOOD + [invoice("X", "C2")], customers)
    write_csv(folder / "customers.csv", tuple(CUSTOMER_COLUMNS) + ("cfo_email",), customers)
    out = run(folder, AS_OF, policy)
    q = out["quarantine"].set_index("entity")
    assert q.loc["customer", "reason"] == "bad_contact" and q.loc["customer", "record_id"] == "C2"
    assert q.loc["invoice", "reason"] == "customer_quarantined"
    assert "X" not in set(out["planned"]["invoice_id"])


def test_one_owner_and_cfo_address_each_or_none_is_fine(tmp_path, policy):
    from connectors.sources import CUSTOMER_COLUMNS
    from tests.conftest import write_csv

    customers = [customer("C1", cfo_email="cfo@c1.example.com"), customer("C2", owner_csm_email="", cfo_email="")]
    folder = make_source(tmp_path, [invoice("I1"), invoice("I2", "C2")], customers)
    write_csv(folder / "customers.csv", tuple(CUSTOMER_COLUMNS) + ("cfo_email",), customers)
    out = run(folder, AS_OF, policy)
    assert out["quarantine"].empty and len(out["planned"]) == 2


@pytest.mark.parametrize("link", ["javascript:alert(document.cookie)", "JavaScript:pay()", "data:text/html,<b>x</b>",
                                  "file:///etc/passwd", "ftp://pay.example.com/x", "https://pay.example.com/a b",
                                  "//pay.example.com/x"])
def test_a_payment_link_that_is_not_a_web_address_is_quarantined(tmp_path, policy, link):
    out = run(make_source(tmp_path, GOOD + [invoice("B", "C1", payment_link=link)], [customer("C1")]), AS_OF, policy)
    assert out["quarantine"]["reason"].tolist() == ["bad_payment_link"]
    assert len(out["planned"]) == len(GOOD)


def test_web_payment_links_and_none_pass(tmp_path, policy):
    rows = [invoice("A", payment_link="HTTPS://pay.example.com/a?x=1&y=2"), invoice("B", payment_link="http://x.example/p"),
            invoice("C", payment_link="")]
    out = run(make_source(tmp_path, rows, [customer("C1")]), AS_OF, policy)
    assert out["quarantine"].empty and len(out["planned"]) == 3
