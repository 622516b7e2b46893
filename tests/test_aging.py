import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from arflow.policy import Policy
from tasks.extract import age, bucket_of, due_from_terms, normalize_terms, parse_dates


def _due(issue: str, terms: str):
    due, state = due_from_terms(pd.Series([pd.Timestamp(issue)]).astype("datetime64[s]"), pd.Series([terms]))
    return (None if pd.isna(due.iloc[0]) else due.iloc[0].date()), state.iloc[0]


@pytest.mark.parametrize("issue,terms,due", [
    ("2026-10-01", "net30", dt.date(2026, 10, 31)),
    ("2026-10-01", "Net 45", dt.date(2026, 11, 15)),
    ("2026-10-01", "NET_60", dt.date(2026, 11, 30)),
    ("2026-12-15", "net90", dt.date(2027, 3, 15)),
    ("2026-10-01", "due_on_receipt", dt.date(2026, 10, 1)),
    ("2026-10-01", "Due on receipt", dt.date(2026, 10, 1)),
    ("2026-01-31", "eom30", dt.date(2026, 3, 2)),   # end of January + 30 days
    ("2026-02-10", "eom15", dt.date(2026, 3, 15)),  # end of February (28th) + 15
    ("2028-02-10", "eom0", dt.date(2028, 2, 29)),   # leap year
])
def test_due_date_from_terms(issue, terms, due):
    assert _due(issue, terms) == (due, "terms")


@pytest.mark.parametrize("terms,state", [("", "missing"), ("net thirty", "unknown_terms"), ("2/10 net 30", "unknown_terms")])
def test_unreadable_terms_are_flagged_not_guessed(terms, state):
    assert _due("2026-10-01", terms) == (None, state)


def test_normalize_terms():
    assert normalize_terms(pd.Series(["Net 30", "EOM-30", "due_on_receipt"])).tolist() == ["net30", "eom30", "dueonreceipt"]


@pytest.mark.parametrize("text", ["2026-02-30", "31/12/2026", "2026/01/01", "yesterday", "", "2026-1-5x"])
def test_parse_dates_is_strict_iso(text):
    assert parse_dates(pd.Series([text])).isna().all()


@pytest.mark.parametrize("dpd,bucket", [(-10, "current"), (0, "current"), (1, "d1_30"), (30, "d1_30"),
                                        (31, "d31_60"), (60, "d31_60"), (61, "d61_90"), (90, "d61_90"),
                                        (91, "d91_plus"), (400, "d91_plus")])
def test_bucket_boundaries(dpd, bucket):
    assert bucket_of(pd.Series([dpd])).iloc[0] == bucket


def _aged(due: dt.date, as_of: dt.date, policy) -> pd.Series:
    df = pd.DataFrame({"due_date": pd.Series([pd.Timestamp(due)]).astype("datetime64[s]")})
    return age(df, as_of, policy).iloc[0]


@pytest.mark.parametrize("dpd,lane", [(-3, "current"), (0, "current"), (1, "early"), (14, "early"), (15, "late"),
                                      (44, "late"), (45, "critical"), (200, "critical")])
def test_lane_boundaries_default_policy(policy, dpd, lane):
    as_of = dt.date(2026, 11, 23)
    assert _aged(as_of - dt.timedelta(days=dpd), as_of, policy)["lane"] == lane


def test_lane_boundaries_are_policy_settings(policy):
    custom = Policy.model_validate({**policy.model_dump(), "lanes": {"early_from": 3, "late_from": 20, "critical_from": 60},
                                    "steps": [s.model_dump() for s in policy.steps if s.day is None or s.day < 1]})
    as_of = dt.date(2026, 11, 23)
    assert _aged(as_of - dt.timedelta(days=2), as_of, custom)["lane"] == "current"
    assert _aged(as_of - dt.timedelta(days=19), as_of, custom)["lane"] == "early"
    assert _aged(as_of - dt.timedelta(days=59), as_of, custom)["lane"] == "late"


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 12, 31)),
       st.integers(min_value=-400, max_value=4000))
@pytest.mark.slow
def test_days_past_due_is_calendar_days(due, delta):
    """What an AR clerk computes by hand: as_of minus due date, in calendar days."""
    from arflow.policy import load_policy
    from arflow.config import ROOT

    as_of = due + dt.timedelta(days=delta)
    row = _aged(due, as_of, load_policy(ROOT / "policy.yaml"))
    assert row["days_past_due"] == (as_of - due).days
    expected = ("current" if delta <= 0 else "d1_30" if delta <= 30 else "d31_60" if delta <= 60
                else "d61_90" if delta <= 90 else "d91_plus")
    assert row["bucket"] == expected


@given(st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2090, 12, 31)), st.integers(min_value=0, max_value=365))
def test_net_terms_add_calendar_days(issue, n):
    assert _due(issue.isoformat(), f"net{n}") == (issue + dt.timedelta(days=n), "terms")
