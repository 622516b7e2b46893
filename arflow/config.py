"""Settings from the environment (DESIGN.md, Configuration). Secrets never pass through here."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS_DIR = ROOT / "expectations"
PROMPTS_DIR = ROOT / "prompts"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str
    policy_path: Path
    timezone: str | None

    @classmethod
    def from_env(cls) -> "Settings":
        data_dir = Path(os.environ.get("ARFLOW_DATA_DIR", ROOT / "data"))
        db_url = os.environ.get("ARFLOW_DB_URL") or f"sqlite:///{data_dir / 'arflow.db'}"
        policy = Path(os.environ.get("ARFLOW_POLICY", ROOT / "policy.yaml"))
        return cls(data_dir=data_dir, db_url=db_url, policy_path=policy,
                   timezone=os.environ.get("ARFLOW_TIMEZONE") or None)


def today_in(timezone: str) -> dt.date:
    """The company's calendar date now, in its timezone (the default as_of)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}") from None
    return dt.datetime.now(zone).date()
