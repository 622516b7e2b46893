import datetime as dt

import holidays
import pandas as pd
from hypothesis import given, settings, strategies as st

from arflow import businessdays as bd


def _one(fn, day, country="US", *args):
    s = pd.Series([pd.Timestamp(day)]).astype("datetime64[s]")
    return fn(s, *args, pd.Series([country]), "US").iloc[0].date() if args else fn(s, pd.Series([country]), "US").iloc[0].date()


def test_due_on_thanksgiving_rolls_to_friday():
    assert _one(bd.roll_forward, dt.date(2026, 11, 26)) == dt.date(2026, 11, 27)


def test_weekend_rolls_to_monday_and_christmas_to_next_working_day():
    assert _one(bd.roll_forward, dt.date(2026, 11, 28)) == dt.date(2026, 11, 30)
    assert _one(bd.roll_forward, dt.date(2026, 12, 25)) == dt.date(2026, 12, 28)


def test_customer_country_holidays_count_too():
    # 2026-11-23 is Labour Thanksgiving Day in Japan, a plain Monday in the US.
    assert _one(bd.roll_forward, dt.date(2026, 11, 23), "JP") == dt.date(2026, 11, 24)
    assert _one(bd.roll_forward, dt.date(2026, 11, 23), "US") == dt.date(2026, 11, 23)
    # Our holidays apply to every customer: Thanksgiving for a German customer.
    assert _one(bd.roll_forward, dt.date(2026, 11, 26), "DE") == dt.date(2026, 11, 27)


def test_add_business_days_skips_holidays():
    # Wed 2026-11-25 + 2 business days: Thu is Thanksgiving -> Fri, Mon.
    s = pd.Series([pd.Timestamp("2026-11-25")]).astype("datetime64[s]")
    assert bd.add_business_days(s, 2, pd.Series(["US"]), "US").iloc[0].date() == dt.date(2026, 11, 30)
    assert bd.add_business_days(s, -3, pd.Series(["US"]), "US").iloc[0].date() == dt.date(2026, 11, 20)


def test_unknown_country_uses_our_calendar_only():
    assert _one(bd.roll_forward, dt.date(2026, 11, 26), "ZZ") == dt.date(2026, 11, 27)


@settings(max_examples=200)
@given(st.dates(min_value=dt.date(2001, 1, 1), max_value=dt.date(2080, 12, 1)), st.sampled_from(["US", "GB", "DE", "JP", "CA", "FR"]))
def test_roll_forward_gives_the_first_business_day(day, country):
    rolled = _one(bd.roll_forward, day, country)
    hol = holidays.country_holidays("US", years=range(day.year, day.year + 2)) | \
        holidays.country_holidays(country, years=range(day.year, day.year + 2))
    def business(d):
        return d.weekday() < 5 and d not in hol
    assert rolled >= day and business(rolled)
    assert all(not business(day + dt.timedelta(days=k)) for k in range((rolled - day).days))


def test_why_a_day_is_not_a_business_day_the_one_calendar_of_schedules_and_backfill():
    import datetime as dt

    from arflow.businessdays import why_not_business_day
    from flows.backfill import backfill_days

    assert why_not_business_day(dt.date(2026, 11, 26), "US") == "Thanksgiving Day"
    assert why_not_business_day(dt.date(2026, 11, 28), "US") == "Saturday"
    assert why_not_business_day(dt.date(2026, 11, 27), "US") is None
    assert why_not_business_day(dt.date(2026, 10, 3), "DE") == "Saturday"
    assert why_not_business_day(dt.date(2026, 10, 5), "DE") is None
    # The days a backfill replays are exactly the days a scheduled run does not skip.
    week = [dt.date(2026, 11, 23) + dt.timedelta(days=k) for k in range(7)]
    assert backfill_days(week[0], week[-1], "US") == [d for d in week if why_not_business_day(d, "US") is None]

