"""The pilot cohort (issue 23, item 11): the policy names the customers, segments or a percentage
that get real sends; everyone else stays in dry run, and the run's JSON and artifacts show both."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from arflow.policy import load_policy
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from tasks import pilot
from tests.conftest import customer, invoice, make_source

MON, TUE = dt.date(2026, 11, 23), dt.date(2026, 11, 30)


def _pilot_policy(folder: Path, block: str) -> Path:
    text = Path("policy.yaml").read_text()
    start = text.index("pilot:")
    end = text.index("# Cadence.")
    path = folder / "policy.yaml"
    path.write_text(text[:start] + block + "\n\n" + text[end:])
    return path


def test_only_the_cohort_is_sent_and_the_rest_stays_a_dry_run(env, smtp, monkeypatch):  # noqa: F811
    pol = _pilot_policy(env, "pilot:\n  enabled: true\n  customers: [C1]\n  segments: [strategic]\n  percent: 0")
    monkeypatch.setenv("ARFLOW_POLICY", str(pol))
    src = make_source(env / "src", [invoice("I1", due_date="2026-11-18"), invoice("I2", "C2", due_date="2026-11-18"),
                                    invoice("I3", "C3", due_date="2026-11-18"),
                                    invoice("I4", "C4", due_date="2026-11-18")],
                      [customer("C1"), customer("C2", segment="strategic"), customer("C3"), customer("C4")])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="send")
    assert s["pilot"] == {"enabled": True, "live_customers": 2, "dry_run_customers": 2, "live_messages": 2,
                          "dry_run_messages": 2}
    assert s["sent"] == 2
    assert sorted(rcpt[0] for rcpt, _ in smtp.messages) == ["ap@c1.example.com", "ap@c2.example.com"]
    box = Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.Outbox)
    modes = dict(zip(box["customer_id"], box["mode"]))
    assert modes == {"C1": "live", "C2": "live", "C3": "dry-run", "C4": "dry-run"}
    assert set(box.loc[box["mode"] == "dry-run", "status"]) == {"planned"}
    emls = sorted(p.name for p in Path(s["run_folder"]).glob("*.eml"))
    assert emls == ["C3_2026-11-23_email.eml", "C4_2026-11-23_email.eml"]  # what they would have got
    # A week on, the same split; the dry-run half moves through the cadence on its own touches, and
    # still nothing of theirs reaches the SMTP server.
    s2 = daily_ar(as_of=TUE, source=f"csv:{src}", mode="send")
    assert (s2["pilot"]["live_customers"], s2["pilot"]["dry_run_customers"]) == (2, 2)
    assert {rcpt[0] for rcpt, _ in smtp.messages} == {"ap@c1.example.com", "ap@c2.example.com"}
    box = Ledger(f"sqlite:///{env / 'ledger.db'}").frame(m.Outbox)
    week = box[box["as_of"] == TUE]
    dry, live = week[week["mode"] == "dry-run"], week[week["mode"] == "live"]
    assert set(dry["customer_id"]) == {"C3", "C4"} and set(live["customer_id"]) == {"C1", "C2"}
    # Planned from their own dry-run touches, they are at the step the live half is at, not back at the first.
    assert set(dry["step"]) == set(live.loc[live["customer_id"] == "C1", "step"]) and "nudge" not in set(dry["step"])
    from tasks.report import markdown, table_rows  # the run's two artifacts

    assert "**Pilot:** 2 customer(s) live (2 message(s)); 2 in dry run (2 message(s) rendered, not sent)" \
        in markdown(s)
    assert {r["key"]: r["value"] for r in table_rows(s) if r["section"] == "pilot"} == \
        {"live_customers": 2, "live_messages": 2, "dry_run_customers": 2, "dry_run_messages": 2}


def test_a_percentage_is_a_stable_share_by_customer_id(tmp_path):
    pol = load_policy(_pilot_policy(tmp_path, "pilot:\n  enabled: true\n  percent: 20"))
    ids = [f"CUST-{n:05d}" for n in range(5000)]
    day1 = pd.DataFrame({"customer_id": ids, "segment": "standard"})
    day2 = pd.DataFrame({"customer_id": ids[::-1][:4000], "segment": "transactional"})  # other rows, other day
    one, two = pilot.cohort(day1, pol, "send"), pilot.cohort(day2, pol, "draft")
    assert 0.18 < len(one) / len(ids) < 0.22
    assert two == {c for c in one if c in set(day2["customer_id"])}  # the same customers, whatever the day
    assert pilot.cohort(day1, pol, "dry-run") is None  # a dry run sends nobody anyway
    assert pilot.cohort(day1, load_policy("policy.yaml"), "send") is None  # off: everyone is live
