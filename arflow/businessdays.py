"""Business days: weekends plus the public holidays of the customer's country and ours.

Holidays come from the ``holidays`` package; the arithmetic is numpy's ``busday_*`` family, run
once per country group, so a column of 100,000 dates costs a handful of vectorised calls.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import holidays
import numpy as np
import pandas as pd

WEEKMASK = "1111100"  # Monday to Friday


@lru_cache(maxsize=1)
def supported_countries() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


def known_country(code: object) -> bool:
    return isinstance(code, str) and code.upper() in supported_countries()


@lru_cache(maxsize=256)
def holiday_array(countries: tuple[str, ...], first_year: int, last_year: int) -> np.ndarray:
    """Union of the public holidays of `countries` over the years, as datetime64[D]."""
    days: set[dt.date] = set()
    years = range(first_year, last_year + 1)
    for code in countries:
        if known_country(code):
            days.update(holidays.country_holidays(code.upper(), years=years).keys())
    return np.array(sorted(days), dtype="datetime64[D]")


def _calendar(country: str | None, company_country: str, years: tuple[int, int]) -> np.busdaycalendar:
    codes = tuple(sorted({company_country.upper(), (country or company_country).upper()}))
    return _busdaycal(codes, *years)


@lru_cache(maxsize=256)
def _busdaycal(codes: tuple[str, ...], first_year: int, last_year: int) -> np.busdaycalendar:
    return np.busdaycalendar(weekmask=WEEKMASK, holidays=holiday_array(codes, first_year, last_year))


def _years(dates: np.ndarray, pad: int = 1) -> tuple[int, int]:
    valid = dates[~np.isnat(dates)]
    if valid.size == 0:
        this = dt.date.today().year
        return this - pad, this + pad
    lo = valid.min().astype("datetime64[Y]").astype(int) + 1970
    hi = valid.max().astype("datetime64[Y]").astype(int) + 1970
    return int(lo) - pad, int(hi) + pad


def _grouped(dates: pd.Series, countries: pd.Series | str | None, company_country: str, fn) -> pd.Series:
    """Apply fn(datetime64 array, busdaycalendar) per country group; NaT stays NaT."""
    arr = pd.to_datetime(dates).to_numpy(dtype="datetime64[D]")
    out = np.full(arr.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    if isinstance(countries, pd.Series):
        keys = countries.fillna("").astype(str).str.upper().to_numpy()
    else:
        keys = np.full(arr.shape, (countries or "").upper(), dtype=object)
    years = _years(arr)
    for code in pd.unique(keys):
        idx = (keys == code) & ~np.isnat(arr)
        if not idx.any():
            continue
        cal = _calendar(code if known_country(code) else None, company_country, years)
        out[idx] = fn(arr[idx], cal)
    return pd.Series(out, index=dates.index, dtype="datetime64[s]")


def roll_forward(dates: pd.Series, countries, company_country: str) -> pd.Series:
    """Each date itself if a business day, else the next business day."""
    return _grouped(dates, countries, company_country,
                    lambda a, cal: np.busday_offset(a, 0, roll="forward", busdaycal=cal))


def add_business_days(dates: pd.Series, n: int, countries, company_country: str) -> pd.Series:
    """Roll each date forward to a business day, then move n business days (n may be negative)."""
    roll = "forward" if n >= 0 else "backward"
    return _grouped(dates, countries, company_country,
                    lambda a, cal: np.busday_offset(a, n, roll=roll, busdaycal=cal))


def is_business_day(day: dt.date, countries: pd.Series, company_country: str) -> pd.Series:
    """For one calendar day, whether it is a business day for each row's country and ours."""
    dates = pd.Series(pd.Timestamp(day), index=countries.index)
    rolled = roll_forward(dates, countries, company_country)
    return rolled == pd.Timestamp(day)


def company_business_day(day: dt.date, company_country: str) -> bool:
    cal = _busdaycal((company_country.upper(),), day.year - 1, day.year + 1)
    return bool(np.is_busday(np.datetime64(day, "D"), busdaycal=cal))


def why_not_business_day(day: dt.date, company_country: str) -> str | None:
    """None on a business day of the company; else what the day is ("Saturday", a holiday's name)."""
    if company_business_day(day, company_country):
        return None
    if day.weekday() >= 5:
        return day.strftime("%A")
    names = holidays.country_holidays(company_country.upper(), years=day.year)
    return names.get(day) or "a public holiday"
