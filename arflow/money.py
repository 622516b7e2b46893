"""Money as integer minor units plus an ISO 4217 currency code. Never float.

Decimal strings in major units (``"1234.50"``) are parsed digit by digit, so a value that a float
cannot hold exactly (``"0.10"``, ``"9007199254740993.01"``) still converts exactly. The number of
minor digits per currency comes from CLDR through Babel (USD 2, JPY 0, KWD 3).

Only currencies that are legal tender somewhere today (CLDR's territory currencies with
``tender=True``) are currencies here: the pseudo-currencies XXX (none), XTS (testing), XAU (gold)
and withdrawn ones (DEM) are not. An amount is at most ``MAX_MINOR`` (10^15) minor units either
way, so that sums of many amounts cannot wrap an int64 (:func:`exact_total` checks a whole column).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

import pandas as pd
from babel.numbers import get_currency_precision, get_territory_currencies

_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
MAX_MINOR = 10**15  # 10 trillion USD, 10^15 JPY: above any real invoice or payment
INT64_MAX = 2**63 - 1


class AmountOverflow(ValueError):
    """A total that an int64 cannot hold: refused rather than wrapped."""


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    """ISO 4217 codes that are legal tender in some territory today, from CLDR (Babel): no
    pseudo-currency (XXX, XTS), no precious metal (XAU, XAG), no withdrawn currency (DEM)."""
    from babel.core import get_global

    codes: set[str] = set()
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, tender=True))
    return frozenset(codes)


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in known_currencies()


@lru_cache(maxsize=None)
def minor_digits(currency: str) -> int:
    """Digits after the decimal point for a currency (USD 2, JPY 0, BHD 3)."""
    if not is_currency(currency):
        raise ValueError(f"unknown currency code {currency!r}")
    return int(get_currency_precision(currency))


def to_minor(amount: str, currency: str) -> int:
    """Parse one major-unit decimal string into integer minor units.

    Raises ValueError for text that is not a plain decimal, or that has more fractional
    digits than the currency allows (``"1.005"`` USD is an error, ``"1.50"`` is 150).
    """
    minor = _minor_or_none(amount, currency)
    if minor is None:
        raise ValueError(f"not an amount in {currency}: {amount!r}")
    return minor


def _minor_or_none(amount: object, currency: object, bound: int | None = MAX_MINOR) -> int | None:
    """One amount in minor units, or None where the text is not a valid amount for its currency
    (unknown currency, bad text, too many fractional digits, beyond `bound` minor units)."""
    if not isinstance(amount, str) or not isinstance(currency, str):
        return None
    currency = currency.strip().upper()
    if not is_currency(currency):
        return None
    match = _AMOUNT.fullmatch(amount.strip())
    if match is None:
        return None
    sign, whole, frac = match.groups()
    d = minor_digits(currency)
    frac = frac or ""
    # Digits past the currency's precision must be zeros ("1.500" USD is 1.50; "1.005" is refused).
    if frac[d:].rstrip("0") or len(whole) + d > 18:  # int64 holds 18 digits safely
        return None
    value = int(whole + frac[:d].ljust(d, "0"))
    if bound is not None and value > bound:
        return None
    return -value if sign else value


def parse_minor(amounts: pd.Series, currencies: pd.Series) -> pd.Series:
    """Vectorised :func:`to_minor`: returns nullable Int64, NA where the text is not a valid
    amount for its currency (unknown currency, bad text, too many fractional digits).

    Digit strings only, never float: one pass over the values (a few pandas string operations
    per column cost more than the parsing on the frames a run holds)."""
    values = [_minor_or_none(_text(a), _text(c)) for a, c in zip(amounts.tolist(), currencies.tolist())]
    return pd.Series(pd.array(values, dtype="Int64"), index=amounts.index)


def out_of_range(amounts: pd.Series, currencies: pd.Series) -> pd.Series:
    """True where the text is a valid amount for its currency but beyond MAX_MINOR minor units (a
    quarantine reason of its own: ``amount_out_of_range``, not ``bad_amount``)."""
    values = [_minor_or_none(_text(a), _text(c), bound=None) for a, c in zip(amounts.tolist(), currencies.tolist())]
    return pd.Series([v is not None and abs(v) > MAX_MINOR for v in values], index=amounts.index, dtype=bool)


def exact_total(values: pd.Series, what: str = "amounts") -> int:
    """The exact sum (Python integers) of a column of minor units; AmountOverflow where it, or the
    sum of their magnitudes, would not fit an int64 (every int64 sum of a subset is then exact)."""
    ints = [int(v) for v in values.dropna().tolist()]
    if sum(abs(v) for v in ints) > INT64_MAX:
        raise AmountOverflow(f"the {what} add up to more than an int64 holds: refused rather than wrapped")
    return sum(ints)


def _text(value: object) -> object:
    return value if isinstance(value, str) else (None if value is None or pd.isna(value) else str(value))


def format_minor(minor: int, currency: str, *, grouping: bool = False) -> str:
    """Integer minor units to a major-unit decimal string (``123450, "USD"`` -> ``"1234.50"``;
    with ``grouping``, thousands separated for people to read: ``"1,234.50"``)."""
    digits = minor_digits(currency)
    value = Decimal(int(minor)).scaleb(-digits)
    return f"{value:{',' if grouping else ''}.{digits}f}"


def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    """Integer minor units for people to read, the locale's way, with the currency's own digits:
    ``$1,701,826.82``, ``¥13,609,445``, ``BHD1,000.000``; in ``de_DE``, ``9.490,88 €``."""
    from babel.numbers import format_currency

    return format_currency(Decimal(int(minor)).scaleb(-minor_digits(currency)), currency, locale=locale)


def format_amount(text: str, currency: str, locale: str = "en_US") -> str:
    """A major-unit decimal string (as the run's JSON carries amounts, ``"1701826.82"``) for people to read."""
    from babel.numbers import format_currency

    return format_currency(Decimal(text), currency, locale=locale)

