from tests.conftest import AS_OF, customer, invoice, make_source
from tests.pipeline import run

CUSTOMERS = [customer(f"C{i}") for i in range(1, 5)]
# as of 2026-11-23: I1 due 2026-10-31 (23 days, d1_30), I2 due 2026-12-10 (current)
INVOICES = [invoice("I1", "C1", balance="400.00"), invoice("I2", "C1", due_date="2026-12-10", balance="100.00"),
            invoice("I3", "C2", due_date="2026-08-01", issue_date="2026-07-01", balance="55.50")]


def _report(c1_d1_30="400.00", c1_total="500.00", c2=("", "", "", "", "55.50"), c2_total="55.50"):
    return [{"customer_id": "C1", "current": "100.00", "d1_30": c1_d1_30, "d31_60": "", "d61_90": "", "d91_plus": "",
             "total": c1_total},
            {"customer_id": "C2", "current": c2[0], "d1_30": c2[1], "d31_60": c2[2], "d61_90": c2[3],
             "d91_plus": c2[4], "total": c2_total}]


def test_matching_report_passes_and_nobody_is_held(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report()), AS_OF, policy)
    rec = out["reconciliation"]
    assert rec.summary() == {"status": "matched", "mismatched_customers": [], "tolerance": "1.00"}
    assert "held" not in set(out["planned"]["outcome"])


def test_difference_within_tolerance_matches(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report("400.99", "500.99")), AS_OF, policy)
    assert out["reconciliation"].status == "matched"


def test_difference_beyond_tolerance_holds_that_customer_only(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report("401.01", "501.01")), AS_OF, policy)
    rec = out["reconciliation"]
    assert rec.status == "mismatched" and rec.mismatched_customers == ["C1"]
    p = out["planned"].set_index("invoice_id")
    assert (p.loc[["I1", "I2"], "reason"] == "reconciliation_mismatch").all()
    assert p.loc["I3", "outcome"] != "held"
    bad = rec.results[(rec.results.customer_id == "C1") & (rec.results.status == "mismatched")]
    assert set(bad["bucket"]) == {"d1_30", "total"}


def test_same_total_in_the_wrong_bucket_is_a_mismatch(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report(c2=("", "55.50", "", "", ""))), AS_OF, policy)
    assert out["reconciliation"].mismatched_customers == ["C2"]


def test_customer_missing_from_the_books_is_a_mismatch(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report()[:1]), AS_OF, policy)
    assert out["reconciliation"].mismatched_customers == ["C2"]


def test_unreadable_report_row_is_quarantined_and_its_customer_held(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS, aging=_report(c1_total="999.00")), AS_OF, policy)
    q = out["quarantine"]
    assert q[q.entity == "aging_report"]["reason"].tolist() == ["total_not_sum_of_buckets"]
    assert out["reconciliation"].mismatched_customers == ["C1"]


def test_no_report_is_skipped_loudly_never_a_pass(tmp_path, policy):
    out = run(make_source(tmp_path, INVOICES, CUSTOMERS), AS_OF, policy)
    assert out["reconciliation"].summary()["status"] == "skipped"


def test_compares_in_the_customers_currency(tmp_path, policy):
    inv = [invoice("J1", "C3", currency="JPY", amount="120000", balance="120000", due_date="2026-12-20")]
    rep = [{"customer_id": "C3", "current": "120000", "d1_30": "", "d31_60": "", "d61_90": "", "d91_plus": "",
            "total": "120000"}]
    assert run(make_source(tmp_path, inv, CUSTOMERS, aging=rep), AS_OF, policy)["reconciliation"].status == "matched"
