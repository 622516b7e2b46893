"""The `arflow` command as a user runs it, stdout holding one JSON object (in this process: tests/cli.py;
the real console script in a real process: tests/e2e/test_cli_process.py)."""

import json
from pathlib import Path

import pytest

from tests.cli import in_folder
from tests.conftest import customer, invoice, make_source


def _run(args, tmp_path, **env):
    return in_folder(args, tmp_path, **env)


def test_run_json_prints_one_object_with_the_promised_fields(tmp_path):
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18"), invoice("I2", balance="-1.00"),
                                         invoice("I3", cid="C2", currency="EUR", due_date="2026-12-20")],
                      [customer("C1"), customer("C2", country="DE")] + [customer(f"K{i}") for i in range(40)])
    # 1 of 3 rows bad is above the default 5% threshold: loosen it for this small file.
    pol = tmp_path / "policy.yaml"
    pol.write_text(Path("policy.yaml").read_text().replace("max_failure_share: 0.05", "max_failure_share: 0.5"))
    p = _run(["run", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"], tmp_path, ARFLOW_POLICY=str(pol))
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)  # the whole of stdout is one JSON object
    assert out["as_of"] == "2026-11-23" and out["open_invoices"] == 3
    assert out["by_lane"] == {"current": 1, "early": 1, "late": 0, "critical": 0}
    assert out["by_bucket"]["d1_30"] == {"USD": {"count": 1, "amount": "1000.00"},
                                         "EUR": {"count": 0, "amount": "0.00"}}
    assert out["by_bucket"]["current"]["EUR"] == {"count": 1, "amount": "1000.00"}
    assert out["outcomes"] == {"action_today": 1, "no_action_due": 1, "held": 0, "quarantined": 1}
    assert out["quarantined"] == {"negative_balance": 1} and out["held"] == {}
    assert out["actions"] == {"nudge": 1}
    assert out["reconciliation"] == {"status": "skipped", "mismatched_customers": [], "tolerance": "1.00"}


def test_single_currency_buckets_are_flat(tmp_path):
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18", balance="12.30", amount="12.30")],
                      [customer("C1")])
    p = _run(["run", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["by_bucket"]["d1_30"] == {"count": 1, "amount": "12.30"}


@pytest.mark.parametrize("args,code,message", [
    (["run", "--as-of", "23/11/2026"], 2, "--as-of must be a date"),
    (["run", "--source", "csv:/nonexistent/folder"], 2, "is not a folder"),
    (["run", "--source", "oracle"], 2, "--source must be demo, csv:DIR, quickbooks, xero, stripe or chargebee"),
    (["run", "--crm", "pipedrive"], 2, "--crm must be salesforce or hubspot"),
    (["check-connection", "netsuite"], 2, "check-connection takes quickbooks, xero, salesforce, hubspot, stripe, chargebee or smtp"),
    (["run", "--bogus"], 2, "No such option"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, code, message):
    p = _run(args, tmp_path)
    assert p.returncode == code
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arflow: error:") and message in lines[0]


def test_unreadable_source_exits_1_with_one_line(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "invoices.csv").write_text("invoice_id,customer_id\nI1,C1\n")
    p = _run(["run", "--as-of", "2026-11-23", "--source", f"csv:{tmp_path / 'src'}", "--json"], tmp_path)
    assert p.returncode == 1 and p.stdout == ""
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("arflow: error: invoices:") and "lacks column(s)" in last


def test_bad_policy_file_exits_1_naming_the_field(tmp_path):
    pol = tmp_path / "bad.yaml"
    pol.write_text(Path("policy.yaml").read_text().replace("late_from: 15", "late_from: 0"))
    p = _run(["run", "--as-of", "2026-11-23", "--json"], tmp_path, ARFLOW_POLICY=str(pol))
    assert p.returncode == 1 and p.stdout == ""
    assert "lane boundaries" in p.stderr.strip().splitlines()[-1]


def test_checkpoint_json_with_a_bank_file(tmp_path):
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18", invoice_number="A-100"),
                                         invoice("I2", due_date="2026-11-18", invoice_number="A-101")],
                      [customer("C1", name="Acme Corp")],
                      payments=[{"payment_id": "P1", "customer_id": "C1", "amount": "1000.00", "currency": "USD",
                                 "received_date": "2026-11-20", "reference": "A-100"}])
    bank = tmp_path / "bank.csv"
    bank.write_text("date,amount,currency,reference,payer_name\n"
                    "2026-11-21,400.00,USD,INV A-101,ACME CORP\n"
                    "2026-11-21,12.50,USD,,Stranger\n"
                    "2026-13-01,5.00,USD,x,y\n")
    p = _run(["checkpoint", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--bank-file", str(bank), "--json"],
             tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["payments_read"] == 4 and out["quarantined"] == 1
    assert out["applied"] == {"exact": 1, "reference_partial": 1}
    assert (out["partial"], out["unapplied"], out["invoices_closed"], out["receipts_queued"]) == (1, 1, 1, 1)
    assert out["auto_match_rate"] == round(2 / 3, 4)
    assert out["cash_read"] == {"USD": "1412.50"} and out["cash_unapplied"] == {"USD": "12.50"}
    # The next morning the partly paid invoice is chased for what is left, the paid one not at all.
    p = _run(["run", "--as-of", "2026-11-24", "--source", f"csv:{src}", "--json"], tmp_path)
    day = json.loads(p.stdout)
    assert day["no_action_due"].get("nothing_owed") == 1
    assert day["by_bucket"]["d1_30"] == {"count": 1, "amount": "600.00"}   # the paid one is not open


def test_checkpoint_missing_bank_file_is_a_usage_error(tmp_path):
    p = _run(["checkpoint", "--bank-file", str(tmp_path / "none.csv")], tmp_path)
    assert p.returncode == 2 and "is not a file" in p.stderr
