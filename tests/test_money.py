from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from arflow.money import format_minor, minor_digits, parse_minor, to_minor


@pytest.mark.parametrize("text,cur,minor", [
    ("1234.50", "USD", 123450), ("0.10", "USD", 10), ("0.1", "USD", 10), ("7", "USD", 700),
    ("1.500", "USD", 150),  # trailing zeros beyond the precision are harmless
    ("1000", "JPY", 1000), ("1.250", "KWD", 1250), ("-12.34", "EUR", -1234),
    # The largest amount accepted (10^15 minor units less one): beyond it sums could wrap (see below).
    ("9999999999999.99", "USD", 999999999999999), ("1000000000000000", "JPY", 10**15),
])
def test_to_minor_is_exact(text, cur, minor):
    assert to_minor(text, cur) == minor


@pytest.mark.parametrize("text,cur", [("1.005", "USD"), ("10.5", "JPY"), ("1,234.00", "USD"), ("12x", "USD"),
                                      ("", "USD"), ("1e3", "USD"), ("10.00", "XYZ"), ("+5", "USD"),
                                      # beyond 10^15 minor units (sums would wrap an int64); pseudo-currencies
                                      ("9007199254740993.01", "USD"), ("10000000000000.01", "USD"),
                                      ("10.00", "XXX"), ("10.00", "XTS"), ("1.00", "XAU"), ("10.00", "DEM")])
def test_to_minor_refuses_what_is_not_an_amount(text, cur):
    with pytest.raises(ValueError):
        to_minor(text, cur)


def test_parse_minor_vectorised_marks_bad_rows_na():
    out = parse_minor(pd.Series(["1.00", "abc", "2.5", "3"]), pd.Series(["USD", "USD", "JPY", "XXX1"]))
    assert out.iloc[0] == 100
    assert out.iloc[1:].isna().all()


def test_minor_digits_from_cldr():
    assert (minor_digits("USD"), minor_digits("JPY"), minor_digits("BHD")) == (2, 0, 3)


@given(st.integers(min_value=-10**14, max_value=10**14), st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLP"]))
def test_format_then_parse_round_trips(minor, cur):
    text = format_minor(minor, cur)
    assert to_minor(text, cur) == minor
    assert Decimal(text) == Decimal(minor).scaleb(-minor_digits(cur))
    assert format_minor(minor, cur, grouping=True).replace(",", "") == text


def test_format_groups_thousands_for_people():
    assert format_minor(-63537850, "USD", grouping=True) == "-635,378.50"
    assert format_minor(123456789, "JPY", grouping=True) == "123,456,789"
    assert format_minor(5, "USD", grouping=True) == "0.05"


@given(st.lists(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False), min_size=1, max_size=50))
def test_sum_of_minor_equals_decimal_sum(values):
    texts = [f"{v:.2f}" for v in values]
    minors = parse_minor(pd.Series(texts), pd.Series(["USD"] * len(texts)))
    assert int(minors.sum()) == int(sum(Decimal(t) for t in texts) * 100)
