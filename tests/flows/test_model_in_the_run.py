"""The model inside the daily run and the backtest, as a user runs them: the `arflow` command
(in-process, tests/cli.py), the real anthropic SDK, the local fake API (connectors/fake_anthropic.py) on 127.0.0.1."""

import json
import os
import sqlite3

import pytest
from prefect.settings import PREFECT_API_URL

from arflow.config import ROOT
from connectors.fake_anthropic import FakeAnthropic
from tests.cli import arflow, env_delta

LABELS = ROOT / "prompts" / "backtest" / "demo_labels.csv"
KEY = "sk-ant-test-secret-key-0000"


@pytest.fixture
def fake():
    with FakeAnthropic() as f:
        yield f


def _run(args, tmp_path, fake=None, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    full_env.update({"ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
                     "PREFECT_API_URL": PREFECT_API_URL.value() or "", **env})
    if fake is not None:
        full_env.update(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake.url)
    return arflow(args, env_delta(full_env))


def _sql(tmp_path, query):
    with sqlite3.connect(tmp_path / "l.db") as c:
        return c.execute(query).fetchall()


def test_a_run_with_the_model_reports_its_cost_and_asks_only_what_changed(tmp_path, fake):
    assert _run(["seed-demo", "--as-of", "2026-11-23"], tmp_path).returncode == 0
    p = _run(["run", "--as-of", "2026-11-23", "--json"], tmp_path, fake)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["llm_calls"] == len(fake.requests) > 0
    assert out["input_tokens"] > 0 and out["output_tokens"] > 0 and out["cache_read_tokens"] > 0
    assert out["cost_usd"] > 0
    assert out["scoring"]["by_model"] > 0 and out["scoring"]["fallback"] == {}
    # The ledger holds every call with its cost, and the scores with the prompt version.
    calls = _sql(tmp_path, "select count(*), sum(cost_micro_usd), min(prompt_version) from llm_calls")[0]
    assert calls[0] == out["llm_calls"] and calls[1] == round(out["cost_usd"] * 1_000_000)
    assert calls[2] == "score-2026.11-1"
    assert _sql(tmp_path, "select count(*) from llm_scores")[0][0] == out["scoring"]["asked"]
    # The key never shows in what the run prints or stores.
    assert KEY not in p.stdout + p.stderr
    assert not _sql(tmp_path, f"select 1 from audit_log where detail like '%{KEY}%'")
    # The same day again: nothing changed, nothing is asked, nothing is paid.
    n = len(fake.requests)
    again = json.loads(_run(["run", "--as-of", "2026-11-23", "--json"], tmp_path, fake).stdout)
    assert again["llm_calls"] == 0 and again["cost_usd"] == 0 and len(fake.requests) == n
    assert again["scoring"]["cached"] == out["scoring"]["asked"]


def test_without_a_key_the_rules_run_alone(tmp_path, fake):
    assert _run(["seed-demo", "--as-of", "2026-11-23"], tmp_path).returncode == 0
    p = _run(["run", "--as-of", "2026-11-23", "--json"], tmp_path)
    out = json.loads(p.stdout)
    assert out["llm_calls"] == 0 and out["scoring"] == {"scorer": "rules"} and not fake.requests


def test_send_with_the_model_refuses_to_start_until_a_backtest_passed(tmp_path, fake):
    assert _run(["seed-demo", "--as-of", "2026-11-23"], tmp_path).returncode == 0
    smtp = {"ARFLOW_SMTP_HOST": "127.0.0.1", "ARFLOW_SMTP_PORT": "1"}  # never reached: the run stops before
    p = _run(["run", "--as-of", "2026-11-23", "--mode", "send"], tmp_path, fake, **smtp)
    assert p.returncode == 1 and "needs a passing backtest of prompt score-2026.11-1" in p.stderr
    assert _sql(tmp_path, "select count(*) from outbox where mode = 'live'")[0][0] == 0
    # A backtest of the rules does not unlock the model.
    assert _run(["backtest", "--labels", str(LABELS), "--as-of", "2026-11-23"], tmp_path).returncode == 0
    assert _run(["run", "--as-of", "2026-11-23", "--mode", "send"], tmp_path, fake, **smtp).returncode == 1
    # The model's backtest, through the fake API: agreement per field, confusion tables, recorded.
    b = _run(["backtest", "--labels", str(LABELS), "--as-of", "2026-11-23", "--json"], tmp_path, fake)
    assert b.returncode == 0, b.stderr[-2000:]
    r = json.loads(b.stdout)
    assert r["scorer"] == "model" and r["n"] == 50 and r["passed"] and r["llm_calls"] == 3
    assert r["tone_agreement"] >= 0.8 and r["escalation_agreement"] >= 0.8
    assert sum(sum(row.values()) for row in r["confusion"]["tone"].values()) == 50
    assert _sql(tmp_path, "select scorer, passed from backtests order by id") == [("rules", 1), ("model", 1)]
    # Now send mode gets past the gate (and stops at the unreachable mail server instead).
    p = _run(["run", "--as-of", "2026-11-23", "--mode", "send"], tmp_path, fake, **smtp)
    assert "needs a passing backtest" not in p.stderr


def test_a_backtest_below_the_threshold_fails_and_does_not_unlock_send(tmp_path):
    def contrary(request, user):
        items = json.loads(user[user.index("["):])
        return {"scores": [{"invoice_id": f["invoice_id"], "risk_score": 50, "tone": "friendly",
                            "escalation": "csm" if f["rules_escalation"] != "csm" else "owner",
                            "escalation_reason": "ask", "rationale": "x"} for f in items]}

    with FakeAnthropic({"record_scores": contrary}) as f:
        b = _run(["backtest", "--labels", str(LABELS), "--as-of", "2026-11-23", "--json"], tmp_path, f)
    r = json.loads(b.stdout)
    assert b.returncode == 1 and not r["passed"] and r["escalation_agreement"] < 0.8
    assert _sql(tmp_path, "select passed from backtests") == [(0,)]


def test_a_bad_label_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text(LABELS.read_text().replace(",friendly,none,", ",cheerful,none,", 1))
    p = _run(["backtest", "--labels", str(bad)], tmp_path)
    assert p.returncode == 2 and "tone or escalation label outside" in p.stderr


def test_the_replies_command_triages_a_mailbox_once(tmp_path):
    from tests.conftest import make_source
    from tests.test_triage import MBOX, portfolio

    invoices, customers = portfolio()
    src = make_source(tmp_path / "src", invoices.to_dict("records"), customers.to_dict("records"))
    args = ["replies", "--from", str(MBOX), "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"]
    p = _run(args, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["new"] == out["recorded"] == 11 and out["unmatched"] == 1 and out["flagged"] == 1
    assert out["by_class"]["question"] == 3 and out["classifier"] == {"model": 0, "rules": 11, "rules_fallback": 0}
    again = json.loads(_run(args, tmp_path).stdout)
    assert again["new"] == 0 and again["replies"] == []
    assert _sql(tmp_path, "select count(*) from replies")[0][0] == 11
    # A reply paused C1's invoice: today's run holds it instead of sending the reminder.
    run = json.loads(_run(["run", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"], tmp_path).stdout)
    assert run["held"].get("paused", 0) >= 1
    rep = json.loads(_run(["report", "--as-of", "2026-11-23", "--json"], tmp_path).stdout)
    assert rep["operating"]["replies_received"]["triaged_by_class"] == {
        "complaint": 1, "dispute": 1, "legal_threat": 1, "out_of_office": 1, "paid": 1, "promise_to_pay": 1,
        "question": 3, "refund_request": 1, "wrong_contact": 1}
    p = _run(["replies", "--from", str(tmp_path / "nope.mbox")], tmp_path)
    assert p.returncode == 2 and "no such file" in p.stderr
