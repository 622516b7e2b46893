"""The policy simulator: calibrated on the IBM data, deterministic per seed, the flows' own steps
(tasks/recipe.py, which the flows call too), and its central claims (contacting customers lowers
DSO; the static schedule reproduces the data's days to settle)."""

from __future__ import annotations

import json

import pytest
import yaml

from arflow.config import ROOT
from connectors.simulated import load_behaviour
from flows import simulate as sim
from tasks.calibration import fit
from tests.cli import arflow

IBM = ROOT / "tests" / "data" / "ibm_ar" / "WA_Fn-UseC_-Accounts-Receivable.csv"


def test_the_behaviour_file_holds_what_the_ibm_data_gives():
    stored = yaml.safe_load((ROOT / "simulation.yaml").read_text())["calibration"]
    fitted = fit(IBM)
    for key in ("invoices", "customers", "terms_days", "mean_days_to_settle", "paper_share", "dispute_rate",
                "paper_effect_days", "dispute_effect_days", "customer_effect_quantiles", "residual_quantiles"):
        assert stored[key] == fitted[key], key
    # The data's published facts (SOURCES.md): net 30, 22.7% disputed, about 26 days to settle.
    assert fitted["terms_days"] == 30 and fitted["dispute_rate"] == 0.227
    assert 26 <= fitted["mean_days_to_settle"] <= 27
    assert fitted["dispute_effect_days"] > 0 and fitted["paper_effect_days"] > 0


@pytest.mark.slow
def test_same_seed_same_numbers_and_another_seed_differs():
    a = sim.simulate(days=45, customers=25, policy="default", seed=7)
    b = sim.simulate(days=45, customers=25, policy="default", seed=7)
    c = sim.simulate(days=45, customers=25, policy="default", seed=8)
    for r in (a, b, c):
        r.pop("seconds")
    assert a == b
    assert a["invoices_billed"] > 0 and a["series"]
    assert (a["billed_usd_minor"], a["series"]) != (c["billed_usd_minor"], c["series"])


@pytest.mark.slow
def test_contact_lowers_dso_and_the_static_schedule_settles_like_the_ibm_data():
    common = {"days": 150, "customers": 80, "seed": 3}
    silent, static, default = sim.run_many([{**common, "policy": p} for p in ("silent", "static", "default")], 2)
    # Nobody contacted: no e-mail, no decision, and customers pay later.
    assert silent["touches_per_invoice"] == 0 and silent["human_decisions_per_week"] == 0
    assert static["touches_per_invoice"] > 0 and default["touches_per_invoice"] > 0
    assert silent["dso_countback"] > default["dso_countback"]
    assert silent["dso_countback"] > static["dso_countback"]
    assert silent["days_to_settle"] > static["days_to_settle"]
    # Net 30 with the calibrated behaviour: within a few days of the data's 26.4 days to settle.
    ibm = load_behaviour()["calibration"]["mean_days_to_settle"]
    assert abs(static["days_to_settle"] - ibm) <= 3, static["days_to_settle"]
    # The default policy keeps firm e-mails away from strategic and at-risk accounts; static does not.
    assert default["wrong_tone_touches"] == 0
    assert static["wrong_tone_touches"] >= default["wrong_tone_touches"]
    # Every generated record passed the hops' suites on the days they ran.
    assert default["suite_spot_checks"]["days"] == 2 and default["suite_spot_checks"]["quarantined"] == 0  # Jan 5, Apr 1


