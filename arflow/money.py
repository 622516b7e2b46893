"""Money as integer minor units plus an ISO 4217 currency code. Never float.

Decimal strings in major units (``"1234.50"``) are parsed digit by digit, so a value that a float
cannot hold exactly (``"0.10"``, ``"9007199254740993.01"``) still converts exactly. The number of
minor digits per currency comes from CLDR through Babel (USD 2, JPY 0, KWD 3).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import numpy as np
import pandas as pd
from babel.numbers import get_currency_precision, list_currencies

_AMOUNT_RE = r"^\s*(-?)(\d+)(?:\.(\d+))?\s*$"


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
    amount for its currency (unknown currency, bad text, too many fractional digits)."""
    amounts = amounts.astype("string")
    currencies = currencies.astype("string").str.strip().str.upper()
    parts = amounts.str.extract(_AMOUNT_RE)
    sign, whole, frac = parts[0], parts[1], parts[2].fillna("")
    digits = currencies.map(lambda c: minor_digits(c) if is_currency(c) else -1).astype("int64")
    ok = whole.notna() & (digits >= 0)
    # Strip trailing zeros beyond the currency's precision ("1.500" USD is fine); anything else
    # beyond it is a real fraction of a minor unit, which we refuse rather than round.
    frac_len = frac.str.len().fillna(0).astype("int64")
    too_long = frac_len > digits
    excess_nonzero = too_long & frac.str.rstrip("0").str.len().fillna(0).astype("int64").gt(digits)
    ok &= ~excess_nonzero.fillna(True)
    # At most 18 digits in all (whole + minor) so the int64 arithmetic cannot overflow.
    ok &= (whole.str.len().fillna(99).astype("int64") + digits) <= 18

    result = pd.Series(pd.NA, index=amounts.index, dtype="Int64")
    if not ok.any():
        return result
    w = whole[ok].astype("int64").to_numpy()
    d = digits[ok].to_numpy()
    f = frac[ok]
    fl = frac_len[ok].to_numpy()
    # Normalise the fraction to exactly `d` digits: pad right, or drop trailing zeros.
    keep = np.minimum(fl, d)
    f_cut = pd.Series([s[:k] for s, k in zip(f.tolist(), keep.tolist())], index=f.index)
    f_val = pd.to_numeric(f_cut.where(f_cut != "", "0")).astype("int64").to_numpy()
    f_val = f_val * (10 ** (d - keep))
    value = w * (10**d) + f_val
    neg = (sign[ok] == "-").to_numpy()
    value = np.where(neg, -value, value)
    result.loc[ok[ok].index] = value
    return result


def format_minor(minor: int, currency: str) -> str:
    """Integer minor units to a major-unit decimal string (``123450, "USD"`` -> ``"1234.50"``)."""
    digits = minor_digits(currency)
    value = Decimal(int(minor)).scaleb(-digits)
    return f"{value:.{digits}f}"
