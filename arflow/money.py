"""Money as integer minor units plus an ISO 4217 currency code. Never float.

Decimal strings in major units (``"1234.50"``) are parsed digit by digit, so a value that a float
cannot hold exactly (``"0.10"``, ``"9007199254740993.01"``) still converts exactly. The number of
minor digits per currency comes from CLDR through Babel (USD 2, JPY 0, KWD 3).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import pandas as pd
from babel.numbers import get_currency_precision, list_currencies

_AMOUNT_RE = r"-?\d+(?:\.\d+)?"


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    """ISO 4217 codes CLDR knows (current and historic)."""
    return frozenset(list_currencies())


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
    parsed = parse_minor(pd.Series([amount], dtype="string"), pd.Series([currency], dtype="string"))
    if pd.isna(parsed.iloc[0]):
        raise ValueError(f"not an amount in {currency}: {amount!r}")
    return int(parsed.iloc[0])


def parse_minor(amounts: pd.Series, currencies: pd.Series) -> pd.Series:
    """Vectorised :func:`to_minor`: returns nullable Int64, NA where the text is not a valid
    amount for its currency (unknown currency, bad text, too many fractional digits).

    Works with string operations only (no float at any point), one pass per currency precision.
    """
    text = amounts.astype("string").str.strip()
    currencies = currencies.astype("string").str.strip().str.upper()
    known = {c: (minor_digits(c) if is_currency(c) else -1) for c in currencies.dropna().unique()}
    digits = currencies.map(known).fillna(-1).astype("int64")
    ok = text.str.fullmatch(_AMOUNT_RE).fillna(False).astype(bool) & (digits >= 0)
    result = pd.Series(pd.NA, index=amounts.index, dtype="Int64")
    for d in sorted(set(digits[ok].tolist())):
        sel = ok & (digits == d)
        body = text[sel]
        negative = body.str.startswith("-").to_numpy(dtype=bool)
        parts = body.str.lstrip("-").str.partition(".")
        whole, frac = parts[0], parts[2]
        # Digits past the currency's precision must be zeros ("1.500" USD is 1.50; "1.005" is refused).
        extra = frac.str.slice(d).str.rstrip("0").str.len().to_numpy(dtype="int64") > 0
        too_big = (whole.str.len().to_numpy(dtype="int64") + d) > 18  # int64 holds 18 digits safely
        good = ~(extra | too_big)
        frac_d = frac.str.slice(0, d).str.pad(d, side="right", fillchar="0") if d else None
        joined = whole + frac_d if d else whole
        values = pd.to_numeric(joined[good], errors="coerce").astype("Int64")
        values = values.where(~pd.Series(negative[good], index=values.index), -values)
        result.loc[values.index] = values
    return result


def format_minor(minor: int, currency: str) -> str:
    """Integer minor units to a major-unit decimal string (``123450, "USD"`` -> ``"1234.50"``)."""
    digits = minor_digits(currency)
    value = Decimal(int(minor)).scaleb(-digits)
    return f"{value:.{digits}f}"