@pytest.mark.usefixtures("prefect_server")
def test_the_command_compares_policies_under_three_assumptions(tmp_path):
    page = tmp_path / "sim.html"
    md = tmp_path / "sim.md"
    out = arflow(["simulate", "--days", "40", "--customers", "8", "--compare", "static,default", "--sensitivity",
                  "--json", "--html", str(page), "--markdown", str(md), "--seed", "5"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["policies"] == ["static", "default"]
    assert report["scenarios"] == ["pessimistic", "central", "optimistic"]
    assert len(report["runs"]) == 6 and {(r["policy"], r["scenario"]) for r in report["runs"]} == {
        (p, s) for p in ("static", "default") for s in ("pessimistic", "central", "optimistic")}
    assert [s["scenario"] for s in report["sensitivity"]] == ["pessimistic", "central", "optimistic"]
    dso = next(row for row in report["table"] if row["metric"] == "dso_countback")
    assert set(dso) >= {"static@central", "default@optimistic"}
    text = page.read_text()
    assert 'id="dso-over-time"' in text and "Sensitivity" in text and "<script src" not in text
    assert "| DSO, countback (days) |" in md.read_text()

    bad = arflow(["simulate", "--days", "5", "--scenario", "rosy"])
    assert bad.returncode == 2 and "rosy" in bad.stderr


@pytest.mark.usefixtures("prefect_server")
def test_a_simulated_policy_can_score_with_the_model_and_reports_its_cost():
    out = arflow(["simulate", "--days", "30", "--customers", "20", "--model", "fake", "--json", "--seed", "4"])
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)["runs"][0]
    llm = run["llm"]
    assert llm["llm_calls"] > 0 and llm["input_tokens"] > 0 and llm["cost_usd"] > 0
    assert llm["invoice_days"] > 0 and 0 < llm["cost_per_invoice_day_usd"] < 0.002  # the goal: 50x under $0.10
    assert llm["model"] == "claude-sonnet-4-5"
    rules = sim.simulate(days=30, customers=20, policy="default", seed=4)
    assert rules["llm"] is None and rules["invoices_billed"] == run["invoices_billed"]
    bad = arflow(["simulate", "--days", "5", "--model", "claude"])
    assert bad.returncode == 2 and "--model must be fake" in bad.stderr


def test_the_comparison_writes_shares_as_percentages_and_days_as_days():
    """0.7 decisions a week, a DSO change of 0.8 days and a recovery rate of 1.0 read as what they are."""
    from tasks.simulation import markdown

    run = {"customers": 500, "days": 365, "start": "2026-01-05", "seed": 1, "measured_from": "2026-03-06",
           "behaviour_version": "v", "scenario": "central", "policy": "static",
           "by_tier": {t: {"recovery_rate": 1.0, "days_to_pay_after_due": -0.4} for t in
                       ("current", "early", "late", "critical")}}
    table = [{"metric": "dso_countback", "label": "DSO", "static@central": 28.3},
             {"metric": "bad_debt_rate", "label": "Bad debt", "static@central": 0.013},
             {"metric": "human_decisions_per_week", "label": "Decisions", "static@central": 0.7},
             {"metric": "touches_per_invoice", "label": "E-mails", "static@central": 0.14}]
    sens = [{"scenario": "central", "dso_countback_change": 0.8, "days_to_settle_change": -0.3,
             "bad_debt_rate_change": 0.011, "wrong_tone_touches_change": -2, "arr_lost_to_churn_minor_change": -63537850}]
    for row in table:
        row["default@central"] = row["static@central"]
    md = markdown({"policies": ["static", "default"], "scenarios": ["central"], "table": table,
                   "sensitivity": sens, "runs": [run]})
    assert "| DSO | 28.3 | 28.3 |" in md and "| Bad debt | 1.3% | 1.3% |" in md
    assert "| Decisions | 0.70 | 0.70 |" in md and "| E-mails | 0.14 | 0.14 |" in md
    assert "| central | 0.80 | -0.30 | 1.1% | -2 | -635,378.50 |" in md
    assert "| static | 100.0% / -0.40 d |" in md
    sens[0]["bad_debt_rate_change"] = -0.0002  # a change that rounds away has no sign
    md = markdown({"policies": ["static", "default"], "scenarios": ["central"], "table": table,
                   "sensitivity": sens, "runs": [run]})
    assert "| central | 0.80 | -0.30 | 0.0% | -2 | -635,378.50 |" in md


def test_the_world_answers_the_check_before_a_send_as_its_full_read_does():
    """The simulated billing system answers by id (as a connected one does, right before a
    send) with exactly the rows of its full read: open, partly and recently paid invoices alike."""
    import datetime as dt

    from connectors.simulated import SimulatedWorld

    start = dt.date(2026, 1, 5)
    world = SimulatedWorld(customers=40, start=start, seed=3, behaviour=load_behaviour())
    for k in range(75):
        world.start_day(start + dt.timedelta(days=k))
    full = world.invoices()
    assert set(full["status"]) == {"open", "paid"}
    some = set(full["invoice_id"].iloc[::3]) | {"SIMINV-999999"}  # and one the system never had
    fresh = world.fresh_invoices(some)
    expected = full[full["invoice_id"].isin(some)].drop(columns="source_row").sort_values("invoice_id")
    assert fresh.drop(columns="source_row").sort_values("invoice_id").reset_index(drop=True).equals(
        expected.reset_index(drop=True))
    people = world.fresh_customers(set(fresh["customer_id"]))
    everyone = world.customers()
    assert people.drop(columns="source_row").reset_index(drop=True).equals(
        everyone[everyone["customer_id"].isin(set(fresh["customer_id"]))].drop(columns="source_row")
        .reset_index(drop=True))


def test_bad_debt_is_measured_on_one_cohort_whatever_the_policy_writes_off():
    """A write-off of a recent invoice and the same invoice left open count alike (neither, until
    it is old enough); an old invoice counts what was not collected, written off or open."""
    import datetime as dt

    import pandas as pd

    from tasks.simulation import bad_debt

    end = dt.date(2026, 12, 31)
    rows = [  # due, amount, paid, paid_on, written_off
        (dt.date(2026, 6, 1), 10_000, 10_000, dt.date(2026, 6, 20), False),  # collected
        (dt.date(2026, 6, 1), 10_000, 2_500, None, True),                    # old, written off after 2,500
        (dt.date(2026, 7, 1), 10_000, 0, None, False),                       # old, still open
        (dt.date(2026, 8, 1), 10_000, 4_000, None, False),                   # old, on a plan, 4,000 in
        (dt.date(2026, 11, 1), 10_000, 0, None, True),                       # recent: written off at day 60
        (dt.date(2026, 11, 1), 10_000, 0, None, False),                      # recent: left open
    ]
    inv = pd.DataFrame(rows, columns=["due", "amount", "paid", "paid_on", "written_off"])
    got = bad_debt(inv, end, 120)
    assert got["bad_debt_cohort"] == {"due_by": "2026-09-02", "invoices": 4, "billed_usd_minor": 40_000}
    assert (got["written_off_minor"], got["uncollected_minor"]) == (7_500, 16_000)
    assert got["bad_debt_rate"] == round(23_500 / 40_000, 4)
    assert bad_debt(inv.iloc[4:], end, 120)["bad_debt_rate"] is None  # nothing old enough to judge yet


def test_two_policies_with_one_seed_meet_the_same_world():
    """Common random numbers: touches move when customers pay, but not who churns on their own
    and when, nor any invoice's amount, dispute or fate should its customer churn, nor whether a
    card is declined. Otherwise a comparison measures two worlds, not two policies."""
    import datetime as dt

    import pandas as pd

    from connectors.simulated import SimulatedWorld

    start = dt.date(2026, 1, 5)
    quiet = SimulatedWorld(customers=60, start=start, seed=11, behaviour=load_behaviour())
    busy = SimulatedWorld(customers=60, start=start, seed=11, behaviour=load_behaviour())
    none = pd.DataFrame()
    touched = 0
    for k in range(150):
        day = start + dt.timedelta(days=k)
        for world in (quiet, busy):
            world.start_day(day)
        late = [i for i in busy._open() if i.due < day and not i.customer.sensitive]
        sent = pd.DataFrame([{"id": n, "message_key": f"m{k}-{n}", "invoice_id": i.id, "customer_id": i.customer.id,
                              "channel": "email", "step": "friendly", "tone": "friendly", "needs_approval": False}
                             for n, i in enumerate(late)])
        touched += len(sent)
        busy.receive(sent, none, none, day)
        quiet.receive(none, none, none, day)
    assert touched > 100

    def world_of(w):
        return [(i.id, i.customer.id, i.issued, i.amount_minor, i.disputed, i.dispute_from, i.unpaid_if_churned)
                for i in w.bills.values()]

    assert busy.churn_log == quiet.churn_log and quiet.churn_log  # the same customers leave on the same days
    assert world_of(busy) == world_of(quiet)
    assert [i.paid_on for i in busy.bills.values()] != [i.paid_on for i in quiet.bills.values()]  # the touches did act
    card = [i for i in quiet.bills.values() if i.paid_on is None][:20]
    for world in (busy, quiet):
        world.rng.random(7)  # however far the response stream has moved
    outcomes = [[w.charge(invoice_id=i.id, invoice_number=i.number, customer_id=i.customer.id, amount="1.00",
                          currency="USD", idempotency_key=f"k-{i.id}", on=start).error for i in card]
                for w in (busy, quiet)]
    assert outcomes[0] == outcomes[1]
