"""The Messages API's recorded responses the tests queue on the local fake (connectors/fake_anthropic.py):
tests/fixtures/anthropic/NAME.json. Test data only: the wheel carries neither this nor the fixtures."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"


def recorded(name: str) -> dict:
    """A recorded response body from tests/fixtures/anthropic/NAME.json."""
    return json.loads((FIXTURES / f"{name}.json").read_text())
