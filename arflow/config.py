"""Settings from the environment (DESIGN.md, Configuration). Secrets never pass through here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arflow.resources import ROOT, default_path  # noqa: F401  (ROOT: the checkout, or site-packages)

# The checkout's folders, or the copies an installed wheel carries (arflow/resources.py).
EXPECTATIONS_DIR = default_path("expectations")
PROMPTS_DIR = default_path("prompts")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str
    policy_path: Path
    timezone: str | None

    @classmethod
    def from_env(cls) -> "Settings":
        """The run's part of the typed settings (arflow/settings.py): a bad value of any ARFLOW_*
        variable fails here, naming it, before anything is read or sent."""
        from arflow.settings import load

        s = load()
        return cls(data_dir=s.data_dir, db_url=s.db_url or f"sqlite:///{s.data_dir / 'arflow.db'}",
                   policy_path=s.policy, timezone=s.timezone or None)


def today_in(timezone: str) -> dt.date:
    """The company's calendar date now, in its timezone (the default as_of)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}") from None
    return dt.datetime.now(zone).date()
