"""Past one machine (docs/scale.md): daily_ar with its enrich, score and plan hops in 4 customer
partitions on a Dask LocalCluster of 2 worker processes (prefect-dask's DaskTaskRunner) decides
what one process decides: the same outcome and reason for every invoice, the same outbox (keys,
recipients, subjects, bodies), the same bucket totals, on the day and on a later day that reads the
first day's touches back."""

import datetime as dt

import pandas as pd
import pytest

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from tasks.partitions import partition_of
from tests.flows.test_pilot import _pilot_policy

pytestmark = pytest.mark.flow

DAYS = (dt.date(2026, 11, 23), dt.date(2026, 11, 30))
SAME = ("open_invoices", "outcomes", "held", "quarantined", "no_action_due", "by_lane", "by_bucket",
        "by_bucket_by_currency", "data_quality",
        "actions", "outbox_new", "messages", "currencies", "reconciliation")


def _outcomes(ledger: Ledger, run_id: str) -> pd.DataFrame:
    f = ledger.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == run_id)
    cols = ["source_row", "invoice_id", "customer_id", "outcome", "reason", "lane", "bucket", "days_past_due",
            "balance_minor", "currency", "risk_score", "tone", "escalation"]
    return f[cols].astype(str).sort_values(cols).reset_index(drop=True)


def _outbox(ledger: Ledger) -> pd.DataFrame:
    f = ledger.frame(m.Outbox)
    cols = [c for c in ("idempotency_key", "mode", "message_key", "invoice_id", "customer_id", "step", "channel",
                        "lane", "status", "closed_reason", "as_of", "recipients", "subject", "body") if c in f.columns]
    return f[cols].astype(str).sort_values("idempotency_key").reset_index(drop=True)


def test_a_customer_is_in_one_partition_and_the_hash_is_stable():
    ids = pd.Series(["C1", "C2", "C3", "C1", "C2", "CUST-0042"] * 50)
    p = partition_of(ids, 4)
    assert set(p) <= {0, 1, 2, 3} and len(set(p)) > 1
    assert pd.Series(p).groupby(ids.to_numpy()).nunique().max() == 1
    # Fixed: a worker on another machine puts a customer where the flow's process does.
    assert partition_of(pd.Series(["CUST-0042", "C1"]), 4).tolist() == p[[5, 0]].tolist()
    assert (partition_of(ids, 1) == 0).all()


def test_four_partitions_on_two_dask_workers_decide_what_one_process_does(data_dir, monkeypatch):
    one_url = f"sqlite:///{data_dir / 'one.db'}"
    four_url = f"sqlite:///{data_dir / 'four.db'}"
    for day in DAYS:
        monkeypatch.setenv("ARFLOW_DB_URL", one_url)
        one = daily_ar(as_of=day, source="demo")
        monkeypatch.setenv("ARFLOW_DB_URL", four_url)
        monkeypatch.setenv("ARFLOW_DASK_WORKERS", "2")
        four = daily_ar(as_of=day, source="demo", partitions=4)
        assert one["outbox_new"] > 0 and sum(one["outcomes"].values()) == one["open_invoices"]
        for key in SAME:
            assert four[key] == one[key], key
        pd.testing.assert_frame_equal(_outcomes(Ledger(four_url), four["run_id"]),
                                      _outcomes(Ledger(one_url), one["run_id"]))
        pd.testing.assert_frame_equal(_outbox(Ledger(four_url)), _outbox(Ledger(one_url)))


def test_partitions_must_be_one_or_more(data_dir):
    with pytest.raises(ValueError, match="partitions"):
        daily_ar(as_of=DAYS[0], source="demo", partitions=0)


@pytest.mark.postgres
def test_partitioned_run_on_postgresql_matches_one_process_on_sqlite(data_dir, pg_url, monkeypatch):
    """The ledger a multi-machine deployment uses: the partitioned run on PostgreSQL, one process on SQLite."""
    day = DAYS[0]
    one = daily_ar(as_of=day, source="demo")
    monkeypatch.setenv("ARFLOW_DB_URL", pg_url)
    four = daily_ar(as_of=day, source="demo", partitions=4)
    for key in SAME:
        assert four[key] == one[key], key
    one_url = f"sqlite:///{data_dir / 'ledger.db'}"
    pd.testing.assert_frame_equal(_outcomes(Ledger(pg_url), four["run_id"]), _outcomes(Ledger(one_url), one["run_id"]))
    pd.testing.assert_frame_equal(_outbox(Ledger(pg_url)), _outbox(Ledger(one_url)))
    cut = four["partitioned"]
    assert cut["partitions"] == 4 and len(cut["rows"]) == 4 and cut["workers"] == 2 and "partitioned" not in one


def test_draft_with_a_pilot_cohort_partitioned_opens_the_same_decisions(data_dir, smtp, monkeypatch):  # noqa: F811
    """Outside a dry run: half the customers live (the pilot, by hash), the rest in dry run; every
    live message waits for a person. The partitions give the same outbox in both namespaces and
    the same decisions."""
    monkeypatch.setenv("ARFLOW_POLICY", str(_pilot_policy(data_dir, "pilot:\n  enabled: true\n  percent: 50")))
    runs = {}
    for n in (1, 4):
        url = f"sqlite:///{data_dir / f'draft{n}.db'}"
        monkeypatch.setenv("ARFLOW_DB_URL", url)
        runs[n] = (daily_ar(as_of=DAYS[0], source="demo", mode="draft", partitions=n), Ledger(url))
    (one, l1), (four, l4) = runs[1], runs[4]
    assert one["pilot"]["live_customers"] > 0 and one["pilot"]["dry_run_customers"] > 0 and one["drafted"] > 0
    for key in SAME + ("pilot", "drafted", "decisions_opened", "blocked_by_guardrail"):
        assert four[key] == one[key], key
    pd.testing.assert_frame_equal(_outbox(l4), _outbox(l1))

    def decisions(ledger):
        f = ledger.frame(m.Decision)
        cols = ["decision_key", "kind", "invoice_ids", "customer_id", "status"]
        return f[cols].astype(str).sort_values(cols).reset_index(drop=True)

    assert len(decisions(l1)) > 0
    pd.testing.assert_frame_equal(decisions(l4), decisions(l1))
